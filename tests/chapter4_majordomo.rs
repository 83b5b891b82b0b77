//! Chapter 4, Majordomo (§27–§29): the broker, the worker and client APIs
//! and MMI, run as real processes, plus raw-frame probes that speak the MDP
//! bytes of protocols.md directly (so wire compatibility does not rest on our
//! own client code), fault injection (SIGKILL, restarts) and malformed input.
//! Titanic (§30) has its own file, `chapter4_titanic.rs`.

mod common;
use common::attack::{self, peak_rss_kib, rss_kib};
use common::mdp::*;
use common::wire::{self, frames, Frames};
use common::{ms, secs, timeout_ms, Scenario, Spec};

use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// Waits (bounded by `within`) until `mmi.service` answers `code` for
/// `service`; panics with the last answer otherwise.
fn wait_mmi(ctx: &zmq::Context, service: &[u8], code: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let answer = mmi(ctx, b"mmi.service", service);
        if answer == frames(&[b"MDPC01", b"mmi.service", code]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mmi.service never said {} for {} within {within:?}: {answer:?}",
            String::from_utf8_lossy(code),
            String::from_utf8_lossy(service)
        );
        std::thread::sleep(ms(50));
    }
}

/// A raw MDP worker with a known identity, registered for `service`.
fn raw_worker(ctx: &zmq::Context, identity: &str, service: &[u8]) -> zmq::Socket {
    let worker = wire::probe(ctx, zmq::DEALER)
        .identity(identity)
        .connect("tcp://localhost:5555");
    send(&worker, &[b"", b"MDPW01", b"\x01", service]);
    worker
}

/// The next REQUEST a raw worker gets (heartbeats skipped): client
/// address and body.
fn next_request(worker: &zmq::Socket) -> (Vec<u8>, Frames) {
    let request = recv_skip_heartbeats(worker);
    assert!(request.len() >= 6, "not a REQUEST: {request:?}");
    assert_eq!(&request[..3], &frames(&[b"", b"MDPW01", b"\x02"])[..]);
    assert_eq!(request[4], b"", "{request:?}");
    (request[3].clone(), request[5..].to_vec())
}

/// A raw worker's REPLY to `client`.
fn reply(worker: &zmq::Socket, client: &[u8], body: &[u8]) {
    send(worker, &[b"", b"MDPW01", b"\x03", client, b"", body]);
}

/// Faults in a broker's output: the lines containing `needle`, plus the
/// counts of its `N more peer fault(s) … not shown` lines (the broker logs at
/// most 20 fault lines per heartbeat interval and counts the rest).
fn faults_logged(output: &str, needle: &str) -> usize {
    let shown = output.lines().filter(|l| l.contains(needle)).count();
    let suppressed: usize = output
        .lines()
        .filter_map(|l| {
            let rest = l.split("W: ").nth(1)?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("more peer fault(s)")
                .then(|| n.parse::<usize>().ok())
                .flatten()
        })
        .sum();
    shown + suppressed
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
    // Every send succeeded: the quiet broker reported no fault.
    let output = sc.output(broker);
    assert!(!output.contains("dropped"), "{output}");
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
    let mmiecho = sc.start("mmiecho", bin!("mmiecho"), &["-v"]);
    sc.expect(mdclient, "I: send request to 'echo' service:", secs(30));
    sc.expect(
        mmiecho,
        "I: send request to 'mmi.service' service:",
        secs(30),
    );
    sc.expect(
        ticlient,
        "I: send request to 'titanic.request' service:",
        secs(30),
    );
    for pid in [mdclient, ticlient, mmiecho] {
        sc.stop_cleanly(pid, secs(20));
        sc.expect(pid, "W: interrupt received, killing client...", secs(5));
    }
    sc.expect(mdclient, "0 requests/replies processed", secs(5));
    // Interrupted is not "no response": mmiecho does not blame the broker.
    assert_eq!(sc.count(mmiecho, "E: no response from broker"), 0);
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
        wait_mmi(&ctx, b"echo", b"200", secs(10));
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
        // Nor do queued requests make a service without workers exist.
        let queued = probe(&ctx, zmq::DEALER);
        send(&queued, &[b"", b"MDPC01", b"nobody", b"waits"]);
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

        // Idle workers get HEARTBEAT every 2.5 s: once, then not again
        // within a second (even though the worker's own HEARTBEAT makes
        // the broker turn).
        assert_eq!(recv(&worker), frames(&[b"", b"MDPW01", b"\x04"]));
        send(&worker, &[b"", b"MDPW01", b"\x04"]);
        assert_eq!(
            worker.poll(zmq::POLLIN, timeout_ms(1000).into()).unwrap(),
            0
        );

        // A DEALER client must send the empty frame itself: a request
        // with anything else in its place is dropped.
        let dealer = probe(&ctx, zmq::DEALER);
        send(&dealer, &[b"junk", b"MDPC01", b"echo", b"bad"]);
        send(&dealer, &[b"", b"MDPC01", b"echo", b"async"]);
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(&request[4..], &frames(&[b"", b"async"])[..]);
        let client_id = request[3].clone();
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &client_id, b"", b"done"],
        );
        assert_eq!(recv(&dealer), frames(&[b"", b"MDPC01", b"echo", b"done"]));
        // Worker leaves politely: no answer, and MMI forgets it.
        send(&worker, &[b"", b"MDPW01", b"\x05"]);
        wait_mmi(&ctx, b"echo", b"404", secs(10));
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
            ("no command", vec![b"", b"MDPW01"]),
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
    sc.expect(broker, "second READY", secs(10));
    // Past 20 faults in an interval the rest are only counted, and the
    // count is reported once the interval ends, even if all is quiet.
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let garbage = probe(&ctx, zmq::DEALER);
        for _ in 0..50 {
            send(&garbage, &[b"", b"junk"]);
        }
        // Sent: the broker has read them once it answers after them.
        assert_eq!(mmi(&ctx, b"mmi.service", b"x")[2], b"404");
    });
    sc.expect(
        broker,
        "more peer fault(s) in the last interval not shown",
        secs(10),
    );
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
        wait_mmi(&ctx, b"silent", b"200", secs(10));
        // Expiry is 7.5 s, purges run every 2.5 s: gone within ~10 s.
        wait_mmi(&ctx, b"silent", b"404", secs(40));
        // The live one is still there.
        assert_eq!(
            mmi(&ctx, b"mmi.service", b"echo"),
            frames(&[b"MDPC01", b"mmi.service", b"200"])
        );
        // An idle worker that went silent is forgotten without a word (as
        // in the C): only heartbeats reached it, never a DISCONNECT.
        while silent.poll(zmq::POLLIN, timeout_ms(1000).into()).unwrap() > 0 {
            assert_eq!(recv(&silent), frames(&[b"", b"MDPW01", b"\x04"]));
        }
        drop(silent);
    });
    sc.stop_cleanly(broker, secs(20));
    // The heartbeating worker was never purged (and so never had to
    // register again): two registrations in all, one expiry.
    let output = sc.output(broker);
    assert!(!output.contains("peer fault"), "{output}");
    assert!(!output.contains("dropped"), "nothing was dropped: {output}");
    assert_eq!(
        output.matches("I: registering new worker").count(),
        2,
        "{output}"
    );
    assert_eq!(
        output.matches("I: deleting expired worker").count(),
        1,
        "{output}"
    );
}

