//! Chapter 4, Majordomo (§27–§30): the broker, the worker and client APIs,
//! MMI and Titanic, run as real processes, plus raw-frame probes that speak
//! the MDP bytes of protocols.md directly (so wire compatibility does not
//! rest on our own client code), fault injection (SIGKILL, restarts) and
//! malformed input.

mod common;
use common::{secs, Scenario, Spec};

use std::time::{Duration, Instant};

type Frames = Vec<Vec<u8>>;

fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// A probe socket that never hangs a test.
fn probe(ctx: &zmq::Context, kind: zmq::SocketType) -> zmq::Socket {
    let socket = ctx.socket(kind).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(10_000).unwrap();
    socket.set_sndtimeo(10_000).unwrap();
    socket.connect("tcp://localhost:5555").unwrap();
    socket
}

fn send(socket: &zmq::Socket, parts: &[&[u8]]) {
    socket.send_multipart(parts.iter().copied(), 0).unwrap();
}

fn recv(socket: &zmq::Socket) -> Frames {
    socket
        .recv_multipart(0)
        .unwrap_or_else(|e| panic!("no message: {e}"))
}

/// Receives on a worker probe, skipping HEARTBEATs, until something else.
fn recv_skip_heartbeats(socket: &zmq::Socket) -> Frames {
    loop {
        let msg = recv(socket);
        if msg != frames(&[b"", b"MDPW01", b"\x04"]) {
            return msg;
        }
    }
}

/// One MMI lookup with a raw REQ socket.
fn mmi(ctx: &zmq::Context, service: &[u8], name: &[u8]) -> Frames {
    let client = probe(ctx, zmq::REQ);
    send(&client, &[b"MDPC01", service, name]);
    recv(&client)
}

/// Resident memory of a process in KiB, from /proc/<pid>/status.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Starts mdbroker -v and waits until it is bound.
fn start_broker(sc: &mut Scenario) -> common::Pid {
    let broker = sc.start("mdbroker", bin!("mdbroker"), &["-v"]);
    sc.expect(
        broker,
        "I: MDP broker/0.2.0 is active at tcp://*:5555",
        secs(30),
    );
    broker
}

/// Starts mdbroker without `-v` (the C's default: it prints only its banner)
/// and waits until it is bound.
fn start_quiet_broker(sc: &mut Scenario) -> common::Pid {
    let broker = sc.start("mdbroker", bin!("mdbroker"), &[]);
    sc.expect(broker, "is active at tcp://*:5555", secs(30));
    broker
}

/// Starts an mdworker and waits until the broker registered it.
fn start_worker(sc: &mut Scenario, broker: common::Pid, label: &str) -> common::Pid {
    let worker = sc.start(label, bin!("mdworker"), &[]);
    sc.expect(broker, "I: registering new worker", secs(30));
    worker
}

// ---------------------------------------------------------------- §27 / §28

#[test]
fn mdclient_gets_every_reply_through_broker_and_worker() {
    let mut sc = Scenario::new("mdclient");
    let broker = start_quiet_broker(&mut sc);
    let worker = sc.start("mdworker", bin!("mdworker"), &[]);
    let client = sc.start_spec(
        "mdclient",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 2000),
    );
    sc.expect(client, "2000 requests/replies processed", secs(120));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    sc.stop_cleanly(worker, secs(20));
    sc.expect(worker, "W: interrupt received, killing worker...", secs(5));
    sc.stop_cleanly(broker, secs(20));
    sc.expect(broker, "W: interrupt received, shutting down...", secs(5));
}

