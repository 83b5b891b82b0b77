//! Every scenario file in `zguide/scenarios/`, and the tour, run by the real
//! runner (`zguide run <name>`) to its end condition, each in a network
//! namespace of its own so that they can run side by side. Each test then
//! checks what the guide promises that set of programs prints: the lines and
//! counts of the C examples, not incidental log lines.
//!
//! Workloads are reduced only through the knobs the programs document, set
//! with `zguide run --env` (`ZGUIDE_REQUESTS` for Majordomo and `tripping`),
//! and the Pirates' random failures are made deterministic with
//! `ZGUIDE_SIMULATE=crash`; everything else runs exactly as a learner sees it.
//! [`every_scenario_file_has_a_test_here`] fails when a file is added without
//! a test.

mod common;
use common::runs::{assert_at_least, assert_lines, labelled_lines, run_to_the_end, summary};
use common::{secs, Pid, Scenario};

use std::collections::BTreeSet;
use std::path::Path;

/// The names of the scenario files.
fn scenario_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zguide/scenarios");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("zguide/scenarios")
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().to_string();
            file.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_scenario_file_has_a_test_here() {
    // Here, or in the chapter's own test file (Freelance, Clone, chapter 7–8
    // and the study run theirs beside their other tests): a file that runs
    // scenarios with `run_to_the_end` and names this one.
    let tests_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let sources: Vec<String> = std::fs::read_dir(&tests_dir)
        .expect("tests/")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| std::fs::read_to_string(e.path()).expect("a test file"))
        .collect();
    let named_in_a_run = |name: &str| {
        sources.iter().any(|source| {
            source.contains("run_to_the_end(") && source.contains(&format!("\"{name}\""))
        })
    };
    let missing: Vec<String> = scenario_names()
        .into_iter()
        .filter(|name| !named_in_a_run(name))
        .collect();
    assert!(missing.is_empty(), "scenarios without a test: {missing:?}");
}

// ---- Chapter 1 ------------------------------------------------------------

#[test]
fn hello_makes_ten_round_trips() {
    let (sc, runner) = run_to_the_end("hello", &[], 60);
    assert_lines(&sc, runner, "[hwserver] Received Hello", 10);
    assert_lines(&sc, runner, "[hwclient] Received World ", 10);
    assert_lines(&sc, runner, "[hwclient] Received World 9", 1);
    assert!(summary(&sc, runner, "hello").contains("hwclient exited 0"));
}

#[test]
fn hellodealer_adds_the_delimiter_by_hand() {
    let (sc, runner) = run_to_the_end("hellodealer", &[], 60);
    assert_lines(&sc, runner, "[hwserver2] Received request msg: Hello", 10);
    assert_lines(
        &sc,
        runner,
        "[hwclient2] Received respond msg: World NO=",
        10,
    );
    assert_lines(
        &sc,
        runner,
        "[hwclient2] Received respond msg: World NO=10",
        1,
    );
}

#[test]
fn hellorouter_routes_by_the_clients_identity() {
    let (sc, runner) = run_to_the_end("hellorouter", &[], 60);
    assert_lines(&sc, runner, "[hwserver3] [Frame_1] identity = ZMQ", 10);
    assert_lines(
        &sc,
        runner,
        "[hwclient3] Received respond msg: World NO=",
        10,
    );
}

#[test]
fn helloframes_shows_every_frame() {
    let (sc, runner) = run_to_the_end("helloframes", &[], 60);
    assert_lines(&sc, runner, "[hwserver4] [recv] frame1 = ZMQ", 10);
    assert_lines(&sc, runner, "[hwserver4] [recv] frame3 = Hello", 10);
    assert_lines(&sc, runner, "[hwserver4] [send] frame3 = World", 10);
    assert_lines(
        &sc,
        runner,
        "[hwclient4] Received respond msg: World NO=",
        10,
    );
}

#[test]
fn weather_averages_a_hundred_updates() {
    let (sc, runner) = run_to_the_end("weather", &[], 60);
    assert_lines(
        &sc,
        runner,
        "[wuclient] Average temperature for zipcode '10' was ",
        1,
    );
}

