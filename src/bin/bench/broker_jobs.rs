//! The `broker` group's SBP/1 runs: the study's `broker` with
//! `broker-worker` echo workers and the bench's own SBP/1 load client
//! (`bench --internal-broker-load …`, through
//! [`zguide::broker::client::Client`]), each configuration in a fresh
//! network namespace, with a fresh store file and fresh CURVE keys in a
//! temporary folder removed afterwards.
//!
//! SBP/1 is the study's own protocol: these rows have no reference column.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use zguide::broker::client::{load_curve, Client, ClientOptions, Event, RequestOptions};
use zguide::broker::protocol::Status;
use zguide::curve::{secret_path, Keys};

use crate::jobs::{expect_success, Sample};
use crate::procs::{last_lines, Namespace, Proc};

/// The broker's endpoint (its default bind, tcp 5555, as `mdbroker`'s).
const BROKER_PORT: u16 = 5555;
const ENDPOINT: &str = "tcp://127.0.0.1:5555";
/// The service the echo workers offer.
pub(crate) const SERVICE: &str = "echo";
/// Each request's body, as mdclient's.
const BODY: &[u8] = b"Hello world";
/// The prefix of the load client's figures line.
const LOAD_PREFIX: &str = "broker-load:";

/// How one SBP/1 run's broker is set up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setup {
    pub store: bool,
    pub curve: bool,
}

/// The async rows' configurations, in row order.
pub const ASYNC_SETUPS: [Setup; 4] = [
    Setup {
        store: false,
        curve: false,
    },
    Setup {
        store: true,
        curve: false,
    },
    Setup {
        store: false,
        curve: true,
    },
    Setup {
        store: true,
        curve: true,
    },
];

/// The sync rows' configurations, in row order.
pub const SYNC_SETUPS: [Setup; 2] = [ASYNC_SETUPS[0], ASYNC_SETUPS[1]];