#[test]
fn mdclient2_gets_every_reply_with_two_workers() {
    let mut sc = Scenario::new("mdclient2");
    let broker = start_broker(&mut sc);
    start_worker(&mut sc, broker, "mdworker-1");
    start_worker(&mut sc, broker, "mdworker-2");
    let client = sc.start_spec(
        "mdclient2",
        Spec::new(bin!("mdclient2"), &[]).env("ZGUIDE_REQUESTS", 5000),
    );
    sc.expect(client, "5000 replies received", secs(120));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn mdclient2_interrupted_while_waiting_exits_cleanly() {
    let mut sc = Scenario::new("mdclient2-int");
    start_broker(&mut sc);
    // No worker: the requests queue in the broker and the client waits.
    let client = sc.start_spec(
        "mdclient2",
        Spec::new(bin!("mdclient2"), &["-v"]).env("ZGUIDE_REQUESTS", 3),
    );
    sc.expect(client, "I: send request to 'echo' service:", secs(30));
    sc.stop_cleanly(client, secs(20));
    sc.expect(client, "W: interrupt received, killing client...", secs(5));
    sc.expect(client, "0 replies received", secs(5));
}

#[test]
fn clients_interrupted_while_waiting_exit_cleanly() {
    let mut sc = Scenario::new("md-clients-int");
    // No broker at all: both clients wait in their first request.
    let mdclient = sc.start("mdclient", bin!("mdclient"), &["-v"]);
    let ticlient = sc.start("ticlient", bin!("ticlient"), &["-v"]);
    sc.expect(mdclient, "I: send request to 'echo' service:", secs(30));
    sc.expect(
        ticlient,
        "I: send request to 'titanic.request' service:",
        secs(30),
    );
    for pid in [mdclient, ticlient] {
        sc.stop_cleanly(pid, secs(20));
        sc.expect(pid, "W: interrupt received, killing client...", secs(5));
    }
    sc.expect(mdclient, "0 requests/replies processed", secs(5));
}

#[test]
fn killing_the_worker_mid_run_makes_the_client_retry_then_give_up() {
    let mut sc = Scenario::new("mdworker-kill");
    let broker = start_quiet_broker(&mut sc);
    let worker = sc.start("mdworker", bin!("mdworker"), &[]);
    // The C default count (100,000): the client is still busy when the
    // worker dies.
    let client = sc.start("mdclient", bin!("mdclient"), &["-v"]);
    sc.expect(client, "I: received reply:", secs(60));
    sc.kill(worker);
    sc.expect(client, "W: no reply, reconnecting...", secs(30));
    sc.expect(client, "W: no reply, reconnecting...", secs(30));
    sc.expect(client, "W: permanent error, abandoning", secs(30));
    let line = sc.expect(client, "requests/replies processed", secs(30));
    let done: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(done > 0 && done < 100_000, "{line}");
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(sc.count(client, "W: no reply, reconnecting..."), 2);
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn worker_reregisters_after_broker_restart_and_serves_again() {
    let mut sc = Scenario::new("mdbroker-restart");
    let broker = start_broker(&mut sc);
    let worker = start_worker(&mut sc, broker, "mdworker");
    let first = sc.start_spec(
        "mdclient-1",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 50),
    );
    sc.expect(first, "50 requests/replies processed", secs(60));

    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "--- restarted ---", secs(5));
    sc.expect(broker, "is active at", secs(30));
    // The worker's next HEARTBEAT reaches a broker that does not know it;
    // the broker answers DISCONNECT and the worker registers again, well
    // within the heartbeat expiry (3 × 2.5 s); allow generous slack.
    sc.expect(broker, "I: registering new worker", secs(30));
    let second = sc.start_spec(
        "mdclient-2",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 50),
    );
    sc.expect(second, "50 requests/replies processed", secs(60));
    sc.stop_cleanly(worker, secs(20));
    sc.stop_cleanly(broker, secs(20));
}

// ---------------------------------------------------------------- §29 MMI

#[test]
fn mmiecho_reports_no_broker_then_404_then_200() {
    let mut sc = Scenario::new("mmiecho");
    let lonely = sc.start("mmiecho-no-broker", bin!("mmiecho"), &[]);
    sc.expect(
        lonely,
        "E: no response from broker, make sure it's running",
        secs(60),
    );
    assert_eq!(sc.wait_exit(lonely, secs(10)), 0);

    let broker = start_broker(&mut sc);
    let before = sc.start("mmiecho-404", bin!("mmiecho"), &[]);
    sc.expect(before, "Lookup echo service: 404", secs(30));
    start_worker(&mut sc, broker, "mdworker");
    let after = sc.start("mmiecho-200", bin!("mmiecho"), &[]);
    sc.expect(after, "Lookup echo service: 200", secs(30));
    sc.stop_cleanly(broker, secs(20));
}

// ---------------------------------------------------------------- raw frames