#[test]
fn a_worker_that_leaves_takes_nothing_from_the_others() {
    let mut sc = Scenario::new("mdp-leave");
    let broker = start_quiet_broker(&mut sc);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // Two waiting workers for one service; the first leaves.
        let first = raw_worker(&ctx, "FIRST", b"pair");
        let second = raw_worker(&ctx, "SECOND", b"pair");
        wait_mmi(&ctx, b"pair", b"200", secs(10));
        send(&first, &[b"", b"MDPW01", b"\x05"]);
        // The service and the other worker stay: a request reaches it.
        let client = probe(&ctx, zmq::DEALER);
        send(&client, &[b"", b"MDPC01", b"pair", b"still there?"]);
        let (address, body) = next_request(&second);
        assert_eq!(body, frames(&[b"still there?"]));
        reply(&second, &address, b"yes");
        assert_eq!(recv(&client), frames(&[b"", b"MDPC01", b"pair", b"yes"]));
        // Requests queued while the last worker is busy survive its leaving
        // and go to the next worker that comes.
        send(&client, &[b"", b"MDPC01", b"pair", b"one"]);
        send(&client, &[b"", b"MDPC01", b"pair", b"two"]);
        let (_, body) = next_request(&second);
        assert_eq!(body, frames(&[b"one"]));
        send(&second, &[b"", b"MDPW01", b"\x05"]);
        let third = raw_worker(&ctx, "THIRD", b"pair");
        let (address, body) = next_request(&third);
        assert_eq!(body, frames(&[b"two"]));
        reply(&third, &address, b"done");
        assert_eq!(recv(&client), frames(&[b"", b"MDPC01", b"pair", b"done"]));
        drop(first);
    });
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn at_ten_thousand_services_only_workers_of_known_ones_are_welcome() {
    let mut sc = Scenario::new("mdp-services");
    let broker = start_quiet_broker(&mut sc);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // 10,000 services (the bound), each with one queued request.
        let client = probe(&ctx, zmq::DEALER);
        for n in 0..10_000 {
            send(&client, &[b"", b"MDPC01", format!("s{n}").as_bytes(), b"x"]);
        }
        send(&client, &[b"", b"MDPC01", b"mmi.service", b"s0"]);
        assert_eq!(
            recv(&client),
            frames(&[b"", b"MDPC01", b"mmi.service", b"404"])
        );
        // A worker for a new service is refused, one for a known service
        // is welcome and gets its request.
        let newcomer = probe(&ctx, zmq::DEALER);
        send(&newcomer, &[b"", b"MDPW01", b"\x01", b"new"]);
        assert_eq!(recv(&newcomer), frames(&[b"", b"MDPW01", b"\x05"]));
        let worker = raw_worker(&ctx, "W", b"s5");
        assert_eq!(next_request(&worker).1, frames(&[b"x"]));
    });
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn clients_services_and_the_broker_may_queue_exactly_their_bounds() {
    // A request counts its frames' bytes plus 64 bytes plus 48 a frame:
    // eight requests [X][""][4,194,095 bytes] from a client named with one
    // byte make exactly 32 MiB (8 × (64 + 1 + 4,194,095 + 3 × 48)), the
    // client bound. Clients A and B fill service s1 to exactly its 64 MiB,
    // C fills s2, and the broker holds exactly its 96 MiB. Everything up to
    // each bound is queued; one byte more is dropped. Requests that expired
    // before give all their bytes back.
    const BODY: usize = (32 << 20) / 8 - 64 - 1 - 3 * 48;
    let mut sc = Scenario::new("mdp-bounds");
    let broker = start_quiet_broker(&mut sc);
    let (tell_expired, expired) = std::sync::mpsc::channel::<()>();
    let work = sc.in_namespace_background(move || {
        let ctx = zmq::Context::new();
        let body = vec![b'b'; BODY];
        let client = |name: &str| {
            wire::probe(&ctx, zmq::DEALER)
                .identity(name)
                .connect("tcp://localhost:5555")
        };
        // Sends eight full requests, then waits for an MMI answer on the
        // same connection: the broker has taken them all.
        let fill = |client: &zmq::Socket, service: &[u8]| {
            for _ in 0..8 {
                send(client, &[b"", b"MDPC01", service, &body]);
            }
            send(client, &[b"", b"MDPC01", b"mmi.service", service]);
            assert_eq!(recv(client)[2], b"mmi.service");
        };
        let (a, b, c, d) = (client("A"), client("B"), client("C"), client("D"));
        // First 32 MiB that nobody serves: they expire (10 s without a
        // worker) and must give all their bytes back.
        fill(&client("E"), b"gone");
        expired
            .recv_timeout(secs(60))
            .expect("E's requests never expired");
        fill(&a, b"s1");
        send(&a, &[b"", b"MDPC01", b"s1", b"over the client bound"]);
        fill(&b, b"s1");
        fill(&c, b"s2");
        send(&d, &[b"", b"MDPC01", b"s3", b"over the broker bound"]);
        send(&d, &[b"", b"MDPC01", b"mmi.service", b"s3"]);
        assert_eq!(recv(&d)[2], b"mmi.service");

        // Workers come; once a worker holds a client's first request there
        // is room for that client again, and its last request marks its end.
        // Both workers come at once: requests for a service with a worker
        // wait 60 s, those without one only 10 s.
        let w1 = raw_worker(&ctx, "W-1", b"s1");
        let w2 = raw_worker(&ctx, "W-2", b"s2");
        let serve = |worker: &zmq::Socket, service: &[u8], clients: &[(&[u8], &zmq::Socket)]| {
            let mut sizes = Vec::new();
            let mut ends = 0;
            let mut started = Vec::new();
            while ends < clients.len() {
                let (address, request) = next_request(worker);
                if !started.contains(&address) {
                    let (_, client) = clients.iter().find(|(name, _)| *name == address).unwrap();
                    send(client, &[b"", b"MDPC01", service, b"end"]);
                    started.push(address.clone());
                }
                reply(worker, &address, b"ok");
                match &request[..] {
                    [only] if only == b"end" => ends += 1,
                    [only] => sizes.push(only.len()),
                    other => panic!("a request of {} frames", other.len()),
                }
            }
            sizes
        };
        let s1 = serve(&w1, b"s1", &[(b"A", &a), (b"B", &b)]);
        assert_eq!(s1, vec![BODY; 16], "served for s1");
        let s2 = serve(&w2, b"s2", &[(b"C", &c)]);
        assert_eq!(s2, vec![BODY; 8], "served for s2");
        // D's first request was dropped: nothing of D's is queued, so its
        // end must be sent first by hand.
        send(&d, &[b"", b"MDPC01", b"s3", b"end"]);
        let worker = raw_worker(&ctx, "W-3", b"s3");
        assert_eq!(next_request(&worker).1, frames(&[b"end"]), "served for s3");
    });
    sc.wait_for(broker, secs(30), "E's 8 requests expired", |output| {
        output
            .lines()
            .filter_map(|l| l.split("dropped ").nth(1))
            .filter_map(|t| t.strip_suffix(" request(s) that waited too long"))
            .filter_map(|n| n.parse::<usize>().ok())
            .sum::<usize>()
            >= 8
    });
    tell_expired.send(()).unwrap();
    work.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    sc.stop_cleanly(broker, secs(20));
}

