//! The runs of the later chapters' groups: Freelance (§34–§35), Binary Star
//! (§31), Clone (§44), file transfer (§47) and the study's pub-sub tools,
//! each one run in a fresh private network namespace, and the parsers for
//! what their programs print.
//!
//! As in [`crate::jobs`], the same run works with our programs or with a
//! reference folder's; where the guide's client cannot produce the figure
//! (Clone), the bench's own clients ([`crate::internal`]) drive the server
//! on both sides.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::jobs::{expect_success, Sample};
use crate::procs::{last_lines, Namespace, Proc};

/// The freelance servers' ports (the guide's).
const FREELANCE_PORTS: [u16; 3] = [5555, 5556, 5557];
/// Binary Star's client ports: primary and backup.
const BSTAR_PRIMARY: u16 = 5001;
const BSTAR_BACKUP: u16 = 5002;
/// clonesrv5's snapshot and collector ports.
const CLONE_SNAPSHOT_PORT: u16 = 5556;
const CLONE_COLLECTOR_PORT: u16 = 5558;
/// tspub's default endpoint is tcp://127.0.0.1:5600.
const TSPUB_PORT: u16 = 5600;

pub fn bench_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the bench itself: {e}"))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

// ---------------------------------------------------------------- freelance

/// `client` (`flclient2` or `flclient3`) against `servers` servers
/// (`flserver2` resp. `flserver3`) on ports 5555…: the average round trip
/// in µs that the client prints.
pub fn freelance(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    client: &str,
    servers: usize,
    requests: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let server = if client == "flclient2" {
        "flserver2"
    } else {
        "flserver3"
    };
    let ns = Namespace::new()?;
    let mut pool = Vec::new();
    let mut endpoints = Vec::new();
    for &port in &FREELANCE_PORTS[..servers] {
        // flserver2 binds what it is given; flserver3 takes its public
        // endpoint (its identity) and binds tcp://*:port itself.
        let endpoint = format!("tcp://localhost:{port}");
        let arg = if server == "flserver2" {
            format!("tcp://*:{port}")
        } else {
            endpoint.clone()
        };
        pool.push(ns.start(server, &program(server)?, &[arg], &[])?);
        ns.wait_for_port(port, timeout)?;
        endpoints.push(endpoint);
    }
    let env = [("ZGUIDE_REQUESTS", requests.to_string())];
    let mut proc = ns.start(client, &program(client)?, &endpoints, &env)?;
    expect_success(&mut proc, timeout)?;
    let usec = round_trip_usec(proc.output()).ok_or_else(|| {
        format!(
            "{client} printed no average: {}",
            last_lines(proc.output(), 3)
        )
    })?;
    Ok(Sample {
        values: vec![usec],
        secondary: None,
    })
}