#[test]
fn pipeline_shares_the_tasks_once_the_workers_are_connected() {
    let (sc, runner) = run_to_the_end("pipeline", &[], 60);
    assert_lines(&sc, runner, "== taskvent <- stdin \"\\n\"", 1);
    assert_lines(&sc, runner, "[taskvent] Sending tasks to workers...", 1);
    assert_at_least(&sc, runner, "Total elapsed time: ", 1);
    // Enter was pressed once all three workers were connected: each got a
    // share of the tasks, not the first one all of them.
    for worker in ["[taskwork-1] ", "[taskwork-2] ", "[taskwork-3] "] {
        assert_at_least(&sc, runner, worker, 1);
    }
    assert!(summary(&sc, runner, "pipeline").contains("tasksink exited 0"));
}

// ---- Chapter 2 ------------------------------------------------------------

#[test]
fn multisocket_reads_tasks_and_weather_in_both_readers() {
    let (sc, runner) = run_to_the_end("multisocket", &[], 60);
    assert_lines(&sc, runner, "== taskvent <- stdin \"\\n\"", 1);
    for reader in ["msreader", "mspoller"] {
        assert_at_least(&sc, runner, &format!("[{reader}] Task: "), 1);
        assert_at_least(&sc, runner, &format!("[{reader}] Weather: 10001 "), 1);
    }
}

#[test]
fn rrbroker_passes_ten_requests_to_the_workers() {
    let (sc, runner) = run_to_the_end("rrbroker", &[], 60);
    assert_lines(&sc, runner, "[rrclient] Received reply ", 10);
    assert_lines(&sc, runner, "[rrclient] Received reply 9 [World]", 1);
    assert_lines(&sc, runner, "] Received request: [Hello]", 10);
}

#[test]
fn msgqueue_is_the_same_broker_in_one_call() {
    let (sc, runner) = run_to_the_end("msgqueue", &[], 60);
    assert_lines(&sc, runner, "[rrclient] Received reply ", 10);
    assert_lines(&sc, runner, "] Received request: [Hello]", 10);
}

#[test]
fn wuproxy_carries_the_subscription_upstream() {
    let (sc, runner) = run_to_the_end("wuproxy", &[], 60);
    assert_lines(
        &sc,
        runner,
        "[wuclient] Average temperature for zipcode '10' was ",
        1,
    );
}

#[test]
fn killsignal_workers_exit_by_themselves() {
    let (sc, runner) = run_to_the_end("killsignal", &[], 60);
    assert_at_least(&sc, runner, "Total elapsed time: ", 1);
    for worker in ["[taskwork2-1] ", "[taskwork2-2] ", "[taskwork2-3] "] {
        assert_at_least(&sc, runner, worker, 1);
    }
    // Told to stop by the KILL message, not by the runner's SIGINT.
    assert!(summary(&sc, runner, "killsignal").contains("3 × taskwork2 exited 0"));
}

#[test]
fn interrupt_exits_cleanly_on_sigint() {
    let (sc, runner) = run_to_the_end("interrupt", &[], 60);
    assert_lines(
        &sc,
        runner,
        "[interrupt] W: interrupt received, killing server...",
        1,
    );
    assert_lines(&sc, runner, "[interrupt] W: cleaning up", 1);
    // "stopped": exit code 0 after the runner's SIGINT.
    assert!(summary(&sc, runner, "interrupt").contains("interrupt stopped,"));
}

#[test]
fn mtserver_answers_five_clients_at_once() {
    let (sc, runner) = run_to_the_end("mtserver", &[], 60);
    assert_lines(&sc, runner, "[mtserver] Received request: [Hello]", 50);
    for client in 1..=5 {
        assert_lines(
            &sc,
            runner,
            &format!("[hwclient-{client}] Received World 9"),
            1,
        );
    }
}

#[test]
fn mtrelay_passes_the_signal_along() {
    let (sc, runner) = run_to_the_end("mtrelay", &[], 30);
    assert_lines(&sc, runner, "[mtrelay] Step 1 ready, signaling step 2", 1);
    assert_lines(&sc, runner, "[mtrelay] Step 2 ready, signaling step 3", 1);
    assert_lines(&sc, runner, "[mtrelay] Test successful!", 1);
}

#[test]
fn syncpub_reaches_every_subscriber_with_every_message() {
    let (sc, runner) = run_to_the_end("syncpub", &[], 120);
    for subscriber in 1..=10 {
        assert_lines(
            &sc,
            runner,
            &format!("[syncsub-{subscriber}] Received 1000000 updates"),
            1,
        );
    }
}

