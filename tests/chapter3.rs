//! Chapter 3 (Advanced Request-Reply): identities, ROUTER brokers, the load
//! balancer in three styles, the asynchronous server and inter-broker
//! peering, each run as real processes. Raw probes speak to the brokers'
//! `ipc://` endpoints, which are files in the scenario's directory, so they
//! work from the test process without entering its network namespace.

mod common;
use common::{secs, Scenario, Spec};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

// ---------------------------------------------------------------- §15 identity

#[test]
fn identity_shows_generated_and_chosen_identities_with_the_req_delimiter() {
    let mut sc = Scenario::new("identity");
    let identity = sc.start("identity", bin!("identity"), &[]);
    assert_eq!(sc.wait_exit(identity, secs(30)), 0);
    let lines = sc.lines(identity);
    let expected_shape = [
        "----------------------------------------",
        "[005] ",
        "[000] ",
        "[039] ROUTER uses a generated 5 byte identity",
        "----------------------------------------",
        "[005] PEER2",
        "[000] ",
        "[040] ROUTER socket uses REQ's socket identity",
    ];
    if lines.len() != expected_shape.len() {
        sc.fail("identity prints two dumps of three frames each");
    }
    for (line, shape) in lines.iter().zip(expected_shape) {
        if !line.starts_with(shape) {
            sc.fail(&format!("line {line:?} should start with {shape:?}"));
        }
    }
    // The generated identity: 5 bytes, the first one zero, shown as hex.
    let generated = &lines[1]["[005] ".len()..];
    assert_eq!(generated.len(), 10, "{generated}");
    assert!(generated.starts_with("00"), "{generated}");
    assert!(
        generated.chars().all(|c| c.is_ascii_hexdigit()),
        "{generated}"
    );
}

// ------------------------------------------------------- §16/§17 rtreq, rtdealer

fn workers_are_fired_after_five_seconds(name: &str, program: &str) {
    let mut sc = Scenario::new(name);
    let started = Instant::now();
    let broker = sc.start(name, program, &[]);
    assert_eq!(sc.wait_exit(broker, secs(90)), 0);
    let elapsed = started.elapsed().as_secs_f64();
    let counts: Vec<u32> = sc
        .lines(broker)
        .iter()
        .filter_map(|l| l.strip_prefix("Completed: "))
        .filter_map(|l| l.strip_suffix(" tasks"))
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| sc.fail(&format!("bad count {n:?}")))
        })
        .collect();
    if counts.len() != 10 || sc.lines(broker).len() != 10 {
        sc.fail("expected exactly 10 `Completed: N tasks` lines and nothing else");
    }
    // Every worker got work (about 20 each; loose, the machine may be busy).
    if counts.contains(&0) {
        sc.fail("a worker got no work at all");
    }
    assert!(elapsed >= 4.5, "fired before five seconds: {elapsed}");
}

#[test]
fn rtreq_fires_ten_req_workers() {
    workers_are_fired_after_five_seconds("rtreq", bin!("rtreq"));
}

#[test]
fn rtdealer_fires_ten_dealer_workers() {
    workers_are_fired_after_five_seconds("rtdealer", bin!("rtdealer"));
}

// -------------------------------------------------------- §18/§S2 load balancer

fn ten_requests_then_exit(name: &str, program: &str, worker_line: &str) {
    let mut sc = Scenario::new(name);
    let broker = sc.start(name, program, &[]);
    assert_eq!(sc.wait_exit(broker, secs(60)), 0);
    let lines = sc.lines(broker);
    let workers = lines.iter().filter(|l| *l == worker_line).count();
    let clients = lines.iter().filter(|l| *l == "Client: OK").count();
    if workers != 10 || clients != 10 || lines.len() != 20 {
        sc.fail(&format!(
            "expected 10 `{worker_line}` and 10 `Client: OK`, got {workers} and {clients}"
        ));
    }
}

