//! `bench`: the project's benchmark suite (`make bench`), new code rather
//! than a guide program.
//!
//! On loopback, in private network namespaces, it measures
//! * libzmq's perf pairs ported to Rust (`local_thr`/`remote_thr`,
//!   `local_lat`/`remote_lat` over TCP, `inproc_thr`, `inproc_lat`) over a
//!   sweep of message sizes, 8 B … 64 KiB (a short sweep by default, every
//!   power of two with `--full`);
//! * the guide's `tripping` (§28): synchronous and asynchronous calls/s;
//! * Majordomo (§27–§28): `mdclient` and `mdclient2` through `mdbroker` with
//!   1 and with 10 `mdworker`s: requests/s and wall time;
//! * Freelance (§34–§35): `flclient2` and `flclient3` against 1 and 3
//!   servers: the average round trip in µs;
//! * Binary Star (§31): ms from SIGKILL of the active `bstarsrv` to
//!   `bstarcli`'s first reply from the backup;
//! * Clone (§44): updates/s through `clonesrv5` from 1 and from 10
//!   publishing clients to 10 subscribers, and the time for a new client to
//!   get a snapshot of 100,000 keys (the clients are the bench's own, speaking
//!   kvmsg: `clonecli5` sends one update a second);
//! * file transfer (§47): `fileio1`…`fileio3` in MB/s on a `mktestdata`
//!   file (1 GiB, `--fileio-mib`), beside a raw TCP copy of the same file;
//! * the study's file-transfer tool (`fileserver` + `fileclient get`) on the
//!   same file and on as much English-like text, zstd and CURVE off and on,
//!   beside the raw copy and `fileio3`;
//! * the study's pub-sub (`tspub`/`tssub`): latency p50/p99/p99.9 at 10k and
//!   100k msg/s, and the highest lossless rate;
//! * the study's `broker`: MDP requests/s (`mdclient2` with 10 workers,
//!   `mdclient` with 1) against the reference's `mdbroker` and against our
//!   own, and SBP/1 requests/s with the bench's own client, async (10
//!   workers) and sync (1 worker, p50/p99 round trip), with persistence
//!   (`--store`) and CURVE on and off;
//! * the study's `broker` as a cluster (`broker-cluster`): SBP/1 req/s
//!   straight to a broker and through a peer broker it forwards to, the
//!   failover time of a `--pair` of brokers, and `broker-fanout` (the broker
//!   as ventilator, the client as sink) in MB/s with 1, 2 and 4 workers.
//!
//! It prints a table and writes the same figures to `results.json` and
//! `results.csv`, with a plot of the size sweep in `sweep.svg`, in
//! `target/bench/` (or `--out`). With `ZGUIDE_REFERENCE_BIN=<dir>` naming a
//! folder of your own C/C++ builds of the same programs (libzmq's `perf/`
//! tools, the guide's C++ `tripping`, `mdbroker`, …), every row also runs the
//! reference, interleaved with ours (ours, reference, ours, reference …),
//! and reports medians and the ratio. A program missing from either side
//! skips its row with a note. See `zguide/benchmarks.md`.

mod broker_jobs;
mod cluster_jobs;
mod filetransfer_jobs;
mod guide_jobs;
mod internal;
mod jobs;
mod p2p_jobs;
mod procs;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use jobs::{Job, Side};
use report::{Better, Row};
use zguide::interrupt;

const HELP: &str = "\
bench: zguide-rs benchmark suite (libzmq perf tools, tripping, Majordomo, Freelance,
Binary Star, Clone, file transfer, pub-sub, the study's broker and its cluster)

USAGE: bench [OPTIONS]

OPTIONS:
  --quick             one size (64 B), small counts, one run per row: a smoke test
  --full              the full size sweep: every power of two from 8 B to 64 KiB
  --sizes LIST        message sizes in bytes, comma-separated (overrides the sweep)
  --count N           messages per throughput run (default: scaled by size)
  --roundtrips N      round trips per latency run (default: 10000, 2000 above 16 KiB)
  --repeat N          runs per row, medians reported (default 3; with a reference the
                      runs alternate ours, reference, ours, reference ...)
  --only LIST         groups to run, comma-separated (default: all):
                        tcp, inproc    libzmq's perf tools over a size sweep
                        tripping       sync and async calls/s (tripping)
                        majordomo      mdclient/mdclient2 via mdbroker, 1 and 10 workers
                        freelance      flclient2/flclient3 round trip, 1 and 3 servers
                        binarystar     failover ms after SIGKILL of the primary bstarsrv
                        clone          clonesrv5 updates/s (1 and 10 clients) and the
                                       time of a 100,000-key snapshot
                        fileio         fileio1..3 MB/s beside a raw TCP copy
                        filetransfer   fileserver + fileclient get MB/s on the fileio file
                                       (random: zstd off, zstd on, CURVE + zstd off) and
                                       on as much text (zstd on), beside fileio3 and the
                                       raw TCP copy (writing nothing, and writing its copy);
                                       fileclient / raw and CURVE cost in %
                        pubsub         tspub/tssub latency at 10k and 100k msg/s and
                                       the highest lossless rate
                        broker         the study's broker: MDP req/s beside mdbroker
                                       (mdclient2 + 10 workers, mdclient + 1 worker);
                                       SBP/1 req/s async (10 workers) and sync (1 worker,
                                       p50/p99), persistence and CURVE on and off
                        broker-cluster the study's broker as a cluster: SBP/1 req/s local
                                       and through one peer (sync: 1 worker, p50; async:
                                       4 workers, 100 in flight), a broker pair's
                                       failover ms (run once, ~12 s), broker-fanout
                                       MB/s with 1, 2 and 4 workers (64 MiB text)
                        p2p            the study's ZRE node: time to a full mesh of 10,
                                       25 and 50 nodes, SHOUT fan-out p50/p99 in a group
                                       of 25, a replicated map's convergence (10 nodes)
  --requests N        Majordomo requests per client run (default 100000; the broker
                      group's async runs take N, its sync runs N/10; --quick: 2000/500;
                      broker-cluster's async runs N/10, its sync runs N/50;
                      --quick: 1000/200)
  --fileio-mib N      size of the fileio and filetransfer test files in MiB
                      (default 1024; --quick: 16)
  --timeout SECS      limit for one program run (default 120)
  --out DIR           where results.json, results.csv and sweep.svg go
                      (default: target/bench next to the build)
  -h, --help          this text

