//! The Paranoid Pirate Protocol (§25, RFC 6/PPP), the Pirate queues' shared
//! mechanics, and the Pirates' simulated failures.
//!
//! PPP is the smallest protocol that makes a queue and its workers notice each
//! other's death: a worker says READY (`0x01`) once per connection, both sides
//! send HEARTBEAT (`0x02`) every second, and everything else is a request or a
//! reply wrapped in the client's envelope. The wire is so small that the only
//! way to tell a command from work is the frame count (1 frame: command,
//! 3 frames: `[client][""][body]`), which is why the checks here look at sizes
//! first. Every check returns a value saying what was wrong, never panics: a
//! queue logs it (bounded, through [`Message::summary`]) and carries on.
//!
//! **Two dialects.** The guide's C++ Pirates (`spqueue.cpp`, `spworker.cpp`,
//! `ppqueue.cpp`, `ppworker.cpp`) spell the commands as text: `READY` and
//! `HEARTBEAT` (5 and 9 bytes, no NUL). A C or Rust worker's `0x01` means
//! nothing to a C++ queue and vice versa. [`Dialect`] names both spellings:
//! our queues accept either and answer each worker in the dialect it spoke
//! (a [`Worker`] remembers it); our workers speak PPP unless started with
//! `--cpp` ([`Dialect::from_args`]). A C++ queue also routes by the worker's
//! identity *as a C string*, so a worker in the C++ dialect takes a printable
//! identity, as `s_set_id` gives the C++ workers.
//!
//! **Queue mechanics both Pirate queues share:** [`split_worker_message`]
//! (whose message is it, and what does it say), [`dispatch`] (a request to the
//! longest-waiting worker, skipping workers whose connection is gone),
//! [`MAX_WORKERS`] (the bound on the ready list) and [`Window`](crate::log_limit::Window) (a warning
//! that a peer can trigger at will is logged at most once a second, with a
//! count).
//!
//! The timing constants are the C ones; the timing logic itself lives in
//! [`crate::heartbeat`] so that Majordomo reuses it.
//!
//! [`FaultSimulator`] is the "simulate a crash / CPU overload after a few
//! cycles" code that `lpserver`, `spworker` and `ppworker` share, with a switch
//! (`ZGUIDE_SIMULATE`) that makes it deterministic for tests.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::heartbeat::{Readiness, ReadyList};
use crate::log_limit::Window;
use crate::message::show;
use crate::{envelope, helpers, Error, Message};

/// READY: the first message a worker sends on a new connection.
pub const READY: &[u8] = b"\x01";
/// HEARTBEAT: "I am still here", sent both ways every [`HEARTBEAT_INTERVAL`].
pub const HEARTBEAT: &[u8] = b"\x02";
/// READY as the C++ Pirates spell it.
pub const CPP_READY: &[u8] = b"READY";
/// HEARTBEAT as the C++ Pirates spell it.
pub const CPP_HEARTBEAT: &[u8] = b"HEARTBEAT";

/// Silent intervals before a peer counts as dead (C: 3, "3-5 is reasonable").
pub const HEARTBEAT_LIVENESS: u32 = 3;
/// Time between heartbeats, on both sides.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// First reconnect delay of a worker that lost its queue.
pub const INTERVAL_INIT: Duration = Duration::from_millis(1000);
/// The reconnect delay stops doubling here.
pub const INTERVAL_MAX: Duration = Duration::from_millis(32000);

/// The most workers a Pirate queue keeps in its ready list (the C++
/// `spqueue`'s `MAX_WORKERS`, which asserts past it). A Pirate runs "a few"
/// workers; the bound only stops a peer from growing the list without end by
/// connecting, saying READY and going away, over and over. Past it the
/// longest-waiting worker is forgotten to make room (see [`ReadyList`]).
pub const MAX_WORKERS: usize = 100;

/// How READY and HEARTBEAT are spelled on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 6/PPP and the C examples: the bytes `0x01` and `0x02`.
    Ppp,
    /// The guide's C++ examples: the text `READY` and `HEARTBEAT`.
    Cpp,
}

