//! broker: the study's production broker (study part 2, `etude.md` §4).
//!
//! One ROUTER socket serves the guide's MDP/0.1 clients and workers
//! (`mdclient`, `mdclient2`, `mdworker`, `mmiecho`, `titanic`, `ticlient`,
//! and the C ones), MDP/0.2 peers (RFC 18, and majortomo's dialect), and the
//! study's SBP/1 (`zguide/broker-protocol.md`: properties, deadlines,
//! priorities, environments, correlation ids, status codes). Like `mdbroker`
//! it binds `tcp://*:5555` unless told otherwise, so the guide's programs
//! find it with no flags.
//!
//! Run beside it: `broker-worker echo` and `broker-client echo hello`, or
//! `mdworker` and `mdclient`; `brokerctl services` shows what it serves.
//!
//! ```text
//! broker                                        # like mdbroker, plus SBP/1 and MDP/0.2
//! broker --bind tcp://*:5555 --bind ipc:///tmp/broker.ipc   # transport bridging
//! broker --store /var/lib/broker/requests.redb  # accepted requests survive a crash
//! broker --policy payments=notify --max-queue 500
//! broker --curve-keys server.key --curve-clients clients/   # CURVE only
//! broker --metrics 127.0.0.1:9100 --survey-port 5680
//! broker --peer tcp://10.0.0.2:5555 --peer tcp://10.0.0.3:5555 --default-policy forward
//! broker --pair primary --pair-connect tcp://10.0.0.2:5556   # on 10.0.0.1
//! broker --pair backup --pair-connect tcp://10.0.0.1:5556    # on 10.0.0.2
//! ```
//!
//! A pair (study part 3, `zguide::broker::pair`): one broker serves, the
//! other keeps a replica of its accepted requests and takes over when the
//! active one dies and a client asks it (Binary Star's vote). Clients and
//! workers list both: `broker-client --connect A --connect B`.
//!
//! Where it differs from `mdbroker` on purpose: everything in the study's
//! list (the module docs of `zguide::broker::server` give the bounds and
//! what happens past each); the C-only behaviours it does not copy are the
//! ones `mdbroker`'s docs list as bugs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::broker::pair::PairOptions;
use zguide::broker::server::{self, Options};
use zguide::broker::state::{Config, Policy};
use zguide::bstar::Role;
use zguide::curve::Keys;
use zguide::{program, Error};

