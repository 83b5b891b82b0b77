//! The study's broker (study part 2): the real `broker` process, driven by
//! the guide's MDP programs and by raw-frame probes in the scenario's
//! namespace, so each test checks the bytes on the wire: dialects on one
//! socket and mixed, every status code, policies, priorities, deadlines,
//! environments, dead workers, management, and hostile input.

mod common;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::wire::{self, frames, Frames};
use common::{ms, secs, Scenario, Spec};
use zguide::broker::protocol::{
    parse_client, parse_worker, ClientCommand, Properties, Reply, Request, Status, WorkerCommand,
};

const BROKER: &str = "tcp://localhost:5555";

fn start_broker(sc: &mut Scenario, args: &[&str]) -> common::Pid {
    let broker = sc.start("broker", bin!("broker"), args);
    sc.expect(broker, "broker is active at", secs(30));
    broker
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sbp_request(
    service: &str,
    correlation: &str,
    properties: Properties,
    body: &[&str],
) -> ClientCommand {
    ClientCommand::Request(Request {
        service: service.as_bytes().to_vec(),
        address: Vec::new(),
        properties,
        correlation: correlation.as_bytes().to_vec(),
        body: body.iter().map(|b| b.as_bytes().to_vec()).collect(),
    })
}

fn props(
    priority: i8,
    deadline: Option<u64>,
    environment: Option<&str>,
    idempotent: bool,
) -> Properties {
    Properties::build(deadline, priority, environment, idempotent, None)
}

fn send_frames(socket: &zmq::Socket, frames: &Frames) {
    socket
        .send_multipart(frames.iter(), 0)
        .unwrap_or_else(|e| panic!("probe cannot send: {e}"));
}

/// The next SBP/1 REPLY on a client probe (PONGs skipped), within 10 s.
fn sbp_reply(client: &zmq::Socket) -> Reply {
    let deadline = Instant::now() + secs(10);
    while Instant::now() < deadline {
        let message = wire::recv(client, "SBP client");
        match parse_client(&message).map(|p| p.command) {
            Ok(ClientCommand::Reply(reply)) => return reply,
            Ok(ClientCommand::Pong) => continue,
            other => panic!("not a REPLY: {other:?} from {message:?}"),
        }
    }
    panic!("no REPLY within 10 s");
}

/// A raw SBP/1 worker: DEALER, READY sent.
fn sbp_worker(context: &zmq::Context, service: &str, environment: Option<&str>) -> zmq::Socket {
    let worker = wire::probe(context, zmq::DEALER).connect(BROKER);
    let ready = WorkerCommand::Ready {
        service: service.as_bytes().to_vec(),
        properties: Properties::build(None, 0, environment, false, None),
    };
    send_frames(&worker, &ready.to_frames(false));
    worker
}

/// The next REQUEST a raw SBP worker gets (HEARTBEATs skipped), within 10 s:
/// (client token, request).
fn sbp_next_request(worker: &zmq::Socket) -> (Vec<u8>, Request) {
    let message = wire::recv_until(worker, "SBP worker", secs(10), |m| {
        !matches!(
            parse_worker(m).map(|p| p.command),
            Ok(WorkerCommand::Heartbeat)
        )
    })
    .unwrap_or_else(|e| panic!("{e}"));
    match parse_worker(&message).map(|p| p.command) {
        Ok(WorkerCommand::Request { client, request }) => (client, request),
        other => panic!("not a REQUEST: {other:?}"),
    }
}

fn sbp_answer(
    worker: &zmq::Socket,
    client: Vec<u8>,
    request: &Request,
    status: Status,
    body: &str,
) {
    let reply = WorkerCommand::Reply {
        client,
        reply: Reply {
            service: Vec::new(),
            correlation: request.correlation.clone(),
            status,
            properties: Properties::default(),
            body: vec![body.as_bytes().to_vec()],
        },
    };
    send_frames(worker, &reply.to_frames(false));
}

/// Asks `mmi.service` until `service` has a worker (10 s at most).
fn wait_registered(client: &zmq::Socket, service: &str) {
    wait_for_workers(client, service, true);
}

/// Asks `mmi.service` until the broker says the service has (or no longer
/// has) a worker: a worker's READY or DISCONNECT and a client's request come
/// on different sockets, so only the broker's own answer orders them.
fn wait_for_workers(client: &zmq::Socket, service: &str, present: bool) {
    let deadline = Instant::now() + secs(10);
    loop {
        let lookup = sbp_request("mmi.service", "wait", Properties::default(), &[service]);
        send_frames(client, &lookup.to_frames(false));
        if (sbp_reply(client).body == [b"200".to_vec()]) == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never {} a worker",
            if present { "got" } else { "lost" }
        );
        std::thread::yield_now();
    }
}