impl Dialect {
    /// This dialect's READY frame.
    pub fn ready(self) -> &'static [u8] {
        match self {
            Dialect::Ppp => READY,
            Dialect::Cpp => CPP_READY,
        }
    }

    /// This dialect's HEARTBEAT frame.
    pub fn heartbeat(self) -> &'static [u8] {
        match self {
            Dialect::Ppp => HEARTBEAT,
            Dialect::Cpp => CPP_HEARTBEAT,
        }
    }

    /// The dialect a worker's command line asks for: `--cpp` for the C++
    /// one, else PPP.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Dialect {
        if args.into_iter().any(|arg| arg == "--cpp") {
            Dialect::Cpp
        } else {
            Dialect::Ppp
        }
    }

    /// The command a one-frame message is in either dialect, if any.
    fn command(frame: &[u8]) -> Option<(Command, Dialect)> {
        [Dialect::Ppp, Dialect::Cpp]
            .into_iter()
            .find_map(|dialect| match frame {
                f if f == dialect.ready() => Some((Command::Ready, dialect)),
                f if f == dialect.heartbeat() => Some((Command::Heartbeat, dialect)),
                _ => None,
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Ready,
    Heartbeat,
}

/// A worker as a queue knows it: its routing identity, and the dialect it
/// last spoke (so heartbeats go out in that dialect). Two `Worker`s are the
/// same worker when their identities are equal, whatever the dialect.
#[derive(Clone, Debug, Eq)]
pub struct Worker {
    pub identity: Vec<u8>,
    pub dialect: Dialect,
}

impl PartialEq for Worker {
    fn eq(&self, other: &Worker) -> bool {
        self.identity == other.identity
    }
}

/// What a queue received from a worker, once the ROUTER's identity frame is
/// taken off.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkerMessage {
    /// `[0x01]` or `[READY]`: the worker is ready for work.
    Ready(Dialect),
    /// `[0x02]` or `[HEARTBEAT]`: the worker is alive.
    Heartbeat(Dialect),
    /// `[client][""][body…]`: a reply, to forward to the frontend as it is.
    Reply(Message),
    /// Anything else; the text says why, with a bounded summary.
    Invalid(String),
}

/// Sorts a worker's message into READY, HEARTBEAT, a reply, or invalid.
///
/// The C queue accepts any one-frame message that merely *starts* with 0x01 or
/// 0x02 and forwards every longer message blindly; here a command must be
/// exactly READY or HEARTBEAT in one of the two [`Dialect`]s and a reply must
/// carry a client envelope (non-empty address, empty delimiter, a body),
/// checked by [`envelope::split`].
pub fn classify_worker_message(msg: Message) -> WorkerMessage {
    if msg.len() == 1 {
        let frame = msg.first().unwrap_or_default();
        return match Dialect::command(frame) {
            Some((Command::Ready, dialect)) => WorkerMessage::Ready(dialect),
            Some((Command::Heartbeat, dialect)) => WorkerMessage::Heartbeat(dialect),
            None => WorkerMessage::Invalid(format!(
                "one-frame message is neither READY nor HEARTBEAT: {}",
                msg.summary()
            )),
        };
    }
    let summary = msg.summary();
    match envelope::split(msg) {
        Ok((client, body)) => WorkerMessage::Reply(envelope::to(client, body)),
        Err(e) => WorkerMessage::Invalid(format!("not a reply: {}: {summary}", reason(e))),
    }
}

/// How a queue's workers are connected, which decides the envelope between
/// the worker's identity and the client's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerSocket {
    /// Simple Pirate: REQ workers, `[worker][""][client][""][body]`.
    Req,
    /// Paranoid Pirate: DEALER workers, `[worker][client][""][body]` (PPP).
    Dealer,
}

/// Takes a message from a queue's backend ROUTER apart: the worker's
/// identity, and what the worker said. A REQ worker's message must carry the
/// empty delimiter after its identity; without it the message is invalid.
pub fn split_worker_message(mut msg: Message, socket: WorkerSocket) -> (Vec<u8>, WorkerMessage) {
    let identity = msg.pop().unwrap_or_default();
    if socket == WorkerSocket::Req {
        if !msg.first().is_some_and(<[u8]>::is_empty) {
            let why = format!("no empty delimiter from a REQ worker: {}", msg.summary());
            return (identity, WorkerMessage::Invalid(why));
        }
        msg.pop();
    }
    (identity, classify_worker_message(msg))
}

