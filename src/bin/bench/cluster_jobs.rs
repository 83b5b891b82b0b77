//! The `broker-cluster` group (issue 18): the study broker as more than one
//! process.
//!
//! * Forwarding overhead: the bench's SBP/1 load client
//!   ([`broker_jobs::run_load`]) against a `broker` with its own echo
//!   workers, and against a `broker` with none that forwards every request
//!   to one peer broker holding the workers (`--peer … --default-policy
//!   forward`); each configuration in a fresh network namespace.
//! * Failover time of a Binary Star pair of brokers (`--pair primary` /
//!   `--pair backup`) with default timings: `broker-client` streams
//!   requests, the primary is killed with SIGKILL, and the client's own
//!   `first reply from … ms after the last one from …` line is the figure.
//! * The broker as ventilator and the client as sink: `broker-fanout count`
//!   over a generated 64 MiB text with 1, 2 and 4 `broker-fanout worker`s.
//!
//! All of it is the study's own protocol: no reference column.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker_jobs::{self, Load};
use crate::jobs::{expect_success, Sample};
use crate::procs::{last_lines, Namespace, Proc};

/// The client's broker: the only one, or the forwarding one (broker A).
const CLIENT_PORT: u16 = 5555;
const CLIENT_ENDPOINT: &str = "tcp://127.0.0.1:5555";
/// The peer broker holding the workers (broker B), and a pair's backup.
const PEER_PORT: u16 = 5565;
const PEER_ENDPOINT: &str = "tcp://127.0.0.1:5565";

/// Where the echo workers are, as seen from the client's broker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Route {
    /// On the client's broker itself.
    Local,
    /// On a peer broker the client's broker forwards to.
    ViaPeer,
}

/// `workers` echo workers and the load client keeping `window` requests in
/// flight, `requests` in all, first on the client's broker, then behind a
/// peer: req/s local and via the peer, with `window` 1 also the p50 round
/// trip (µs) of each, then via peer ÷ local (req/s) in %.
pub fn forwarding(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    workers: usize,
    requests: u64,
    window: usize,
    timeout: Duration,
) -> Result<Sample, String> {
    let local = forward_run(program, Route::Local, workers, requests, window, timeout)?;
    let peer = forward_run(program, Route::ViaPeer, workers, requests, window, timeout)?;
    let mut values = vec![local.rate(), peer.rate()];
    if window == 1 {
        values.extend([local.p50_us, peer.p50_us]);
    }
    values.push(100.0 * peer.rate() / local.rate());
    Ok(Sample {
        values,
        secondary: None,
    })
}

/// The arguments of the broker(s) of `route`: (the client's broker, the
/// peer holding the workers if any).
pub fn forward_brokers(route: Route) -> (Vec<String>, Option<Vec<String>>) {
    match route {
        Route::Local => (strings(&["--bind", "tcp://*:5555"]), None),
        Route::ViaPeer => (
            strings(&[
                "--bind",
                "tcp://*:5555",
                "--peer",
                PEER_ENDPOINT,
                "--default-policy",
                "forward",
            ]),
            Some(strings(&["--bind", "tcp://*:5565"])),
        ),
    }
}

