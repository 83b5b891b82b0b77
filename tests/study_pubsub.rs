//! Study §1, measured pub-sub: `tspub` and `tssub` (on
//! `zguide::pubsub_stats`), the HWM study mode, and the `tspub` scenario.

mod common;
use common::{ms, secs, Pid, Scenario};

/// The figures of the last JSON report of `kind` ("total" or "interval")
/// that `tssub --json` printed.
fn report(sc: &Scenario, sub: Pid, kind: &str) -> serde_json::Value {
    let needle = format!("\"kind\":\"{kind}\"");
    let line = sc
        .lines(sub)
        .into_iter()
        .rev()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| sc.fail(&format!("tssub printed no {kind} report")));
    serde_json::from_str(&line).unwrap_or_else(|e| sc.fail(&format!("bad JSON {line}: {e}")))
}

/// The figures of publisher `name` in a report.
fn publisher<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["publishers"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no publisher {name} in {report}"))
}

/// What `tspub` said it sent: `tspub NAME: sent N messages …`.
fn sent(sc: &Scenario, publisher: Pid) -> u64 {
    let line = sc
        .lines(publisher)
        .into_iter()
        .find(|l| l.contains(": sent "))
        .unwrap_or_else(|| sc.fail("tspub printed no total"));
    line.split(": sent ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| sc.fail(&format!("cannot read {line}")))
}

#[test]
fn tssub_counts_exactly_what_tspub_sent_on_every_topic_when_nothing_is_dropped() {
    let mut sc = Scenario::new("tspub-lossless");
    // Queues of 100,000 at both ends: a loaded machine that stalls the
    // subscriber for a second must not turn "nothing dropped" into drops
    // (with the default 1000, CI lost 133 of 5,000).
    let sub = sc.start("tssub", bin!("tssub"), &["--json", "--rcvhwm", "100000"]);
    let publ = sc.start(
        "tspub",
        bin!("tspub"),
        &[
            "--name", "A", "--rate", "3000", "--count", "6000", "--topics", "3", "--sndhwm",
            "100000",
        ],
    );
    assert_eq!(sc.wait_exit(publ, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.wait_exit(sub, secs(30)), 0, "{}", sc.report());
    assert_eq!(sent(&sc, publ), 6000);
    let total = report(&sc, sub, "total");
    let a = publisher(&total, "A");
    assert_eq!(a["received"], 6000, "{total}");
    assert_eq!(a["sent"], 6000, "{total}");
    assert_eq!(a["lost"], 0, "{total}");
    assert_eq!(a["ended"], true, "{total}");
    assert_eq!(total["messages"], 6000, "{total}");
    // Percentiles are in order and nonzero.
    let l = &total["latency_us"];
    let p: Vec<f64> = ["p50", "p90", "p99", "p99.9", "max"]
        .iter()
        .map(|k| l[k].as_f64().unwrap())
        .collect();
    assert!(p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1]), "{l}");
    // Once a second, an interval report.
    assert!(
        sc.count(sub, "\"kind\":\"interval\"") >= 1,
        "{}",
        sc.report()
    );
}