// ---------------------------------------------------------------- bad input

/// Seeded MDP fuzz with volume: `count` messages from
/// [`random_message`] spread over 16 identities, where every message that is
/// not a client request also carries a frame of 0–64 KiB, so the noise adds
/// up to hundreds of MiB. Replies are drained, never waited for. Returns the
/// bytes sent.
fn fuzz_with_volume(ctx: &zmq::Context, count: usize, services: &[&[u8]], seed: u64) -> usize {
    let mut rng = seed;
    let sockets: Vec<zmq::Socket> = (0..16).map(|_| probe(ctx, zmq::DEALER)).collect();
    let mut sent = 0;
    for n in 0..count {
        let mut msg = random_message(&mut rng, n, services);
        let request = msg.len() >= 2 && msg[0].is_empty() && msg[1] == b"MDPC01";
        if !request {
            let size = (rng % (64 << 10)) as usize;
            msg.push(vec![(n % 251) as u8; size]);
        }
        sent += msg.iter().map(Vec::len).sum::<usize>();
        // A send that times out (the broker is slower) just counts less.
        let _ = sockets[n % sockets.len()].send_multipart(msg, 0);
        for s in &sockets {
            while s.recv_multipart(zmq::DONTWAIT).is_ok() {}
        }
    }
    sent
}

