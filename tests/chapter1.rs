//! Chapter 1 (Basics): every program run as a real process in its own network
//! namespace, asserting on what it prints.

mod common;
use common::wire::{self, probe, Frames};
use common::{ms, secs, Scenario};

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
        let socket = probe(&context, zmq::REQ)
            .receive_timeout(20_000)
            .connect("tcp://localhost:5555");
        wire::send(&socket, &[b"Hello"]);
        wire::try_recv(&socket, "the REQ probe")
    });
    assert_eq!(reply, Ok(wire::frames(&[b"World"])), "{}", sc.report());
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
        let dealer = probe(&context, zmq::DEALER)
            .receive_timeout(20_000)
            .connect("tcp://localhost:5555");
        wire::send(&dealer, &[b"Hello"]);
        wire::send(&dealer, &[b"", b"Hello"]);
        wire::try_recv(&dealer, "the DEALER probe")
    });
    assert_eq!(reply, Ok(wire::frames(&[b"", b"World"])), "{}", sc.report());
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
        let dealer = probe(&context, zmq::DEALER)
            .receive_timeout(20_000)
            .connect("tcp://localhost:5555");
        wire::send(&dealer, &[b"x", b"Hello"]);
        wire::send(&dealer, &[b"", b"Hello"]);
        wire::try_recv(&dealer, "the DEALER probe")
    });
    assert_eq!(reply, Ok(wire::frames(&[b"", b"World"])), "{}", sc.report());
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

// Hostile and foreign peers ---------------------------------------------------

/// `count` REQ clients each send the two-frame request `[Hello][extra]` to
/// `endpoint` at once and wait for their replies.
fn two_frame_requests(
    sc: &Scenario,
    endpoint: &'static str,
    count: usize,
) -> Result<Vec<Frames>, String> {
    sc.in_namespace(move || wire::requests(endpoint, &[b"Hello", b"extra"], count))
}

/// A REP hello server answers three two-frame requests and then a plain
/// `Hello`: it reads each request whole and keeps serving.
fn hello_server_survives_two_frame_requests(name: &str, program: &str) {
    let mut sc = Scenario::new(name);
    let server = sc.start(name, program, &[]);
    let replies = two_frame_requests(&sc, "tcp://localhost:5555", 3);
    assert_eq!(
        replies,
        Ok(vec![wire::frames(&[b"World"]); 3]),
        "{}",
        sc.report()
    );
    let reply = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let client = probe(&context, zmq::REQ).connect("tcp://localhost:5555");
        wire::send(&client, &[b"Hello"]);
        wire::try_recv(&client, "a plain client")
    });
    assert_eq!(reply, Ok(wire::frames(&[b"World"])), "{}", sc.report());
    sc.stop_cleanly(server, secs(10));
}

#[test]
fn hwserver_reads_two_frame_requests_whole_and_keeps_serving() {
    hello_server_survives_two_frame_requests("hwserver-frames", bin!("hwserver"));
}

#[test]
fn hwserver2_reads_two_frame_requests_whole_and_keeps_serving() {
    hello_server_survives_two_frame_requests("hwserver2-frames", bin!("hwserver2"));
}

#[test]
fn hwclient_reads_a_two_frame_reply_whole() {
    let mut sc = Scenario::new("hwclient-frames");
    // A server whose replies have a second frame.
    let server = sc.in_namespace_background(|| {
        let context = zmq::Context::new();
        let server = probe(&context, zmq::REP)
            .linger(1000)
            .receive_timeout(30_000)
            .bind("tcp://*:5555");
        for _ in 0..10 {
            wire::try_recv(&server, "the REP probe")?;
            wire::send(&server, &[b"World", b"and more"]);
        }
        Ok::<_, String>(())
    });
    let client = sc.start("hwclient", bin!("hwclient"), &[]);
    sc.expect(client, "Received World 9", secs(30));
    assert_eq!(sc.wait_exit(client, secs(10)), 0, "{}", sc.report());
    let served = server.join().expect("the REP probe");
    assert_eq!(served, Ok(()), "{}", sc.report());
}

#[test]
fn hwclient_exits_promptly_on_ctrl_c_with_a_request_no_server_takes() {
    // No server: the request stays queued; LINGER must not hold the exit.
    let mut sc = Scenario::new("hwclient-linger");
    let client = sc.start("hwclient", bin!("hwclient"), &[]);
    sc.expect(client, "Sending Hello 0...", secs(10));
    sc.stop_cleanly(client, secs(5));
}

/// Plays the C++ `taskvent` (each task is `"%d"` in a 10-byte frame padded
/// with NULs) and a sink to `program`: ten tasks of 50 ms, one of them with
/// a second frame. The worker must print `50.` ten times and work 500 ms.
fn worker_does_the_cpp_ventilators_tasks(name: &str, program: &str) {
    let mut sc = Scenario::new(name);
    let worker = sc.start(name, program, &[]);
    let elapsed = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let ventilator = probe(&context, zmq::PUSH).linger(1000).bind("tcp://*:5557");
        let sink = probe(&context, zmq::PULL)
            .receive_timeout(20_000)
            .bind("tcp://*:5558");
        let mut task = b"50".to_vec();
        task.resize(10, 0);
        let start = std::time::Instant::now();
        for n in 0..10 {
            match n {
                0 => wire::send(&ventilator, &[&task, b"7"]),
                _ => wire::send(&ventilator, &[&task]),
            }
        }
        for _ in 0..10 {
            wire::try_recv(&sink, "the sink probe")?;
        }
        Ok::<_, String>(start.elapsed())
    });
    let elapsed = elapsed.unwrap_or_else(|e| sc.fail(&e));
    assert_eq!(sc.output(worker), "50.".repeat(10), "{}", sc.report());
    // A lower bound, not a timeout: ten tasks of 50 ms each, however slow
    // the machine.
    assert!(
        elapsed >= std::time::Duration::from_millis(500),
        "ten 50 ms tasks took {elapsed:?}\n{}",
        sc.report()
    );
    sc.stop_cleanly(worker, secs(10));
}

