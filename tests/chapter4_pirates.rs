//! Chapter 4 (Reliable Request-Reply), the Pirates: Lazy Pirate (§23), Simple
//! Pirate (§24) and Paranoid Pirate with heartbeating (§25–§26), run as real
//! processes that are crashed, killed, restarted and fed garbage.
//!
//! The workers' and lpserver's random failures are made deterministic with
//! `ZGUIDE_SIMULATE` (`none`, or `crash` on the 4th request).

mod common;
use common::{secs, Scenario, Spec};

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The sequence numbers lpclient reported as answered, in order.
fn answered(sc: &Scenario, client: common::Pid) -> Vec<u64> {
    sc.lines(client)
        .iter()
        .filter_map(|line| line.strip_prefix("I: server replied OK ("))
        .filter_map(|rest| rest.strip_suffix(')'))
        .map(|n| n.parse().expect("a decimal sequence number"))
        .collect()
}

/// Asserts that `seq` is exactly 1, 2, 3 … n: in order, no gap, no duplicate.
fn assert_gapless(sc: &Scenario, seq: &[u64]) {
    let expected: Vec<u64> = (1..=seq.len() as u64).collect();
    if seq != expected {
        sc.fail(&format!(
            "replies out of order, with a gap or a duplicate: {seq:?}"
        ));
    }
}

fn with_faults(program: &str, mode: &str) -> Spec {
    Spec::new(program, &[]).env("ZGUIDE_SIMULATE", mode)
}

#[test]
fn lazy_pirate_client_rides_out_a_server_restart_then_abandons_a_dead_server() {
    let mut sc = Scenario::new("lazypirate");
    // Crashes on its 4th request, every time it is started.
    let server = sc.start_spec("lpserver", with_faults(bin!("lpserver"), "crash"));
    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    for n in 1..=3 {
        sc.expect(client, &format!("I: server replied OK ({n})"), secs(30));
    }
    sc.expect(server, "I: simulating a crash", secs(30));
    assert_eq!(sc.wait_exit(server, secs(10)), 0);
    // Restart well within the client's 3 × 2.5 s retry window.
    sc.restart(server);
    sc.expect(client, "W: no response from server, retrying...", secs(30));
    sc.expect(client, "I: reconnecting to server...", secs(10));
    for n in 4..=6 {
        sc.expect(client, &format!("I: server replied OK ({n})"), secs(30));
    }
    sc.expect(server, "I: normal request (4)", secs(10));
    // The restarted server crashes on request 7; this time nobody restarts it.
    sc.expect(server, "I: simulating a crash", secs(30));
    sc.expect(
        client,
        "E: server seems to be offline, abandoning",
        secs(30),
    );
    assert_eq!(
        sc.wait_exit(client, secs(10)),
        0,
        "lpclient exits after abandoning"
    );

    let seq = answered(&sc, client);
    assert_gapless(&sc, &seq);
    assert_eq!(seq.len(), 6, "{}", sc.report());
    // After the last reply: two retries, then it gives up.
    let lines = sc.lines(client);
    let last_ok = lines
        .iter()
        .rposition(|l| l.contains("replied OK (6)"))
        .unwrap_or_else(|| sc.fail("no reply 6"));
    let tail: Vec<&str> = lines[last_ok + 1..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "W: no response from server, retrying...",
            "I: reconnecting to server...",
            "W: no response from server, retrying...",
            "I: reconnecting to server...",
            "E: server seems to be offline, abandoning",
        ],
        "{}",
        sc.report()
    );
}

#[test]
fn lazy_pirate_client_abandons_a_killed_server() {
    let mut sc = Scenario::new("lazypirate-kill");
    let server = sc.start_spec("lpserver", with_faults(bin!("lpserver"), "none"));
    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    sc.expect(client, "I: server replied OK (2)", secs(30));
    sc.kill(server);
    sc.expect(
        client,
        "E: server seems to be offline, abandoning",
        secs(30),
    );
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(
        sc.count(client, "W: no response from server, retrying..."),
        2
    );
    assert_gapless(&sc, &answered(&sc, client));
}

