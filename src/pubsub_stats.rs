//! Measured pub-sub (study §1): timestamped messages, latency percentiles,
//! sequence gaps, an abort threshold. The library behind `tspub` and `tssub`.
//!
//! **The wire.** Every message is three frames, `[topic][stamp][payload]`:
//! the topic (a subscriber filters on it, as in `psenvpub`), a *stamp* of its
//! own, and the payload (`--size` bytes of filler). The stamp is a
//! MessagePack map [`Stamp`]: the publisher's name, a sequence number that
//! counts per publisher *and per topic* from 0 (so a subscriber that filters
//! topics still sees a gap-free sequence on the topics it gets), and the send
//! time in nanoseconds since the Unix epoch. When a publisher is done it
//! sends one *end marker* per topic, a stamp with `end: true` whose `seq` is
//! how many messages went out on that topic, so a subscriber can count the
//! messages lost at the tail too.
//!
//! **Where messages are lost.** PUB never blocks: when a subscriber's queue
//! is full (`ZMQ_SNDHWM` on the publisher's side, `ZMQ_RCVHWM` on the
//! subscriber's, plus the kernel's TCP buffers between them) libzmq drops
//! the newest messages for that subscriber. The publisher here is an XPUB
//! socket, which behaves exactly like PUB for data but lets us see the
//! subscriptions arrive, so that publishing starts only once `N` subscribers
//! are connected (no "slow joiner" loss to confuse the figures). The end
//! markers can be dropped like anything else, so they are repeated every
//! [`END_REPEAT`] for `end_wait` (a subscriber counts the first copy).
//!
//! **The figures.** [`Stats`] is pure (no I/O, the arrival time is passed
//! in): per publisher it counts messages received and lost (gaps in the
//! sequence, counted from the first message seen on each topic), and it keeps
//! two HDR histograms of latency (arrival − send time), one for the current
//! report interval and one for the whole run. Publisher and subscriber take
//! a [`Clock`], so tests can inject time.
//!
//! **Bounds.** A subscriber tracks at most [`MAX_STREAMS`] (publisher,
//! topic) pairs; past that new ones are counted as `untracked` and otherwise
//! ignored (one warning). A stamp longer than [`MAX_STAMP`] bytes, a
//! publisher name longer than [`MAX_NAME`] bytes, or a message that is not
//! three frames is dropped and counted as `malformed` (logged at debug level,
//! escaped with [`show`]). Inbound frames are limited by `MAXMSGSIZE` (the
//! caller's socket). Latencies beyond an hour are recorded as an hour.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::interrupt;
use crate::message::show;
use crate::Error;

/// How often the end markers are repeated.
pub const END_REPEAT: Duration = Duration::from_millis(10);
/// Where `tspub` binds and `tssub` connects unless told otherwise.
pub const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:5600";
/// Most (publisher, topic) sequences a subscriber tracks.
pub const MAX_STREAMS: usize = 10_000;
/// The longest stamp frame accepted, in bytes.
pub const MAX_STAMP: usize = 256;
/// The longest publisher name accepted, in bytes.
pub const MAX_NAME: usize = 64;
/// The highest latency the histograms tell apart (one hour, in ns).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// The stamp frame: who sent the message, its sequence number on its topic,
/// and when it was sent. Encoded as a MessagePack map.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    #[serde(rename = "pub")]
    pub publisher: String,
    pub seq: u64,
    /// Nanoseconds since the Unix epoch.
    pub sent_ns: u64,
    /// An end marker: `seq` is then the number of messages sent on the topic.
    #[serde(default)]
    pub end: bool,
    /// In an end marker: how many topics the publisher used (`topic_name(0)`
    /// … `topic_name(topics - 1)`), so a subscriber knows when it has heard
    /// the end of every topic it subscribed to.
    #[serde(default)]
    pub topics: u32,
}

impl Stamp {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of plain fields into a Vec cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// The stamp in `frame`, or why it is not one.
    pub fn decode(frame: &[u8]) -> Result<Stamp, String> {
        if frame.len() > MAX_STAMP {
            return Err(format!("stamp of {} bytes", frame.len()));
        }
        let stamp: Stamp =
            rmp_serde::from_slice(frame).map_err(|e| format!("bad stamp {}: {e}", show(frame)))?;
        if stamp.publisher.len() > MAX_NAME {
            return Err(format!("publisher name of {} bytes", stamp.publisher.len()));
        }
        Ok(stamp)
    }
}

/// The name of topic `index`: `topic0`, `topic1`, …
pub fn topic_name(index: u32) -> String {
    format!("topic{index}")
}

/// Where time comes from: the wall clock, or a test's.
pub trait Clock {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The system's wall clock. Publisher and subscriber must share it (one
/// host, or hosts kept in step by NTP/PTP) for latencies to mean anything.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

// ---------------------------------------------------------------------------
// Publisher

/// What a publisher sends; the flags of `tspub`.
#[derive(Clone, Debug)]
pub struct PublisherSettings {
    /// The name in every stamp (per-publisher figures are keyed on it).
    pub name: String,
    /// Messages per second over all topics; 0: as fast as possible.
    pub rate: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Topics `topic0` … used round-robin.
    pub topics: u32,
    /// Stop after this long (`None`: until `count` or Ctrl-C).
    pub duration: Option<Duration>,
    /// Stop after this many messages (`None`: no limit).
    pub count: Option<u64>,
    /// Wait for this many subscriptions before the first message.
    pub wait_subscribers: u32,
    /// How long to keep repeating the end markers.
    pub end_wait: Duration,
    /// Set by whoever knows the subscribers are done: stops the repeats early.
    pub done: Option<Arc<AtomicBool>>,
}

/// What a publisher did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublisherReport {
    pub sent: u64,
    pub elapsed: Duration,
}