/// The figure of `Average round trip cost: N usec`.
pub fn round_trip_usec(output: &str) -> Option<f64> {
    output
        .lines()
        .filter_map(|l| l.split("Average round trip cost:").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
}

// -------------------------------------------------------------- binary star

/// How long after a reply the primary is killed: the middle of the client's
/// one-second pause between requests, so the figure is the mean over a kill
/// at a random moment.
pub const BSTAR_KILL_AFTER_REPLY: Duration = Duration::from_millis(500);

/// Binary Star failover: `bstarsrv -p`, `bstarsrv -b` and `bstarcli`; after
/// two replies, SIGKILL the primary [`BSTAR_KILL_AFTER_REPLY`] after a
/// reply, and time (in ms) from the kill to the client's first reply from
/// the backup, as the bench reads the client's lines.
pub fn binarystar(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    timeout: Duration,
) -> Result<Sample, String> {
    let deadline = Instant::now() + timeout;
    let ns = Namespace::new()?;
    let server = program("bstarsrv")?;
    let mut primary = ns.start("bstarsrv -p", &server, &strings(&["-p"]), &[])?;
    let _backup = ns.start("bstarsrv -b", &server, &strings(&["-b"]), &[])?;
    ns.wait_for_port(BSTAR_PRIMARY, timeout)?;
    ns.wait_for_port(BSTAR_BACKUP, timeout)?;
    // stdbuf: a C client's stdout to a pipe is block-buffered, and the
    // timing needs each line as it is printed (Rust's is line-buffered).
    let client = program("bstarcli")?;
    let cmd = match Path::new("/usr/bin/stdbuf") {
        stdbuf if stdbuf.is_file() => {
            ns.command(stdbuf, &["-oL".to_string(), client.display().to_string()])
        }
        _ => ns.command(&client, &[]),
    };
    let mut client = Proc::spawn("bstarcli", cmd)?;
    client.wait_for_line("server replied OK", deadline)?;
    client.wait_for_line("server replied OK", deadline)?;
    std::thread::sleep(BSTAR_KILL_AFTER_REPLY);
    let killed = primary.kill();
    let mut on_backup = false;
    while let Some((line, at)) = client.next_line(deadline)? {
        if line.contains(&format!(":{BSTAR_BACKUP}")) {
            on_backup = true;
        }
        if on_backup && replied_ok(&line).is_some() {
            return Ok(Sample {
                values: vec![at.saturating_duration_since(killed).as_secs_f64() * 1000.0],
                secondary: None,
            });
        }
    }
    Err(format!(
        "no reply from the backup within {timeout:?}: {}",
        last_lines(client.output(), 3)
    ))
}

/// The sequence number of `I: server replied OK (n)`.
pub fn replied_ok(line: &str) -> Option<u64> {
    line.split("server replied OK (")
        .nth(1)?
        .split(')')
        .next()?
        .trim()
        .parse()
        .ok()
}

// -------------------------------------------------------------------- clone

/// Starts the side's `clonesrv5` in `ns` and waits for its ports.
fn start_clonesrv5(
    ns: &Namespace,
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    timeout: Duration,
) -> Result<Proc, String> {
    let server = ns.start("clonesrv5", &program("clonesrv5")?, &[], &[])?;
    ns.wait_for_port(CLONE_SNAPSHOT_PORT, timeout)?;
    ns.wait_for_port(CLONE_COLLECTOR_PORT, timeout)?;
    Ok(server)
}

/// Update throughput through `clonesrv5`: `publishers` clients send
/// `updates` in all, `subscribers` clients receive them. The figure is the
/// updates received by all subscribers together ÷ the time from the first
/// send to the last receipt; the secondary is the share of the updates that
/// every subscriber should have had that they received (%).
pub fn clone_updates(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    publishers: usize,
    subscribers: usize,
    updates: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let ns = Namespace::new()?;
    let _server = start_clonesrv5(&ns, program, timeout)?;
    let args = strings(&[
        "--internal-clone-load",
        &publishers.to_string(),
        &subscribers.to_string(),
        &updates.to_string(),
        &timeout.as_secs().to_string(),
    ]);
    let mut load = Proc::spawn("clone load", ns.command(&bench_exe()?, &args))?;
    expect_success(&mut load, timeout + Duration::from_secs(10))?;
    let figures = CloneLoad::parse(load.output())
        .ok_or_else(|| format!("no clone-load line: {}", last_lines(load.output(), 3)))?;
    if figures.sent != updates || figures.seconds <= 0.0 {
        return Err(format!("clone load: unexpected figures: {figures:?}"));
    }
    Ok(Sample {
        values: vec![figures.received as f64 / figures.seconds],
        secondary: Some(
            100.0 * figures.received as f64 / (figures.sent * figures.subscribers) as f64,
        ),
    })
}

/// What `--internal-clone-load` prints.
#[derive(Debug, PartialEq)]
pub struct CloneLoad {
    pub sent: u64,
    pub received: u64,
    pub subscribers: u64,
    pub seconds: f64,
}

impl CloneLoad {
    pub fn parse(output: &str) -> Option<CloneLoad> {
        let f = fields(output, "clone-load:")?;
        Some(CloneLoad {
            sent: f.get("sent")?.parse().ok()?,
            received: f.get("received")?.parse().ok()?,
            subscribers: f.get("subscribers")?.parse().ok()?,
            seconds: f.get("seconds")?.parse().ok()?,
        })
    }
}

/// Snapshot time: `clonesrv5` is filled with `keys` keys, then a new client
/// asks for the snapshot; ms from its connect to `KTHXBAI`.
pub fn clone_snapshot(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    keys: usize,
    timeout: Duration,
) -> Result<Sample, String> {
    let ns = Namespace::new()?;
    let _server = start_clonesrv5(&ns, program, timeout)?;
    let args = strings(&[
        "--internal-clone-snapshot",
        &keys.to_string(),
        &timeout.as_secs().to_string(),
    ]);
    let mut client = Proc::spawn("clone snapshot", ns.command(&bench_exe()?, &args))?;
    expect_success(&mut client, timeout + Duration::from_secs(10))?;
    let (got_keys, entries, ms) = snapshot_line(client.output())
        .ok_or_else(|| format!("no clone-snapshot line: {}", last_lines(client.output(), 3)))?;
    if got_keys != keys as u64 || entries != got_keys {
        return Err(format!(
            "the snapshot held {entries} entries of {got_keys} keys"
        ));
    }
    Ok(Sample {
        values: vec![ms],
        secondary: None,
    })
}

/// (keys, entries, ms) of `clone-snapshot: keys K entries E ms M`.
pub fn snapshot_line(output: &str) -> Option<(u64, u64, f64)> {
    let f = fields(output, "clone-snapshot:")?;
    Some((
        f.get("keys")?.parse().ok()?,
        f.get("entries")?.parse().ok()?,
        f.get("ms")?.parse().ok()?,
    ))
}

/// The `name value` pairs after `prefix` on the last line that starts with
/// it.
pub fn fields<'a>(
    output: &'a str,
    prefix: &str,
) -> Option<std::collections::HashMap<&'a str, &'a str>> {
    let line = output.lines().rfind(|l| l.starts_with(prefix))?;
    let words: Vec<&str> = line[prefix.len()..].split_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return None;
    }
    Some(words.chunks(2).map(|pair| (pair[0], pair[1])).collect())
}