#[test]
fn broker_survives_random_messages_with_bounded_memory() {
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

    let sent = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        fuzz_with_volume(
            &ctx,
            40_000,
            &[b"echo", b"mmi.service", b"mmi.x", b"other"],
            0x5EED,
        )
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
    let after = rss_kib(pid);
    eprintln!(
        "mdbroker RSS: {before} KiB before, {after} KiB after {} MiB of fuzz",
        sent >> 20
    );
    // The noise was far more than any bound: a broker that kept it would
    // have grown by hundreds of MiB.
    assert!(sent > 400 << 20, "the fuzz sent only {sent} bytes");
    // The noise really reached the broker's error paths (logged at most 20
    // lines per 2.5 s, the rest counted).
    sc.wait_for(broker, secs(10), "over 1000 faults logged", |output| {
        faults_logged(output, "invalid") > 1000
    });
    // What the broker may keep: the fuzz's few small requests for services
    // without workers (they expire after 10 s), a few MiB, plus what libzmq
    // and the allocator hold on to after the burst (measured 15–32 MiB in
    // all); a tenth of what a broker that kept the noise would hold.
    assert!(
        after < before + 64 * 1024,
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
        router.set_rcvtimeo(timeout_ms(30_000)).unwrap();
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
        // Skip heartbeats until the REPLY, for 30 s at most in all.
        let msg = wire::recv_until(&router, "fake broker", secs(30), |msg| {
            msg.get(3).map(Vec::as_slice) == Some(b"\x03")
        })
        .unwrap_or_else(|e| panic!("{e}"));
        msg[1..].to_vec()
    });
    assert_eq!(
        reply,
        frames(&[b"", b"MDPW01", b"\x03", b"client", b"", b"ping"])
    );
    // Logged before the reply went out, but read from its pipe by another thread: wait for it.
    sc.expect(worker, "invalid message from broker", secs(10));
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

// ---------------------------------------------------------------- hostile peers

/// A monitor on `socket` that reports when its connection is dropped.
fn watch_disconnects(ctx: &zmq::Context, socket: &zmq::Socket, name: &str) -> zmq::Socket {
    let endpoint = format!("inproc://monitor-{name}");
    socket
        .monitor(&endpoint, zmq::SocketEvent::DISCONNECTED.to_raw() as i32)
        .expect("monitor");
    wire::probe(ctx, zmq::PAIR)
        .receive_timeout(30_000)
        .connect(&endpoint)
}

/// Waits (bounded by the monitor's receive timeout) until the broker has
/// dropped the watched connection.
fn expect_disconnected(monitor: &zmq::Socket, what: &str) {
    let event = wire::recv(monitor, what);
    let code = u16::from_le_bytes([event[0][0], event[0][1]]);
    assert_eq!(code, zmq::SocketEvent::DISCONNECTED.to_raw(), "{what}");
}

#[test]
fn flood_without_reading_behind_a_silent_worker_stays_bounded() {
    let mut sc = Scenario::new("mdbroker-flood");
    let broker = start_quiet_broker(&mut sc);
    let pid = sc.os_pid(broker);
    // A worker for "slow" that takes one request and never answers.
    let silent = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let silent = raw_worker(&ctx, "SILENT", b"slow");
        wait_mmi(&ctx, b"slow", b"200", secs(10));
        (ctx, silent)
    });
    let before = peak_rss_kib(pid);
    // 1 GiB of 8 KiB requests from one client that never reads: 32 times
    // the client's 32 MiB bound.
    let (flood, kept_connected) = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let flooder = probe(&ctx, zmq::DEALER);
        let body = vec![b'F'; 8 << 10];
        let flood = attack::flood(
            &flooder,
            &[b"", b"MDPC01", b"slow", &body],
            128 << 10,
            secs(90),
        );
        // Same connection, so answered only once the broker has taken in
        // the whole flood.
        send(&flooder, &[b"", b"MDPC01", b"mmi.service", b"slow"]);
        let answer = wire::recv_until(&flooder, "flooder", secs(60), |m| m.len() == 4)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer, frames(&[b"", b"MDPC01", b"mmi.service", b"200"]));
        (flood, (ctx, flooder))
    });
    let after = peak_rss_kib(pid);
    eprintln!(
        "mdbroker peak RSS: {before} KiB before, {after} KiB after a flood of {} × 8 KiB ({} refused)",
        flood.sent, flood.refused
    );
    assert!(flood.sent >= 64 << 10, "the flood sent only {flood:?}");
    sc.expect(broker, "the client's queue is full", secs(10));
    // 32 MiB queued, plus libzmq's buffers (up to 1000 × 8 KiB per peer)
    // and the allocator's slack; the C broker keeps the whole GiB.
    assert!(
        after < before + 64 * 1024,
        "mdbroker peak RSS grew from {before} KiB to {after} KiB"
    );
    // Legitimate clients are still served.
    sc.start("mdworker", bin!("mdworker"), &[]);
    let client = sc.start_spec(
        "mdclient",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 100),
    );
    sc.expect(client, "100 requests/replies processed", secs(60));
    sc.stop_cleanly(broker, secs(20));
    drop((silent, kept_connected));
}

