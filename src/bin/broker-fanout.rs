//! broker-fanout: the broker as ventilator, the client as sink (study part
//! 3). A client fans a file out in chunks through the study broker to a
//! service's workers and gathers their answers itself, with at most
//! `--credit` chunks outstanding, as a GFS client would spread work over
//! chunk servers. What it computes is real: the word frequencies of a text
//! file, counted in parallel. SBP/1 (`zguide/broker-protocol.md`) through
//! [`zguide::broker::client`] and [`zguide::broker::worker`].
//!
//! Three subcommands:
//!
//! * `worker` offers `--service` (default `wordfreq`) and answers each
//!   request, one body frame of text, 200 with the chunk's histogram. Words
//!   are maximal runs of ASCII letters and digits, lowercased (any other
//!   byte, UTF-8 included, separates words); lines are `\n` bytes, as `wc
//!   -l` counts them. The reply's body is one frame of MessagePack, the
//!   array `[bytes, lines, [[word, count], …]]` (the words in no order, each
//!   once). A request that is not one frame of at most 1 MiB + 64 KiB
//!   ([`MAX_CHUNK`]) is answered 400. Prints `I: worker ready for <service>
//!   in <environment>` once registered and, with `--verbose`, `I: chunk
//!   <correlation> from <client>: <n> bytes` when a chunk arrives and `I:
//!   chunk <correlation> answered: <n> words, <n> distinct` once answered.
//!   Ctrl-C or SIGTERM: exit code 0.
//! * `count FILE` reads FILE as a stream and cuts it into chunks of
//!   `--chunk-size` bytes (default 1 MiB, at most 1 MiB) that end on a
//!   boundary, so that no word is cut in two: a chunk runs on past
//!   `--chunk-size` to the first newline, or failing one to the first other
//!   ASCII byte that is not a letter or digit, within the next 64 KiB
//!   ([`SLACK`]). Only a run of letters and digits longer than that is cut
//!   anyway, and is then counted as two words. Each chunk is sent as an
//!   `idempotent` request (a worker that dies with it costs nothing: the
//!   broker gives it to another worker), never more than `--credit`
//!   (default 8) read and not yet counted; the replies are matched by
//!   correlation id, checked and merged. A chunk answered with a status
//!   other than 200, or with a histogram that does not fit it (bytes and
//!   lines not the chunk's, a word that cannot be one, more word bytes than
//!   the chunk has), or given up by the client API after its own resends
//!   (`--timeout-ms`, doubling, 3 attempts), is sent again after a short
//!   pause; after 5 tries ([`MAX_TRIES`]) the count fails. At the end it
//!   prints
//!
//!   ```text
//!   I: <chunks> chunks, <bytes> bytes, <words> words, <distinct> distinct, <lines> lines in <secs> s (<MB/s> MB/s)
//!     <count> <word>
//!     …
//!   ```
//!
//!   with the `--top` words by count, then word (MB = 10^6 bytes). With
//!   `--verbose`, before that, one `I: chunk <n> at <offset>: <bytes> bytes,
//!   <words> words, try <t>` line per chunk counted, then `I: credit <c>,
//!   max outstanding <m>, retried <r>, resent <s>, duplicates <d>`. Retries
//!   are logged (`W: chunk <n> …: sending it again`). Exit code 0 on
//!   success, 1 on an error (`E: …`); Ctrl-C ends it at once with 0, as
//!   every program here, and prints no result.
//! * `gen FILE --bytes N [--seed S]` writes N bytes of English-like text,
//!   the same for the same seed on every machine: words from a fixed
//!   vocabulary of 20,000 (the 100 commonest English words, then made-up
//!   ones) drawn with a Zipf distribution, about ten to a line, with
//!   capitals, commas, full stops, numbers and now and then a word with a
//!   non-ASCII letter. The last line is cut to make N exactly (padded with spaces
//!   rather than cut inside a UTF-8 character).
//!
//! **Bounds.** The client holds at most `--credit` chunks, each twice (its
//! own copy, to send again, and the client API's), so about 2 × credit ×
//! (chunk size + 64 KiB) of text: 17 MiB by default, at most 2 × 256 ×
//! 1.06 MiB. Keep credit × chunk size under the broker's per-service queue
//! (64 MiB), or it answers 503 and the chunks are sent again. The merged
//! histogram grows with the distinct words: past `--max-distinct` (default
//! 10 million, about 1 GB at roughly 100 bytes a word) the count fails. A
//! worker's reply is at most twice its chunk plus a few bytes, so both stay
//! under the broker's 4 MiB frame limit.
//!
//! Run beside it: `broker`, and one or more `broker-fanout worker`.
//! Examples:
//!
//! ```text
//! broker-fanout gen book.txt --bytes 67108864 --seed 7
//! broker-fanout worker &  broker-fanout worker &
//! broker-fanout count book.txt                     # 1 MiB chunks, credit 8
//! broker-fanout count --chunk-size 262144 --credit 16 --top 20 --verbose book.txt
//! broker-fanout worker --env test --service wordfreq --verbose
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use zguide::broker::client::{Client, ClientOptions, Event, RequestOptions};
use zguide::broker::protocol::{Properties, Status};
use zguide::broker::server::MAX_FRAME;
use zguide::broker::worker::{Incoming, Worker, WorkerOptions};
use zguide::message::show;
use zguide::{helpers, interrupt, Error};

