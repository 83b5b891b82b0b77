//! What one benchmark run does: which programs it starts, in which order,
//! and which figures it reads from their output.
//!
//! The same job runs our programs or the reference ones (a folder of C/C++
//! builds with the same names), so both sides are measured the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use zguide::perf::Report;

use crate::procs::{find_program, last_lines, Namespace, Proc};
use crate::{broker_jobs, cluster_jobs, filetransfer_jobs, guide_jobs, p2p_jobs};

/// The TCP port the perf pairs use inside their private namespace.
const PERF_PORT: u16 = 5555;
/// Majordomo's fixed broker endpoint is tcp 5555 (the guide's).
const BROKER_PORT: u16 = 5555;

/// One kind of measurement.
#[derive(Clone, Debug)]
pub enum Job {
    /// `local_thr` + `remote_thr` over TCP loopback: msg/s and Mb/s.
    TcpThr { size: usize, count: u64 },
    /// `local_lat` + `remote_lat` over TCP loopback: one-way µs.
    TcpLat { size: usize, roundtrips: u64 },
    /// `inproc_thr`: msg/s and Mb/s.
    InprocThr { size: usize, count: u64 },
    /// `inproc_lat`: one-way µs.
    InprocLat { size: usize, roundtrips: u64 },
    /// `tripping`: sync and async calls/s.
    Tripping,
    /// `mdbroker` + `workers` × `mdworker` + `client` (`mdclient` or
    /// `mdclient2`): requests per second, and the client's wall time.
    Majordomo {
        client: &'static str,
        workers: usize,
        requests: u64,
        /// Take the broker from this side but the client and workers from
        /// the reference, so only the broker differs between the columns.
        broker_only: bool,
    },
    /// `client` (`flclient2`/`flclient3`) against `servers` × `flserver2`
    /// resp. `flserver3`: the average round trip in µs.
    Freelance {
        client: &'static str,
        servers: usize,
        requests: u64,
    },
    /// `bstarsrv -p`, `bstarsrv -b`, `bstarcli`: failover time in ms.
    BinaryStar,
    /// `clonesrv5` with the bench's kvmsg clients: updates/s.
    CloneUpdates {
        publishers: usize,
        subscribers: usize,
        updates: u64,
    },
    /// `clonesrv5` holding `keys` keys: ms for a new client's snapshot.
    CloneSnapshot { keys: usize },
    /// `fileio1`…`fileio3` and a raw TCP copy of `dir/testdata`: MB/s, and
    /// fileio3 ÷ raw in %.
    FileIo { bytes: u64, dir: PathBuf },
    /// The raw TCP copy and `fileio3` of `dir/testdata`, then `fileserver`
    /// with `fileclient get` of it (zstd off and on, CURVE on) and of
    /// `dir/textdata` (zstd on): MB/s, fileclient ÷ raw and the CURVE cost
    /// in %.
    FileTransfer { bytes: u64, dir: PathBuf },
    /// `tspub` → `tssub` at `rate`: latency p50, p99, p99.9 in µs.
    PubsubLatency { rate: u64, seconds: f64 },
    /// `tspub` → `tssub`: the highest lossless rate found.
    PubsubMaxRate {
        start: u64,
        bisections: u32,
        seconds: f64,
    },
    /// `client` (`mdclient` or `mdclient2`) + `workers` × `mdworker`
    /// through the study's `broker` (our side) or the reference's
    /// `mdbroker`: requests per second, and the client's wall time. The
    /// client and workers are ours on both sides, so only the broker differs.
    BrokerMdp {
        client: &'static str,
        workers: usize,
        requests: u64,
    },
    /// `mdclient2` + `workers` × `mdworker` through our `broker`, then
    /// through our `mdbroker`: req/s of each and broker ÷ mdbroker.
    BrokerVsMdbroker { workers: usize, requests: u64 },
    /// The bench's SBP/1 client keeping `window` requests in flight to
    /// `workers` × `broker-worker` through `broker`, plain, with `--store`,
    /// with CURVE and with both: req/s of each, and store ÷ plain in %.
    BrokerSbpAsync {
        workers: usize,
        requests: u64,
        window: usize,
    },
    /// The bench's SBP/1 client, one request at a time, to one
    /// `broker-worker` through `broker`, plain and with `--store`: req/s,
    /// round trip p50 and p99 in µs of each, and store ÷ plain in %.
    BrokerSbpSync { requests: u64 },
    /// The bench's SBP/1 client keeping `window` requests in flight to
    /// `workers` × `broker-worker`, on the client's `broker`, then on a
    /// peer broker it forwards to: req/s of each (and with `window` 1 the
    /// p50 round trip of each), and via peer ÷ local in %.
    ClusterForward {
        workers: usize,
        requests: u64,
        window: usize,
    },
    /// A `broker` pair, 2 `broker-worker`s and a `broker-client` streaming
    /// `requests` requests; SIGKILL of the primary: the client's failover
    /// time in ms. Runs once per bench run, whatever `--repeat` says.
    ClusterFailover { requests: u64 },
    /// `broker-fanout count` of a `bytes` text through `broker` with 1, 2
    /// and 4 `broker-fanout worker`s: MB/s of each.
    ClusterFanout { bytes: u64 },
    /// `nodes` ZRE nodes in one process on loopback: ms to a full mesh.
    P2pMesh { nodes: usize },
    /// A SHOUT to a group of `nodes`, `messages` one at a time: p50 and
    /// p99 µs over every receipt.
    P2pShout { nodes: usize, messages: usize },
    /// `nodes` replicas of a group's map, each writing `keys` keys: ms until
    /// all hold the same map.
    P2pConverge { nodes: usize, keys: usize },
}