#[test]
fn raw_frames_request_reply_heartbeat_and_mmi() {
    let mut sc = Scenario::new("mdp-raw");
    let broker = start_broker(&mut sc);
    let report = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // A worker speaking MDP/0.1 by hand.
        let worker = probe(&ctx, zmq::DEALER);
        send(&worker, &[b"", b"MDPW01", b"\x01", b"echo"]);
        // MMI sees it (the lookup may race the READY: retry briefly).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = mmi(&ctx, b"mmi.service", b"echo");
            if answer == frames(&[b"MDPC01", b"mmi.service", b"200"]) {
                break;
            }
            assert!(Instant::now() < deadline, "never 200: {answer:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            mmi(&ctx, b"mmi.service", b"nobody"),
            frames(&[b"MDPC01", b"mmi.service", b"404"])
        );
        assert_eq!(
            mmi(&ctx, b"mmi.nonsense", b"echo"),
            frames(&[b"MDPC01", b"mmi.nonsense", b"501"])
        );
        // A lookup must not have created the service it looked up.
        assert_eq!(
            mmi(&ctx, b"mmi.service", b"nobody"),
            frames(&[b"MDPC01", b"mmi.service", b"404"])
        );

        // A REQ client: the broker adds the REQUEST envelope for the worker.
        let client = probe(&ctx, zmq::REQ);
        send(&client, &[b"MDPC01", b"echo", b"Hello", b"world"]);
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(request.len(), 7, "{request:?}");
        assert_eq!(&request[..3], &frames(&[b"", b"MDPW01", b"\x02"])[..]);
        assert_eq!(&request[4..], &frames(&[b"", b"Hello", b"world"])[..]);
        let client_id = request[3].clone();
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &client_id, b"", b"Hi", b"there"],
        );
        assert_eq!(
            recv(&client),
            frames(&[b"MDPC01", b"echo", b"Hi", b"there"])
        );

        // Idle workers get HEARTBEAT every 2.5 s.
        assert_eq!(recv(&worker), frames(&[b"", b"MDPW01", b"\x04"]));
        send(&worker, &[b"", b"MDPW01", b"\x04"]);

        // A DEALER client must send the empty frame itself.
        let dealer = probe(&ctx, zmq::DEALER);
        send(&dealer, &[b"", b"MDPC01", b"echo", b"async"]);
        let request = recv_skip_heartbeats(&worker);
        let client_id = request[3].clone();
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &client_id, b"", b"done"],
        );
        assert_eq!(recv(&dealer), frames(&[b"", b"MDPC01", b"echo", b"done"]));
        // Worker leaves politely: no answer, and MMI forgets it.
        send(&worker, &[b"", b"MDPW01", b"\x05"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while mmi(&ctx, b"mmi.service", b"echo") != frames(&[b"MDPC01", b"mmi.service", b"404"]) {
            assert!(Instant::now() < deadline, "worker not forgotten");
            std::thread::sleep(Duration::from_millis(50));
        }
        "ok"
    });
    assert_eq!(report, "ok");
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn raw_frames_protocol_errors_get_disconnect() {
    let mut sc = Scenario::new("mdp-raw-errors");
    let broker = start_broker(&mut sc);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let disconnect = frames(&[b"", b"MDPW01", b"\x05"]);
        let cases: Vec<(&str, Vec<&[u8]>)> = vec![
            ("heartbeat from unknown", vec![b"", b"MDPW01", b"\x04"]),
            (
                "reply from unknown",
                vec![b"", b"MDPW01", b"\x03", b"client", b"", b"x"],
            ),
            ("unknown command", vec![b"", b"MDPW01", b"\x09"]),
            (
                "request from a worker",
                vec![b"", b"MDPW01", b"\x02", b"c", b"", b"x"],
            ),
            (
                "reserved service",
                vec![b"", b"MDPW01", b"\x01", b"mmi.service"],
            ),
            ("ready without service", vec![b"", b"MDPW01", b"\x01"]),
            (
                "ready with extra frames",
                vec![b"", b"MDPW01", b"\x01", b"echo", b"x"],
            ),
        ];
        for (what, parts) in cases {
            let worker = probe(&ctx, zmq::DEALER);
            send(&worker, &parts);
            assert_eq!(recv(&worker), disconnect, "{what}");
        }
        // A second READY from a registered worker.
        let worker = probe(&ctx, zmq::DEALER);
        send(&worker, &[b"", b"MDPW01", b"\x01", b"echo"]);
        send(&worker, &[b"", b"MDPW01", b"\x01", b"echo"]);
        assert_eq!(recv_skip_heartbeats(&worker), disconnect, "second READY");
        // A REPLY from an idle registered worker.
        let worker = probe(&ctx, zmq::DEALER);
        send(&worker, &[b"", b"MDPW01", b"\x01", b"echo"]);
        send(&worker, &[b"", b"MDPW01", b"\x03", b"c", b"", b"x"]);
        assert_eq!(recv_skip_heartbeats(&worker), disconnect, "idle REPLY");
        // Nothing is left registered for echo.
        assert_eq!(
            mmi(&ctx, b"mmi.service", b"echo"),
            frames(&[b"MDPC01", b"mmi.service", b"404"])
        );
    });
    assert!(sc.output(broker).contains("second READY"));
    sc.assert_running(broker);
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn expired_workers_behind_a_live_one_are_purged() {
    // zguide #579: the C purge stops at the first live worker, so a dead
    // worker queued behind a heartbeating one stays registered forever.
    let mut sc = Scenario::new("mdp-purge");
    let broker = start_broker(&mut sc);
    // First in the waiting list: a real worker that heartbeats.
    start_worker(&mut sc, broker, "mdworker");
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // Second: a raw worker for "silent" that never says anything again.
        let silent = probe(&ctx, zmq::DEALER);
        send(&silent, &[b"", b"MDPW01", b"\x01", b"silent"]);
        let registered = Instant::now() + Duration::from_secs(10);
        while mmi(&ctx, b"mmi.service", b"silent") != frames(&[b"MDPC01", b"mmi.service", b"200"]) {
            assert!(
                Instant::now() < registered,
                "silent worker never registered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Expiry is 7.5 s, purges run every 2.5 s: gone within ~10 s.
        let deadline = Instant::now() + Duration::from_secs(40);
        while mmi(&ctx, b"mmi.service", b"silent") != frames(&[b"MDPC01", b"mmi.service", b"404"]) {
            assert!(Instant::now() < deadline, "silent worker never purged");
            std::thread::sleep(Duration::from_millis(250));
        }
        // The live one is still there.
        assert_eq!(
            mmi(&ctx, b"mmi.service", b"echo"),
            frames(&[b"MDPC01", b"mmi.service", b"200"])
        );
        drop(silent);
    });
    sc.stop_cleanly(broker, secs(20));
}