#[test]
fn zerocopy_sends_without_copying() {
    let (sc, runner) = run_to_the_end("zerocopy", &[], 30);
    assert_at_least(&sc, runner, "[zerocopy] Received 1048576 bytes", 1);
    assert!(summary(&sc, runner, "zerocopy").contains("zerocopy exited 0"));
}

#[test]
fn psenvpub_subscriber_sees_only_b() {
    let (sc, runner) = run_to_the_end("psenvpub", &[], 30);
    assert_at_least(&sc, runner, "[psenvsub] [B] ", 2);
    assert_lines(&sc, runner, "[psenvsub] [A]", 0);
}

// ---- Chapter 3 ------------------------------------------------------------

#[test]
fn identity_shows_a_generated_and_a_chosen_identity() {
    let (sc, runner) = run_to_the_end("identity", &[], 30);
    assert_lines(&sc, runner, "[identity] [005] PEER2", 1);
    assert_lines(&sc, runner, "ROUTER uses a generated 5 byte identity", 1);
    assert_lines(&sc, runner, "ROUTER socket uses REQ's socket identity", 1);
}

#[test]
fn rtreq_fires_ten_workers_with_their_counts() {
    let (sc, runner) = run_to_the_end("rtreq", &[], 60);
    assert_lines(&sc, runner, "[rtreq] Completed: ", 10);
}

#[test]
fn rtdealer_fires_ten_dealer_workers_with_their_counts() {
    let (sc, runner) = run_to_the_end("rtdealer", &[], 60);
    assert_lines(&sc, runner, "[rtdealer] Completed: ", 10);
}

#[test]
fn lbbroker_serves_ten_clients() {
    let (sc, runner) = run_to_the_end("lbbroker", &[], 60);
    assert_lines(&sc, runner, "[lbbroker] Worker: HELLO", 10);
    assert_lines(&sc, runner, "[lbbroker] Client: OK", 10);
}

#[test]
fn lbbroker2_serves_ten_clients_with_actors() {
    let (sc, runner) = run_to_the_end("lbbroker2", &[], 60);
    assert_lines(&sc, runner, "[lbbroker2] Worker: [005] HELLO", 10);
    assert_lines(&sc, runner, "[lbbroker2] Client: OK", 10);
}

#[test]
fn lbbroker3_serves_clients_until_stopped() {
    let (sc, runner) = run_to_the_end("lbbroker3", &[], 60);
    // Ten clients, one request a second each, for 8 s.
    assert_at_least(&sc, runner, "[lbbroker3] Worker: [005] HELLO", 10);
    assert_at_least(&sc, runner, "[lbbroker3] Client: OK", 10);
    assert!(summary(&sc, runner, "lbbroker3").contains("lbbroker3 stopped"));
}

/// Every client hears back. Not certain in one run: a worker answers a
/// request 0 to 4 times (0 with odds 1/5) after random pauses, and a client
/// sends its first request after a second and about four in the 5 s run, so
/// on a loaded machine (a "second" of polls stretching) one of the three can
/// get nothing, a few times in a hundred runs (seen once in CI). So up to
/// three runs, each a fresh scenario: all three fail by chance about once in
/// tens of thousands, while a server that routes replies to one client only
/// fails every run.
#[test]
fn asyncsrv_answers_three_clients() {
    let mut last = String::new();
    for _run in 0..3 {
        let (sc, runner) = run_to_the_end("asyncsrv", &[], 60);
        // Each client prints the replies it gets, prefixed by its identity.
        let clients: BTreeSet<String> = labelled_lines(&sc, runner)
            .iter()
            .filter(|l| l.contains("] request #"))
            .filter_map(|l| l.strip_prefix("[asyncsrv] "))
            .filter_map(|l| l.split('[').next().map(str::to_string))
            .collect();
        if clients.len() == 3 {
            return;
        }
        last = format!("{clients:?}\n{}", sc.report());
    }
    panic!("three runs without replies to all three clients; the last: {last}");
}

#[test]
fn peering1_brokers_hear_each_others_state() {
    let (sc, runner) = run_to_the_end("peering1", &[], 60);
    for me in ["DC1", "DC2", "DC3"] {
        for peer in ["DC1", "DC2", "DC3"].into_iter().filter(|p| *p != me) {
            assert_at_least(&sc, runner, &format!("[{me}] {peer} - "), 1);
        }
    }
}