fn text(frames: &[Vec<u8>]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

// ------------------------------------------------------------- the guide's programs

#[test]
fn the_guides_mdp_programs_work_against_the_broker() {
    let mut sc = Scenario::new("broker-guide-mdp");
    let broker = start_broker(&mut sc, &[]);
    let worker = sc.start("mdworker", bin!("mdworker"), &[]);
    let mmiecho = sc.start("mmiecho", bin!("mmiecho"), &[]);
    sc.expect(mmiecho, "Lookup echo service: ", secs(30));
    let client = sc.start_spec(
        "mdclient",
        Spec::new(bin!("mdclient"), &[]).env("ZGUIDE_REQUESTS", 1000),
    );
    sc.expect(client, "1000 requests/replies processed", secs(120));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    let client2 = sc.start_spec(
        "mdclient2",
        Spec::new(bin!("mdclient2"), &[]).env("ZGUIDE_REQUESTS", 2000),
    );
    sc.expect(client2, "2000 replies received", secs(120));
    assert_eq!(sc.wait_exit(client2, secs(10)), 0);
    let mmiecho = sc.start("mmiecho-200", bin!("mmiecho"), &[]);
    sc.expect(mmiecho, "Lookup echo service: 200", secs(30));
    sc.stop_cleanly(worker, secs(20));
    sc.stop_cleanly(broker, secs(20));
    sc.expect(broker, "interrupt received, shutting down", secs(5));
}

// ------------------------------------------------------------- SBP/1 on the wire

#[test]
fn sbp_requests_get_every_status_code() {
    let mut sc = Scenario::new("broker-status-codes");
    start_broker(
        &mut sc,
        &[
            "--policy",
            "strict=notify",
            "--max-queue",
            "3",
            "--heartbeat-ms",
            "300",
        ],
    );
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        let ask = |command: ClientCommand| {
            send_frames(&client, &command.to_frames(false));
            sbp_reply(&client)
        };
        // 404: a notify service that never had a worker.
        let reply = ask(sbp_request("strict", "c404", Properties::default(), &["x"]));
        assert_eq!(
            (reply.status, reply.correlation.as_slice()),
            (Status(404), &b"c404"[..])
        );
        assert_eq!(reply.service, b"strict");
        assert!(reply.properties.reason.is_some());
        // 503: it had one, which left.
        let worker = sbp_worker(&context, "strict", None);
        wait_registered(&client, "strict");
        send_frames(
            &client,
            &sbp_request("strict", "c200", Properties::default(), &["ping"]).to_frames(false),
        );
        let (token, request) = sbp_next_request(&worker);
        sbp_answer(&worker, token, &request, Status::OK, "pong");
        let reply = sbp_reply(&client);
        assert_eq!(reply.status, Status::OK);
        assert_eq!(text(&reply.body), ["pong"]);
        send_frames(&worker, &WorkerCommand::Disconnect.to_frames(false));
        // Sent at once, c503 could reach the broker before the DISCONNECT, go
        // to the worker and come back 500 (seen in CI).
        wait_for_workers(&client, "strict", false);
        let reply = ask(sbp_request("strict", "c503", Properties::default(), &["x"]));
        assert_eq!(reply.status, Status(503));
        // 503: a full queue (3 requests, no worker, policy ignore).
        for n in 0..3 {
            send_frames(
                &client,
                &sbp_request("queue", &format!("q{n}"), Properties::default(), &["x"])
                    .to_frames(false),
            );
        }
        let reply = ask(sbp_request("queue", "q3", Properties::default(), &["x"]));
        assert_eq!(
            (reply.status, reply.correlation.as_slice()),
            (Status(503), &b"q3"[..])
        );
        // 504: a deadline already past, and one that passes in the queue.
        let past = props(0, Some(now_ms() - 1), None, false);
        let reply = ask(sbp_request("other", "late", past, &["x"]));
        assert_eq!(reply.status, Status(504));
        let soon = props(0, Some(now_ms() + 300), None, false);
        let sent = Instant::now();
        let reply = ask(sbp_request("nobody", "stale", soon, &["x"]));
        assert_eq!(
            (reply.status, reply.correlation.as_slice()),
            (Status(504), &b"stale"[..])
        );
        assert!(sent.elapsed() >= ms(250), "504 before the deadline");
        // 400: properties that are not a map; the correlation is echoed.
        let mut bad = sbp_request("echo", "broken", Properties::default(), &["x"]).to_frames(false);
        bad[4] = vec![0x01];
        send_frames(&client, &bad);
        let reply = sbp_reply(&client);
        assert_eq!(
            (reply.status, reply.correlation.as_slice()),
            (Status(400), &b"broken"[..])
        );
        // 500: a worker dies holding the request.
        let dying = sbp_worker(&context, "fragile", None);
        send_frames(
            &client,
            &sbp_request("fragile", "c500", Properties::default(), &["x"]).to_frames(false),
        );
        let _ = sbp_next_request(&dying);
        drop(dying);
        let reply = sbp_reply(&client);
        assert_eq!(
            (reply.status, reply.correlation.as_slice()),
            (Status(500), &b"c500"[..])
        );
        // A worker's own status reaches the client.
        let failing = sbp_worker(&context, "failing", None);
        send_frames(
            &client,
            &sbp_request("failing", "own", Properties::default(), &["x"]).to_frames(false),
        );
        let (token, request) = sbp_next_request(&failing);
        sbp_answer(&failing, token, &request, Status::WORKER_FAILED, "no");
        assert_eq!(sbp_reply(&client).status, Status(500));
        // PING is answered PONG.
        send_frames(&client, &ClientCommand::Ping.to_frames(false));
        let pong = wire::recv(&client, "PONG");
        assert_eq!(
            parse_client(&pong).map(|p| p.command),
            Ok(ClientCommand::Pong)
        );
    });
}

