//! The shared pieces of libzmq's perf tools (`perf/` in libzmq).
//!
//! libzmq measures itself with six small programs, and the Rust ones in
//! `src/bin/` keep their arguments, their printed lines and their timing rules,
//! so that a Rust sender can be paired with a C receiver and the reverse:
//!
//! | pair | sockets | what is timed |
//! |---|---|---|
//! | `local_thr` + `remote_thr` | PULL binds, PUSH connects | from the first message received to the last |
//! | `local_lat` + `remote_lat` | REP binds, REQ connects | all round trips; one-way latency = elapsed / (2 × round trips) |
//! | `inproc_thr`, `inproc_lat` | the same pairs over `inproc://`, one process, two threads | as above |
//!
//! Why throughput is timed from the *first* message: the receiver cannot know
//! when the sender started, and the first message also pays for the TCP
//! connection and the ZeroMQ handshake. So the clock starts once it has
//! arrived and runs over the remaining `count - 1` messages, and the rate is
//! then (like libzmq's) computed with the full `count`.
//!
//! The hot loops here use `zmq::Socket::send`/`recv` on `zmq::Message`s
//! directly, exactly one libzmq call per message like the C tools: no
//! allocation on our side, no multipart `crate::Message`, no poll per message.
//! Only the wait for the *first* message goes through [`crate::interrupt`], so
//! Ctrl-C ends a receiver that no sender ever reached at once; during a run a
//! receive timeout lets a waiting tool notice Ctrl-C within half a second,
//! and while messages flow the loops look at the Ctrl-C flag (one atomic
//! load) every [`CHECK_EVERY`] messages.
//!
//! The tools build their sockets with [`crate::socket::new`]: receivers with
//! no `MAXMSGSIZE` (any size is the point of a perf tool), senders with
//! LINGER [`SENDER_LINGER_MS`].
//!
//! [`Report::parse`] reads the printed lines back, for the benchmark suite
//! (`src/bin/bench`) and the tests, and works on libzmq's own tools' output too.

use std::fmt;
use std::time::Instant;

use crate::interrupt;
use crate::Error;

/// The arguments every perf tool takes: `[<endpoint>] <message-size> <count>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Where to bind or connect (absent for the `inproc_*` tools).
    pub endpoint: Option<String>,
    /// Bytes per message.
    pub message_size: usize,
    /// Messages (throughput) or round trips (latency); at least 1.
    pub count: u64,
}

impl Args {
    /// Parses the arguments after the program name. `with_endpoint` says
    /// whether the first one is an endpoint. The text of an error is the
    /// problem, for the usage line.
    ///
    /// Differs from the C, which uses `atoi`: a size or count that is not a
    /// whole number is refused instead of read as 0, and a count of 0 is
    /// refused (libzmq's `local_thr` would then wait forever).
    pub fn parse<S: AsRef<str>>(args: &[S], with_endpoint: bool) -> Result<Args, String> {
        let expected = if with_endpoint { 3 } else { 2 };
        if args.len() != expected {
            return Err(format!("expected {expected} arguments, got {}", args.len()));
        }
        let (endpoint, rest) = if with_endpoint {
            (Some(args[0].as_ref().to_string()), &args[1..])
        } else {
            (None, args)
        };
        let message_size: usize =
            rest[0].as_ref().trim().parse().map_err(|_| {
                format!("message size {:?} is not a whole number", rest[0].as_ref())
            })?;
        let count: u64 = rest[1]
            .as_ref()
            .trim()
            .parse()
            .map_err(|_| format!("count {:?} is not a whole number", rest[1].as_ref()))?;
        if count == 0 {
            return Err("count must be at least 1".to_string());
        }
        Ok(Args {
            endpoint,
            message_size,
            count,
        })
    }