#[test]
fn simple_pirate_replies_in_order_until_every_worker_has_crashed() {
    let mut sc = Scenario::new("simplepirate");
    let queue = sc.start("spqueue", bin!("spqueue"), &[]);
    // Each worker crashes on its 4th request.
    let workers: Vec<_> = (1..=3)
        .map(|i| {
            sc.start_spec(
                &format!("spworker-{i}"),
                with_faults(bin!("spworker"), "crash"),
            )
        })
        .collect();
    for &worker in &workers {
        sc.expect(worker, "worker ready", secs(30));
    }
    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    sc.expect(
        client,
        "E: server seems to be offline, abandoning",
        secs(120),
    );
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    for &worker in &workers {
        sc.expect(worker, "simulating a crash", secs(10));
        assert_eq!(sc.wait_exit(worker, secs(10)), 0);
    }
    let seq = answered(&sc, client);
    assert_gapless(&sc, &seq);
    let served: usize = workers.iter().map(|&w| sc.count(w, "normal reply")).sum();
    assert_eq!(
        seq.len(),
        served,
        "every normal reply reached the client once"
    );
    assert!(seq.len() >= 3, "{}", sc.report());
    sc.assert_running(queue);
    sc.stop_cleanly(queue, secs(10));
}

#[test]
fn sigint_and_sigterm_stop_the_pirates_cleanly() {
    let mut sc = Scenario::new("pirates-sigint-lazy");
    let server = sc.start_spec("lpserver", with_faults(bin!("lpserver"), "none"));
    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    sc.expect(client, "I: server replied OK (2)", secs(30));
    sc.stop_cleanly(client, secs(10));
    sc.stop_cleanly(server, secs(10));

    let mut sc = Scenario::new("pirates-sigint-simple");
    let queue = sc.start("spqueue", bin!("spqueue"), &[]);
    let worker = sc.start_spec("spworker", with_faults(bin!("spworker"), "none"));
    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    sc.expect(client, "I: server replied OK (2)", secs(30));
    sc.stop_cleanly(client, secs(10));
    // The worker may be in the middle of its second of "work".
    sc.stop_cleanly(worker, secs(10));
    sc.signal(queue, libc::SIGTERM);
    assert_eq!(sc.wait_exit(queue, secs(10)), 0, "spqueue on SIGTERM");
}

/// Starts ppqueue -v and `n` well-behaved ppworkers, and waits until the queue
/// has registered them all. Returns the queue, the workers and their ids as
/// the queue prints them.
fn paranoid_pirates(sc: &mut Scenario, n: usize) -> (common::Pid, Vec<common::Pid>, Vec<String>) {
    let queue = sc.start("ppqueue", bin!("ppqueue"), &["-v"]);
    let mut workers = Vec::new();
    let mut ids = Vec::new();
    // One at a time, so each registration line belongs to a known worker.
    for i in 1..=n {
        let worker = sc.start_spec(
            &format!("ppworker-{i}"),
            with_faults(bin!("ppworker"), "none"),
        );
        let line = sc.expect(queue, &format!("ready ({i} idle)"), secs(30));
        let id = line
            .split_whitespace()
            .skip_while(|w| *w != "worker")
            .nth(1)
            .unwrap_or_else(|| sc.fail(&format!("no worker id in {line:?}")))
            .to_string();
        workers.push(worker);
        ids.push(id);
    }
    (queue, workers, ids)
}