/// The figures of one run: a value per row of the job, plus a secondary
/// figure (Mb/s for throughput, wall seconds for Majordomo).
#[derive(Clone, Debug)]
pub struct Sample {
    pub values: Vec<f64>,
    pub secondary: Option<f64>,
}

/// Where the programs of one side come from.
pub struct Side<'a> {
    pub dir: &'a Path,
    /// The other side's folder, for `broker_only` runs (the clients and
    /// workers always come from the reference there).
    pub reference_dir: Option<&'a Path>,
    /// Our folder, on both sides: the `broker` group's MDP clients and
    /// workers always come from it.
    pub ours_dir: &'a Path,
    /// Whether this is the reference side.
    pub is_reference: bool,
}

impl Job {
    /// The programs this job needs from the side being measured.
    pub fn programs(&self) -> Vec<&'static str> {
        match self {
            Job::TcpThr { .. } => vec!["local_thr", "remote_thr"],
            Job::TcpLat { .. } => vec!["local_lat", "remote_lat"],
            Job::InprocThr { .. } => vec!["inproc_thr"],
            Job::InprocLat { .. } => vec!["inproc_lat"],
            Job::Tripping => vec!["tripping"],
            Job::Majordomo {
                client,
                broker_only: false,
                ..
            } => vec!["mdbroker", "mdworker", client],
            Job::Majordomo {
                broker_only: true, ..
            } => vec!["mdbroker"],
            Job::Freelance { client, .. } => {
                vec![
                    client,
                    if *client == "flclient2" {
                        "flserver2"
                    } else {
                        "flserver3"
                    },
                ]
            }
            Job::BinaryStar => vec!["bstarsrv", "bstarcli"],
            Job::CloneUpdates { .. } | Job::CloneSnapshot { .. } => vec!["clonesrv5"],
            Job::FileIo { .. } => crate::guide_jobs::FILEIO_PROGRAMS.to_vec(),
            Job::FileTransfer { .. } => vec!["fileio3", "fileserver", "fileclient"],
            Job::PubsubLatency { .. } | Job::PubsubMaxRate { .. } => vec!["tspub", "tssub"],
            Job::BrokerMdp { client, .. } => vec!["broker", "mdworker", client],
            Job::BrokerVsMdbroker { .. } => vec!["broker", "mdbroker", "mdworker", "mdclient2"],
            Job::BrokerSbpAsync { .. } | Job::BrokerSbpSync { .. } => {
                vec!["broker", "broker-worker"]
            }
            Job::ClusterForward { .. } => vec!["broker", "broker-worker"],
            Job::ClusterFailover { .. } => vec!["broker", "broker-worker", "broker-client"],
            Job::ClusterFanout { .. } => vec!["broker", "broker-fanout"],
            // The bench itself runs the nodes (`bench --internal-zre-…`).
            Job::P2pMesh { .. } | Job::P2pShout { .. } | Job::P2pConverge { .. } => vec![],
        }
    }

    /// How many times a bench run runs this job: `repeat`, except for the
    /// broker pair's failover, which takes about 12 s and runs once.
    pub fn rounds(&self, repeat: usize) -> usize {
        match self {
            Job::ClusterFailover { .. } => 1,
            _ => repeat,
        }
    }

    /// The programs this job needs from one side's folder: as
    /// [`Job::programs`], except that the `broker` group's MDP rows take
    /// only the broker from the reference (its C++ `mdbroker`).
    pub fn programs_on(&self, reference: bool) -> Vec<&'static str> {
        match self {
            Job::BrokerMdp { .. } if reference => vec!["mdbroker"],
            _ => self.programs(),
        }
    }

    /// Why the reference side cannot run this job the same way, if so: the
    /// row then has no reference column, and says why.
    pub fn no_reference(&self) -> Option<&'static str> {
        match self {
            Job::Freelance {
                client: "flclient3",
                ..
            } => Some(
                "no reference: the C flclient3 connects to three fixed endpoints and the C \
                 flserver3 binds one fixed port, so they cannot be run the same way",
            ),
            Job::PubsubLatency { .. } | Job::PubsubMaxRate { .. } => {
                Some("no reference: tspub/tssub are zguide-rs's own study tools")
            }
            Job::FileTransfer { .. } => {
                Some("no reference: fileserver/fileclient are the study's own tools")
            }
            Job::BrokerVsMdbroker { .. } => Some(
                "no reference: compares two programs of ours (the study's broker, the guide's \
                 mdbroker)",
            ),
            Job::BrokerSbpAsync { .. }
            | Job::BrokerSbpSync { .. }
            | Job::ClusterForward { .. }
            | Job::ClusterFailover { .. }
            | Job::ClusterFanout { .. } => Some("no reference: SBP/1 is the study's own protocol"),
            Job::P2pMesh { .. } | Job::P2pShout { .. } | Job::P2pConverge { .. } => {
                Some("no reference: zyre is not built here")
            }
            _ => None,
        }
    }

    /// Runs the job once with the programs of `side`.
    pub fn run(&self, side: &Side, timeout: Duration) -> Result<Sample, String> {
        let program = |name: &str| -> Result<PathBuf, String> {
            find_program(side.dir, name)
                .ok_or_else(|| format!("no {name} in {}", side.dir.display()))
        };
        match *self {
            Job::Freelance {
                client,
                servers,
                requests,
            } => guide_jobs::freelance(&program, client, servers, requests, timeout),
            Job::BinaryStar => guide_jobs::binarystar(&program, timeout),
            Job::CloneUpdates {
                publishers,
                subscribers,
                updates,
            } => guide_jobs::clone_updates(&program, publishers, subscribers, updates, timeout),
            Job::CloneSnapshot { keys } => guide_jobs::clone_snapshot(&program, keys, timeout),
            Job::FileIo { bytes, ref dir } => guide_jobs::fileio(&program, dir, bytes, timeout),
            Job::FileTransfer { bytes, ref dir } => {
                filetransfer_jobs::run(&program, dir, bytes, timeout)
            }
            Job::PubsubLatency { rate, seconds } => {
                guide_jobs::pubsub_latency(&program, rate, seconds, timeout)
            }
            Job::PubsubMaxRate {
                start,
                bisections,
                seconds,
            } => guide_jobs::pubsub_max_rate(&program, start, bisections, seconds, timeout),
            Job::BrokerMdp {
                client,
                workers,
                requests,
            } => {
                // Our broker against the reference's mdbroker; the client
                // and the workers are ours on both sides.
                let broker = if side.is_reference {
                    program("mdbroker")?
                } else {
                    program("broker")?
                };
                let peer = |name: &str| -> Result<PathBuf, String> {
                    find_program(side.ours_dir, name)
                        .ok_or_else(|| format!("no {name} in {}", side.ours_dir.display()))
                };
                let (rate, wall) = majordomo(&broker, &peer, client, workers, requests, timeout)?;
                Ok(Sample {
                    values: vec![rate],
                    secondary: Some(wall),
                })
            }
            Job::BrokerVsMdbroker { workers, requests } => {
                let (ours, _) = majordomo(
                    &program("broker")?,
                    &program,
                    "mdclient2",
                    workers,
                    requests,
                    timeout,
                )?;
                let (guide, _) = majordomo(
                    &program("mdbroker")?,
                    &program,
                    "mdclient2",
                    workers,
                    requests,
                    timeout,
                )?;
                Ok(Sample {
                    values: vec![ours, guide, ours / guide],
                    secondary: None,
                })
            }
            Job::BrokerSbpAsync {
                workers,
                requests,
                window,
            } => broker_jobs::sbp_async(&program, workers, requests, window, timeout),
            Job::BrokerSbpSync { requests } => broker_jobs::sbp_sync(&program, requests, timeout),
            Job::ClusterForward {
                workers,
                requests,
                window,
            } => cluster_jobs::forwarding(&program, workers, requests, window, timeout),
            Job::ClusterFailover { requests } => {
                cluster_jobs::failover(&program, requests, timeout)
            }
            Job::ClusterFanout { bytes } => cluster_jobs::fanout(&program, bytes, timeout),
            Job::P2pMesh { nodes } => p2p_jobs::mesh(nodes, timeout),
            Job::P2pShout { nodes, messages } => p2p_jobs::shout(nodes, messages, timeout),
            Job::P2pConverge { nodes, keys } => p2p_jobs::converge(nodes, keys, timeout),
            Job::TcpThr { size, count } => {
                let ns = Namespace::new()?;
                let args = perf_args(PERF_PORT, size, count);
                let mut local = ns.start("local_thr", &program("local_thr")?, &args.0, &[])?;
                ns.wait_for_port(PERF_PORT, timeout)?;
                let mut remote = ns.start("remote_thr", &program("remote_thr")?, &args.1, &[])?;
                expect_success(&mut local, timeout)?;
                expect_success(&mut remote, timeout)?;
                throughput(local.output(), size, count)
            }
            Job::TcpLat { size, roundtrips } => {
                let ns = Namespace::new()?;
                let args = perf_args(PERF_PORT, size, roundtrips);
                let mut local = ns.start("local_lat", &program("local_lat")?, &args.0, &[])?;
                // The clock starts before remote_lat connects, so it must
                // find local_lat listening, not wait for a reconnect.
                ns.wait_for_port(PERF_PORT, timeout)?;
                let mut remote = ns.start("remote_lat", &program("remote_lat")?, &args.1, &[])?;
                expect_success(&mut remote, timeout)?;
                expect_success(&mut local, timeout)?;
                latency(remote.output(), size, roundtrips)
            }
            Job::InprocThr { size, count } => {
                let args = vec![size.to_string(), count.to_string()];
                let mut tool = Proc::spawn("inproc_thr", command(&program("inproc_thr")?, &args))?;
                expect_success(&mut tool, timeout)?;
                throughput(tool.output(), size, count)
            }
            Job::InprocLat { size, roundtrips } => {
                let args = vec![size.to_string(), roundtrips.to_string()];
                let mut tool = Proc::spawn("inproc_lat", command(&program("inproc_lat")?, &args))?;
                expect_success(&mut tool, timeout)?;
                latency(tool.output(), size, roundtrips)
            }
            Job::Tripping => {
                // tripping binds tcp 5555 and 5556: its own namespace too.
                let ns = Namespace::new()?;
                let mut tool = ns.start("tripping", &program("tripping")?, &[], &[])?;
                expect_success(&mut tool, timeout)?;
                let rates = calls_per_second(tool.output());
                if rates.len() < 2 {
                    return Err(format!(
                        "tripping printed {} calls/second lines, expected 2: {}",
                        rates.len(),
                        last_lines(tool.output(), 3)
                    ));
                }
                Ok(Sample {
                    values: rates[..2].to_vec(),
                    secondary: None,
                })
            }
            Job::Majordomo {
                client,
                workers,
                requests,
                broker_only,
            } => {
                // In a broker-only row the clients and workers are the
                // reference's on both sides; only the broker changes.
                let peers_dir = if broker_only {
                    side.reference_dir
                        .ok_or("the broker-only row needs ZGUIDE_REFERENCE_BIN")?
                } else {
                    side.dir
                };
                let peer = |name: &str| -> Result<PathBuf, String> {
                    find_program(peers_dir, name)
                        .ok_or_else(|| format!("no {name} in {}", peers_dir.display()))
                };
                let (rate, wall) = majordomo(
                    &program("mdbroker")?,
                    &peer,
                    client,
                    workers,
                    requests,
                    timeout,
                )?;
                Ok(Sample {
                    values: vec![rate],
                    secondary: Some(wall),
                })
            }
        }
    }
}