#[test]
fn requests_of_clients_that_vanished_are_not_served() {
    let mut sc = Scenario::new("mdbroker-vanish");
    let broker = start_quiet_broker(&mut sc);
    let (vanished_served, legit) = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let worker = raw_worker(&ctx, "W", b"echo");
        wait_mmi(&ctx, b"echo", b"200", secs(10));
        // 20 clients queue 50 requests each and vanish. Dropping their
        // context waits until every request is on the wire.
        let gone = zmq::Context::new();
        for _ in 0..20 {
            let client = wire::probe(&gone, zmq::DEALER)
                .linger(timeout_ms(10_000))
                .connect("tcp://localhost:5555");
            for _ in 0..50 {
                send(&client, &[b"", b"MDPC01", b"echo", b"vanished"]);
            }
        }
        drop(gone);
        let legit = probe(&ctx, zmq::REQ);
        send(&legit, &[b"MDPC01", b"echo", b"legit"]);
        // Serve everything the broker hands out, until it has had nothing
        // more for 3 s (at most 1001 requests, each wait bounded).
        let mut vanished_served = 0;
        while let Ok(request) = wire::recv_until(&worker, "worker", secs(3), |m| {
            m.get(2).map(Vec::as_slice) == Some(b"\x02")
        }) {
            if request[5..] == frames(&[b"vanished"])[..] {
                vanished_served += 1;
            }
            reply(&worker, &request[3], &request[5]);
            assert!(vanished_served <= 1000, "served more than was sent");
        }
        (vanished_served, recv(&legit))
    });
    assert_eq!(legit, frames(&[b"MDPC01", b"echo", b"legit"]));
    // One request per vanished client: its reply finds no route, and its
    // other 49 are dropped. The C serves all 1000. On a busy machine the
    // broker's I/O thread notices a closed connection later, and replies
    // still find the old route meanwhile (28 served seen in CI); a fifth of
    // the 1000 still tells a broker that forgets from one that does not.
    eprintln!("requests of vanished clients served: {vanished_served} of 1000");
    assert!(
        vanished_served <= 200,
        "served {vanished_served} requests of vanished clients\n{}",
        sc.report()
    );
    sc.expect(broker, "is gone: dropped its 49 queued request(s)", secs(5));
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn a_worker_killed_while_busy_is_forgotten_within_two_heartbeats() {
    let mut sc = Scenario::new("mdbroker-busy-kill");
    let broker = start_quiet_broker(&mut sc);
    let forgotten_after = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let worker = raw_worker(&ctx, "DOOMED", b"doomed");
        wait_mmi(&ctx, b"doomed", b"200", secs(10));
        let client = probe(&ctx, zmq::DEALER);
        send(&client, &[b"", b"MDPC01", b"doomed", b"work"]);
        next_request(&worker);
        // Killed while busy (LINGER 0: the connection just closes).
        drop(worker);
        let killed = Instant::now();
        // Busy workers get HEARTBEATs too; the next one finds no route.
        wait_mmi(&ctx, b"doomed", b"404", secs(6));
        let forgotten_after = killed.elapsed();
        // The queue does not grow for ever: with no worker, requests expire.
        for _ in 0..100 {
            send(&client, &[b"", b"MDPC01", b"doomed", b"more"]);
        }
        forgotten_after
    });
    eprintln!("busy worker forgotten {forgotten_after:?} after it was killed");
    sc.wait_for(broker, secs(20), "100 requests expired", |output| {
        output
            .lines()
            .filter_map(|l| l.split("dropped ").nth(1))
            .filter_map(|t| t.strip_suffix(" request(s) that waited too long"))
            .filter_map(|n| n.parse::<usize>().ok())
            .sum::<usize>()
            >= 100
    });
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn huge_and_hostile_service_names_are_refused() {
    let mut sc = Scenario::new("mdbroker-names");
    // Verbose: service names are printed in its lines too.
    let broker = start_broker(&mut sc);
    let pid = sc.os_pid(broker);
    let before = peak_rss_kib(pid);
    let test_process_rss = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // 20 workers with 32 MiB names: over MAXMSGSIZE, so each connection
        // is dropped before the broker allocates the name.
        let mut attackers = Vec::new();
        for n in 0..20 {
            let worker = probe(&ctx, zmq::DEALER);
            let monitor = watch_disconnects(&ctx, &worker, &format!("huge-{n}"));
            attack::oversized_frame(&worker, &[b"", b"MDPW01", b"\x01"], 32 << 20);
            expect_disconnected(&monitor, "a 32 MiB service name");
            attackers.push(worker);
        }
        drop(attackers);
        // 1000-byte names fit in a frame but not in a service name.
        let long = vec![b'N'; 1000];
        for _ in 0..20 {
            let worker = probe(&ctx, zmq::DEALER);
            send(&worker, &[b"", b"MDPW01", b"\x01", &long]);
            assert_eq!(
                recv(&worker),
                frames(&[b"", b"MDPW01", b"\x05"]),
                "READY with a 1000-byte name"
            );
        }
        // The bound is 255 bytes, exactly.
        let worker = probe(&ctx, zmq::DEALER);
        send(&worker, &[b"", b"MDPW01", b"\x01", &[b'N'; 256]]);
        assert_eq!(recv(&worker), frames(&[b"", b"MDPW01", b"\x05"]));
        let longest = probe(&ctx, zmq::DEALER);
        send(&longest, &[b"", b"MDPW01", b"\x01", &[b'N'; 255]]);
        wait_mmi(&ctx, &[b'N'; 255], b"200", secs(10));
        let asker = probe(&ctx, zmq::DEALER);
        send(&asker, &[b"", b"MDPC01", &[b'N'; 255], b"longest"]);
        let request = recv_skip_heartbeats(&longest);
        assert_eq!(request.last().map(Vec::as_slice), Some(&b"longest"[..]));
        let client = probe(&ctx, zmq::DEALER);
        send(&client, &[b"", b"MDPC01", &long, b"body"]);
        assert_eq!(
            mmi(&ctx, b"mmi.service", &long),
            frames(&[b"MDPC01", b"mmi.service", b"404"])
        );
        // A name that would forge a log line registers (it is a legal
        // name) but is printed escaped.
        let evil = b"evil\nI: registering new worker: FORGED";
        let worker = probe(&ctx, zmq::DEALER);
        send(&worker, &[b"", b"MDPW01", b"\x01", evil]);
        wait_mmi(&ctx, evil, b"200", secs(10));
        send(&client, &[b"", b"MDPC01", evil, b"x\nW: FORGED TOO"]);
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(
            request.last().map(Vec::as_slice),
            Some(&b"x\nW: FORGED TOO"[..])
        );
        attack::rss_kib(std::process::id() as i32)
    });
    let after = peak_rss_kib(pid);
    eprintln!(
        "mdbroker peak RSS: {before} KiB before, {after} KiB after 20 × 32 MiB names \
         (test process {test_process_rss} KiB)"
    );
    assert!(
        after < before + 16 * 1024,
        "mdbroker peak RSS grew from {before} KiB to {after} KiB"
    );
    for line in sc.lines(broker) {
        assert!(!line.contains("FORGED"), "forged log line: {line:?}");
    }
    // Legitimate clients are still served.
    sc.start("mdworker", bin!("mdworker"), &[]);
    let client = sc.start_spec(
        "mdclient",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 100),
    );
    sc.expect(client, "100 requests/replies processed", secs(60));
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn one_256_mib_frame_does_not_raise_the_broker_peak_rss() {
    let mut sc = Scenario::new("mdbroker-256mib");
    let broker = start_quiet_broker(&mut sc);
    let pid = sc.os_pid(broker);
    let before = peak_rss_kib(pid);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let client = probe(&ctx, zmq::DEALER);
        let monitor = watch_disconnects(&ctx, &client, "256mib");
        attack::oversized_frame(&client, &[b"", b"MDPC01", b"echo"], 256 << 20);
        expect_disconnected(&monitor, "a 256 MiB request body");
    });
    let after = peak_rss_kib(pid);
    eprintln!("mdbroker peak RSS: {before} KiB before, {after} KiB after one 256 MiB frame");
    assert!(
        after < before + 8 * 1024,
        "mdbroker peak RSS grew from {before} KiB to {after} KiB"
    );
    sc.start("mdworker", bin!("mdworker"), &[]);
    let client = sc.start_spec(
        "mdclient",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 100),
    );
    sc.expect(client, "100 requests/replies processed", secs(60));
    sc.stop_cleanly(broker, secs(20));
}