impl PublisherReport {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The publisher's socket: XPUB (PUB for data, and it shows subscriptions),
/// verbose so that every subscriber's subscription is seen.
pub fn publisher_socket(
    context: &zmq::Context,
    hwm: (i32, i32),
    tcp_buffers: (i32, i32),
    linger_ms: i32,
) -> Result<zmq::Socket, Error> {
    let socket = crate::socket::new(context, zmq::XPUB)
        .send_hwm(hwm.0)
        .receive_hwm(hwm.1)
        .linger(linger_ms)
        .max_message_size(MAX_STAMP as i64) // inbound: subscriptions only
        .build()?;
    socket.set_xpub_verbose(true)?;
    set_tcp_buffers(&socket, tcp_buffers)?;
    Ok(socket)
}

/// The subscriber's socket (SUB), subscribed to `topics` ("" = all).
pub fn subscriber_socket(
    context: &zmq::Context,
    hwm: (i32, i32),
    tcp_buffers: (i32, i32),
    topics: &[String],
    max_message_size: i64,
) -> Result<zmq::Socket, Error> {
    let mut builder = crate::socket::new(context, zmq::SUB)
        .send_hwm(hwm.0)
        .receive_hwm(hwm.1)
        .max_message_size(max_message_size);
    for topic in topics {
        builder = builder.subscribe(topic.as_bytes());
    }
    let socket = builder.build()?;
    set_tcp_buffers(&socket, tcp_buffers)?;
    Ok(socket)
}

/// `ZMQ_SNDBUF`/`ZMQ_RCVBUF` in bytes; 0 leaves the OS default.
fn set_tcp_buffers(socket: &zmq::Socket, (send, receive): (i32, i32)) -> Result<(), Error> {
    if send > 0 {
        socket.set_sndbuf(send)?;
    }
    if receive > 0 {
        socket.set_rcvbuf(receive)?;
    }
    Ok(())
}

/// Publishes on an already bound or connected XPUB `socket` (see
/// [`publisher_socket`]) until `settings` says stop or Ctrl-C, then sends
/// the end markers. Ctrl-C still ends with the end markers (briefly tried)
/// and the report; it is not an error.
pub fn publish(
    socket: &zmq::Socket,
    settings: &PublisherSettings,
    clock: &dyn Clock,
) -> Result<PublisherReport, Error> {
    let topics: Vec<String> = (0..settings.topics.max(1)).map(topic_name).collect();
    if settings.wait_subscribers > 0 {
        log::info!(
            "waiting for {} subscription(s) before publishing",
            settings.wait_subscribers
        );
        let mut heard = 0;
        while heard < settings.wait_subscribers {
            if interrupt::wait_readable(socket, -1)? {
                heard += drain_subscriptions(socket)?;
            }
        }
    }
    let payload = vec![b'x'; settings.size];
    let mut seqs = vec![0u64; topics.len()];
    let start = Instant::now();
    let mut sent: u64 = 0;
    let limit = settings.count.unwrap_or(u64::MAX);
    'publishing: loop {
        let elapsed = start.elapsed();
        if settings.duration.is_some_and(|d| elapsed >= d) || sent >= limit {
            break;
        }
        // How many messages should be out by now: sending in small bursts
        // keeps the rate without a timer per message.
        let due = if settings.rate == 0 {
            sent + 1000
        } else {
            (settings.rate as u128 * elapsed.as_nanos() / 1_000_000_000) as u64 + 1
        }
        .min(limit);
        while sent < due {
            let index = (sent % topics.len() as u64) as usize;
            let stamp = Stamp {
                publisher: settings.name.clone(),
                seq: seqs[index],
                sent_ns: clock.now_ns(),
                end: false,
                topics: 0,
            };
            // PUB semantics: never blocks; a full subscriber loses this one.
            socket.send_multipart(
                [topics[index].as_bytes(), &stamp.encode(), &payload],
                zmq::DONTWAIT,
            )?;
            seqs[index] += 1;
            sent += 1;
            if interrupt::interrupted() {
                break 'publishing;
            }
        }
        drain_subscriptions(socket)?;
        if settings.rate > 0 {
            // Until the next message is due (at most a millisecond).
            let next_at = Duration::from_nanos(
                ((sent as u128 * 1_000_000_000) / settings.rate as u128) as u64,
            );
            let wait = next_at
                .saturating_sub(start.elapsed())
                .min(Duration::from_millis(1));
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        if interrupt::interrupted() {
            break;
        }
    }
    let elapsed = start.elapsed();
    let end_wait = if interrupt::interrupted() {
        Duration::from_millis(100)
    } else {
        settings.end_wait
    };
    send_end_markers(socket, settings, &topics, &seqs, clock, end_wait)?;
    Ok(PublisherReport { sent, elapsed })
}

/// Reads the subscriptions waiting on the XPUB socket; returns how many were
/// subscribes (`\x01…`; unsubscribes are `\x00…`).
fn drain_subscriptions(socket: &zmq::Socket) -> Result<u32, Error> {
    let mut subscribes = 0;
    loop {
        match socket.recv_bytes(zmq::DONTWAIT) {
            Ok(frame) => {
                if frame.first() == Some(&1) {
                    log::debug!("subscription {}", show(&frame[1..]));
                    subscribes += 1;
                }
            }
            Err(zmq::Error::EAGAIN) => return Ok(subscribes),
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The end markers, one per topic, sent again every [`END_REPEAT`] until
/// `end_wait` has passed or `settings.done` is set. Repeated because PUB
/// drops for a full subscriber like any other message (and libzmq's
/// `XPUB_NODROP` does not help: a pipe that hit its HWM is left out of the
/// send until its reader catches up, so the marker would vanish unseen).
/// A subscriber counts the first copy and ignores the rest.
fn send_end_markers(
    socket: &zmq::Socket,
    settings: &PublisherSettings,
    topics: &[String],
    seqs: &[u64],
    clock: &dyn Clock,
    end_wait: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + end_wait;
    loop {
        for (topic, &seq) in topics.iter().zip(seqs) {
            let stamp = Stamp {
                publisher: settings.name.clone(),
                seq,
                sent_ns: clock.now_ns(),
                end: true,
                topics: topics.len() as u32,
            }
            .encode();
            socket.send_multipart([topic.as_bytes(), &stamp, b""], zmq::DONTWAIT)?;
        }
        drain_subscriptions(socket)?;
        let done = settings
            .done
            .as_ref()
            .is_some_and(|done| done.load(Ordering::SeqCst));
        if done
            || Instant::now() >= deadline
            || interrupt::sleep_ms(END_REPEAT.as_millis() as u64).is_err()
        {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------
// Subscriber figures

/// One publisher's figures, as a subscriber sees them.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PublisherFigures {
    pub name: String,
    pub received: u64,
    /// Messages missing from the sequence (gaps and, once the end marker
    /// came, the tail).
    pub lost: u64,
    /// How many it sent on our topics, once all its end markers came.
    pub sent: Option<u64>,
    /// Messages that came with an earlier sequence number than expected
    /// (a duplicate, or reordering); not counted as received.
    pub out_of_order: u64,
    pub ended: bool,
}

/// Latency percentiles in microseconds.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p99_9: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
        }
    }
}

/// One report: an interval's or the whole run's (`kind` says which).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// `"interval"` or `"total"`.
    pub kind: &'static str,
    /// Seconds the report covers.
    pub seconds: f64,
    /// Messages received in that time (all publishers).
    pub messages: u64,
    pub rate: f64,
    pub latency_us: Latency,
    /// Messages lost so far (all publishers).
    pub lost: u64,
    pub malformed: u64,
    pub untracked: u64,
    pub publishers: Vec<PublisherFigures>,
}

impl Report {
    /// The report as text lines: a headline, then one line per publisher.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let mut text = format!(
            "[{}] {} messages in {:.2} s, {:.0} msg/s | latency us p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | lost {}",
            self.kind, self.messages, self.seconds, self.rate, l.p50, l.p90, l.p99, l.p99_9, l.max, self.lost
        );
        if self.malformed > 0 || self.untracked > 0 {
            text += &format!(
                " | malformed {} untracked {}",
                self.malformed, self.untracked
            );
        }
        text.push('\n');
        for p in &self.publishers {
            text += &format!(
                "  publisher {}: received {} lost {}",
                p.name, p.received, p.lost
            );
            if let Some(sent) = p.sent {
                text += &format!(" sent {sent}");
            }
            if p.out_of_order > 0 {
                text += &format!(" out-of-order {}", p.out_of_order);
            }
            if p.ended {
                text += " (ended)";
            }
            text.push('\n');
        }
        text
    }