/// One configuration in a fresh namespace: the workers' broker, the
/// workers, then (via a peer) the client's broker, which must have learnt
/// that its peer has workers, and the load client.
fn forward_run(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    route: Route,
    workers: usize,
    requests: u64,
    window: usize,
    timeout: Duration,
) -> Result<Load, String> {
    let deadline = Instant::now() + timeout;
    let ns = Namespace::new()?;
    let broker = program("broker")?;
    let (client_side, worker_side) = forward_brokers(route);
    let mut brokers: Vec<Proc> = Vec::new();
    let (worker_port, worker_endpoint) = match &worker_side {
        Some(args) => {
            brokers.push(ns.start("broker B (workers)", &broker, args, &[])?);
            (PEER_PORT, PEER_ENDPOINT)
        }
        None => {
            brokers.push(ns.start("broker", &broker, &client_side, &[])?);
            (CLIENT_PORT, CLIENT_ENDPOINT)
        }
    };
    ns.wait_for_port(worker_port, timeout)?;
    let worker = program("broker-worker")?;
    let args = strings(&["--connect", worker_endpoint, broker_jobs::SERVICE]);
    let mut pool: Vec<Proc> = Vec::new();
    for n in 0..workers {
        pool.push(ns.start(&format!("broker-worker-{n}"), &worker, &args, &[])?);
    }
    for proc in &mut pool {
        proc.wait_for_line("worker ready", deadline)?;
    }
    if worker_side.is_some() {
        let mut front = ns.start("broker A (forwarding)", &broker, &client_side, &[])?;
        // It asks its peers for their capacity about once a second.
        front.wait_for_line(&format!("peer {PEER_ENDPOINT} has workers for"), deadline)?;
        brokers.push(front);
    }
    broker_jobs::run_load(&ns, requests, window, None, timeout)
}

/// The pair's brokers: (primary, backup), each serving its own port and
/// listening to the other on the next one.
pub fn pair_args() -> [Vec<String>; 2] {
    [
        strings(&[
            "--bind",
            "tcp://*:5555",
            "--pair",
            "primary",
            "--pair-bind",
            "tcp://*:5556",
            "--pair-connect",
            "tcp://127.0.0.1:5566",
        ]),
        strings(&[
            "--bind",
            "tcp://*:5565",
            "--pair",
            "backup",
            "--pair-bind",
            "tcp://*:5566",
            "--pair-connect",
            "tcp://127.0.0.1:5556",
        ]),
    ]
}

/// Requests the failover client has answered before the primary is killed.
pub const FAILOVER_KILL_AFTER: u64 = 100;

/// A pair of brokers, 2 echo workers and a `broker-client` that know both,
/// `requests` requests 5 ms apart; SIGKILL of the primary after the
/// [`FAILOVER_KILL_AFTER`]th reply. The figure: the client's own failover
/// time, ms from the last reply from the primary to the first from the
/// backup. Every request must be answered 200.
pub fn failover(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    requests: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let deadline = Instant::now() + timeout;
    let ns = Namespace::new()?;
    let broker = program("broker")?;
    let [primary_args, backup_args] = pair_args();
    let mut primary = ns.start("broker primary", &broker, &primary_args, &[])?;
    let mut backup = ns.start("broker backup", &broker, &backup_args, &[])?;
    primary.wait_for_line("ready as active", deadline)?;
    backup.wait_for_line("in step with the active peer", deadline)?;
    let both = ["--connect", CLIENT_ENDPOINT, "--connect", PEER_ENDPOINT];
    let worker = program("broker-worker")?;
    let mut args = strings(&both);
    args.push(broker_jobs::SERVICE.to_string());
    let mut pool: Vec<Proc> = Vec::new();
    for n in 0..2 {
        pool.push(ns.start(&format!("broker-worker-{n}"), &worker, &args, &[])?);
    }
    for proc in &mut pool {
        proc.wait_for_line("worker ready", deadline)?;
    }
    let mut args = strings(&both);
    args.extend(strings(&[
        "--requests",
        &requests.to_string(),
        "--interval-ms",
        "5",
        "--retries",
        "5",
        broker_jobs::SERVICE,
    ]));
    let mut client = ns.start("broker-client", &program("broker-client")?, &args, &[])?;
    let kill_at = format!("{FAILOVER_KILL_AFTER} 200 ");
    loop {
        match client.next_line(deadline)? {
            Some((line, _)) if line.starts_with(&kill_at) => break,
            Some(_) => {}
            None => {
                return Err(format!(
                    "broker-client never printed {kill_at:?}: {}",
                    last_lines(client.output(), 3)
                ))
            }
        }
    }
    primary.kill();
    expect_success(&mut client, timeout)?;
    let output = client.output();
    let answered = output.lines().filter(|l| l.contains(" 200 ")).count() as u64;
    if answered != requests {
        return Err(format!(
            "{answered} of {requests} requests answered 200: {}",
            last_lines(output, 3)
        ));
    }
    match failover_line(output) {
        Some((to, ms, from)) if to == PEER_ENDPOINT && from == CLIENT_ENDPOINT => Ok(Sample {
            values: vec![ms],
            secondary: None,
        }),
        Some((to, _, from)) => Err(format!(
            "the client failed over from {from} to {to}, not from {CLIENT_ENDPOINT} to {PEER_ENDPOINT}"
        )),
        None => Err(format!(
            "broker-client printed no failover time: {}",
            last_lines(output, 3)
        )),
    }
}

