//! Chapter 2 (Sockets and Patterns): every program run as a real process in
//! its own network namespace, asserting on what it prints.

mod common;
use common::wire::{self, frames, probe, Frames};
use common::{attack, ms, secs, Pid, Scenario};

// §4 Handling Multiple Sockets ------------------------------------------------

/// Runs `reader` (msreader or mspoller) beside wuserver and taskvent and
/// checks that both of its sockets are served.
fn reader_serves_both_sockets(name: &str, reader_program: &str) {
    let mut sc = Scenario::new(name);
    let reader = sc.start(name, reader_program, &[]);
    let weather = sc.start("wuserver", bin!("wuserver"), &[]);
    // Only zipcode 10001 passes the reader's filter.
    let update = sc.expect(reader, "Weather: ", secs(60));
    let fields: Vec<&str> = update["Weather: ".len()..].split(' ').collect();
    assert_eq!(fields.len(), 3, "{update}");
    assert_eq!(fields[0], "10001", "{update}");

    let vent = sc.start("taskvent", bin!("taskvent"), &[]);
    sc.expect(vent, "Press Enter", secs(30));
    sc.write_stdin(vent, "\n");
    sc.expect(vent, "Total expected cost", secs(30));
    // The reader is the only PULL peer, so it gets all 100 tasks.
    sc.expect_count(reader, "Task: ", 100, secs(60));
    for line in sc.lines(reader).iter().filter(|l| l.starts_with("Task: ")) {
        let workload: u32 = line["Task: ".len()..].parse().expect("a workload");
        assert!((1..=100).contains(&workload), "{line}");
    }
    sc.stop_cleanly(reader, secs(15));
    sc.stop_cleanly(weather, secs(15));
}

#[test]
fn msreader_serves_tasks_and_weather() {
    reader_serves_both_sockets("msreader", bin!("msreader"));
}

#[test]
fn mspoller_serves_tasks_and_weather() {
    reader_serves_both_sockets("mspoller", bin!("mspoller"));
}

// §5 Shared Queue and §6 Built-In Proxy ---------------------------------------

/// `clients` rrclients and two rrworkers through `broker`: every client gets
/// its 10 replies, both workers take part, everything stops cleanly.
fn request_reply_through(name: &str, broker_program: &str, clients: usize) {
    let mut sc = Scenario::new(name);
    let client_pids: Vec<Pid> = (1..=clients)
        .map(|n| sc.start(&format!("rrclient-{n}"), bin!("rrclient"), &[]))
        .collect();
    let workers = [
        sc.start("rrworker-1", bin!("rrworker"), &[]),
        sc.start("rrworker-2", bin!("rrworker"), &[]),
    ];
    let broker = sc.start(name, broker_program, &[]);
    for &client in &client_pids {
        for n in 0..10 {
            sc.expect(client, &format!("Received reply {n} [World]"), secs(60));
        }
        assert_eq!(sc.wait_exit(client, secs(10)), 0);
    }
    let handled: Vec<usize> = workers
        .iter()
        .map(|&w| sc.count(w, "Received request: [Hello]"))
        .collect();
    assert_eq!(handled.iter().sum::<usize>(), 10 * clients, "{handled:?}");
    assert!(
        handled.iter().all(|&n| n > 0),
        "both workers served: {handled:?}"
    );
    sc.stop_cleanly(broker, secs(15));
    sc.stop_cleanly(workers[0], secs(15));
    sc.stop_cleanly_with(workers[1], libc::SIGTERM, secs(15));
}

#[test]
fn rrbroker_shares_workers_between_clients() {
    request_reply_through("rrbroker", bin!("rrbroker"), 2);
}

#[test]
fn msgqueue_is_a_drop_in_replacement_for_rrbroker() {
    request_reply_through("msgqueue", bin!("msgqueue"), 1);
}

#[test]
fn msgqueue_stops_on_sigterm_while_idle() {
    let mut sc = Scenario::new("msgqueue-term");
    let broker = sc.start("msgqueue", bin!("msgqueue"), &[]);
    // Once it answers through a worker, it is inside zmq_proxy.
    let worker = sc.start("rrworker", bin!("rrworker"), &[]);
    let client = sc.start("rrclient", bin!("rrclient"), &[]);
    sc.expect(client, "Received reply 0 [World]", secs(60));
    sc.stop_cleanly_with(broker, libc::SIGTERM, secs(15));
    sc.stop_cleanly(worker, secs(15));
}