// ---------------------------------------------------------------- bad input

/// Random multipart messages: random frame counts and bytes, valid headers
/// with bad commands and frame counts, and a few huge frames.
fn random_message(rng: &mut u64, n: usize, services: &[&[u8]]) -> Frames {
    let mut next = || {
        // xorshift64*: reproducible, no dependency.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let bytes = |len: usize, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
        (0..len).map(|_| next() as u8).collect()
    };
    let count = (next() % 9) as usize;
    let mut msg: Frames = (0..count)
        .map(|_| {
            let len = (next() % 24) as usize;
            bytes(len, &mut next)
        })
        .collect();
    match next() % 6 {
        0 => {} // pure noise
        1 | 2 => {
            // worker header, any command byte 0..=7, random tail
            let command = vec![(next() % 8) as u8];
            let mut head = frames(&[b"", b"MDPW01"]);
            head.push(command);
            head.extend(msg);
            msg = head;
        }
        _ => {
            // client header, a known or random service, random body
            let service = if next() % 2 == 0 {
                services[(next() as usize) % services.len()].to_vec()
            } else {
                bytes((next() % 12) as usize, &mut next)
            };
            let mut head = frames(&[b"", b"MDPC01"]);
            head.push(service);
            head.extend(msg);
            msg = head;
        }
    }
    // A handful of huge frames (1–4 MiB), spread over the run.
    if n % 2500 == 1234 {
        let size = (1 + (n / 2500) % 4) << 20;
        msg.push(vec![0xAB; size]);
    }
    msg
}

fn fuzz(ctx: &zmq::Context, count: usize, services: &[&[u8]], seed: u64) {
    let mut rng = seed;
    // Several identities, so the broker sees many "workers" and "clients".
    let sockets: Vec<zmq::Socket> = (0..16).map(|_| probe(ctx, zmq::DEALER)).collect();
    for n in 0..count {
        let msg = random_message(&mut rng, n, services);
        let socket = &sockets[n % sockets.len()];
        if msg.is_empty() {
            socket.send(&b""[..], 0).unwrap();
        } else {
            socket.send_multipart(msg, 0).unwrap();
        }
        // Drain whatever came back (DISCONNECTs, replies), never block.
        for s in &sockets {
            while s.recv_multipart(zmq::DONTWAIT).is_ok() {}
        }
    }
}