#[test]
fn lbbroker_serves_ten_clients_and_exits() {
    ten_requests_then_exit("lbbroker", bin!("lbbroker"), "Worker: HELLO");
}

#[test]
fn lbbroker2_serves_ten_clients_and_exits() {
    ten_requests_then_exit("lbbroker2", bin!("lbbroker2"), "Worker: [005] HELLO");
}

#[test]
fn lbbroker3_keeps_serving_until_ctrl_c() {
    let mut sc = Scenario::new("lbbroker3");
    let broker = sc.start("lbbroker3", bin!("lbbroker3"), &[]);
    // Ten clients, one request a second each: three rounds at least.
    sc.expect_count(broker, "Client: OK", 30, secs(60));
    sc.assert_running(broker);
    sc.stop_cleanly(broker, secs(15));
    let lines = sc.lines(broker);
    let workers = lines.iter().filter(|l| *l == "Worker: [005] HELLO").count();
    if workers < 30 {
        sc.fail("each reply comes from a worker line");
    }
}

/// A probe socket on one of a broker's `ipc://` endpoints in `dir`.
fn probe(
    context: &zmq::Context,
    kind: zmq::SocketType,
    id: &str,
    dir: &Path,
    file: &str,
) -> zmq::Socket {
    let socket = context.socket(kind).expect("socket");
    // Not 0: a probe may send and return before its ipc connection is up;
    // the context then waits (at most this long) to deliver what is queued.
    socket.set_linger(5_000).expect("linger");
    socket.set_rcvtimeo(20_000).expect("rcvtimeo");
    socket.set_sndtimeo(5_000).expect("sndtimeo");
    socket.set_identity(id.as_bytes()).expect("identity");
    socket
        .connect(&format!("ipc://{}/{file}", dir.display()))
        .expect("connect");
    socket
}

fn send(socket: &zmq::Socket, frames: &[&[u8]]) -> Result<(), String> {
    socket
        .send_multipart(frames.iter().copied(), 0)
        .map_err(|e| format!("send {frames:?}: {e}"))
}

fn recv(socket: &zmq::Socket, who: &str) -> Result<Vec<Vec<u8>>, String> {
    socket
        .recv_multipart(0)
        .map_err(|e| format!("{who} got nothing within 20 s: {e}"))
}

/// A probe worker receives the request `body` from client `C`.
fn worker_gets(worker: &zmq::Socket, who: &str, body: &str) -> Result<(), String> {
    let frames = recv(worker, who)?;
    let want = vec![b"C".to_vec(), vec![], body.as_bytes().to_vec()];
    if frames != want {
        return Err(format!(
            "{who} got {frames:?}, expected request {body:?} from C"
        ));
    }
    Ok(())
}

/// The probe client `C` (a DEALER speaking like REQ) gets `reply`.
fn client_gets(client: &zmq::Socket, reply: &str) -> Result<(), String> {
    let frames = recv(client, "client C")?;
    if frames != [vec![], reply.as_bytes().to_vec()] {
        return Err(format!("client got {frames:?}, expected {reply:?}"));
    }
    Ok(())
}