// ---------------------------------------------------------------- queueing order

#[test]
fn requests_oldest_first_clients_in_turn_workers_longest_waiting_first() {
    let mut sc = Scenario::new("mdbroker-order");
    let broker = start_broker(&mut sc);
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let probe = sc.in_namespace_background(move || {
        let ctx = zmq::Context::new();
        let client = |id: &str| {
            wire::probe(&ctx, zmq::DEALER)
                .identity(id)
                .connect("tcp://localhost:5555")
        };
        // An MMI round trip on the same connection: everything this client
        // sent before has been queued.
        let sync = |socket: &zmq::Socket| {
            send(socket, &[b"", b"MDPC01", b"mmi.service", b"order"]);
            let answer = wire::recv(socket, "client");
            assert_eq!(answer[2], b"mmi.service", "{answer:?}");
        };
        // No worker yet: A queues a1..a3, then B queues b1..b3.
        let (a, b) = (client("A"), client("B"));
        for (socket, name) in [(&a, "a"), (&b, "b")] {
            for n in 1..=3 {
                let body = format!("{name}{n}");
                send(socket, &[b"", b"MDPC01", b"order", body.as_bytes()]);
            }
            sync(socket);
        }
        // One worker serves them one at a time.
        let w1 = raw_worker(&ctx, "W1", b"order");
        let mut served = Vec::new();
        for _ in 0..6 {
            let (client, body) = next_request(&w1);
            served.push(String::from_utf8_lossy(&body[0]).into_owned());
            reply(&w1, &client, &body[0]);
        }
        // W1 waits again; W2 then W3 register after it.
        let w2 = raw_worker(&ctx, "W2", b"order");
        wait_go.recv_timeout(secs(30)).expect("W2 registered");
        let w3 = raw_worker(&ctx, "W3", b"order");
        wait_go.recv_timeout(secs(30)).expect("W3 registered");
        for n in 1..=3 {
            let body = format!("r{n}");
            send(&a, &[b"", b"MDPC01", b"order", body.as_bytes()]);
        }
        let got: Vec<String> = [&w1, &w2, &w3]
            .iter()
            .map(|w| String::from_utf8_lossy(&next_request(w).1[0]).into_owned())
            .collect();
        (served, got)
    });
    sc.expect(broker, "I: registering new worker: W2", secs(30));
    go.send(()).unwrap();
    sc.expect(broker, "I: registering new worker: W3", secs(30));
    go.send(()).unwrap();
    let (served, got) = probe
        .join()
        .unwrap_or_else(|_| sc.fail("order probe failed"));
    // Oldest first within a client, the two clients in turn.
    assert_eq!(served, ["a1", "b1", "a2", "b2", "a3", "b3"]);
    // The longest-waiting worker gets the first request.
    assert_eq!(got, ["r1", "r2", "r3"]);
    sc.stop_cleanly(broker, secs(20));
}

