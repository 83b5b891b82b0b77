//! Chapter 4 (Reliable Request-Reply), brokerless reliability: the three
//! Freelance models (§33 `flserver1`/`flclient1`, §34 `flserver2`/`flclient2`,
//! §35 `flserver3`/`flclient3` with the `flcliapi` agent), run as real
//! processes: servers missing, killed mid-run, all gone, misnamed, and fed
//! garbage and floods.
//!
//! The clients' 10,000 requests are lowered with `ZGUIDE_REQUESTS`.

mod common;
use common::wire::{self, frames};
use common::{attack, secs, Pid, Scenario, Spec};

/// Requests per client run in these tests (the C's 10,000 takes a few
/// seconds per run; the logic is the same).
const REQUESTS: &str = "2000";

fn endpoint(port: u16) -> String {
    format!("tcp://localhost:{port}")
}

fn bind(port: u16) -> String {
    format!("tcp://*:{port}")
}

/// A client started with `ZGUIDE_REQUESTS` set.
fn client(sc: &mut Scenario, label: &str, program: &str, args: &[&str], requests: &str) -> Pid {
    let spec = Spec::new(program, args).env("ZGUIDE_REQUESTS", requests);
    sc.start_spec(label, spec)
}

/// The client printed its average and exited 0, with no failed request.
fn assert_finished(sc: &mut Scenario, client: Pid) {
    sc.expect(client, "Average round trip cost: ", secs(60));
    let code = sc.wait_exit(client, secs(10));
    if code != 0 {
        sc.fail(&format!("the client exited {code}"));
    }
    if sc.count(client, "E: name service not available") != 0 {
        sc.fail("a request failed");
    }
}

/// The client gave up with the C's line and a non-zero exit, without an
/// average.
fn assert_gave_up(sc: &mut Scenario, client: Pid) {
    sc.expect(client, "E: name service not available, aborting", secs(20));
    let code = sc.wait_exit(client, secs(10));
    if code == 0 {
        sc.fail("the client exited 0 after giving up");
    }
    if sc.count(client, "Average round trip cost") != 0 {
        sc.fail("an average was printed after giving up");
    }
}

// ---- §33 Model One -------------------------------------------------------

#[test]
fn flclient1_fails_over_from_a_dead_server_to_a_live_one() {
    let mut sc = Scenario::new("freelance1-failover");
    let server = sc.start("flserver1", bin!("flserver1"), &[&bind(5556)]);
    sc.expect(server, "I: echo service is ready at tcp://*:5556", secs(10));
    let client = sc.start(
        "flclient1",
        bin!("flclient1"),
        &[&endpoint(5555), &endpoint(5556)],
    );
    sc.expect(client, "Service is running OK", secs(20));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    let lines = sc.lines(client);
    assert_eq!(
        lines,
        [
            "I: trying echo service at tcp://localhost:5555...",
            "W: no response from tcp://localhost:5555",
            "I: trying echo service at tcp://localhost:5556...",
            "Service is running OK",
        ],
        "{}",
        sc.report()
    );
    sc.stop_cleanly(server, secs(5));
    assert!(sc.output(server).contains("W: interrupted"));
}

#[test]
fn flclient1_retries_one_endpoint_three_times_then_fails() {
    let mut sc = Scenario::new("freelance1-dead");
    let client = sc.start("flclient1", bin!("flclient1"), &[&endpoint(5555)]);
    let code = sc.wait_exit(client, secs(20));
    assert_ne!(code, 0, "no service answered: {}", sc.report());
    assert_eq!(
        sc.count(
            client,
            "W: no response from tcp://localhost:5555, retrying..."
        ),
        3
    );
    assert_eq!(sc.count(client, "I: trying echo service at"), 3);
    assert_eq!(sc.count(client, "Service is running OK"), 0);
    // Without arguments: the C's syntax line, exit 0.
    let usage = sc.start("usage", bin!("flclient1"), &[]);
    sc.expect(usage, "I: syntax: ", secs(5));
    assert!(sc.output(usage).contains("<endpoint> ..."));
    assert_eq!(sc.wait_exit(usage, secs(5)), 0);
}