// §7 Transport Bridging -------------------------------------------------------

#[test]
fn wuproxy_forwards_weather_and_subscriptions() {
    let mut sc = Scenario::new("wuproxy");
    let server = sc.start("wuserver", bin!("wuserver"), &[]);
    let proxy = sc.start("wuproxy", bin!("wuproxy"), &[]);
    let client = sc.start("wuclient", bin!("wuclient"), &["1", "tcp://localhost:8100"]);
    sc.expect(client, "Average temperature for zipcode '1' was ", secs(90));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);

    // A raw subscriber on the proxy's public side: the subscription travels
    // upstream through XPUB/XSUB, so only matching updates come back.
    let updates = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let subscriber = probe(&context, zmq::SUB)
            .receive_timeout(30_000)
            .connect("tcp://localhost:8100");
        subscriber.set_subscribe(b"42").expect("subscribe");
        (0..20)
            .map(|_| {
                let update = wire::try_recv(&subscriber, "a subscriber of wuproxy")?;
                Ok(String::from_utf8_lossy(&update[0]).into_owned())
            })
            .collect::<Result<Vec<String>, String>>()
    });
    let updates = updates.unwrap_or_else(|e| sc.fail(&format!("no updates via wuproxy: {e}")));
    for update in &updates {
        assert!(update.starts_with("42"), "{update}");
        assert_eq!(update.split(' ').count(), 3, "{update}");
    }
    sc.stop_cleanly(proxy, secs(15));
    sc.stop_cleanly(server, secs(15));
}

// §8 Handling Errors and ETERM ------------------------------------------------

#[test]
fn taskwork2_workers_exit_when_tasksink2_sends_kill() {
    let mut sc = Scenario::new("tasks2");
    let sink = sc.start("tasksink2", bin!("tasksink2"), &[]);
    let workers: Vec<Pid> = (1..=3)
        .map(|n| sc.start(&format!("taskwork2-{n}"), bin!("taskwork2"), &[]))
        .collect();
    let vent = sc.start("taskvent", bin!("taskvent"), &[]);
    sc.expect(vent, "Press Enter when the workers are ready: ", secs(30));
    sc.write_stdin(vent, "\n");
    let cost_line = sc.expect(vent, "Total expected cost: ", secs(30));
    let cost: u64 = cost_line
        .trim()
        .trim_start_matches("Total expected cost: ")
        .trim_end_matches(" msec")
        .parse()
        .unwrap_or_else(|_| panic!("{cost_line}"));
    assert_eq!(sc.wait_exit(vent, secs(60)), 0);

    let line = sc.expect(sink, "Total elapsed time: ", secs(120));
    let marks = line.split("Total").next().unwrap_or_default();
    let expected: String = (0..100)
        .map(|n| if n % 10 == 0 { ':' } else { '.' })
        .collect();
    assert_eq!(marks, expected, "{line}");
    assert_eq!(sc.wait_exit(sink, secs(30)), 0);

    // Every worker leaves on its own, on the sink's KILL.
    let mut total = 0;
    let mut tasks = 0;
    for &worker in &workers {
        assert_eq!(sc.wait_exit(worker, secs(30)), 0, "taskwork2 exits on KILL");
        for workload in sc
            .output(worker)
            .split('.')
            .filter(|t| !t.trim().is_empty())
        {
            total += workload.trim().parse::<u64>().expect("a workload");
            tasks += 1;
        }
    }
    assert_eq!((total, tasks), (cost, 100), "{}", sc.report());
}

// §9 Handling Interrupt Signals -----------------------------------------------