// ------------------------------------------------------------------- fileio

/// The file-transfer programs, in the order of their rows.
pub const FILEIO_PROGRAMS: [&str; 3] = ["fileio1", "fileio2", "fileio3"];

/// `fileio1`, `fileio2`, `fileio3` and the bench's raw TCP copy, each on
/// `dir/testdata` (`bytes` long) in its own namespace: MB/s (10^6 bytes) of
/// each from its process's wall time, and fileio3 ÷ raw in %.
pub fn fileio(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    dir: &Path,
    bytes: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let mut values = Vec::new();
    for name in FILEIO_PROGRAMS {
        values.push(fileio_rate(program, name, dir, bytes, timeout)?);
    }
    let raw_rate = raw_copy_rate(dir, bytes, timeout)?;
    values.push(raw_rate);
    values.push(100.0 * values[2] / raw_rate);
    Ok(Sample {
        values,
        secondary: None,
    })
}

/// One run of the fileio program `name` in `dir` (on `dir/testdata`,
/// `bytes` long) in its own namespace: MB/s (10^6 bytes) from its wall time.
pub fn fileio_rate(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    name: &str,
    dir: &Path,
    bytes: u64,
    timeout: Duration,
) -> Result<f64, String> {
    let ns = Namespace::new()?;
    let mut cmd = ns.command(&program(name)?, &[]);
    cmd.current_dir(dir);
    let mut proc = Proc::spawn(name, cmd)?;
    expect_success(&mut proc, timeout)?;
    let (_, received) = chunks_received(proc.output())
        .ok_or_else(|| format!("{name} printed no count: {}", last_lines(proc.output(), 3)))?;
    if received != bytes {
        return Err(format!("{name} received {received} of {bytes} bytes"));
    }
    megabytes_per_sec(bytes, &proc)
}

/// One raw TCP copy of `dir/testdata` (`bytes` long) in its own namespace
/// (`bench --internal-raw-copy`): MB/s from its wall time.
pub fn raw_copy_rate(dir: &Path, bytes: u64, timeout: Duration) -> Result<f64, String> {
    raw_copy_rate_to(dir, bytes, timeout, None)
}