#[test]
fn an_idempotent_request_goes_to_another_worker_when_its_worker_dies() {
    let mut sc = Scenario::new("broker-idempotent");
    start_broker(&mut sc, &["--heartbeat-ms", "300"]);
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        let first = sbp_worker(&context, "svc", None);
        let request = sbp_request("svc", "again", props(0, None, None, true), &["job"]);
        send_frames(&client, &request.to_frames(false));
        let (_, seen) = sbp_next_request(&first);
        assert_eq!(text(&seen.body), ["job"]);
        drop(first);
        // The broker learns within a heartbeat; the next worker gets the job.
        let second = sbp_worker(&context, "svc", None);
        let (token, seen) = sbp_next_request(&second);
        assert_eq!(seen.correlation, b"again");
        sbp_answer(&second, token, &seen, Status::OK, "done");
        let reply = sbp_reply(&client);
        assert_eq!(
            (reply.status, text(&reply.body)),
            (Status::OK, vec!["done".to_string()])
        );
    });
}

#[test]
fn priorities_order_a_services_queue_and_deadlines_expire_behind_a_stalled_worker() {
    let mut sc = Scenario::new("broker-priority");
    start_broker(&mut sc, &[]);
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        for (correlation, priority) in [("a", 0), ("b", 5), ("c", -1), ("d", 5), ("e", 0)] {
            let request = sbp_request("prio", correlation, props(priority, None, None, false), &[]);
            send_frames(&client, &request.to_frames(false));
        }
        // The client's five requests are queued before the worker comes:
        // an MMI round trip on the same connection comes after them.
        send_frames(
            &client,
            &sbp_request("mmi.service", "sync", Properties::default(), &["prio"]).to_frames(false),
        );
        assert_eq!(sbp_reply(&client).correlation, b"sync");
        let worker = sbp_worker(&context, "prio", None);
        let mut order = Vec::new();
        for _ in 0..5 {
            let (token, request) = sbp_next_request(&worker);
            order.push(String::from_utf8_lossy(&request.correlation).into_owned());
            sbp_answer(&worker, token, &request, Status::OK, "ok");
            assert_eq!(sbp_reply(&client).status, Status::OK);
        }
        assert_eq!(order, ["b", "d", "a", "e", "c"]);
        // A stalled worker: it takes one request and never answers; a request
        // behind it with a deadline is answered 504 when the deadline passes.
        send_frames(
            &client,
            &sbp_request("prio", "stuck", Properties::default(), &[]).to_frames(false),
        );
        let _ = sbp_next_request(&worker);
        let deadline = props(0, Some(now_ms() + 400), None, false);
        let sent = Instant::now();
        send_frames(
            &client,
            &sbp_request("prio", "waits", deadline, &[]).to_frames(false),
        );
        let reply = sbp_reply(&client);
        assert_eq!(
            (reply.status, reply.correlation.as_slice()),
            (Status(504), &b"waits"[..])
        );
        assert!(sent.elapsed() >= ms(350), "504 came before the deadline");
    });
}

#[test]
fn environments_scope_services_without_crosstalk() {
    let mut sc = Scenario::new("broker-environments");
    start_broker(&mut sc, &["--policy", "echo=notify"]);
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        let test_worker = sbp_worker(&context, "echo", Some("test"));
        // mmi.service answers per environment.
        let lookup = |environment: &str| {
            let request = sbp_request(
                "mmi.service",
                environment,
                props(0, None, Some(environment), false),
                &["echo"],
            );
            send_frames(&client, &request.to_frames(false));
            text(&sbp_reply(&client).body)
        };
        let deadline = Instant::now() + secs(10);
        while lookup("test") != ["200"] {
            assert!(
                Instant::now() < deadline,
                "the test worker never registered"
            );
        }
        assert_eq!(lookup("prod"), ["404"]);
        // A prod request is not given to the test worker: 404 (notify).
        let prod = sbp_request("echo", "p", props(0, None, Some("prod"), false), &["x"]);
        send_frames(&client, &prod.to_frames(false));
        assert_eq!(sbp_reply(&client).status, Status(404));
        let test = sbp_request("echo", "t", props(0, None, Some("test"), false), &["x"]);
        send_frames(&client, &test.to_frames(false));
        let (token, request) = sbp_next_request(&test_worker);
        assert_eq!(request.correlation, b"t");
        assert_eq!(request.properties.environment, "test");
        sbp_answer(&test_worker, token, &request, Status::OK, "from test");
        assert_eq!(text(&sbp_reply(&client).body), ["from test"]);
    });
}

// ------------------------------------------------------------- dialects mixed