    /// The report as one JSON line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default() + "\n"
    }
}

/// The sequence of one (publisher, topic).
struct Stream {
    next: u64,
    ended: bool,
}

/// What the subscriber learns from each message; pure (no I/O, no clock).
pub struct Stats {
    /// Topic prefixes we subscribed to, to know which end markers to expect.
    filters: Vec<Vec<u8>>,
    streams: HashMap<(String, Vec<u8>), Stream>,
    publishers: BTreeMap<String, PublisherFigures>,
    /// End markers still expected per publisher (known from its first one).
    ends_expected: HashMap<String, u32>,
    interval: Histogram<u64>,
    total: Histogram<u64>,
    interval_messages: u64,
    total_messages: u64,
    malformed: u64,
    untracked: u64,
    warned_full: bool,
}

/// What [`Stats::record`] made of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A data message; its latency in nanoseconds.
    Message { latency_ns: u64 },
    /// An end marker; true if its publisher has now ended on all our topics.
    End { publisher_done: bool },
    /// Not counted (malformed, duplicate, untracked).
    Ignored,
}

impl Stats {
    /// Figures for a subscriber subscribed to `filters` (prefixes; "" = all).
    pub fn new(filters: &[String]) -> Stats {
        let histogram = || {
            Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid")
        };
        Stats {
            filters: filters.iter().map(|f| f.as_bytes().to_vec()).collect(),
            streams: HashMap::new(),
            publishers: BTreeMap::new(),
            ends_expected: HashMap::new(),
            interval: histogram(),
            total: histogram(),
            interval_messages: 0,
            total_messages: 0,
            malformed: 0,
            untracked: 0,
            warned_full: false,
        }
    }

    /// A message of `frames` that arrived at `now_ns`.
    pub fn record(&mut self, frames: &[Vec<u8>], now_ns: u64) -> Recorded {
        let [topic, stamp, _payload] = frames else {
            self.malformed += 1;
            log::debug!("dropped a message of {} frames", frames.len());
            return Recorded::Ignored;
        };
        let stamp = match Stamp::decode(stamp) {
            Ok(stamp) => stamp,
            Err(why) => {
                self.malformed += 1;
                log::debug!("dropped a message: {why}");
                return Recorded::Ignored;
            }
        };
        let key = (stamp.publisher.clone(), topic.clone());
        if !self.streams.contains_key(&key) {
            if self.streams.len() >= MAX_STREAMS {
                if !self.warned_full {
                    log::warn!("{MAX_STREAMS} publisher topics tracked: ignoring new ones");
                    self.warned_full = true;
                }
                self.untracked += 1;
                return Recorded::Ignored;
            }
            // The first message seen on a topic starts its sequence: what
            // was sent before we subscribed is not counted as lost. An end
            // marker first means we got nothing of that topic.
            let next = if stamp.end { 0 } else { stamp.seq };
            self.streams
                .insert(key.clone(), Stream { next, ended: false });
        }
        let figures = self
            .publishers
            .entry(stamp.publisher.clone())
            .or_insert_with(|| PublisherFigures {
                name: stamp.publisher.clone(),
                ..PublisherFigures::default()
            });
        let Some(stream) = self.streams.get_mut(&key) else {
            return Recorded::Ignored;
        };
        if stamp.end {
            if stream.ended {
                return Recorded::Ignored; // a repeated end marker
            }
            stream.ended = true;
            figures.lost += stamp.seq.saturating_sub(stream.next);
            stream.next = stamp.seq;
            *figures.sent.get_or_insert(0) += stamp.seq;
            let filters = &self.filters;
            let expected = self
                .ends_expected
                .entry(stamp.publisher.clone())
                .or_insert_with(|| {
                    (0..stamp.topics)
                        .filter(|i| {
                            let name = topic_name(*i);
                            filters.iter().any(|f| name.as_bytes().starts_with(f))
                        })
                        .count() as u32
                });
            *expected = expected.saturating_sub(1);
            figures.ended = *expected == 0;
            return Recorded::End {
                publisher_done: figures.ended,
            };
        }
        if stream.ended && stamp.seq == 0 {
            // The publisher started again under the same name.
            log::info!("publisher {} restarted", show(stamp.publisher.as_bytes()));
            stream.ended = false;
            stream.next = 0;
            figures.ended = false;
        }
        if stamp.seq < stream.next {
            figures.out_of_order += 1;
            return Recorded::Ignored;
        }
        figures.lost += stamp.seq - stream.next;
        stream.next = stamp.seq + 1;
        figures.received += 1;
        let latency_ns = now_ns.saturating_sub(stamp.sent_ns);
        self.interval.saturating_record(latency_ns.max(1));
        self.total.saturating_record(latency_ns.max(1));
        self.interval_messages += 1;
        self.total_messages += 1;
        Recorded::Message { latency_ns }
    }