fn interrupt_stops_on(signal: i32) {
    let mut sc = Scenario::new(if signal == libc::SIGINT {
        "interrupt-int"
    } else {
        "interrupt-term"
    });
    let server = sc.start("interrupt", bin!("interrupt"), &[]);
    // A request proves the server is in its poll loop (handler installed).
    let client = sc.start("hwclient", bin!("hwclient"), &[]);
    sc.expect(server, "W: recv", secs(30));
    sc.signal(server, signal);
    sc.expect(server, "W: interrupt received, killing server...", secs(15));
    sc.expect(server, "W: cleaning up", secs(15));
    assert_eq!(sc.wait_exit(server, secs(15)), 0);
    // Like the C it never replied.
    assert_eq!(sc.count(client, "Received World"), 0);
    assert_eq!(
        sc.lines(server),
        [
            "W: recv",
            "W: interrupt received, killing server...",
            "W: cleaning up"
        ]
    );
}

#[test]
fn interrupt_cleans_up_on_sigint() {
    interrupt_stops_on(libc::SIGINT);
}

#[test]
fn interrupt_cleans_up_on_sigterm() {
    interrupt_stops_on(libc::SIGTERM);
}

// §10 Multithreading with ZeroMQ ----------------------------------------------

#[test]
fn mtserver_serves_hello_clients_with_five_worker_threads() {
    let mut sc = Scenario::new("mtserver");
    let server = sc.start("mtserver", bin!("mtserver"), &[]);
    let clients: Vec<Pid> = (1..=5)
        .map(|n| sc.start(&format!("hwclient-{n}"), bin!("hwclient"), &[]))
        .collect();
    for &client in &clients {
        sc.expect(client, "Received World 9", secs(90));
        assert_eq!(sc.wait_exit(client, secs(10)), 0);
    }
    sc.expect_count(server, "Received request: [Hello]", 50, secs(10));
    sc.stop_cleanly(server, secs(15));
}

// §11 Signaling Between Threads -----------------------------------------------

#[test]
fn mtrelay_prints_its_three_steps_in_order() {
    let mut sc = Scenario::new("mtrelay");
    let relay = sc.start("mtrelay", bin!("mtrelay"), &[]);
    assert_eq!(sc.wait_exit(relay, secs(30)), 0);
    assert_eq!(
        sc.lines(relay),
        [
            "Step 1 ready, signaling step 2",
            "Step 2 ready, signaling step 3",
            "Test successful!"
        ]
    );
}

// §12 Node Coordination -------------------------------------------------------

#[test]
fn syncpub_reaches_all_ten_syncsubs_without_loss() {
    let mut sc = Scenario::new("syncpub");
    let publisher = sc.start("syncpub", bin!("syncpub"), &[]);
    sc.expect(publisher, "Waiting for subscribers", secs(30));
    let subscribers: Vec<Pid> = (1..=10)
        .map(|n| sc.start(&format!("syncsub-{n}"), bin!("syncsub"), &[]))
        .collect();
    sc.expect(publisher, "Broadcasting messages", secs(60));
    for &subscriber in &subscribers {
        sc.expect(subscriber, "Received", secs(300));
        assert_eq!(sc.wait_exit(subscriber, secs(10)), 0);
        assert_eq!(sc.lines(subscriber), ["Received 1000000 updates"]);
    }
    assert_eq!(sc.wait_exit(publisher, secs(60)), 0);
}

// §13 Zero-Copy ---------------------------------------------------------------

#[test]
fn zerocopy_round_trips_a_megabyte_over_inproc_without_copies() {
    let mut sc = Scenario::new("zerocopy");
    let demo = sc.start("zerocopy", bin!("zerocopy"), &[]);
    assert_eq!(sc.wait_exit(demo, secs(30)), 0);
    assert_eq!(
        sc.lines(demo),
        [
            "Zero-copy over inproc://zerocopy",
            "Sending 1048576 bytes: the message holds our buffer, not a copy",
            "Received 1048576 bytes, contents intact",
            "The received frame is our buffer: nothing was copied on the way",
            "Sending a 3-part message from 3 separate buffers",
            "Received 3 frames: header (6 bytes), body (65536 bytes), trailer (7 bytes), \
             contents intact",
        ]
    );
}

#[test]
fn zerocopy_over_tcp_copies_on_receive_only() {
    let mut sc = Scenario::new("zerocopy-tcp");
    let demo = sc.start("zerocopy", bin!("zerocopy"), &["tcp://127.0.0.1:5580"]);
    assert_eq!(sc.wait_exit(demo, secs(30)), 0);
    let lines = sc.lines(demo);
    assert!(
        lines.contains(&"Sending 1048576 bytes: the message holds our buffer, not a copy".into())
    );
    assert!(lines.contains(&"Received 1048576 bytes, contents intact".into()));
    assert!(lines.contains(&"The received frame is a new buffer: receiving always copies".into()));
    assert_eq!(sc.count(demo, "contents intact"), 2, "{lines:?}");
}