#[test]
fn clients_and_workers_of_every_dialect_mix_on_one_broker() {
    let mut sc = Scenario::new("broker-dialects");
    let broker = start_broker(&mut sc, &[]);
    // The guide's mdworker (MDP/0.1) serves "echo".
    let _mdworker = sc.start("mdworker", bin!("mdworker"), &[]);
    let _ = broker;
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        // An SBP/1 client (REQ: with the leading empty frame) to the MDP worker.
        let req = wire::probe(&context, zmq::REQ).connect(BROKER);
        let deadline = Instant::now() + secs(20);
        let reply = loop {
            let request = sbp_request("echo", "to-mdp", Properties::default(), &["hello", "there"]);
            // REQ adds the empty frame itself.
            send_frames(&req, &request.to_frames(false));
            let reply = sbp_reply(&req);
            if reply.status == Status::OK || Instant::now() > deadline {
                break reply;
            }
        };
        assert_eq!(reply.status, Status::OK);
        assert_eq!(text(&reply.body), ["hello", "there"]);

        // An MDP/0.1 client to an SBP/1 worker.
        let worker = sbp_worker(&context, "sbp-svc", None);
        let mdp = wire::probe(&context, zmq::REQ).connect(BROKER);
        wire::send(&mdp, &[b"MDPC01", b"sbp-svc", b"body"]);
        let (token, request) = sbp_next_request(&worker);
        assert_eq!(text(&request.body), ["body"]);
        sbp_answer(&worker, token, &request, Status::OK, "answer");
        assert_eq!(
            wire::recv(&mdp, "MDP client"),
            frames(&[b"MDPC01", b"sbp-svc", b"answer"])
        );

        // MDP/0.2 workers (RFC 18: no empty frame) with PARTIAL + FINAL:
        let mdp2 = wire::probe(&context, zmq::DEALER).connect(BROKER);
        wire::send(&mdp2, &[b"MDPW02", b"\x01", b"stream"]);
        let next_mdp2 = |worker: &zmq::Socket| {
            wire::recv_until(worker, "MDP/0.2 worker", secs(10), |m| m[1] != b"\x05")
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // ... to an RFC 18 client: the PARTIAL goes straight through.
        let rfc18 = wire::probe(&context, zmq::DEALER).connect(BROKER);
        wire::send(&rfc18, &[b"MDPC02", b"\x01", b"stream", b"q"]);
        let request = next_mdp2(&mdp2);
        assert_eq!(request[..2], frames(&[b"MDPW02", b"\x02"]));
        let client = request[2].clone();
        assert_eq!(request[3..], frames(&[b"", b"q"]));
        wire::send(&mdp2, &[b"MDPW02", b"\x03", &client, b"", b"part"]);
        assert_eq!(
            wire::recv(&rfc18, "RFC 18 client"),
            frames(&[b"MDPC02", b"\x02", b"stream", b"part"])
        );
        wire::send(&mdp2, &[b"MDPW02", b"\x04", &client, b"", b"final"]);
        assert_eq!(
            wire::recv(&rfc18, "RFC 18 client"),
            frames(&[b"MDPC02", b"\x03", b"stream", b"final"])
        );
        // ... to an MDP/0.1 client: partials folded in front of the final body.
        let mdp01 = wire::probe(&context, zmq::REQ).connect(BROKER);
        wire::send(&mdp01, &[b"MDPC01", b"stream", b"q"]);
        let request = next_mdp2(&mdp2);
        let client = request[2].clone();
        wire::send(&mdp2, &[b"MDPW02", b"\x03", &client, b"", b"one"]);
        wire::send(&mdp2, &[b"MDPW02", b"\x03", &client, b"", b"two"]);
        wire::send(&mdp2, &[b"MDPW02", b"\x04", &client, b"", b"three"]);
        assert_eq!(
            wire::recv(&mdp01, "MDP/0.1 client"),
            frames(&[b"MDPC01", b"stream", b"one", b"two", b"three"])
        );
        // ... to a majortomo-shaped client: leading empty frame, no service.
        let majortomo = wire::probe(&context, zmq::DEALER).connect(BROKER);
        wire::send(&majortomo, &[b"", b"MDPC02", b"\x02", b"stream", b"q"]);
        let request = next_mdp2(&mdp2);
        let client = request[2].clone();
        wire::send(&mdp2, &[b"MDPW02", b"\x04", &client, b"", b"mt"]);
        assert_eq!(
            wire::recv(&majortomo, "majortomo client"),
            frames(&[b"", b"MDPC02", b"\x04", b"mt"])
        );
    });
}

// ------------------------------------------------------------- management