/// The largest `--chunk-size`.
const MAX_CHUNK_SIZE: usize = 1 << 20;
/// How far past `--chunk-size` a chunk may run to end on a boundary.
const SLACK: usize = 64 << 10;
/// The largest chunk a worker takes: `--chunk-size` at most, plus the slack.
const MAX_CHUNK: usize = MAX_CHUNK_SIZE + SLACK;
/// Tries per chunk before the count fails.
const MAX_TRIES: u32 = 5;
/// The largest `--credit`.
const MAX_CREDIT: usize = 256;
/// The first pause before a chunk whose answer was no good is sent again;
/// it doubles per try.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The broker as ventilator, the client as sink: word frequencies of a file,
/// counted in parallel by a service's workers through the study broker.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Offer the word-count service: answer each chunk with its histogram.
    Worker(WorkerArgs),
    /// Count the words of FILE through the broker's workers.
    Count(CountArgs),
    /// Write a deterministic English-like test text.
    Gen(GenArgs),
}

#[derive(clap::Args, Debug)]
struct WorkerArgs {
    /// The broker's endpoint.
    #[arg(long, default_value = zguide::broker::DEFAULT_CONNECT)]
    connect: String,
    /// The service to offer.
    #[arg(long, default_value = "wordfreq")]
    service: String,
    /// The environment to offer it in (default: `default`).
    #[arg(long = "env")]
    environment: Option<String>,
    /// Print a line when each chunk arrives and when it is answered.
    #[arg(short, long)]
    verbose: bool,
    /// For tests: milliseconds spent on each chunk before counting it.
    #[arg(long, default_value_t = 0, hide = true)]
    delay_ms: u64,
}