/// What a worker received from its queue.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueMessage {
    /// `[client][""][body]`: work to do; the reply echoes the envelope.
    Request(Message),
    /// `[0x02]` (or `[HEARTBEAT]` in the C++ dialect): the queue is alive.
    Heartbeat,
    /// Anything else; the text says why, with a bounded summary.
    Invalid(String),
}

/// Sorts a queue's message into a request, a heartbeat, or invalid, by the
/// worker's rules: three frames are a request, one frame must be the
/// HEARTBEAT of the worker's `dialect`.
pub fn classify_queue_message(msg: Message, dialect: Dialect) -> QueueMessage {
    match msg.len() {
        3 => QueueMessage::Request(msg),
        1 if msg.first() == Some(dialect.heartbeat()) => QueueMessage::Heartbeat,
        1 => QueueMessage::Invalid(format!(
            "one-frame message is not HEARTBEAT: {}",
            msg.summary()
        )),
        n => QueueMessage::Invalid(format!("{n} frames, expected 1 or 3: {}", msg.summary())),
    }
}

/// Checks a client request as the queue's frontend ROUTER delivers it,
/// `[client][""][body]`, and gives it back for dispatch. The body must be
/// exactly one frame, because the worker tells work from commands by the frame
/// count alone (a four-frame request would reach a C `ppworker` as "invalid"
/// and never be answered). The error says what was wrong, with a bounded
/// summary of the message.
pub fn check_request(msg: Message) -> Result<Message, String> {
    let summary = msg.summary();
    let (client, body) =
        envelope::split_exact(msg, 1).map_err(|e| format!("{}: {summary}", reason(e)))?;
    Ok(envelope::to(client, body))
}

/// The text of a protocol error, without the "protocol error:" prefix.
fn reason(e: Error) -> String {
    match e {
        Error::Protocol(what) => what,
        other => other.to_string(),
    }
}

/// Registers a worker that just said something valid at `now`: it goes to the
/// tail of the ready list. Logs (`D:`) a new worker with the list's size, and
/// (`W:`, at most once a second through `full`) that the list was full and
/// the longest-waiting worker was forgotten to make room.
pub fn worker_ready(
    workers: &mut ReadyList<Worker>,
    worker: Worker,
    full: &mut Window,
    now: Instant,
) {
    let name = show(&worker.identity);
    match workers.ready(worker, now) {
        Readiness::Refreshed => {}
        Readiness::Added => log::debug!("worker {name} ready ({} idle)", workers.len()),
        Readiness::AddedEvicting(old) => {
            log::debug!("worker {name} ready ({} idle)", workers.len());
            if let Some(more) = full.allow(now) {
                log::warn!(
                    "{} workers ready, the most kept: forgot worker {} to make room \
                     ({more} more since the last report)",
                    workers.len(),
                    show(&old.identity)
                );
            }
        }
    }
}

/// Sends a client request `[client][""][body]` to the longest-waiting worker
/// and returns that worker: [`routing::dispatch_to_next`](crate::routing::dispatch_to_next)
/// over the ready list, so the send never blocks, and a worker that is gone
/// or not reading is dropped, logged, and the next one tried. With no worker
/// left the request is dropped (`Ok(None)`) and the client's retry deals with
/// it, as the book says.
pub fn dispatch(
    backend: &zmq::Socket,
    workers: &mut ReadyList<Worker>,
    request: Message,
    socket: WorkerSocket,
) -> Result<Option<Worker>, Error> {
    let delimiter = matches!(socket, WorkerSocket::Req);
    let worker = crate::routing::dispatch_to_next(
        backend,
        &request,
        delimiter,
        || workers.take_next(),
        |w: &Worker| &w.identity,
    )?;
    if let Some(worker) = &worker {
        log::debug!("request to worker {}", show(&worker.identity));
    }
    Ok(worker)
}

/// Sends a worker's reply to its client without ever blocking. A client that
/// is gone, or that does not read its replies (its pipe is full), loses the
/// reply (a REQ client retries); `drops` logs that at most once a second.
pub fn reply_to_client(
    frontend: &zmq::Socket,
    reply: Message,
    drops: &mut Window,
) -> Result<(), Error> {
    let client = reply.first().map(show).unwrap_or_default();
    if !reply.send_or_drop(frontend)? {
        if let Some(more) = drops.allow(Instant::now()) {
            log::warn!(
                "client {client} is gone or not reading; reply dropped \
                 ({more} more since the last report)"
            );
        }
    }
    Ok(())
}