#[test]
fn management_services_name_service_and_mmi() {
    let mut sc = Scenario::new("broker-management");
    start_broker(&mut sc, &[]);
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        let ask = |service: &str, body: &[&str]| {
            send_frames(
                &client,
                &sbp_request(service, "m", Properties::default(), body).to_frames(false),
            );
            let reply = sbp_reply(&client);
            (reply.status.0, text(&reply.body))
        };
        assert_eq!(
            ask("mmi.lookup", &["files"]),
            (404, vec!["404".to_string()])
        );
        assert_eq!(
            ask("mmi.register", &["files", "tcp://10.0.0.7:6000"]),
            (200, vec!["200".into()])
        );
        assert_eq!(
            ask("mmi.lookup", &["files"]),
            (200, vec!["200".into(), "tcp://10.0.0.7:6000".into()])
        );
        // Names are scoped by environment too.
        let in_test = sbp_request(
            "mmi.lookup",
            "env",
            props(0, None, Some("test"), false),
            &["files"],
        );
        send_frames(&client, &in_test.to_frames(false));
        assert_eq!(sbp_reply(&client).status, Status(404));
        assert_eq!(ask("mmi.register", &["files"]).0, 400);
        assert_eq!(ask("mmi.register", &["bad name", "x"]).0, 400);
        assert_eq!(ask("mmi.unregister", &["files"]).0, 200);
        assert_eq!(ask("mmi.lookup", &["files"]).0, 404);
        assert_eq!(ask("mmi.nonsense", &[]), (501, vec!["501".into()]));
        // mmi.services: a JSON document with each service's figures.
        let worker = sbp_worker(&context, "listed", None);
        let deadline = Instant::now() + secs(10);
        let document = loop {
            let (status, body) = ask("mmi.services", &[]);
            assert_eq!(status, 200);
            let document: serde_json::Value = serde_json::from_str(&body[1]).expect("JSON");
            let workers = document["services"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["service"] == "listed"))
                .map(|s| s["workers"].clone());
            if workers == Some(serde_json::json!(1)) {
                break document;
            }
            assert!(Instant::now() < deadline, "no worker listed: {document}");
        };
        assert!(
            document["broker"]["uptime_seconds"].is_number(),
            "{document}"
        );
        drop(worker);
        // MDP/0.1 MMI as the C does it: the last frame becomes the code.
        let mdp = wire::probe(&context, zmq::REQ).connect(BROKER);
        wire::send(&mdp, &[b"MDPC01", b"mmi.service", b"listed"]);
        assert_eq!(
            wire::recv(&mdp, "MMI"),
            frames(&[b"MDPC01", b"mmi.service", b"200"])
        );
        // No worker may register an mmi.* service.
        let rogue = wire::probe(&context, zmq::DEALER).connect(BROKER);
        wire::send(&rogue, &[b"", b"MDPW01", b"\x01", b"mmi.service"]);
        assert_eq!(
            wire::recv(&rogue, "rogue"),
            frames(&[b"", b"MDPW01", b"\x05"])
        );
    });
}

// ------------------------------------------------------------- transports

#[test]
fn several_endpoints_bridge_transports() {
    let mut sc = Scenario::new("broker-bridging");
    let ipc = sc.dir().join("broker.ipc");
    let ipc_endpoint = format!("ipc://{}", ipc.display());
    start_broker(
        &mut sc,
        &["--bind", "tcp://*:5555", "--bind", &ipc_endpoint],
    );
    sc.in_namespace(move || {
        let context = zmq::Context::new();
        let worker = wire::probe(&context, zmq::DEALER).connect(&ipc_endpoint);
        let ready = WorkerCommand::Ready {
            service: b"bridge".to_vec(),
            properties: Properties::default(),
        };
        send_frames(&worker, &ready.to_frames(false));
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        send_frames(
            &client,
            &sbp_request("bridge", "x", Properties::default(), &["over tcp"]).to_frames(false),
        );
        let (token, request) = sbp_next_request(&worker);
        assert_eq!(text(&request.body), ["over tcp"]);
        sbp_answer(&worker, token, &request, Status::OK, "over ipc");
        assert_eq!(text(&sbp_reply(&client).body), ["over ipc"]);
    });
}

// ------------------------------------------------------------- persistence

/// Waits until `mmi.services` says `service` has `queued` requests queued.
fn wait_queued(client: &zmq::Socket, service: &str, queued: u64) {
    let deadline = Instant::now() + secs(20);
    loop {
        let ask = sbp_request("mmi.services", "queued?", Properties::default(), &[]);
        send_frames(client, &ask.to_frames(false));
        let reply = sbp_reply(client);
        let document: serde_json::Value =
            serde_json::from_slice(&reply.body[1]).expect("mmi.services JSON");
        let now = document["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["service"] == service))
            .and_then(|s| s["queued"].as_u64());
        if now == Some(queued) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {now:?} queued, not {queued}"
        );
        std::thread::sleep(ms(20));
    }
}