// ---------------------------------------------------------------- Ctrl-C

#[test]
fn mdworker_blocked_sending_to_a_broker_that_stopped_reading_exits_on_sigint() {
    let mut sc = Scenario::new("mdworker-blocked");
    // A fake broker that hands out 2000 requests of 64 KiB and never reads
    // a reply: the worker's queue (HWM 1000) and the TCP buffers fill, and
    // the worker blocks in its send.
    let router = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.set_sndhwm(0).unwrap();
        router.set_rcvhwm(10).unwrap();
        router.set_rcvtimeo(timeout_ms(30_000)).unwrap();
        router.bind("tcp://*:5555").unwrap();
        (ctx, router)
    });
    let worker = sc.start("mdworker", bin!("mdworker"), &["-v"]);
    let router = sc.in_namespace(move || {
        let (ctx, router) = router;
        let hello = router.recv_multipart(0).expect("READY from mdworker");
        let body = vec![b'B'; 64 << 10];
        for _ in 0..2000 {
            router
                .send_multipart(
                    [&hello[0][..], b"", b"MDPW01", b"\x02", b"c", b"", &body],
                    0,
                )
                .unwrap();
        }
        (ctx, router)
    });
    sc.expect_count(worker, "I: sending REPLY to broker", 1000, secs(60));
    // Let it run into the full queue (it cannot get further than ~1100).
    // Not a sync: the assertion below checks that it never finished.
    std::thread::sleep(ms(1000));
    let interrupted = Instant::now();
    sc.stop_cleanly(worker, secs(10));
    let replies = sc.count(worker, "I: sending REPLY to broker");
    eprintln!(
        "mdworker exited {:?} after SIGINT, blocked after {replies} replies",
        interrupted.elapsed()
    );
    assert!(
        replies < 2000,
        "the worker was never blocked: {replies} replies"
    );
    // `-v` cuts frames as czmq's zmsg_dump does, in both directions: the
    // replies echo 64 KiB bodies, which must not become 64 KiB log lines.
    let longest = sc.lines(worker).iter().map(String::len).max().unwrap_or(0);
    assert!(
        longest < 200,
        "a {longest}-byte line in the worker's -v output"
    );
    drop(router);
}

#[test]
fn a_worker_silent_on_a_request_and_stale_requests_expire_after_60_s() {
    let mut sc = Scenario::new("mdbroker-busy-expiry");
    let broker = start_quiet_broker(&mut sc);
    let waited = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // A worker that takes a request and then never answers, while its
        // connection stays up (so only the 60 s bound can end it).
        let worker = raw_worker(&ctx, "STUCK", b"stuck");
        wait_mmi(&ctx, b"stuck", b"200", secs(10));
        let client = probe(&ctx, zmq::DEALER);
        send(&client, &[b"", b"MDPC01", b"stuck", b"first"]);
        next_request(&worker);
        let busy_since = Instant::now();
        // A second request waits behind it, for a worker that is busy.
        send(&client, &[b"", b"MDPC01", b"stuck", b"second"]);
        // It heartbeats while it holds the request (as a worker busy on
        // another thread would): that keeps it known, but does not move
        // its request's deadline.
        let deadline = Instant::now() + secs(90);
        loop {
            assert!(Instant::now() < deadline, "no DISCONNECT within 90 s");
            send(&worker, &[b"", b"MDPW01", b"\x04"]);
            if worker.poll(zmq::POLLIN, 1000).unwrap() > 0
                && recv(&worker) == frames(&[b"", b"MDPW01", b"\x05"])
            {
                break;
            }
        }
        let waited = busy_since.elapsed();
        wait_mmi(&ctx, b"stuck", b"404", secs(5));
        waited
    });
    eprintln!("busy worker told DISCONNECT after {waited:?}");
    // 60 s, checked every 2.5 s.
    // The lower limit is the broker's own constant, so it is not stretched.
    assert!(
        waited >= Duration::from_secs(59) && waited < Duration::from_secs(60) + secs(10),
        "DISCONNECT after {waited:?}"
    );
    // The second request expired too: 60 s with a (busy) worker, or 10 s
    // once the service had none.
    sc.expect(
        broker,
        "dropped 1 request(s) that waited too long",
        secs(20),
    );
    sc.stop_cleanly(broker, secs(20));
}