/// The environment variable that controls [`FaultSimulator`].
pub const SIMULATE_VAR: &str = "ZGUIDE_SIMULATE";

/// What the simulator decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Handle the request normally.
    None,
    /// Exit without replying.
    Crash,
    /// Be very slow before replying.
    Overload,
}

/// How the simulator chooses, from `ZGUIDE_SIMULATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simulation {
    /// Unset, `random` or `random:<seed>`: the C behaviour, after 3 cycles
    /// crash with odds 1/n, else overload with odds 1/n. With a seed the
    /// dice are the same on every run (for tests).
    Random(Option<u64>),
    /// `none`: never fail.
    Off,
    /// `crash`: crash on the first request after 3 cycles (the 4th).
    Crash,
    /// `overload`: every request after 3 cycles is slow.
    Overload,
}

impl Simulation {
    /// Reads a `ZGUIDE_SIMULATE` value; `None` if it means nothing.
    pub fn parse(text: &str) -> Option<Simulation> {
        match text.trim() {
            "" | "random" => Some(Simulation::Random(None)),
            "none" | "off" => Some(Simulation::Off),
            "crash" => Some(Simulation::Crash),
            "overload" => Some(Simulation::Overload),
            other => {
                let seed = other.strip_prefix("random:")?.trim().parse().ok()?;
                Some(Simulation::Random(Some(seed)))
            }
        }
    }
}

/// A die: given `n`, a number in `0..n` (the C `randof`).
pub type Dice = Box<dyn FnMut(u32) -> u32 + Send>;

/// The Pirates' "simulate various problems, after a few cycles".
pub struct FaultSimulator {
    simulation: Simulation,
    odds: u32,
    cycles: u32,
    dice: Dice,
}

impl FaultSimulator {
    /// Failures with odds `1/odds` each (C: 3 in lpserver, 5 in the workers),
    /// in the mode `ZGUIDE_SIMULATE` asks for.
    pub fn from_env(odds: u32) -> FaultSimulator {
        let text = std::env::var(SIMULATE_VAR).unwrap_or_default();
        let simulation = Simulation::parse(&text).unwrap_or_else(|| {
            log::warn!(
                "{SIMULATE_VAR}={} is not random[:seed]/none/crash/overload; using random",
                show(text.as_bytes())
            );
            Simulation::Random(None)
        });
        FaultSimulator::new(simulation, odds)
    }

    /// A simulator in a given mode: OS-seeded dice, or seeded ones for
    /// `Random(Some(seed))`.
    pub fn new(simulation: Simulation, odds: u32) -> FaultSimulator {
        let dice: Dice = match simulation {
            Simulation::Random(Some(seed)) => {
                let mut rng = StdRng::seed_from_u64(seed);
                Box::new(move |n| if n == 0 { 0 } else { rng.gen_range(0..n) })
            }
            _ => Box::new(helpers::randof),
        };
        FaultSimulator::with_dice(simulation, odds, dice)
    }

    /// A simulator that rolls the given `dice` (tests script them).
    pub fn with_dice(simulation: Simulation, odds: u32, dice: Dice) -> FaultSimulator {
        FaultSimulator {
            simulation,
            odds,
            cycles: 0,
            dice,
        }
    }