#[test]
fn accepted_requests_survive_sigkill_of_the_broker_and_are_answered_once() {
    const REQUESTS: usize = 1000;
    let mut sc = Scenario::new("broker-persistence");
    let store = sc.dir().join("requests.redb");
    let store_arg = store.display().to_string();
    let broker = start_broker(&mut sc, &["--store", &store_arg]);
    let (stored_tx, stored_rx) = std::sync::mpsc::channel();
    let (restarted_tx, restarted_rx) = std::sync::mpsc::channel::<()>();
    // The client never sends a request twice: every reply after the restart
    // comes from the store. It is away while the restarted broker serves
    // them (its socket closed), so every reply is kept until it comes back
    // with the same routing id and says PING.
    let probe = sc.in_namespace_background(move || {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER)
            .identity("persistent-client")
            .connect(BROKER);
        for n in 0..REQUESTS {
            let request = sbp_request(
                "jobs",
                &format!("job-{n}"),
                Properties::default(),
                &["work"],
            );
            send_frames(&client, &request.to_frames(false));
        }
        wait_queued(&client, "jobs", REQUESTS as u64);
        drop(client);
        stored_tx.send(()).expect("main thread");
        restarted_rx
            .recv_timeout(secs(60))
            .expect("the broker restarted");
        let worker = sbp_worker(&context, "jobs", None);
        for _ in 0..REQUESTS {
            let (token, request) = sbp_next_request(&worker);
            sbp_answer(&worker, token, &request, Status::OK, "done");
        }
        let client = wire::probe(&context, zmq::DEALER)
            .identity("persistent-client")
            .connect(BROKER);
        send_frames(&client, &ClientCommand::Ping.to_frames(false));
        let mut answered = std::collections::HashMap::new();
        for _ in 0..REQUESTS {
            let reply = sbp_reply(&client);
            assert_eq!(reply.status, Status::OK);
            *answered.entry(reply.correlation).or_insert(0) += 1;
        }
        // Nothing more comes: each request was answered once.
        client.set_rcvtimeo(500).expect("rcvtimeo");
        let pong = ClientCommand::Pong.to_frames(false);
        let extra = std::iter::from_fn(|| client.recv_multipart(0).ok()).find(|m| *m != pong);
        (answered, extra)
    });
    stored_rx
        .recv_timeout(secs(60))
        .unwrap_or_else(|_| sc.fail("the client's requests were never all queued"));
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "1000 stored requests served again", secs(30));
    restarted_tx.send(()).expect("probe thread");
    let (answered, extra) = probe.join().unwrap_or_else(|_| sc.fail("the probe failed"));
    assert_eq!(
        answered.len(),
        REQUESTS,
        "requests answered after the restart"
    );
    assert!(
        answered.values().all(|&n| n == 1),
        "a request answered twice"
    );
    assert!(extra.is_none(), "an extra reply: {extra:?}");
}

// ------------------------------------------------------------- CURVE

#[test]
fn with_curve_only_known_keys_are_served_and_nothing_readable_crosses_the_wire() {
    use zguide::curve::{secret_path, Keys};
    const MARKER: &str = "a-plain-text-marker-for-the-wire";
    let mut sc = Scenario::new("broker-curve");
    let dir = sc.dir().to_path_buf();
    let clients = dir.join("clients");
    std::fs::create_dir_all(&clients).expect("clients dir");
    let server = Keys::generate().expect("server keys");
    server.save(&dir.join("server")).expect("save server keys");
    let friend = Keys::generate().expect("client keys");
    Keys {
        public: friend.public,
        secret: None,
    }
    .save(&clients.join("friend"))
    .expect("save the friend's public key");
    let stranger = Keys::generate().expect("stranger keys");
    let server_file = secret_path(&dir.join("server")).display().to_string();
    let clients_arg = clients.display().to_string();
    start_broker(
        &mut sc,
        &[
            "--curve-keys",
            &server_file,
            "--curve-clients",
            &clients_arg,
        ],
    );
    let server_public = server.public;
    sc.in_namespace(move || {
        let context = zmq::Context::new();
        let curve_socket = |keys: Option<&Keys>, endpoint: &str| {
            let socket = context.socket(zmq::DEALER).expect("socket");
            socket.set_linger(0).expect("linger");
            socket.set_rcvtimeo(10_000).expect("rcvtimeo");
            if let Some(keys) = keys {
                keys.make_client(&socket, &server_public)
                    .expect("CURVE client");
            }
            socket.connect(endpoint).expect("connect");
            socket
        };
        // A worker with the friend's key, straight to the broker.
        let worker = curve_socket(Some(&friend), BROKER);
        let ready = WorkerCommand::Ready {
            service: b"secret".to_vec(),
            properties: Properties::default(),
        };
        send_frames(&worker, &ready.to_frames(false));
        // The friend's client goes through a recording relay.
        let (relay_endpoint, seen) = common::relay::relay("tcp://127.0.0.1:5555");
        let client = curve_socket(Some(&friend), &relay_endpoint);
        let request = sbp_request("secret", "c1", Properties::default(), &[MARKER]);
        send_frames(&client, &request.to_frames(false));
        let (token, request) = sbp_next_request(&worker);
        assert_eq!(text(&request.body), [MARKER]);
        sbp_answer(&worker, token, &request, Status::OK, MARKER);
        let reply = sbp_reply(&client);
        assert_eq!(
            (reply.status, text(&reply.body)),
            (Status::OK, vec![MARKER.to_string()])
        );
        let recorded = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(
            recorded.len() > 2 * MARKER.len(),
            "the relay saw the traffic"
        );
        assert!(
            !common::relay::contains(&recorded, MARKER.as_bytes()),
            "plain text on the wire"
        );
        // A stranger's key and a plain-text client are never answered.
        for (who, keys) in [("stranger", Some(&stranger)), ("plain", None)] {
            let socket = curve_socket(keys, BROKER);
            socket.set_rcvtimeo(1000).expect("rcvtimeo");
            let lookup = sbp_request("mmi.service", who, Properties::default(), &["secret"]);
            send_frames(&socket, &lookup.to_frames(false));
            assert!(socket.recv_multipart(0).is_err(), "{who} was answered");
        }
        // The friend still is.
        let lookup = sbp_request("mmi.service", "again", Properties::default(), &["secret"]);
        send_frames(&client, &lookup.to_frames(false));
        assert_eq!(text(&sbp_reply(&client).body), ["200"]);
    });
}

// ------------------------------------------------------------- hostile peers

