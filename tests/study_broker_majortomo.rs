//! Interoperability of the study's `broker` with the Python majortomo package
//! (MDP/0.2 in majortomo's dialect, `../shared/spec/protocols.md` §3.7, but
//! see the last test: majortomo numbers its client commands as its worker
//! commands, REQUEST 0x02, PARTIAL 0x03, FINAL 0x04), in
//! both directions, with majortomo's own `Client` and `Worker` classes as
//! real processes (`tests/majortomo/client.py`, `worker.py`):
//!
//! * a majortomo client through our broker to our echo worker
//!   (`broker-worker`, SBP/1, or `mdworker`, MDP/0.1, where it is not built);
//! * our clients (the guide's `mdclient`, MDP/0.1, and the study's SBP/1
//!   `broker-client` when it is built) through our broker to a majortomo
//!   worker that sends PARTIALs before its FINAL: clients that cannot stream
//!   get the partial bodies folded in front of the final one;
//! * a majortomo client and a majortomo worker through our broker, and the
//!   worker's DISCONNECT;
//! * a majortomo worker left idle past its 10 s heartbeat timeout: our
//!   broker's heartbeats must keep it from reconnecting.
//!
//! The client script checks every reply part exactly (a service frame in a
//! PARTIAL/FINAL, a missing leading empty frame, a lost or extra part all
//! fail it), so these tests fail if the broker answers majortomo in the wrong
//! shape.
//!
//! The Python side runs from the virtual environment `make majortomo-venv`
//! creates (`target/majortomo-venv`, pinned by
//! `tests/majortomo/requirements.txt`). Without it these tests fail, unless
//! `ZGUIDE_SKIP_MAJORTOMO=1`, which skips them with a printed reason. Each
//! test runs in its own network namespace, so the broker keeps its default
//! `tcp://*:5555`; every wait is bounded.

mod common;
use common::wire::{self, frames, Frames};
use common::{ms, secs, Pid, Scenario, Spec};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- set-up

/// The virtual environment's python, or `None` (after saying why) when the
/// tests are to be skipped; panics when the venv is missing and skipping
/// was not asked for.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/majortomo-venv/bin/python");
    let skip = std::env::var("ZGUIDE_SKIP_MAJORTOMO").as_deref() == Ok("1");
    let problem = if !python.exists() {
        format!("{} does not exist", python.display())
    } else {
        match std::process::Command::new(&python)
            .args(["-c", "import majortomo"])
            .output()
        {
            Ok(out) if out.status.success() => return Some(python),
            Ok(out) => format!(
                "{} cannot import majortomo: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("cannot run {}: {e}", python.display()),
        }
    };
    if skip {
        eprintln!("majortomo interoperability test skipped (ZGUIDE_SKIP_MAJORTOMO=1): {problem}");
        return None;
    }
    panic!(
        "{problem}. Run `make majortomo-venv` (it creates target/majortomo-venv from \
         tests/majortomo/requirements.txt), or set ZGUIDE_SKIP_MAJORTOMO=1 to skip these tests."
    );
}

/// A script of `tests/majortomo/`.
fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/majortomo")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A majortomo script run by the venv's python, with `args`.
fn majortomo(python: &Path, name: &str, args: &[&str]) -> Spec {
    let mut all = vec![script(name)];
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    // No __pycache__ in the source tree.
    Spec::new(python, &all)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
}

/// Starts our broker with `-v` (it logs every message, so a failure report
/// shows the frames) and waits until it is bound.
fn start_broker(sc: &mut Scenario) -> Pid {
    let broker = sc.start("broker", bin!("broker"), &["-v"]);
    sc.expect(broker, "is active at tcp://*:5555", secs(30));
    broker
}

/// Our echo worker for `echo`: the study's `broker-worker` when it is built,
/// else the guide's `mdworker` (MDP/0.1).
fn start_echo_worker(sc: &mut Scenario) -> Pid {
    match option_env!("CARGO_BIN_EXE_broker-worker") {
        Some(path) => {
            let worker = sc.start("broker-worker", path, &["echo"]);
            sc.expect(worker, "worker ready for echo", secs(30));
            worker
        }
        None => {
            eprintln!("no broker-worker binary yet: using mdworker as the echo worker");
            sc.start("mdworker", bin!("mdworker"), &[])
        }
    }
}