    /// How many publishers have ended on all our topics.
    pub fn publishers_ended(&self) -> usize {
        self.publishers.values().filter(|p| p.ended).count()
    }

    /// The report for the interval just over (`seconds` long); starts the next.
    pub fn interval_report(&mut self, seconds: f64) -> Report {
        let report = self.report("interval", seconds, &self.interval, self.interval_messages);
        self.interval.reset();
        self.interval_messages = 0;
        report
    }

    /// The report for the whole run (`seconds` long).
    pub fn total_report(&self, seconds: f64) -> Report {
        self.report("total", seconds, &self.total, self.total_messages)
    }

    fn report(
        &self,
        kind: &'static str,
        seconds: f64,
        histogram: &Histogram<u64>,
        messages: u64,
    ) -> Report {
        let publishers: Vec<PublisherFigures> = self.publishers.values().cloned().collect();
        Report {
            kind,
            seconds,
            messages,
            rate: messages as f64 / seconds.max(1e-9),
            latency_us: Latency::of(histogram),
            lost: publishers.iter().map(|p| p.lost).sum(),
            malformed: self.malformed,
            untracked: self.untracked,
            publishers,
        }
    }
}

// ---------------------------------------------------------------------------
// Subscriber loop

/// How a subscriber behaves; the flags of `tssub`.
#[derive(Clone, Debug)]
pub struct SubscriberSettings {
    /// The topic prefixes subscribed to (for the end-marker bookkeeping).
    pub topics: Vec<String>,
    /// Time spent on each message after it arrived (a slow subscriber).
    pub slow: Duration,
    /// A message older than this on arrival ends the run ([`Outcome::Aborted`]).
    pub abort_after: Option<Duration>,
    /// How often to print an interval report.
    pub report_every: Duration,
    /// Stop once this many publishers have ended (0: never).
    pub publishers: usize,
    /// Stop after this long (`None`: no limit).
    pub duration: Option<Duration>,
    /// Reports as JSON lines instead of text.
    pub json: bool,
}

/// How a subscriber's run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The expected publishers ended, the duration passed, or Ctrl-C.
    Done(Report),
    /// A message arrived later than the abort threshold.
    Aborted {
        latency: Duration,
        publisher: String,
        seq: u64,
        report: Report,
    },
}

