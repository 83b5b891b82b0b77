//! The study broker's command-line tools (study part 2): `broker-client`,
//! `broker-worker` and `brokerctl` as real processes against the real
//! `broker`, each scenario in its own network namespace (so the default
//! `tcp://localhost:5555` is fine), every wait bounded.
//!
//! The APIs under them (`zguide::broker::client`, `zguide::broker::worker`)
//! have their own unit tests against a scripted broker; these check that the
//! programs print and exit as documented.

mod common;

use common::{secs, Pid, Scenario};

fn start_broker(sc: &mut Scenario) -> Pid {
    let broker = sc.start("broker", bin!("broker"), &[]);
    sc.expect(broker, "broker is active at", secs(30));
    broker
}

fn start_worker(sc: &mut Scenario, label: &str, args: &[&str]) -> Pid {
    let worker = sc.start(label, bin!("broker-worker"), args);
    sc.expect(worker, "I: worker ready for echo in default", secs(30));
    worker
}

/// Runs a tool to its end: (exit code, everything it printed).
fn run(sc: &mut Scenario, label: &str, program: &str, args: &[&str]) -> (i32, String) {
    let pid = sc.start(label, program, args);
    let code = sc.wait_exit(pid, secs(60));
    (code, sc.output(pid))
}

#[test]
fn broker_client_gets_every_request_answered_200_one_by_one_and_in_batches() {
    let mut sc = Scenario::new("broker-tools-client");
    let broker = start_broker(&mut sc);
    let worker = start_worker(&mut sc, "worker", &["--verbose", "echo"]);

    let (code, out) = run(
        &mut sc,
        "sync",
        bin!("broker-client"),
        &["--requests", "3", "echo", "a", "b"],
    );
    assert_eq!(code, 0, "{out}");
    for n in 1..=3 {
        assert!(
            out.lines().any(|l| l == format!("{n} 200 a b")),
            "no reply line for {n}:\n{out}"
        );
    }
    sc.expect(worker, "I: request 3 from ", secs(10));

    let (code, out) = run(
        &mut sc,
        "async",
        bin!("broker-client"),
        &["--async", "--requests", "1000", "--batch", "100", "echo"],
    );
    assert_eq!(code, 0, "{out}");
    let summary = out
        .lines()
        .find(|l| l.starts_with("sent "))
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    assert!(
        summary.starts_with("sent 1000 replies 1000 ok 1000 failed 0 gave-up 0 duplicates 0 in "),
        "{summary}"
    );
    sc.stop_cleanly(worker, secs(10));
    sc.stop_cleanly(broker, secs(10));
}

#[test]
fn failures_are_reported_with_their_reason_and_exit_1() {
    let mut sc = Scenario::new("broker-tools-failures");
    start_broker(&mut sc);
    let worker = start_worker(
        &mut sc,
        "worker",
        &["--fail-every", "2", "--exit-after", "4", "echo"],
    );
    let (code, out) = run(
        &mut sc,
        "client",
        bin!("broker-client"),
        &["--requests", "4", "echo"],
    );
    assert_eq!(code, 1, "two of four failed:\n{out}");
    assert!(out.lines().any(|l| l == "1 200 hello"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("2 500 reason=failed on purpose")),
        "{out}"
    );
    // --exit-after 4: the worker ends by itself, cleanly.
    assert_eq!(sc.wait_exit(worker, secs(10)), 0);
    assert!(sc.output(worker).contains("I: served 4 requests, exiting"));
}