#[test]
fn flclient1_stops_on_ctrl_c_while_waiting_and_servers_print_their_syntax() {
    let mut sc = Scenario::new("freelance1-ctrlc");
    let silent = silent_server(&sc, 5555, None);
    let c = sc.start("flclient1", bin!("flclient1"), &[&endpoint(5555)]);
    let request = join(&sc, silent);
    assert_eq!(request[1..], frames(&[b"", b"Hello world"]));
    sc.stop_cleanly(c, secs(2));
    for program in [bin!("flserver1"), bin!("flserver2")] {
        let usage = sc.start(program, program, &[]);
        sc.expect(usage, "I: syntax: ", secs(5));
        assert!(sc.output(usage).contains("<endpoint>"));
        assert_eq!(sc.wait_exit(usage, secs(5)), 0);
    }
}

// ---- §34 Model Two -------------------------------------------------------

#[test]
fn flclient2_finishes_against_one_two_and_three_servers() {
    for servers in 1..=3u16 {
        let mut sc = Scenario::new(&format!("freelance2-{servers}"));
        let mut endpoints = Vec::new();
        for port in 5555..5555 + servers {
            let server = sc.start(
                &format!("flserver2-{port}"),
                bin!("flserver2"),
                &[&bind(port)],
            );
            sc.expect(server, "I: service is ready at", secs(10));
            endpoints.push(endpoint(port));
        }
        let args: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        let c = client(&mut sc, "flclient2", bin!("flclient2"), &args, REQUESTS);
        assert_finished(&mut sc, c);
    }
}

#[test]
fn flclient2_gives_up_when_no_server_answers_and_stops_on_ctrl_c() {
    let mut sc = Scenario::new("freelance2-none");
    let c = client(
        &mut sc,
        "flclient2",
        bin!("flclient2"),
        &[&endpoint(5555)],
        REQUESTS,
    );
    assert_gave_up(&mut sc, c);
    // Ctrl-C while it waits for a reply: exit 0, promptly.
    let silent = silent_server(&sc, 5556, None);
    let waiting = client(
        &mut sc,
        "waiting",
        bin!("flclient2"),
        &[&endpoint(5556)],
        REQUESTS,
    );
    let request = join(&sc, silent);
    assert_eq!(request[1..], frames(&[b"", b"1", b"random name"]));
    sc.stop_cleanly(waiting, secs(2));
}

/// A server on `port` (a ROUTER, with `identity` if given) that takes the
/// client's first request and never answers: once it returns the request,
/// the client is waiting for a reply.
fn silent_server(
    sc: &Scenario,
    port: u16,
    identity: Option<&'static str>,
) -> std::thread::JoinHandle<wire::Frames> {
    sc.in_namespace_background(move || {
        let ctx = zmq::Context::new();
        let mut probe = wire::probe(&ctx, zmq::ROUTER);
        if let Some(identity) = identity {
            probe = probe.identity(identity);
        }
        let server = probe.bind(&format!("tcp://*:{port}"));
        wire::recv_until(&server, "silent server", common::secs(10), |m| {
            m.last().map(Vec::as_slice) != Some(b"PING")
        })
        .unwrap_or_else(|e| panic!("{e}"))
    })
}

fn join<T>(sc: &Scenario, probe: std::thread::JoinHandle<T>) -> T {
    probe.join().unwrap_or_else(|_| sc.fail("the probe failed"))
}