/// Drives a broker started with no clients or workers of its own through a
/// sequence whose outcome differs between an LRU (FIFO) worker queue and a
/// LIFO one, then feeds it malformed messages and checks it still serves.
fn lru_then_malformed(dir: &Path, ready: &[u8]) -> Result<(), String> {
    let context = zmq::Context::new();
    let client = probe(&context, zmq::DEALER, "C", dir, "frontend.ipc");
    let w1 = probe(&context, zmq::REQ, "W1", dir, "backend.ipc");
    let w2 = probe(&context, zmq::REQ, "W2", dir, "backend.ipc");
    let request = |body: &str| send(&client, &[b"", body.as_bytes()]);
    let reply = |w: &zmq::Socket, body: &str| send(w, &[b"C", b"", body.as_bytes()]);

    // W1 is free and takes A. Then W2 is free and takes B: each step is
    // confirmed by the worker itself, so we know the broker's order of events.
    send(&w1, &[ready])?;
    request("A")?;
    worker_gets(&w1, "W1", "A")?;
    send(&w2, &[ready])?;
    request("B")?;
    worker_gets(&w2, "W2", "B")?;
    // W1 answers first, then W2: the free queue is now W1, W2.
    reply(&w1, "A-ok")?;
    client_gets(&client, "A-ok")?;
    reply(&w2, "B-ok")?;
    client_gets(&client, "B-ok")?;
    // Least recently used first: C1 must go to W1 (a stack would pick W2).
    request("C1")?;
    worker_gets(&w1, "W1", "C1")?;
    if w2.poll(zmq::POLLIN, 300).map_err(|e| e.to_string())? > 0 {
        return Err("W2 got a request while W1 was the least recently used".into());
    }
    reply(&w1, "C1-ok")?;
    client_gets(&client, "C1-ok")?;
    // Now W2 has waited longest.
    request("D")?;
    worker_gets(&w2, "W2", "D")?;
    reply(&w2, "D-ok")?;
    client_gets(&client, "D-ok")?;

    // Free queue: W1, W2. Malformed traffic on both sides:
    let rogue_client = probe(&context, zmq::DEALER, "R", dir, "frontend.ipc");
    send(&rogue_client, &[b"HELLO"])?; // no delimiter
    send(&rogue_client, &[b"x", b"HELLO"])?; // not a delimiter
    let rogue_worker = probe(&context, zmq::DEALER, "BAD", dir, "backend.ipc");
    send(&rogue_worker, &[b"garbage"])?; // no envelope at all
                                         // A well-formed reply for a client nobody knows: W3 becomes free, the
                                         // reply cannot be routed.
    let w3 = probe(&context, zmq::DEALER, "W3", dir, "backend.ipc");
    send(&w3, &[b"", b"NOSUCH", b"", b"OK"])?;
    // The broker carries on: E goes to W1, the longest free.
    request("E")?;
    worker_gets(&w1, "W1", "E")?;
    reply(&w1, "E-ok")?;
    client_gets(&client, "E-ok")?;
    Ok(())
}

fn check_lru_and_bad_input(name: &str, program: &str, ready: &'static [u8]) {
    let mut sc = Scenario::new(name);
    let spec = Spec::new(program, &[])
        .env("ZGUIDE_CLIENTS", 0)
        .env("ZGUIDE_WORKERS", 0);
    let broker = sc.start_spec(name, spec);
    let dir = sc.dir().to_path_buf();
    let outcome = std::thread::spawn(move || lru_then_malformed(&dir, ready))
        .join()
        .unwrap_or_else(|_| Err("probe panicked".into()));
    if let Err(e) = outcome {
        sc.fail(&e);
    }
    sc.expect_count(broker, "malformed", 3, secs(20));
    sc.expect(broker, "reply for unknown client NOSUCH dropped", secs(20));
    sc.assert_running(broker);
    sc.stop_cleanly(broker, secs(15));
}

#[test]
fn lbbroker_is_lru_and_survives_bad_input() {
    check_lru_and_bad_input("lbbroker-lru", bin!("lbbroker"), b"READY");
}

#[test]
fn lbbroker2_is_lru_and_survives_bad_input() {
    check_lru_and_bad_input("lbbroker2-lru", bin!("lbbroker2"), b"READY");
}

#[test]
fn lbbroker3_is_lru_and_survives_bad_input() {
    check_lru_and_bad_input("lbbroker3-lru", bin!("lbbroker3"), b"\x01");
}

// ------------------------------------------------------------------ §19 asyncsrv

