//! broker-worker: an echo worker for the study broker (study part 2,
//! `../shared/spec/etude.md` §4), speaking SBP/1
//! (`zguide/broker-protocol.md`) through [`zguide::broker::worker`].
//!
//! Offers SERVICE (in `--env`, default `default`) and answers every request
//! 200 with the request's own body. Prints `I: worker ready for <service> in
//! <environment>` once it has sent READY, and with `--verbose` one line per
//! request. For tests and demonstrations it can be slow (`--delay-ms` per
//! request), fail on purpose (`--fail-every N`: every Nth request is answered
//! 500 with a reason) and stop by itself (`--exit-after N` replies).
//!
//! Heartbeats (`--heartbeat-ms`, 2.5 s; give the broker the same
//! `--heartbeat-ms`), reconnecting with back-off (1 s doubling to 32 s) after
//! the broker went silent for three heartbeats or sent DISCONNECT: all in the
//! worker API. Ctrl-C or SIGTERM ends it at once with exit code 0; it tells
//! the broker (DISCONNECT) and closes its socket with a short LINGER.
//!
//! **Several brokers.** `--connect` may be given more than once: the first
//! is the broker, the others are failover endpoints (the other broker of a
//! Binary Star pair). Each reconnect goes to the next one of the ring, so a
//! worker whose broker died, or that a passive broker turned away with
//! DISCONNECT, finds the other after the back-off. Every connect is printed
//! (stderr) as `I: worker connecting to <endpoint>`.
//!
//! Run beside it: `broker`, then `broker-client SERVICE` or any MDP client of
//! that service. Examples:
//!
//! ```text
//! broker-worker echo
//! broker-worker --env test --delay-ms 100 --verbose echo
//! broker-worker --fail-every 10 --exit-after 1000 echo
//! broker-worker --curve-keys worker_secret --curve-server-key broker echo
//! broker-worker --connect tcp://localhost:5555 --connect tcp://localhost:5565 echo
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::broker::client::load_curve;
use zguide::broker::protocol::{Properties, Status};
use zguide::broker::worker::{Worker, WorkerOptions};
use zguide::message::show;
use zguide::{interrupt, program, Error};

/// An echo worker for the study broker (SBP/1).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The service to offer.
    service: String,
    /// The broker's endpoint; again for each failover broker, tried in turn at each reconnect.
    #[arg(long = "connect", default_value = zguide::broker::DEFAULT_CONNECT)]
    connect: Vec<String>,
    /// The environment to offer it in (default: `default`).
    #[arg(long = "env")]
    environment: Option<String>,
    /// Milliseconds spent on each request before answering.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Answer every Nth request 500 (0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Exit (code 0) after this many replies (0: never).
    #[arg(long, default_value_t = 0)]
    exit_after: u64,
    /// Print one line per request.
    #[arg(short, long)]
    verbose: bool,
    /// Heartbeat interval in ms, both ways (the broker's --heartbeat-ms); 3 silent ones mean a dead broker.
    #[arg(long, default_value_t = WorkerOptions::default().heartbeat.as_millis() as u64)]
    heartbeat_ms: u64,
    /// CURVE: the broker's public key file.
    #[arg(long, requires = "curve_keys")]
    curve_server_key: Option<std::path::PathBuf>,
    /// CURVE: this worker's key pair (the `_secret` file made by curvekeys).
    #[arg(long, requires = "curve_server_key")]
    curve_keys: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run(|| run(&args))
}

fn run(args: &Args) -> Result<(), Error> {
    let options = WorkerOptions {
        endpoint: args.connect[0].clone(),
        failover: args.connect[1..].to_vec(),
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(1)),
        service: args.service.clone(),
        environment: args.environment.clone(),
        curve: load_curve(args.curve_keys.as_deref(), args.curve_server_key.as_deref())?,
        ..WorkerOptions::default()
    };
    let mut worker = Worker::new(options)?;
    println!(
        "I: worker ready for {} in {}",
        show(args.service.as_bytes()),
        show(worker.environment().as_bytes())
    );
    let mut served = 0u64;
    loop {
        let incoming = worker.recv()?; // Ctrl-C: Err(Interrupted), a clean exit
        served += 1;
        if args.verbose {
            let body: Vec<String> = incoming.request.body.iter().map(|f| show(f)).collect();
            println!(
                "I: request {} from {}: {}",
                show(&incoming.request.correlation),
                show(&incoming.client),
                body.join(" ")
            );
        }
        if args.delay_ms > 0 {
            interrupt::sleep_ms(args.delay_ms)?;
        }
        let result = if args.fail_every > 0 && served.is_multiple_of(args.fail_every) {
            let reason = format!("failed on purpose (--fail-every {})", args.fail_every);
            let properties = Properties::build(None, 0, None, false, Some(&reason));
            worker.reply(
                &incoming,
                Status::WORKER_FAILED,
                Vec::new(),
                Some(properties),
            )
        } else {
            let body = incoming.request.body.clone();
            worker.reply(&incoming, Status::OK, body, None)
        };
        match result {
            Ok(()) => {}
            // The broker stopped reading: it will be taken as gone.
            Err(Error::Timeout) => log::warn!("reply dropped: the broker takes nothing"),
            Err(e) => return Err(e),
        }
        if args.exit_after > 0 && served >= args.exit_after {
            println!("I: served {served} requests, exiting");
            // Dropping the worker sends DISCONNECT; LINGER lets both leave.
            return Ok(());
        }
    }
}