// §14 Pub-Sub Message Envelopes -----------------------------------------------

#[test]
fn psenvsub_sees_only_the_b_envelope() {
    let mut sc = Scenario::new("psenv");
    let subscriber = sc.start("psenvsub", bin!("psenvsub"), &[]);
    let publisher = sc.start("psenvpub", bin!("psenvpub"), &[]);
    sc.expect_count(subscriber, "[B] We would like to see this", 3, secs(60));
    assert_eq!(sc.count(subscriber, "[A]"), 0, "{}", sc.report());
    assert!(
        sc.lines(subscriber)
            .iter()
            .all(|l| l == "[B] We would like to see this"),
        "{}",
        sc.report()
    );
    sc.stop_cleanly(publisher, secs(15));
    sc.stop_cleanly_with(subscriber, libc::SIGTERM, secs(15));
}

#[test]
fn psenvsub_skips_a_message_without_contents() {
    let mut sc = Scenario::new("psenv-bad");
    let subscriber = sc.start("psenvsub", bin!("psenvsub"), &[]);
    let sent = sc.in_namespace(|| {
        let context = zmq::Context::new();
        // Closing waits (at most 5 s) until both messages are on their way.
        let publisher = probe(&context, zmq::XPUB)
            .linger(5000)
            .receive_timeout(30_000)
            .bind("tcp://*:5563");
        // XPUB shows the subscription, so we know the subscriber is there.
        let subscription = wire::try_recv(&publisher, "the XPUB probe")?;
        wire::send(&publisher, &[b"B only an envelope"]);
        wire::send(&publisher, &[b"B", b"after the bad one"]);
        Ok::<_, String>(subscription)
    });
    assert_eq!(sent, Ok(frames(&[b"\x01B"])), "{}", sc.report());
    sc.expect(subscriber, "[B] after the bad one", secs(30));
    // The warning goes to stderr, which may be read after stdout's line.
    sc.expect_count(subscriber, "dropped a message of 1 frame", 1, secs(10));
    sc.stop_cleanly(subscriber, secs(15));
    assert_eq!(
        sc.count(subscriber, "dropped a message of 1 frame"),
        1,
        "{}",
        sc.report()
    );
}

// Hostile and foreign peers ---------------------------------------------------

/// `count` REQ probes send `request` to `endpoint`, all at once, and wait for
/// their replies; the first that gets none ends it with an `Err`.
fn requests(
    sc: &Scenario,
    endpoint: &'static str,
    request: &'static [&'static [u8]],
    count: usize,
) -> Result<Vec<Frames>, String> {
    sc.in_namespace(move || wire::requests(endpoint, request, count))
}

#[test]
fn rrworker_reads_two_frame_requests_whole_and_keeps_serving() {
    let mut sc = Scenario::new("rrworker-frames");
    let worker = sc.start("rrworker", bin!("rrworker"), &[]);
    // A broker's DEALER: an empty envelope, then the request's frames.
    let replies = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let broker = probe(&context, zmq::DEALER)
            .receive_timeout(20_000)
            .bind("tcp://*:5560");
        wire::send(&broker, &[b"", b"Hello", b"extra"]);
        let first = wire::try_recv(&broker, "the broker probe")?;
        wire::send(&broker, &[b"", b"Hello"]);
        let second = wire::try_recv(&broker, "the broker probe")?;
        Ok::<_, String>([first, second])
    });
    let world = frames(&[b"", b"World"]);
    assert_eq!(replies, Ok([world.clone(), world]), "{}", sc.report());
    sc.stop_cleanly(worker, secs(10));
}

