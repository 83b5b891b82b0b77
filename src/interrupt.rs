//! Ctrl-C and SIGTERM that wake a blocked poll (the guide's `s_catch_signals`).
//!
//! The guide's §9 "Handling Interrupt Signals" shows the self-pipe trick: the
//! signal handler writes a byte into a pipe, and every `zmq_poll` also watches
//! the pipe's read end, so a program blocked waiting for messages wakes up the
//! moment the user presses Ctrl-C, and can close its sockets and exit cleanly.
//!
//! Here the `ctrlc` crate runs our handler on an ordinary thread, which sets a
//! flag and writes into one end of a Unix socket pair. The other end is never
//! drained, so once a signal has arrived every later poll returns at once: a
//! program cannot miss it, whichever thread happens to be blocked.
//!
//! A plain blocking receive cannot watch the pipe, and a poll of two
//! descriptors before every receive costs a request-reply server a third more
//! system calls than the C's blocking `zmq_recv`. So [`recv_within`] (behind
//! `Message::recv`) receives with a blocking call cut into 100 ms slices: a
//! signal delivered to the waiting thread ends it at once (`EINTR`), one
//! delivered to another thread at the end of the slice.
//!
//! Until [`catch_signals`] is called the functions here behave like plain
//! ZeroMQ calls, and the default signal action (terminate) stays in force.
//!
//! A signal can also make a blocking libzmq call fail with `EINTR`. That is not
//! an error: [`retry_eintr`] retries the call unless we were told to stop (an
//! earlier Rust `interrupt` port crashed by unwrapping it).

use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Error;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static WAKE: OnceLock<UnixStream> = OnceLock::new();

/// Installs the Ctrl-C/SIGTERM handler. Call it once near the top of `main`;
/// calling it again does nothing.
pub fn catch_signals() {
    WAKE.get_or_init(|| {
        let (reader, writer) = UnixStream::pair().expect("cannot create the signal self-pipe");
        let _ = writer.set_nonblocking(true);
        let installed = ctrlc::set_handler(move || {
            INTERRUPTED.store(true, Ordering::SeqCst);
            // Non-blocking: after the first byte nobody needs more.
            let _ = (&writer).write(b" ");
        });
        if let Err(e) = installed {
            log::warn!("cannot install the Ctrl-C handler: {e}");
        }
        reader
    });
}

/// True once Ctrl-C or SIGTERM was received (the guide's `s_interrupted`).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The read end of the self-pipe, readable once a signal arrived; `None` until
/// [`catch_signals`] is called. Put it in a poll set with
/// `zmq::PollItem::from_fd` to build the §9 loop by hand.
pub fn wake_fd() -> Option<std::os::fd::RawFd> {
    WAKE.get().map(AsRawFd::as_raw_fd)
}

/// Runs a libzmq call again while it fails with `EINTR`, unless a signal asked
/// us to stop, in which case it returns `Error::Interrupted`.
pub fn retry_eintr<T>(mut call: impl FnMut() -> zmq::Result<T>) -> Result<T, Error> {
    loop {
        match call() {
            Err(zmq::Error::EINTR) if signalled_soon() => return Err(Error::Interrupted),
            Err(zmq::Error::EINTR) => continue,
            other => return other.map_err(Error::from),
        }
    }
}

/// After an `EINTR`: did Ctrl-C/SIGTERM arrive? The signal interrupts the
/// call at once, but `ctrlc` runs our handler a moment later on its own
/// thread, so the flag may not be set yet. Retrying straight away could block
/// again with the user's Ctrl-C lost; instead wait briefly for the self-pipe.
/// `EINTR` only comes with a signal, so this costs nothing in normal running.
fn signalled_soon() -> bool {
    if interrupted() {
        return true;
    }
    let Some(fd) = wake_fd() else {
        return false;
    };
    let mut items = [zmq::PollItem::from_fd(fd, zmq::POLLIN)];
    let _ = zmq::poll(&mut items, 100);
    interrupted()
}

/// Something [`poll_any`] can wait on: a ZeroMQ socket, or a raw file
/// descriptor such as a UDP socket or a pipe (chapter 8's beacons poll both).
#[derive(Clone, Copy)]
pub enum Pollable<'a> {
    Socket(&'a zmq::Socket),
    Fd(RawFd),
}