/// Serves (echoes) what a raw worker gets, counting it, until a message for
/// which `done` holds; at most 1000 served, each wait bounded.
fn serve_until(worker: &zmq::Socket, served: &mut usize, done: impl Fn(&Frames) -> bool) -> Frames {
    loop {
        let msg = recv_skip_heartbeats(worker);
        if done(&msg) {
            return msg;
        }
        assert!(
            msg.len() >= 6 && msg[2] == b"\x02",
            "not a REQUEST: {msg:?}"
        );
        reply(worker, &msg[3], &msg[5]);
        *served += 1;
        assert!(*served <= 1000, "served more than 1000 other requests");
    }
}

#[test]
fn forgetting_vanished_clients_keeps_everything_else() {
    let mut sc = Scenario::new("mdbroker-forget");
    let broker = start_quiet_broker(&mut sc);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // L waits on a service that has no worker yet.
        let waiting = probe(&ctx, zmq::REQ);
        send(&waiting, &[b"MDPC01", b"later", b"wait"]);
        let worker = raw_worker(&ctx, "W", b"echo");
        wait_mmi(&ctx, b"echo", b"200", secs(10));
        // Two clients queue about 28 MiB each (under their 32 MiB bound)
        // and vanish; together more than the broker's 96 MiB if their bytes
        // were not given back when they are forgotten.
        let gone = zmq::Context::new();
        let body = vec![b'V'; 8 << 10];
        for _ in 0..2 {
            let client = wire::probe(&gone, zmq::DEALER)
                .linger(timeout_ms(10_000))
                .connect("tcp://localhost:5555");
            for _ in 0..3500 {
                send(&client, &[b"", b"MDPC01", b"echo", &body]);
            }
        }
        drop(gone);
        // One request of each is served; its reply finds no route and the
        // client is forgotten.
        for _ in 0..2 {
            let (client, body) = next_request(&worker);
            reply(&worker, &client, &body[0]);
        }
        // An MMI request on the worker's own connection: answered only after
        // the broker has handled both replies. Requests of theirs that were
        // still on the way when they were forgotten are served meanwhile.
        let mut stragglers = 0;
        send(&worker, &[b"", b"MDPC01", b"mmi.service", b"echo"]);
        let answer = serve_until(&worker, &mut stragglers, |m| m.len() == 4);
        assert_eq!(answer, frames(&[b"", b"MDPC01", b"mmi.service", b"200"]));
        // Their 56 MiB were given back: a new request still fits.
        let legit = probe(&ctx, zmq::REQ);
        send(&legit, &[b"MDPC01", b"echo", b"legit"]);
        let request = serve_until(&worker, &mut stragglers, |m| {
            m.get(5).map(Vec::as_slice) == Some(b"legit")
        });
        reply(&worker, &request[3], b"legit");
        eprintln!("requests still on the way when their client was forgotten: {stragglers}");
        assert_eq!(recv(&legit), frames(&[b"MDPC01", b"echo", b"legit"]));
        // echo keeps its worker; L's request still waits for its service.
        wait_mmi(&ctx, b"echo", b"200", secs(1));
        let late = raw_worker(&ctx, "LATE", b"later");
        let (client, body) = next_request(&late);
        assert_eq!(body, frames(&[b"wait"]));
        reply(&late, &client, b"served");
        assert_eq!(recv(&waiting), frames(&[b"MDPC01", b"later", b"served"]));
    });
    sc.expect(
        broker,
        "is gone: dropped its 3499 queued request(s)",
        secs(5),
    );
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn more_than_the_broker_bound_in_total_is_all_served() {
    // 120 MiB of 8 KiB requests through one worker, 1000 in flight at a
    // time: the queued-bytes count must go down as requests are handed out,
    // or the broker would refuse everything after its first 96 MiB.
    let mut sc = Scenario::new("mdbroker-volume");
    let broker = start_quiet_broker(&mut sc);
    sc.start("mdworker", bin!("mdworker"), &[]);
    let served = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        wait_mmi(&ctx, b"echo", b"200", secs(30));
        let client = probe(&ctx, zmq::DEALER);
        let body = vec![b'T'; 8 << 10];
        let mut served = 0;
        for _ in 0..15 {
            for _ in 0..1000 {
                send(&client, &[b"", b"MDPC01", b"echo", &body]);
            }
            for _ in 0..1000 {
                let reply = recv(&client);
                assert_eq!(reply.len(), 4);
                served += 1;
            }
        }
        served
    });
    assert_eq!(served, 15_000);
    sc.stop_cleanly(broker, secs(20));
}