ENVIRONMENT:
  ZGUIDE_REFERENCE_BIN=DIR   a folder of your own C/C++ builds of the same programs
                             (local_thr, remote_thr, local_lat, remote_lat, inproc_thr,
                             inproc_lat, tripping, mdbroker, mdworker, mdclient,
                             mdclient2, flclient2, flserver2, bstarsrv, bstarcli,
                             clonesrv5, fileio1, fileio2, fileio3); each row then also
                             runs them and prints the ratio (flclient3/flserver3,
                             tspub/tssub, the broker group's SBP/1 rows and the
                             broker-cluster group have no reference column; its MDP rows run the reference's
                             mdbroker with our clients and workers).
                             Nothing of the reference is built or shipped by zguide-rs.
";

const DEFAULT_SIZES: [usize; 5] = [8, 64, 512, 4096, 65536];

/// Every group `--only` knows, in table order.
const GROUPS: [&str; 13] = [
    "tcp",
    "inproc",
    "tripping",
    "majordomo",
    "freelance",
    "binarystar",
    "clone",
    "fileio",
    "filetransfer",
    "pubsub",
    "broker",
    "broker-cluster",
    "p2p",
];

/// The fileio test file's name (the guide's programs read `./testdata`).
pub const FILEIO_NAME: &str = "testdata";

/// What the command line asked for.
struct Options {
    sizes: Vec<usize>,
    count: Option<u64>,
    roundtrips: Option<u64>,
    repeat: usize,
    groups: Vec<String>,
    requests: u64,
    timeout: Duration,
    out: PathBuf,
    quick: bool,
    fileio_mib: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = internal::dispatch(&args) {
        std::process::exit(code);
    }
    if let Some(code) = broker_jobs::dispatch(&args) {
        std::process::exit(code);
    }
    if args.first().map(String::as_str) == Some("--internal-wait-port") {
        let code = procs::probe_port(
            args.get(1).map_or("", String::as_str),
            args.get(2).map_or("", String::as_str),
        );
        std::process::exit(code);
    }
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(problem) => {
            eprintln!("bench: {problem}\n\n{HELP}");
            std::process::exit(2);
        }
    };
    interrupt::catch_signals();
    match run(&options) {
        Ok(()) => {}
        Err(problem) => {
            eprintln!("bench: {problem}");
            std::process::exit(if interrupt::interrupted() { 130 } else { 1 });
        }
    }
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        sizes: DEFAULT_SIZES.to_vec(),
        count: None,
        roundtrips: None,
        repeat: 3,
        groups: GROUPS.map(String::from).to_vec(),
        requests: 100_000,
        timeout: Duration::from_secs(120),
        out: default_out(),
        quick: false,
        fileio_mib: 1024,
    };
    let mut explicit_sizes = false;
    let mut explicit_fileio = false;
    let mut explicit_repeat = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => options.quick = true,
            "--full" => {
                options.sizes = (3..=16).map(|p| 1usize << p).collect();
                explicit_sizes = true;
            }
            "--sizes" => {
                options.sizes = numbers(&value("--sizes")?, "--sizes")?;
                explicit_sizes = true;
            }
            "--count" => options.count = Some(number(&value("--count")?, "--count")?),
            "--roundtrips" => {
                options.roundtrips = Some(number(&value("--roundtrips")?, "--roundtrips")?)
            }
            "--repeat" => {
                options.repeat = number(&value("--repeat")?, "--repeat")? as usize;
                explicit_repeat = true;
            }
            "--requests" => options.requests = number(&value("--requests")?, "--requests")?,
            "--timeout" => {
                options.timeout = Duration::from_secs(number(&value("--timeout")?, "--timeout")?)
            }
            "--out" => options.out = PathBuf::from(value("--out")?),
            "--fileio-mib" => {
                options.fileio_mib = number(&value("--fileio-mib")?, "--fileio-mib")?;
                explicit_fileio = true;
            }
            "--only" => {
                let list = value("--only")?;
                options.groups = list.split(',').map(|g| g.trim().to_string()).collect();
                for group in &options.groups {
                    if !GROUPS.contains(&group.as_str()) {
                        return Err(format!("unknown group {group:?} in --only"));
                    }
                }
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if options.quick {
        if !explicit_sizes {
            options.sizes = vec![64];
        }
        options.count.get_or_insert(10_000);
        options.roundtrips.get_or_insert(1_000);
        if !explicit_repeat {
            options.repeat = 1;
        }
        options.requests = options.requests.min(1_000);
        if !explicit_fileio {
            options.fileio_mib = 16;
        }
    }
    Ok(Some(options))
}

fn number(text: &str, name: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} takes a whole number above 0, not {text:?}")),
    }
}

fn numbers(text: &str, name: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|part| number(part, name).map(|n| n as usize))
        .collect()
}

/// `target/bench` beside `target/release/bench`.
fn default_out() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}

/// Messages per throughput run: about 256 MB, within 20,000 … 1,000,000, so
/// every size runs for a fraction of a second to a second.
fn thr_count(size: usize) -> u64 {
    (256_000_000 / size.max(1) as u64).clamp(20_000, 1_000_000)
}

fn lat_roundtrips(size: usize) -> u64 {
    if size > 16384 {
        2_000
    } else {
        10_000
    }
}