/// Starts `worker.py` for `service` with `args` and waits until it sent READY.
fn start_majortomo_worker(
    sc: &mut Scenario,
    python: &Path,
    label: &str,
    service: &str,
    args: &[&str],
) -> Pid {
    let mut all = vec!["--service", service];
    all.extend_from_slice(args);
    let worker = sc.start_spec(label, majortomo(python, "worker.py", &all));
    sc.expect(
        worker,
        &format!("I: majortomo worker ready for {service}"),
        secs(30),
    );
    worker
}

/// One `mmi.service` question over MDP/0.1 (a raw REQ probe): the answer's
/// status frame, or what went wrong.
fn mmi_service(service: &str) -> Result<Vec<u8>, String> {
    let context = zmq::Context::new();
    let client = wire::probe(&context, zmq::REQ)
        .receive_timeout(2_000)
        .connect("tcp://localhost:5555");
    wire::send(&client, &[b"MDPC01", b"mmi.service", service.as_bytes()]);
    let answer: Frames = wire::try_recv(&client, "mmi.service probe")?;
    match answer.as_slice() {
        [header, name, status] if *header == b"MDPC01" && *name == b"mmi.service" => {
            Ok(status.clone())
        }
        _ => Err(format!("mmi.service answered {answer:?}")),
    }
}

/// Waits (bounded by `within`) until the broker's `mmi.service` says `code`
/// for `service`: the worker's READY (or DISCONNECT) was understood.
fn wait_mmi(sc: &Scenario, service: &str, code: &str, within: Duration) {
    let (service_owned, code_owned) = (service.to_string(), code.to_string());
    let result = sc.in_namespace(move || {
        let deadline = Instant::now() + within;
        loop {
            let answer = mmi_service(&service_owned);
            if answer.as_deref() == Ok(code_owned.as_bytes()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("last answer {answer:?}"));
            }
            std::thread::sleep(ms(100));
        }
    });
    if let Err(last) = result {
        sc.fail(&format!(
            "mmi.service never said {code} for {service} within {within:?}: {last}"
        ));
    }
}

/// Waits for `pid` to exit and fails the test (with every process's output)
/// unless it exits 0.
fn expect_success(sc: &mut Scenario, pid: Pid, what: &str, within: Duration) {
    let code = sc.wait_exit(pid, within);
    if code != 0 {
        sc.fail(&format!("{what} exited with {code}, not 0"));
    }
}

/// Fails the test if `pid` printed a line containing any of `needles`.
fn expect_no_line(sc: &Scenario, pid: Pid, needles: &[&str]) {
    for line in sc.lines(pid) {
        if needles.iter().any(|n| line.contains(n)) {
            sc.fail(&format!("unexpected line: {line}"));
        }
    }
}

// ---------------------------------------------------------------- tests

/// majortomo client → our broker → our echo worker (`broker-worker echo`,
/// SBP/1; the guide's `mdworker`, MDP/0.1, in a build without it). The broker must
/// answer the majortomo client `[""]["MDPC02"][0x04][body…]`: the client
/// script checks every frame of every reply.
#[test]
fn majortomo_client_gets_our_echo_worker_replies_through_our_broker() {
    let Some(python) = python() else { return };
    let mut sc = Scenario::new("majortomo-client-our-worker");
    let broker = start_broker(&mut sc);
    let worker = start_echo_worker(&mut sc);
    wait_mmi(&sc, "echo", "200", secs(30));

    let client = sc.start_spec(
        "majortomo-client",
        majortomo(
            &python,
            "client.py",
            &[
                "--service",
                "echo",
                "--requests",
                "20",
                "--frame",
                "second frame",
            ],
        ),
    );
    expect_success(&mut sc, client, "the majortomo client", secs(90));
    sc.expect(client, "OK: 20 replies as expected", secs(5));
    sc.assert_running(broker);
    sc.assert_running(worker);
}

