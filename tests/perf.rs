//! libzmq's perf tools, ported: real processes paired over TCP in a private
//! network namespace, the inproc tools alone, and a tiny run of the benchmark
//! suite. These check that the printed lines parse and echo the arguments;
//! they never assert on speed (the benchmark suite measures that).

mod common;
use common::{secs, Scenario};

use zguide::perf::Report;

const ENDPOINT_BIND: &str = "tcp://127.0.0.1:5555";
const ENDPOINT_CONNECT: &str = "tcp://127.0.0.1:5555";

#[test]
fn local_thr_and_remote_thr_report_throughput() {
    let mut sc = Scenario::new("perf-thr");
    let local = sc.start(
        "local_thr",
        bin!("local_thr"),
        &[ENDPOINT_BIND, "100", "20000"],
    );
    let remote = sc.start(
        "remote_thr",
        bin!("remote_thr"),
        &[ENDPOINT_CONNECT, "100", "20000"],
    );
    sc.expect(local, "[Mb/s]", secs(60));
    assert_eq!(sc.wait_exit(local, secs(30)), 0);
    assert_eq!(sc.wait_exit(remote, secs(30)), 0);

    let report = Report::parse(&sc.output(local));
    assert_eq!(report.message_size, Some(100), "{}", sc.report());
    assert_eq!(report.message_count, Some(20000), "{}", sc.report());
    let per_sec = report.messages_per_sec.expect("a msg/s figure");
    let megabits = report.megabits_per_sec.expect("a Mb/s figure");
    assert!(per_sec > 0, "{}", sc.report());
    // The two figures agree: Mb/s = msg/s × 100 B × 8 bits (± the truncation).
    let expected = per_sec as f64 * 800.0 / 1e6;
    assert!(
        (megabits - expected).abs() <= 0.001 + expected * 1e-6,
        "{}",
        sc.report()
    );
    assert!(
        sc.output(remote).trim().is_empty(),
        "remote_thr prints nothing"
    );
}

#[test]
fn sender_started_first_still_delivers_every_message() {
    let mut sc = Scenario::new("perf-thr-order");
    let remote = sc.start(
        "remote_thr",
        bin!("remote_thr"),
        &[ENDPOINT_CONNECT, "8", "5000"],
    );
    let local = sc.start(
        "local_thr",
        bin!("local_thr"),
        &[ENDPOINT_BIND, "8", "5000"],
    );
    sc.expect(local, "message count: 5000", secs(60));
    sc.expect(local, "[msg/s]", secs(30));
    assert_eq!(sc.wait_exit(local, secs(30)), 0);
    assert_eq!(sc.wait_exit(remote, secs(30)), 0);
}

#[test]
fn local_lat_and_remote_lat_report_latency() {
    let mut sc = Scenario::new("perf-lat");
    let local = sc.start(
        "local_lat",
        bin!("local_lat"),
        &[ENDPOINT_BIND, "64", "2000"],
    );
    let remote = sc.start(
        "remote_lat",
        bin!("remote_lat"),
        &[ENDPOINT_CONNECT, "64", "2000"],
    );
    sc.expect(remote, "average latency:", secs(60));
    assert_eq!(sc.wait_exit(remote, secs(30)), 0);
    assert_eq!(sc.wait_exit(local, secs(30)), 0);

    let report = Report::parse(&sc.output(remote));
    assert_eq!(report.message_size, Some(64), "{}", sc.report());
    assert_eq!(report.roundtrip_count, Some(2000), "{}", sc.report());
    assert!(report.latency_us.expect("a latency figure") > 0.0);
    assert!(
        sc.output(local).trim().is_empty(),
        "local_lat prints nothing"
    );
}

#[test]
fn a_message_of_the_wrong_size_is_reported_not_a_crash() {
    let mut sc = Scenario::new("perf-size");
    let local = sc.start(
        "local_thr",
        bin!("local_thr"),
        &[ENDPOINT_BIND, "100", "1000"],
    );
    let remote = sc.start(
        "remote_thr",
        bin!("remote_thr"),
        &[ENDPOINT_CONNECT, "99", "1000"],
    );
    sc.expect(local, "message of incorrect size received", secs(60));
    assert_eq!(sc.wait_exit(local, secs(30)), 1);
    sc.kill(remote);
}