#[test]
fn asyncsrv_runs_five_seconds_and_echoes_what_clients_sent() {
    let mut sc = Scenario::new("asyncsrv");
    let started = Instant::now();
    let server = sc.start("asyncsrv", bin!("asyncsrv"), &[]);
    assert_eq!(sc.wait_exit(server, secs(60)), 0);
    let elapsed = started.elapsed().as_secs_f64();
    if !(4.5..30.0).contains(&elapsed) {
        sc.fail(&format!("ran {elapsed:.1} s, expected about 5"));
    }
    // Each line is `<identity>[NNN] request #n`: the identity of the client
    // that printed it, and one of the requests that client sent (one a
    // second, so n is at most 5 in five seconds).
    let mut per_client: HashMap<String, HashSet<u32>> = HashMap::new();
    for line in sc.lines(server) {
        let parsed = line.split_once('[').and_then(|(id, rest)| {
            let (size, text) = rest.split_once("] ")?;
            let n: u32 = text.strip_prefix("request #")?.parse().ok()?;
            (id.len() == 9 && size.parse::<usize>().ok()? == text.len())
                .then_some((id.to_string(), n))
        });
        match parsed {
            Some((id, n)) if (1..=5).contains(&n) => {
                per_client.entry(id).or_default().insert(n);
            }
            _ => sc.fail(&format!("not a reply to a request a client sent: {line:?}")),
        }
    }
    if per_client.is_empty() || per_client.len() > 3 {
        sc.fail(&format!(
            "replies should come to 1..3 clients, got {:?}",
            per_client.keys()
        ));
    }
}

// ------------------------------------------------------- §20–§22 peering1..3

/// Starts `program me peers…` for each of three brokers named DC1..DC3, all in
/// the scenario directory (their `ipc://` files meet there).
fn three_brokers(sc: &mut Scenario, program: &str) -> Vec<common::Pid> {
    let names = ["DC1", "DC2", "DC3"];
    names
        .iter()
        .map(|me| {
            let mut args = vec![*me];
            args.extend(names.iter().filter(|n| *n != me));
            sc.start(me, program, &args)
        })
        .collect()
}

#[test]
fn peering1_brokers_see_each_others_state() {
    let mut sc = Scenario::new("peering1");
    let brokers = three_brokers(&mut sc, bin!("peering1"));
    let names = ["DC1", "DC2", "DC3"];
    for (broker, me) in brokers.iter().zip(names) {
        sc.expect(
            *broker,
            &format!("I: preparing broker at {me}..."),
            secs(30),
        );
        for peer in names.iter().filter(|n| **n != me) {
            sc.wait_for(*broker, secs(30), &format!("state from {peer}"), |out| {
                out.lines().any(|l| {
                    l.strip_prefix(&format!("{peer} - "))
                        .and_then(|rest| rest.strip_suffix(" workers free"))
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n < 10)
                })
            });
        }
    }
    for broker in brokers {
        sc.stop_cleanly(broker, secs(15));
    }
}

#[test]
fn peering2_brokers_serve_clients_and_survive_a_dead_peer() {
    let mut sc = Scenario::new("peering2");
    let me = sc.start("me", bin!("peering2"), &["me", "you"]);
    let you = sc.start("you", bin!("peering2"), &["you", "me"]);
    for broker in [me, you] {
        sc.expect(
            broker,
            "Press Enter when all brokers are started: ",
            secs(30),
        );
    }
    for broker in [me, you] {
        sc.write_stdin(broker, "\n");
    }
    for broker in [me, you] {
        sc.expect_count(broker, "Client: OK", 30, secs(60));
        sc.expect_count(broker, "Worker: [005] HELLO", 30, secs(60));
    }
    // Kill one broker: the other notices at its next attempt to send there,
    // serves that request itself, and keeps serving all its clients (the C
    // queues requests for the dead peer, and its clients block one by one:
    // about 40 more replies in all, on average, where we need 80).
    sc.kill(you);
    let before = sc.count(me, "Client: OK");
    sc.expect(
        me,
        "peer you is not connected: serving the request here",
        secs(30),
    );
    sc.expect_count(me, "Client: OK", before + 80, secs(60));
    sc.assert_running(me);
    sc.stop_cleanly(me, secs(15));
}

