//! broker-client: a command-line client of the study broker (study part 2,
//! `../shared/spec/etude.md` §4), speaking SBP/1
//! (`zguide/broker-protocol.md`) through [`zguide::broker::client`].
//!
//! Sends `--requests` requests to SERVICE, each with the BODY frames
//! (default `hello`). By default one at a time: it waits for each reply and
//! prints one line per reply, `<correlation> <status> <body frames>` (frames
//! joined by spaces, escaped and cut to 32 bytes), with `reason=<…>` after a
//! status other than 200, or `<correlation> gave-up` when every attempt went
//! unanswered. With `--async` it sends all of them first, `--batch` at a
//! time (taking the replies already there between windows, so no queue
//! fills), then reads the rest, and prints one summary line:
//! `sent N replies N ok N failed N gave-up N duplicates N in Xs (R req/s)`
//! (and the first 10 replies that were not 200).
//!
//! A request unanswered after `--timeout-ms` is sent again with the same
//! correlation id, the wait doubling, `--retries` attempts in all.
//! `--interval-ms` spaces the requests out in time (a stream, for watching a
//! failover): the pause after each reply (sync) or after each batch
//! (`--async`), while the client keeps reading and pinging.
//!
//! **Several brokers.** `--connect` may be given more than once: the first
//! is the broker, the others are failover endpoints (the other broker of a
//! Binary Star pair), tried in turn. When the broker has been silent for
//! `--broker-ttl-ms` (6 s; the client PINGs it after `--ping-interval-ms`,
//! 2 s, without a word), the client moves to the next endpoint with the same
//! routing id, resends every pending request with its correlation id, and
//! says so on stderr: `W: broker <old> silent for <ms> ms, failing over to
//! <new>`; one request at a time, it then prints the failover time as the
//! client saw it: `I: first reply from <new> <ms> ms after the last one from
//! <old>`. With one `--connect` it keeps retrying the same broker.
//!
//! Exit code 0 if every request got a 200, 1 otherwise; Ctrl-C ends it at
//! once with 0.
//!
//! Run beside it: `broker`, and `broker-worker SERVICE` (or any MDP or SBP
//! worker of that service). Examples:
//!
//! ```text
//! broker-client echo                       # one request: "1 200 hello"
//! broker-client --requests 5 echo a b      # five, two body frames each
//! broker-client --async --requests 100000 --batch 500 echo
//! broker-client --env test --deadline-ms 1000 --priority 5 echo urgent
//! broker-client --curve-keys client_secret --curve-server-key broker echo
//! broker-client --connect tcp://localhost:5555 --connect tcp://localhost:5565 \
//!     --requests 100 --interval-ms 100 echo         # a Binary Star pair
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use zguide::broker::client::{self, Client, ClientOptions, Event, RequestOptions};
use zguide::broker::protocol::{Reply, Status};
use zguide::message::show;
use zguide::{program, Error};

/// Sends requests to a service through the study broker (SBP/1) and prints the replies.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The service to ask.
    service: String,
    /// The request's body frames.
    #[arg(default_values_t = ["hello".to_string()])]
    body: Vec<String>,
    /// The broker's endpoint; again for each failover broker, tried in turn when it goes silent.
    #[arg(long = "connect", default_value = zguide::broker::DEFAULT_CONNECT)]
    connect: Vec<String>,
    /// The environment the service lives in (default: the broker's `default`).
    #[arg(long = "env")]
    environment: Option<String>,
    /// How many requests to send.
    #[arg(long, default_value_t = 1)]
    requests: u64,
    /// Send them all before reading replies; print a summary.
    #[arg(long = "async")]
    asynchronous: bool,
    /// With --async: requests sent between looks at the replies.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Milliseconds to pause after each reply (sync) or each batch (--async), still reading replies.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Each request's deadline, milliseconds after it is sent (the broker answers 504 after it).
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Priority within the service's queue, -128..127 (higher first).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i8,
    /// The broker may give a request to another worker if its worker dies.
    #[arg(long)]
    idempotent: bool,
    /// Milliseconds to wait for a reply before sending the request again (doubles per attempt).
    #[arg(long, default_value_t = 2500)]
    timeout_ms: u64,
    /// Attempts in all before giving up on a request.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// PING the broker after this many milliseconds without a word from it.
    #[arg(long, default_value_t = client::PING_INTERVAL.as_millis() as u64)]
    ping_interval_ms: u64,
    /// Milliseconds of silence after which the broker is gone (fail over, if there is another).
    #[arg(long, default_value_t = client::BROKER_TTL.as_millis() as u64)]
    broker_ttl_ms: u64,
    /// CURVE: the broker's public key file.
    #[arg(long, requires = "curve_keys")]
    curve_server_key: Option<std::path::PathBuf>,
    /// CURVE: this client's key pair (the `_secret` file made by curvekeys).
    #[arg(long, requires = "curve_server_key")]
    curve_keys: Option<std::path::PathBuf>,
}

/// What came back, counted.
#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    failed: u64,
    gave_up: u64,
    shown_failures: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut tally = Tally::default();
    let code = program::run(|| run(&args, &mut tally));
    if code == ExitCode::SUCCESS && !zguide::interrupt::interrupted() && tally.ok < args.requests {
        ExitCode::FAILURE
    } else {
        code
    }
}