/// The rows to measure, in table order, each with its job.
fn plan(options: &Options) -> Vec<(Row, Job, usize)> {
    let mut plan = Vec::new();
    let wants = |g: &str| options.groups.iter().any(|x| x == g);
    for transport in ["tcp", "inproc"] {
        if !wants(transport) {
            continue;
        }
        for &size in &options.sizes {
            let count = options.count.unwrap_or_else(|| thr_count(size));
            let roundtrips = options.roundtrips.unwrap_or_else(|| lat_roundtrips(size));
            let (thr, lat) = if transport == "tcp" {
                (
                    Job::TcpThr { size, count },
                    Job::TcpLat { size, roundtrips },
                )
            } else {
                (
                    Job::InprocThr { size, count },
                    Job::InprocLat { size, roundtrips },
                )
            };
            let mut row = Row::new(transport, "thr", "msg/s", Better::Higher, Some(0.95));
            row.size = Some(size);
            row.secondary_unit = Some("Mb/s");
            row.detail = format!("{count} messages");
            plan.push((row, thr, 0));
            let mut row = Row::new(transport, "lat", "us", Better::Lower, Some(1.05));
            row.size = Some(size);
            row.detail = format!("{roundtrips} round trips, one-way");
            plan.push((row, lat, 0));
        }
    }
    if wants("tripping") {
        for (n, test) in ["sync", "async"].iter().enumerate() {
            let row = Row::new("tripping", test, "calls/s", Better::Higher, Some(1.0));
            plan.push((row, Job::Tripping, n));
        }
    }
    if wants("majordomo") {
        for client in ["mdclient", "mdclient2"] {
            for workers in [1, 10] {
                let test = format!(
                    "{client}, {workers} worker{}",
                    if workers > 1 { "s" } else { "" }
                );
                let mut row = Row::new("majordomo", &test, "req/s", Better::Higher, Some(1.0));
                row.secondary_unit = Some("s wall");
                row.detail = format!("{} requests", options.requests);
                let job = Job::Majordomo {
                    client,
                    workers,
                    requests: options.requests,
                    broker_only: false,
                };
                plan.push((row, job, 0));
            }
        }
        // Only the broker differs: reference clients and workers on both sides.
        let mut row = Row::new(
            "majordomo",
            "mdbroker only (ref. mdclient, 1 worker)",
            "req/s",
            Better::Higher,
            Some(1.0),
        );
        row.secondary_unit = Some("s wall");
        row.detail = format!("{} requests", options.requests);
        row.needs_reference = true;
        let job = Job::Majordomo {
            client: "mdclient",
            workers: 1,
            requests: options.requests,
            broker_only: true,
        };
        plan.push((row, job, 0));
    }
    if wants("freelance") {
        let requests = if options.quick { 1_000 } else { 10_000 };
        for client in ["flclient2", "flclient3"] {
            for servers in [1, 3] {
                let test = format!(
                    "{client}, {servers} server{}",
                    if servers > 1 { "s" } else { "" }
                );
                let mut row = Row::new("freelance", &test, "us", Better::Lower, Some(1.05));
                row.detail = format!("{requests} requests, average round trip");
                let job = Job::Freelance {
                    client,
                    servers,
                    requests,
                };
                plan.push((row, job, 0));
            }
        }
    }
    if wants("binarystar") {
        let mut row = Row::new("binarystar", "failover", "ms", Better::Lower, Some(1.05));
        row.detail = format!(
            "SIGKILL of the primary {} ms after a reply -> first reply from the backup; goal <= 3500 ms",
            guide_jobs::BSTAR_KILL_AFTER_REPLY.as_millis()
        );
        plan.push((row, Job::BinaryStar, 0));
    }
    if wants("clone") {
        let updates = if options.quick { 10_000 } else { 100_000 };
        for publishers in [1, 10] {
            let test = format!(
                "updates, {publishers} client{} -> 10 subscribers",
                if publishers > 1 { "s" } else { "" }
            );
            let mut row = Row::new("clone", &test, "updates/s", Better::Higher, Some(1.0));
            row.secondary_unit = Some("% delivered");
            row.detail = format!(
                "{updates} updates sent through clonesrv5; figure = updates received by all \
                 10 subscribers together / wall time from the first send to the last receipt; \
                 the clients are the bench's own (kvmsg), only clonesrv5 is the side's"
            );
            let job = Job::CloneUpdates {
                publishers,
                subscribers: 10,
                updates,
            };
            plan.push((row, job, 0));
        }
        let keys = if options.quick { 10_000 } else { 100_000 };
        let test = format!("snapshot, {keys} keys");
        let mut row = Row::new("clone", &test, "ms", Better::Lower, Some(1.05));
        row.detail = "a new client (the bench's, kvmsg) from connect to KTHXBAI".to_string();
        plan.push((row, Job::CloneSnapshot { keys }, 0));
    }
    if wants("fileio") {
        let bytes = options.fileio_mib << 20;
        let job = Job::FileIo {
            bytes,
            dir: options.out.join("fileio-data"),
        };
        let rows = [
            ("fileio1", "MB/s", Some(1.0)),
            ("fileio2", "MB/s", Some(1.0)),
            ("fileio3", "MB/s", Some(1.0)),
            ("raw TCP copy", "MB/s", None),
            ("fileio3 / raw", "%", None),
        ];
        for (n, (test, unit, goal)) in rows.into_iter().enumerate() {
            let mut row = Row::new("fileio", test, unit, Better::Higher, goal);
            row.detail = format!(
                "{} MiB file; MB = 10^6 bytes over the process's wall time",
                options.fileio_mib
            );
            if n == 4 {
                row.detail.push_str("; goal: fileio3 >= 80 % of raw");
            }
            plan.push((row, job.clone(), n));
        }
    }
    if wants("filetransfer") {
        let job = Job::FileTransfer {
            bytes: options.fileio_mib << 20,
            dir: options.out.join("fileio-data"),
        };
        for (n, (test, unit)) in filetransfer_jobs::ROWS.into_iter().enumerate() {
            let better = if n == 9 {
                Better::Lower
            } else {
                Better::Higher
            };
            let mut row = Row::new("filetransfer", test, unit, better, None);
            row.detail = match n {
                0..=2 => format!(
                    "{} MiB random file (the fileio group's); MB = 10^6 bytes over the \
                     process's wall time",
                    options.fileio_mib
                ),
                3..=6 => format!(
                    "fileserver + fileclient get, {} MiB, copy on /dev/shm, server's hash \
                     warmed by one untimed get; MB/s from the client's own line",
                    options.fileio_mib
                ),
                7 => "fileclient random, zstd off / raw TCP copy writing its copy to the same \
                      place; goal >= 80 %"
                    .to_string(),
                8 => "fileclient random, zstd off / raw TCP copy writing nothing".to_string(),
                _ => "1 - (CURVE, zstd off) / (plain, zstd off), random data; goal < 30 %"
                    .to_string(),
            };
            if n == 1 {
                row.detail
                    .push_str("; the receiver writes the copy to /dev/shm and syncs it");
            }
            if n == 5 {
                row.detail = row.detail.replace("MiB,", "MiB of broker-fanout gen text,");
            }
            plan.push((row, job.clone(), n));
        }
    }
    if wants("pubsub") {
        let seconds = if options.quick { 1.0 } else { 5.0 };
        for rate in [10_000u64, 100_000] {
            let job = Job::PubsubLatency { rate, seconds };
            for (n, p) in ["p50", "p99", "p99.9"].into_iter().enumerate() {
                let test = format!("{}k msg/s latency {p}", rate / 1000);
                let mut row = Row::new("pubsub", &test, "us", Better::Lower, None);
                row.detail = format!("64 B messages for {seconds} s, tspub -> tssub");
                if n == 0 {
                    row.secondary_unit = Some("lost");
                }
                plan.push((row, job.clone(), n));
            }
        }
        let (step, bisections) = if options.quick { (0.5, 1) } else { (2.0, 3) };
        let mut row = Row::new("pubsub", "max lossless rate", "msg/s", Better::Higher, None);
        row.secondary_unit = Some("msg/s sent");
        row.detail = format!(
            "64 B; doubling from 50k msg/s, then {bisections} bisection(s), {step} s a step; \
             lossless = tssub received all tspub sent, no gaps, tspub at >= 95 % of the rate"
        );
        let job = Job::PubsubMaxRate {
            start: 50_000,
            bisections,
            seconds: step,
        };
        plan.push((row, job, 0));
    }
    if wants("broker") {
        broker_plan(options, &mut plan);
    }
    if wants("broker-cluster") {
        cluster_plan(options, &mut plan);
    }
    if wants("p2p") {
        p2p_plan(options, &mut plan);
    }
    plan
}