/// What the load client measured.
#[derive(Debug, PartialEq)]
pub struct Load {
    pub requests: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Load {
    /// The figures of `broker-load: requests N seconds T p50 A p99 B`.
    pub fn parse(output: &str) -> Option<Load> {
        let line = output.lines().rfind(|l| l.starts_with(LOAD_PREFIX))?;
        let words: Vec<&str> = line[LOAD_PREFIX.len()..].split_whitespace().collect();
        let get = |name: &str| -> Option<&str> {
            let at = words.iter().position(|w| *w == name)?;
            words.get(at + 1).copied()
        };
        Some(Load {
            requests: get("requests")?.parse().ok()?,
            seconds: get("seconds")?.parse().ok()?,
            p50_us: get("p50")?.parse().ok()?,
            p99_us: get("p99")?.parse().ok()?,
        })
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// `workers` echo workers and a load client keeping `window` requests in
/// flight, `requests` in all, for each of [`ASYNC_SETUPS`]: req/s of each,
/// then store ÷ plain and CURVE + store ÷ CURVE in %.
pub fn sbp_async(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    workers: usize,
    requests: u64,
    window: usize,
    timeout: Duration,
) -> Result<Sample, String> {
    let mut rates = Vec::new();
    for setup in ASYNC_SETUPS {
        let load = sbp_run(program, setup, workers, requests, window, timeout)?;
        rates.push(load.rate());
    }
    let mut values = rates.clone();
    values.push(100.0 * rates[1] / rates[0]);
    values.push(100.0 * rates[3] / rates[2]);
    Ok(Sample {
        values,
        secondary: None,
    })
}

/// One worker and a load client sending one request at a time, `requests`
/// in all, for each of [`SYNC_SETUPS`]: req/s, p50 and p99 (µs) of each,
/// then store ÷ plain (req/s) in %.
pub fn sbp_sync(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    requests: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let mut values = Vec::new();
    for setup in SYNC_SETUPS {
        let load = sbp_run(program, setup, 1, requests, 1, timeout)?;
        values.extend([load.rate(), load.p50_us, load.p99_us]);
    }
    values.push(100.0 * values[3] / values[0]);
    Ok(Sample {
        values,
        secondary: None,
    })
}

/// A folder for one run's store file and keys, fresh, removed on drop.
pub(crate) fn scratch() -> Result<crate::RemoveOnDrop, String> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "zguide-bench-broker-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("clients"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(crate::RemoveOnDrop(dir))
}

/// CURVE key files in `dir`: `server` (+ `_secret`) for the broker, and
/// in `clients/` the pairs of the workers and of the load client (the
/// broker lets in the public keys there; it skips the secret files).
fn make_keys(dir: &Path) -> Result<(), String> {
    for name in ["server", "clients/worker", "clients/client"] {
        let keys = Keys::generate().map_err(|e| format!("CURVE keys: {e}"))?;
        let path = dir.join(name);
        keys.save(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn text(path: PathBuf) -> String {
    path.display().to_string()
}

/// The broker's arguments for `setup`, its files in `dir`.
pub fn broker_args(setup: Setup, dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if setup.store {
        args.extend(["--store".to_string(), text(dir.join("requests.redb"))]);
    }
    if setup.curve {
        args.extend([
            "--curve-keys".to_string(),
            text(secret_path(&dir.join("server"))),
            "--curve-clients".to_string(),
            text(dir.join("clients")),
        ]);
    }
    args
}

/// A worker's arguments for `setup`.
pub fn worker_args(setup: Setup, dir: &Path) -> Vec<String> {
    let mut args = vec!["--connect".to_string(), ENDPOINT.to_string()];
    if setup.curve {
        args.extend([
            "--curve-keys".to_string(),
            text(secret_path(&dir.join("clients/worker"))),
            "--curve-server-key".to_string(),
            text(dir.join("server")),
        ]);
    }
    args.push(SERVICE.to_string());
    args
}

/// One configuration: `broker`, `workers` × `broker-worker`, and the load
/// client, in a fresh namespace.
fn sbp_run(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    setup: Setup,
    workers: usize,
    requests: u64,
    window: usize,
    timeout: Duration,
) -> Result<Load, String> {
    let deadline = Instant::now() + timeout;
    let scratch = scratch()?;
    let dir = scratch.0.as_path();
    if setup.curve {
        make_keys(dir)?;
    }
    let ns = Namespace::new()?;
    let _broker = ns.start("broker", &program("broker")?, &broker_args(setup, dir), &[])?;
    ns.wait_for_port(BROKER_PORT, timeout)?;
    let worker = program("broker-worker")?;
    let mut pool: Vec<Proc> = Vec::new();
    for n in 0..workers {
        pool.push(ns.start(
            &format!("broker-worker-{n}"),
            &worker,
            &worker_args(setup, dir),
            &[],
        )?);
    }
    for proc in &mut pool {
        proc.wait_for_line("worker ready", deadline)?;
    }
    run_load(&ns, requests, window, setup.curve.then_some(dir), timeout)
}

/// Runs the load client (`--internal-broker-load`) in `ns` against the
/// broker at [`ENDPOINT`], with the CURVE keys in `curve` if given, and
/// checks that all `requests` were answered.
pub(crate) fn run_load(
    ns: &Namespace,
    requests: u64,
    window: usize,
    curve: Option<&Path>,
    timeout: Duration,
) -> Result<Load, String> {
    let curve = curve.map_or_else(|| "-".to_string(), |dir| text(dir.to_path_buf()));
    let args = vec![
        "--internal-broker-load".to_string(),
        requests.to_string(),
        window.to_string(),
        timeout.as_secs().max(1).to_string(),
        curve,
    ];
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bench itself: {e}"))?;
    let mut load = Proc::spawn("broker load", ns.command(&exe, &args))?;
    expect_success(&mut load, timeout + Duration::from_secs(10))?;
    let figures = Load::parse(load.output())
        .ok_or_else(|| format!("no broker-load line: {}", last_lines(load.output(), 3)))?;
    if figures.requests != requests || figures.seconds <= 0.0 {
        return Err(format!("broker load: unexpected figures: {figures:?}"));
    }
    Ok(figures)
}

/// The hidden mode `--internal-broker-load N WINDOW SECS CURVE_DIR|-`, run
/// inside a run's namespace; `None` if `args` is not it, else the exit code.
pub fn dispatch(args: &[String]) -> Option<i32> {
    if args.first().map(String::as_str) != Some("--internal-broker-load") {
        return None;
    }
    let number = |n: usize| -> Result<u64, String> {
        args.get(n)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("--internal-broker-load: argument {n} must be a whole number"))
    };
    let result = (|| {
        let curve = match args.get(4).map(String::as_str) {
            None | Some("-") => None,
            Some(dir) => Some(PathBuf::from(dir)),
        };
        load(
            number(1)?,
            number(2)?.max(1) as usize,
            Duration::from_secs(number(3)?),
            curve.as_deref(),
        )
    })();
    Some(match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(problem) => {
            println!("E: {problem}");
            1
        }
    })
}

/// Sends `requests` echo requests to the broker, at most `window` in
/// flight (1: one at a time, each round trip timed), after one warm-up
/// request; prints `broker-load: requests N seconds T p50 A p99 B` (T from
/// the first timed send to the last reply; p50/p99 of the round trips in
/// µs, sent to answered).
fn load(
    requests: u64,
    window: usize,
    limit: Duration,
    curve: Option<&Path>,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let curve = match curve {
        Some(dir) => load_curve(
            Some(&secret_path(&dir.join("clients/client"))),
            Some(&dir.join("server")),
        )
        .map_err(|e| e.to_string())?,
        None => None,
    };
    let mut client = Client::new(ClientOptions {
        endpoint: ENDPOINT.to_string(),
        curve,
        // No resends: a request unanswered this long is a failed run.
        timeout: limit,
        retries: 1,
        ..ClientOptions::default()
    })
    .map_err(|e| format!("client: {e}"))?;
    let none = RequestOptions::default();
    // Warm-up: the path works (CURVE handshake, a worker registered).
    let reply = client
        .request(SERVICE, vec![b"warm-up".to_vec()], &none)
        .map_err(|e| format!("warm-up request: {e}"))?;
    if reply.status != Status::OK {
        return Err(format!("warm-up request answered {:?}", reply.status));
    }
    // Let the other workers' READY reach the broker too.
    std::thread::sleep(Duration::from_millis(200));

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut sent_at: std::collections::HashMap<Vec<u8>, Instant> =
        std::collections::HashMap::with_capacity(window);
    let (mut sent, mut answered) = (0u64, 0u64);
    let started = Instant::now();
    while answered < requests {
        while sent < requests && sent_at.len() < window {
            let correlation = client
                .send(SERVICE, vec![BODY.to_vec()], &none)
                .map_err(|e| format!("send: {e}"))?;
            sent_at.insert(correlation, Instant::now());
            sent += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{answered} of {requests} replies within {limit:?}"));
        }
        match client
            .recv(left.min(Duration::from_secs(1)))
            .map_err(|e| format!("receive: {e}"))?
        {
            Some(Event::Reply(reply)) => {
                let Some(at) = sent_at.remove(&reply.correlation) else {
                    continue;
                };
                if reply.status != Status::OK {
                    return Err(format!("a request was answered {:?}", reply.status));
                }
                let us = at.elapsed().as_micros().max(1);
                let _ = histogram.record(u64::try_from(us).unwrap_or(u64::MAX));
                answered += 1;
            }
            Some(Event::GaveUp { .. }) => {
                return Err(format!(
                    "a request got no reply ({answered} of {requests} answered)"
                ))
            }
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(format!(
        "{LOAD_PREFIX} requests {answered} seconds {seconds:.6} p50 {} p99 {}",
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_line_is_read() {
        assert_eq!(
            Load::parse("I: x\nbroker-load: requests 500 seconds 0.25 p50 41 p99 97\n"),
            Some(Load {
                requests: 500,
                seconds: 0.25,
                p50_us: 41.0,
                p99_us: 97.0
            })
        );
        assert_eq!(Load::parse("broker-load: requests 500 seconds\n"), None);
        assert_eq!(Load::parse("E: warm-up request: timeout\n"), None);
        let load = Load::parse("broker-load: requests 1000 seconds 0.5 p50 1 p99 2").unwrap();
        assert_eq!(load.rate(), 2000.0);
    }

    #[test]
    fn broker_and_worker_arguments_follow_the_setup() {
        let dir = Path::new("/tmp/x");
        let plain = broker_args(ASYNC_SETUPS[0], dir);
        assert!(plain.is_empty());
        let both = broker_args(ASYNC_SETUPS[3], dir);
        assert_eq!(
            both,
            [
                "--store",
                "/tmp/x/requests.redb",
                "--curve-keys",
                "/tmp/x/server_secret",
                "--curve-clients",
                "/tmp/x/clients"
            ]
        );
        assert_eq!(
            worker_args(ASYNC_SETUPS[0], dir),
            ["--connect", ENDPOINT, SERVICE]
        );
        let curve = worker_args(ASYNC_SETUPS[2], dir);
        assert_eq!(curve.last().map(String::as_str), Some(SERVICE));
        assert!(curve.contains(&"/tmp/x/clients/worker_secret".to_string()));
        assert!(curve.contains(&"/tmp/x/server".to_string()));
        assert_eq!(SYNC_SETUPS.map(|s| s.curve), [false, false]);
        assert_eq!(SYNC_SETUPS.map(|s| s.store), [false, true]);
    }
}