/// `(new, ms, old)` of broker-client's `I: first reply from <new> <ms> ms
/// after the last one from <old>`.
pub fn failover_line(output: &str) -> Option<(String, f64, String)> {
    let line = output
        .lines()
        .rfind(|l| l.contains("first reply from ") && l.contains(" ms after the last one from "))?;
    let rest = line.split("first reply from ").nth(1)?;
    let (head, old) = rest.split_once(" ms after the last one from ")?;
    let (new, ms) = head.trim().rsplit_once(' ')?;
    Some((
        new.trim().to_string(),
        ms.parse().ok()?,
        old.trim().to_string(),
    ))
}

/// The fan-out's worker counts, in row order.
pub const FANOUT_WORKERS: [usize; 3] = [1, 2, 4];

/// `broker-fanout gen` writes a `bytes` text (seed 7) into a scratch
/// folder, then for each of [`FANOUT_WORKERS`] a fresh `broker`, that many
/// `broker-fanout worker`s and `broker-fanout count FILE` (1 MiB chunks,
/// credit 8): the MB/s it prints, for each.
pub fn fanout(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    bytes: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let tool = program("broker-fanout")?;
    let scratch = broker_jobs::scratch()?;
    let file = scratch.0.join("fanout.txt");
    let file_arg = file.display().to_string();
    let mut gen = Command::new(&tool);
    gen.args([
        "gen",
        &file_arg,
        "--bytes",
        &bytes.to_string(),
        "--seed",
        "7",
    ]);
    let mut gen = Proc::spawn("broker-fanout gen", gen)?;
    expect_success(&mut gen, timeout)?;
    let mut values = Vec::new();
    for workers in FANOUT_WORKERS {
        values.push(fanout_run(program, &tool, &file, bytes, workers, timeout)?);
    }
    Ok(Sample {
        values,
        secondary: None,
    })
}

/// One count of `file` through a fresh broker and `workers` workers: MB/s.
fn fanout_run(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    tool: &Path,
    file: &Path,
    bytes: u64,
    workers: usize,
    timeout: Duration,
) -> Result<f64, String> {
    let deadline = Instant::now() + timeout;
    let ns = Namespace::new()?;
    let _broker = ns.start("broker", &program("broker")?, &[], &[])?;
    ns.wait_for_port(CLIENT_PORT, timeout)?;
    let args = strings(&["worker", "--connect", CLIENT_ENDPOINT]);
    let mut pool: Vec<Proc> = Vec::new();
    for n in 0..workers {
        pool.push(ns.start(&format!("broker-fanout worker {n}"), tool, &args, &[])?);
    }
    for proc in &mut pool {
        proc.wait_for_line("worker ready", deadline)?;
    }
    let args = vec![
        "count".to_string(),
        "--connect".to_string(),
        CLIENT_ENDPOINT.to_string(),
        file.display().to_string(),
    ];
    let mut count = ns.start("broker-fanout count", tool, &args, &[])?;
    expect_success(&mut count, timeout)?;
    let output = count.output();
    let figures =
        Count::parse(output).ok_or_else(|| format!("no count line: {}", last_lines(output, 3)))?;
    if figures.bytes != bytes || figures.mb_per_s <= 0.0 {
        return Err(format!(
            "broker-fanout count: unexpected figures for {bytes} bytes: {figures:?}"
        ));
    }
    Ok(figures.mb_per_s)
}