/// The `p2p` group's rows.
fn p2p_plan(options: &Options, plan: &mut Vec<(Row, Job, usize)>) {
    let how = "N zguide::zre nodes in one process (the bench's own, in a namespace of its own) on \
               loopback: beacons to 127.255.255.255:5670 every second, a mailbox each";
    let mesh = if options.quick {
        p2p_jobs::MESH_NODES_QUICK
    } else {
        p2p_jobs::MESH_NODES
    };
    for nodes in mesh {
        let test = format!("time to full mesh, {nodes} nodes");
        let mut row = Row::new("p2p", &test, "ms", Better::Lower, None);
        row.detail = format!(
            "{how}; from the first start until every node had an ENTER for each of the others"
        );
        plan.push((row, Job::P2pMesh { nodes }, 0));
    }
    let job = Job::P2pShout {
        nodes: p2p_jobs::SHOUT_NODES,
        messages: p2p_jobs::SHOUT_MESSAGES,
    };
    for (n, quantile) in ["p50", "p99"].into_iter().enumerate() {
        let test = format!("SHOUT fan-out, {} nodes, {quantile}", p2p_jobs::SHOUT_NODES);
        let mut row = Row::new("p2p", &test, "µs", Better::Lower, None);
        row.detail = format!(
            "{how}; one node SHOUTs {} messages one at a time to the group, the next when \
             every other node has the last; send to receipt, over every receipt",
            p2p_jobs::SHOUT_MESSAGES
        );
        plan.push((row, job.clone(), n));
    }
    let test = format!(
        "replicated map convergence, {} nodes x {} keys",
        p2p_jobs::CONVERGE_NODES,
        p2p_jobs::CONVERGE_KEYS
    );
    let mut row = Row::new("p2p", &test, "ms", Better::Lower, None);
    row.detail = format!(
        "{how}; zre::state replicas of one group's map, synced and empty; then each writes its \
         keys: until every replica holds all of them with the same digest"
    );
    let job = Job::P2pConverge {
        nodes: p2p_jobs::CONVERGE_NODES,
        keys: p2p_jobs::CONVERGE_KEYS,
    };
    plan.push((row, job, 0));
}

/// Requests per run of the `broker` group: (async, sync).
fn broker_requests(options: &Options) -> (u64, u64) {
    if options.quick {
        (2_000, 500)
    } else {
        (options.requests, (options.requests / 10).max(1))
    }
}

/// Requests the SBP/1 async client keeps in flight.
const BROKER_WINDOW: usize = 1_000;

