//! The broker as ventilator, the client as sink (study part 3):
//! `broker-fanout count` fans a text file out in chunks through the real
//! `broker` to `broker-fanout worker`s and merges their word counts. Each
//! scenario runs real processes in its own network namespace; the expected
//! figures come from a count done here, independently; every wait is bounded
//! and syncs on output, never on sleeps.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ms, secs, Pid, Scenario};
use zguide::broker::client::{Client, ClientOptions, RequestOptions};
use zguide::broker::protocol::{Properties, Status};
use zguide::broker::worker::{Worker, WorkerOptions};

const FANOUT: &str = bin!("broker-fanout");

fn start_broker(sc: &mut Scenario) -> Pid {
    let broker = sc.start("broker", bin!("broker"), &[]);
    sc.expect(broker, "broker is active at", secs(30));
    broker
}

fn start_worker(sc: &mut Scenario, label: &str, extra: &[&str]) -> Pid {
    let mut args = vec!["worker"];
    args.extend_from_slice(extra);
    let worker = sc.start(label, FANOUT, &args);
    sc.expect(worker, "I: worker ready for wordfreq in default", secs(30));
    worker
}

/// Runs a program to its end: (exit code, everything it printed).
fn run(sc: &mut Scenario, label: &str, args: &[&str]) -> (i32, String) {
    let pid = sc.start(label, FANOUT, args);
    let code = sc.wait_exit(pid, secs(120));
    (code, sc.output(pid))
}

/// `broker-fanout gen` into the scenario's directory.
fn generate(sc: &mut Scenario, name: &str, bytes: u64, seed: u64) -> Vec<u8> {
    let (bytes_arg, seed_arg) = (bytes.to_string(), seed.to_string());
    let label = format!("gen-{name}");
    let (code, out) = run(
        sc,
        &label,
        &["gen", name, "--bytes", &bytes_arg, "--seed", &seed_arg],
    );
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read(sc.dir().join(name)).expect("the generated file");
    assert_eq!(text.len() as u64, bytes, "--bytes is exact");
    text
}

/// The figures of `text`, counted here the simplest way: bytes, words,
/// distinct words, lines, and the `k` commonest words as `count word`.
struct Expected {
    bytes: usize,
    words: u64,
    distinct: usize,
    lines: usize,
    top: Vec<String>,
}

fn expected(text: &[u8], k: usize) -> Expected {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut word = String::new();
    let mut words = 0;
    for &byte in text.iter().chain(std::iter::once(&b' ')) {
        if byte.is_ascii_alphanumeric() {
            word.push(byte.to_ascii_lowercase() as char);
        } else if !word.is_empty() {
            *counts.entry(std::mem::take(&mut word)).or_default() += 1;
            words += 1;
        }
    }
    let mut ranked: Vec<(&String, &u64)> = counts.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    Expected {
        bytes: text.len(),
        words,
        distinct: counts.len(),
        lines: text.iter().filter(|&&b| b == b'\n').count(),
        top: ranked
            .iter()
            .take(k)
            .map(|(w, c)| format!("  {c} {w}"))
            .collect(),
    }
}

/// Checks a count's output against the figures counted here.
fn assert_counted(out: &str, want: &Expected) {
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("I: ") && l.contains(" chunks, "))
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    let figures = format!(
        " chunks, {} bytes, {} words, {} distinct, {} lines in ",
        want.bytes, want.words, want.distinct, want.lines
    );
    assert!(
        lines[at].contains(&figures) && lines[at].ends_with(" MB/s)"),
        "wanted {figures:?} in the summary:\n{out}"
    );
    let top: Vec<&str> = lines[at + 1..]
        .iter()
        .copied()
        .filter(|l| l.starts_with("  "))
        .collect();
    assert_eq!(top, want.top, "the top words:\n{out}");
}

/// How many chunks the summary line says, checked against what chunks of
/// `size` can make of `bytes`: at least `size` each (but the last), a line
/// more at most (lines here are well under 200 bytes).
fn assert_chunks(out: &str, bytes: u64, size: u64) -> u64 {
    let summary = out
        .lines()
        .find(|l| l.starts_with("I: ") && l.contains(" chunks, "))
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    let chunks = figure(summary, "I: ");
    let (least, most) = (bytes / (size + 200), bytes.div_ceil(size));
    assert!(
        (least..=most).contains(&chunks),
        "{chunks} chunks, not {least}..={most}:\n{out}"
    );
    chunks
}