/// [`raw_copy_rate`], the receiver writing its copy to `dest` (and syncing
/// it) when given.
pub fn raw_copy_rate_to(
    dir: &Path,
    bytes: u64,
    timeout: Duration,
    dest: Option<&Path>,
) -> Result<f64, String> {
    let ns = Namespace::new()?;
    let path = dir.join(crate::FILEIO_NAME).display().to_string();
    let mut args = vec!["--internal-raw-copy".to_string(), path];
    args.extend(dest.map(|d| d.display().to_string()));
    let mut raw = Proc::spawn("raw copy", ns.command(&bench_exe()?, &args))?;
    expect_success(&mut raw, timeout)?;
    let copied = raw_copy_bytes(raw.output())
        .ok_or_else(|| format!("no raw-copy line: {}", last_lines(raw.output(), 3)))?;
    if copied != bytes {
        return Err(format!("the raw copy moved {copied} of {bytes} bytes"));
    }
    megabytes_per_sec(bytes, &raw)
}

fn megabytes_per_sec(bytes: u64, proc: &Proc) -> Result<f64, String> {
    match proc.wall_secs() {
        Some(secs) if secs > 0.0 => Ok(bytes as f64 / 1e6 / secs),
        _ => Err("no wall time".to_string()),
    }
}

/// (chunks, bytes) of `N chunks received, B bytes`.
pub fn chunks_received(output: &str) -> Option<(u64, u64)> {
    let line = output.lines().rfind(|l| l.contains("chunks received,"))?;
    let mut words = line.split_whitespace();
    let chunks = words.next()?.parse().ok()?;
    let bytes = words.nth(2)?.parse().ok()?;
    Some((chunks, bytes))
}

/// The bytes of `raw-copy: bytes B seconds T`.
pub fn raw_copy_bytes(output: &str) -> Option<u64> {
    fields(output, "raw-copy:")?.get("bytes")?.parse().ok()
}

/// Makes `dir/testdata` of `bytes` bytes with our `mktestdata`.
pub fn make_testdata(mktestdata: &Path, dir: &Path, bytes: u64) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(crate::FILEIO_NAME);
    let mut cmd = Command::new(mktestdata);
    cmd.arg(bytes.to_string()).arg(&path);
    let mut proc = Proc::spawn("mktestdata", cmd)?;
    expect_success(&mut proc, Duration::from_secs(600))?;
    match std::fs::metadata(&path) {
        Ok(m) if m.len() == bytes => Ok(()),
        _ => Err(format!("mktestdata did not make {}", path.display())),
    }
}

// ------------------------------------------------------------------- pubsub

/// One `tspub` → `tssub` run at `rate` msg/s of 64 B for `seconds`.
struct PubsubRun {
    sent: u64,
    sent_rate: f64,
    total: TssubTotal,
}

fn pubsub_run(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    rate: u64,
    seconds: f64,
    timeout: Duration,
) -> Result<PubsubRun, String> {
    let ns = Namespace::new()?;
    let args = strings(&[
        "--rate",
        &rate.to_string(),
        "--size",
        "64",
        "--duration-s",
        &seconds.to_string(),
        "--end-wait-ms",
        "300",
    ]);
    let mut publisher = ns.start("tspub", &program("tspub")?, &args, &[])?;
    ns.wait_for_port(TSPUB_PORT, timeout)?;
    let mut subscriber = ns.start("tssub", &program("tssub")?, &strings(&["--json"]), &[])?;
    expect_success(&mut publisher, timeout)?;
    expect_success(&mut subscriber, timeout)?;
    let (sent, sent_rate) = tspub_sent(publisher.output()).ok_or_else(|| {
        format!(
            "tspub printed no count: {}",
            last_lines(publisher.output(), 2)
        )
    })?;
    let total = TssubTotal::parse(subscriber.output()).ok_or_else(|| {
        format!(
            "tssub printed no total: {}",
            last_lines(subscriber.output(), 2)
        )
    })?;
    Ok(PubsubRun {
        sent,
        sent_rate,
        total,
    })
}

/// Latency p50, p99, p99.9 (µs) at a fixed rate; the secondary is the
/// number of messages lost.
pub fn pubsub_latency(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    rate: u64,
    seconds: f64,
    timeout: Duration,
) -> Result<Sample, String> {
    let run = pubsub_run(program, rate, seconds, timeout)?;
    if run.total.messages == 0 {
        return Err("tssub received nothing".to_string());
    }
    let lost = run
        .sent
        .saturating_sub(run.total.messages)
        .max(run.total.lost);
    Ok(Sample {
        values: vec![run.total.p50, run.total.p99, run.total.p99_9],
        secondary: Some(lost as f64),
    })
}