#[test]
fn local_thr_waiting_for_a_sender_stops_on_ctrl_c() {
    let mut sc = Scenario::new("perf-interrupt-thr");
    let local = sc.start("local_thr", bin!("local_thr"), &[ENDPOINT_BIND, "8", "10"]);
    // A plain TCP connect succeeds once local_thr has bound, which it does
    // after installing its signal handler.
    sc.in_namespace(|| {
        let deadline = std::time::Instant::now() + secs(30);
        while std::net::TcpStream::connect("127.0.0.1:5555").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "local_thr never bound"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    sc.interrupt(local);
    assert_eq!(sc.wait_exit(local, secs(30)), 0, "{}", sc.report());
}

#[test]
fn local_lat_between_round_trips_stops_on_sigterm() {
    let mut sc = Scenario::new("perf-interrupt-lat");
    let local = sc.start("local_lat", bin!("local_lat"), &[ENDPOINT_BIND, "8", "10"]);
    // One round trip proves local_lat is in its loop; then it waits for more.
    let echoed = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let probe = ctx.socket(zmq::REQ).unwrap();
        probe.set_linger(0).unwrap();
        probe.set_rcvtimeo(30_000).unwrap();
        probe.connect(ENDPOINT_CONNECT).unwrap();
        probe.send(&[0u8; 8][..], 0).unwrap();
        probe.recv_bytes(0)
    });
    assert_eq!(echoed.as_deref(), Ok(&[0u8; 8][..]), "{}", sc.report());
    sc.signal(local, libc::SIGTERM);
    assert_eq!(sc.wait_exit(local, secs(30)), 0, "{}", sc.report());
}

#[test]
fn bad_arguments_print_the_usage() {
    let mut sc = Scenario::new("perf-usage");
    let local = sc.start(
        "local_thr",
        bin!("local_thr"),
        &["tcp://127.0.0.1:5555", "x"],
    );
    let inproc = sc.start("inproc_lat", bin!("inproc_lat"), &["8", "0"]);
    sc.expect(
        local,
        "usage: local_thr <bind-to> <message-size> <message-count>",
        secs(30),
    );
    sc.expect(
        inproc,
        "usage: inproc_lat <message-size> <roundtrip-count>",
        secs(30),
    );
    assert_eq!(sc.wait_exit(local, secs(30)), 1);
    assert_eq!(sc.wait_exit(inproc, secs(30)), 1);
}

#[test]
fn inproc_thr_reports_throughput() {
    let mut sc = Scenario::new("perf-inproc-thr");
    let tool = sc.start("inproc_thr", bin!("inproc_thr"), &["1024", "20000"]);
    sc.expect(tool, "[Mb/s]", secs(60));
    assert_eq!(sc.wait_exit(tool, secs(30)), 0);
    let report = Report::parse(&sc.output(tool));
    assert_eq!(report.message_size, Some(1024));
    assert_eq!(report.message_count, Some(20000));
    assert!(report.messages_per_sec.unwrap_or(0) > 0, "{}", sc.report());
}

#[test]
fn inproc_lat_reports_latency() {
    let mut sc = Scenario::new("perf-inproc-lat");
    let tool = sc.start("inproc_lat", bin!("inproc_lat"), &["8", "2000"]);
    sc.expect(tool, "average latency:", secs(60));
    assert_eq!(sc.wait_exit(tool, secs(30)), 0);
    let report = Report::parse(&sc.output(tool));
    assert_eq!(report.message_size, Some(8));
    assert_eq!(report.roundtrip_count, Some(2000));
    assert!(report.latency_us.unwrap_or(0.0) > 0.0, "{}", sc.report());
}