fn run(args: &Args, tally: &mut Tally) -> Result<(), Error> {
    let options = ClientOptions {
        endpoint: args.connect[0].clone(),
        failover: args.connect[1..].to_vec(),
        environment: args.environment.clone(),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        retries: args.retries,
        ping_interval: Duration::from_millis(args.ping_interval_ms.max(1)),
        broker_ttl: Duration::from_millis(args.broker_ttl_ms.max(1)),
        curve: client::load_curve(args.curve_keys.as_deref(), args.curve_server_key.as_deref())?,
        ..ClientOptions::default()
    };
    let mut client = Client::new(options)?;
    if args.asynchronous {
        let started = Instant::now();
        let result = send_all(args, &mut client, tally);
        print_summary(tally, client.duplicates(), started.elapsed());
        result
    } else {
        // For the failover time: when and from which broker the last reply came.
        let mut last_reply: Option<(Instant, String, u64)> = None;
        for n in 0..args.requests {
            if n > 0 {
                pause(args, &mut client, tally)?;
            }
            let correlation = client.send(&args.service, body(args), &request_options(args))?;
            tally.sent += 1;
            // Sync: this is the only request pending, so the next event is its own.
            let event = loop {
                if let Some(event) = client.recv(Duration::from_millis(500))? {
                    break event;
                }
            };
            match event {
                Event::Reply(reply) => {
                    println!("{}", reply_line(&reply));
                    count(tally, &reply);
                    let now = Instant::now();
                    if let Some((at, from, failovers)) = &last_reply {
                        if *failovers != client.failovers() {
                            println!(
                                "I: first reply from {} {} ms after the last one from {from}",
                                client.endpoint(),
                                now.duration_since(*at).as_millis()
                            );
                        }
                    }
                    last_reply = Some((now, client.endpoint().to_string(), client.failovers()));
                }
                Event::GaveUp { .. } => {
                    println!("{} gave-up", show(&correlation));
                    tally.gave_up += 1;
                }
            }
        }
        Ok(())
    }
}

/// `--async`: every request out, `--batch` at a time, then every reply in.
fn send_all(args: &Args, client: &mut Client, tally: &mut Tally) -> Result<(), Error> {
    while tally.sent < args.requests {
        for _ in 0..args.batch.max(1).min(args.requests - tally.sent) {
            while client.pending() >= client::MAX_PENDING {
                if let Some(event) = client.recv(Duration::from_millis(500))? {
                    take(tally, event);
                }
            }
            client.send(&args.service, body(args), &request_options(args))?;
            tally.sent += 1;
        }
        // What has come back already, so that no queue fills.
        while let Some(event) = client.recv(Duration::ZERO)? {
            take(tally, event);
        }
        if tally.sent < args.requests {
            pause(args, client, tally)?;
        }
    }
    while client.pending() > 0 {
        if let Some(event) = client.recv(Duration::from_millis(500))? {
            take(tally, event);
        }
    }
    Ok(())
}

/// `--interval-ms`: waits that long, reading replies (and pinging, failing
/// over) meanwhile.
fn pause(args: &Args, client: &mut Client, tally: &mut Tally) -> Result<(), Error> {
    let until = Instant::now() + Duration::from_millis(args.interval_ms);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        if let Some(event) = client.recv(left)? {
            take(tally, event);
        }
    }
}

fn take(tally: &mut Tally, event: Event) {
    match event {
        Event::Reply(reply) => {
            if reply.status != Status::OK && tally.shown_failures < 10 {
                tally.shown_failures += 1;
                println!("{}", reply_line(&reply));
            }
            count(tally, &reply);
        }
        Event::GaveUp { .. } => tally.gave_up += 1,
    }
}

fn count(tally: &mut Tally, reply: &Reply) {
    if reply.status == Status::OK {
        tally.ok += 1;
    } else {
        tally.failed += 1;
    }
}

fn print_summary(tally: &Tally, duplicates: u64, elapsed: Duration) {
    let replies = tally.ok + tally.failed;
    let seconds = elapsed.as_secs_f64().max(1e-6);
    println!(
        "sent {} replies {replies} ok {} failed {} gave-up {} duplicates {duplicates} in {seconds:.2}s ({:.0} req/s)",
        tally.sent,
        tally.ok,
        tally.failed,
        tally.gave_up,
        replies as f64 / seconds
    );
}

/// `<correlation> <status> <body…>`, and `reason=<…>` if not 200.
fn reply_line(reply: &Reply) -> String {
    let mut line = format!("{} {:03}", show(&reply.correlation), reply.status.0);
    for frame in &reply.body {
        line.push(' ');
        line.push_str(&show(frame));
    }
    if reply.status != Status::OK {
        let reason = reply.properties.reason.as_deref().unwrap_or("");
        line.push_str(&format!(" reason={}", show(reason.as_bytes())));
    }
    line
}

fn body(args: &Args) -> Vec<Vec<u8>> {
    args.body
        .iter()
        .map(|frame| frame.as_bytes().to_vec())
        .collect()
}

fn request_options(args: &Args) -> RequestOptions {
    RequestOptions {
        deadline: args
            .deadline_ms
            .map(|ms| SystemTime::now() + Duration::from_millis(ms)),
        priority: args.priority,
        idempotent: args.idempotent,
        correlation: None,
    }
}