#[test]
fn paranoid_pirate_workers_back_off_and_come_back_after_the_queue_restarts() {
    let mut sc = Scenario::new("paranoidpirate-restart");
    let (queue, workers, _) = paranoid_pirates(&mut sc, 2);
    for &worker in &workers {
        sc.expect(worker, "I: worker heartbeat", secs(30));
    }
    sc.kill(queue);
    // Three silent seconds, then reconnects after 1, 2, 4 … seconds.
    for &worker in &workers {
        sc.expect(worker, "W: heartbeat failure, can't reach queue", secs(30));
        for delay in [1000, 2000, 4000] {
            sc.expect(
                worker,
                &format!("W: reconnecting in {delay} msec..."),
                secs(60),
            );
        }
    }
    sc.restart(queue);
    for n in 1..=2 {
        sc.expect(queue, &format!("ready ({n} idle)"), secs(60));
    }
    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    for n in 1..=4 {
        sc.expect(client, &format!("I: server replied OK ({n})"), secs(30));
    }
    for &worker in &workers {
        sc.expect(worker, "I: normal reply", secs(30));
    }
    assert_gapless(&sc, &answered(&sc, client));

    // Clean exits on Ctrl-C, even for a worker in the middle of a request.
    sc.stop_cleanly(client, secs(10));
    for &worker in &workers {
        sc.stop_cleanly(worker, secs(10));
    }
    sc.stop_cleanly(queue, secs(10));
}

#[test]
fn paranoid_pirate_queue_purges_a_killed_idle_worker_and_never_uses_it_again() {
    let mut sc = Scenario::new("paranoidpirate-purge");
    let (queue, workers, ids) = paranoid_pirates(&mut sc, 2);
    let (dead, live) = (&ids[0], &ids[1]);
    // Let a heartbeat or two go by, then kill the first worker while it idles.
    sc.expect(workers[0], "I: worker heartbeat", secs(30));
    let killed_at = Instant::now();
    sc.kill(workers[0]);
    sc.expect(queue, &format!("worker {dead} expired, purged"), secs(30));
    let purge_after = killed_at.elapsed();
    eprintln!("ppqueue purged the killed worker after {purge_after:?}");
    // Its last heartbeat was at most ~1 s before the kill, the expiry is 3 s.
    assert!(
        purge_after >= Duration::from_millis(1500) && purge_after <= secs(10),
        "purged after {purge_after:?}, expected about 2-3 s"
    );

    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    for n in 1..=3 {
        sc.expect(client, &format!("I: server replied OK ({n})"), secs(30));
    }
    let output = sc.output(queue);
    let after_purge = &output[output.find("expired, purged").unwrap_or(0)..];
    assert!(
        !after_purge.contains(&format!("request to worker {dead}")),
        "a request went to the dead worker\n{}",
        sc.report()
    );
    assert!(
        after_purge
            .matches(&format!("request to worker {live}"))
            .count()
            >= 3
    );
    assert!(sc.count(workers[1], "I: normal reply") >= 3);
    assert_gapless(&sc, &answered(&sc, client));
}

/// Sends `count` random multipart messages (1–8 frames of 0–64 random bytes)
/// through a few DEALER sockets connected to `endpoint`, never waiting more
/// than a moment for any of them, then closes them.
fn fuzz(endpoint: &str, count: usize, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let context = zmq::Context::new();
    let sockets: Vec<zmq::Socket> = (0..4)
        .map(|i| {
            let socket = context.socket(zmq::DEALER).expect("probe socket");
            socket.set_linger(0).expect("linger");
            socket.set_sndtimeo(200).expect("sndtimeo");
            if i % 2 == 1 {
                socket
                    .set_identity(format!("PROBE-{i}").as_bytes())
                    .expect("identity");
            }
            socket.connect(endpoint).expect("connect probe");
            socket
        })
        .collect();
    let mut sent = 0;
    for n in 0..count {
        let frames: Vec<Vec<u8>> = (0..rng.gen_range(1..=8))
            .map(|_| (0..rng.gen_range(0..=64)).map(|_| rng.gen()).collect())
            .collect();
        if sockets[n % sockets.len()].send_multipart(frames, 0).is_ok() {
            sent += 1;
        }
    }
    // Let the queue read everything before the probes go away.
    std::thread::sleep(Duration::from_millis(200));
    sent
}

/// Sends one hand-made message to `endpoint` from a fresh DEALER.
fn send_raw(endpoint: &'static str, frames: Vec<&'static [u8]>) -> impl FnOnce() + Send + 'static {
    move || {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::DEALER).expect("probe socket");
        socket.set_linger(1000).expect("linger");
        socket.connect(endpoint).expect("connect probe");
        socket.send_multipart(frames, 0).expect("send probe");
    }
}

