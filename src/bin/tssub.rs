//! tssub: a subscriber that measures what it receives (study §1).
//!
//! Connects to one or more `tspub`s (`--connect` again for each), subscribes
//! to `--topic` prefixes (default: everything), and prints once a second and
//! at exit: messages per second, latency p50/p90/p99/p99.9/max from an HDR
//! histogram, and per publisher the messages received and lost (gaps in the
//! sequence, and at the end the tail the end marker reveals). `--json` gives
//! the same figures as one JSON object per line.
//!
//! `--abort-after-ms N`: a message older than N ms on arrival makes tssub
//! say so and exit with code 2 (the Suicidal Snail rule, `suisnail` §30, made
//! configurable). `--slow-us` makes it slow on purpose, for the HWM study.
//!
//! Run beside it: `tspub` (by default tssub expects one publisher and exits
//! when it ends; `--publishers 0` runs until Ctrl-C).
//!
//! Limits: inbound frames at most `--max-message-size` bytes (MAXMSGSIZE,
//! default 1 MiB); at most 10,000 (publisher, topic) sequences are tracked;
//! malformed messages are counted and dropped (details with `-v`).
//! Exit codes: 0 done or Ctrl-C, 1 an error, 2 aborted (too late).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::pubsub_stats::{self, Outcome, SubscriberSettings, SystemClock};
use zguide::{program, Error};

/// A subscriber that reports rate, latency percentiles and lost messages.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Publisher endpoints to connect to (repeat for several).
    #[arg(long, default_values_t = [pubsub_stats::DEFAULT_ENDPOINT.to_string()])]
    connect: Vec<String>,
    /// Topic prefixes to subscribe to (repeat; default: all topics).
    #[arg(long, default_values_t = [String::new()])]
    topic: Vec<String>,
    /// Exit once this many publishers have ended (0: run until Ctrl-C).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Seconds to run at most; 0: no limit.
    #[arg(long, default_value_t = 0.0)]
    duration_s: f64,
    /// A message older than this many ms on arrival aborts the run (exit 2); 0: never.
    #[arg(long, default_value_t = 0)]
    abort_after_ms: u64,
    /// Microseconds spent on each message (a slow subscriber); 0: none.
    #[arg(long, default_value_t = 0)]
    slow_us: u64,
    /// Milliseconds between reports.
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// Reports as JSON lines.
    #[arg(long)]
    json: bool,
    /// ZMQ_SNDHWM (subscriptions going out).
    #[arg(long, default_value_t = 1000)]
    sndhwm: i32,
    /// ZMQ_RCVHWM: messages queued per publisher before libzmq stops reading.
    #[arg(long, default_value_t = 1000)]
    rcvhwm: i32,
    /// ZMQ_SNDBUF in bytes; 0: the OS default.
    #[arg(long, default_value_t = 0)]
    sndbuf: i32,
    /// ZMQ_RCVBUF in bytes; 0: the OS default.
    #[arg(long, default_value_t = 0)]
    rcvbuf: i32,
    /// MAXMSGSIZE: the largest inbound frame, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_message_size: i64,
    /// Debug logging (malformed messages, subscriptions).
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut aborted = false;
    let code = program::run_logging(if args.verbose { "debug" } else { "info" }, || {
        let context = zmq::Context::new();
        let socket = pubsub_stats::subscriber_socket(
            &context,
            (args.sndhwm, args.rcvhwm),
            (args.sndbuf, args.rcvbuf),
            &args.topic,
            args.max_message_size,
        )?;
        for endpoint in &args.connect {
            socket.connect(endpoint).map_err(|source| Error::Endpoint {
                action: "connect to",
                endpoint: endpoint.clone(),
                source,
            })?;
        }
        let settings = SubscriberSettings {
            topics: args.topic.clone(),
            slow: Duration::from_micros(args.slow_us),
            abort_after: (args.abort_after_ms > 0)
                .then(|| Duration::from_millis(args.abort_after_ms)),
            report_every: Duration::from_millis(args.report_ms.max(1)),
            publishers: args.publishers,
            duration: (args.duration_s > 0.0).then(|| Duration::from_secs_f64(args.duration_s)),
            json: args.json,
        };
        let outcome = pubsub_stats::subscribe(
            &socket,
            &settings,
            &SystemClock,
            &mut std::io::stdout().lock(),
        )?;
        if let Outcome::Aborted {
            latency,
            publisher,
            seq,
            ..
        } = outcome
        {
            println!(
                "ABORT: message {seq} from {} arrived {:.1} ms after it was sent (limit {} ms)",
                zguide::message::show(publisher.as_bytes()),
                latency.as_secs_f64() * 1000.0,
                args.abort_after_ms
            );
            aborted = true;
        }
        Ok(())
    });
    if aborted {
        ExitCode::from(2)
    } else {
        code
    }
}