#[test]
fn peering2_brokers_serve_their_clients() {
    let (sc, runner) = run_to_the_end("peering2", &[], 60);
    for broker in ["me", "you"] {
        assert_lines(&sc, runner, &format!("== {broker} <- stdin"), 1);
        assert_at_least(&sc, runner, &format!("[{broker}] Client: OK"), 10);
        assert_at_least(&sc, runner, &format!("[{broker}] Worker: "), 10);
    }
}

#[test]
fn peering3_brokers_print_completed_tasks() {
    let (sc, runner) = run_to_the_end("peering3", &[], 120);
    for broker in ["DC1", "DC2", "DC3"] {
        let prefix = format!("[{broker}] ");
        let task_ids = labelled_lines(&sc, runner)
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::trim))
            .filter(|id| id.len() == 4 && id.chars().all(|c| c.is_ascii_hexdigit()))
            .count();
        assert!(
            task_ids >= 5,
            "{broker}: {task_ids} task ids\n{}",
            sc.report()
        );
    }
}

// ---- Chapter 4 ------------------------------------------------------------

/// The Pirates' client gets replies until every server crashed, then gives
/// up after three tries: `ZGUIDE_SIMULATE=crash` makes each server crash on
/// its fourth request instead of at random.
fn assert_pirate_client_outlives_the_crashes(sc: &Scenario, runner: Pid, servers: usize) {
    assert_at_least(sc, runner, "I: server replied OK (3)", 1);
    assert_lines(sc, runner, "simulating a crash", servers);
    assert_lines(
        sc,
        runner,
        "[lpclient] E: server seems to be offline, abandoning",
        1,
    );
}

#[test]
fn lazypirate_client_retries_then_abandons() {
    let (sc, runner) = run_to_the_end("lazypirate", &["--env", "ZGUIDE_SIMULATE=crash"], 120);
    assert_pirate_client_outlives_the_crashes(&sc, runner, 1);
    assert_lines(
        &sc,
        runner,
        "[lpclient] W: no response from server, retrying...",
        2,
    );
}

#[test]
fn simplepirate_routes_around_crashed_workers() {
    let (sc, runner) = run_to_the_end("simplepirate", &["--env", "ZGUIDE_SIMULATE=crash"], 180);
    assert_pirate_client_outlives_the_crashes(&sc, runner, 3);
}

#[test]
fn paranoidpirate_routes_around_crashed_workers() {
    let (sc, runner) = run_to_the_end("paranoidpirate", &["--env", "ZGUIDE_SIMULATE=crash"], 180);
    assert_pirate_client_outlives_the_crashes(&sc, runner, 3);
}

#[test]
fn majordomo_client_gets_every_reply() {
    let (sc, runner) = run_to_the_end("majordomo", &["--env", "ZGUIDE_REQUESTS=1000"], 120);
    assert_lines(&sc, runner, "[mdclient] 1000 requests/replies processed", 1);
}

#[test]
fn mdclient2_gets_every_reply_asynchronously() {
    let (sc, runner) = run_to_the_end("mdclient2", &["--env", "ZGUIDE_REQUESTS=1000"], 120);
    assert_lines(&sc, runner, "[mdclient2] 1000 replies received", 1);
}

#[test]
fn mmiecho_sees_the_worker_arrive() {
    let (sc, runner) = run_to_the_end("mmiecho", &[], 60);
    assert_lines(&sc, runner, "[mmiecho-before] Lookup echo service: 404", 1);
    assert_lines(&sc, runner, "[mmiecho-after] Lookup echo service: 200", 1);
}

#[test]
fn tripping_times_both_round_trip_styles() {
    let (sc, runner) = run_to_the_end("tripping", &["--env", "ZGUIDE_REQUESTS=1000"], 120);
    assert_lines(&sc, runner, "[tripping] Synchronous round-trip test...", 1);
    assert_lines(&sc, runner, "[tripping] Asynchronous round-trip test...", 1);
    let rates = labelled_lines(&sc, runner)
        .iter()
        .filter(|l| l.starts_with("[tripping] ") && l.ends_with(" calls/second"))
        .count();
    assert_eq!(rates, 2, "{}", sc.report());
}