/// Our MDP/0.1 client (`mdclient -v`, 5 requests) → our broker → a majortomo
/// worker that answers each request with two PARTIALs and a FINAL. mdclient
/// takes one reply per request, so the broker folds the partial bodies in
/// front of the final one: `["MDPC01"]["echo"][partial 1][partial 2][echo]`.
#[test]
fn our_mdp_client_gets_majortomo_worker_partials_folded_into_one_reply() {
    let Some(python) = python() else { return };
    let mut sc = Scenario::new("mdclient-majortomo-worker");
    let broker = start_broker(&mut sc);
    let worker = start_majortomo_worker(
        &mut sc,
        &python,
        "majortomo-worker",
        "echo",
        &["--partials", "2"],
    );
    wait_mmi(&sc, "echo", "200", secs(30));

    let client = sc.start_spec(
        "mdclient",
        Spec::new(bin!("mdclient"), &["-v"]).env("ZGUIDE_REQUESTS", 5),
    );
    expect_success(&mut sc, client, "mdclient", secs(60));
    sc.expect(client, "5 requests/replies processed", secs(5));

    // Each reply as mdclient -v dumps it: the frames after "received reply".
    let output = sc.output(client);
    let replies: Vec<Vec<&str>> = output
        .split("I: received reply:")
        .skip(1)
        .map(|dump| {
            dump.lines()
                .skip(1) // the rest of the "received reply" line
                .skip_while(|l| l.starts_with("---"))
                .take_while(|l| l.starts_with('['))
                .collect()
        })
        .collect();
    let expected = [
        "[006] MDPC01",
        "[004] echo",
        "[024] partial 1 of Hello world",
        "[024] partial 2 of Hello world",
        "[011] Hello world",
    ];
    if replies.len() != 5 || replies.iter().any(|r| r.as_slice() != expected) {
        sc.fail(&format!(
            "mdclient's replies are {replies:?}, expected 5 times {expected:?}"
        ));
    }
    sc.expect_count(worker, "I: request ", 5, secs(5));
    expect_no_line(&sc, worker, &["E: ", "W: ", "reconnecting"]);

    // The study's SBP/1 client, when it is built: the same fold, status 200.
    if let Some(path) = option_env!("CARGO_BIN_EXE_broker-client") {
        let sbp = sc.start("broker-client", path, &["--requests", "3", "echo", "hello"]);
        expect_success(&mut sc, sbp, "broker-client", secs(60));
        let answers: Vec<String> = sc
            .lines(sbp)
            .into_iter()
            .filter(|l| l.contains(" 200 "))
            .collect();
        // `<correlation> <status> <body frames joined by spaces>`.
        if answers.len() != 3
            || answers
                .iter()
                .any(|l| !l.ends_with(" 200 partial 1 of hello partial 2 of hello hello"))
        {
            sc.fail(&format!(
                "broker-client's answers are {answers:?}, expected 3 with status 200 and both partials"
            ));
        }
        sc.expect_count(worker, "I: request ", 8, secs(5));
    } else {
        eprintln!("no broker-client binary yet: the SBP/1 side of this test was not run");
    }
    sc.assert_running(broker);
    sc.assert_running(worker);
}

/// majortomo client → our broker → majortomo worker, both in majortomo's
/// dialect: the PARTIALs are streamed to the client as they come, without a
/// service frame. Then the worker's DISCONNECT (on SIGTERM) removes it.
#[test]
fn majortomo_client_and_majortomo_worker_talk_through_our_broker() {
    let Some(python) = python() else { return };
    let mut sc = Scenario::new("majortomo-both");
    let broker = start_broker(&mut sc);
    let worker = start_majortomo_worker(
        &mut sc,
        &python,
        "majortomo-worker",
        "mjecho",
        &["--partials", "2"],
    );
    wait_mmi(&sc, "mjecho", "200", secs(30));

    let client = sc.start_spec(
        "majortomo-client",
        majortomo(
            &python,
            "client.py",
            &[
                "--service",
                "mjecho",
                "--requests",
                "20",
                "--partials",
                "2",
                "--frame",
                "x",
                "--frame",
                "",
            ],
        ),
    );
    expect_success(&mut sc, client, "the majortomo client", secs(90));
    sc.expect(client, "OK: 20 replies as expected", secs(5));
    sc.expect_count(worker, "I: request ", 20, secs(5));
    expect_no_line(&sc, worker, &["E: ", "W: ", "reconnecting"]);

    // SIGTERM: the worker sends [""]["MDPW02"][0x06] and exits 0; the
    // broker forgets it.
    sc.stop_cleanly_with(worker, libc::SIGTERM, secs(10));
    wait_mmi(&sc, "mjecho", "404", secs(10));
    sc.assert_running(broker);
}