/// Receives on an already connected SUB `socket` (see [`subscriber_socket`]),
/// printing reports to `out`, until the settings say stop, a message is too
/// late, or Ctrl-C. The total report is printed in every case.
pub fn subscribe(
    socket: &zmq::Socket,
    settings: &SubscriberSettings,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    let mut stats = Stats::new(&settings.topics);
    let start = Instant::now();
    let mut interval_start = start;
    let deadline = settings.duration.map(|d| start + d);
    let print = |out: &mut dyn Write, report: &Report| -> Result<(), Error> {
        let text = if settings.json {
            report.json()
        } else {
            report.text()
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::Protocol(format!("cannot write the report: {e}")))
    };
    // The total's time runs from the first message, not from our start.
    let mut first_message: Option<Instant> = None;
    let finish =
        |out: &mut dyn Write, stats: &Stats, first: Option<Instant>| -> Result<Report, Error> {
            let report = stats.total_report(first.map_or(0.0, |t| t.elapsed().as_secs_f64()));
            print(out, &report)?;
            Ok(report)
        };
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(Outcome::Done(finish(out, &stats, first_message)?));
        }
        let next_report = interval_start + settings.report_every;
        if now >= next_report {
            if stats.total_messages > 0 {
                let report = stats.interval_report((now - interval_start).as_secs_f64());
                print(out, &report)?;
            }
            interval_start = now;
            continue;
        }
        let wake = deadline.map_or(next_report, |d| d.min(next_report));
        let timeout = interrupt::millis(wake.saturating_duration_since(now));
        match interrupt::wait_readable(socket, timeout) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(Error::Interrupted) => {
                return Ok(Outcome::Done(finish(out, &stats, first_message)?))
            }
            Err(e) => return Err(e),
        }
        // A batch at most, so that reports stay on time under load.
        for _ in 0..1000 {
            let frames = match socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => break,
                Err(e) => return Err(e.into()),
            };
            match stats.record(&frames, clock.now_ns()) {
                Recorded::Message { latency_ns } => {
                    first_message.get_or_insert_with(Instant::now);
                    let latency = Duration::from_nanos(latency_ns);
                    if settings.abort_after.is_some_and(|limit| latency > limit) {
                        // The Suicidal Snail rule: better to stop than to go
                        // on with data this stale.
                        let stamp = Stamp::decode(&frames[1]).unwrap_or_else(|_| Stamp {
                            publisher: String::new(),
                            seq: 0,
                            sent_ns: 0,
                            end: false,
                            topics: 0,
                        });
                        let report = finish(out, &stats, first_message)?;
                        return Ok(Outcome::Aborted {
                            latency,
                            publisher: stamp.publisher,
                            seq: stamp.seq,
                            report,
                        });
                    }
                    if !settings.slow.is_zero() {
                        std::thread::sleep(settings.slow);
                    }
                }
                Recorded::End { publisher_done } => {
                    if publisher_done
                        && settings.publishers > 0
                        && stats.publishers_ended() >= settings.publishers
                    {
                        return Ok(Outcome::Done(finish(out, &stats, first_message)?));
                    }
                }
                Recorded::Ignored => {}
            }
            if interrupt::interrupted() {
                return Ok(Outcome::Done(finish(out, &stats, first_message)?));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(publisher: &str, topic: u32, seq: u64, sent_ns: u64) -> Vec<Vec<u8>> {
        let stamp = Stamp {
            publisher: publisher.into(),
            seq,
            sent_ns,
            end: false,
            topics: 0,
        };
        vec![
            topic_name(topic).into_bytes(),
            stamp.encode(),
            b"x".to_vec(),
        ]
    }

    fn end(publisher: &str, topic: u32, seq: u64, topics: u32) -> Vec<Vec<u8>> {
        let stamp = Stamp {
            publisher: publisher.into(),
            seq,
            sent_ns: 0,
            end: true,
            topics,
        };
        vec![topic_name(topic).into_bytes(), stamp.encode(), Vec::new()]
    }

    #[test]
    fn a_stamp_round_trips_as_a_messagepack_map() {
        let stamp = Stamp {
            publisher: "p".into(),
            seq: 7,
            sent_ns: 123,
            end: false,
            topics: 0,
        };
        let bytes = stamp.encode();
        assert_eq!(bytes[0] & 0xF0, 0x80, "a fixmap");
        assert_eq!(Stamp::decode(&bytes), Ok(stamp));
        assert!(Stamp::decode(b"\x01\x02").is_err());
        assert!(Stamp::decode(&[0x80; MAX_STAMP + 1]).is_err());
    }

    #[test]
    fn gaps_are_counted_per_publisher_and_topic_with_the_tail_from_the_end_marker() {
        let mut stats = Stats::new(&["".into()]);
        // A: topic0 gets 0 1 _ 3 (one gap), topic1 gets 0 1; ends at 5 and 3.
        for (topic, seq) in [(0, 0), (1, 0), (0, 1), (1, 1), (0, 3)] {
            assert!(matches!(
                stats.record(&message("A", topic, seq, 1000), 5000),
                Recorded::Message { latency_ns: 4000 }
            ));
        }
        // B: only seq 2 onwards seen (joined late): nothing lost before it.
        stats.record(&message("B", 0, 2, 0), 10);
        stats.record(&message("B", 0, 3, 0), 10);
        assert_eq!(
            stats.record(&end("A", 0, 5, 2), 0),
            Recorded::End {
                publisher_done: false
            }
        );
        assert_eq!(
            stats.record(&end("A", 1, 3, 2), 0),
            Recorded::End {
                publisher_done: true
            }
        );
        let report = stats.total_report(1.0);
        let a = &report.publishers[0];
        assert_eq!((a.received, a.lost, a.sent, a.ended), (5, 3, Some(8), true));
        assert_eq!(a.received + a.lost, a.sent.unwrap());
        let b = &report.publishers[1];
        assert_eq!((b.received, b.lost, b.ended), (2, 0, false));
        assert_eq!(report.messages, 7);
        assert_eq!(report.lost, 3);
        assert_eq!(stats.publishers_ended(), 1);
    }

    #[test]
    fn a_filtered_subscriber_expects_only_the_end_markers_of_its_topics() {
        let mut stats = Stats::new(&["topic1".into()]);
        stats.record(&message("A", 1, 0, 0), 0);
        assert_eq!(
            stats.record(&end("A", 1, 1, 3), 0),
            Recorded::End {
                publisher_done: true
            }
        );
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let mut stats = Stats::new(&["".into()]);
        for seq in 0..1000u64 {
            // Latencies 1 µs … 1000 µs.
            stats.record(&message("A", 0, seq, 0), (seq + 1) * 1000);
        }
        let report = stats.interval_report(1.0);
        let l = &report.latency_us;
        assert!((l.p50 - 500.0).abs() < 2.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 2.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 2.0, "{l:?}");
        assert_eq!(report.rate, 1000.0);
        // The next interval starts empty; the total keeps everything.
        assert_eq!(stats.interval_report(1.0).messages, 0);
        assert_eq!(stats.total_report(2.0).messages, 1000);
        assert_eq!(stats.total_report(2.0).rate, 500.0, "per second");
    }

    #[test]
    fn malformed_duplicate_and_too_many_streams_are_counted_not_recorded() {
        crate::log_limit::captured::install();
        let mut stats = Stats::new(&["".into()]);
        assert_eq!(stats.record(&[b"t".to_vec()], 0), Recorded::Ignored);
        assert_eq!(
            stats.record(&[b"t".to_vec(), b"junk".to_vec(), Vec::new()], 0),
            Recorded::Ignored
        );
        let long = "n".repeat(MAX_NAME + 1);
        assert_eq!(stats.record(&message(&long, 0, 0, 0), 0), Recorded::Ignored);
        stats.record(&message("A", 0, 5, 0), 0);
        assert_eq!(stats.record(&message("A", 0, 5, 0), 0), Recorded::Ignored);
        let report = stats.total_report(1.0);
        assert_eq!(report.malformed, 3);
        assert_eq!(report.publishers[0].out_of_order, 1);
        for n in 0..MAX_STREAMS as u64 + 5 {
            stats.record(&message(&format!("p{n}"), 0, 0, 0), 0);
        }
        assert_eq!(stats.streams.len(), MAX_STREAMS);
        assert_eq!(stats.total_report(1.0).untracked, 6);
        // One warning when the table fills, not one per message past it.
        assert_eq!(
            crate::log_limit::captured::lines_with("publisher topics tracked").len(),
            1
        );
    }

    #[test]
    fn reports_print_as_text_and_json() {
        let mut stats = Stats::new(&["".into()]);
        stats.record(&message("A", 0, 0, 0), 2000);
        let report = stats.total_report(1.0);
        let text = report.text();
        assert!(text.starts_with("[total] 1 messages in 1.00 s, 1 msg/s | latency us p50 2.0"));
        assert!(
            text.contains("\n  publisher A: received 1 lost 0\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(json["publishers"][0]["received"], 1);
        assert_eq!(json["latency_us"]["p99.9"], 2.0);
        // The optional parts show only when there is something to say.
        assert!(!text.contains("malformed") && !text.contains("out-of-order"));
        for (malformed, untracked) in [(1, 0), (0, 1)] {
            let mut odd = report.clone();
            (odd.malformed, odd.untracked) = (malformed, untracked);
            let expected = format!(" | malformed {malformed} untracked {untracked}\n");
            assert!(odd.text().contains(&expected), "{}", odd.text());
        }
        let mut odd = report.clone();
        odd.publishers[0].out_of_order = 1;
        assert!(odd.text().contains(" out-of-order 1"), "{}", odd.text());
    }

    #[test]
    fn stamps_are_bounded_at_their_sizes_and_the_clock_is_the_wall_clock() {
        // Exactly MAX_STAMP bytes are read (and found not a stamp); one
        // more is refused unread.
        let read = Stamp::decode(&[0xc1; MAX_STAMP]).unwrap_err();
        assert!(read.starts_with("bad stamp"), "{read}");
        let refused = Stamp::decode(&[0xc1; MAX_STAMP + 1]).unwrap_err();
        assert_eq!(refused, format!("stamp of {} bytes", MAX_STAMP + 1));
        let named = |length: usize| Stamp {
            publisher: "n".repeat(length),
            seq: 1,
            sent_ns: 2,
            end: false,
            topics: 0,
        };
        assert_eq!(
            Stamp::decode(&named(MAX_NAME).encode()),
            Ok(named(MAX_NAME))
        );
        assert!(Stamp::decode(&named(MAX_NAME + 1).encode()).is_err());
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(SystemClock.now_ns().abs_diff(wall) < 60_000_000_000);
        let report = PublisherReport {
            sent: 3000,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(report.rate(), 2000.0);
    }

    #[test]
    fn tcp_buffers_are_set_only_when_asked() {
        let context = zmq::Context::new();
        let set = publisher_socket(&context, (10, 10), (4096, 8192), 0).unwrap();
        assert_eq!(
            (set.get_sndbuf().unwrap(), set.get_rcvbuf().unwrap()),
            (4096, 8192)
        );
        let default = subscriber_socket(&context, (10, 10), (0, 0), &[], 1024).unwrap();
        let untouched = context.socket(zmq::SUB).unwrap();
        assert_eq!(
            (default.get_sndbuf().unwrap(), default.get_rcvbuf().unwrap()),
            (
                untouched.get_sndbuf().unwrap(),
                untouched.get_rcvbuf().unwrap()
            )
        );
    }

    /// Publishes over inproc to a SUB in the test, after waiting for it.
    fn publish_to_a_subscriber(
        settings: PublisherSettings,
    ) -> (PublisherReport, Vec<(String, Stamp)>) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let endpoint = format!("inproc://pubsub-stats-{}", N.fetch_add(1, Ordering::SeqCst));
        let context = zmq::Context::new();
        let publisher = publisher_socket(&context, (100_000, 1000), (0, 0), 0).unwrap();
        publisher.bind(&endpoint).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let settings = PublisherSettings {
            done: Some(done.clone()),
            ..settings
        };
        let publishing = std::thread::spawn(move || {
            let report = publish(&publisher, &settings, &SystemClock).unwrap();
            (report, publisher)
        });
        // The subscriber comes late (not a synchronisation: a publisher
        // that did not wait for it would have sent everything by then).
        std::thread::sleep(Duration::from_millis(200));
        let subscriber =
            subscriber_socket(&context, (100_000, 1000), (0, 0), &[String::new()], 1024).unwrap();
        subscriber.connect(&endpoint).unwrap();
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no end marker");
            if subscriber.poll(zmq::POLLIN, 100).unwrap() == 0 {
                continue;
            }
            let frames = subscriber.recv_multipart(0).unwrap();
            let stamp = Stamp::decode(&frames[1]).unwrap();
            let end = stamp.end;
            received.push((String::from_utf8(frames[0].clone()).unwrap(), stamp));
            if end {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
        let (report, _publisher) = publishing.join().unwrap();
        (report, received)
    }

    fn settings(name: &str) -> PublisherSettings {
        PublisherSettings {
            name: name.into(),
            rate: 0,
            size: 16,
            topics: 2,
            duration: None,
            count: None,
            wait_subscribers: 1,
            end_wait: Duration::from_secs(10),
            done: None,
        }
    }

    #[test]
    fn a_publisher_waits_for_its_subscriber_and_sends_count_messages_round_robin() {
        let (report, received) = publish_to_a_subscriber(PublisherSettings {
            count: Some(100),
            ..settings("counted")
        });
        assert_eq!(report.sent, 100);
        let data: Vec<&(String, Stamp)> = received.iter().filter(|(_, s)| !s.end).collect();
        assert_eq!(
            data.len(),
            100,
            "nothing lost: it waited for the subscriber"
        );
        for (n, (topic, stamp)) in data.iter().enumerate() {
            assert_eq!(topic, &topic_name(n as u32 % 2));
            assert_eq!(
                (stamp.seq, stamp.publisher.as_str()),
                (n as u64 / 2, "counted")
            );
        }
        let end = &received.last().unwrap().1;
        assert_eq!((end.end, end.topics), (true, 2));
    }

    #[test]
    fn a_publisher_keeps_its_rate_for_its_duration() {
        let (report, received) = publish_to_a_subscriber(PublisherSettings {
            rate: 1000,
            duration: Some(Duration::from_millis(500)),
            ..settings("timed")
        });
        assert!(report.elapsed >= Duration::from_millis(500), "{report:?}");
        // 1000 a second for half a second: about 500, sent in small bursts.
        assert!((400..=560).contains(&report.sent), "{report:?}");
        assert_eq!(
            received.iter().filter(|(_, s)| !s.end).count() as u64,
            report.sent
        );
    }

    #[test]
    fn a_publisher_seen_again_from_zero_after_its_end_restarted_and_a_repeat_is_out_of_order() {
        let mut stats = Stats::new(&["".into()]);
        for seq in [0, 1, 0] {
            stats.record(&message("A", 0, seq, 0), 0);
        }
        let a = &stats.total_report(1.0).publishers[0];
        assert_eq!(
            (a.received, a.out_of_order),
            (2, 1),
            "a repeat, not a restart"
        );
        stats.record(&end("A", 0, 2, 1), 0);
        assert_eq!(stats.publishers_ended(), 1);
        stats.record(&message("A", 0, 0, 0), 0);
        stats.record(&message("A", 0, 1, 0), 0);
        let a = &stats.total_report(1.0).publishers[0];
        assert_eq!((a.received, a.out_of_order, a.lost), (4, 1, 0), "{a:?}");
        assert!(!a.ended);
        assert_eq!(stats.publishers_ended(), 0);
        // Two publishers: each one's end counts.
        stats.record(&message("B", 0, 0, 0), 0);
        stats.record(&end("A", 0, 2, 1), 0);
        assert_eq!(stats.publishers_ended(), 1);
        stats.record(&end("B", 0, 1, 1), 0);
        assert_eq!(stats.publishers_ended(), 2);
    }

    #[test]
    fn drained_subscriptions_count_the_subscribes_only() {
        let context = zmq::Context::new();
        let publisher = publisher_socket(&context, (1000, 1000), (0, 0), 0).unwrap();
        publisher.bind("inproc://pubsub-stats-drain").unwrap();
        let upstream = context.socket(zmq::XSUB).unwrap();
        upstream.connect("inproc://pubsub-stats-drain").unwrap();
        for subscription in [&b"\x01a"[..], b"\x01b", b"\x00a"] {
            upstream.send(subscription, 0).unwrap();
        }
        // Drain until nothing more comes for 200 ms (however the three
        // arrive, two of them are subscribes).
        let mut subscribes = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while publisher.poll(zmq::POLLIN, 200).unwrap() > 0 {
            assert!(
                Instant::now() < deadline,
                "the subscriptions were never read"
            );
            subscribes += drain_subscriptions(&publisher).unwrap();
        }
        assert_eq!(subscribes, 2);
    }

    /// A publisher with no subscriber to wait for (XPUB drops what nobody
    /// wants), run on this thread; returns its report and the CPU time this
    /// thread used.
    fn publish_alone(settings: PublisherSettings) -> (PublisherReport, Duration) {
        let context = zmq::Context::new();
        let publisher = publisher_socket(&context, (1000, 1000), (0, 0), 0).unwrap();
        let before = crate::broker::thread_cpu();
        let report = publish(&publisher, &settings, &SystemClock).unwrap();
        (report, crate::broker::thread_cpu() - before)
    }

    #[test]
    fn a_paced_publisher_sends_its_first_message_at_once_and_sleeps_between_messages() {
        // One a second for 300 ms: the first message goes at once.
        let (report, _) = publish_alone(PublisherSettings {
            rate: 1,
            duration: Some(Duration::from_millis(300)),
            wait_subscribers: 0,
            end_wait: Duration::ZERO,
            ..settings("slow")
        });
        assert_eq!(report.sent, 1);
        // 100 a second for half a second: it sleeps until each is due; a
        // loop that spun would use the half second of CPU (or all it got).
        let (report, cpu) = publish_alone(PublisherSettings {
            rate: 100,
            duration: Some(Duration::from_millis(500)),
            wait_subscribers: 0,
            end_wait: Duration::ZERO,
            ..settings("paced")
        });
        assert!((10..=51).contains(&report.sent), "{report:?}");
        eprintln!("paced publisher: {cpu:?} of CPU in 500 ms");
        assert!(cpu < Duration::from_millis(100), "{cpu:?} of CPU in 500 ms");
    }

    #[test]
    fn end_markers_are_repeated_until_the_end_wait_has_passed() {
        let context = zmq::Context::new();
        let publisher = publisher_socket(&context, (1000, 1000), (0, 0), 0).unwrap();
        publisher.bind("inproc://pubsub-stats-ends").unwrap();
        let end_wait = Duration::from_millis(300);
        let publishing = std::thread::spawn(move || {
            let started = Instant::now();
            let settings = PublisherSettings {
                count: Some(1),
                topics: 1,
                end_wait,
                ..settings("ending")
            };
            publish(&publisher, &settings, &SystemClock).unwrap();
            started.elapsed()
        });
        let subscriber =
            subscriber_socket(&context, (1000, 1000), (0, 0), &[String::new()], 1024).unwrap();
        subscriber.connect("inproc://pubsub-stats-ends").unwrap();
        let mut copies = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !publishing.is_finished() || subscriber.poll(zmq::POLLIN, 0).unwrap() > 0 {
            if Instant::now() >= deadline {
                // The context must outlive the publishing thread's socket:
                // its drop would wait for it and hang the failing test.
                std::mem::forget(context.clone());
                panic!("the publisher never stopped");
            }
            if subscriber.poll(zmq::POLLIN, 50).unwrap() > 0 {
                let frames = subscriber.recv_multipart(0).unwrap();
                copies += usize::from(Stamp::decode(&frames[1]).unwrap().end);
            }
        }
        let elapsed = publishing.join().unwrap();
        assert!(elapsed >= end_wait, "stopped after {elapsed:?}");
        // Every 10 ms for 300 ms: about 30 copies.
        assert!(copies >= 3, "{copies} copies of the end marker");
    }

    /// A clock that always says `NOW`: latencies are then exactly what the
    /// stamps say.
    struct StoppedClock;
    const NOW: u64 = 1_000_000_000_000;
    impl Clock for StoppedClock {
        fn now_ns(&self) -> u64 {
            NOW
        }
    }

    fn subscriber_settings() -> SubscriberSettings {
        SubscriberSettings {
            topics: vec![String::new()],
            slow: Duration::ZERO,
            abort_after: None,
            report_every: Duration::from_secs(60),
            publishers: 0,
            duration: Some(Duration::from_secs(20)),
            json: false,
        }
    }

    /// Runs `subscribe` on a thread, fed `messages` by a raw XPUB once the
    /// subscription arrived; returns how it ended, what it printed and how
    /// long it ran.
    fn run_subscriber(
        settings: SubscriberSettings,
        messages: Vec<Vec<Vec<u8>>>,
    ) -> (Outcome, String, Duration) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let endpoint = format!(
            "inproc://pubsub-stats-sub-{}",
            N.fetch_add(1, Ordering::SeqCst)
        );
        let context = zmq::Context::new();
        let publisher = context.socket(zmq::XPUB).unwrap();
        publisher.bind(&endpoint).unwrap();
        let subscriber =
            subscriber_socket(&context, (1000, 1000), (0, 0), &settings.topics, 1024).unwrap();
        subscriber.connect(&endpoint).unwrap();
        assert_eq!(publisher.poll(zmq::POLLIN, 10_000).unwrap(), 1);
        publisher.recv_bytes(0).unwrap(); // the subscription: nothing fed is lost
        let running = std::thread::spawn(move || {
            let started = Instant::now();
            let mut out = Vec::new();
            let outcome = subscribe(&subscriber, &settings, &StoppedClock, &mut out).unwrap();
            (outcome, String::from_utf8(out).unwrap(), started.elapsed())
        });
        for message in messages {
            publisher.send_multipart(message, 0).unwrap();
        }
        running.join().unwrap()
    }

    fn done(outcome: Outcome) -> Report {
        match outcome {
            Outcome::Done(report) => report,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn a_subscriber_stops_once_every_expected_publisher_ended_and_not_before() {
        let (outcome, _, elapsed) = run_subscriber(
            SubscriberSettings {
                publishers: 2,
                ..subscriber_settings()
            },
            vec![
                message("A", 0, 0, NOW),
                message("B", 0, 0, NOW),
                end("A", 0, 1, 1),
                message("B", 0, 1, NOW),
                end("B", 0, 2, 1),
            ],
        );
        assert_eq!(done(outcome).messages, 3, "B's second message counted");
        // Not by its 20 s duration.
        assert!(elapsed < Duration::from_secs(10), "ran {elapsed:?}");
    }

    #[test]
    fn without_a_publisher_count_a_subscriber_runs_for_its_duration_and_reports_only_with_data() {
        let duration = Duration::from_millis(1500);
        let (outcome, printed, elapsed) = run_subscriber(
            SubscriberSettings {
                duration: Some(duration),
                report_every: Duration::from_millis(100),
                ..subscriber_settings()
            },
            vec![
                message("A", 0, 0, NOW),
                end("A", 0, 1, 1),
                message("B", 0, 0, NOW),
            ],
        );
        assert_eq!(done(outcome).messages, 2, "{printed}");
        assert!(elapsed >= duration, "ran {elapsed:?}");
        assert!(printed.contains("[interval] "), "{printed}");
        assert_eq!(
            printed.matches("[total] 2 messages").count(),
            1,
            "{printed}"
        );
        // Nothing arrives: no interval report, only the total.
        let (outcome, printed, _) = run_subscriber(
            SubscriberSettings {
                duration: Some(Duration::from_millis(500)),
                report_every: Duration::from_millis(50),
                ..subscriber_settings()
            },
            Vec::new(),
        );
        assert_eq!(done(outcome).messages, 0);
        assert_eq!(printed.lines().count(), 1, "{printed}");
        assert!(printed.starts_with("[total] 0 messages"), "{printed}");
    }

    #[test]
    fn a_message_later_than_the_abort_threshold_ends_the_run_and_one_just_at_it_does_not() {
        let (outcome, _, _) = run_subscriber(
            SubscriberSettings {
                abort_after: Some(Duration::from_millis(5)),
                publishers: 1,
                ..subscriber_settings()
            },
            vec![
                message("A", 0, 0, NOW - 5_000_000),
                message("A", 0, 1, NOW - 5_000_001),
                end("A", 0, 2, 1),
            ],
        );
        match outcome {
            Outcome::Aborted {
                latency,
                publisher,
                seq,
                report,
            } => {
                assert_eq!(
                    (latency, publisher.as_str(), seq),
                    (Duration::from_nanos(5_000_001), "A", 1)
                );
                assert_eq!(report.messages, 2);
            }
            other => panic!("not aborted: {other:?}"),
        }
    }

    #[test]
    fn a_slow_subscriber_spends_its_time_on_every_message() {
        let mut messages: Vec<_> = (0..4).map(|seq| message("A", 0, seq, NOW)).collect();
        messages.push(end("A", 0, 4, 1));
        let (outcome, _, elapsed) = run_subscriber(
            SubscriberSettings {
                slow: Duration::from_millis(25),
                publishers: 1,
                ..subscriber_settings()
            },
            messages,
        );
        assert_eq!(done(outcome).messages, 4);
        assert!(elapsed >= Duration::from_millis(100), "ran {elapsed:?}");
    }
}