#[test]
fn titanic_delivers_the_request_once_the_worker_is_up() {
    let (sc, runner) = run_to_the_end("titanic", &[], 120);
    assert_lines(&sc, runner, "[ticlient] Reply: Hello world", 1);
}

// ---- The tour -------------------------------------------------------------

#[test]
fn the_tour_runs_every_scenario_to_the_end() {
    let tour: toml::Value = toml::from_str(include_str!("../zguide/tour.toml")).expect("tour.toml");
    let names: Vec<&str> = tour["scenarios"]
        .as_array()
        .expect("a list of scenarios")
        .iter()
        .filter_map(toml::Value::as_str)
        .collect();
    let mut sc = Scenario::new("scenario-tour");
    let runner = sc.start("zguide", bin!("zguide"), &["run"]);
    sc.expect(
        runner,
        &format!("== The tour: {} (", names.join(", ")),
        secs(30),
    );
    let n = names.len();
    sc.expect(runner, &format!("== {n} of {n} scenarios ok"), secs(180));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    for name in names {
        assert_lines(&sc, runner, &format!("== {name}: ok after "), 1);
    }
}

// ---- Chapter 4, high availability ------------------------------------------

/// The client's reply numbers in a Binary Star run: 1, 2, 3 … with no gap.
fn assert_gapless_replies(sc: &Scenario, runner: Pid) -> usize {
    let numbers: Vec<u64> = labelled_lines(sc, runner)
        .iter()
        .filter_map(|l| l.strip_prefix("[bstarcli] I: server replied OK ("))
        .filter_map(|rest| rest.strip_suffix(')'))
        .filter_map(|n| n.parse().ok())
        .collect();
    let want: Vec<u64> = (1..=numbers.len() as u64).collect();
    if numbers != want {
        sc.fail(&format!("replies not 1..n in order: {numbers:?}"));
    }
    numbers.len()
}

#[test]
fn binarystar_fails_over_when_the_primary_is_killed() {
    let (sc, runner) = run_to_the_end("binarystar", &[], 60);
    assert_lines(
        &sc,
        runner,
        "[primary] I: connected to backup (passive), ready active",
        1,
    );
    assert_at_least(
        &sc,
        runner,
        "[bstarcli] W: no response from server, failing over",
        1,
    );
    assert_lines(
        &sc,
        runner,
        "[backup] I: failover successful, ready active",
        1,
    );
    assert!(assert_gapless_replies(&sc, runner) >= 8);
    assert!(summary(&sc, runner, "binarystar").contains("primary killed on schedule"));
}

#[test]
fn binarystar2_fails_over_when_the_primary_is_killed() {
    let (sc, runner) = run_to_the_end("binarystar2", &[], 60);
    assert_at_least(
        &sc,
        runner,
        "I: connected to backup (passive), ready as active",
        1,
    );
    assert_at_least(&sc, runner, "I: failover successful, ready as active", 1);
    assert!(assert_gapless_replies(&sc, runner) >= 8);
}

// ---- Chapter 5 ---------------------------------------------------------------

#[test]
fn espresso_traces_subscriptions_and_messages() {
    let (sc, runner) = run_to_the_end("espresso", &[], 30);
    assert_lines(&sc, runner, "[espresso] [002] 0141", 1);
    assert_lines(&sc, runner, "[espresso] [002] 0142", 1);
    assert_at_least(&sc, runner, "[espresso] [007] ", 5);
    assert_lines(&sc, runner, "[espresso] [002] 0041", 1);
    assert_lines(&sc, runner, "[espresso] [002] 0042", 1);
}

#[test]
fn lvcache_gives_a_late_subscriber_its_value() {
    let (sc, runner) = run_to_the_end("lvcache", &[], 30);
    assert_at_least(&sc, runner, "[lvcache] Sending cached topic ", 1);
    assert_at_least(&sc, runner, "[pathosub] Save Roger", 1);
}

#[test]
fn suisnail_gives_up_by_itself() {
    let (sc, runner) = run_to_the_end("suisnail", &[], 60);
    assert_lines(
        &sc,
        runner,
        "[suisnail:err] E: subscriber cannot keep up, aborting",
        1,
    );
    assert!(summary(&sc, runner, "suisnail").contains("suisnail exited 0"));
}