    /// Counts one request and decides its fate. The first three always pass,
    /// so the architecture can get up and running first; after that, in
    /// random mode, a first roll decides a crash and, if not, a second roll
    /// an overload, each with odds 1/`odds`, as in the C.
    pub fn next_request(&mut self) -> Fault {
        self.cycles = self.cycles.saturating_add(1);
        if self.cycles <= 3 {
            return Fault::None;
        }
        match self.simulation {
            Simulation::Off => Fault::None,
            Simulation::Crash => Fault::Crash,
            Simulation::Overload => Fault::Overload,
            Simulation::Random(_) if (self.dice)(self.odds) == 0 => Fault::Crash,
            Simulation::Random(_) if (self.dice)(self.odds) == 0 => Fault::Overload,
            Simulation::Random(_) => Fault::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn msg(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    fn worker(id: &str) -> Worker {
        Worker {
            identity: id.as_bytes().to_vec(),
            dialect: Dialect::Ppp,
        }
    }

    #[test]
    fn worker_commands_are_exactly_ready_or_heartbeat_in_either_dialect() {
        let cases: [(&[u8], WorkerMessage); 4] = [
            (b"\x01", WorkerMessage::Ready(Dialect::Ppp)),
            (b"\x02", WorkerMessage::Heartbeat(Dialect::Ppp)),
            (b"READY", WorkerMessage::Ready(Dialect::Cpp)),
            (b"HEARTBEAT", WorkerMessage::Heartbeat(Dialect::Cpp)),
        ];
        for (frame, expected) in cases {
            assert_eq!(classify_worker_message(msg(&[frame])), expected);
        }
        for bad in [
            &b"\x01\x02"[..],
            b"\x03",
            b"",
            b"READY\0",
            b"ready",
            b"HEARTBEA",
            b"\x02\x02",
        ] {
            assert!(
                matches!(
                    classify_worker_message(msg(&[bad])),
                    WorkerMessage::Invalid(_)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn worker_replies_need_an_envelope() {
        let reply = msg(&[b"\x00\x6b\x8b\x45\x67", b"", b"7"]);
        assert_eq!(
            classify_worker_message(reply.clone()),
            WorkerMessage::Reply(reply)
        );
        // A client id that starts like a command is still a reply.
        let reply = msg(&[b"\x01C", b"", b"7"]);
        assert_eq!(
            classify_worker_message(reply.clone()),
            WorkerMessage::Reply(reply)
        );
        for bad in [
            msg(&[b"client", b"body"]),
            msg(&[b"client", b"x", b"body"]),
            msg(&[b"", b"", b"body"]),
            msg(&[b"client", b""]),
            msg(&[b"\x01", b"\x02"]),
            Message::new(),
        ] {
            assert!(matches!(
                classify_worker_message(bad),
                WorkerMessage::Invalid(_)
            ));
        }
    }

    #[test]
    fn invalid_messages_are_described_briefly_whatever_their_size() {
        let big = vec![0xAB_u8; 1 << 20];
        let WorkerMessage::Invalid(why) = classify_worker_message(msg(&[&big])) else {
            panic!("a 1 MiB frame is no command");
        };
        assert!(why.len() < 300 && why.contains("[1048576] ABAB"), "{why}");
        let many: Vec<&[u8]> = vec![&big[..]; 50];
        for why in [
            match classify_worker_message(msg(&many)) {
                WorkerMessage::Invalid(why) => why,
                other => panic!("{other:?}"),
            },
            match classify_queue_message(msg(&many), Dialect::Ppp) {
                QueueMessage::Invalid(why) => why,
                other => panic!("{other:?}"),
            },
            check_request(msg(&many)).unwrap_err(),
        ] {
            assert!(why.len() < 1024 && why.contains("50 frame(s)"), "{why}");
            assert!(!why.contains(['\n', '\r']));
        }
    }

    #[test]
    fn req_workers_need_their_delimiter() {
        assert_eq!(
            split_worker_message(msg(&[b"W", b"", b"\x01"]), WorkerSocket::Req),
            (b"W".to_vec(), WorkerMessage::Ready(Dialect::Ppp))
        );
        assert_eq!(
            split_worker_message(msg(&[b"W", b"", b"READY"]), WorkerSocket::Req),
            (b"W".to_vec(), WorkerMessage::Ready(Dialect::Cpp))
        );
        let reply = msg(&[b"C", b"", b"1"]);
        let mut from_worker = reply.clone();
        from_worker.wrap_envelope("W");
        assert_eq!(
            split_worker_message(from_worker, WorkerSocket::Req),
            (b"W".to_vec(), WorkerMessage::Reply(reply))
        );
        let (id, what) = split_worker_message(msg(&[b"W", b"\x01"]), WorkerSocket::Req);
        assert_eq!(id, b"W");
        assert!(matches!(what, WorkerMessage::Invalid(_)));
        // A DEALER worker has no delimiter: the same frames mean something else.
        assert_eq!(
            split_worker_message(msg(&[b"W", b"\x01"]), WorkerSocket::Dealer),
            (b"W".to_vec(), WorkerMessage::Ready(Dialect::Ppp))
        );
        assert!(matches!(
            split_worker_message(msg(&[b"W", b"", b"\x01"]), WorkerSocket::Dealer).1,
            WorkerMessage::Invalid(_)
        ));
        assert!(matches!(
            split_worker_message(Message::new(), WorkerSocket::Dealer).1,
            WorkerMessage::Invalid(_)
        ));
    }

    #[test]
    fn invalid_messages_say_what_was_wrong() {
        let WorkerMessage::Invalid(why) = classify_worker_message(msg(&[b"c", b"x", b"1"])) else {
            panic!("no delimiter, no reply");
        };
        assert!(
            why.starts_with("not a reply: no empty delimiter after the identity: 3 frame(s)"),
            "{why}"
        );
        let why = check_request(msg(&[b"c", b"", b"1", b"2"])).unwrap_err();
        assert!(
            why.starts_with("expected a body of 1 frame(s), got 2: 4 frame(s)"),
            "{why}"
        );
    }

    #[test]
    fn requests_have_one_body_frame() {
        let request = msg(&[b"c", b"", b"1"]);
        assert_eq!(check_request(request.clone()), Ok(request));
        assert!(check_request(msg(&[b"c", b"1"])).is_err());
        assert!(check_request(msg(&[b"c", b"", b"1", b"2"])).is_err());
        assert!(check_request(msg(&[b"1"])).is_err());
    }

    #[test]
    fn workers_see_requests_by_frame_count_and_heartbeats_in_their_dialect() {
        let request = msg(&[b"c", b"", b"1"]);
        for dialect in [Dialect::Ppp, Dialect::Cpp] {
            assert_eq!(
                classify_queue_message(request.clone(), dialect),
                QueueMessage::Request(request.clone())
            );
        }
        assert_eq!(
            classify_queue_message(msg(&[b"\x02"]), Dialect::Ppp),
            QueueMessage::Heartbeat
        );
        assert_eq!(
            classify_queue_message(msg(&[b"HEARTBEAT"]), Dialect::Cpp),
            QueueMessage::Heartbeat
        );
        for (frames, dialect) in [
            (msg(&[b"HEARTBEAT"]), Dialect::Ppp),
            (msg(&[b"\x02"]), Dialect::Cpp),
            (msg(&[b"\x01"]), Dialect::Ppp),
            (msg(&[b"a", b"b"]), Dialect::Ppp),
            (msg(&[b"a", b"", b"b", b"c"]), Dialect::Cpp),
            (Message::new(), Dialect::Ppp),
        ] {
            assert!(matches!(
                classify_queue_message(frames, dialect),
                QueueMessage::Invalid(_)
            ));
        }
    }

    #[test]
    fn dialects_spell_the_commands_and_come_from_the_command_line() {
        assert_eq!(
            (Dialect::Ppp.ready(), Dialect::Ppp.heartbeat()),
            (&b"\x01"[..], &b"\x02"[..])
        );
        assert_eq!(
            (Dialect::Cpp.ready(), Dialect::Cpp.heartbeat()),
            (&b"READY"[..], &b"HEARTBEAT"[..])
        );
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Dialect::from_args(args(&["--cpp"])), Dialect::Cpp);
        assert_eq!(Dialect::from_args(args(&["-v", "--cpp"])), Dialect::Cpp);
        assert_eq!(Dialect::from_args(args(&[])), Dialect::Ppp);
        assert_eq!(Dialect::from_args(args(&["cpp", "-v"])), Dialect::Ppp);
        // Workers are known by identity; the dialect is what they last spoke.
        let cpp = Worker {
            dialect: Dialect::Cpp,
            ..worker("W")
        };
        assert_eq!(cpp, worker("W"));
        assert_ne!(worker("W"), worker("V"));
    }

    /// A ROUTER_MANDATORY backend with two connected DEALER workers "A" and
    /// "B", and a ready list [gone, A, B].
    fn backend_with_workers() -> (zmq::Context, zmq::Socket, Vec<zmq::Socket>) {
        let context = zmq::Context::new();
        let backend = crate::socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .bind("tcp://127.0.0.1:*")
            .unwrap();
        let endpoint = backend.get_last_endpoint().unwrap().unwrap();
        let mut dealers = Vec::new();
        for id in ["A", "B"] {
            let dealer = crate::socket::new(&context, zmq::DEALER)
                .identity(id)
                .connect(&endpoint)
                .unwrap();
            dealer.send(READY, 0).unwrap();
            dealer.set_rcvtimeo(10_000).unwrap();
            // The ROUTER knows the peer once its first message is read.
            backend.set_rcvtimeo(10_000).unwrap();
            backend.recv_multipart(0).unwrap();
            dealers.push(dealer);
        }
        (context, backend, dealers)
    }

    #[test]
    fn dispatch_serves_the_longest_waiting_live_worker_and_skips_gone_ones() {
        let (_context, backend, dealers) = backend_with_workers();
        let now = Instant::now();
        let mut workers = ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS);
        for id in ["gone", "A", "B"] {
            workers.ready(worker(id), now);
        }
        let request = msg(&[b"C", b"", b"1"]);
        let to = dispatch(
            &backend,
            &mut workers,
            request.clone(),
            WorkerSocket::Dealer,
        );
        assert_eq!(to.unwrap(), Some(worker("A")), "oldest live worker first");
        assert_eq!(
            dealers[0].recv_multipart(0).unwrap(),
            request.clone().into_frames()
        );
        assert_eq!(workers.iter().cloned().collect::<Vec<_>>(), [worker("B")]);
        // A REQ worker gets the delimiter too.
        let to = dispatch(&backend, &mut workers, request.clone(), WorkerSocket::Req);
        assert_eq!(to.unwrap(), Some(worker("B")));
        let mut expected = request.clone();
        expected.push(Vec::new());
        assert_eq!(
            dealers[1].recv_multipart(0).unwrap(),
            expected.into_frames()
        );
        // Nobody left: dropped, and the list stays empty.
        let to = dispatch(&backend, &mut workers, request, WorkerSocket::Dealer);
        assert_eq!(to.unwrap(), None);
        assert!(workers.is_empty());
    }

    #[test]
    fn dispatch_skips_a_worker_that_does_not_read() {
        // inproc: no kernel buffers, so a deaf peer's pipe fills at once.
        let context = zmq::Context::new();
        let backend = crate::socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .send_hwm(1)
            .bind("inproc://deaf-worker")
            .unwrap();
        backend.set_rcvtimeo(10_000).unwrap();
        // A blocking send would fail after 10 s instead of hanging the test.
        backend.set_sndtimeo(10_000).unwrap();
        let mut dealers = Vec::new();
        for id in ["DEAF", "OK"] {
            let dealer = crate::socket::new(&context, zmq::DEALER)
                .identity(id)
                .receive_hwm(1)
                .connect("inproc://deaf-worker")
                .unwrap();
            dealer.send(READY, 0).unwrap();
            backend.recv_multipart(0).unwrap();
            dealers.push(dealer);
        }
        let mut filled = 0;
        while msg(&[b"DEAF", b"\x02"]).send_or_drop(&backend).unwrap() {
            filled += 1;
            assert!(filled < 100, "the deaf worker's pipe never filled");
        }
        let mut workers = ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS);
        workers.ready(worker("DEAF"), Instant::now());
        workers.ready(worker("OK"), Instant::now());
        let request = msg(&[b"C", b"", b"1"]);
        let to = dispatch(
            &backend,
            &mut workers,
            request.clone(),
            WorkerSocket::Dealer,
        );
        assert_eq!(
            to.unwrap(),
            Some(worker("OK")),
            "never blocks on the deaf one"
        );
        dealers[1].set_rcvtimeo(10_000).unwrap();
        assert_eq!(dealers[1].recv_multipart(0).unwrap(), request.into_frames());
        assert!(workers.is_empty(), "the deaf worker left the ready list");
    }

    #[test]
    fn a_full_ready_list_forgets_its_longest_waiting_worker() {
        let now = Instant::now();
        let mut workers = ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS).with_limit(2);
        let mut full = Window::new(1, Duration::from_secs(1));
        for id in ["A", "B", "A", "C"] {
            worker_ready(&mut workers, worker(id), &mut full, now);
        }
        assert_eq!(
            workers.iter().cloned().collect::<Vec<_>>(),
            [worker("A"), worker("C")]
        );
        assert_eq!(full.allow(now), None, "the eviction was reported");
        // The dialect a worker spoke last is the one it keeps.
        let cpp = Worker {
            dialect: Dialect::Cpp,
            ..worker("A")
        };
        worker_ready(&mut workers, cpp, &mut full, now);
        assert_eq!(workers.iter().last().map(|w| w.dialect), Some(Dialect::Cpp));
        assert_eq!(workers.len(), 2);
    }

    #[test]
    fn reply_to_client_never_blocks_and_drops_for_gone_clients() {
        let context = zmq::Context::new();
        let frontend = crate::socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .build()
            .unwrap();
        let mut drops = Window::new(1, Duration::from_secs(60));
        let reply = msg(&[b"nobody", b"", b"1"]);
        assert!(reply_to_client(&frontend, reply.clone(), &mut drops).is_ok());
        assert_eq!(drops.allow(Instant::now()), None, "the drop was counted");
    }

    #[test]
    fn simulated_faults_start_after_three_cycles() {
        let mut crash = FaultSimulator::new(Simulation::Crash, 5);
        let fates: Vec<Fault> = (0..4).map(|_| crash.next_request()).collect();
        assert_eq!(fates, [Fault::None, Fault::None, Fault::None, Fault::Crash]);
        let mut overload = FaultSimulator::new(Simulation::Overload, 5);
        let fates: Vec<Fault> = (0..5).map(|_| overload.next_request()).collect();
        assert_eq!(fates[2..], [Fault::None, Fault::Overload, Fault::Overload]);
        let mut off = FaultSimulator::new(Simulation::Off, 1);
        assert!((0..100).all(|_| off.next_request() == Fault::None));
        // Odds 1: the C logic always crashes after cycle 3.
        let mut random = FaultSimulator::new(Simulation::Random(None), 1);
        let fates: Vec<Fault> = (0..5).map(|_| random.next_request()).collect();
        assert_eq!(fates[3..], [Fault::Crash, Fault::Crash]);
    }

    /// Dice that return `rolls` in turn and record what they were asked.
    fn scripted(rolls: &[u32]) -> (Dice, Arc<Mutex<Vec<u32>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let mut rolls = std::collections::VecDeque::from(rolls.to_vec());
        let dice: Dice = Box::new(move |n| {
            log.lock().unwrap().push(n);
            rolls.pop_front().expect("an unexpected roll")
        });
        (dice, asked)
    }

    #[test]
    fn random_mode_rolls_for_a_crash_then_for_an_overload() {
        // Request 4: crash roll 0 → crash. 5: 1 then 0 → overload. 6: 2, 3 → none.
        let (dice, asked) = scripted(&[0, 1, 0, 2, 3]);
        let mut faults = FaultSimulator::with_dice(Simulation::Random(None), 5, dice);
        let fates: Vec<Fault> = (0..6).map(|_| faults.next_request()).collect();
        assert_eq!(
            fates,
            [
                Fault::None,
                Fault::None,
                Fault::None,
                Fault::Crash,
                Fault::Overload,
                Fault::None
            ]
        );
        assert_eq!(*asked.lock().unwrap(), [5, 5, 5, 5, 5], "odds 1/5 each");
    }

    #[test]
    fn seeded_random_mode_has_the_c_odds_and_repeats() {
        let fates = |seed| {
            let mut faults = FaultSimulator::new(Simulation::Random(Some(seed)), 5);
            (0..20_003)
                .map(|_| faults.next_request())
                .collect::<Vec<_>>()
        };
        let run = fates(7);
        assert_eq!(run, fates(7), "same seed, same fates");
        assert_ne!(run, fates(8));
        let count = |fault| run[3..].iter().filter(|&&f| f == fault).count();
        // Crash 1/5 = 4000 of 20000; overload (4/5)·(1/5) = 3200.
        assert!(
            (3700..4300).contains(&count(Fault::Crash)),
            "{}",
            count(Fault::Crash)
        );
        assert!(
            (2900..3500).contains(&count(Fault::Overload)),
            "{}",
            count(Fault::Overload)
        );
    }

    #[test]
    fn simulate_values_parse() {
        assert_eq!(Simulation::parse(""), Some(Simulation::Random(None)));
        assert_eq!(Simulation::parse("random"), Some(Simulation::Random(None)));
        assert_eq!(
            Simulation::parse("random:42"),
            Some(Simulation::Random(Some(42)))
        );
        assert_eq!(Simulation::parse(" none "), Some(Simulation::Off));
        assert_eq!(Simulation::parse("off"), Some(Simulation::Off));
        assert_eq!(Simulation::parse("crash"), Some(Simulation::Crash));
        assert_eq!(Simulation::parse("overload"), Some(Simulation::Overload));
        assert_eq!(Simulation::parse("random:x"), None);
        assert_eq!(Simulation::parse("sometimes"), None);
    }
}