#[test]
fn taskwork_does_the_cpp_ventilators_nul_padded_tasks() {
    worker_does_the_cpp_ventilators_tasks("taskwork-cpp", bin!("taskwork"));
}

#[test]
fn taskwork2_does_the_cpp_ventilators_nul_padded_tasks() {
    worker_does_the_cpp_ventilators_tasks("taskwork2-cpp", bin!("taskwork2"));
}

#[test]
fn taskwork_exits_promptly_on_ctrl_c_with_results_for_a_gone_sink() {
    let mut sc = Scenario::new("taskwork-linger");
    let worker = sc.start("taskwork", bin!("taskwork"), &[]);
    // Tasks, and no sink: the results stay queued for it.
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let ventilator = probe(&context, zmq::PUSH).linger(5000).bind("tcp://*:5557");
        wire::send(&ventilator, &[b"1"]);
        wire::send(&ventilator, &[b"1"]);
    });
    // The second task's mark shows the first result was sent.
    sc.wait_for(worker, secs(10), "two tasks", |out| out == "1.1.");
    sc.stop_cleanly(worker, secs(5));
}

#[test]
fn task_sink_times_the_batch_from_its_start_message() {
    // The sink's clock starts at the start-of-batch message: a sink that
    // skipped that read would time from its own start and count the "0".
    let mut sc = Scenario::new("tasksink-clock");
    let sink = sc.start("tasksink", bin!("tasksink"), &[]);
    let before_start = ms(2000);
    let work = ms(300);
    sc.in_namespace(move || {
        let context = zmq::Context::new();
        let sender = probe(&context, zmq::PUSH)
            .linger(5000)
            .connect("tcp://localhost:5558");
        // The pauses are the batch being timed, not waits for the sink.
        std::thread::sleep(before_start);
        wire::send(&sender, &[b"0"]);
        std::thread::sleep(work);
        for _ in 0..100 {
            wire::send(&sender, &[b""]);
        }
    });
    let line = sc.expect(sink, "Total elapsed time: ", secs(30));
    assert_sink_line(&line);
    let msec: u128 = line
        .rsplit("time: ")
        .next()
        .and_then(|t| t.strip_suffix(" msec"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    // At least half the work pause: the "0" itself may arrive late on a busy
    // machine, which shortens what the sink measures (296 ms seen for 300).
    assert!(
        (work.as_millis() / 2..before_start.as_millis()).contains(&msec),
        "the batch took {msec} msec from its start message: {line}"
    );
    assert_eq!(sc.wait_exit(sink, secs(10)), 0);
}

#[test]
fn wuclient_subscribes_to_its_filter_and_averages_whole_updates() {
    let mut sc = Scenario::new("wuclient-filter");
    let client = sc.start("wuclient", bin!("wuclient"), &[]);
    let subscription = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let publisher = probe(&context, zmq::XPUB)
            .linger(5000)
            .receive_timeout(20_000)
            .bind("tcp://*:5556");
        let subscription = wire::try_recv(&publisher, "the weather probe")?;
        // The C++ wuserver's update: "%05d %d %d" in 20 bytes, NUL-padded.
        let mut update = b"10001 20 50".to_vec();
        update.resize(20, 0);
        for n in 0..100 {
            // Another zipcode, and too hot: only a client that takes
            // everything counts it.
            wire::send(&publisher, &[b"10002 134 50"]);
            match n % 10 {
                0 => wire::send(&publisher, &[&update, b"99"]),
                _ => wire::send(&publisher, &[&update]),
            }
        }
        Ok::<_, String>(subscription)
    });
    assert_eq!(
        subscription,
        Ok(wire::frames(&[b"\x0110001 "])),
        "{}",
        sc.report()
    );
    let line = sc.expect(client, "Average temperature", secs(30));
    assert_eq!(line, "Average temperature for zipcode '10001 ' was 20F");
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
}

#[test]
fn taskvent_waiting_for_a_worker_exits_promptly_on_ctrl_c() {
    // No worker: the C blocks in zmq_send, deaf to Ctrl-C.
    let mut sc = Scenario::new("taskvent-no-worker");
    let vent = sc.start("taskvent", bin!("taskvent"), &[]);
    sc.expect(vent, "Press Enter when the workers are ready: ", secs(10));
    sc.write_stdin(vent, "\n");
    sc.expect(vent, "Sending tasks to workers...", secs(10));
    sc.stop_cleanly(vent, secs(5));
    assert_eq!(sc.count(vent, "Total expected cost"), 0, "{}", sc.report());
}