#[test]
fn bench_explains_its_flags() {
    let mut sc = Scenario::new("bench-help");
    let help = sc.start("bench", bin!("bench"), &["--help"]);
    sc.expect(help, "USAGE: bench [OPTIONS]", secs(30));
    sc.expect(help, "--full", secs(10));
    sc.expect(help, "binarystar", secs(10));
    sc.expect(help, "--fileio-mib", secs(10));
    sc.expect(help, "ZGUIDE_REFERENCE_BIN", secs(10));
    assert_eq!(sc.wait_exit(help, secs(30)), 0);
    let bad = sc.start("bench-bad", bin!("bench"), &["--sizes", "0"]);
    sc.expect(bad, "--sizes takes a whole number above 0", secs(30));
    assert_eq!(sc.wait_exit(bad, secs(30)), 2);
}

#[test]
fn a_tiny_bench_run_writes_its_figures() {
    let mut sc = Scenario::new("bench-quick");
    let out = sc.dir().join("figures");
    let out_arg = out.display().to_string();
    let bench = sc.start(
        "bench",
        bin!("bench"),
        &[
            "--quick",
            "--only",
            "tcp,inproc",
            "--sizes",
            "64",
            "--count",
            "2000",
            "--roundtrips",
            "200",
            "--out",
            &out_arg,
        ],
    );
    sc.expect(bench, "results.json", secs(120));
    assert_eq!(sc.wait_exit(bench, secs(60)), 0, "{}", sc.report());
    // The table lists the four perf rows with a figure each.
    for label in [
        "tcp thr 64 B",
        "tcp lat 64 B",
        "inproc thr 64 B",
        "inproc lat 64 B",
    ] {
        let line = sc
            .lines(bench)
            .into_iter()
            .rev()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| sc.fail(&format!("no table row {label:?}")));
        let figure = line[label.len()..].split_whitespace().nth(1).unwrap_or("-");
        assert!(
            figure.parse::<f64>().is_ok(),
            "row without a figure: {line}"
        );
    }
    let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    assert_eq!(json.matches("\"group\": \"tcp\"").count(), 2, "{json}");
    assert_eq!(json.matches("\"group\": \"inproc\"").count(), 2, "{json}");
    assert!(json.contains("\"size\": 64"), "{json}");
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    assert_eq!(csv.lines().count(), 5, "a header and four rows: {csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap_or("")
            .starts_with("tcp,thr,64,msg/s,"),
        "{csv}"
    );
    let svg = std::fs::read_to_string(out.join("sweep.svg")).expect("sweep.svg");
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
}

/// CPU time the process has used, in clock ticks (utime + stime of
/// `/proc/<pid>/stat`): a receiver waiting for its first message uses none,
/// one taking messages in uses a lot.
fn cpu_ticks(os_pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{os_pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            let fields: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(fields.iter().sum())
        })
        .unwrap_or(0)
}