#[test]
fn rrworker_exits_promptly_on_ctrl_c_with_a_reply_for_a_dead_broker() {
    let mut sc = Scenario::new("rrworker-linger");
    let worker = sc.start("rrworker", bin!("rrworker"), &[]);
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let broker = probe(&context, zmq::DEALER)
            .linger(5000)
            .bind("tcp://*:5560");
        wire::send(&broker, &[b"", b"first"]);
        wire::send(&broker, &[b"", b"second"]);
        // The broker dies here, before any reply.
    });
    // Taking the second request, the worker has sent the first reply: to a
    // broker that is gone, so it stays queued.
    sc.expect(worker, "Received request: [second]", secs(10));
    sc.stop_cleanly(worker, secs(5));
}

#[test]
fn mtserver_workers_read_two_frame_requests_whole_and_keep_serving() {
    let mut sc = Scenario::new("mtserver-frames");
    let server = sc.start("mtserver", bin!("mtserver"), &[]);
    let world = frames(&[b"World"]);
    // One two-frame request per worker thread, then a plain one.
    let replies = requests(&sc, "tcp://localhost:5555", &[b"Hello", b"extra"], 5);
    assert_eq!(replies, Ok(vec![world.clone(); 5]), "{}", sc.report());
    let replies = requests(&sc, "tcp://localhost:5555", &[b"Hello"], 1);
    assert_eq!(replies, Ok(vec![world]), "{}", sc.report());
    assert_eq!(sc.count(server, "E:"), 0, "{}", sc.report());
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn mtserver_works_on_five_requests_at_once() {
    let mut sc = Scenario::new("mtserver-pool");
    let server = sc.start("mtserver", bin!("mtserver"), &[]);
    let (printed, wait_for_print) = std::sync::mpsc::channel::<()>();
    let clients = sc.in_namespace_background(move || {
        let context = zmq::Context::new();
        let clients: Vec<zmq::Socket> = (0..5)
            .map(|_| {
                probe(&context, zmq::REQ)
                    .receive_timeout(20_000)
                    .connect("tcp://localhost:5555")
            })
            .collect();
        for client in &clients {
            wire::send(client, &[b"Hello"]);
        }
        // Work takes a second: with a thread per request, all five are
        // taken before the first reply comes back.
        let _ = wait_for_print.recv_timeout(secs(30));
        let early = clients
            .iter()
            .filter(|client| client.poll(zmq::POLLIN, 0).unwrap_or(0) > 0)
            .count();
        let replies: Result<Vec<Frames>, String> = clients
            .iter()
            .map(|client| wire::try_recv(client, "a REQ probe"))
            .collect();
        (early, replies)
    });
    sc.expect_count(server, "Received request: [Hello]", 5, secs(30));
    let _ = printed.send(());
    let (early, replies) = clients.join().expect("the clients' probe");
    assert_eq!(
        early,
        0,
        "replies came before the fifth request was taken\n{}",
        sc.report()
    );
    assert_eq!(replies, Ok(vec![frames(&[b"World"]); 5]), "{}", sc.report());
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn syncpub_reads_two_frame_sync_requests_whole() {
    let mut sc = Scenario::new("syncpub-frames");
    let publisher = sc.start("syncpub", bin!("syncpub"), &[]);
    sc.expect(publisher, "Waiting for subscribers", secs(30));
    // Nine of the ten subscribers send their sync request as two frames.
    let replies = requests(&sc, "tcp://localhost:5562", &[b"", b"extra"], 9);
    assert_eq!(replies, Ok(vec![frames(&[b""]); 9]), "{}", sc.report());
    let subscriber = sc.start("syncsub", bin!("syncsub"), &[]);
    sc.expect(subscriber, "Received 1000000 updates", secs(120));
    assert_eq!(sc.wait_exit(subscriber, secs(10)), 0);
    assert_eq!(sc.wait_exit(publisher, secs(60)), 0, "{}", sc.report());
}

#[test]
fn interrupt_reads_a_two_frame_request_as_one() {
    let mut sc = Scenario::new("interrupt-frames");
    let server = sc.start("interrupt", bin!("interrupt"), &[]);
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = probe(&context, zmq::REQ)
            .linger(5000)
            .connect("tcp://localhost:5555");
        wire::send(&client, &[b"Hello", b"extra"]);
    });
    sc.expect(server, "W: recv", secs(10));
    sc.stop_cleanly(server, secs(10));
    assert_eq!(
        sc.lines(server),
        [
            "W: recv",
            "W: interrupt received, killing server...",
            "W: cleaning up"
        ]
    );
}