#[test]
fn flclient2_drops_malformed_and_stale_replies() {
    let mut sc = Scenario::new("freelance2-junk");
    // A fake server that answers each request with junk, a reply to another
    // sequence, and then the right reply: the C asserted on the junk.
    let fake = sc.in_namespace_background(|| {
        let ctx = zmq::Context::new();
        let server = wire::probe(&ctx, zmq::ROUTER).bind("tcp://*:5555");
        for _ in 0..3 {
            let request = wire::recv(&server, "fake server");
            let (id, sequence) = (&request[0], &request[2]);
            wire::send(&server, &[id, b"", b"junk"]);
            wire::send(&server, &[id, b"junk", sequence, b"OK"]);
            wire::send(&server, &[id, b"", b"999", b"OK"]);
            wire::send(&server, &[id, b"", sequence, b"OK"]);
        }
    });
    let c = client(
        &mut sc,
        "flclient2",
        bin!("flclient2"),
        &[&endpoint(5555)],
        "3",
    );
    assert_finished(&mut sc, c);
    join(&sc, fake);
    assert!(
        sc.count(c, "malformed reply (1 so far) dropped") == 1,
        "{}",
        sc.report()
    );
}

#[test]
fn flclient2_cpp_speaks_the_binary_sequence_of_the_cpp_flserver2() {
    let mut sc = Scenario::new("freelance2-cpp");
    // A fake `flserver2.cpp`: it takes the sequence as a 4-byte big-endian
    // integer (zmqpp's `get(uint)` asserts on the size) and echoes it.
    let fake = sc.in_namespace_background(|| {
        let ctx = zmq::Context::new();
        let server = wire::probe(&ctx, zmq::ROUTER).bind("tcp://*:5555");
        let mut sequences = Vec::new();
        for _ in 0..3 {
            let request = wire::recv(&server, "fake C++ server");
            let (id, sequence) = (&request[0], &request[2]);
            sequences.push(sequence.clone());
            wire::send(&server, &[id, b"", sequence, b"OK"]);
        }
        sequences
    });
    let c = client(
        &mut sc,
        "flclient2 --cpp",
        bin!("flclient2"),
        &["--cpp", &endpoint(5555)],
        "3",
    );
    assert_finished(&mut sc, c);
    let sequences = join(&sc, fake);
    let expected: Vec<Vec<u8>> = (1u32..=3).map(|n| n.to_be_bytes().to_vec()).collect();
    assert_eq!(sequences, expected, "{}", sc.report());
}

// ---- §35 Model Three -----------------------------------------------------

/// Starts `flserver3` for `port` (identity `tcp://localhost:<port>`).
fn start_flserver3(sc: &mut Scenario, port: u16, verbose: bool) -> Pid {
    let public = endpoint(port);
    let mut args = vec![public.as_str()];
    if verbose {
        args.insert(0, "-v");
    }
    let server = sc.start(&format!("flserver3-{port}"), bin!("flserver3"), &args);
    sc.expect(
        server,
        &format!("I: service is ready at tcp://*:{port}"),
        secs(10),
    );
    server
}

#[test]
fn flclient3_finishes_against_one_two_and_three_servers() {
    // The client always connects to 5555, 5556, 5557; the servers that run
    // are the last ones, so the agent must skip the dead ones in front.
    for servers in 1..=3u16 {
        let mut sc = Scenario::new(&format!("freelance3-{servers}"));
        for port in (5558 - servers)..5558 {
            start_flserver3(&mut sc, port, false);
        }
        let c = client(&mut sc, "flclient3", bin!("flclient3"), &[], REQUESTS);
        assert_finished(&mut sc, c);
        assert_eq!(sc.count(c, "I: connecting to tcp://localhost:555"), 3);
    }
}

#[test]
fn flclient3_survives_a_server_killed_mid_run() {
    let mut sc = Scenario::new("freelance3-kill");
    // The agent sends to the first live server: 5555. Verbose, so the test
    // sees it serve before killing it.
    let first = start_flserver3(&mut sc, 5555, true);
    start_flserver3(&mut sc, 5556, false);
    start_flserver3(&mut sc, 5557, false);
    let spec = Spec::new(bin!("flclient3"), &[])
        .env("ZGUIDE_REQUESTS", "6000")
        .env("RUST_LOG", "debug");
    let c = sc.start_spec("flclient3", spec);
    // Each reply dump has a `[002] OK` line.
    sc.expect_count(first, "[002] OK", 300, secs(30));
    sc.kill(first);
    assert_finished(&mut sc, c);
    // At most the request in flight at the kill waited for a retry (none if
    // the kill fell between a reply and the next request); the next ones
    // went straight to a live server, because the dead one had no
    // connection (its monitor said so), not after its 6 s TTL ran out.
    let retries = sc.count(c, "unanswered, sent again to");
    if retries > 2 {
        sc.fail(&format!("{retries} requests had to be sent again"));
    }
}

