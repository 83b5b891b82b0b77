//! Chapter 1 (Basics): every program run as a real process in its own network
//! namespace, asserting on what it prints.

mod common;
use common::{secs, Scenario};

#[test]
fn hello_world_client_gets_ten_replies() {
    let mut sc = Scenario::new("hello-world");
    // Client first: start order must not matter.
    let client = sc.start("hwclient", bin!("hwclient"), &[]);
    let server = sc.start("hwserver", bin!("hwserver"), &[]);
    for n in 0..10 {
        sc.expect(client, &format!("Received World {n}"), secs(30));
    }
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(sc.count(server, "Received Hello"), 10);
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn version_reports_the_linked_libzmq() {
    let mut sc = Scenario::new("version");
    let version = sc.start("version", bin!("version"), &[]);
    let line = sc.expect(version, "Current 0MQ version is ", secs(10));
    let (major, minor, patch) = zmq::version();
    assert!(
        line.ends_with(&format!("{major}.{minor}.{patch}")),
        "{line}"
    );
    assert_eq!(sc.wait_exit(version, secs(10)), 0);
}

#[test]
fn a_raw_req_socket_in_the_namespace_reaches_hwserver() {
    let mut sc = Scenario::new("hello-raw");
    let server = sc.start("hwserver", bin!("hwserver"), &[]);
    let reply = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::REQ).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_rcvtimeo(20_000).unwrap();
        socket.connect("tcp://localhost:5555").unwrap();
        socket.send("Hello", 0).unwrap();
        socket.recv_bytes(0)
    });
    assert_eq!(reply.as_deref(), Ok(&b"World"[..]), "{}", sc.report());
    sc.expect(server, "Received Hello", secs(10));
}

// §2 Getting the Message Out -------------------------------------------------

/// The number in `Average temperature for zipcode '<filter>' was <n>F`.
fn average_temperature(line: &str, filter: &str) -> i64 {
    let prefix = format!("Average temperature for zipcode '{filter}' was ");
    let rest = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix('F'))
        .unwrap_or_else(|| panic!("unexpected average line {line:?}"));
    rest.parse()
        .unwrap_or_else(|_| panic!("no number in {line:?}"))
}

#[test]
fn weather_client_averages_a_prefix_filter() {
    let mut sc = Scenario::new("wu-prefix");
    let client = sc.start("wuclient", bin!("wuclient"), &["1"]);
    sc.expect(
        client,
        "Collecting updates from weather server...",
        secs(30),
    );
    let server = sc.start("wuserver", bin!("wuserver"), &[]);
    let line = sc.expect(client, "Average temperature", secs(60));
    // Temperatures are randof(215) - 80, so any average lies in -80..=134.
    let average = average_temperature(&line, "1");
    assert!((-80..=134).contains(&average), "{line}");
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    sc.stop_cleanly(server, secs(10));
}

/// The C default, `"10001 "` with its trailing space: one update in 100,000
/// matches, so this needs ten million messages (seconds in release, about
/// half a minute in a debug build).
#[test]
fn weather_client_default_filter_is_zipcode_10001() {
    let mut sc = Scenario::new("wu-default");
    let server = sc.start("wuserver", bin!("wuserver"), &[]);
    let client = sc.start("wuclient", bin!("wuclient"), &[]);
    let line = sc.expect(client, "Average temperature", secs(240));
    let average = average_temperature(&line, "10001 ");
    assert!((-80..=134).contains(&average), "{line}");
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    sc.signal(server, libc::SIGTERM);
    assert_eq!(
        sc.wait_exit(server, secs(10)),
        0,
        "wuserver exits on SIGTERM"
    );
}

// §3 Divide and Conquer -----------------------------------------------------

/// Checks the sink's one line: 100 progress marks (`:` every tenth, `.`
/// otherwise) followed directly by `Total elapsed time: N msec`.
fn assert_sink_line(line: &str) {
    let (marks, total) = line
        .split_once("Total elapsed time: ")
        .unwrap_or_else(|| panic!("no total in {line:?}"));
    let expected: String = (0..100)
        .map(|n| if n % 10 == 0 { ':' } else { '.' })
        .collect();
    assert_eq!(marks, expected, "one mark per result, on one line");
    let msec = total
        .strip_suffix(" msec")
        .unwrap_or_else(|| panic!("{line:?}"));
    msec.parse::<u64>()
        .unwrap_or_else(|_| panic!("no elapsed time in {line:?}"));
}