/// Polls `sockets` for input for at most `timeout_ms` (-1: no limit) and
/// returns, per socket, whether it is readable. Returns `Error::Interrupted`
/// as soon as Ctrl-C/SIGTERM arrives.
pub fn poll(sockets: &[&zmq::Socket], timeout_ms: i64) -> Result<Vec<bool>, Error> {
    let items: Vec<Pollable> = sockets.iter().map(|s| Pollable::Socket(s)).collect();
    poll_any(&items, timeout_ms)
}

/// [`poll`] over sockets and raw file descriptors alike: per item, whether
/// it is readable. Interruptible the same way.
pub fn poll_any(pollables: &[Pollable], timeout_ms: i64) -> Result<Vec<bool>, Error> {
    let deadline = deadline_after(timeout_ms);
    loop {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let mut items: Vec<zmq::PollItem> = pollables
            .iter()
            .map(|p| match p {
                Pollable::Socket(s) => s.as_poll_item(zmq::POLLIN),
                Pollable::Fd(fd) => zmq::PollItem::from_fd(*fd, zmq::POLLIN),
            })
            .collect();
        if let Some(fd) = wake_fd() {
            items.push(zmq::PollItem::from_fd(fd, zmq::POLLIN));
        }
        match zmq::poll(&mut items, remaining_ms(deadline, timeout_ms)) {
            Ok(_) => {
                if wake_fd().is_some() && items[pollables.len()].is_readable() {
                    return Err(Error::Interrupted);
                }
                // A file descriptor whose other end is gone (a closed
                // pipe on stdin) reports POLLHUP, which zmq_poll passes on
                // as an error, not as readable: count it as readable, so
                // the caller reads and sees the end instead of polling
                // for ever at full speed.
                return Ok(items[..pollables.len()]
                    .iter()
                    .zip(pollables)
                    .map(|(i, p)| match p {
                        Pollable::Socket(_) => i.is_readable(),
                        Pollable::Fd(_) => i.is_readable() || i.is_error(),
                    })
                    .collect());
            }
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `socket` is readable: `Ok(true)`, or `Ok(false)` when
/// `timeout_ms` ran out. Interruptible like [`poll`].
pub fn wait_readable(socket: &zmq::Socket, timeout_ms: i64) -> Result<bool, Error> {
    Ok(poll(&[socket], timeout_ms)?[0])
}

/// How long one blocking receive in [`recv_within`] waits before it looks at
/// the interrupt flag again, when the signal woke some other thread.
const RECV_WAKE_MS: i64 = 100;

/// Runs `receive` (a blocking receive on `socket`, such as
/// `|| socket.recv_multipart(0)`) until it returns a message, however long
/// that takes; `Error::Interrupted` on Ctrl-C/SIGTERM. See [`recv_within`].
pub fn recv_blocking<T>(
    socket: &zmq::Socket,
    receive: impl FnMut() -> zmq::Result<T>,
) -> Result<T, Error> {
    match recv_within(socket, -1, receive)? {
        Some(message) => Ok(message),
        None => unreachable!("a receive without a time limit returned no message"),
    }
}

/// Runs `receive` (a blocking receive on `socket`) until it returns a
/// message, `Ok(None)` after `timeout_ms` (-1: no limit), without a poll: the
/// cheapest wait libzmq has, the one the C and C++ examples use.
///
/// A plain blocking `zmq_recv` cannot watch the self-pipe, so once
/// [`catch_signals`] was called the wait is cut into slices of at most 100 ms
/// (`ZMQ_RCVTIMEO`, set for the call and put back after it): a signal
/// delivered to this thread ends the wait at once with `EINTR`, one delivered
/// to another thread within 100 ms; either way the result is
/// `Error::Interrupted`. Compared with [`wait_readable`] and then a receive,
/// this makes three fewer system calls per message (no `zmq_poll` over two
/// descriptors with its non-blocking first pass): a tenth of the Freelance
/// round trip with three servers on two cores.
pub fn recv_within<T>(
    socket: &zmq::Socket,
    timeout_ms: i64,
    mut receive: impl FnMut() -> zmq::Result<T>,
) -> Result<Option<T>, Error> {
    let deadline = deadline_after(timeout_ms);
    let previous = socket.get_rcvtimeo()?;
    let mut slice = previous;
    let result = loop {
        if interrupted() {
            break Err(Error::Interrupted);
        }
        // What is left of the caller's time, rounded up, so that a fraction
        // of a millisecond is waited for rather than spun through.
        let left = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000) as i64
        });
        let wanted = match (left, wake_fd().is_some()) {
            (None, false) => -1,
            (None, true) => RECV_WAKE_MS,
            (Some(left), false) => left,
            (Some(left), true) => left.min(RECV_WAKE_MS),
        } as i32;
        if wanted != slice {
            socket.set_rcvtimeo(wanted)?;
            slice = wanted;
        }
        match receive() {
            Ok(message) => break Ok(Some(message)),
            Err(zmq::Error::EAGAIN) if left == Some(0) => break Ok(None),
            Err(zmq::Error::EAGAIN) => continue,
            Err(zmq::Error::EINTR) if signalled_soon() => break Err(Error::Interrupted),
            Err(zmq::Error::EINTR) => continue,
            Err(e) => break Err(e.into()),
        }
    };
    if slice != previous {
        // Best effort: a socket whose context is gone (ETERM) has no options.
        let _ = socket.set_rcvtimeo(previous);
    }
    result
}