#[test]
fn broker_survives_10000_random_messages_with_bounded_memory() {
    let mut sc = Scenario::new("mdbroker-fuzz");
    let broker = start_quiet_broker(&mut sc);
    let worker = sc.start("mdworker", bin!("mdworker"), &[]);
    let warmup = sc.start_spec(
        "mdclient-warmup",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 200),
    );
    sc.expect(warmup, "200 requests/replies processed", secs(60));
    let pid = sc.os_pid(broker);
    let before = rss_kib(pid);

    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        fuzz(
            &ctx,
            10_000,
            &[b"echo", b"mmi.service", b"mmi.x", b"other"],
            0x5EED,
        );
    });
    sc.assert_running(broker);
    // Still serving correct replies.
    let after_fuzz = sc.start_spec(
        "mdclient-after",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 500),
    );
    sc.expect(after_fuzz, "500 requests/replies processed", secs(120));
    let ok = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        mmi(&ctx, b"mmi.service", b"echo")
    });
    assert_eq!(ok, frames(&[b"MDPC01", b"mmi.service", b"200"]));
    // Bound: 32 MiB over the warmed-up size. Huge frames are freed once
    // handled, requests for unserved services expire after 10 s.
    let after = rss_kib(pid);
    eprintln!("mdbroker RSS: {before} KiB before, {after} KiB after the fuzz");
    // The noise really reached the broker's error paths.
    assert!(sc.count(broker, "invalid") > 1000, "{}", sc.report());
    assert!(
        after < before + 32 * 1024,
        "mdbroker RSS grew from {before} KiB to {after} KiB"
    );
    sc.assert_running(worker);
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn worker_survives_garbage_from_a_fake_broker() {
    // A test-side ROUTER plays the broker, so the worker API's own checks
    // are what is tested (the real broker never sends garbage).
    let mut sc = Scenario::new("mdworker-garbage");
    let router = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.set_rcvtimeo(30_000).unwrap();
        router.bind("tcp://*:5555").unwrap();
        router
    });
    // The bound socket keeps its namespace; the next probe thread uses it.
    let worker = sc.start("mdworker", bin!("mdworker"), &[]);
    let reply = sc.in_namespace(move || {
        let hello = router.recv_multipart(0).expect("READY from mdworker");
        assert_eq!(
            &hello[1..],
            &frames(&[b"", b"MDPW01", b"\x01", b"echo"])[..]
        );
        let id = hello[0].clone();
        let garbage: Vec<Vec<&[u8]>> = vec![
            vec![],
            vec![b"x"],
            vec![b"", b"MDPW01"],
            vec![b"", b"MDPC01", b"\x02"],
            vec![b"junk", b"MDPW01", b"\x02", b"c", b"", b"x"],
            vec![b"", b"MDPW01", b"\x07"],
            vec![b"", b"MDPW01", b"\x02"],
            vec![b"", b"MDPW01", b"\x02", b"c"],
            vec![b"", b"MDPW01", b"\x02", b"c", b"not-empty", b"x"],
            vec![b"", b"MDPW01", b"\x03", b"c", b"", b"x"],
        ];
        for parts in garbage {
            let mut msg: Vec<&[u8]> = vec![&id];
            msg.extend(parts);
            router.send_multipart(msg, 0).unwrap();
        }
        router
            .send_multipart(
                [&id[..], b"", b"MDPW01", b"\x02", b"client", b"", b"ping"],
                0,
            )
            .unwrap();
        loop {
            let msg = router.recv_multipart(0).expect("a reply from mdworker");
            if msg.get(3).map(Vec::as_slice) == Some(b"\x03") {
                return msg[1..].to_vec();
            }
        }
    });
    assert_eq!(
        reply,
        frames(&[b"", b"MDPW01", b"\x03", b"client", b"", b"ping"])
    );
    assert!(sc.output(worker).contains("invalid message from broker"));
    sc.stop_cleanly(worker, secs(20));
}

// ---------------------------------------------------------------- §28 tripping