/// Runs `broker` (any MDP/0.1 broker binding tcp 5555), `workers` ×
/// `mdworker` and `client` (`mdclient` or `mdclient2`, asked for
/// `requests` requests), the client and workers found by `peer`, in a fresh
/// namespace: (replies per second of the client's wall time, that wall time
/// in s).
pub fn majordomo(
    broker: &Path,
    peer: &dyn Fn(&str) -> Result<PathBuf, String>,
    client: &str,
    workers: usize,
    requests: u64,
    timeout: Duration,
) -> Result<(f64, f64), String> {
    let ns = Namespace::new()?;
    let env = [("ZGUIDE_REQUESTS", requests.to_string())];
    let _broker = ns.start("broker", broker, &[], &env)?;
    ns.wait_for_port(BROKER_PORT, timeout)?;
    let mut pool = Vec::new();
    for n in 0..workers {
        pool.push(ns.start(&format!("mdworker-{n}"), &peer("mdworker")?, &[], &env)?);
    }
    // Workers register with READY right after connecting; give them a
    // moment so the client does not time the start-up.
    std::thread::sleep(Duration::from_millis(300 + 20 * workers as u64));
    let mut client_proc = ns.start(client, &peer(client)?, &[], &env)?;
    expect_success(&mut client_proc, timeout)?;
    let wall = client_proc.wall_secs().unwrap_or(f64::NAN);
    let answered = replies(client_proc.output()).ok_or_else(|| {
        format!(
            "{client} printed no count: {}",
            last_lines(client_proc.output(), 3)
        )
    })?;
    if answered < requests {
        return Err(format!(
            "{client} got {answered} of {requests} replies: {}",
            last_lines(client_proc.output(), 3)
        ));
    }
    Ok((answered as f64 / wall, wall))
}