/// Sends 600 seeded random messages to each side of a Pirate queue (workers
/// on 5556 with `seeds.0`, clients on 5555 with `seeds.1`), waits until the
/// queue has rejected nearly all of them, then checks that a real `lpclient`
/// is still served, correctly and in order.
fn fuzz_both_sides_then_serve_a_client(sc: &mut Scenario, queue: common::Pid, seeds: (u64, u64)) {
    let sent = sc.in_namespace(move || {
        fuzz("tcp://localhost:5556", 600, seeds.0) + fuzz("tcp://localhost:5555", 600, seeds.1)
    });
    assert!(sent >= 1000, "only {sent} random messages went out");
    // Nearly all of them are invalid, and the queue reads and rejects each.
    sc.expect_count(queue, "invalid message from", 1100, secs(60));
    sc.assert_running(queue);

    let client = sc.start("lpclient", bin!("lpclient"), &[]);
    for n in 1..=3 {
        sc.expect(client, &format!("I: server replied OK ({n})"), secs(60));
    }
    assert_gapless(sc, &answered(sc, client));
    sc.assert_running(queue);
}

#[test]
fn paranoid_pirate_queue_survives_malformed_and_random_messages() {
    let mut sc = Scenario::new("paranoidpirate-garbage");
    let (queue, workers, _) = paranoid_pirates(&mut sc, 2);

    // Worker messages of the wrong size or command, one by one.
    let bad_worker_messages: Vec<Vec<&'static [u8]>> = vec![
        vec![b"\x01\x02"],         // READY, one byte too long
        vec![b"\x07"],             // no such command
        vec![b""],                 // empty frame
        vec![b"client", b"reply"], // a reply without delimiter
    ];
    for (i, frames) in bad_worker_messages.into_iter().enumerate() {
        sc.in_namespace(send_raw("tcp://localhost:5556", frames));
        sc.expect_count(queue, "E: invalid message from worker", i + 1, secs(30));
    }
    // A client message without the REQ delimiter, and one with two bodies.
    sc.in_namespace(send_raw("tcp://localhost:5555", vec![b"1"]));
    sc.expect_count(queue, "E: invalid message from client", 1, secs(30));
    sc.in_namespace(send_raw("tcp://localhost:5555", vec![b"", b"1", b"2"]));
    sc.expect_count(queue, "E: invalid message from client", 2, secs(30));

    fuzz_both_sides_then_serve_a_client(&mut sc, queue, (25, 26));
    for &worker in &workers {
        sc.assert_running(worker);
    }
    sc.stop_cleanly(queue, secs(10));
}

#[test]
fn simple_pirate_queue_survives_malformed_and_random_messages() {
    let mut sc = Scenario::new("simplepirate-garbage");
    let queue = sc.start("spqueue", bin!("spqueue"), &[]);
    let workers: Vec<_> = (1..=2)
        .map(|i| {
            sc.start_spec(
                &format!("spworker-{i}"),
                with_faults(bin!("spworker"), "none"),
            )
        })
        .collect();
    for &worker in &workers {
        sc.expect(worker, "worker ready", secs(30));
    }

    // Worker messages without the REQ envelope, or neither READY nor a reply.
    sc.in_namespace(send_raw("tcp://localhost:5556", vec![b"\x01"]));
    sc.expect_count(queue, "E: invalid message from worker", 1, secs(30));
    sc.in_namespace(send_raw("tcp://localhost:5556", vec![b"", b"\x01\x02"]));
    sc.expect_count(queue, "E: invalid message from worker", 2, secs(30));
    sc.in_namespace(send_raw(
        "tcp://localhost:5556",
        vec![b"", b"client", b"reply"],
    ));
    sc.expect_count(queue, "E: invalid message from worker", 3, secs(30));
    // A client message without the delimiter.
    sc.in_namespace(send_raw("tcp://localhost:5555", vec![b"1"]));
    sc.expect_count(queue, "E: invalid message from client", 1, secs(30));

    fuzz_both_sides_then_serve_a_client(&mut sc, queue, (24, 23));
    sc.stop_cleanly(queue, secs(10));
}
