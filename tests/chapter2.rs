//! Chapter 2 (Sockets and Patterns): every program run as a real process in
//! its own network namespace, asserting on what it prints.

mod common;
use common::{secs, Pid, Scenario};

/// Sends SIGINT (or SIGTERM) and asserts a clean exit.
fn stop_cleanly(sc: &mut Scenario, pid: Pid, signal: i32) {
    sc.signal(pid, signal);
    assert_eq!(
        sc.wait_exit(pid, secs(15)),
        0,
        "clean exit on signal {signal}"
    );
}

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
    stop_cleanly(&mut sc, reader, libc::SIGINT);
    stop_cleanly(&mut sc, weather, libc::SIGINT);
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
    stop_cleanly(&mut sc, broker, libc::SIGINT);
    stop_cleanly(&mut sc, workers[0], libc::SIGINT);
    stop_cleanly(&mut sc, workers[1], libc::SIGTERM);
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
    stop_cleanly(&mut sc, broker, libc::SIGTERM);
    stop_cleanly(&mut sc, worker, libc::SIGINT);
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
        let subscriber = context.socket(zmq::SUB).unwrap();
        subscriber.set_linger(0).unwrap();
        subscriber.set_rcvtimeo(30_000).unwrap();
        subscriber.connect("tcp://localhost:8100").unwrap();
        subscriber.set_subscribe(b"42").unwrap();
        (0..20)
            .map(|_| subscriber.recv_string(0).map(|s| s.unwrap_or_default()))
            .collect::<Result<Vec<String>, zmq::Error>>()
    });
    let updates = updates.unwrap_or_else(|e| sc.fail(&format!("no updates via wuproxy: {e}")));
    for update in &updates {
        assert!(update.starts_with("42"), "{update}");
        assert_eq!(update.split(' ').count(), 3, "{update}");
    }
    stop_cleanly(&mut sc, proxy, libc::SIGINT);
    stop_cleanly(&mut sc, server, libc::SIGINT);
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
    stop_cleanly(&mut sc, server, libc::SIGINT);
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
    stop_cleanly(&mut sc, publisher, libc::SIGINT);
    stop_cleanly(&mut sc, subscriber, libc::SIGTERM);
}

#[test]
fn psenvsub_skips_a_message_without_contents() {
    let mut sc = Scenario::new("psenv-bad");
    let subscriber = sc.start("psenvsub", bin!("psenvsub"), &[]);
    let sent = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let publisher = context.socket(zmq::XPUB).unwrap();
        // Closing waits (at most 5 s) until both messages are on their way.
        publisher.set_linger(5000).unwrap();
        publisher.set_rcvtimeo(30_000).unwrap();
        publisher.bind("tcp://*:5563").unwrap();
        // XPUB shows the subscription, so we know the subscriber is there.
        let subscription = publisher.recv_bytes(0)?;
        publisher.send("B only an envelope", 0)?;
        publisher.send_multipart(["B", "after the bad one"], 0)?;
        Ok::<_, zmq::Error>(subscription)
    });
    assert_eq!(sent, Ok(b"\x01B".to_vec()), "{}", sc.report());
    sc.expect(subscriber, "[B] after the bad one", secs(30));
    assert_eq!(
        sc.count(subscriber, "dropped a message of 1 frame"),
        1,
        "{}",
        sc.report()
    );
    stop_cleanly(&mut sc, subscriber, libc::SIGINT);
}
