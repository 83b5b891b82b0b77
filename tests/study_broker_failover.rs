//! Clients and workers that know both brokers of a pair (study part 3, issue
//! 18): `broker-client` and `broker-worker` with `--connect` given twice,
//! against two plain `broker` processes in one scenario (5555 and 5565 on
//! the scenario's loopback), the first killed with SIGKILL mid-stream; a
//! client whose broker is only slow, which must stay; and a worker turned
//! away by a passive broker (a raw ROUTER here), which must move on after
//! its back-off. Every wait is on output, and bounded.

mod common;

use std::time::Instant;

use common::wire;
use common::{secs, Pid, Scenario};
use zguide::broker::protocol::{parse_worker, WorkerCommand};

const FIRST: &str = "tcp://localhost:5555";
const SECOND: &str = "tcp://localhost:5565";

fn start_broker(sc: &mut Scenario, label: &str, args: &[&str]) -> Pid {
    let broker = sc.start(label, bin!("broker"), args);
    sc.expect(broker, "broker is active at", secs(30));
    broker
}

/// The correlation ids of the client's `<n> 200 <body>` lines, in order.
fn answered(sc: &Scenario, client: Pid, body: &str) -> Vec<u64> {
    let suffix = format!(" 200 {body}");
    sc.lines(client)
        .iter()
        .filter_map(|line| line.strip_suffix(&suffix)?.parse().ok())
        .collect()
}

/// Every request 1..=n answered exactly once, nothing given up.
fn assert_each_answered_once(sc: &Scenario, client: Pid, body: &str, n: u64) {
    let mut ids = answered(sc, client, body);
    ids.sort_unstable();
    if ids != (1..=n).collect::<Vec<_>>() {
        sc.fail(&format!(
            "expected one `<n> 200 {body}` line for each n in 1..={n}, got {} lines: {ids:?}",
            ids.len()
        ));
    }
    if sc.count(client, "gave-up") > 0 {
        sc.fail("a request was given up");
    }
}

/// Two brokers, an echo worker and a client that know both; the first
/// broker is killed once the worker has served `kill_after` requests. The
/// client must say it fails over, the worker must go to the second broker.
/// Returns the scenario, the client, the worker and the client's failover
/// line.
fn fail_over_mid_stream(
    name: &str,
    broker_args: &[&str],
    worker_args: &[&str],
    client_args: &[&str],
    kill_after: usize,
) -> (Scenario, Pid, Pid, String) {
    let mut sc = Scenario::new(name);
    let mut first_args = vec!["--bind", "tcp://*:5555"];
    first_args.extend(broker_args);
    let mut second_args = vec!["--bind", "tcp://*:5565"];
    second_args.extend(broker_args);
    let first = start_broker(&mut sc, "broker-1", &first_args);
    start_broker(&mut sc, "broker-2", &second_args);

    let mut args = vec!["--verbose", "--connect", FIRST, "--connect", SECOND];
    args.extend(worker_args);
    args.push("echo");
    let worker = sc.start("broker-worker", bin!("broker-worker"), &args);
    // stderr (the log) and stdout are read apart: no order between them.
    sc.expect(
        worker,
        &format!("I: worker connecting to {FIRST}"),
        secs(30),
    );
    sc.expect_count(worker, "I: worker ready for echo", 1, secs(10));

    let mut args = vec!["--connect", FIRST, "--connect", SECOND];
    args.extend(client_args);
    args.extend(["echo", "job"]);
    let client = sc.start("broker-client", bin!("broker-client"), &args);

    sc.wait_for(worker, secs(60), "requests served", |out| {
        out.matches("I: request ").count() >= kill_after
    });
    sc.kill(first);
    let line = sc.expect(client, &format!("W: broker {FIRST} silent for "), secs(30));
    if !line.ends_with(&format!(" ms, failing over to {SECOND}")) {
        sc.fail(&format!("not the failover line: {line:?}"));
    }
    sc.expect(
        worker,
        &format!("I: worker connecting to {SECOND}"),
        secs(30),
    );
    (sc, client, worker, line)
}

#[test]
fn a_stream_fails_over_to_the_second_broker_and_every_request_is_answered_once() {
    let started = Instant::now();
    // Short timings: brokers and worker heartbeat every 200 ms (dead after
    // 600 ms), the client pings after 300 ms of silence and fails over after
    // 1 s of it.
    let (mut sc, client, worker, _) = fail_over_mid_stream(
        "broker-failover-stream",
        &["--heartbeat-ms", "200"],
        &["--heartbeat-ms", "200"],
        &[
            "--ping-interval-ms",
            "300",
            "--broker-ttl-ms",
            "1000",
            "--timeout-ms",
            "500",
            "--retries",
            "6",
            "--requests",
            "100",
            "--interval-ms",
            "20",
        ],
        30,
    );
    let code = sc.wait_exit(client, secs(60));
    assert_eq!(code, 0, "{}", sc.report());
    assert_each_answered_once(&sc, client, "job", 100);
    assert_eq!(sc.count(client, "failing over"), 1, "{}", sc.report());
    // The worker served the rest on the second broker.
    let out = sc.output(worker);
    let after = &out[out.find(&format!("connecting to {SECOND}")).unwrap()..];
    assert!(after.contains("I: request 100 from"), "{}", sc.report());
    eprintln!("short-timing failover test: {:?}", started.elapsed());
}