/// The workloads a worker printed (`42.17.` …), summed, and how many.
fn worker_tasks(output: &str) -> (u64, usize) {
    let tasks: Vec<u64> = output
        .split('.')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("bad progress {t:?} in {output:?}"))
        })
        .collect();
    (tasks.iter().sum(), tasks.len())
}

/// The number in `Total expected cost: N msec`.
fn expected_cost(line: &str) -> u64 {
    line.trim()
        .strip_prefix("Total expected cost: ")
        .and_then(|rest| rest.strip_suffix(" msec"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected cost line {line:?}"))
}

/// Runs sink, `workers` workers and the ventilator; checks that the batch of
/// 100 tasks was shared out, done and collected. Returns the workers.
fn run_task_batch(
    sc: &mut Scenario,
    sink_program: &str,
    worker_program: &str,
    workers: usize,
) -> Vec<common::Pid> {
    let sink = sc.start("sink", sink_program, &[]);
    let worker_pids: Vec<_> = (1..=workers)
        .map(|n| sc.start(&format!("worker-{n}"), worker_program, &[]))
        .collect();
    let vent = sc.start("taskvent", bin!("taskvent"), &[]);
    // The prompt has no newline; it still counts as a (partial) line.
    sc.expect(vent, "Press Enter when the workers are ready: ", secs(30));
    sc.write_stdin(vent, "\n");
    sc.expect(vent, "Sending tasks to workers...", secs(30));
    let cost = expected_cost(&sc.expect(vent, "Total expected cost: ", secs(30)));
    assert_eq!(
        sc.wait_exit(vent, secs(60)),
        0,
        "taskvent exits after the batch"
    );

    let line = sc.expect(sink, "Total elapsed time: ", secs(120));
    assert_sink_line(&line);
    assert_eq!(
        sc.wait_exit(sink, secs(30)),
        0,
        "the sink exits after 101 messages"
    );

    // Every task was done exactly once: the workers' workloads add up.
    let (sum, count) = worker_pids
        .iter()
        .map(|&w| worker_tasks(&sc.output(w)))
        .fold((0, 0), |(s, c), (ws, wc)| (s + ws, c + wc));
    assert_eq!((sum, count), (cost, 100), "{}", sc.report());
    worker_pids
}

#[test]
fn task_pipeline_runs_a_batch_over_three_workers() {
    let mut sc = Scenario::new("tasks");
    let workers = run_task_batch(&mut sc, bin!("tasksink"), bin!("taskwork"), 3);
    // Plain taskwork runs until it is stopped; it stops cleanly.
    for (n, &worker) in workers.iter().enumerate() {
        assert!(sc.is_running(worker), "taskwork runs on after the batch");
        if n == 0 {
            sc.signal(worker, libc::SIGTERM);
        } else {
            sc.interrupt(worker);
        }
        assert_eq!(sc.wait_exit(worker, secs(10)), 0, "taskwork exits cleanly");
    }
}

#[test]
fn task_sink_waits_for_the_start_of_the_batch() {
    // Without the ventilator's "0" the sink must not count anything.
    let mut sc = Scenario::new("tasks-start");
    let sink = sc.start("tasksink", bin!("tasksink"), &[]);
    let worker = sc.start("taskwork", bin!("taskwork"), &[]);
    let vent = sc.start("taskvent", bin!("taskvent"), &[]);
    sc.expect(vent, "Press Enter", secs(30));
    assert_eq!(
        sc.output(sink),
        "",
        "the sink prints nothing before the batch"
    );
    sc.close_stdin(vent); // End of input counts as Enter, like getchar().
    sc.expect(sink, "Total elapsed time: ", secs(120));
    sc.stop_cleanly(worker, secs(10));
}

// Hello World variants (examples/C/ only, not in the book's text) ------------

#[test]
fn dealer_client_hwclient2_talks_to_rep_server_hwserver2() {
    let mut sc = Scenario::new("hello2");
    let server = sc.start("hwserver2", bin!("hwserver2"), &[]);
    let client = sc.start("hwclient2", bin!("hwclient2"), &[]);
    for n in 1..=10 {
        sc.expect(
            client,
            &format!("Sending request msg: Hello NO={n}..."),
            secs(30),
        );
        sc.expect(
            client,
            &format!("Received respond msg: World NO={n}"),
            secs(30),
        );
    }
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(sc.count(client, "Discard"), 0);
    assert_eq!(sc.count(server, "Received request msg: Hello"), 10);
    assert_eq!(sc.count(server, "Send respond msg: World"), 10);
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn named_req_client_hwclient3_shows_its_identity_at_router_hwserver3() {
    let mut sc = Scenario::new("hello3");
    let server = sc.start("hwserver3", bin!("hwserver3"), &[]);
    let client = sc.start("hwclient3", bin!("hwclient3"), &[]);
    for n in 1..=10 {
        sc.expect(
            client,
            &format!("Received respond msg: World NO={n}"),
            secs(30),
        );
    }
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(sc.count(server, "[Frame_1] identity = ZMQ"), 10);
    assert_eq!(
        sc.count(server, "[Frame_3] Received request msg: Hello"),
        10
    );
    assert_eq!(sc.count(server, "Send respond msg: World"), 10);

    // A DEALER that leaves out the delimiter is discarded, and the server
    // still answers a proper request afterwards.
    let reply = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let dealer = context.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_rcvtimeo(20_000).unwrap();
        dealer.connect("tcp://localhost:5555").unwrap();
        dealer.send("Hello", 0).unwrap();
        dealer.send_multipart(["", "Hello"], 0).unwrap();
        dealer.recv_multipart(0)
    });
    assert_eq!(
        reply,
        Ok(vec![b"".to_vec(), b"World".to_vec()]),
        "{}",
        sc.report()
    );
    assert_eq!(sc.count(server, "Discard the ZMQ message!"), 1);
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn named_dealer_client_hwclient4_talks_to_router_hwserver4() {
    let mut sc = Scenario::new("hello4");
    let server = sc.start("hwserver4", bin!("hwserver4"), &[]);
    let client = sc.start("hwclient4", bin!("hwclient4"), &[]);
    for n in 1..=10 {
        sc.expect(
            client,
            &format!("Received respond msg: World NO={n}"),
            secs(30),
        );
    }
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    for line in [
        "[recv] frame1 = ZMQ",
        "[recv] frame3 = Hello",
        "[send] frame1 = ZMQ",
        "[send] frame3 = World",
    ] {
        assert_eq!(sc.count(server, line), 10, "{line}\n{}", sc.report());
    }
    sc.signal(server, libc::SIGTERM);
    assert_eq!(sc.wait_exit(server, secs(10)), 0);
}

#[test]
fn router_hwserver4_answers_clients_with_generated_binary_identities() {
    // The C copies the identity as a C string, so a generated identity (it
    // starts with a zero byte) loses its reply. Ours must answer.
    let mut sc = Scenario::new("hello4-binary");
    let server = sc.start("hwserver4", bin!("hwserver4"), &[]);
    let client = sc.start("hwclient2", bin!("hwclient2"), &[]);
    sc.expect(client, "Received respond msg: World NO=10", secs(60));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    // A generated identity is five bytes, printed as hex: 00 then 8 digits.
    let line = sc.expect(server, "[recv] frame1 = 00", secs(10));
    assert_eq!(line.len(), "[recv] frame1 = ".len() + 10, "{line}");

    // A request without the delimiter is dropped; the server keeps serving.
    let reply = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let dealer = context.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_rcvtimeo(20_000).unwrap();
        dealer.connect("tcp://localhost:5555").unwrap();
        dealer.send_multipart(["x", "Hello"], 0).unwrap();
        dealer.send_multipart(["", "Hello"], 0).unwrap();
        dealer.recv_multipart(0)
    });
    assert_eq!(
        reply,
        Ok(vec![b"".to_vec(), b"World".to_vec()]),
        "{}",
        sc.report()
    );
    sc.expect(server, "dropped a malformed request", secs(10));
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn req_client_hwclient_works_against_router_hwserver3() {
    let mut sc = Scenario::new("hello3-req");
    let server = sc.start("hwserver3", bin!("hwserver3"), &[]);
    let client = sc.start("hwclient", bin!("hwclient"), &[]);
    sc.expect(client, "Received World 9", secs(60));
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(sc.count(server, "[Frame_1] identity = 00"), 10);
    sc.stop_cleanly(server, secs(10));
}