#[test]
fn flclient3_gives_up_when_every_server_is_gone() {
    let mut sc = Scenario::new("freelance3-none");
    let c = client(&mut sc, "flclient3", bin!("flclient3"), &[], REQUESTS);
    assert_gave_up(&mut sc, c);
    // Servers that die mid-run: the request in flight fails after 3 s.
    let server = start_flserver3(&mut sc, 5555, true);
    let c = client(
        &mut sc,
        "flclient3-b",
        bin!("flclient3"),
        &[&endpoint(5555)],
        "100000",
    );
    sc.expect_count(server, "[002] OK", 100, secs(30));
    sc.kill(server);
    assert_gave_up(&mut sc, c);
}

#[test]
fn flclient3_cannot_reach_a_server_whose_identity_is_spelled_differently() {
    let mut sc = Scenario::new("freelance3-identity");
    // The server says it is 127.0.0.1; the client connects to localhost:
    // the TCP connection works, the routing does not.
    let server = sc.start("flserver3", bin!("flserver3"), &["tcp://127.0.0.1:5555"]);
    sc.expect(server, "I: service is ready at tcp://*:5555", secs(10));
    let c = client(
        &mut sc,
        "flclient3",
        bin!("flclient3"),
        &[&endpoint(5555)],
        REQUESTS,
    );
    assert_gave_up(&mut sc, c);
    // The error path says why.
    assert!(
        sc.output(c).contains("byte for byte"),
        "no hint about the identity rule:\n{}",
        sc.report()
    );
}

#[test]
fn flclient3_speaks_flp_and_stops_on_ctrl_c_while_waiting() {
    let mut sc = Scenario::new("freelance3-ctrlc");
    let silent = silent_server(&sc, 5555, Some("tcp://localhost:5555"));
    let c = client(
        &mut sc,
        "flclient3",
        bin!("flclient3"),
        &[&endpoint(5555)],
        REQUESTS,
    );
    // [client identity][sequence][body], addressed by the endpoint string.
    let request = join(&sc, silent);
    assert_eq!(request[1..], frames(&[b"1", b"random name"]));
    sc.stop_cleanly(c, secs(2));
}

// ---- Hostile peers -------------------------------------------------------

/// A REQ probe gets its echo from flserver1 on 5555.
fn echo_works(sc: &Scenario) {
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let req = wire::probe(&ctx, zmq::REQ).connect("tcp://localhost:5555");
        wire::send(&req, &[b"Hello world"]);
        assert_eq!(wire::recv(&req, "echo probe"), frames(&[b"Hello world"]));
    });
}

/// A fresh REQ client gets its echo, or else a second one does.
///
/// libzmq 4.3.4's REP (the C's socket, kept here) may silently drop one
/// reply after garbage: a request without an empty delimiter frame, read
/// after its sender has gone, leaves the ROUTER inside REP believing it is
/// in the middle of a reply (`router_t::rollback` resets `_more_out` only
/// when it has a pipe to roll back), so the next reply, to whichever client,
/// is dropped as the tail of that one. The server received the request and
/// sent the reply (checked with counters in flserver1: every request
/// echoed, none refused by the send), and the one after is answered. In
/// loops of this test's garbage against one server it cost 6 replies in 300
/// rounds and 6 in 200. A client retries (flclient1 does); a second loss in
/// a row would be a bug of ours.
fn echo_works_after_garbage(sc: &Scenario) {
    let first = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let req = wire::probe(&ctx, zmq::REQ).connect("tcp://localhost:5555");
        wire::send(&req, &[b"Hello world"]);
        wire::try_recv(&req, "echo probe")
    });
    match first {
        Ok(reply) => assert_eq!(reply, frames(&[b"Hello world"])),
        Err(e) => {
            eprintln!("{e}: a reply lost after garbage (libzmq's REP), asking again");
            echo_works(sc);
        }
    }
}