#[test]
fn tripping_prints_both_rates_in_the_c_format() {
    let mut sc = Scenario::new("tripping");
    let tripping = sc.start_spec(
        "tripping",
        Spec::new(bin!("tripping"), &[]).env("ZGUIDE_REQUESTS", 1000),
    );
    sc.expect(tripping, "Setting up test...", secs(30));
    sc.expect(tripping, "Synchronous round-trip test...", secs(30));
    let sync = sc.expect(tripping, " calls/second", secs(120));
    sc.expect(tripping, "Asynchronous round-trip test...", secs(30));
    let asynchronous = sc.expect(tripping, " calls/second", secs(120));
    for line in [&sync, &asynchronous] {
        let number = line
            .strip_prefix(' ')
            .and_then(|l| l.strip_suffix(" calls/second"))
            .unwrap_or_else(|| panic!("not the C format: {line:?}"));
        assert!(number.parse::<u64>().unwrap() > 0, "{line}");
    }
    assert_eq!(sc.wait_exit(tripping, secs(30)), 0);
}

#[test]
fn tripping_exits_cleanly_on_sigint() {
    let mut sc = Scenario::new("tripping-int");
    // The C counts: long enough to be interrupted mid-test.
    let tripping = sc.start("tripping", bin!("tripping"), &[]);
    sc.expect(tripping, "Synchronous round-trip test...", secs(30));
    sc.stop_cleanly(tripping, secs(20));
}

// ---------------------------------------------------------------- §30 Titanic