#[test]
fn both_throughput_tools_stop_on_ctrl_c_while_messages_flow() {
    let mut sc = Scenario::new("perf-interrupt-flow");
    // A run that would take minutes: 100 million messages.
    let local = sc.start(
        "local_thr",
        bin!("local_thr"),
        &[ENDPOINT_BIND, "8", "100000000"],
    );
    let remote = sc.start(
        "remote_thr",
        bin!("remote_thr"),
        &[ENDPOINT_CONNECT, "8", "100000000"],
    );
    // Messages flow once local_thr has used a quarter of a second of CPU.
    let deadline = std::time::Instant::now() + secs(30);
    while cpu_ticks(sc.os_pid(local)) < 25 {
        assert!(
            std::time::Instant::now() < deadline,
            "no messages flow\n{}",
            sc.report()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sc.stop_cleanly(local, secs(5));
    sc.stop_cleanly(remote, secs(5));
    assert!(
        !sc.output(local).contains("mean throughput"),
        "stopped before the end: {}",
        sc.report()
    );
}

/// Runs `bench --quick --only <group>` and checks that the group's `rows`
/// rows all have a figure in `results.json` that is positive and finite
/// (never an exact value: the figures depend on the machine).
fn quick_group_has_plausible_figures(group: &str, rows: usize) -> serde_json::Value {
    let mut sc = Scenario::new(&format!("bench-quick-{group}"));
    let out = sc.dir().join("figures");
    let out_arg = out.display().to_string();
    let bench = sc.start(
        "bench",
        bin!("bench"),
        &["--quick", "--only", group, "--out", &out_arg],
    );
    sc.expect(bench, "results.json", secs(120));
    assert_eq!(sc.wait_exit(bench, secs(60)), 0, "{}", sc.report());
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("results.json is JSON");
    let found: Vec<&serde_json::Value> = json["rows"]
        .as_array()
        .expect("a list of rows")
        .iter()
        .filter(|row| row["group"] == group)
        .collect();
    assert_eq!(found.len(), rows, "{text}");
    for row in &found {
        let figure = row["ours"].as_f64();
        assert!(
            figure.is_some_and(|f| f.is_finite() && f > 0.0),
            "row without a plausible figure: {row}\n{}",
            sc.report()
        );
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    assert_eq!(
        csv.lines().count(),
        rows + 1,
        "a header and the rows: {csv}"
    );
    assert!(
        !out.join("fileio-data").exists(),
        "the fileio test file is removed"
    );
    serde_json::Value::Array(found.into_iter().cloned().collect())
}

#[test]
fn a_quick_freelance_run_measures_round_trips() {
    let rows = quick_group_has_plausible_figures("freelance", 4);
    assert_eq!(rows[0]["test"], "flclient2, 1 server");
    assert_eq!(rows[3]["test"], "flclient3, 3 servers");
    assert_eq!(rows[0]["unit"], "us");
}

#[test]
fn a_quick_binarystar_run_measures_the_failover() {
    let rows = quick_group_has_plausible_figures("binarystar", 1);
    // The client waits 1 s for a reply and 2 s before it fails over.
    let ms = rows[0]["ours"].as_f64().unwrap_or(0.0);
    assert!(ms > 1000.0 && ms < 60_000.0, "{rows}");
}

#[test]
fn a_quick_clone_run_measures_updates_and_a_snapshot() {
    let rows = quick_group_has_plausible_figures("clone", 3);
    for row in rows.as_array().into_iter().flatten().take(2) {
        let delivered = row["ours_secondary"].as_f64().unwrap_or(0.0);
        assert!(delivered > 0.0 && delivered <= 100.0, "{row}");
    }
    assert_eq!(rows[2]["unit"], "ms");
}

#[test]
fn a_quick_fileio_run_compares_with_a_raw_copy() {
    let rows = quick_group_has_plausible_figures("fileio", 5);
    assert_eq!(rows[3]["test"], "raw TCP copy");
    assert_eq!(rows[4]["unit"], "%");
}

#[test]
fn a_quick_pubsub_run_measures_latency_and_the_lossless_rate() {
    let rows = quick_group_has_plausible_figures("pubsub", 7);
    let rows = rows.as_array().expect("rows");
    // Percentiles never decrease: p50 <= p99 <= p99.9 at each rate.
    for at in [0, 3] {
        let p: Vec<f64> = (at..at + 3)
            .map(|n| rows[n]["ours"].as_f64().unwrap_or(0.0))
            .collect();
        assert!(p[0] <= p[1] && p[1] <= p[2], "{p:?}");
    }
    assert!(
        rows[6]["ours"].as_f64().unwrap_or(0.0) >= 1000.0,
        "{:?}",
        rows[6]
    );
}

#[test]
fn a_quick_p2p_run_measures_the_mesh_the_fan_out_and_convergence() {
    let rows = quick_group_has_plausible_figures("p2p", 6);
    let rows = rows.as_array().expect("rows");
    let value = |n: usize| rows[n]["ours"].as_f64().unwrap_or(0.0);
    // --quick: 5, 10 and 20 nodes (the full run: 10, 25, 50).
    assert_eq!(rows[0]["test"], "time to full mesh, 5 nodes");
    assert_eq!(rows[2]["test"], "time to full mesh, 20 nodes");
    // A mesh needs at least one beacon round trip and is bounded by the
    // bench's own time limit; p50 never exceeds p99.
    for (n, row) in rows.iter().enumerate().take(3) {
        assert!(value(n) > 0.0 && value(n) < 120_000.0, "{row:?}");
    }
    assert!(value(3) <= value(4), "p50 {} p99 {}", value(3), value(4));
    assert_eq!(rows[5]["unit"], "ms");
}