/// A majortomo worker idle for 13 s, past its own 10 s heartbeat timeout:
/// our broker's HEARTBEATs (`[""]["MDPW02"][0x05]`) must reach it in a shape
/// it accepts, so it never reconnects, and the broker must take majortomo's
/// HEARTBEATs, so it still has the worker and the worker still serves.
#[test]
fn majortomo_worker_stays_registered_on_our_broker_heartbeats() {
    let Some(python) = python() else { return };
    let mut sc = Scenario::new("majortomo-heartbeats");
    let broker = start_broker(&mut sc);
    let worker = start_majortomo_worker(
        &mut sc,
        &python,
        "majortomo-worker",
        "mjecho",
        &["--partials", "0"],
    );
    wait_mmi(&sc, "mjecho", "200", secs(30));

    std::thread::sleep(secs(13));
    wait_mmi(&sc, "mjecho", "200", secs(5));
    expect_no_line(&sc, worker, &["E: ", "W: ", "reconnecting"]);
    assert_eq!(
        sc.count(worker, "I: majortomo worker ready for"),
        1,
        "the worker connected once"
    );

    let client = sc.start_spec(
        "majortomo-client",
        majortomo(
            &python,
            "client.py",
            &["--service", "mjecho", "--requests", "3"],
        ),
    );
    expect_success(&mut sc, client, "the majortomo client", secs(60));
    sc.expect(client, "OK: 3 replies as expected", secs(5));
    expect_no_line(&sc, worker, &["E: ", "W: ", "reconnecting"]);
    sc.assert_running(broker);
    sc.assert_running(worker);
}

/// The frames majortomo 0.2.0's client really sends and accepts, checked
/// against a raw ROUTER so that the tests above rest on facts about
/// majortomo, not on our scripts. Its commands are numbered as in
/// `majortomo/protocol.py`, one table for client and worker (READY 1,
/// REQUEST 2, PARTIAL 3, FINAL 4, HEARTBEAT 5, DISCONNECT 6), so a client
/// REQUEST is `[""]["MDPC02"][0x02][service][body…]` and the FINAL it waits
/// for is `[""]["MDPC02"][0x04][body…]` (no service frame); not RFC 18's
/// client numbering (REQUEST 1, PARTIAL 2, FINAL 3).
#[test]
fn majortomo_client_speaks_requests_0x02_and_takes_final_0x04() {
    let Some(python) = python() else { return };
    let mut sc = Scenario::new("majortomo-frames");
    let router = sc.in_namespace_background(|| {
        let context = zmq::Context::new();
        let router = wire::probe(&context, zmq::ROUTER)
            .receive_timeout(30_000)
            .bind("tcp://*:5555");
        let mut request = wire::try_recv(&router, "raw ROUTER")?;
        let client = request.remove(0);
        // Answer as majortomo's broker does: leading empty frame, FINAL
        // (0x04), no service frame.
        let mut reply = vec![client, Vec::new(), b"MDPC02".to_vec(), vec![0x04]];
        reply.extend(request[4..].iter().cloned());
        router.send_multipart(reply, 0).map_err(|e| e.to_string())?;
        std::thread::sleep(ms(500));
        Ok::<Frames, String>(request)
    });
    let client = sc.start_spec(
        "majortomo-client",
        majortomo(
            &python,
            "client.py",
            &["--service", "svc", "--requests", "1"],
        ),
    );
    expect_success(&mut sc, client, "the majortomo client", secs(60));
    let request = router.join().expect("raw ROUTER thread");
    match request {
        Ok(request) => assert_eq!(
            request,
            frames(&[b"", b"MDPC02", b"\x02", b"svc", b"hello-0"]),
            "majortomo's REQUEST"
        ),
        Err(e) => sc.fail(&e),
    }
}