/// A number after `key` in `out`: `max outstanding 3` → 3.
fn figure(out: &str, key: &str) -> u64 {
    let at = out
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in:\n{out}"));
    out[at + key.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in:\n{out}"))
}

/// The broker's view of the `wordfreq` service: (workers, idle, queued),
/// asked through `mmi.services`.
fn wordfreq_figures(client: &mut Client) -> Option<(u64, u64, u64)> {
    let reply = client
        .request("mmi.services", Vec::new(), &RequestOptions::default())
        .ok()?;
    let document: serde_json::Value = serde_json::from_slice(reply.body.get(1)?).ok()?;
    let found = document["services"]
        .as_array()?
        .iter()
        .find(|s| s["service"] == "wordfreq" && s["environment"] == "default");
    let Some(service) = found else {
        return Some((0, 0, 0)); // not known (yet, or any more)
    };
    let number = |key: &str| service[key].as_u64();
    Some((number("workers")?, number("idle")?, number("queued")?))
}

fn probe_client() -> Client {
    Client::new(ClientOptions {
        timeout: Duration::from_millis(1000),
        retries: 1,
        ..ClientOptions::default()
    })
    .expect("a client in the namespace")
}

/// Waits (bounded) until the broker knows `n` workers of `wordfreq`: a
/// worker's "ready" line means READY was sent, not yet that the broker has
/// it.
fn wait_workers(sc: &Scenario, n: u64) {
    let deadline = Instant::now() + secs(20);
    let seen = sc.in_namespace(move || {
        let mut client = probe_client();
        loop {
            let figures = wordfreq_figures(&mut client);
            if figures.is_some_and(|(workers, _, _)| workers == n) || Instant::now() >= deadline {
                return figures;
            }
            std::thread::yield_now();
        }
    });
    assert!(
        seen.is_some_and(|(workers, _, _)| workers == n),
        "the broker never had {n} wordfreq workers: {seen:?}\n{}",
        sc.report()
    );
}

// ------------------------------------------------------------------ the tests

#[test]
fn counts_are_exact_with_one_worker_and_with_three() {
    let mut sc = Scenario::new("fanout-exact");
    let text = generate(&mut sc, "text.txt", 3 << 20, 11);
    // The same seed, the same text; another seed, another.
    assert_eq!(generate(&mut sc, "again.txt", 3 << 20, 11), text);
    assert_ne!(generate(&mut sc, "other.txt", 3 << 20, 12), text);
    let want = expected(&text, 10);
    assert!(want.distinct > 10_000 && want.lines > 50_000, "a real text");

    let broker = start_broker(&mut sc);
    let first = start_worker(&mut sc, "worker1", &["--verbose"]);
    let (code, out) = run(
        &mut sc,
        "one-worker",
        &["count", "text.txt", "--chunk-size", "65536"],
    );
    assert_eq!(code, 0, "{out}");
    assert_counted(&out, &want);
    assert_chunks(&out, 3 << 20, 65536);

    let second = start_worker(&mut sc, "worker2", &["--verbose"]);
    let third = start_worker(&mut sc, "worker3", &["--verbose"]);
    wait_workers(&sc, 3);
    let served_before = sc.count(first, "answered:");
    let (code, out) = run(
        &mut sc,
        "three-workers",
        &["count", "text.txt", "--chunk-size", "65536", "--verbose"],
    );
    assert_eq!(code, 0, "{out}");
    assert_counted(&out, &want);
    for (worker, before) in [(first, served_before), (second, 0), (third, 0)] {
        assert!(
            sc.count(worker, "answered:") > before,
            "every worker took part\n{}",
            sc.report()
        );
    }
    // Default chunks: 1 MiB and more in one frame, both ways.
    let (code, out) = run(&mut sc, "big-chunks", &["count", "text.txt", "--top", "25"]);
    assert_eq!(code, 0, "{out}");
    assert_counted(&out, &expected(&text, 25));
    assert_eq!(assert_chunks(&out, 3 << 20, 1 << 20), 3, "{out}");

    // The merged histogram's bound is an error, not an abort.
    let (code, out) = run(
        &mut sc,
        "bounded",
        &["count", "text.txt", "--max-distinct", "1000"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("E: more than 1000 distinct words"), "{out}");

    sc.stop_cleanly(first, secs(10));
    sc.stop_cleanly_with(second, libc::SIGTERM, secs(10));
    sc.stop_cleanly(third, secs(10));
    sc.stop_cleanly(broker, secs(10));
}

/// The correlation id in a worker's `I: chunk <id> from <client>: …` line.
fn correlation_of(line: &str) -> String {
    line.trim_start_matches("I: chunk ")
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Waits until `worker` has answered more than `served` chunks and is busy
/// with another (its last line says one arrived), SIGKILLs it there, and
/// returns the correlation of the chunk it died with.
fn kill_mid_chunk(sc: &mut Scenario, worker: Pid, served: usize) -> String {
    sc.wait_for(worker, secs(60), "a chunk in hand after serving", |out| {
        let answered = out.lines().filter(|l| l.contains("answered:")).count();
        answered > served && out.lines().last().is_some_and(|l| l.contains(" from "))
    });
    sc.kill(worker);
    let out = sc.output(worker);
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.contains(" from "),
        "killed with a chunk in hand:\n{out}"
    );
    correlation_of(last)
}

#[test]
fn workers_killed_mid_run_have_their_chunks_redone_elsewhere_and_the_count_stays_exact() {
    let mut sc = Scenario::new("fanout-kill");
    let text = generate(&mut sc, "text.txt", 768 << 10, 21);
    let want = expected(&text, 10);
    start_broker(&mut sc);
    // Slow workers, so the run lasts seconds and a kill lands mid-chunk.
    let delay = ms(200).as_millis().to_string();
    let args = ["--verbose", "--delay-ms", &delay];
    let workers = [
        start_worker(&mut sc, "worker1", &args),
        start_worker(&mut sc, "worker2", &args),
        start_worker(&mut sc, "worker3", &args),
    ];
    wait_workers(&sc, 3);
    let client = sc.start(
        "count",
        FANOUT,
        &["count", "text.txt", "--chunk-size", "32768", "--verbose"],
    );
    let first = kill_mid_chunk(&mut sc, workers[0], 0);
    let served = sc.count(workers[1], "answered:");
    let second = kill_mid_chunk(&mut sc, workers[1], served);
    assert_eq!(sc.wait_exit(client, secs(120)), 0, "{}", sc.report());
    let out = sc.output(client);
    assert_counted(&out, &want);
    assert_chunks(&out, 768 << 10, 32768);
    // The broker gave each dead worker's chunk to a living one.
    for (dead, correlation) in [(0, &first), (1, &second)] {
        let arrived = format!("I: chunk {correlation} from ");
        let redone = workers
            .iter()
            .enumerate()
            .filter(|(n, _)| *n > dead)
            .any(|(_, w)| sc.output(*w).contains(&arrived));
        assert!(
            redone,
            "chunk {correlation} redone by another worker\n{}",
            sc.report()
        );
    }
}

#[test]
fn credit_bounds_the_chunks_outstanding_at_the_broker() {
    let mut sc = Scenario::new("fanout-credit");
    let text = generate(&mut sc, "text.txt", 16_000, 31);
    let want = expected(&text, 10);
    start_broker(&mut sc);
    // One slow worker: the rest of the outstanding chunks wait in the
    // broker's queue, where they can be counted.
    let delay = ms(200).as_millis().to_string();
    let worker = start_worker(&mut sc, "worker", &["--delay-ms", &delay]);
    wait_workers(&sc, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let watching = stop.clone();
    let deadline = Instant::now() + secs(120);
    let watcher = sc.in_namespace_background(move || {
        let mut client = probe_client();
        let mut most = 0;
        while !watching.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Some((workers, idle, queued)) = wordfreq_figures(&mut client) {
                most = most.max(queued + workers.saturating_sub(idle));
            }
        }
        most
    });
    let client = sc.start(
        "count",
        FANOUT,
        &[
            "count",
            "text.txt",
            "--chunk-size",
            "1000",
            "--credit",
            "3",
            "--verbose",
        ],
    );
    let code = sc.wait_exit(client, secs(120));
    stop.store(true, Ordering::SeqCst);
    let most = watcher.join().expect("the watcher");
    let out = sc.output(client);
    assert_eq!(code, 0, "{out}");
    assert_counted(&out, &want);
    assert_chunks(&out, 16_000, 1000);
    // Queued plus in the worker's hands, seen by the broker: up to the
    // credit, never more.
    assert_eq!(
        most,
        3,
        "most requests at the broker at once\n{}",
        sc.report()
    );
    assert_eq!(figure(&out, "max outstanding"), 3, "{out}");
    sc.stop_cleanly(worker, secs(10));
}

/// What a scripted worker answers.
enum Answer {
    Junk,
    Failed,
    WrongBytes,
    TwoFrames,
}

/// A scripted `wordfreq` worker in the namespace that answers one request
/// per entry of `script`, then leaves (DISCONNECT).
fn scripted_worker(sc: &Scenario, script: Vec<Answer>) -> std::thread::JoinHandle<()> {
    let deadline = Instant::now() + secs(60);
    sc.in_namespace_background(move || {
        let mut worker = Worker::new(WorkerOptions {
            service: "wordfreq".into(),
            max_message_size: 4 << 20,
            ..WorkerOptions::default()
        })
        .expect("a worker");
        for answer in script {
            let left = deadline.saturating_duration_since(Instant::now());
            let incoming = worker
                .recv_timeout(left)
                .expect("recv")
                .expect("a request within the deadline");
            let (status, body, reason) = match answer {
                Answer::Junk => (Status::OK, vec![b"junk".to_vec()], None),
                Answer::Failed => (Status::WORKER_FAILED, vec![], Some("on purpose")),
                Answer::WrongBytes => {
                    let tally = rmp_serde::to_vec(&(1u64, 0u64, Vec::<(String, u64)>::new()));
                    (Status::OK, vec![tally.expect("encodes")], None)
                }
                Answer::TwoFrames => (Status::OK, vec![b"a".to_vec(), b"b".to_vec()], None),
            };
            let properties = reason.map(|r| Properties::build(None, 0, None, false, Some(r)));
            worker
                .reply(&incoming, status, body, properties)
                .expect("reply");
        }
    })
}

#[test]
fn bad_answers_are_sent_again_and_the_fifth_fails_the_count() {
    let mut sc = Scenario::new("fanout-retry");
    let text = generate(&mut sc, "text.txt", 5000, 41);
    let want = expected(&text, 10);
    start_broker(&mut sc);

    // Four bad answers, then a real worker: the fifth try counts.
    let script = vec![
        Answer::Junk,
        Answer::Failed,
        Answer::WrongBytes,
        Answer::TwoFrames,
    ];
    let scripted = scripted_worker(&sc, script);
    let client = sc.start("count", FANOUT, &["count", "text.txt", "--verbose"]);
    sc.expect(client, "sending it again (try 2 of 5)", secs(30));
    scripted.join().expect("the scripted worker");
    let worker = start_worker(&mut sc, "worker", &[]);
    assert_eq!(sc.wait_exit(client, secs(60)), 0, "{}", sc.report());
    let out = sc.output(client);
    assert_counted(&out, &want);
    assert_eq!(figure(&out, "retried"), 4, "{out}");
    for why in [
        "a bad answer: not a histogram",
        "answered 500 on purpose",
        "a bad answer: 1 bytes and 0 lines, not the chunk's 5000",
        "a bad answer: 2 body frames, not 1",
    ] {
        assert!(out.contains(why), "{why:?} logged:\n{out}");
    }
    sc.stop_cleanly(worker, secs(10));
    wait_workers(&sc, 0);

    // Five bad answers: the count fails, saying which chunk and why.
    let scripted = scripted_worker(&sc, (0..5).map(|_| Answer::Junk).collect());
    let (code, out) = run(&mut sc, "fails", &["count", "text.txt"]);
    scripted.join().expect("the scripted worker");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("E: chunk 0 (bytes 0..5000): a bad answer: not a histogram")
            && out.contains("after 5 tries: giving up"),
        "{out}"
    );
    assert!(!out.contains(" chunks, "), "no result:\n{out}");
}

#[test]
fn the_help_says_what_to_run_beside_it() {
    let mut sc = Scenario::new("fanout-help");
    for (label, args) in [
        ("help", vec!["--help"]),
        ("count", vec!["count", "--help"]),
        ("worker", vec!["worker", "--help"]),
    ] {
        let (code, out) = run(&mut sc, label, &args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Usage: broker-fanout"), "{out}");
    }
    let (code, out) = run(&mut sc, "no-file", &["count", "missing.txt"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("E: cannot read missing.txt"), "{out}");
}