/// With no worker there, a plain client sends one request and two flooders
/// send 1000-byte requests until the broker takes no more (it holds all it
/// will hold), then a third client sends 64 KiB requests, 64 times the
/// brokers' frame bound. The broker's memory must stay bounded, the plain
/// request must reach the first worker, and Ctrl-C must end the broker
/// promptly with exit code 0 while it holds the rest. With
/// `reply_past_backlog`, the reply must also come back past the backlog:
/// `rrbroker` reads requests only while the worker side can take them, so
/// replies always get through; `msgqueue` is libzmq's `zmq_proxy`, which
/// forwards requests in bursts of up to 1000 with blocking sends, so behind
/// a slow worker a reply waits for the whole burst (documented there).
fn broker_holds_requests_until_a_worker_comes(
    name: &str,
    broker_program: &str,
    reply_past_backlog: bool,
) {
    let mut sc = Scenario::new(name);
    let broker = sc.start(name, broker_program, &[]);
    let os_pid = sc.os_pid(broker);
    let (clients, flood) = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let plain = probe(&context, zmq::REQ)
            .receive_timeout(30_000)
            .connect("tcp://localhost:5559");
        wire::send(&plain, &[b"Hello"]);
        // Two flooders: more than the worker's side can queue, so a broker
        // that blocks in its send to the worker also blocks replies.
        let body = vec![b'x'; 1000];
        let flooders = [0, 1].map(|_| probe(&context, zmq::DEALER).connect("tcp://localhost:5559"));
        let flood = flooders
            .each_ref()
            .map(|flooder| attack::flood(flooder, &[b"", &body], 100_000, secs(5)));
        ((context, plain, flooders), flood)
    });
    assert!(
        flood.iter().all(|f| f.refused > 0),
        "the broker took every request: {flood:?}"
    );
    let before = attack::rss_kib(os_pid);
    let big = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = probe(&context, zmq::DEALER).connect("tcp://localhost:5559");
        let body = vec![b'x'; 64 << 10];
        attack::flood(&client, &[b"", &body], 2_000, secs(5))
    });
    let growth = attack::peak_rss_kib(os_pid).saturating_sub(before);
    eprintln!(
        "{name}: flood {flood:?}, RSS {before} KiB, then 64 KiB requests {big:?}: +{growth} KiB"
    );
    assert!(growth < 16 << 10, "{name} grew by {growth} KiB");

    let worker = sc.start("rrworker", bin!("rrworker"), &[]);
    sc.expect(worker, "Received request: [Hello]", secs(30));
    let (context, plain, flooder) = clients;
    if reply_past_backlog {
        let reply = sc.in_namespace(move || {
            let reply = wire::try_recv(&plain, "the plain client");
            drop((plain, flooder, context));
            reply
        });
        assert_eq!(reply, Ok(frames(&[b"World"])), "{}", sc.report());
    } else {
        sc.in_namespace(move || drop((plain, flooder, context)));
    }
    sc.stop_cleanly(broker, secs(5));
    sc.stop_cleanly(worker, secs(10));
}

#[test]
fn rrbroker_holds_requests_until_a_worker_comes_and_stops_on_ctrl_c() {
    broker_holds_requests_until_a_worker_comes("rrbroker-hold", bin!("rrbroker"), true);
}

#[test]
fn msgqueue_holds_requests_until_a_worker_comes_and_stops_on_ctrl_c() {
    broker_holds_requests_until_a_worker_comes("msgqueue-hold", bin!("msgqueue"), false);
}

/// A SUB probe connected to `endpoint` that subscribes to `prefix`.
fn subscriber(context: &zmq::Context, endpoint: &str, prefix: &[u8]) -> zmq::Socket {
    let socket = probe(context, zmq::SUB)
        .receive_timeout(30_000)
        .connect(endpoint);
    socket.set_subscribe(prefix).expect("subscribe");
    socket
}