/// The study's broker: MDP/0.1, MDP/0.2 and SBP/1 on one socket.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Endpoint to bind (tcp, ipc or inproc); repeat for several.
    #[arg(long = "bind", default_value = zguide::broker::DEFAULT_BIND)]
    binds: Vec<String>,
    /// Print every message received.
    #[arg(short, long)]
    verbose: bool,
    /// Keep accepted SBP/1 requests in this database file (created if
    /// missing), so a crash or restart loses none.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Per-service policy when no worker is there: SERVICE=ignore|notify|forward
    /// (forward: to a --peer that has workers for it, else 503).
    #[arg(long = "policy", value_parser = parse_policy)]
    policies: Vec<(String, Policy)>,
    /// Policy of services not named by --policy.
    #[arg(long, default_value = "ignore", value_parser = parse_policy_name)]
    default_policy: Policy,
    /// Requests queued per service before new ones are answered 503.
    #[arg(long, default_value_t = Config::default().max_queue)]
    max_queue: usize,
    /// Silence, in ms, after which an idle worker is dead.
    #[arg(long, default_value_t = Config::default().worker_expiry.as_millis() as u64)]
    worker_expiry_ms: u64,
    /// Silence, in ms, after which a busy worker is dead.
    #[arg(long, default_value_t = Config::default().busy_expiry.as_millis() as u64)]
    busy_expiry_ms: u64,
    /// Heartbeat interval towards workers, in ms.
    #[arg(long, default_value_t = server::HEARTBEAT_INTERVAL.as_millis() as u64)]
    heartbeat_ms: u64,
    /// The server's CURVE key pair (a file written by `curvekeys`); turns
    /// CURVE on: plain connections are refused.
    #[arg(long, requires = "curve_clients")]
    curve_keys: Option<PathBuf>,
    /// Directory of allowed clients' public key files.
    #[arg(long, requires = "curve_keys")]
    curve_clients: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at this address (host:port).
    #[arg(long)]
    metrics: Option<String>,
    /// Answer the study's UDP surveys on this port for services with workers.
    #[arg(long)]
    survey_port: Option<u16>,
    /// A peer broker's endpoint (repeat for several): `forward` services
    /// with no worker here are served by a peer that has workers for them.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// How often each peer is asked for its capacity, in ms.
    #[arg(long, default_value_t = zguide::broker::peering::POLL_INTERVAL.as_millis() as u64)]
    peer_interval_ms: u64,
    /// Silence, in ms, after which a peer is forgotten (its requests
    /// answered 500, idempotent ones handled again).
    #[arg(long, default_value_t = zguide::broker::peering::PEER_TTL.as_millis() as u64)]
    peer_ttl_ms: u64,
    /// Run as one of a Binary Star failover pair: primary or backup.
    #[arg(long, value_parser = parse_role, requires = "pair_connect")]
    pair: Option<Role>,
    /// Where this broker listens to its pair peer.
    #[arg(long, default_value = "tcp://*:5556")]
    pair_bind: String,
    /// The pair peer's endpoint (its --pair-bind, e.g. tcp://10.0.0.2:5556).
    #[arg(long, requires = "pair")]
    pair_connect: Option<String>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "primary" => Ok(Role::Primary),
        "backup" => Ok(Role::Backup),
        other => Err(format!("{other:?}: a pair role is primary or backup")),
    }
}

fn parse_policy_name(text: &str) -> Result<Policy, String> {
    match text {
        "ignore" => Ok(Policy::Ignore),
        "notify" => Ok(Policy::Notify),
        "forward" => Ok(Policy::Forward),
        other => Err(format!("{other:?}: a policy is ignore, notify or forward")),
    }
}

fn parse_policy(text: &str) -> Result<(String, Policy), String> {
    let (service, policy) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?}: expected SERVICE=ignore|notify|forward"))?;
    Ok((service.to_string(), parse_policy_name(policy)?))
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run(|| {
        let config = Config {
            max_queue: args.max_queue,
            default_policy: args.default_policy,
            policies: args
                .policies
                .iter()
                .map(|(service, policy)| (service.clone().into_bytes(), *policy))
                .collect(),
            worker_expiry: Duration::from_millis(args.worker_expiry_ms),
            busy_expiry: Duration::from_millis(args.busy_expiry_ms),
            ..Config::default()
        };
        let curve = match (&args.curve_keys, &args.curve_clients) {
            (Some(keys), Some(clients)) => {
                let keys = Keys::load(keys)
                    .map_err(|e| Error::Protocol(format!("CURVE keys {}: {e}", keys.display())))?;
                Some((keys, clients.clone()))
            }
            _ => None,
        };
        server::run(Options {
            binds: args.binds.clone(),
            verbose: args.verbose,
            config,
            store: args.store.clone(),
            curve,
            metrics: args.metrics.clone(),
            survey_port: args.survey_port,
            heartbeat: Duration::from_millis(args.heartbeat_ms.max(10)),
            peers: args.peers.clone(),
            peer_interval: Duration::from_millis(args.peer_interval_ms.max(10)),
            peer_ttl: Duration::from_millis(args.peer_ttl_ms.max(10)),
            pair: args.pair.map(|role| PairOptions {
                role,
                bind: args.pair_bind.clone(),
                connect: args.pair_connect.clone().unwrap_or_default(),
            }),
            ..Options::default()
        })
    })
}