#[test]
fn ten_thousand_malformed_messages_per_dialect_are_dropped_with_bounded_memory_and_logs() {
    const EACH: usize = 10_000;
    const CHUNK: usize = 500;
    let mut sc = Scenario::new("broker-malformed");
    let broker = start_broker(&mut sc, &[]);
    let broker_pid = sc.os_pid(broker);
    let before = common::attack::rss_kib(broker_pid);
    // 8 KiB of junk in every message: a broker that kept them would grow by
    // about 480 MiB.
    let junk = vec![0xA5u8; 8 << 10];
    let answers = sc.in_namespace(move || {
        let context = zmq::Context::new();
        let mut answers = Vec::new();
        // (what, frames, whether the broker answers each: 400 or DISCONNECT)
        let sbp_bad = {
            let mut f = sbp_request("echo", "bad", Properties::default(), &[]).to_frames(false);
            f[4] = junk.clone(); // properties that are not a map
            f
        };
        let sbp_worker_bad = vec![b"SBPW01".to_vec(), vec![0x02], junk.clone()];
        let cases: Vec<(&str, Frames, bool)> = vec![
            (
                "MDP/0.1 client",
                vec![b"".to_vec(), b"MDPC01".to_vec()],
                false,
            ),
            (
                "MDP/0.1 worker",
                vec![b"".to_vec(), b"MDPW01".to_vec(), vec![0x09], junk.clone()],
                true,
            ),
            (
                "MDP/0.2 client",
                vec![b"MDPC02".to_vec(), vec![0x07], junk.clone()],
                false,
            ),
            (
                "MDP/0.2 worker",
                vec![b"MDPW02".to_vec(), vec![0x03], junk.clone()],
                true,
            ),
            ("SBP/1 client", sbp_bad, true),
            ("SBP/1 worker", sbp_worker_bad, true),
            ("no protocol", vec![b"HELLO".to_vec(), junk.clone()], false),
        ];
        for (what, message, answered) in cases {
            let probe = wire::probe(&context, zmq::DEALER).connect(BROKER);
            let mut replies = 0;
            for _ in 0..EACH / CHUNK {
                for _ in 0..CHUNK {
                    send_frames(&probe, &message);
                }
                if answered {
                    for _ in 0..CHUNK {
                        let answer = wire::recv(&probe, what);
                        let expected = match what {
                            "SBP/1 client" => {
                                matches!(
                                    parse_client(&answer).map(|p| p.command),
                                    Ok(ClientCommand::Reply(Reply {
                                        status: Status(400),
                                        ..
                                    }))
                                )
                            }
                            "SBP/1 worker" => answer == [b"SBPW01".to_vec(), vec![0x05]],
                            "MDP/0.1 worker" => answer == frames(&[b"", b"MDPW01", b"\x05"]),
                            _ => answer == frames(&[b"MDPW02", b"\x06"]),
                        };
                        assert!(expected, "{what}: answered {answer:?}");
                        replies += 1;
                    }
                }
            }
            answers.push((what, replies));
        }
        // Still serving: an MMI round trip.
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        let lookup = sbp_request("mmi.service", "alive", Properties::default(), &["echo"]);
        send_frames(&client, &lookup.to_frames(false));
        assert_eq!(text(&sbp_reply(&client).body), ["404"]);
        answers
    });
    for (what, replies) in answers {
        let expected = match what {
            "MDP/0.1 client" | "MDP/0.2 client" | "no protocol" => 0,
            _ => EACH,
        };
        assert_eq!(replies, expected, "{what}");
    }
    let after = common::attack::peak_rss_kib(broker_pid);
    assert!(
        after < before + 64 * 1024,
        "broker RSS grew from {before} KiB to a peak of {after} KiB\n{}",
        sc.report()
    );
    // Logged, but not 70,000 times: 20 lines per heartbeat interval, and a
    // count of the rest.
    let lines = sc.lines(broker).len();
    assert!(lines < 1000, "{lines} log lines for 70,000 faults");
    for logged in [
        "invalid message from",
        "malformed SBP client message",
        "disconnected",
    ] {
        assert!(
            sc.count(broker, logged) > 0,
            "no {logged:?} line\n{}",
            sc.report()
        );
    }
    sc.stop_cleanly(broker, secs(20));
    sc.expect(broker, "more faults not logged", secs(5));
    eprintln!("broker: {lines} log lines; RSS {before} KiB before, peak {after} KiB");
}

// ------------------------------------------------------------- more of the guide, heartbeats, a stream killed