/// What `broker-fanout count` printed.
#[derive(Debug, PartialEq)]
pub struct Count {
    pub chunks: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
}

impl Count {
    /// The figures of `I: <chunks> chunks, <bytes> bytes, … in <secs> s
    /// (<MB/s> MB/s)`.
    pub fn parse(output: &str) -> Option<Count> {
        let line = output
            .lines()
            .rfind(|l| l.starts_with("I: ") && l.contains(" chunks, ") && l.ends_with(" MB/s)"))?;
        let words: Vec<&str> = line["I: ".len()..].split_whitespace().collect();
        let before = |name: &str| -> Option<&str> {
            let at = words.iter().position(|w| *w == name)?;
            words.get(at.checked_sub(1)?).copied()
        };
        let after = |name: &str| -> Option<&str> {
            let at = words.iter().rposition(|w| *w == name)?;
            words.get(at + 1).copied()
        };
        Some(Count {
            chunks: before("chunks,")?.parse().ok()?,
            bytes: before("bytes,")?.parse().ok()?,
            seconds: after("in")?.parse().ok()?,
            mb_per_s: before("MB/s)")?.strip_prefix('(')?.parse().ok()?,
        })
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failover_line_is_read() {
        let output = "99 200 hello\nW: broker tcp://127.0.0.1:5555 silent for 6000 ms, failing \
                      over to tcp://127.0.0.1:5565\nI: first reply from tcp://127.0.0.1:5565 \
                      8498 ms after the last one from tcp://127.0.0.1:5555\n101 200 hello\n";
        assert_eq!(
            failover_line(output),
            Some((
                PEER_ENDPOINT.to_string(),
                8498.0,
                CLIENT_ENDPOINT.to_string()
            ))
        );
        assert_eq!(failover_line("1 200 hello\n2 200 hello\n"), None);
        assert_eq!(
            failover_line("I: first reply from tcp://x soon ms after the last one from tcp://y"),
            None
        );
    }

    #[test]
    fn the_count_line_is_read() {
        let output = "I: 64 chunks, 67108864 bytes, 12233950 words, 23006 distinct, 1222621 \
                      lines in 1.26 s (53.4 MB/s)\n  812345 the\n  400000 of\n";
        assert_eq!(
            Count::parse(output),
            Some(Count {
                chunks: 64,
                bytes: 67_108_864,
                seconds: 1.26,
                mb_per_s: 53.4
            })
        );
        assert_eq!(
            Count::parse("I: worker ready for wordfreq in default\n"),
            None
        );
        assert_eq!(Count::parse("E: no workers\n"), None);
        assert_eq!(
            Count::parse("I: 64 chunks, many bytes, 1 words in 1 s (2 MB/s)"),
            None
        );
    }

    #[test]
    fn the_brokers_are_set_up_by_route() {
        let (client, peer) = forward_brokers(Route::Local);
        assert_eq!(client, ["--bind", "tcp://*:5555"]);
        assert_eq!(peer, None);
        let (client, peer) = forward_brokers(Route::ViaPeer);
        assert_eq!(
            client,
            [
                "--bind",
                "tcp://*:5555",
                "--peer",
                "tcp://127.0.0.1:5565",
                "--default-policy",
                "forward"
            ]
        );
        assert_eq!(peer.unwrap(), ["--bind", "tcp://*:5565"]);
        let [primary, backup] = pair_args();
        assert!(primary.windows(2).any(|w| w == ["--pair", "primary"]));
        assert!(backup.windows(2).any(|w| w == ["--pair", "backup"]));
        // Each listens where the other connects.
        assert!(primary.contains(&"tcp://127.0.0.1:5566".to_string()));
        assert!(backup.contains(&"tcp://*:5566".to_string()));
        assert!(backup.contains(&"tcp://127.0.0.1:5556".to_string()));
    }
}