fn titanic_dir_files(sc: &Scenario) -> Vec<String> {
    match std::fs::read_dir(sc.dir().join(".titanic")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn ticlient_gets_its_reply_when_the_worker_comes_late() {
    let mut sc = Scenario::new("titanic");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &["-v"]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    let client = sc.start("ticlient", bin!("ticlient"), &[]);
    let line = sc.expect(client, "I: request UUID [032] ", secs(30));
    let uuid = line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(uuid.len(), 32, "{line}");
    sc.expect(client, "I: no reply yet, trying again...", secs(30));
    sc.expect(titanic, &format!("I: processing request {uuid}"), secs(30));
    assert!(titanic_dir_files(&sc).contains(&format!("{uuid}.req")));
    start_worker(&mut sc, broker, "mdworker");
    sc.expect(client, "Reply: Hello world", secs(60));
    assert_eq!(sc.wait_exit(client, secs(30)), 0);
    // titanic.close removed both files; the queue line is marked done.
    let files = titanic_dir_files(&sc);
    assert!(!files.iter().any(|f| f.starts_with(&uuid)), "{files:?}");
    let queue = std::fs::read_to_string(sc.dir().join(".titanic/queue")).unwrap();
    assert_eq!(queue, format!("+{uuid}\n"));
    sc.stop_cleanly(titanic, secs(20));
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn titanic_request_survives_kills_of_titanic_and_broker() {
    let mut sc = Scenario::new("titanic-restarts");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &["-v"]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    let client = sc.start("ticlient", bin!("ticlient"), &[]);
    let line = sc.expect(client, "I: request UUID [032] ", secs(30));
    let uuid = line.rsplit(' ').next().unwrap().to_string();
    sc.expect(titanic, &format!("I: processing request {uuid}"), secs(30));

    // Accepted with 200: now kill everything but the client, restart.
    sc.kill(titanic);
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "is active at", secs(30));
    sc.restart(titanic);
    sc.expect(titanic, &format!("I: processing request {uuid}"), secs(30));
    // And once more with the broker alone, while titanic keeps running.
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "is active at", secs(30));
    // The late worker; titanic re-registers its services by itself.
    sc.start("mdworker", bin!("mdworker"), &[]);
    sc.expect(client, "Reply: Hello world", secs(90));
    assert_eq!(sc.wait_exit(client, secs(30)), 0);
    assert_eq!(sc.count(client, "Reply:"), 1);
    sc.stop_cleanly(titanic, secs(20));
    sc.stop_cleanly(broker, secs(20));
}

/// A raw TSP call: `[MDPC01][service][body…]` over a REQ socket, retried on
/// a fresh socket like the Lazy Pirate (a request the broker handed to a
/// worker that just died is lost; MDP clients retry).
fn tsp(ctx: &zmq::Context, service: &[u8], body: &[&[u8]]) -> Frames {
    let mut msg: Vec<&[u8]> = vec![b"MDPC01", service];
    msg.extend_from_slice(body);
    for _attempt in 0..10 {
        let client = probe(ctx, zmq::REQ);
        client.set_rcvtimeo(3000).unwrap();
        send(&client, &msg);
        if let Ok(mut reply) = client.recv_multipart(0) {
            assert_eq!(&reply[..2], &frames(&[b"MDPC01", service])[..]);
            reply.drain(..2);
            return reply;
        }
    }
    panic!("no answer from {}", String::from_utf8_lossy(service));
}

#[test]
fn titanic_raw_frames_refuse_paths_and_bad_requests() {
    let mut sc = Scenario::new("titanic-raw");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    // A file outside the store that a path attack would touch.
    let outside = sc.dir().join("victim.rep");
    std::fs::write(&outside, b"precious").unwrap();
    let uuid = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let refused = frames(&[b"400"]);
        for bad in [
            &b"../victim"[..],
            b"../../../../../etc/passwd",
            b"",
            b"0123456789ABCDEF0123456789ABCDE/",
            b"0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(tsp(&ctx, b"titanic.reply", &[bad]), refused, "{bad:?}");
            assert_eq!(tsp(&ctx, b"titanic.close", &[bad]), refused, "{bad:?}");
        }
        // Unknown but well-formed (either case): 400 for reply, 200 close.
        let unknown = b"0123456789abcdef0123456789ABCDEF";
        assert_eq!(tsp(&ctx, b"titanic.reply", &[unknown]), refused);
        assert_eq!(tsp(&ctx, b"titanic.close", &[unknown]), frames(&[b"200"]));
        // A request needs a service and a body.
        assert_eq!(tsp(&ctx, b"titanic.request", &[b"echo"]), refused);
        assert_eq!(tsp(&ctx, b"titanic.request", &[b"", b"x"]), refused);
        // A good request: 200 + UUID, then 300 while no worker exists.
        let accepted = tsp(&ctx, b"titanic.request", &[b"echo", b"Hello", b"raw"]);
        assert_eq!(accepted.len(), 2, "{accepted:?}");
        assert_eq!(accepted[0], b"200");
        let uuid = accepted[1].clone();
        assert_eq!(uuid.len(), 32);
        assert_eq!(tsp(&ctx, b"titanic.reply", &[&uuid]), frames(&[b"300"]));
        uuid
    });
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    start_worker(&mut sc, broker, "mdworker");
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = tsp(&ctx, b"titanic.reply", &[&uuid]);
            if reply[0] == b"200" {
                assert_eq!(reply, frames(&[b"200", b"Hello", b"raw"]));
                break;
            }
            assert_eq!(reply, frames(&[b"300"]));
            assert!(Instant::now() < deadline, "never answered");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(tsp(&ctx, b"titanic.close", &[&uuid]), frames(&[b"200"]));
        assert_eq!(tsp(&ctx, b"titanic.reply", &[&uuid]), frames(&[b"400"]));
    });
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn titanic_survives_10000_random_requests_with_bounded_memory() {
    let mut sc = Scenario::new("titanic-fuzz");
    start_quiet_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    sc.start("mdworker", bin!("mdworker"), &[]);
    // Warm up: one full TSP round trip.
    let warmup = sc.start("ticlient-warmup", bin!("ticlient"), &[]);
    sc.expect(warmup, "Reply: Hello world", secs(60));
    let pid = sc.os_pid(titanic);
    let before = rss_kib(pid);

    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let mut rng: u64 = 0x7171_7A1C;
        let mut next = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let dealer = probe(&ctx, zmq::DEALER);
        let mut outstanding = 0usize;
        for n in 0..10_000usize {
            // Mostly reply/close with random ids; 1 in 25 a random request
            // (each stored one stays pending: its service does not exist).
            let service: &[u8] = match next() % 25 {
                0 => b"titanic.request",
                r if r % 2 == 0 => b"titanic.reply",
                _ => b"titanic.close",
            };
            let mut msg: Frames = frames(&[b"", b"MDPC01", service]);
            let count = 1 + next() % 5;
            for _ in 0..count {
                let len = match next() % 4 {
                    0 => 32, // uuid-sized noise
                    _ => (next() % 40) as usize,
                };
                msg.push((0..len).map(|_| next() as u8).collect());
            }
            if n % 2500 == 1234 {
                msg.push(vec![0x5A; (1 + (n / 2500) % 4) << 20]);
            }
            dealer.send_multipart(msg, 0).unwrap();
            outstanding += 1;
            // Keep at most 100 in flight: titanic answers one at a time.
            while outstanding >= 100 {
                dealer.recv_multipart(0).expect("titanic answers");
                outstanding -= 1;
            }
        }
        while outstanding > 0 {
            dealer.recv_multipart(0).expect("titanic answers");
            outstanding -= 1;
        }
    });
    sc.assert_running(titanic);
    // Still serving: a full TSP round trip.
    let after_fuzz = sc.start("ticlient-after", bin!("ticlient"), &[]);
    sc.expect(after_fuzz, "Reply: Hello world", secs(120));
    assert_eq!(sc.wait_exit(after_fuzz, secs(30)), 0);
    let after = rss_kib(pid);
    eprintln!("titanic RSS: {before} KiB before, {after} KiB after the fuzz");
    // Bound: 32 MiB over the warmed-up size (nothing is kept in memory;
    // the store is on disk).
    assert!(
        after < before + 32 * 1024,
        "titanic RSS grew from {before} KiB to {after} KiB"
    );
    sc.stop_cleanly(titanic, secs(20));
}

