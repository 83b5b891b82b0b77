//! tspub: a publisher that stamps every message (study §1, measured pub-sub).
//!
//! Sends `[topic][stamp][payload]` at `--rate` messages a second over
//! `--topics` topics (`topic0` …), each stamp a MessagePack map with this
//! publisher's name, a per-topic sequence number and the send time (see
//! [`zguide::pubsub_stats`]). It waits for `--wait-subscribers`
//! subscriptions before the first message, stops after `--duration-s` or
//! `--count`, sends one end marker per topic, and prints what it sent.
//!
//! Run beside it: `tssub` (one or several; several `tspub`s on different
//! ports can feed one `tssub`).
//!
//! `tspub --hwm-study` instead runs the high-water-mark study
//! ([`zguide::hwm_study`]): a fast publisher and a slow subscriber, once per
//! HWM, and writes `hwm-study.md` and `hwm-study.svg` under `--study-out`.
//!
//! Limits: inbound frames (subscriptions) are at most 256 bytes (MAXMSGSIZE);
//! sends never block (PUB drops for a full subscriber: that is what the study
//! measures); the end markers are repeated every 10 ms for `--end-wait-ms`; LINGER is
//! `--linger-ms`, so an exit is never held up longer than that.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::hwm_study::{self, StudySettings};
use zguide::pubsub_stats::{self, PublisherSettings, SystemClock};
use zguide::{program, Error};

/// A publisher that stamps every message with a sequence number and its send time.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Endpoint to bind.
    #[arg(long, default_value = pubsub_stats::DEFAULT_ENDPOINT)]
    bind: String,
    /// Connect to this endpoint instead of binding (e.g. an XSUB proxy).
    #[arg(long)]
    connect: Option<String>,
    /// The name in every stamp (default: tspub-<pid>).
    #[arg(long)]
    name: Option<String>,
    /// Messages per second over all topics; 0: as fast as possible.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Number of topics (topic0, topic1, …), used in turn.
    #[arg(long, default_value_t = 1)]
    topics: u32,
    /// Seconds to publish; 0: until --count or Ctrl-C.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Messages to publish; 0: no limit.
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Subscriptions to wait for before publishing (0: start at once).
    #[arg(long, default_value_t = 1)]
    wait_subscribers: u32,
    /// ZMQ_SNDHWM: messages queued per subscriber before PUB drops.
    #[arg(long, default_value_t = 1000)]
    sndhwm: i32,
    /// ZMQ_RCVHWM (subscriptions coming in).
    #[arg(long, default_value_t = 1000)]
    rcvhwm: i32,
    /// ZMQ_SNDBUF in bytes; 0: the OS default.
    #[arg(long, default_value_t = 0)]
    sndbuf: i32,
    /// ZMQ_RCVBUF in bytes; 0: the OS default.
    #[arg(long, default_value_t = 0)]
    rcvbuf: i32,
    /// LINGER in ms: how long queued messages may still go out at exit.
    #[arg(long, default_value_t = 1000)]
    linger_ms: i32,
    /// How long to keep repeating the end markers (every 10 ms: a full subscriber drops them too).
    #[arg(long, default_value_t = 1000)]
    end_wait_ms: u64,
    /// Run the HWM study instead (a fast publisher, a slow subscriber, per HWM).
    #[arg(long)]
    hwm_study: bool,
    /// Study: the HWMs to try (both ends), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    study_hwms: Vec<i32>,
    /// Study: publisher rate, messages per second.
    #[arg(long, default_value_t = 20_000)]
    study_rate: u64,
    /// Study: seconds each run publishes.
    #[arg(long, default_value_t = 2.0)]
    study_duration_s: f64,
    /// Study: microseconds the subscriber spends on each message.
    #[arg(long, default_value_t = 200)]
    study_slow_us: u64,
    /// Study: ZMQ_SNDBUF/ZMQ_RCVBUF on both ends, bytes (0: OS default;
    /// small buffers leave the HWM queues as the main store).
    #[arg(long, default_value_t = 16384)]
    study_tcp_buffer: i32,
    /// Study: where hwm-study.md and hwm-study.svg go.
    #[arg(long, default_value = "target/study")]
    study_out: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run(|| {
        if args.hwm_study {
            return study(&args);
        }
        let context = zmq::Context::new();
        let socket = pubsub_stats::publisher_socket(
            &context,
            (args.sndhwm, args.rcvhwm),
            (args.sndbuf, args.rcvbuf),
            args.linger_ms,
        )?;
        let endpoint = match &args.connect {
            Some(endpoint) => {
                socket.connect(endpoint)?;
                endpoint
            }
            None => {
                socket.bind(&args.bind).map_err(|source| Error::Endpoint {
                    action: "bind",
                    endpoint: args.bind.clone(),
                    source,
                })?;
                &args.bind
            }
        };
        let settings = PublisherSettings {
            name: args
                .name
                .clone()
                .unwrap_or_else(|| format!("tspub-{}", std::process::id())),
            rate: args.rate,
            size: args.size,
            topics: args.topics.max(1),
            duration: (args.duration_s > 0.0).then(|| Duration::from_secs_f64(args.duration_s)),
            count: (args.count > 0).then_some(args.count),
            wait_subscribers: args.wait_subscribers,
            end_wait: Duration::from_millis(args.end_wait_ms),
            done: None,
        };
        println!(
            "tspub {} on {endpoint}: {} msg/s, {} B, {} topic(s)",
            settings.name, settings.rate, settings.size, settings.topics
        );
        let report = pubsub_stats::publish(&socket, &settings, &SystemClock)?;
        println!(
            "tspub {}: sent {} messages in {:.2} s ({:.0} msg/s)",
            settings.name,
            report.sent,
            report.elapsed.as_secs_f64(),
            report.rate()
        );
        if zguide::interrupt::interrupted() {
            let _ = socket.set_linger(0);
        }
        Ok(())
    })
}

fn study(args: &Args) -> Result<(), Error> {
    let settings = StudySettings {
        hwms: args.study_hwms.clone(),
        rate: args.study_rate,
        size: args.size,
        duration: Duration::from_secs_f64(args.study_duration_s),
        slow: Duration::from_micros(args.study_slow_us),
        tcp_buffer: args.study_tcp_buffer,
    };
    println!(
        "HWM study: {} msg/s for {} s, subscriber {} us per message, HWMs {:?}",
        settings.rate,
        settings.duration.as_secs_f64(),
        settings.slow.as_micros(),
        settings.hwms
    );
    let rows = hwm_study::run(&settings, |row| {
        println!(
            "HWM {}: sent {} received {} lost {} ({:.1}%), latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            row.hwm,
            row.sent,
            row.received,
            row.lost,
            row.lost_percent(),
            row.p50_ms,
            row.p99_ms,
            row.max_ms
        );
    })?;
    let out = std::path::Path::new(&args.study_out);
    let write = |name: &str, text: String| -> Result<(), Error> {
        std::fs::create_dir_all(out)
            .and_then(|()| std::fs::write(out.join(name), text))
            .map_err(|e| Error::Protocol(format!("cannot write {}: {e}", out.join(name).display())))
    };
    write("hwm-study.md", hwm_study::table(&settings, &rows))?;
    write("hwm-study.svg", hwm_study::svg(&rows))?;
    println!(
        "wrote {0}/hwm-study.md and {0}/hwm-study.svg",
        out.display()
    );
    Ok(())
}