/// How many completed-task lines (four hex digits) the output has.
fn task_ids(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.len() == 4 && l.chars().all(|c| c.is_ascii_hexdigit()))
        .count()
}

#[test]
fn peering3_brokers_lose_no_tasks_and_forget_a_dead_peer() {
    let mut sc = Scenario::new("peering3");
    let brokers = three_brokers(&mut sc, bin!("peering3"));
    // Let them run a while: every broker reports plenty of completed tasks.
    for broker in &brokers {
        sc.wait_for(*broker, secs(90), "80 completed task ids", |out| {
            task_ids(out) >= 80
        });
    }
    for broker in &brokers {
        if sc.count(*broker, "E: CLIENT EXIT") > 0 {
            sc.fail("a client lost a task while all brokers were running");
        }
    }
    // Kill DC3: the others forget its capacity once its state stops, and
    // keep serving.
    sc.kill(brokers[2]);
    for broker in &brokers[..2] {
        // Whichever comes first: its state stops, or a request cannot reach it.
        sc.wait_for(*broker, secs(30), "DC3 forgotten", |out| {
            out.contains("peer DC3 is silent: forgetting its capacity")
                || out.contains("peer DC3 is not connected: forgetting its capacity")
        });
        let before = task_ids(&sc.output(*broker));
        sc.wait_for(*broker, secs(60), "more completed tasks", |out| {
            task_ids(out) >= before + 20
        });
        sc.assert_running(*broker);
    }
    for broker in &brokers[..2] {
        sc.interrupt(*broker);
        assert_eq!(sc.wait_exit(*broker, secs(15)), 0, "clean exit on SIGINT");
    }
}

#[test]
fn peering3_logs_and_drops_malformed_input() {
    let mut sc = Scenario::new("peering3-bad");
    // DC1 alone; the test plays its peer DC2's state publisher.
    let broker = sc.start("DC1", bin!("peering3"), &["DC1", "DC2"]);
    sc.expect(broker, "I: connecting to state backend at 'DC2'", secs(30));
    let dir = sc.dir().to_path_buf();
    let probes = std::thread::spawn(move || -> Result<(), String> {
        let context = zmq::Context::new();
        let state = context.socket(zmq::PUB).map_err(|e| e.to_string())?;
        state.set_linger(0).map_err(|e| e.to_string())?;
        state
            .bind(&format!("ipc://{}/DC2-state.ipc", dir.display()))
            .map_err(|e| e.to_string())?;
        let client = probe(&context, zmq::DEALER, "R", &dir, "DC1-localfe.ipc");
        let peer = probe(&context, zmq::DEALER, "DC2", &dir, "DC1-cloud.ipc");
        // Repeat for a few seconds: PUB drops messages until the SUB is in.
        for _ in 0..30 {
            send(&state, &[b"DC2", b"lots"])?; // not a number
            send(&state, &[b"DC2"])?; // no count
            send(&client, &[b"HELLO"])?; // no delimiter
            send(&peer, &[b"garbage"])?; // no client envelope
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    });
    sc.expect_count(broker, "statefe: bad state", 1, secs(30));
    sc.expect_count(broker, "statefe: expected [peer][count]", 1, secs(30));
    sc.expect_count(broker, "frontend: malformed request dropped", 2, secs(30));
    if let Ok(Err(e)) = probes.join() {
        sc.fail(&e);
    }
    // Still serving its own clients.
    let before = task_ids(&sc.output(broker));
    sc.wait_for(broker, secs(60), "more completed tasks", |out| {
        task_ids(out) >= before + 20
    });
    sc.stop_cleanly(broker, secs(15));
}