#[test]
fn titanic_and_ticlient_work_through_the_broker() {
    let mut sc = Scenario::new("broker-titanic");
    let broker = start_broker(&mut sc, &["-v"]);
    let titanic = sc.start("titanic", bin!("titanic"), &["-v"]);
    for _ in 0..3 {
        sc.expect(broker, "registering new worker", secs(30));
    }
    sc.start("mdworker", bin!("mdworker"), &[]);
    let client = sc.start("ticlient", bin!("ticlient"), &[]);
    sc.expect(client, "Reply: Hello world", secs(60));
    assert_eq!(sc.wait_exit(client, secs(20)), 0);
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn a_silent_worker_is_forgotten_and_told_to_go() {
    let mut sc = Scenario::new("broker-silent-worker");
    start_broker(
        &mut sc,
        &["--worker-expiry-ms", "600", "--heartbeat-ms", "200"],
    );
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = wire::probe(&context, zmq::DEALER).connect(BROKER);
        // A worker that registers, then never says anything again.
        let worker = sbp_worker(&context, "quiet", None);
        wait_registered(&client, "quiet");
        let registered = Instant::now();
        // The broker's heartbeats come, then DISCONNECT once it gives up.
        let heartbeats = std::cell::Cell::new(0);
        let disconnect = wire::recv_until(&worker, "silent worker", secs(10), |m| {
            let heartbeat = matches!(
                parse_worker(m).map(|p| p.command),
                Ok(WorkerCommand::Heartbeat)
            );
            heartbeats.set(heartbeats.get() + usize::from(heartbeat));
            !heartbeat
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parse_worker(&disconnect).map(|p| p.command),
            Ok(WorkerCommand::Disconnect)
        );
        let after = registered.elapsed();
        assert!(
            after >= ms(500),
            "forgotten after {after:?}, before its expiry"
        );
        assert!(heartbeats.get() >= 1, "no heartbeat before the DISCONNECT");
        let lookup = sbp_request("mmi.service", "gone", Properties::default(), &["quiet"]);
        send_frames(&client, &lookup.to_frames(false));
        assert_eq!(text(&sbp_reply(&client).body), ["404"]);
    });
}

#[test]
fn a_stream_of_a_thousand_requests_survives_sigkill_and_restart_of_the_broker() {
    let mut sc = Scenario::new("broker-stream-kill");
    let store = sc.dir().join("requests.redb").display().to_string();
    let broker = start_broker(&mut sc, &["--store", &store]);
    let worker = sc.start(
        "broker-worker",
        bin!("broker-worker"),
        &["--verbose", "--delay-ms", "2", "stream"],
    );
    sc.expect(worker, "worker ready for stream", secs(30));
    let client = sc.start(
        "broker-client",
        bin!("broker-client"),
        &[
            "--async",
            "--batch",
            "50",
            "--requests",
            "1000",
            "--timeout-ms",
            "2000",
            "--retries",
            "5",
            "stream",
            "job",
        ],
    );
    // Kill the broker in the middle of the stream.
    sc.wait_for(worker, secs(60), "300 requests served", |out| {
        out.matches("I: request ").count() >= 300
    });
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "broker is active at", secs(30));
    let summary = sc.expect(client, "sent 1000 replies", secs(120));
    assert!(
        summary.contains("replies 1000 ok 1000 failed 0 gave-up 0"),
        "{summary}\n{}",
        sc.report()
    );
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
}

#[test]
fn metrics_and_surveys_show_what_the_broker_serves() {
    let mut sc = Scenario::new("broker-metrics");
    start_broker(
        &mut sc,
        &["--metrics", "127.0.0.1:9100", "--survey-port", "5680"],
    );
    let worker = sc.start("broker-worker", bin!("broker-worker"), &["counted"]);
    sc.expect(worker, "worker ready for counted", secs(30));
    let client = sc.start(
        "broker-client",
        bin!("broker-client"),
        &["--requests", "5", "counted", "x"],
    );
    assert_eq!(sc.wait_exit(client, secs(30)), 0);
    let text = sc.in_namespace(|| {
        use std::io::{Read, Write};
        // The page is refreshed every second: read until it counts 5.
        let deadline = Instant::now() + secs(10);
        loop {
            let mut stream = std::net::TcpStream::connect("127.0.0.1:9100").expect("metrics");
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .expect("request");
            let mut page = String::new();
            stream.read_to_string(&mut page).expect("page");
            let counted = "zguide_broker_service_requests_total{environment=\"default\",service=\"counted\"} 5";
            if page.contains(counted) || Instant::now() > deadline {
                break page;
            }
            std::thread::sleep(ms(100));
        }
    });
    assert!(text.starts_with("HTTP/1."), "{text}");
    assert!(
        text.contains(
            "zguide_broker_service_workers{environment=\"default\",service=\"counted\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "zguide_broker_service_requests_total{environment=\"default\",service=\"counted\"} 5"
        ),
        "{text}"
    );
    // A UDP survey finds the service on the broker's TCP port.
    let survey = sc.start(
        "survey",
        bin!("survey"),
        &["--port", "5680", "--window-ms", "1000", "counted"],
    );
    sc.expect(survey, "counted at tcp://", secs(10));
    assert!(sc.output(survey).contains(":5555"), "{}", sc.output(survey));
    assert_eq!(sc.wait_exit(survey, secs(10)), 0);
    let nobody = sc.start(
        "survey-none",
        bin!("survey"),
        &["--port", "5680", "--window-ms", "500", "nothing-here"],
    );
    assert_eq!(sc.wait_exit(nobody, secs(10)), 1);
}

#[test]
fn the_broker_scenario_runs_to_its_end() {
    let (sc, runner) = common::runs::run_to_the_end("broker", &[], 120);
    let output = sc.output(runner);
    assert!(
        output.contains("[broker-client] sent 10000 replies 10000 ok 10000 failed 0 gave-up 0"),
        "{output}"
    );
}