#[test]
fn brokerctl_lists_services_and_answers_mmi_service() {
    let mut sc = Scenario::new("broker-tools-ctl-services");
    start_broker(&mut sc);
    start_worker(&mut sc, "worker", &["echo"]);

    let (code, out) = run(&mut sc, "services", bin!("brokerctl"), &["services"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("ENVIRONMENT"))
        .unwrap_or_else(|| panic!("no header:\n{out}"));
    assert_eq!(
        lines[header].split_whitespace().collect::<Vec<_>>(),
        [
            "ENVIRONMENT",
            "SERVICE",
            "WORKERS",
            "IDLE",
            "QUEUED",
            "REQUESTS",
            "REPLIES",
            "FAILURES",
            "RATE/S"
        ]
    );
    assert!(
        lines[..header].iter().any(|l| l.starts_with("broker: ")),
        "the broker's figures come first:\n{out}"
    );
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some("echo"))
        .unwrap_or_else(|| panic!("no row for echo:\n{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["default", "echo", "1"], "{out}");

    let (code, out) = run(&mut sc, "json", bin!("brokerctl"), &["services", "--json"]);
    assert_eq!(code, 0, "{out}");
    let document: serde_json::Value = serde_json::from_str(out.trim()).expect("--json is JSON");
    assert!(document["services"].is_array(), "{out}");

    let (code, out) = run(&mut sc, "service", bin!("brokerctl"), &["service", "echo"]);
    assert_eq!((code, out.trim()), (0, "echo 200"));
    let (code, out) = run(
        &mut sc,
        "no-service",
        bin!("brokerctl"),
        &["service", "nope"],
    );
    assert_eq!((code, out.trim()), (1, "nope 404"));
}

#[test]
fn brokerctl_register_lookup_unregister_round_trip_and_a_missing_broker() {
    let mut sc = Scenario::new("broker-tools-ctl-names");
    start_broker(&mut sc);
    let ctl = bin!("brokerctl");

    let (code, out) = run(
        &mut sc,
        "register",
        ctl,
        &["register", "files", "tcp://10.0.0.7:6000"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&mut sc, "lookup", ctl, &["lookup", "files"]);
    assert_eq!((code, out.trim()), (0, "tcp://10.0.0.7:6000"));
    let (code, out) = run(&mut sc, "unregister", ctl, &["unregister", "files"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&mut sc, "gone", ctl, &["lookup", "files"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("files is not registered"), "{out}");

    let (code, out) = run(
        &mut sc,
        "no-broker",
        ctl,
        &[
            "--connect",
            "tcp://localhost:5556",
            "--timeout-ms",
            "300",
            "services",
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("E: no answer from broker at tcp://localhost:5556"),
        "{out}"
    );
}

#[test]
fn broker_worker_exits_0_on_ctrl_c_and_sigterm() {
    let mut sc = Scenario::new("broker-tools-signals");
    start_broker(&mut sc);
    let worker = start_worker(&mut sc, "worker", &["echo"]);
    sc.stop_cleanly(worker, secs(5));
    let worker = start_worker(&mut sc, "worker2", &["echo"]);
    sc.stop_cleanly_with(worker, libc::SIGTERM, secs(5));
    // With no broker at all, too (LINGER bounds the close).
    let lonely = sc.start(
        "lonely",
        bin!("broker-worker"),
        &["--connect", "tcp://localhost:5556", "echo"],
    );
    sc.expect(lonely, "I: worker ready for echo", secs(30));
    sc.stop_cleanly(lonely, secs(5));
    // A client waiting for a worker that is not there.
    let client = sc.start("client", bin!("broker-client"), &["nobody"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    sc.stop_cleanly(client, secs(5));
}

#[test]
fn the_worker_registers_again_after_a_broker_restart() {
    let mut sc = Scenario::new("broker-tools-restart");
    let broker = start_broker(&mut sc);
    start_worker(&mut sc, "worker", &["echo"]);
    let (code, out) = run(&mut sc, "before", bin!("broker-client"), &["echo"]);
    assert_eq!(code, 0, "{out}");
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "broker is active at", secs(30));
    // The new broker does not know the worker: DISCONNECT or silence, then a
    // new READY within the back-off. The client retries meanwhile.
    let (code, out) = run(
        &mut sc,
        "after",
        bin!("broker-client"),
        &["--timeout-ms", "3000", "--retries", "4", "echo"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "1 200 hello"), "{out}");
}