/// Receives messages starting with `prefix` on a new subscriber: at least
/// `count`, and for at least `during` (the time a publisher has to deal
/// with an attack sent just before).
fn receive_updates(
    sc: &Scenario,
    endpoint: &'static str,
    prefix: &'static [u8],
    count: usize,
    during: std::time::Duration,
) -> Result<(), String> {
    sc.in_namespace(move || {
        let context = zmq::Context::new();
        let socket = subscriber(&context, endpoint, prefix);
        let start = std::time::Instant::now();
        let mut received = 0;
        while received < count || start.elapsed() < during {
            let update = wire::try_recv(&socket, "a plain subscriber")?;
            if !update[0].starts_with(prefix) {
                return Err(format!("unasked-for update {update:?}"));
            }
            received += 1;
        }
        Ok(())
    })
}

/// The size of the attacking subscription: under the socket builder's
/// default frame bound (1 MiB), far over the publishers' (256 bytes), and
/// deep enough (over 256 KiB) that libzmq's recursive free of the
/// subscription tree overflowed an 8 MiB thread stack.
const HUGE_SUBSCRIPTION: usize = 512 << 10;

/// A subscriber that sends one [`HUGE_SUBSCRIPTION`] to `endpoint` and holds
/// it until `go` says so. libzmq adds and removes a subscription in the
/// caller's thread, recursively, one stack frame per byte, so the probe runs
/// on a thread with a deep stack, and unsubscribes before it closes (else
/// libzmq's own reaper thread frees the tree, and the test crashes).
fn huge_subscriber(
    sc: &Scenario,
    endpoint: &'static str,
    go: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    sc.in_namespace_background(move || {
        let deep = std::thread::Builder::new().stack_size(1 << 30);
        let attacker = deep.spawn(move || {
            let context = zmq::Context::new();
            let socket = probe(&context, zmq::XSUB).connect(endpoint);
            let mut subscription = vec![b'A'; 1 + HUGE_SUBSCRIPTION];
            subscription[0] = 1;
            socket.send(&subscription, 0).expect("subscribe");
            let _ = go.recv_timeout(secs(120));
            subscription[0] = 0;
            socket.send(&subscription, 0).expect("unsubscribe");
        });
        attacker
            .expect("a thread with a deep stack")
            .join()
            .expect("the huge subscriber");
    })
}

/// A subscriber sends a [`HUGE_SUBSCRIPTION`] to the publisher at
/// `endpoint` and stays connected; a plain subscriber must still get
/// `count` updates starting with `prefix` and go on getting them for a
/// second (a publisher may take that long to read the attack), every process in `watched` must
/// grow by less than 8 MiB, and then end on Ctrl-C with exit code 0 (a deep
/// subscription tree used to crash it there).
fn a_huge_subscription_is_refused(
    sc: &mut Scenario,
    endpoint: &'static str,
    prefix: &'static [u8],
    count: usize,
    watched: &[Pid],
) {
    receive_updates(sc, endpoint, prefix, count, ms(0)).unwrap_or_else(|e| sc.fail(&e));
    let before: Vec<u64> = watched
        .iter()
        .map(|&pid| attack::rss_kib(sc.os_pid(pid)))
        .collect();
    let (go, wait) = std::sync::mpsc::channel();
    let attacker = huge_subscriber(sc, endpoint, wait);
    // Served on, for long enough that the subscription has been dealt with.
    receive_updates(sc, endpoint, prefix, count, ms(1000)).unwrap_or_else(|e| sc.fail(&e));
    for (&pid, before) in watched.iter().zip(before) {
        let growth = attack::peak_rss_kib(sc.os_pid(pid)).saturating_sub(before);
        eprintln!(
            "{endpoint}: a {HUGE_SUBSCRIPTION}-byte subscription: RSS {before} KiB, +{growth} KiB"
        );
        assert!(growth < 8 << 10, "grew by {growth} KiB\n{}", sc.report());
    }
    for &pid in watched {
        sc.stop_cleanly(pid, secs(10));
    }
    let _ = go.send(());
    attacker.join().expect("the huge subscriber");
}

#[test]
fn wuproxy_refuses_a_huge_subscription_and_stops_cleanly() {
    let mut sc = Scenario::new("wuproxy-subscription");
    let server = sc.start("wuserver", bin!("wuserver"), &[]);
    let proxy = sc.start("wuproxy", bin!("wuproxy"), &[]);
    a_huge_subscription_is_refused(&mut sc, "tcp://localhost:8100", b"42", 20, &[proxy, server]);
}