    /// Parses `std::env::args()`, or prints `usage: <usage>` and the problem
    /// and exits with status 1 (libzmq's tools print the usage and return 1).
    pub fn from_env_or_exit(usage: &str, with_endpoint: bool) -> Args {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match Args::parse(&args, with_endpoint) {
            Ok(parsed) => parsed,
            Err(problem) => {
                println!("usage: {usage}");
                eprintln!("{problem}");
                std::process::exit(1);
            }
        }
    }
}

/// Microseconds since `start`, at least 1 (libzmq's stopwatch counts whole
/// microseconds, and its tools replace 0 by 1 before dividing).
pub fn elapsed_us(start: Instant) -> u64 {
    (start.elapsed().as_micros() as u64).max(1)
}

/// Whether a `recv`/`send` went through. `EINTR` (a signal arrived) is not
/// an error: the caller waits with [`interrupt`]'s poll, which also watches
/// the Ctrl-C self-pipe, and tries again. Checking `interrupt::interrupted()`
/// right away would race: the flag is set by the handler thread a moment
/// after the signal interrupted us, so a plain retry could block for good.
/// `EAGAIN` (a sender's [`WAKE_UP_MS`] send timeout ran out at the
/// high-water mark) is handled the same way. Only reached when the call
/// failed, so the hot loop stays one libzmq call.
fn went_through(result: zmq::Result<()>) -> Result<bool, Error> {
    match result {
        Ok(()) => Ok(true),
        Err(zmq::Error::EINTR | zmq::Error::EAGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn recv(socket: &zmq::Socket, msg: &mut zmq::Message) -> Result<(), Error> {
    loop {
        match socket.recv(msg, 0) {
            Ok(()) => return Ok(()),
            // EAGAIN: the receive timeout of a receiving tool ran out (see
            // `WAKE_UP_MS`); EINTR: a signal. Either way, stop if asked to.
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => {
                if interrupt::interrupted() {
                    return Err(Error::Interrupted);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How often a receiving tool blocked in the middle of a run looks at the
/// Ctrl-C flag. A signal that arrives while the tool is between two calls
/// interrupts no call, and the handler's flag is set a moment later on
/// another thread, so a plain blocking receive could then wait forever. A
/// receive timeout costs nothing while messages flow (libzmq only reads the
/// clock when it has to wait), unlike a poll per message.
const WAKE_UP_MS: i32 = 500;

/// How often (in messages) the hot loops look at the Ctrl-C flag.
pub const CHECK_EVERY: u64 = 4096;

/// LINGER of the throughput senders. libzmq's is infinite, so that closing
/// waits until every message is delivered; a PUSH send blocks at the
/// high-water mark, so at close at most about a thousand messages are left,
/// which a live receiver takes in well under a second. 30 s is far more
/// than that, and a receiver that died no longer hangs the sender for ever.
pub const SENDER_LINGER_MS: i32 = 30_000;

/// `Err(Interrupted)` once Ctrl-C/SIGTERM arrived, looked at every
/// [`CHECK_EVERY`] messages: a tool stops within a moment even while
/// messages flow without a pause.
fn check_interrupted(sequence: u64) -> Result<(), Error> {
    if sequence.is_multiple_of(CHECK_EVERY) && interrupt::interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Sends `msg`, leaving an empty message in its place (like `zmq_msg_send`).
fn send(socket: &zmq::Socket, msg: &mut zmq::Message) -> Result<(), Error> {
    loop {
        let outgoing = std::mem::replace(msg, zmq::Message::new());
        // The zmq crate takes the message by value; on EINTR libzmq has not
        // taken it, but the crate has dropped it, so rebuild it to retry.
        let size = outgoing.len();
        if went_through(socket.send(outgoing, 0))? {
            return Ok(());
        }
        wait_writable(socket)?;
        *msg = unfilled_message(size);
    }
}

/// Waits until `socket` can take a message, or Ctrl-C/SIGTERM.
fn wait_writable(socket: &zmq::Socket) -> Result<(), Error> {
    loop {
        if interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        let mut items = vec![socket.as_poll_item(zmq::POLLOUT)];
        if let Some(fd) = interrupt::wake_fd() {
            items.push(zmq::PollItem::from_fd(fd, zmq::POLLIN));
        }
        match zmq::poll(&mut items, -1) {
            Ok(_) if items[0].is_writable() => return Ok(()),
            Ok(_) | Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn check_size(msg: &zmq::Message, message_size: usize) -> Result<(), Error> {
    if msg.len() == message_size {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "message of incorrect size received ({} bytes, expected {message_size})",
            msg.len()
        )))
    }
}

/// A message of `size` bytes whose contents we never set, as libzmq's
/// `zmq_msg_init_size`: the tools send whatever the buffer holds. Zeroing
/// (`zmq::Message::with_size`) would add a `memset` per message that the C
/// sender does not pay, and skew the comparison for large messages.
fn unfilled_message(size: usize) -> zmq::Message {
    // SAFETY: the bytes are only read by libzmq when it sends them; no Rust
    // code looks at them (the message is never dereferenced here).
    #[allow(deprecated)]
    unsafe {
        zmq::Message::with_capacity_unallocated(size)
    }
}

/// Blocks until the first message is ready, waking on Ctrl-C/SIGTERM once
/// [`interrupt::catch_signals`] was called. The receiving tools wait here for
/// as long as nobody sends; after that a peer is there and the loop runs.
fn wait_for_first(socket: &zmq::Socket) -> Result<(), Error> {
    while !interrupt::wait_readable(socket, -1)? {}
    Ok(())
}

/// The PULL side of a throughput test: receives `count` messages of
/// `message_size` bytes and returns the microseconds between the first and
/// the last one.
pub fn receive_messages(
    socket: &zmq::Socket,
    message_size: usize,
    count: u64,
) -> Result<u64, Error> {
    let mut msg = zmq::Message::new();
    socket.set_rcvtimeo(WAKE_UP_MS)?;
    wait_for_first(socket)?;
    recv(socket, &mut msg)?;
    check_size(&msg, message_size)?;

    let start = Instant::now();
    for i in 1..count {
        check_interrupted(i)?;
        recv(socket, &mut msg)?;
        check_size(&msg, message_size)?;
    }
    Ok(elapsed_us(start))
}

/// The PUSH side of a throughput test: sends `count` messages of
/// `message_size` bytes, a fresh one each time like libzmq's `remote_thr`.
///
/// A send blocked at the high-water mark (the receiver stopped reading)
/// wakes every [`WAKE_UP_MS`] and then waits in [`interrupt`]'s poll, so
/// Ctrl-C always ends it; after Ctrl-C the socket's LINGER is set to 0, as
/// nobody waits for the rest any more.
pub fn send_messages(socket: &zmq::Socket, message_size: usize, count: u64) -> Result<(), Error> {
    socket.set_sndtimeo(WAKE_UP_MS)?;
    let result = (|| {
        for i in 0..count {
            check_interrupted(i + 1)?;
            // init_size, send, close: the three libzmq calls of the C loop.
            while !went_through(socket.send(unfilled_message(message_size), 0))? {
                wait_writable(socket)?;
            }
        }
        Ok(())
    })();
    if matches!(result, Err(Error::Interrupted)) {
        socket.set_linger(0)?;
    }
    result
}

/// The REP side of a latency test: sends each of `count` requests straight
/// back.
pub fn echo_round_trips(
    socket: &zmq::Socket,
    message_size: usize,
    count: u64,
) -> Result<(), Error> {
    let mut msg = zmq::Message::new();
    socket.set_rcvtimeo(WAKE_UP_MS)?;
    wait_for_first(socket)?;
    for i in 0..count {
        check_interrupted(i + 1)?;
        recv(socket, &mut msg)?;
        check_size(&msg, message_size)?;
        send(socket, &mut msg)?;
    }
    Ok(())
}

/// The REQ side of a latency test: `count` round trips with one zeroed
/// message of `message_size` bytes; returns the elapsed microseconds.
pub fn time_round_trips(
    socket: &zmq::Socket,
    message_size: usize,
    count: u64,
) -> Result<u64, Error> {
    let mut msg = zmq::Message::with_size(message_size);
    socket.set_rcvtimeo(WAKE_UP_MS)?;
    let start = Instant::now();
    for i in 0..count {
        check_interrupted(i + 1)?;
        send(socket, &mut msg)?;
        recv(socket, &mut msg)?;
        check_size(&msg, message_size)?;
    }
    Ok(elapsed_us(start))
}

/// The figures of a throughput run, printed like libzmq's tools.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub message_size: usize,
    pub message_count: u64,
    /// Whole messages per second (truncated, as the C prints an `int`).
    pub messages_per_sec: u64,
    /// Megabits per second (10^6 bits).
    pub megabits_per_sec: f64,
}

impl Throughput {
    /// `count` messages over `elapsed_us` (timed from the first message).
    pub fn new(message_size: usize, message_count: u64, elapsed_us: u64) -> Throughput {
        let per_sec = message_count as f64 / elapsed_us.max(1) as f64 * 1_000_000.0;
        Throughput {
            message_size,
            message_count,
            messages_per_sec: per_sec as u64,
            megabits_per_sec: per_sec * message_size as f64 * 8.0 / 1_000_000.0,
        }
    }

    /// `message size: N [B]` and `message count: N`.
    pub fn header(&self) -> String {
        format!(
            "message size: {} [B]\nmessage count: {}",
            self.message_size, self.message_count
        )
    }

    /// The two `mean throughput:` lines.
    pub fn figures(&self) -> String {
        format!(
            "mean throughput: {} [msg/s]\nmean throughput: {:.3} [Mb/s]",
            self.messages_per_sec, self.megabits_per_sec
        )
    }
}

impl fmt::Display for Throughput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.header(), self.figures())
    }
}

/// The figures of a latency run, printed like libzmq's tools.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub message_size: usize,
    pub roundtrip_count: u64,
    /// One-way latency: elapsed / (2 × round trips), in microseconds.
    pub average_us: f64,
}

impl Latency {
    pub fn new(message_size: usize, roundtrip_count: u64, elapsed_us: u64) -> Latency {
        Latency {
            message_size,
            roundtrip_count,
            average_us: elapsed_us as f64 / (roundtrip_count as f64 * 2.0),
        }
    }

    /// `message size: N [B]` and `roundtrip count: N`.
    pub fn header(&self) -> String {
        format!(
            "message size: {} [B]\nroundtrip count: {}",
            self.message_size, self.roundtrip_count
        )
    }

    /// `average latency: X [us]`.
    pub fn figures(&self) -> String {
        format!("average latency: {:.3} [us]", self.average_us)
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.header(), self.figures())
    }
}

/// What a perf tool printed, read back from its output (ours or libzmq's).
/// Each field is `None` if its line was absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub message_size: Option<usize>,
    pub message_count: Option<u64>,
    pub roundtrip_count: Option<u64>,
    pub messages_per_sec: Option<u64>,
    pub megabits_per_sec: Option<f64>,
    pub latency_us: Option<f64>,
}

impl Report {
    /// Reads the `message size:`, `message count:`, `roundtrip count:`,
    /// `mean throughput:` and `average latency:` lines; other lines are
    /// ignored.
    pub fn parse(text: &str) -> Report {
        let mut report = Report::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let number = value.split_whitespace().next().unwrap_or("");
            match key.trim() {
                "message size" => report.message_size = number.parse().ok(),
                "message count" => report.message_count = number.parse().ok(),
                "roundtrip count" => report.roundtrip_count = number.parse().ok(),
                "mean throughput" if value.ends_with("[msg/s]") => {
                    report.messages_per_sec = number.parse().ok()
                }
                "mean throughput" if value.ends_with("[Mb/s]") => {
                    report.megabits_per_sec = number.parse().ok()
                }
                "average latency" => report.latency_us = number.parse().ok(),
                _ => {}
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        let args = Args::parse(&["tcp://*:5555", "100", "1000"], true).unwrap();
        assert_eq!(args.endpoint.as_deref(), Some("tcp://*:5555"));
        assert_eq!((args.message_size, args.count), (100, 1000));
        let args = Args::parse(&["8", "3"], false).unwrap();
        assert_eq!((args.endpoint, args.message_size, args.count), (None, 8, 3));
        assert!(Args::parse(&["8", "3"], true).is_err());
        assert!(Args::parse(&["x", "8", "3"], true).unwrap().count == 3);
        assert!(Args::parse(&["x", "eight", "3"], true).is_err());
        assert!(Args::parse(&["x", "8", "0"], true).is_err());
        assert!(Args::parse(&["x", "8", "-1"], true).is_err());
    }

    #[test]
    fn throughput_is_computed_like_libzmq() {
        // 1000 messages over 0.5 s: 2000 msg/s; 100 B each: 1.6 Mb/s.
        let t = Throughput::new(100, 1000, 500_000);
        assert_eq!(t.messages_per_sec, 2000);
        assert_eq!(
            t.to_string(),
            "message size: 100 [B]\nmessage count: 1000\n\
             mean throughput: 2000 [msg/s]\nmean throughput: 1.600 [Mb/s]"
        );
    }

    #[test]
    fn latency_is_one_way() {
        let l = Latency::new(8, 1000, 40_000);
        assert_eq!(l.average_us, 20.0);
        assert!(l.to_string().ends_with("average latency: 20.000 [us]"));
    }

    #[test]
    fn reports_read_back() {
        let t = Throughput::new(64, 10, 10);
        let r = Report::parse(&format!("noise\n{t}\n"));
        assert_eq!(r.message_size, Some(64));
        assert_eq!(r.message_count, Some(10));
        assert_eq!(r.messages_per_sec, Some(t.messages_per_sec));
        assert!((r.megabits_per_sec.unwrap() - t.megabits_per_sec).abs() < 0.001);
        let r = Report::parse(&Latency::new(8, 5, 100).to_string());
        assert_eq!((r.roundtrip_count, r.latency_us), (Some(5), Some(10.0)));
        assert_eq!(
            Report::parse("mean throughput: x [msg/s]").messages_per_sec,
            None
        );
    }

    /// Runs `task` on a thread and waits at most 20 s for its result.
    fn within<T: Send + 'static>(
        task: impl FnOnce() -> T + Send + 'static,
    ) -> std::sync::mpsc::Receiver<T> {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(task());
        });
        done_rx
    }

    fn pair(
        context: &zmq::Context,
        endpoint: &str,
        kinds: (zmq::SocketType, zmq::SocketType),
        hwm: i32,
    ) -> (zmq::Socket, zmq::Socket) {
        let receiver = context.socket(kinds.0).unwrap();
        receiver.set_rcvhwm(hwm).unwrap();
        receiver.bind(endpoint).unwrap();
        let sender = context.socket(kinds.1).unwrap();
        sender.set_sndhwm(hwm).unwrap();
        sender.set_linger(0).unwrap();
        sender.connect(endpoint).unwrap();
        (receiver, sender)
    }

    const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

    #[test]
    fn throughput_loops_move_exactly_count_messages_past_the_check_interval() {
        let context = zmq::Context::new();
        let (pull, push) = pair(&context, "inproc://perf-thr", (zmq::PULL, zmq::PUSH), 1000);
        let count = CHECK_EVERY + 100;
        let sent = within(move || send_messages(&push, 8, count).map(|()| push));
        let elapsed = receive_messages(&pull, 8, count).unwrap();
        assert!(elapsed >= 1);
        let _push = sent.recv_timeout(WAIT).expect("the sender ends").unwrap();
        assert!(
            pull.recv_bytes(zmq::DONTWAIT).is_err(),
            "more than count sent"
        );
    }

    #[test]
    fn a_sender_held_at_the_high_water_mark_waits_and_loses_nothing() {
        let context = zmq::Context::new();
        let (pull, push) = pair(&context, "inproc://perf-hwm", (zmq::PULL, zmq::PUSH), 2);
        let sent = within(move || {
            let cpu = crate::broker::thread_cpu();
            let result = send_messages(&push, 8, 50).map(|()| push);
            (result, crate::broker::thread_cpu() - cpu)
        });
        // Not read for longer than the send timeout: the sender's sends time
        // out (EAGAIN) and it waits for room, then goes on.
        std::thread::sleep(std::time::Duration::from_millis(3 * WAKE_UP_MS as u64));
        receive_messages(&pull, 8, 50).unwrap();
        let (result, cpu) = sent.recv_timeout(WAIT).expect("the sender ends");
        let _push = result.unwrap();
        assert!(pull.recv_bytes(zmq::DONTWAIT).is_err(), "more than 50 sent");
        // Held, it sleeps in its poll: about 0.5 ms of CPU in all here; a
        // loop polling every millisecond spends about 20 ms in these 1.5 s.
        assert!(
            cpu < std::time::Duration::from_millis(4),
            "{cpu:?} of CPU while held"
        );
    }

    #[test]
    fn the_clock_runs_from_the_first_message_to_the_last_and_sizes_are_checked() {
        let context = zmq::Context::new();
        let (pull, push) = pair(
            &context,
            "inproc://perf-clock",
            (zmq::PULL, zmq::PUSH),
            1000,
        );
        let sent = within(move || {
            push.send(&[0u8; 8][..], 0).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            push.send(&[0u8; 8][..], 0).unwrap();
            push.send(&[0u8; 9][..], 0).unwrap();
            push
        });
        let elapsed = receive_messages(&pull, 8, 2).unwrap();
        assert!(elapsed >= 45_000, "{elapsed} µs");
        let error = receive_messages(&pull, 8, 1).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("incorrect size received (9 bytes, expected 8)"),
            "{error}"
        );
        drop(sent.recv_timeout(WAIT).unwrap());
    }

    #[test]
    fn latency_loops_echo_every_round_trip() {
        let context = zmq::Context::new();
        let (rep, req) = pair(&context, "inproc://perf-lat", (zmq::REP, zmq::REQ), 1000);
        let echoed = within(move || echo_round_trips(&rep, 16, 100).map(|()| rep));
        let elapsed = within(move || time_round_trips(&req, 16, 100).map(|us| (us, req)))
            .recv_timeout(WAIT)
            .expect("every round trip came back");
        assert!(elapsed.unwrap().0 >= 1);
        echoed.recv_timeout(WAIT).expect("the echo ends").unwrap();
    }

    /// An idle receiver sleeps until its first message.
    #[test]
    fn waiting_for_the_first_message_costs_no_cpu() {
        let context = zmq::Context::new();
        let (pull, push) = pair(&context, "inproc://perf-idle", (zmq::PULL, zmq::PUSH), 1000);
        let received = within(move || {
            let cpu = crate::broker::thread_cpu();
            let result = receive_messages(&pull, 8, 1);
            (result, crate::broker::thread_cpu() - cpu)
        });
        std::thread::sleep(std::time::Duration::from_secs(1));
        push.send(&[0u8; 8][..], 0).unwrap();
        let (result, cpu) = received.recv_timeout(WAIT).expect("the receiver ends");
        result.unwrap();
        assert!(
            cpu < std::time::Duration::from_millis(5),
            "{cpu:?} of CPU while idle"
        );
    }
}