#[test]
fn a_tiny_hwm_and_a_slow_subscriber_show_gaps_equal_to_sent_minus_received() {
    let mut sc = Scenario::new("tspub-hwm");
    let sub = sc.start(
        "tssub",
        bin!("tssub"),
        &[
            "--json",
            "--rcvhwm",
            "10",
            "--rcvbuf",
            "4096",
            "--slow-us",
            "500",
        ],
    );
    let publ = sc.start(
        "tspub",
        bin!("tspub"),
        &[
            "--name", "A", "--rate", "20000", "--count", "20000", "--sndhwm", "10", "--sndbuf",
            "4096",
        ],
    );
    assert_eq!(sc.wait_exit(publ, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.wait_exit(sub, secs(30)), 0, "{}", sc.report());
    let sent = sent(&sc, publ);
    assert_eq!(sent, 20_000);
    let total = report(&sc, sub, "total");
    let a = publisher(&total, "A");
    let received = a["received"].as_u64().unwrap();
    let lost = a["lost"].as_u64().unwrap();
    // A subscriber at ≤ 2000 msg/s behind 10 + 10 slots and small TCP
    // buffers cannot get most of 20,000 messages sent in about a second.
    assert!(lost > sent / 4, "{total}");
    assert_eq!(lost, sent - received, "{total}");
    assert_eq!(a["sent"], sent, "{total}");
    // The text report says the same (without --json).
    let mut sc = Scenario::new("tspub-hwm-text");
    let sub = sc.start(
        "tssub",
        bin!("tssub"),
        &["--rcvhwm", "10", "--rcvbuf", "4096", "--slow-us", "500"],
    );
    sc.start(
        "tspub",
        bin!("tspub"),
        &[
            "--name", "B", "--rate", "20000", "--count", "5000", "--sndhwm", "10", "--sndbuf",
            "4096",
        ],
    );
    assert_eq!(sc.wait_exit(sub, secs(30)), 0, "{}", sc.report());
    let line = sc.expect(sub, "publisher B: received", secs(1));
    assert!(line.contains("sent 5000 (ended)"), "{line}");
    assert!(!line.contains(" lost 0 "), "{line}");
}

#[test]
fn abort_after_ms_fires_with_exit_code_2_when_the_subscriber_is_slow() {
    let mut sc = Scenario::new("tssub-abort");
    let sub = sc.start(
        "tssub",
        bin!("tssub"),
        &["--abort-after-ms", "200", "--slow-us", "2000"],
    );
    let publ = sc.start(
        "tspub",
        bin!("tspub"),
        &["--rate", "5000", "--duration-s", "20"],
    );
    // 2 ms a message against 5000 msg/s: the queue, and so the age of what
    // arrives, grows 0.9 s every second.
    let line = sc.expect(sub, "ABORT: message", secs(15));
    assert!(line.contains("(limit 200 ms)"), "{line}");
    assert_eq!(sc.wait_exit(sub, secs(10)), 2, "{}", sc.report());
    assert!(sc.count(sub, "[total]") == 1, "{}", sc.report());
    sc.stop_cleanly(publ, secs(10));
}

#[test]
fn abort_after_ms_never_fires_when_the_subscriber_keeps_up() {
    let mut sc = Scenario::new("tssub-no-abort");
    let limit = ms(1000).as_millis().to_string();
    // Large queues, as in the lossless test above.
    let sub = sc.start(
        "tssub",
        bin!("tssub"),
        &["--abort-after-ms", &limit, "--rcvhwm", "100000"],
    );
    let publ = sc.start(
        "tspub",
        bin!("tspub"),
        &["--rate", "2000", "--duration-s", "3", "--sndhwm", "100000"],
    );
    assert_eq!(sc.wait_exit(publ, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.wait_exit(sub, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.count(sub, "ABORT"), 0, "{}", sc.report());
    // A publisher bound by time sends about rate × duration (5,997 of 6,000
    // on a loaded CI machine); the subscriber must have every one it sent.
    let sent = sc
        .output(publ)
        .split(": sent ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| sc.fail("tspub printed no sent count"));
    assert!(sent >= 5_000, "tspub sent only {sent}\n{}", sc.report());
    sc.expect(sub, &format!("lost 0 sent {sent} (ended)"), secs(1));
}

#[test]
fn two_subscribers_each_report_both_publishers() {
    let mut sc = Scenario::new("tspub-many");
    let connect = [
        "--json",
        "--publishers",
        "2",
        "--connect",
        "tcp://127.0.0.1:5600",
        "--connect",
        "tcp://127.0.0.1:5601",
    ];
    let subs = [
        sc.start("tssub-1", bin!("tssub"), &connect),
        sc.start("tssub-2", bin!("tssub"), &connect),
    ];
    let pubs = [
        sc.start(
            "tspub-a",
            bin!("tspub"),
            &[
                "--name",
                "A",
                "--count",
                "3000",
                "--rate",
                "3000",
                "--wait-subscribers",
                "2",
            ],
        ),
        sc.start(
            "tspub-b",
            bin!("tspub"),
            &[
                "--name",
                "B",
                "--bind",
                "tcp://127.0.0.1:5601",
                "--count",
                "2000",
                "--rate",
                "2000",
                "--topics",
                "2",
                "--wait-subscribers",
                "2",
            ],
        ),
    ];
    for p in pubs {
        assert_eq!(sc.wait_exit(p, secs(30)), 0, "{}", sc.report());
    }
    for sub in subs {
        assert_eq!(sc.wait_exit(sub, secs(30)), 0, "{}", sc.report());
        let total = report(&sc, sub, "total");
        for (name, count) in [("A", 3000), ("B", 2000)] {
            let p = publisher(&total, name);
            assert_eq!(
                (p["received"].as_u64(), p["lost"].as_u64()),
                (Some(count), Some(0)),
                "{total}"
            );
        }
        assert_eq!(total["messages"], 5000);
    }
}

#[test]
fn a_topic_filter_sees_a_gap_free_sequence_on_its_topic_only() {
    let mut sc = Scenario::new("tspub-topic");
    let sub = sc.start("tssub", bin!("tssub"), &["--json", "--topic", "topic1"]);
    sc.start(
        "tspub",
        bin!("tspub"),
        &["--name", "A", "--count", "3000", "--topics", "3"],
    );
    assert_eq!(sc.wait_exit(sub, secs(30)), 0, "{}", sc.report());
    let a = publisher(&report(&sc, sub, "total"), "A").clone();
    assert_eq!(
        (
            a["received"].as_u64(),
            a["lost"].as_u64(),
            a["sent"].as_u64()
        ),
        (Some(1000), Some(0), Some(1000)),
        "{a}"
    );
}

#[test]
fn tssub_drops_and_counts_malformed_messages_and_both_stop_cleanly_on_ctrl_c() {
    let mut sc = Scenario::new("tssub-hostile");
    let sub = sc.start(
        "tssub",
        bin!("tssub"),
        &[
            "--publishers",
            "0",
            "--connect",
            "tcp://127.0.0.1:5609",
            "--report-ms",
            "200",
        ],
    );
    sc.in_namespace(|| {
        let context = zmq::Context::new();
        let publisher = common::wire::probe(&context, zmq::XPUB).bind("tcp://127.0.0.1:5609");
        publisher.set_rcvtimeo(common::timeout_ms(10_000)).unwrap();
        publisher.recv_bytes(0).expect("tssub's subscription");
        for message in common::attack::random_messages(16, 900, 4, 300) {
            publisher.send_multipart(message, 0).unwrap();
        }
        // A well-formed one last, so the test knows all came.
        let stamp = zguide::pubsub_stats::Stamp {
            publisher: "probe".into(),
            seq: 0,
            sent_ns: 0,
            end: false,
            topics: 0,
        };
        publisher
            .send_multipart([&b"topic0"[..], &stamp.encode(), b"x"], 0)
            .unwrap();
        std::thread::sleep(ms(300)); // let it go out before LINGER cuts it
    });
    sc.expect(sub, "publisher probe: received 1 lost 0", secs(10));
    sc.stop_cleanly(sub, secs(10));
    let total = sc
        .lines(sub)
        .into_iter()
        .find(|l| l.starts_with("[total]"))
        .unwrap_or_else(|| sc.fail("no total"));
    let malformed: u64 = total
        .split("malformed ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| sc.fail(&format!("no malformed count: {total}")));
    assert_eq!(malformed, 900, "{total}");

    // A publisher that runs until Ctrl-C also ends cleanly, with its total.
    let publ = sc.start(
        "tspub",
        bin!("tspub"),
        &["--duration-s", "0", "--wait-subscribers", "0"],
    );
    sc.expect(publ, "tspub tspub-", secs(10));
    sc.stop_cleanly(publ, secs(10));
    sc.expect(publ, ": sent ", secs(1));
}

#[test]
fn the_hwm_study_writes_a_table_and_an_svg() {
    let mut sc = Scenario::new("tspub-hwm-study");
    let out = sc.dir().join("study");
    let study = sc.start(
        "tspub",
        bin!("tspub"),
        &[
            "--hwm-study",
            "--study-hwms",
            "10,1000",
            "--study-duration-s",
            "0.5",
            "--study-tcp-buffer",
            "16384",
            "--study-out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(sc.wait_exit(study, secs(60)), 0, "{}", sc.report());
    let table = std::fs::read_to_string(out.join("hwm-study.md")).unwrap();
    let rows: Vec<Vec<u64>> = table
        .lines()
        .filter(|l| l.starts_with("| 1"))
        .map(|l| {
            l.split('|')
                .filter_map(|c| c.trim().parse::<u64>().ok())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    for row in &rows {
        // hwm, sent, received, lost: nothing unaccounted for.
        assert_eq!(row[1], row[2] + row[3], "{table}");
    }
    assert!(rows[0][3] > 0, "HWM 10 loses messages: {table}");
    let svg = std::fs::read_to_string(out.join("hwm-study.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
}

#[test]
fn the_tspub_scenario_runs_to_its_end() {
    let (sc, runner) = common::runs::run_to_the_end("tspub", &[], 60);
    let output = sc.output(runner);
    assert_eq!(
        output
            .matches("received 5000 lost 0 sent 5000 (ended)")
            .count(),
        2,
        "{output}"
    );
}