#[test]
fn a_batched_stream_fails_over_at_the_default_six_seconds() {
    let started = Instant::now();
    // Default timings (client TTL 6 s, worker liveness 3 x 2.5 s); batches of
    // one every 100 ms, so many requests are pending when the client fails
    // over and are resent at once.
    let (mut sc, client, _worker, line) = fail_over_mid_stream(
        "broker-failover-default",
        &[],
        &[],
        &[
            "--async",
            "--batch",
            "1",
            "--interval-ms",
            "100",
            "--requests",
            "60",
        ],
        20,
    );
    let silent_ms: u64 = line
        .split(" silent for ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| sc.fail(&format!("no duration in {line:?}")));
    assert!(
        (6000..8000).contains(&silent_ms),
        "silent for {silent_ms} ms"
    );
    let summary = sc.expect(client, "sent 60 replies", secs(60));
    if !summary.starts_with("sent 60 replies 60 ok 60 failed 0 gave-up 0 ") {
        sc.fail(&format!("not every request answered once: {summary}"));
    }
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    eprintln!("default-timing failover test: {:?}", started.elapsed());
}

#[test]
fn a_client_whose_broker_is_only_slow_does_not_fail_over() {
    let started = Instant::now();
    let mut sc = Scenario::new("broker-failover-slow");
    let broker = start_broker(&mut sc, "broker-1", &["--bind", "tcp://*:5555"]);
    start_broker(&mut sc, "broker-2", &["--bind", "tcp://*:5565"]);
    let mut workers = Vec::new();
    for service in ["slow1", "slow2"] {
        let worker = sc.start(
            service,
            bin!("broker-worker"),
            &[
                "--verbose",
                "--delay-ms",
                "8000",
                "--connect",
                FIRST,
                service,
            ],
        );
        sc.expect_count(worker, "I: worker ready for", 1, secs(30));
        workers.push(worker);
    }
    // Three requests 1.5 s apart, each resent after 2.5 s and 5 s: the
    // client sends something at least every 2 s, so only a PING it sends
    // because it *heard* nothing brings the PONGs that keep the broker
    // alive past the 6 s TTL while the first request takes 8 s.
    let stream = [
        "--async",
        "--batch",
        "1",
        "--interval-ms",
        "1500",
        "--requests",
        "3",
    ];
    let mut alone_args = vec!["--connect", FIRST];
    alone_args.extend(stream);
    alone_args.push("slow1");
    let alone = sc.start("client-alone", bin!("broker-client"), &alone_args);
    let mut paired_args = vec!["--connect", FIRST, "--connect", SECOND];
    paired_args.extend(stream);
    paired_args.push("slow2");
    let paired = sc.start("client-paired", bin!("broker-client"), &paired_args);
    // The first requests answered (8 s): the second ones reach the workers.
    for &worker in &workers {
        sc.wait_for(worker, secs(30), "a second request", |out| {
            out.matches("I: request ").count() >= 2
        });
    }
    for (client, gone) in [(alone, "no word from the broker"), (paired, "failing over")] {
        if sc.count(client, gone) > 0 {
            sc.fail(&format!(
                "the client took a slow broker for a dead one ({gone:?})"
            ));
        }
    }
    sc.stop_cleanly(alone, secs(10));
    sc.stop_cleanly(paired, secs(10));
    sc.assert_running(broker);
    eprintln!("slow-broker test: {:?}", started.elapsed());
}

#[test]
fn a_worker_turned_away_after_ready_registers_with_the_next_broker_after_its_back_off() {
    let started = Instant::now();
    let mut sc = Scenario::new("broker-failover-passive");
    start_broker(&mut sc, "broker-2", &["--bind", "tcp://*:5565"]);
    // The first "broker" is passive: a raw ROUTER that answers READY with
    // DISCONNECT (and lingers so the DISCONNECT goes out).
    let (context, passive) = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let router = wire::probe(&context, zmq::ROUTER)
            .linger(2000)
            .bind("tcp://*:5555");
        (context, router)
    });
    let worker = sc.start(
        "broker-worker",
        bin!("broker-worker"),
        &["--verbose", "--connect", FIRST, "--connect", SECOND, "echo"],
    );
    sc.expect(
        worker,
        &format!("I: worker connecting to {FIRST}"),
        secs(30),
    );
    let ready = wire::recv_until(&passive, "passive broker", secs(30), |frames| {
        matches!(
            parse_worker(&frames[1..]).map(|p| p.command),
            Ok(WorkerCommand::Ready { .. })
        )
    })
    .unwrap_or_else(|e| sc.fail(&e));
    let mut disconnect = vec![ready[0].clone()];
    disconnect.extend(WorkerCommand::Disconnect.to_frames(false));
    passive.send_multipart(disconnect, 0).unwrap();
    let refused = Instant::now();
    sc.expect(
        worker,
        &format!("reconnecting to {SECOND} in 1.0 s"),
        secs(10),
    );
    sc.expect(
        worker,
        &format!("I: worker connecting to {SECOND}"),
        secs(10),
    );
    let moved = refused.elapsed();
    // The back-off (1 s) applied; and it was the DISCONNECT, not 7.5 s of
    // silence, that moved it.
    assert!(
        moved >= std::time::Duration::from_millis(900) && moved < secs(5),
        "moved after {moved:?}\n{}",
        sc.report()
    );
    let client = sc.start(
        "broker-client",
        bin!("broker-client"),
        &["--connect", SECOND, "echo", "served"],
    );
    assert_eq!(sc.wait_exit(client, secs(30)), 0, "{}", sc.report());
    assert_each_answered_once(&sc, client, "served", 1);
    sc.expect(worker, "I: request 1 from", secs(10));
    assert_eq!(
        sc.count(worker, &format!("worker connecting to {FIRST}")),
        1,
        "no loop back to the passive broker\n{}",
        sc.report()
    );
    drop(passive);
    drop(context);
    eprintln!("passive-broker test: {:?}", started.elapsed());
}