/// The highest rate at which every message sent arrived (tssub's count
/// equals tspub's, no gaps) and tspub kept up (sent at ≥ 95 % of the
/// rate): doubling from `start`, then `bisections` halvings of the gap.
/// The secondary is the rate tspub reached in that step.
pub fn pubsub_max_rate(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    start: u64,
    bisections: u32,
    seconds: f64,
    timeout: Duration,
) -> Result<Sample, String> {
    let mut search = RateSearch::new(start, bisections);
    let mut reached = 0.0;
    while let Some(rate) = search.next() {
        let run = pubsub_run(program, rate, seconds, timeout)?;
        let lossless = run.total.messages == run.sent
            && run.total.lost == 0
            && run.total.received_by_publishers == run.sent;
        let kept_up = run.sent_rate >= 0.95 * rate as f64;
        let ok = lossless && kept_up;
        if ok {
            reached = run.sent_rate;
        }
        search.record(rate, ok);
    }
    match search.best() {
        Some(rate) => Ok(Sample {
            values: vec![rate as f64],
            secondary: Some(reached),
        }),
        None => Err(format!("not lossless even at {start} msg/s")),
    }
}

/// The search for the highest good rate: double until a step fails, then
/// bisect between the best good and the lowest bad rate.
#[derive(Debug)]
pub struct RateSearch {
    start: u64,
    good: Option<u64>,
    bad: Option<u64>,
    bisections_left: u32,
    steps: u32,
}

/// Doubling stops here (about 100 M msg/s): a bound on the run.
const RATE_CAP: u64 = 100_000_000;

impl RateSearch {
    pub fn new(start: u64, bisections: u32) -> RateSearch {
        RateSearch {
            start: start.max(1),
            good: None,
            bad: None,
            bisections_left: bisections,
            steps: 0,
        }
    }

    /// The next rate to try, or `None` when the search is over.
    pub fn next(&self) -> Option<u64> {
        if self.steps >= 40 {
            return None;
        }
        match (self.good, self.bad) {
            (None, None) => Some(self.start),
            (Some(good), None) => (good < RATE_CAP).then_some(good * 2),
            (good, Some(bad)) => {
                if self.bisections_left == 0 {
                    return None;
                }
                let low = good.unwrap_or(0);
                let mid = low + (bad - low) / 2;
                (mid > low && mid < bad).then_some(mid)
            }
        }
    }

    pub fn record(&mut self, rate: u64, ok: bool) {
        self.steps += 1;
        if self.bad.is_some() {
            self.bisections_left = self.bisections_left.saturating_sub(1);
        }
        if ok {
            self.good = Some(self.good.map_or(rate, |g| g.max(rate)));
        } else {
            self.bad = Some(self.bad.map_or(rate, |b| b.min(rate)));
        }
    }

    pub fn best(&self) -> Option<u64> {
        self.good
    }
}

/// The sent count and rate of `tspub NAME: sent N messages in X s (R msg/s)`.
pub fn tspub_sent(output: &str) -> Option<(u64, f64)> {
    let line = output.lines().rfind(|l| l.contains(": sent "))?;
    let rest = line.split(": sent ").nth(1)?;
    let sent = rest.split_whitespace().next()?.parse().ok()?;
    let rate = rest
        .split('(')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((sent, rate))
}

/// The figures of tssub's last `--json` report of kind `total`.
#[derive(Debug, PartialEq)]
pub struct TssubTotal {
    pub messages: u64,
    pub lost: u64,
    pub p50: f64,
    pub p99: f64,
    pub p99_9: f64,
    /// The sum of the per-publisher `received` counts.
    pub received_by_publishers: u64,
}