#[test]
fn wuserver_refuses_a_huge_subscription_and_stops_cleanly() {
    let mut sc = Scenario::new("wuserver-subscription");
    let server = sc.start("wuserver", bin!("wuserver"), &[]);
    a_huge_subscription_is_refused(&mut sc, "tcp://localhost:5556", b"42", 20, &[server]);
}

#[test]
fn psenvpub_refuses_a_huge_subscription_and_stops_cleanly() {
    let mut sc = Scenario::new("psenvpub-subscription");
    let publisher = sc.start("psenvpub", bin!("psenvpub"), &[]);
    a_huge_subscription_is_refused(&mut sc, "tcp://localhost:5563", b"B", 1, &[publisher]);
}

/// Plays the C++ `taskvent` and `wuserver` to `program`: their messages are
/// C strings padded with NULs (10 and 20 bytes). The reader must print what
/// the C would (the text up to the NUL) and escape a task with control
/// characters instead of passing them to the terminal.
fn reader_prints_c_strings(name: &str, program: &str) {
    let mut sc = Scenario::new(name);
    let reader = sc.start(name, program, &[]);
    let sent = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let weather = probe(&context, zmq::XPUB)
            .linger(5000)
            .receive_timeout(20_000)
            .bind("tcp://*:5556");
        let tasks = probe(&context, zmq::PUSH).linger(5000).bind("tcp://*:5557");
        wire::try_recv(&weather, "the weather probe")?; // The subscription.
        let mut update = b"10001 23 45".to_vec();
        update.resize(20, 0);
        wire::send(&weather, &[&update]);
        let mut task = b"42".to_vec();
        task.resize(10, 0);
        wire::send(&tasks, &[&task]);
        wire::send(&tasks, &[b"\x1b[2J\rE: forged"]);
        Ok::<_, String>(())
    });
    assert_eq!(sent, Ok(()), "{}", sc.report());
    sc.expect_count(reader, "Task: ", 2, secs(10));
    sc.expect_count(reader, "Weather: ", 1, secs(10));
    let mut lines = sc.lines(reader);
    lines.sort();
    assert_eq!(
        lines,
        [
            "Task: 1B5B324A0D453A20666F72676564",
            "Task: 42",
            "Weather: 10001 23 45"
        ],
        "{}",
        sc.report()
    );
    sc.stop_cleanly(reader, secs(10));
}

#[test]
fn msreader_prints_the_cpp_peers_nul_padded_messages_as_c_strings() {
    reader_prints_c_strings("msreader-cpp", bin!("msreader"));
}

#[test]
fn mspoller_prints_the_cpp_peers_nul_padded_messages_as_c_strings() {
    reader_prints_c_strings("mspoller-cpp", bin!("mspoller"));
}

#[test]
fn syncpub_exits_promptly_on_ctrl_c_while_a_subscriber_stops_reading() {
    let mut sc = Scenario::new("syncpub-stuck");
    let publisher = sc.start("syncpub", bin!("syncpub"), &[]);
    sc.expect(publisher, "Waiting for subscribers", secs(30));
    // A subscriber that takes one update and then reads no more: the
    // broadcast cannot drain, and closing would wait for it (LINGER 60 s).
    let stuck = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let stuck = subscriber(&context, "tcp://localhost:5561", b"");
        // And one that reads to the END: then the broadcast is all queued.
        let reader = subscriber(&context, "tcp://localhost:5561", b"");
        let syncs: Vec<zmq::Socket> = (0..10)
            .map(|_| {
                probe(&context, zmq::REQ)
                    .receive_timeout(20_000)
                    .connect("tcp://localhost:5562")
            })
            .collect();
        for sync in &syncs {
            wire::send(sync, &[b""]);
            wire::try_recv(sync, "a sync client")?;
        }
        wire::try_recv(&stuck, "the stuck subscriber")?;
        while wire::try_recv(&reader, "the reader")? != frames(&[b"END"]) {}
        Ok::<_, String>((context, stuck))
    });
    let stuck = stuck.unwrap_or_else(|e| sc.fail(&e));
    sc.expect(publisher, "Broadcasting messages", secs(10));
    assert!(sc.is_running(publisher), "{}", sc.report());
    sc.stop_cleanly(publisher, secs(5));
    drop(stuck);
}