/// Joins the network namespace of a running scenario process, for a probe
/// thread that must run while the test goes on (`in_namespace` blocks).
fn enter_namespace_of(os_pid: i32) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/proc/{os_pid}/ns/net")).unwrap();
    // SAFETY: setns on this thread only, with a valid namespace fd.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn titanic_killed_at_random_moments_answers_every_accepted_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use zguide::mdp::titanic::decode;

    let mut sc = Scenario::new("titanic-crashes");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    start_worker(&mut sc, broker, "mdworker");

    // A client that keeps submitting requests while titanic gets killed;
    // it remembers what was accepted with 200.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let broker_pid = sc.os_pid(broker);
    let submitter = {
        let stop = stop.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            enter_namespace_of(broker_pid);
            let ctx = zmq::Context::new();
            let mut accepted: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut client = probe(&ctx, zmq::REQ);
            client.set_rcvtimeo(2000).unwrap();
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) && n < 2000 {
                n += 1;
                let payload = format!("payload-{n}").into_bytes();
                send(&client, &[b"MDPC01", b"titanic.request", b"echo", &payload]);
                match client.recv_multipart(0) {
                    Ok(reply) if reply.len() == 4 && reply[2] == b"200" => {
                        accepted.push((reply[3].clone(), payload));
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // No answer (titanic was down): fresh socket, go on.
                        client = probe(&ctx, zmq::REQ);
                        client.set_rcvtimeo(2000).unwrap();
                    }
                }
            }
            accepted
        })
    };
    let mut rng = 0x1234_5678_9ABC_DEF0u64 ^ u64::from(std::process::id());
    for round in 1..=4 {
        // Let some requests through after each restart...
        let deadline = Instant::now() + secs(60);
        while progress.load(Ordering::SeqCst) < round * 5 {
            assert!(Instant::now() < deadline, "no progress\n{}", sc.report());
            std::thread::sleep(Duration::from_millis(20));
        }
        // ...then kill at a random moment (fault injection, not a wait).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 400));
        sc.kill(titanic);
        sc.restart(titanic);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let accepted = submitter.join().unwrap();
    assert!(!accepted.is_empty(), "nothing accepted\n{}", sc.report());

    // Every accepted request is answered, with its own payload.
    let pending = accepted.clone();
    let unanswered = sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut left = pending;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|(uuid, payload)| {
                let reply = tsp(&ctx, b"titanic.reply", &[uuid]);
                if reply.first().map(Vec::as_slice) == Some(b"200") {
                    assert_eq!(reply, vec![b"200".to_vec(), payload.clone()]);
                    false
                } else {
                    assert_eq!(reply, frames(&[b"300"]), "accepted request lost");
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(200));
        }
        left.len()
    });
    assert_eq!(unanswered, 0, "{}", sc.report());
    // Nothing half-written: every stored file decodes.
    for name in titanic_dir_files(&sc) {
        if name.ends_with(".req") || name.ends_with(".rep") {
            let bytes = std::fs::read(sc.dir().join(".titanic").join(&name)).unwrap();
            decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    eprintln!("{} requests accepted across 4 SIGKILLs", accepted.len());
    sc.stop_cleanly(titanic, secs(20));
}