#[test]
fn flserver1_shrugs_off_garbage_oversized_frames_and_clients_that_never_read() {
    let mut sc = Scenario::new("freelance1-hostile");
    let server = sc.start("flserver1", bin!("flserver1"), &[&bind(5555)]);
    sc.expect(server, "I: echo service is ready", secs(10));
    echo_works(&sc);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let dealers: Vec<zmq::Socket> = (0..4)
            .map(|_| wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555"))
            .collect();
        // Random frames (mostly no REQ envelope: REP discards them), then
        // some with one, and a PING nobody expects.
        attack::send_all(&dealers, attack::random_messages(33, 500, 5, 64));
        // The echoes of random messages that had an empty frame come back
        // too; the PING's echo is among them. libzmq's REP may lose one
        // reply after garbage (see `echo_works_after_garbage`), so up to
        // three PINGs, each waited for 5 s.
        let mut failures = Vec::new();
        for _ in 0..3 {
            wire::send(&dealers[0], &[b"", b"PING"]);
            match wire::recv_until(&dealers[0], "PING probe", common::secs(5), |m| {
                *m == frames(&[b"", b"PING"])
            }) {
                Ok(_) => break,
                Err(e) => failures.push(e),
            }
        }
        assert!(failures.len() < 3, "no PING echoed: {failures:?}");
        let big = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        attack::oversized_frame(&big, &[b""], 100 << 10);
    });
    echo_works_after_garbage(&sc);
    flood_without_reading(&sc, &[b"", &[b'x'; 60 << 10]], server);
    echo_works(&sc);
    sc.stop_cleanly(server, secs(5));
}

/// Floods the server on 5555 with `request` from a client that never reads
/// the replies, and asserts the server's peak memory grew by far less than
/// the unread replies would take if they were all kept.
fn flood_without_reading(sc: &Scenario, request: &[&[u8]], server: Pid) {
    let os_pid = sc.os_pid(server);
    let before = attack::peak_rss_kib(os_pid);
    let request: Vec<Vec<u8>> = request.iter().map(|f| f.to_vec()).collect();
    let size: usize = request.iter().map(Vec::len).sum();
    let count = 2000;
    let flood = sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        // A client that truly stops reading: its own libzmq takes one reply
        // and its kernel buffer 4 KiB, so unread replies back up into the
        // server (a probe with default HWMs would soak them up itself).
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_rcvhwm(1).unwrap();
        dealer.set_rcvbuf(4096).unwrap();
        dealer.connect("tcp://localhost:5555").unwrap();
        let parts: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        attack::flood(&dealer, &parts, count, common::secs(5))
    });
    // The server may push back on this client (it stops reading it once
    // 100 requests wait), but not before it took far more than its bound.
    assert!(flood.sent >= 500, "flood stalled early: {flood:?}");
    let grown_kib = attack::peak_rss_kib(os_pid).saturating_sub(before);
    let unbounded_kib = (flood.sent * size / 1024) as u64;
    eprintln!(
        "flood of {} × {size} bytes: peak RSS +{grown_kib} KiB (all replies kept: {unbounded_kib} KiB)",
        flood.sent
    );
    assert!(
        grown_kib < unbounded_kib / 4,
        "server grew {grown_kib} KiB for {unbounded_kib} KiB of unread replies\n{}",
        sc.report()
    );
}