impl TssubTotal {
    pub fn parse(output: &str) -> Option<TssubTotal> {
        let total = output
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .rfind(|v| v["kind"] == "total")?;
        let latency = &total["latency_us"];
        Some(TssubTotal {
            messages: total["messages"].as_u64()?,
            lost: total["lost"].as_u64()?,
            p50: latency["p50"].as_f64()?,
            p99: latency["p99"].as_f64()?,
            p99_9: latency["p99.9"].as_f64()?,
            received_by_publishers: total["publishers"]
                .as_array()?
                .iter()
                .map(|p| p["received"].as_u64())
                .sum::<Option<u64>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freelance_and_bstar_lines_are_read() {
        assert_eq!(
            round_trip_usec("I: x\nAverage round trip cost: 57 usec\n"),
            Some(57.0)
        );
        assert_eq!(
            round_trip_usec("E: name service not available, aborting\n"),
            None
        );
        assert_eq!(replied_ok("I: server replied OK (12)"), Some(12));
        assert_eq!(replied_ok("W: no response from server, failing over"), None);
        assert_eq!(replied_ok("I: server replied OK (x)"), None);
    }

    #[test]
    fn clone_lines_are_read() {
        let out = "noise\nclone-load: sent 1000 received 9990 subscribers 10 seconds 0.5\n";
        assert_eq!(
            CloneLoad::parse(out),
            Some(CloneLoad {
                sent: 1000,
                received: 9990,
                subscribers: 10,
                seconds: 0.5
            })
        );
        assert_eq!(CloneLoad::parse("clone-load: sent 1000 received\n"), None);
        assert_eq!(CloneLoad::parse("E: failed\n"), None);
        assert_eq!(
            snapshot_line("clone-snapshot: keys 100 entries 100 ms 12.5\n"),
            Some((100, 100, 12.5))
        );
        assert_eq!(
            snapshot_line("clone-snapshot: keys x entries 1 ms 1\n"),
            None
        );
    }

    #[test]
    fn fileio_lines_are_read() {
        assert_eq!(
            chunks_received("4295 chunks received, 1073741824 bytes\n"),
            Some((4295, 1073741824))
        );
        assert_eq!(chunks_received("E: cannot open testdata\n"), None);
        assert_eq!(
            raw_copy_bytes("raw-copy: bytes 16777216 seconds 0.02\n"),
            Some(16777216)
        );
        assert_eq!(raw_copy_bytes("E: bind: no\n"), None);
    }

    #[test]
    fn pubsub_lines_are_read() {
        assert_eq!(
            tspub_sent("tspub a on tcp://x: 10 msg/s\ntspub a: sent 5000 messages in 0.50 s (9998 msg/s)\n"),
            Some((5000, 9998.0))
        );
        assert_eq!(tspub_sent("waiting\n"), None);
        let out = concat!(
            "{\"kind\":\"interval\",\"seconds\":1.0,\"messages\":5,\"rate\":5.0,\"latency_us\":{\"p50\":1.0,\"p90\":1.0,\"p99\":1.0,\"p99.9\":1.0,\"max\":1.0},\"lost\":0,\"malformed\":0,\"untracked\":0,\"publishers\":[]}\n",
            "{\"kind\":\"total\",\"seconds\":1.0,\"messages\":5000,\"rate\":5000.0,\"latency_us\":{\"p50\":40.5,\"p90\":50.0,\"p99\":80.25,\"p99.9\":120.0,\"max\":300.0},\"lost\":2,\"malformed\":0,\"untracked\":0,\"publishers\":[{\"name\":\"a\",\"received\":4998,\"lost\":2,\"sent\":5000,\"out_of_order\":0,\"ended\":true}]}\n"
        );
        assert_eq!(
            TssubTotal::parse(out),
            Some(TssubTotal {
                messages: 5000,
                lost: 2,
                p50: 40.5,
                p99: 80.25,
                p99_9: 120.0,
                received_by_publishers: 4998,
            })
        );
        assert_eq!(
            TssubTotal::parse("{\"kind\":\"interval\"}\nnot json\n"),
            None
        );
    }

    #[test]
    fn the_rate_search_doubles_then_bisects() {
        let mut search = RateSearch::new(50_000, 2);
        let limit = 300_000;
        let mut tried = Vec::new();
        while let Some(rate) = search.next() {
            tried.push(rate);
            search.record(rate, rate <= limit);
        }
        assert_eq!(
            tried,
            vec![50_000, 100_000, 200_000, 400_000, 300_000, 350_000]
        );
        assert_eq!(search.best(), Some(300_000));

        let mut search = RateSearch::new(50_000, 1);
        let first = search.next();
        search.record(50_000, false);
        assert_eq!(first, Some(50_000));
        assert_eq!(search.next(), Some(25_000));
        search.record(25_000, false);
        assert_eq!(search.next(), None);
        assert_eq!(search.best(), None);
    }
}