/// `zmq_proxy(frontend, backend)` that Ctrl-C/SIGTERM can stop: returns
/// `Error::Interrupted` once a signal arrived, so the caller can close its
/// sockets and exit cleanly.
///
/// A blocked `zmq_proxy` only notices a signal if it happens to be delivered
/// to the proxy's own thread (then it fails with `EINTR`); with libzmq's I/O
/// threads and the signal thread around, that is luck. So we run
/// `zmq_proxy_steerable` instead, with a control PAIR socket whose other end
/// belongs to a small watcher thread: the watcher waits for the signal and
/// sends the proxy `TERMINATE`. The proxy reads that only between bursts,
/// so if it is stuck in a send behind a full backend the watcher also passes
/// the signal on to the proxy's thread (`pthread_kill`, every 100 ms until
/// the proxy returns), which ends the send with `EINTR`. Without
/// [`catch_signals`] this is plain `zmq_proxy`. `context` must be the sockets' context (for the inproc pipe).
pub fn proxy(
    context: &zmq::Context,
    frontend: &mut zmq::Socket,
    backend: &mut zmq::Socket,
) -> Result<(), Error> {
    proxy_with_capture(context, frontend, backend, None)
}

/// [`proxy`] that also sends a copy of every message it passes to `capture`
/// (`zmq_proxy`'s third socket: Espresso's listener, §36).
pub fn proxy_with_capture(
    context: &zmq::Context,
    frontend: &mut zmq::Socket,
    backend: &mut zmq::Socket,
    mut capture: Option<&mut zmq::Socket>,
) -> Result<(), Error> {
    if wake_fd().is_none() {
        return retry_eintr(|| match capture.as_deref_mut() {
            Some(capture) => zmq::proxy_with_capture(frontend, backend, capture),
            None => zmq::proxy(frontend, backend),
        });
    }
    static PROXIES: AtomicUsize = AtomicUsize::new(0);
    let endpoint = format!(
        "inproc://zguide-proxy-control-{}",
        PROXIES.fetch_add(1, Ordering::SeqCst)
    );
    let mut control = context.socket(zmq::PAIR)?;
    control.bind(&endpoint)?;
    let watcher_end = context.socket(zmq::PAIR)?;
    watcher_end.connect(&endpoint)?;

    // SAFETY: pthread_self() has no preconditions; this thread runs the
    // proxy and outlives the watcher (the scope below joins it).
    let proxy_thread = unsafe { libc::pthread_self() };
    let proxy_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let control = &mut control;
        let proxy_done = &proxy_done;
        scope.spawn(move || {
            // Readable pipe: the proxy ended on its own; nothing to do.
            if let Err(Error::Interrupted) = wait_readable(&watcher_end, -1) {
                let _ = watcher_end.send("TERMINATE", zmq::DONTWAIT);
                // The proxy reads TERMINATE only between bursts. Inside one
                // it sends with blocking calls, and behind a full backend
                // (a slow worker) a burst of 1000 requests can take the
                // worker's time for each. Only a signal on the proxy's own
                // thread cuts such a send short (EINTR), and the user's went
                // to whichever thread the kernel chose: so pass it on to
                // the proxy's thread until the proxy has returned. (A
                // second SIGINT only sets the flag again.)
                while !proxy_done.load(Ordering::SeqCst) {
                    // SAFETY: the proxy's thread is alive until the scope
                    // has joined this one.
                    unsafe { libc::pthread_kill(proxy_thread, libc::SIGINT) };
                    std::thread::sleep(Duration::from_millis(RECV_WAKE_MS as u64));
                }
            }
        });
        // EINTR before the handler set the flag: run on; TERMINATE follows.
        let result = retry_eintr(|| match capture.as_deref_mut() {
            Some(capture) => zmq::proxy_steerable_with_capture(frontend, backend, capture, control),
            None => zmq::proxy_steerable(frontend, backend, control),
        });
        proxy_done.store(true, Ordering::SeqCst);
        if !interrupted() {
            let _ = control.send("", zmq::DONTWAIT); // let the watcher go
        }
        match result {
            Ok(()) if interrupted() => Err(Error::Interrupted),
            other => other,
        }
    })
}