#[test]
fn flserver2_logs_and_drops_malformed_requests_and_keeps_serving() {
    let mut sc = Scenario::new("freelance2-hostile");
    let server = sc.start("flserver2", bin!("flserver2"), &[&bind(5555)]);
    sc.expect(server, "I: service is ready at tcp://*:5555", secs(10));
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let dealer = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        // One frame (a PING from a client of another model), three frames:
        // the C asserted; we answer one empty frame and go on.
        for bad in [&[b"" as &[u8], b"PING"][..], &[b"", b"1", b"a", b"b"]] {
            wire::send(&dealer, bad);
            assert_eq!(wire::recv(&dealer, "bad request"), frames(&[b"", b""]));
        }
        let dealers: Vec<zmq::Socket> = (0..4)
            .map(|_| wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555"))
            .collect();
        attack::send_all(&dealers, attack::random_messages(34, 500, 5, 64));
        let big = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        attack::oversized_frame(&big, &[b"", b"1"], 100 << 10);
        // A well-formed request is still answered.
        wire::send(&dealer, &[b"", b"7", b"random name"]);
        assert_eq!(
            wire::recv(&dealer, "good request"),
            frames(&[b"", b"7", b"OK"])
        );
    });
    sc.expect(server, "malformed request (1 so far)", secs(5));
    let logged = sc.count(server, "malformed request");
    assert!(
        logged <= 12,
        "{logged} log lines for ~250 malformed requests"
    );
    flood_without_reading(&sc, &[b"", b"1", &[b'x'; 60 << 10]], server);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let dealer = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        wire::send(&dealer, &[b"", b"8", b"random name"]);
        assert_eq!(
            wire::recv(&dealer, "after the flood"),
            frames(&[b"", b"8", b"OK"])
        );
    });
    sc.stop_cleanly(server, secs(5));
}

#[test]
fn flserver3_answers_pings_and_requests_drops_garbage_and_floods() {
    let mut sc = Scenario::new("freelance3-hostile");
    let server = start_flserver3(&mut sc, 5555, false);
    let probe_serves = || {
        let ctx = zmq::Context::new();
        // A ROUTER client as flcliapi has, addressing the server by its
        // endpoint, and a DEALER nobody has seen before.
        let router = wire::probe(&ctx, zmq::ROUTER).connect("tcp://localhost:5555");
        router.set_router_mandatory(true).unwrap();
        let id = b"tcp://localhost:5555";
        let deadline = std::time::Instant::now() + common::secs(10);
        // The connection comes up in the background: PING until it routes.
        while router.send_multipart([&id[..], b"PING"], 0).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "server never routable"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(wire::recv(&router, "PING"), frames(&[id, b"PONG"]));
        wire::send(&router, &[id, b"42", b"random name"]);
        assert_eq!(wire::recv(&router, "request"), frames(&[id, b"42", b"OK"]));
        let stranger = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        wire::send(&stranger, &[b"PING"]);
        assert_eq!(wire::recv(&stranger, "stranger's PING"), frames(&[b"PONG"]));
    };
    sc.in_namespace(probe_serves);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let dealers: Vec<zmq::Socket> = (0..4)
            .map(|_| wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555"))
            .collect();
        attack::send_all(&dealers, attack::random_messages(35, 500, 5, 64));
        let big = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        attack::oversized_frame(&big, &[], 100 << 10);
    });
    sc.in_namespace(probe_serves);
    flood_without_reading(&sc, &[&[b'x'; 60 << 10], b"random name"], server);
    sc.in_namespace(probe_serves);
    // The unread replies were dropped and counted, in few log lines.
    sc.expect(server, "reply dropped (1 so far)", secs(5));
    assert!(sc.count(server, "reply dropped") <= 12, "{}", sc.report());
    sc.stop_cleanly(server, secs(5));
    assert!(sc.output(server).contains("W: interrupted"));
}

// ---- The scenario files ----------------------------------------------------

#[test]
fn scenario_freelance1_runs_to_its_end() {
    common::runs::run_to_the_end("freelance1", &[], 120);
}

#[test]
fn scenario_freelance2_runs_to_its_end() {
    common::runs::run_to_the_end("freelance2", &[], 120);
}

#[test]
fn scenario_freelance3_runs_to_its_end() {
    common::runs::run_to_the_end("freelance3", &[], 120);
}