#[derive(clap::Args, Debug)]
struct CountArgs {
    /// The text file to count.
    file: PathBuf,
    /// The broker's endpoint.
    #[arg(long, default_value = zguide::broker::DEFAULT_CONNECT)]
    connect: String,
    /// The service to ask.
    #[arg(long, default_value = "wordfreq")]
    service: String,
    /// The environment the service lives in (default: the broker's `default`).
    #[arg(long = "env")]
    environment: Option<String>,
    /// Bytes per chunk (1 .. 1 MiB); a chunk runs on to the next boundary, at most 64 KiB more.
    #[arg(long, default_value_t = MAX_CHUNK_SIZE as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CHUNK_SIZE as u64))]
    chunk_size: u64,
    /// Chunks read and not yet counted, at most (1 .. 256).
    #[arg(long, default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CREDIT as u64))]
    credit: u64,
    /// How many of the most frequent words to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Milliseconds to wait for an answer before the client API sends a request again (doubling, 3 attempts).
    #[arg(long, default_value_t = 2500)]
    timeout_ms: u64,
    /// Distinct words the merged histogram may hold before the count fails.
    #[arg(long, default_value_t = 10_000_000)]
    max_distinct: usize,
    /// A line per chunk counted, and the flow-control figures at the end.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(clap::Args, Debug)]
struct GenArgs {
    /// Where to write the text.
    file: PathBuf,
    /// How many bytes to write.
    #[arg(long)]
    bytes: u64,
    /// The pseudo-random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Why a subcommand failed.
enum Failure {
    Zmq(Error),
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Zmq(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Zmq(e) => write!(f, "{e}"),
            Failure::Other(what) => f.write_str(what),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    helpers::init_log("info");
    interrupt::catch_signals();
    let result = match &args.command {
        Command::Worker(args) => serve(args),
        Command::Count(args) => count(args),
        Command::Gen(args) => generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Zmq(Error::Interrupted)) => {
            if matches!(args.command, Command::Count(_)) {
                log::warn!("interrupted: no result");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------ the count

/// One chunk's figures, as a worker sends them: MessagePack, the array
/// `[bytes, lines, [[word, count], …]]`.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Tally<'a> {
    bytes: u64,
    lines: u64,
    #[serde(borrow)]
    words: Vec<(&'a str, u64)>,
}

/// The words of `text` and how often each occurs (lowercased), and its
/// newlines. One pass; a word's key is made only when it is new.
fn word_counts(text: &[u8]) -> (HashMap<Box<[u8]>, u64>, u64) {
    let mut counts: HashMap<Box<[u8]>, u64> = HashMap::new();
    let mut add = |word: &[u8]| match counts.get_mut(word) {
        Some(count) => *count += 1,
        None => {
            counts.insert(word.into(), 1);
        }
    };
    let mut word: Vec<u8> = Vec::with_capacity(64);
    let mut lines = 0;
    for &byte in text {
        if byte.is_ascii_alphanumeric() {
            word.push(byte.to_ascii_lowercase());
        } else {
            lines += u64::from(byte == b'\n');
            if !word.is_empty() {
                add(&word);
                word.clear();
            }
        }
    }
    if !word.is_empty() {
        add(&word);
    }
    (counts, lines)
}

/// A worker's answer to `text`: the encoded [`Tally`], and its word count.
fn tally(text: &[u8]) -> (Vec<u8>, u64, usize) {
    let (counts, lines) = word_counts(text);
    let total = counts.values().sum();
    let tally = Tally {
        bytes: text.len() as u64,
        lines,
        // A word is ASCII letters and digits: always UTF-8.
        words: counts
            .iter()
            .filter_map(|(w, &c)| Some((std::str::from_utf8(w).ok()?, c)))
            .collect(),
    };
    // A struct of integers and strings always encodes.
    let body = rmp_serde::to_vec(&tally).unwrap_or_default();
    (body, total, counts.len())
}

/// The tally in a reply to `chunk`, checked against it: its word count, or
/// why it does not fit.
fn check<'a>(body: &'a [Vec<u8>], chunk: &Chunk) -> Result<(Tally<'a>, u64), String> {
    let [frame] = body else {
        return Err(format!("{} body frames, not 1", body.len()));
    };
    let tally: Tally = rmp_serde::from_slice(frame)
        .map_err(|e| format!("not a histogram ({e}): {}", show(frame)))?;
    if tally.bytes != chunk.data.len() as u64 || tally.lines != chunk.lines {
        return Err(format!(
            "{} bytes and {} lines, not the chunk's {} and {}",
            tally.bytes,
            tally.lines,
            chunk.data.len(),
            chunk.lines
        ));
    }
    let (mut words, mut covered) = (0u64, 0u64);
    for (word, count) in &tally.words {
        let is_word = !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !is_word || *count == 0 {
            return Err(format!(
                "{:?} × {count} is not a word count",
                show(word.as_bytes())
            ));
        }
        words = words.saturating_add(*count);
        covered = covered.saturating_add(count.saturating_mul(word.len() as u64));
    }
    if covered > tally.bytes {
        return Err(format!(
            "{covered} bytes of words in a chunk of {}",
            tally.bytes
        ));
    }
    Ok((tally, words))
}

/// A chunk of the file, read and not yet counted.
struct Chunk {
    index: u64,
    offset: u64,
    data: Vec<u8>,
    lines: u64,
    /// Sends so far.
    tries: u32,
}

/// Cuts a stream into chunks that end on a boundary (see the module docs).
struct Chunker<R> {
    reader: R,
    buffer: Vec<u8>,
    size: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    fn new(reader: R, size: usize) -> Chunker<R> {
        Chunker {
            reader,
            buffer: Vec::new(),
            size: size.max(1),
            eof: false,
        }
    }

    /// The next chunk; `None` at the end of the stream.
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let want = self.size + SLACK;
        while !self.eof && self.buffer.len() < want {
            let room = (want - self.buffer.len()) as u64;
            match (&mut self.reader).take(room).read_to_end(&mut self.buffer) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if interrupt::interrupted() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let cut = cut_point(&self.buffer, self.size, self.eof);
        let rest = self.buffer.split_off(cut);
        Ok(Some(std::mem::replace(&mut self.buffer, rest)))
    }
}

/// Where the chunk at the start of `buffer` ends: just after the first
/// newline from byte `size - 1` on, or failing one the first other ASCII
/// byte that is not a letter or digit, within [`SLACK`]; at the end of the
/// stream, the end; else `size + SLACK`, cutting a word.
fn cut_point(buffer: &[u8], size: usize, eof: bool) -> usize {
    if buffer.len() <= size {
        return buffer.len();
    }
    let start = size - 1;
    let window = &buffer[start..buffer.len().min(size + SLACK)];
    if let Some(at) = window.iter().position(|&b| b == b'\n') {
        return start + at + 1;
    }
    let boundary = |b: &u8| b.is_ascii() && !b.is_ascii_alphanumeric();
    if let Some(at) = window.iter().position(boundary) {
        return start + at + 1;
    }
    if eof && buffer.len() <= size + SLACK {
        return buffer.len();
    }
    size + SLACK
}

/// The merged histogram and totals.
#[derive(Default)]
struct Totals {
    chunks: u64,
    bytes: u64,
    lines: u64,
    words: u64,
    counts: HashMap<String, u64>,
}

impl Totals {
    /// Adds a checked tally; fails past `max_distinct` distinct words.
    fn merge(&mut self, tally: &Tally, words: u64, max_distinct: usize) -> Result<(), String> {
        for &(word, count) in &tally.words {
            match self.counts.get_mut(word) {
                Some(total) => *total = total.saturating_add(count),
                None => {
                    if self.counts.len() >= max_distinct {
                        return Err(format!(
                            "more than {max_distinct} distinct words: the histogram would not \
                             fit its bound (--max-distinct)"
                        ));
                    }
                    self.counts.insert(word.to_string(), count);
                }
            }
        }
        self.chunks += 1;
        self.bytes += tally.bytes;
        self.lines += tally.lines;
        self.words = self.words.saturating_add(words);
        Ok(())
    }

    /// The `k` commonest words, by count (highest first), then word.
    fn top(&self, k: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.counts.iter().map(|(w, &c)| (w.as_str(), c)).collect();
        let order = |a: &(&str, u64), b: &(&str, u64)| b.1.cmp(&a.1).then(a.0.cmp(b.0));
        if all.len() > k && k > 0 {
            all.select_nth_unstable_by(k - 1, order);
        }
        all.truncate(k);
        all.sort_unstable_by(order);
        all
    }
}

/// The flow-control figures of a count.
#[derive(Default)]
struct Flow {
    max_outstanding: usize,
    retried: u64,
}

fn count(args: &CountArgs) -> Result<(), Failure> {
    let file = File::open(&args.file)
        .map_err(|e| Failure::Other(format!("cannot read {}: {e}", args.file.display())))?;
    let options = ClientOptions {
        endpoint: args.connect.clone(),
        environment: args.environment.clone(),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        max_message_size: MAX_FRAME,
        ..ClientOptions::default()
    };
    let mut client = Client::new(options)?;
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut flow = Flow::default();
    fan_out(args, &mut client, file, &mut totals, &mut flow)?;
    let seconds = started.elapsed().as_secs_f64();
    if args.verbose {
        println!(
            "I: credit {}, max outstanding {}, retried {}, resent {}, duplicates {}",
            args.credit,
            flow.max_outstanding,
            flow.retried,
            client.resent(),
            client.duplicates()
        );
    }
    println!(
        "I: {} chunks, {} bytes, {} words, {} distinct, {} lines in {seconds:.2} s ({:.1} MB/s)",
        totals.chunks,
        totals.bytes,
        totals.words,
        totals.counts.len(),
        totals.lines,
        totals.bytes as f64 / 1e6 / seconds.max(1e-6)
    );
    for (word, n) in totals.top(args.top) {
        println!("  {n} {word}");
    }
    Ok(())
}

/// Reads, sends, gathers and merges until every chunk is counted.
fn fan_out(
    args: &CountArgs,
    client: &mut Client,
    file: File,
    totals: &mut Totals,
    flow: &mut Flow,
) -> Result<(), Failure> {
    let credit = args.credit as usize;
    let mut chunker = Chunker::new(io::BufReader::new(file), args.chunk_size as usize);
    let read_error =
        |e: io::Error| Failure::Other(format!("cannot read {}: {e}", args.file.display()));
    let request = RequestOptions {
        idempotent: true,
        ..RequestOptions::default()
    };
    // Sent and waiting for an answer, by correlation id.
    let mut in_flight: HashMap<Vec<u8>, Chunk> = HashMap::new();
    // To send again, each at its moment (kept in order of that moment).
    let mut again: VecDeque<(Instant, Chunk)> = VecDeque::new();
    let (mut next_index, mut offset, mut eof) = (0u64, 0u64, false);
    let send = |client: &mut Client,
                in_flight: &mut HashMap<Vec<u8>, Chunk>,
                mut chunk: Chunk|
     -> Result<(), Failure> {
        chunk.tries += 1;
        let correlation = client
            .send(&args.service, vec![chunk.data.clone()], &request)
            .map_err(|e| match e {
                Error::Timeout => Failure::Other(format!(
                    "the broker at {} takes nothing: its queue stayed full for {} ms",
                    args.connect, args.timeout_ms
                )),
                e => Failure::Zmq(e),
            })?;
        in_flight.insert(correlation, chunk);
        Ok(())
    };
    loop {
        let now = Instant::now();
        while again.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, chunk)) = again.pop_front() {
                send(client, &mut in_flight, chunk)?;
            }
        }
        // Credit: a chunk is outstanding from when it is read until it is
        // counted, in flight or waiting to be sent again.
        while !eof && in_flight.len() + again.len() < credit {
            match chunker.next_chunk().map_err(read_error)? {
                Some(data) => {
                    let chunk = Chunk {
                        index: next_index,
                        offset,
                        lines: data.iter().filter(|&&b| b == b'\n').count() as u64,
                        data,
                        tries: 0,
                    };
                    next_index += 1;
                    offset += chunk.data.len() as u64;
                    send(client, &mut in_flight, chunk)?;
                }
                None => eof = true,
            }
        }
        flow.max_outstanding = flow.max_outstanding.max(in_flight.len() + again.len());
        if eof && in_flight.is_empty() && again.is_empty() {
            return Ok(());
        }
        let mut wait = Duration::from_millis(500);
        if let Some((at, _)) = again.front() {
            wait = wait.min(at.saturating_duration_since(now));
        }
        let (correlation, failure) = match client.recv(wait)? {
            None => continue,
            Some(Event::GaveUp { correlation, .. }) => {
                (correlation, "no answer after every resend".to_string())
            }
            Some(Event::Reply(reply)) => {
                let Some(chunk) = in_flight.get(&reply.correlation) else {
                    continue; // the client API matched it: cannot happen
                };
                if reply.status != Status::OK {
                    let reason = reply.properties.reason.as_deref().unwrap_or("");
                    let why = format!("answered {:03} {}", reply.status.0, show(reason.as_bytes()));
                    (reply.correlation, why)
                } else {
                    match check(&reply.body, chunk) {
                        Ok((tally, words)) => {
                            totals
                                .merge(&tally, words, args.max_distinct)
                                .map_err(Failure::Other)?;
                            if args.verbose {
                                println!(
                                    "I: chunk {} at {}: {} bytes, {words} words, try {}",
                                    chunk.index, chunk.offset, tally.bytes, chunk.tries
                                );
                            }
                            in_flight.remove(&reply.correlation);
                            continue;
                        }
                        Err(why) => (reply.correlation, format!("a bad answer: {why}")),
                    }
                }
            }
        };
        let Some(chunk) = in_flight.remove(&correlation) else {
            continue;
        };
        if chunk.tries >= MAX_TRIES {
            return Err(Failure::Other(format!(
                "chunk {} (bytes {}..{}): {failure}, after {MAX_TRIES} tries: giving up",
                chunk.index,
                chunk.offset,
                chunk.offset + chunk.data.len() as u64
            )));
        }
        log::warn!(
            "chunk {} at {}: {failure}; sending it again (try {} of {MAX_TRIES})",
            chunk.index,
            chunk.offset,
            chunk.tries + 1
        );
        flow.retried += 1;
        let pause = RETRY_PAUSE.saturating_mul(1 << (chunk.tries - 1).min(8));
        let at = Instant::now() + pause;
        let place = again.partition_point(|(t, _)| *t <= at);
        again.insert(place, (at, chunk));
    }
}

// ------------------------------------------------------------------ the worker

fn serve(args: &WorkerArgs) -> Result<(), Failure> {
    let options = WorkerOptions {
        endpoint: args.connect.clone(),
        service: args.service.clone(),
        environment: args.environment.clone(),
        max_message_size: MAX_FRAME,
        ..WorkerOptions::default()
    };
    let mut worker = Worker::new(options)?;
    println!(
        "I: worker ready for {} in {}",
        show(args.service.as_bytes()),
        show(worker.environment().as_bytes())
    );
    loop {
        let incoming = worker.recv()?; // Ctrl-C: Err(Interrupted), a clean exit
        let correlation = show(&incoming.request.correlation);
        let body = &incoming.request.body;
        if args.verbose {
            let bytes: usize = body.iter().map(Vec::len).sum();
            println!(
                "I: chunk {correlation} from {}: {bytes} bytes",
                show(&incoming.client)
            );
        }
        if args.delay_ms > 0 {
            interrupt::sleep_ms(args.delay_ms)?;
        }
        let answered = match body.as_slice() {
            [text] if text.len() <= MAX_CHUNK => {
                let (tally, words, distinct) = tally(text);
                reply(&mut worker, &incoming, Status::OK, vec![tally], None)?;
                format!("{words} words, {distinct} distinct")
            }
            _ => {
                let reason = format!("one body frame of text, at most {MAX_CHUNK} bytes");
                reply(
                    &mut worker,
                    &incoming,
                    Status::MALFORMED,
                    vec![],
                    Some(&reason),
                )?;
                format!("400 {reason}")
            }
        };
        if args.verbose {
            println!("I: chunk {correlation} answered: {answered}");
        }
    }
}

fn reply(
    worker: &mut Worker,
    incoming: &Incoming,
    status: Status,
    body: Vec<Vec<u8>>,
    reason: Option<&str>,
) -> Result<(), Failure> {
    let properties = reason.map(|r| Properties::build(None, 0, None, false, Some(r)));
    match worker.reply(incoming, status, body, properties) {
        Ok(()) => Ok(()),
        // The broker stopped reading: it will be taken as gone.
        Err(Error::Timeout) => {
            log::warn!("reply dropped: the broker takes nothing");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

// ------------------------------------------------------------------ the text

/// The commonest English words, most frequent first; made-up words follow
/// them up to [`VOCABULARY`].
const COMMON: [&str; 100] = [
    "the", "of", "and", "to", "a", "in", "is", "you", "that", "it", "he", "was", "for", "on",
    "are", "as", "with", "his", "they", "i", "at", "be", "this", "have", "from", "or", "one",
    "had", "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said",
    "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up",
    "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
    "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number",
    "no", "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "oil",
    "its", "now", "find", "long", "down", "day", "did", "get", "come", "made", "may", "part",
];
/// Words in the generator's vocabulary.
const VOCABULARY: usize = 20_000;
/// Syllables of the made-up words: consonant and vowel, two letters each, so
/// that different numbers give different words.
const SYLLABLES: [&str; 20] = [
    "ba", "ke", "li", "mo", "nu", "ra", "se", "ti", "vo", "zu", "da", "fe", "gi", "ho", "ju", "pa",
    "qe", "wi", "xo", "yu",
];
/// Words with a non-ASCII letter, now and then.
const FOREIGN: [&str; 4] = ["café", "naïve", "Zürich", "façade"];

/// splitmix64: small, and the same on every machine and version.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The word of rank `rank` (0: the commonest).
fn vocabulary_word(rank: usize) -> String {
    if let Some(word) = COMMON.get(rank) {
        return word.to_string();
    }
    let mut n = rank - COMMON.len();
    let mut word = String::new();
    for _ in 0..2 {
        word.insert_str(0, SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    while n > 0 {
        n -= 1;
        word.insert_str(0, SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    word
}

/// Zipf: rank r drawn with weight 1 / (r + 1).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut sum = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                sum += 1.0 / (r as f64 + 1.0);
                sum
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, random: &mut Random) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = random.unit() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

/// One line of text, with its newline.
fn text_line(random: &mut Random, zipf: &Zipf, vocabulary: &[String]) -> String {
    let words = 6 + random.below(9);
    let mut line = String::new();
    for n in 0..words {
        let word = match random.below(100) {
            0 => random.below(3000).to_string(),
            1 if random.below(10) == 0 => {
                FOREIGN[random.below(FOREIGN.len() as u64) as usize].to_string()
            }
            _ => vocabulary[zipf.sample(random)].clone(),
        };
        if n == 0 {
            let mut letters = word.chars();
            if let Some(first) = letters.next() {
                line.extend(first.to_uppercase());
                line.push_str(letters.as_str());
            }
        } else {
            line.push(' ');
            line.push_str(&word);
        }
        if n + 1 < words && random.below(8) == 0 {
            line.push(',');
        }
    }
    line.push_str(".\n");
    line
}

fn generate(args: &GenArgs) -> Result<(), Failure> {
    let path = &args.file;
    let fail = |e: io::Error| Failure::Other(format!("cannot write {}: {e}", path.display()));
    let temporary = temporary_path(path);
    let result = (|| {
        let mut out = BufWriter::new(File::create(&temporary).map_err(fail)?);
        let mut random = Random(args.seed);
        let zipf = Zipf::new(VOCABULARY);
        let vocabulary: Vec<String> = (0..VOCABULARY).map(vocabulary_word).collect();
        let (mut written, mut lines) = (0u64, 0u64);
        while written < args.bytes {
            if lines.is_multiple_of(10_000) && interrupt::interrupted() {
                return Err(Failure::Zmq(Error::Interrupted));
            }
            let line = text_line(&mut random, &zipf, &vocabulary);
            let left = args.bytes - written;
            if line.len() as u64 <= left {
                out.write_all(line.as_bytes()).map_err(fail)?;
                written += line.len() as u64;
                lines += 1;
            } else {
                // The last line, cut to fit, never inside a character.
                let mut cut = left as usize;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.write_all(&line.as_bytes()[..cut]).map_err(fail)?;
                out.write_all(&b" ".repeat(left as usize - cut))
                    .map_err(fail)?;
                written += left;
            }
        }
        out.flush().map_err(fail)?;
        println!(
            "I: wrote {written} bytes, {lines} lines to {}",
            path.display()
        );
        Ok(())
    })();
    match result {
        Ok(()) => std::fs::rename(&temporary, path).map_err(fail),
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            Err(e)
        }
    }
}

/// `<path>.tmp`, beside it: renamed when whole, so a reader never sees half.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(text: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut chunker = Chunker::new(text, size);
        let mut chunks = Vec::new();
        while let Some(chunk) = chunker.next_chunk().unwrap() {
            chunks.push(chunk);
        }
        chunks
    }

    fn all_words(text: &[u8]) -> Vec<String> {
        text.split(|b| !b.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(|w| String::from_utf8_lossy(w).to_lowercase())
            .collect()
    }

    #[test]
    fn chunks_cover_the_text_end_on_boundaries_and_split_no_word() {
        let mut random = Random(3);
        let zipf = Zipf::new(VOCABULARY);
        let vocabulary: Vec<String> = (0..VOCABULARY).map(vocabulary_word).collect();
        let text: String = (0..2000)
            .map(|_| text_line(&mut random, &zipf, &vocabulary))
            .collect();
        let text = text.as_bytes();
        for size in [1, 7, 100, 4096, 1 << 20] {
            let chunks = chunks_of(text, size);
            assert_eq!(chunks.concat(), text, "size {size}");
            let mut split: Vec<String> = Vec::new();
            for (n, chunk) in chunks.iter().enumerate() {
                assert!(chunk.len() <= size + SLACK);
                if n + 1 < chunks.len() {
                    assert!(chunk.len() >= size, "only the last is short");
                    assert_eq!(chunk.last(), Some(&b'\n'), "lines here are short");
                }
                split.extend(all_words(chunk));
            }
            assert_eq!(split, all_words(text), "size {size}");
        }
    }

    #[test]
    fn without_a_newline_a_chunk_ends_at_other_punctuation_and_a_giant_word_is_cut() {
        let text = b"abc def,ghi";
        let chunks = chunks_of(text, 2);
        assert_eq!(
            chunks,
            [b"abc ".to_vec(), b"def,".to_vec(), b"ghi".to_vec()]
        );
        // Non-ASCII bytes separate words but are not cut points.
        let chunks = chunks_of("aé b".as_bytes(), 1);
        assert_eq!(chunks, ["aé ".as_bytes().to_vec(), b"b".to_vec()]);
        // A run of letters longer than the slack is cut anyway.
        let giant = vec![b'x'; 10 + SLACK + 5];
        let chunks = chunks_of(&giant, 10);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), 10 + SLACK);
        assert_eq!(chunks.concat(), giant);
        // At the end of the stream a word ends with it.
        let tail = vec![b'y'; 10 + SLACK];
        assert_eq!(chunks_of(&tail, 10), std::slice::from_ref(&tail));
    }

    #[test]
    fn words_are_runs_of_ascii_letters_and_digits_lowercased() {
        let (counts, lines) = word_counts("The the, THE!\nx1 x1\tcafé\n\n42".as_bytes());
        let mut counts: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(w, c)| (String::from_utf8_lossy(&w).into_owned(), c))
            .collect();
        counts.sort();
        let expected = [("42", 1), ("caf", 1), ("the", 3), ("x1", 2)];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(w, c)| (w.to_string(), *c)).collect();
        assert_eq!(counts, expected);
        assert_eq!(lines, 3);
    }

    fn chunk(text: &[u8]) -> Chunk {
        Chunk {
            index: 0,
            offset: 0,
            data: text.to_vec(),
            lines: text.iter().filter(|&&b| b == b'\n').count() as u64,
            tries: 1,
        }
    }

    #[test]
    fn a_tally_round_trips_and_a_bad_one_is_refused() {
        let text = b"a b a\nc";
        let (body, words, distinct) = tally(text);
        assert_eq!((words, distinct), (4, 3));
        let frames = [body.clone()];
        let (decoded, counted) = check(&frames, &chunk(text)).unwrap();
        assert_eq!(counted, 4);
        assert_eq!((decoded.bytes, decoded.lines), (7, 1));
        let bad = |tally: Tally| rmp_serde::to_vec(&tally).unwrap();
        let refused = [
            vec![],
            vec![body.clone(), body.clone()],
            vec![b"junk".to_vec()],
            vec![body[..body.len() - 1].to_vec()],
            vec![bad(Tally {
                bytes: 6,
                lines: 1,
                words: vec![("a", 1)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 0,
                words: vec![("a", 1)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 1,
                words: vec![("A", 1)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 1,
                words: vec![("", 1)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 1,
                words: vec![("a b", 1)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 1,
                words: vec![("a", 0)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 1,
                words: vec![("ab", 4)],
            })],
            vec![bad(Tally {
                bytes: 7,
                lines: 1,
                words: vec![("a", u64::MAX), ("b", 2)],
            })],
        ];
        for body in refused {
            assert!(check(&body, &chunk(text)).is_err(), "{body:?}");
        }
    }

    #[test]
    fn a_reply_is_at_most_twice_its_chunk() {
        let mut worst = String::new();
        let mut n = 0u32;
        while worst.len() < 200_000 {
            worst.push_str(&format!("{n:x} "));
            n += 1;
        }
        for text in [worst.as_str(), "a", "a b c d e f g", "x "] {
            let (body, _, _) = tally(text.as_bytes());
            assert!(
                body.len() <= 2 * text.len() + 32,
                "{} for {}",
                body.len(),
                text.len()
            );
        }
    }

    #[test]
    fn the_merge_adds_and_keeps_its_bound() {
        let mut totals = Totals::default();
        let first = Tally {
            bytes: 10,
            lines: 1,
            words: vec![("b", 2), ("a", 2)],
        };
        let second = Tally {
            bytes: 5,
            lines: 0,
            words: vec![("c", 1), ("b", 1)],
        };
        totals.merge(&first, 4, 3).unwrap();
        totals.merge(&second, 2, 3).unwrap();
        assert_eq!(
            (totals.chunks, totals.bytes, totals.lines, totals.words),
            (2, 15, 1, 6)
        );
        assert_eq!(totals.top(2), [("b", 3), ("a", 2)]);
        assert_eq!(totals.top(10), [("b", 3), ("a", 2), ("c", 1)]);
        assert!(totals.top(0).is_empty());
        let third = Tally {
            bytes: 1,
            lines: 0,
            words: vec![("d", 1)],
        };
        assert!(totals.merge(&third, 1, 3).is_err());
    }

    #[test]
    fn the_text_is_the_same_for_a_seed_and_its_vocabulary_is_distinct() {
        let zipf = Zipf::new(VOCABULARY);
        let vocabulary: Vec<String> = (0..VOCABULARY).map(vocabulary_word).collect();
        let mut unique = vocabulary.clone();
        unique.sort();
        unique.dedup();
        assert!(unique.len() > VOCABULARY - 50, "{}", unique.len());
        let lines = |seed| {
            let mut random = Random(seed);
            (0..50)
                .map(|_| text_line(&mut random, &zipf, &vocabulary))
                .collect::<String>()
        };
        assert_eq!(lines(1), lines(1));
        assert_ne!(lines(1), lines(2));
        // Pinned: the same text on every machine and version.
        let mut random = Random(1);
        assert_eq!(random.next(), 0x910a_2dec_8902_5cc1);
    }
}