/// Sleeps `ms` milliseconds, returning `Error::Interrupted` early on Ctrl-C.
pub fn sleep_ms(ms: u64) -> Result<(), Error> {
    let Some(fd) = wake_fd() else {
        std::thread::sleep(Duration::from_millis(ms));
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let mut items = [zmq::PollItem::from_fd(fd, zmq::POLLIN)];
        match zmq::poll(&mut items, left.as_millis().max(1) as i64) {
            Ok(_) | Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn deadline_after(timeout_ms: i64) -> Option<Instant> {
    (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64))
}

/// The poll timeout still left before `deadline`, so that retries after
/// `EINTR` do not stretch the caller's timeout.
fn remaining_ms(deadline: Option<Instant>, timeout_ms: i64) -> i64 {
    match deadline {
        None => timeout_ms,
        Some(d) => millis_until(d),
    }
}

/// `wait` as a poll timeout in milliseconds, rounded up: 0.4 ms is 1 ms, not
/// a poll that returns at once, which made a loop that polls until a
/// deadline spin through the last millisecond of every wait.
pub fn millis(wait: Duration) -> i64 {
    i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// The poll timeout, rounded up, from now until `deadline` (0 once it passed).
pub fn millis_until(deadline: Instant) -> i64 {
    millis(deadline.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(999)), 1);
        assert_eq!(millis(Duration::from_millis(1)), 1);
        assert_eq!(millis(Duration::from_micros(1001)), 2);
        assert_eq!(millis(Duration::from_millis(2500)), 2500);
        assert_eq!(millis(Duration::MAX), i64::MAX);
        assert_eq!(millis_until(Instant::now() - Duration::from_secs(1)), 0);
        let later = millis_until(Instant::now() + Duration::from_millis(300));
        assert!((200..=300).contains(&later), "{later}");
    }

    #[test]
    fn sleeps_sleep_and_blocking_receives_wait_without_spinning() {
        let start = Instant::now();
        sleep_ms(50).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A receive with no time limit blocks in libzmq until the message
        // comes (a 1 ms receive timeout would spin here for a second).
        let context = zmq::Context::new();
        let pull = context.socket(zmq::PULL).unwrap();
        pull.bind("inproc://interrupt-blocking").unwrap();
        let push = context.socket(zmq::PUSH).unwrap();
        push.connect("inproc://interrupt-blocking").unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            push.send("late", 0).unwrap();
            push
        });
        let cpu = crate::broker::thread_cpu();
        let message = recv_blocking(&pull, || pull.recv_bytes(0)).unwrap();
        let cpu = crate::broker::thread_cpu() - cpu;
        assert_eq!(message, b"late");
        assert!(
            cpu < Duration::from_millis(5),
            "{cpu:?} of CPU while blocked"
        );
        drop(sender.join().unwrap());
    }

    #[test]
    fn an_eintr_without_a_signal_is_retried() {
        let mut calls = 0;
        let result = retry_eintr(|| {
            calls += 1;
            if calls < 3 {
                Err(zmq::Error::EINTR)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.unwrap(), 3);
        assert!(matches!(
            retry_eintr(|| Err::<(), _>(zmq::Error::EAGAIN)),
            Err(Error::Zmq(zmq::Error::EAGAIN))
        ));
    }

    #[test]
    fn what_is_left_of_a_timeout_is_rounded_up_to_the_millisecond() {
        assert_eq!(remaining_ms(Some(Instant::now()), 5), 0);
        assert_eq!(remaining_ms(None, -1), -1);
        // An idle poll of 1 ms really waits (it returned at once, so a loop
        // polling until a deadline spun).
        let context = zmq::Context::new();
        let socket = context.socket(zmq::PULL).unwrap();
        let start = Instant::now();
        let mut polls = 0;
        while start.elapsed() < Duration::from_millis(50) {
            poll_any(&[Pollable::Socket(&socket)], 1).unwrap();
            polls += 1;
        }
        assert!(polls <= 55, "{polls} polls of 1 ms in 50 ms");
    }

    #[test]
    fn poll_any_reports_sockets_and_raw_fds() {
        let context = zmq::Context::new();
        let rx = context.socket(zmq::PAIR).unwrap();
        rx.bind("inproc://poll-any").unwrap();
        let tx = context.socket(zmq::PAIR).unwrap();
        tx.connect("inproc://poll-any").unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = udp.as_raw_fd();
        let items = [Pollable::Socket(&rx), Pollable::Fd(fd)];
        assert_eq!(poll_any(&items, 0).unwrap(), [false, false]);
        udp.send_to(b"beacon", udp.local_addr().unwrap()).unwrap();
        assert_eq!(poll_any(&items, 5000).unwrap(), [false, true]);
        tx.send("x", 0).unwrap();
        assert_eq!(poll_any(&items, 5000).unwrap(), [true, true]);
    }

    fn pair(name: &str) -> (zmq::Context, zmq::Socket, zmq::Socket) {
        let context = zmq::Context::new();
        let rx = context.socket(zmq::PAIR).unwrap();
        rx.bind(&format!("inproc://{name}")).unwrap();
        let tx = context.socket(zmq::PAIR).unwrap();
        tx.connect(&format!("inproc://{name}")).unwrap();
        (context, rx, tx)
    }

    #[test]
    fn recv_within_keeps_the_callers_limit_not_the_sockets() {
        let (_context, rx, _tx) = pair("recv-within-limit");
        // The socket's own timeout is far longer than the call's: the call's wins.
        rx.set_rcvtimeo(5000).unwrap();
        let started = Instant::now();
        let got = recv_within(&rx, 200, || rx.recv_bytes(0)).unwrap();
        let waited = started.elapsed();
        assert_eq!(got, None);
        assert!(
            waited >= Duration::from_millis(200),
            "gave up early: {waited:?}"
        );
        assert!(waited < Duration::from_millis(2000), "waited {waited:?}");
        assert_eq!(
            rx.get_rcvtimeo().unwrap(),
            5000,
            "the socket's timeout is put back"
        );
    }

    #[test]
    fn recv_within_zero_only_takes_what_is_waiting() {
        let (_context, rx, tx) = pair("recv-within-zero");
        assert_eq!(recv_within(&rx, 0, || rx.recv_bytes(0)).unwrap(), None);
        tx.send("waiting", 0).unwrap();
        // inproc delivery is immediate once the pipe exists.
        let got = recv_within(&rx, 1000, || rx.recv_multipart(0)).unwrap();
        assert_eq!(got, Some(vec![b"waiting".to_vec()]));
        assert_eq!(rx.get_rcvtimeo().unwrap(), -1);
    }

    #[test]
    fn recv_blocking_outwaits_a_short_socket_timeout() {
        let (_context, rx, tx) = pair("recv-blocking-wait");
        // A socket timeout of 10 ms must not end a wait without a limit: the
        // message comes ten times later than that.
        rx.set_rcvtimeo(10).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            tx.send("late", 0).unwrap();
            tx
        });
        assert_eq!(recv_blocking(&rx, || rx.recv_bytes(0)).unwrap(), b"late");
        assert_eq!(rx.get_rcvtimeo().unwrap(), 10);
        drop(sender.join());
    }

    /// Set in the child process that the signal tests start: how it waits.
    const SIGNAL_CHILD: &str = "ZGUIDE_INTERRUPT_TEST_CHILD";

    /// Not a test of its own: the child process of the two signal tests
    /// below (it returns at once when run without them). It installs the
    /// handler, optionally blocks SIGTERM in this thread so that the signal
    /// must go to another one, and waits in `recv_blocking` for a message
    /// nobody sends.
    #[test]
    fn signal_child() {
        let Ok(mode) = std::env::var(SIGNAL_CHILD) else {
            return;
        };
        catch_signals();
        let (_context, rx, _tx) = pair("signal-child");
        if mode == "elsewhere" {
            block_sigterm_here();
        }
        if mode == "proxy" {
            // A proxy stuck in a blocking send: its backend holds two
            // messages (SNDHWM 1 + RCVHWM 1 over inproc) and nobody reads
            // them, ten are waiting at the frontend. SIGTERM is blocked on
            // this thread (so the watcher thread inherits that too): the
            // user's signal lands elsewhere, and TERMINATE alone would wait
            // for the end of a burst that never ends.
            block_sigterm_here();
            let context = zmq::Context::new();
            let mut frontend = context.socket(zmq::PULL).unwrap();
            frontend.bind("inproc://proxy-front").unwrap();
            let feeder = context.socket(zmq::PUSH).unwrap();
            feeder.connect("inproc://proxy-front").unwrap();
            let mut backend = context.socket(zmq::PUSH).unwrap();
            backend.set_sndhwm(1).unwrap();
            backend.bind("inproc://proxy-back").unwrap();
            let stuck = context.socket(zmq::PULL).unwrap();
            stuck.set_rcvhwm(1).unwrap();
            stuck.connect("inproc://proxy-back").unwrap();
            for n in 0..10 {
                feeder.send(&format!("task {n}"), 0).unwrap();
            }
            println!("waiting");
            let result = proxy(&context, &mut frontend, &mut backend);
            println!("result: {result:?}");
            assert!(matches!(result, Err(Error::Interrupted)));
            for socket in [&frontend, &feeder, &backend, &stuck] {
                socket.set_linger(0).unwrap();
            }
            return;
        }
        if mode == "limit" {
            // No signal comes: a limit of 350 ms is waited for in four
            // slices (100, 100, 100, 50 ms), and all of it.
            rx.set_rcvtimeo(5000).unwrap();
            let started = Instant::now();
            let result = recv_within(&rx, 350, || rx.recv_bytes(0));
            println!("waited {} ms: {result:?}", started.elapsed().as_millis());
            assert!(matches!(result, Ok(None)));
            assert_eq!(rx.get_rcvtimeo().unwrap(), 5000);
            return;
        }
        let mut sender = None;
        if mode == "here" {
            // A signal for this very thread, sent once it waits: its poll
            // inside libzmq fails with EINTR. (The test harness runs tests
            // on threads of its own, so a SIGTERM to the process may well go
            // to another thread; that is the "elsewhere" case.)
            // SAFETY: pthread_self() of this thread, which outlives the
            // sender: it joins it below before it returns.
            let waiting = unsafe { libc::pthread_self() } as usize;
            sender = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                // SAFETY: see above; the thread is still waiting or done.
                unsafe { libc::pthread_kill(waiting as libc::pthread_t, libc::SIGTERM) };
            }));
        }
        println!("waiting");
        let result = recv_blocking(&rx, || rx.recv_bytes(0));
        if let Some(sender) = sender {
            sender.join().unwrap();
        }
        println!("result: {result:?}");
        assert!(matches!(result, Err(Error::Interrupted)));
    }

    /// Blocks SIGTERM on the calling thread (and the threads it starts), so
    /// that a SIGTERM to the process is delivered to some other thread.
    fn block_sigterm_here() {
        // SAFETY: a signal set on the stack, changed with libc's own calls.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            assert_eq!(
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
                0
            );
        }
    }

    /// Starts [`signal_child`] in `mode`, sends it SIGTERM once it waits
    /// (in mode `elsewhere`; `here` signals itself), and returns how long it took to exit
    /// after that and what it printed.
    fn signal_the_child(mode: &str) -> (Duration, String) {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "interrupt::tests::signal_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(SIGNAL_CHILD, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut output = String::new();
        let limit = Instant::now() + Duration::from_secs(20);
        let ready = if mode == "limit" { "waited" } else { "waiting" };
        while !output.contains(ready) {
            let left = limit.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => output += &(line + "\n"),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the child never waited: {output}");
                }
            }
        }
        let signalled = Instant::now();
        if mode == "elsewhere" || mode == "proxy" {
            // SAFETY: kill(2) on the pid of a child we started and still own.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        }
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if signalled.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("the child still waits 10 s after SIGTERM: {output}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = signalled.elapsed();
        output.extend(lines.try_iter().map(|line| line + "\n"));
        assert!(status.success(), "the child failed ({status}): {output}");
        (took, output)
    }

    #[test]
    fn a_signal_to_the_waiting_thread_ends_recv_blocking() {
        let (took, output) = signal_the_child("here");
        assert!(output.contains("result: Err(Interrupted)"), "{output}");
        assert!(took < Duration::from_secs(2), "took {took:?}: {output}");
    }

    #[test]
    fn a_signal_to_another_thread_ends_recv_blocking_within_a_slice() {
        // The waiting thread blocks SIGTERM, so only the flag, read between
        // slices of 100 ms, can end its wait.
        let (took, output) = signal_the_child("elsewhere");
        assert!(output.contains("result: Err(Interrupted)"), "{output}");
        assert!(took < Duration::from_secs(2), "took {took:?}: {output}");
    }

    #[test]
    fn a_signal_to_another_thread_ends_a_proxy_stuck_in_a_send() {
        // TERMINATE cannot reach a proxy blocked in a send; the signal passed
        // on to its thread does.
        let (took, output) = signal_the_child("proxy");
        assert!(output.contains("result: Err(Interrupted)"), "{output}");
        assert!(took < Duration::from_secs(2), "took {took:?}: {output}");
    }

    #[test]
    fn recv_within_a_limit_longer_than_a_slice_waits_all_of_it() {
        let (_, output) = signal_the_child("limit");
        let waited: u64 = output
            .split("waited ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("no time in: {output}"));
        assert!(
            (350..2000).contains(&waited),
            "waited {waited} ms: {output}"
        );
        assert!(output.contains(": Ok(None)"), "{output}");
    }

    #[test]
    fn a_pipe_whose_writer_is_gone_is_readable() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two descriptors of a valid array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let items = [Pollable::Fd(fds[0])];
        assert_eq!(poll_any(&items, 0).unwrap(), [false], "an open, empty pipe");
        // SAFETY: closing the write end we own; the read end stays ours.
        unsafe { libc::close(fds[1]) };
        assert_eq!(
            poll_any(&items, 1000).unwrap(),
            [true],
            "end of file is news"
        );
        // SAFETY: the read end is ours to close.
        unsafe { libc::close(fds[0]) };
    }

    #[test]
    fn a_proxy_copies_what_it_passes_to_the_capture_socket() {
        let context = zmq::Context::new();
        let mut front = context.socket(zmq::PULL).unwrap();
        front.bind("inproc://capture-front").unwrap();
        let mut back = context.socket(zmq::PUSH).unwrap();
        back.bind("inproc://capture-back").unwrap();
        let mut capture = context.socket(zmq::PUSH).unwrap();
        capture.bind("inproc://capture-copy").unwrap();
        let listener = context.socket(zmq::PULL).unwrap();
        listener.connect("inproc://capture-copy").unwrap();
        let sink = context.socket(zmq::PULL).unwrap();
        sink.connect("inproc://capture-back").unwrap();
        let source = context.socket(zmq::PUSH).unwrap();
        source.connect("inproc://capture-front").unwrap();
        let proxy_context = context.clone();
        std::thread::spawn(move || {
            let _ = proxy_with_capture(&proxy_context, &mut front, &mut back, Some(&mut capture));
        });
        source.send("tick", 0).unwrap();
        assert_eq!(sink.recv_bytes(0).unwrap(), b"tick");
        assert_eq!(listener.recv_bytes(0).unwrap(), b"tick");
        // The proxy thread ends with the process; the test does not wait for it.
        std::mem::forget(context);
    }
}