fn command(program: &Path, args: &[String]) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    cmd
}

/// (local args, remote args) for a perf pair on 127.0.0.1:`port`.
fn perf_args(port: u16, size: usize, count: u64) -> (Vec<String>, Vec<String>) {
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let args = |e: &str| vec![e.to_string(), size.to_string(), count.to_string()];
    (args(&endpoint), args(&endpoint))
}

/// Waits for `proc` to exit 0; any other ending is an error with its last
/// lines.
pub fn expect_success(proc: &mut Proc, timeout: Duration) -> Result<(), String> {
    match proc.wait(timeout)? {
        0 => Ok(()),
        code => Err(format!(
            "exit code {code}: {}",
            last_lines(proc.output(), 3)
        )),
    }
}

fn throughput(output: &str, size: usize, count: u64) -> Result<Sample, String> {
    let report = Report::parse(output);
    if report.message_size != Some(size) || report.message_count != Some(count) {
        return Err(format!("unexpected report: {}", last_lines(output, 4)));
    }
    match (report.messages_per_sec, report.megabits_per_sec) {
        (Some(rate), Some(megabits)) => Ok(Sample {
            values: vec![rate as f64],
            secondary: Some(megabits),
        }),
        _ => Err(format!("no throughput figures: {}", last_lines(output, 4))),
    }
}

fn latency(output: &str, size: usize, roundtrips: u64) -> Result<Sample, String> {
    let report = Report::parse(output);
    if report.message_size != Some(size) || report.roundtrip_count != Some(roundtrips) {
        return Err(format!("unexpected report: {}", last_lines(output, 3)));
    }
    report
        .latency_us
        .map(|us| Sample {
            values: vec![us],
            secondary: None,
        })
        .ok_or_else(|| format!("no latency figure: {}", last_lines(output, 3)))
}

/// The numbers of the `N calls/second` lines (C prints a leading space, the
/// C++ version does not).
pub fn calls_per_second(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter(|l| l.contains("calls/second"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The count of `N requests/replies processed` or `N replies received`.
pub fn replies(output: &str) -> Option<u64> {
    output
        .lines()
        .filter(|l| l.contains("requests/replies processed") || l.contains("replies received"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_read() {
        assert_eq!(
            calls_per_second("Setting up test...\n 5123 calls/second\n401000 calls/second\n"),
            vec![5123.0, 401000.0]
        );
        assert_eq!(replies("100000 requests/replies processed\n"), Some(100000));
        assert_eq!(replies("I: x\n99 replies received\n"), Some(99));
        assert_eq!(replies("nothing"), None);
    }
}