/// The `broker` group's rows.
fn broker_plan(options: &Options, plan: &mut Vec<(Row, Job, usize)>) {
    let (many, few) = broker_requests(options);
    let peers = "the client and workers are ours on both sides, so only the broker differs \
                 (the C++ mdclient2 gets no replies from C++ mdworkers, and the C++ clients \
                 ignore ZGUIDE_REQUESTS)";
    for (client, workers, requests, goal) in
        [("mdclient2", 10, many, 2.0), ("mdclient", 1, few, 1.0)]
    {
        let test = format!(
            "MDP {}, {client}, {workers} worker{}",
            if workers > 1 { "async" } else { "sync" },
            if workers > 1 { "s" } else { "" }
        );
        let mut row = Row::new("broker", &test, "req/s", Better::Higher, Some(goal));
        row.secondary_unit = Some("s wall");
        row.detail = format!(
            "{requests} requests; ours: the study's broker, reference: the reference's \
             mdbroker; {peers}"
        );
        let job = Job::BrokerMdp {
            client,
            workers,
            requests,
        };
        plan.push((row, job, 0));
    }

    let job = Job::BrokerVsMdbroker {
        workers: 10,
        requests: many,
    };
    for (n, (test, unit)) in [
        ("MDP async, 10 workers: broker", "req/s"),
        ("MDP async, 10 workers: our mdbroker", "req/s"),
        ("MDP async, 10 workers: broker / our mdbroker", "x"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = Row::new("broker", test, unit, Better::Higher, None);
        row.detail = format!(
            "mdclient2 ({many} requests) and 10 mdworkers, ours, through our broker and then \
             our mdbroker; goal: the broker >= 2x the C++ mdbroker"
        );
        plan.push((row, job.clone(), n));
    }

    let job = Job::BrokerSbpAsync {
        workers: 10,
        requests: many,
        window: BROKER_WINDOW,
    };
    let async_rows = [
        ("SBP/1 async, 10 workers", "req/s"),
        ("SBP/1 async, 10 workers, store", "req/s"),
        ("SBP/1 async, 10 workers, CURVE", "req/s"),
        ("SBP/1 async, 10 workers, CURVE + store", "req/s"),
        ("SBP/1 async: store / plain", "%"),
        ("SBP/1 async: CURVE + store / CURVE", "%"),
    ];
    for (n, (test, unit)) in async_rows.into_iter().enumerate() {
        let mut row = Row::new("broker", test, unit, Better::Higher, None);
        row.detail = format!(
            "the bench's SBP/1 client, {many} requests, {BROKER_WINDOW} in flight, 10 \
             broker-workers (echo); store: --store (redb, fresh file); CURVE: every peer \
             authenticated"
        );
        if n >= 4 {
            row.detail
                .push_str("; goal: >= 50 % (persistence costs less than half)");
        }
        plan.push((row, job.clone(), n));
    }

    let job = Job::BrokerSbpSync { requests: few };
    let sync_rows = [
        ("SBP/1 sync, 1 worker", "req/s", Better::Higher),
        ("SBP/1 sync, 1 worker, p50", "us", Better::Lower),
        ("SBP/1 sync, 1 worker, p99", "us", Better::Lower),
        ("SBP/1 sync, 1 worker, store", "req/s", Better::Higher),
        ("SBP/1 sync, 1 worker, store, p50", "us", Better::Lower),
        ("SBP/1 sync, 1 worker, store, p99", "us", Better::Lower),
        ("SBP/1 sync: store / plain", "%", Better::Higher),
    ];
    for (n, (test, unit, better)) in sync_rows.into_iter().enumerate() {
        let mut row = Row::new("broker", test, unit, better, None);
        row.detail = format!(
            "the bench's SBP/1 client, {few} requests one at a time, 1 broker-worker (echo); \
             p50/p99: round trip, send to reply"
        );
        plan.push((row, job.clone(), n));
    }
}

/// Requests per run of the `broker-cluster` group's forwarding rows:
/// (async, sync).
fn cluster_requests(options: &Options) -> (u64, u64) {
    if options.quick {
        (1_000, 200)
    } else {
        (
            (options.requests / 10).max(1),
            (options.requests / 50).max(1),
        )
    }
}

/// Requests the forwarding rows' async client keeps in flight.
const CLUSTER_WINDOW: usize = 100;
/// Echo workers behind the forwarding rows' async client.
const CLUSTER_WORKERS: usize = 4;
/// Requests of the broker pair's failover run.
const FAILOVER_REQUESTS: u64 = 400;

/// The `broker-cluster` group's rows.
fn cluster_plan(options: &Options, plan: &mut Vec<(Row, Job, usize)>) {
    let (many, few) = cluster_requests(options);
    let how = "local: broker (tcp 5555) with the workers; via peer: broker A (5555, --peer \
               tcp://127.0.0.1:5565 --default-policy forward, no workers) forwarding to broker B \
               (5565) with the workers; the bench's SBP/1 client to 5555, a fresh namespace each";
    let job = Job::ClusterForward {
        workers: 1,
        requests: few,
        window: 1,
    };
    let sync_rows = [
        ("forward sync, 1 worker: local", "req/s", Better::Higher),
        ("forward sync, 1 worker: via peer", "req/s", Better::Higher),
        ("forward sync, 1 worker: local, p50", "us", Better::Lower),
        ("forward sync, 1 worker: via peer, p50", "us", Better::Lower),
        ("forward sync: via peer / local", "%", Better::Higher),
    ];
    for (n, (test, unit, better)) in sync_rows.into_iter().enumerate() {
        let mut row = Row::new("broker-cluster", test, unit, better, None);
        row.detail = format!(
            "{few} requests one at a time, 1 broker-worker (echo); {how}; p50: round trip, send \
             to reply"
        );
        plan.push((row, job.clone(), n));
    }
    let job = Job::ClusterForward {
        workers: CLUSTER_WORKERS,
        requests: many,
        window: CLUSTER_WINDOW,
    };
    let async_rows = [
        ("forward async, 4 workers: local", "req/s"),
        ("forward async, 4 workers: via peer", "req/s"),
        ("forward async: via peer / local", "%"),
    ];
    for (n, (test, unit)) in async_rows.into_iter().enumerate() {
        let mut row = Row::new("broker-cluster", test, unit, Better::Higher, None);
        row.detail = format!(
            "{many} requests, {CLUSTER_WINDOW} in flight, {CLUSTER_WORKERS} broker-workers \
             (echo); {how}"
        );
        plan.push((row, job.clone(), n));
    }

    let mut row = Row::new(
        "broker-cluster",
        "pair failover (default timings: client TTL 6 s, worker liveness 7.5 s)",
        "ms",
        Better::Lower,
        None,
    );
    row.detail = format!(
        "broker --pair primary (5555) and backup (5565), 2 broker-workers and broker-client \
         ({FAILOVER_REQUESTS} requests 5 ms apart) knowing both; SIGKILL of the primary after \
         reply {}; figure: the client's ms from the last reply from the primary to the first \
         from the backup; all {FAILOVER_REQUESTS} must be answered 200; one run per bench run",
        cluster_jobs::FAILOVER_KILL_AFTER
    );
    let job = Job::ClusterFailover {
        requests: FAILOVER_REQUESTS,
    };
    plan.push((row, job, 0));

    let mib: u64 = if options.quick { 16 } else { 64 };
    let job = Job::ClusterFanout { bytes: mib << 20 };
    for (n, workers) in cluster_jobs::FANOUT_WORKERS.into_iter().enumerate() {
        let test = format!(
            "fanout count, {workers} worker{}",
            if workers > 1 { "s" } else { "" }
        );
        let mut row = Row::new("broker-cluster", &test, "MB/s", Better::Higher, None);
        row.detail = format!(
            "broker-fanout count of a {mib} MiB text (gen --seed 7) through a fresh broker to \
             {workers} broker-fanout worker(s): 1 MiB chunks, credit 8; MB = 10^6 bytes, the \
             count's own figure"
        );
        plan.push((row, job.clone(), n));
    }
}

fn run(options: &Options) -> Result<(), String> {
    let ours = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .ok_or("no folder for this program")?
        .to_path_buf();
    let reference: Option<PathBuf> = std::env::var_os("ZGUIDE_REFERENCE_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(dir) = &reference {
        if !dir.is_dir() {
            return Err(format!(
                "ZGUIDE_REFERENCE_BIN={} is not a folder",
                dir.display()
            ));
        }
    }
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("cannot create {}: {e}", options.out.display()))?;

    let mut plan = plan(options);
    println!(
        "zguide-rs benchmarks: {} rows, {} run(s) each{}; {} cores, load {}; libzmq {}",
        plan.len(),
        options.repeat,
        match &reference {
            Some(dir) => format!(", reference from {}", dir.display()),
            None => String::new(),
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        libzmq_linkage()
    );

    // The fileio and filetransfer rows share one test file, made once and
    // removed at the end; filetransfer adds a text file beside it.
    let fileio_dir = plan.iter().find_map(|(_, job, _)| match job {
        Job::FileIo { bytes, dir } | Job::FileTransfer { bytes, dir } => {
            Some((*bytes, dir.clone()))
        }
        _ => None,
    });
    let _fileio_data = fileio_dir
        .as_ref()
        .map(|(_, dir)| RemoveOnDrop(dir.clone()));
    let fileio_problem = match &fileio_dir {
        Some((bytes, dir)) => {
            print!(
                "  making a {} MiB fileio test file in {} ... ",
                bytes >> 20,
                dir.display()
            );
            zguide::helpers::flush_stdout();
            let made = procs::find_program(&ours, "mktestdata")
                .ok_or_else(|| "skipped: no mktestdata built yet".to_string())
                .and_then(|mk| guide_jobs::make_testdata(&mk, dir, *bytes));
            println!("{}", if made.is_ok() { "done" } else { "failed" });
            made.err()
        }
        None => None,
    };
    let text_problem = match &fileio_dir {
        Some((bytes, dir))
            if fileio_problem.is_none()
                && plan
                    .iter()
                    .any(|(_, job, _)| matches!(job, Job::FileTransfer { .. })) =>
        {
            print!(
                "  making a {} MiB text file in {} ... ",
                bytes >> 20,
                dir.display()
            );
            zguide::helpers::flush_stdout();
            let made = procs::find_program(&ours, "broker-fanout")
                .ok_or_else(|| "skipped: no broker-fanout built yet".to_string())
                .and_then(|gen| filetransfer_jobs::make_textdata(&gen, dir, *bytes));
            println!("{}", if made.is_ok() { "done" } else { "failed" });
            made.err()
        }
        _ => None,
    };

    // Rows that share a job (tripping's sync and async) run it once.
    let mut index = 0;
    while index < plan.len() {
        let job = plan[index].1.clone();
        let group_end = (index..plan.len())
            .take_while(|&i| plan[i].2 == i - index && same_job(&plan[i].1, &job))
            .last()
            .map_or(index + 1, |i| i + 1);
        let label = plan[index].0.label();
        let problem = match &job {
            Job::FileIo { .. } => fileio_problem.as_ref(),
            Job::FileTransfer { .. } => fileio_problem.as_ref().or(text_problem.as_ref()),
            _ => None,
        };
        if let Some(problem) = problem {
            for (row, _, _) in &mut plan[index..group_end] {
                row.add_note(problem);
            }
            index = group_end;
            continue;
        }
        let sides = sides_for(&job, &plan[index].0, &ours, reference.as_deref());
        for (slot, side) in sides.iter().enumerate() {
            if let Err(note) = side {
                for (row, _, _) in &mut plan[index..group_end] {
                    row.add_note(note);
                    if slot == 1 {
                        row.reference_missing = true;
                    }
                }
            }
        }
        let rounds = job.rounds(options.repeat);
        for round in 0..rounds {
            for (slot, side) in sides.iter().enumerate() {
                let Ok(dir) = side else { continue };
                let who = if slot == 0 { "ours" } else { "reference" };
                print!("  {label} [{who} {}/{rounds}] ... ", round + 1);
                zguide::helpers::flush_stdout();
                let result = job.run(
                    &Side {
                        dir,
                        reference_dir: reference.as_deref(),
                        ours_dir: &ours,
                        is_reference: slot == 1,
                    },
                    options.timeout,
                );
                if interrupt::interrupted() {
                    return Err("interrupted".to_string());
                }
                match result {
                    Ok(sample) => {
                        println!(
                            "{} {}",
                            report::figure(sample.values.first().copied()),
                            plan[index].0.unit
                        );
                        for (row, _, n) in &mut plan[index..group_end] {
                            if let Some(&value) = sample.values.get(*n) {
                                row.push(slot == 1, value, sample.secondary);
                            }
                        }
                    }
                    Err(problem) => {
                        println!("failed");
                        for (row, _, _) in &mut plan[index..group_end] {
                            row.add_note(&format!("{who}: {problem}"));
                        }
                    }
                }
            }
        }
        index = group_end;
    }

    let rows: Vec<Row> = plan.into_iter().map(|(row, _, _)| row).collect();
    println!();
    print!("{}", report::table(&rows, reference.is_some()));
    let meta = report::Meta {
        repeat: options.repeat,
        reference: reference.as_ref().map(|d| d.display().to_string()),
        load: load_average(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        libzmq: libzmq_linkage(),
        quick: options.quick,
    };
    let files = [
        ("results.json", report::json(&rows, &meta)),
        ("results.csv", report::csv(&rows)),
        ("sweep.svg", report::svg(&rows)),
    ];
    for (name, text) in files {
        let path = options.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// A folder removed with everything in it when this goes out of scope
/// (the fileio test file, also when the run fails).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn same_job(a: &Job, b: &Job) -> bool {
    match (a, b) {
        (Job::Tripping, Job::Tripping)
        | (Job::FileIo { .. }, Job::FileIo { .. })
        | (Job::FileTransfer { .. }, Job::FileTransfer { .. }) => true,
        (Job::PubsubLatency { rate: x, .. }, Job::PubsubLatency { rate: y, .. }) => x == y,
        (Job::BrokerVsMdbroker { .. }, Job::BrokerVsMdbroker { .. })
        | (Job::BrokerSbpAsync { .. }, Job::BrokerSbpAsync { .. })
        | (Job::BrokerSbpSync { .. }, Job::BrokerSbpSync { .. })
        | (Job::ClusterFanout { .. }, Job::ClusterFanout { .. }) => true,
        (Job::P2pShout { .. }, Job::P2pShout { .. }) => true,
        (Job::ClusterForward { window: x, .. }, Job::ClusterForward { window: y, .. }) => x == y,
        _ => false,
    }
}

/// Our folder and the reference folder for this job, or why a side is out.
fn sides_for<'a>(
    job: &Job,
    row: &Row,
    ours: &'a std::path::Path,
    reference: Option<&'a std::path::Path>,
) -> [Result<&'a std::path::Path, String>; 2] {
    let missing = |dir: &std::path::Path, reference: bool| {
        job.programs_on(reference)
            .into_iter()
            .find(|name| procs::find_program(dir, name).is_none())
    };
    let our_side = if row.needs_reference && reference.is_none() {
        Err("skipped: needs ZGUIDE_REFERENCE_BIN".to_string())
    } else {
        match missing(ours, false) {
            Some(name) => Err(format!("skipped: no {name} built yet")),
            None => Ok(ours),
        }
    };
    let reference_side = match reference {
        None => Err(String::new()),
        Some(_) if job.no_reference().is_some() => {
            Err(job.no_reference().unwrap_or_default().to_string())
        }
        Some(dir) => match missing(dir, true) {
            Some(name) => Err(format!("no reference {name}")),
            None => Ok(dir),
        },
    };
    [our_side, reference_side]
}

/// Which libzmq our programs run on. The `zmq` crate (through `zmq-sys`)
/// compiles its own copy of libzmq and links it statically, unless the build
/// overrides that to link the system's `libzmq.so` (see
/// `zguide/benchmarks.md`); the two builds differ (the bundled one signals
/// between threads with a socket pair, the system one with an eventfd), and
/// that shows in the figures.
fn libzmq_linkage() -> String {
    let (a, b, c) = zmq::version();
    let shared = std::fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.contains("libzmq.so"))
        .unwrap_or(false);
    let how = if shared {
        "system libzmq.so"
    } else {
        "bundled by zmq-sys, static"
    };
    format!("{a}.{b}.{c} ({how})")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_new_groups_and_the_fileio_size_are_flags() {
        let Ok(Some(options)) = parse(&args(&["--only", "freelance,pubsub"])) else {
            panic!("--only freelance,pubsub is refused");
        };
        assert_eq!(options.groups, ["freelance", "pubsub"]);
        assert_eq!(options.fileio_mib, 1024);
        let Ok(Some(quick)) = parse(&args(&["--quick", "--only", "fileio"])) else {
            panic!("--quick is refused");
        };
        assert_eq!(quick.fileio_mib, 16);
        let Ok(Some(sized)) = parse(&args(&["--quick", "--fileio-mib", "64"])) else {
            panic!("--fileio-mib is refused");
        };
        assert_eq!(sized.fileio_mib, 64);
        assert!(parse(&args(&["--only", "clone,nope"])).is_err());
        assert!(parse(&args(&["--fileio-mib", "0"])).is_err());
        let Ok(Some(all)) = parse(&[]) else {
            panic!("no arguments are refused");
        };
        let rows = plan(&all);
        for group in [
            "freelance",
            "binarystar",
            "clone",
            "fileio",
            "filetransfer",
            "pubsub",
            "broker",
            "broker-cluster",
            "p2p",
        ] {
            assert!(rows.iter().any(|(row, _, _)| row.group == group), "{group}");
        }
    }

    #[test]
    fn the_p2p_group_has_its_six_rows_and_shares_the_shout_job() {
        let Ok(Some(options)) = parse(&args(&["--only", "p2p"])) else {
            panic!("--only p2p is refused");
        };
        let rows = plan(&options);
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|(row, _, _)| row.group == "p2p"));
        assert!(same_job(&rows[3].1, &rows[4].1));
        assert_eq!((rows[3].2, rows[4].2), (0, 1));
        assert!(matches!(rows[2].1, Job::P2pMesh { nodes: 50 }));
    }

    #[test]
    fn the_filetransfer_group_shares_one_job_and_the_fileio_size() {
        let Ok(Some(options)) = parse(&args(&["--quick", "--only", "filetransfer"])) else {
            panic!("--only filetransfer is refused");
        };
        let rows = plan(&options);
        assert_eq!(rows.len(), filetransfer_jobs::ROWS.len());
        for (n, (row, job, slot)) in rows.iter().enumerate() {
            assert_eq!(row.group, "filetransfer");
            assert_eq!(*slot, n);
            assert!(same_job(job, &rows[0].1));
            let Job::FileTransfer { bytes, dir } = job else {
                panic!("not a filetransfer job");
            };
            assert_eq!(*bytes, 16 << 20);
            assert!(dir.ends_with("fileio-data"));
        }
    }

    #[test]
    fn the_broker_group_plans_its_rows_and_counts() {
        let Ok(Some(options)) = parse(&args(&["--only", "broker"])) else {
            panic!("--only broker is refused");
        };
        let rows = plan(&options);
        assert!(rows.iter().all(|(row, _, _)| row.group == "broker"));
        let tests: Vec<&str> = rows.iter().map(|(row, _, _)| row.test.as_str()).collect();
        for test in [
            "MDP async, mdclient2, 10 workers",
            "MDP sync, mdclient, 1 worker",
            "MDP async, 10 workers: broker / our mdbroker",
            "SBP/1 async, 10 workers",
            "SBP/1 async, 10 workers, store",
            "SBP/1 async, 10 workers, CURVE",
            "SBP/1 async, 10 workers, CURVE + store",
            "SBP/1 async: store / plain",
            "SBP/1 sync, 1 worker, p50",
            "SBP/1 sync, 1 worker, store, p99",
        ] {
            assert!(tests.contains(&test), "{test} in {tests:?}");
        }
        // The goal: 2x the reference's mdbroker, async with 10 workers.
        let (first, job, _) = &rows[0];
        assert_eq!(first.goal, Some(2.0));
        assert!(matches!(
            job,
            Job::BrokerMdp {
                client: "mdclient2",
                workers: 10,
                requests: 100_000
            }
        ));
        assert_eq!(job.programs_on(true), ["mdbroker"]);
        assert_eq!(job.programs_on(false), ["broker", "mdworker", "mdclient2"]);
        // Rows of one job are numbered in order, so the job runs once.
        for (n, (_, job, slot)) in rows
            .iter()
            .filter(|(_, job, _)| matches!(job, Job::BrokerSbpSync { .. }))
            .enumerate()
        {
            assert_eq!(*slot, n);
            assert!(matches!(job, Job::BrokerSbpSync { requests: 10_000 }));
        }
        assert!(rows
            .iter()
            .any(|(_, job, _)| job.no_reference().is_some_and(|r| r.contains("SBP/1"))));

        let Ok(Some(quick)) = parse(&args(&["--quick", "--only", "broker"])) else {
            panic!("--quick --only broker is refused");
        };
        assert_eq!(broker_requests(&quick), (2_000, 500));
        let quick_rows = plan(&quick);
        assert!(quick_rows.iter().any(|(_, job, _)| matches!(
            job,
            Job::BrokerSbpAsync {
                requests: 2_000,
                window: BROKER_WINDOW,
                ..
            }
        )));
        let Ok(Some(more)) = parse(&args(&["--only", "broker", "--requests", "5000"])) else {
            panic!("--requests is refused");
        };
        assert_eq!(broker_requests(&more), (5_000, 500));
    }

    #[test]
    fn the_broker_cluster_group_plans_its_rows_and_counts() {
        let Ok(Some(options)) = parse(&args(&["--only", "broker-cluster"])) else {
            panic!("--only broker-cluster is refused");
        };
        let rows = plan(&options);
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|(row, _, _)| row.group == "broker-cluster"));
        assert!(rows.iter().all(|(_, job, _)| job.no_reference().is_some()));
        let tests: Vec<&str> = rows.iter().map(|(row, _, _)| row.test.as_str()).collect();
        for test in [
            "forward sync, 1 worker: local",
            "forward sync, 1 worker: via peer, p50",
            "forward sync: via peer / local",
            "forward async, 4 workers: via peer",
            "forward async: via peer / local",
            "fanout count, 1 worker",
            "fanout count, 4 workers",
        ] {
            assert!(tests.contains(&test), "{test} in {tests:?}");
        }
        assert!(tests.iter().any(|t| t.starts_with("pair failover")));
        // Each job's rows are numbered in order (the job runs once for
        // them) and the sync and async jobs are told apart.
        let mut index = 0;
        let mut jobs = 0;
        while index < rows.len() {
            let job = &rows[index].1;
            let end = (index..rows.len())
                .take_while(|&i| rows[i].2 == i - index && same_job(&rows[i].1, job))
                .last()
                .map_or(index + 1, |i| i + 1);
            jobs += 1;
            index = end;
        }
        assert_eq!(jobs, 4);
        assert!(rows.iter().any(|(_, job, _)| matches!(
            job,
            Job::ClusterForward {
                workers: 1,
                requests: 2_000,
                window: 1
            }
        )));
        assert!(rows.iter().any(|(_, job, _)| matches!(
            job,
            Job::ClusterForward {
                workers: CLUSTER_WORKERS,
                requests: 10_000,
                window: CLUSTER_WINDOW
            }
        )));
        // The failover runs once whatever --repeat says; the others repeat.
        for (_, job, _) in &rows {
            let once = matches!(job, Job::ClusterFailover { requests: 400 });
            assert_eq!(job.rounds(3), if once { 1 } else { 3 });
        }
        assert!(rows
            .iter()
            .any(|(_, job, _)| matches!(job, Job::ClusterFanout { bytes: 67_108_864 })));

        let Ok(Some(quick)) = parse(&args(&["--quick", "--only", "broker-cluster"])) else {
            panic!("--quick --only broker-cluster is refused");
        };
        assert_eq!(cluster_requests(&quick), (1_000, 200));
        assert!(plan(&quick)
            .iter()
            .any(|(_, job, _)| matches!(job, Job::ClusterFanout { bytes: 16_777_216 })));
    }
}
