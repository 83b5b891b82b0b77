//! `Reactor`: socket readers and timers in one poll loop (the czmq `zloop` idea).
//!
//! A broker written as a hand-made poll loop mixes three things: *what* to
//! wait for, *how long* to wait, and *what to do* when something happens. The
//! reactor keeps the first two and lets the program say only the third:
//!
//! * a **reader** is a socket (or a raw file descriptor, such as a UDP
//!   socket) plus a handler, called whenever it is readable (the handler
//!   receives the message itself);
//! * a **timer** is a delay, a repeat count (0: for ever) and a handler;
//! * the loop is *tickless*: it polls exactly until the next timer is due, or
//!   without a timeout when no timer is set, so an idle reactor costs nothing.
//!
//! Handlers get the reactor and the program's state, so they can add and remove
//! readers and timers while the loop runs. `lbbroker3` relies on it: it listens
//! to clients only while a worker is free, by ending the frontend reader when
//! the last free worker is taken and adding it back when one reports in.
//!
//! The state type `S` owns the sockets; a reader names its socket with a small
//! function such as `|broker: &Broker| &broker.frontend`, which keeps the
//! borrow checker happy without handing sockets over to the reactor.
//!
//! The loop ends when a handler calls [`Reactor::stop`] (`run` returns
//! `Ok`), when a handler returns an error (`run` returns it; like a `zloop`
//! handler returning -1), when nothing is left to wait for, or on Ctrl-C /
//! SIGTERM: the poll also watches the [`interrupt`] wake-up, so `run` returns
//! `Err(Error::Interrupted)` promptly, which programs treat as a clean exit.
//!
//! Order is predictable, which the tests rely on: after each poll, due timers
//! fire first (earliest first; equal times in the order they were added), then
//! readable readers in the order they were added. A reader removed by an
//! earlier handler in the same round is not called.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::interrupt::{self, Pollable};
use crate::Error;

/// A handler: gets the reactor (to add or end readers and timers, or stop)
/// and the program's state. An error ends the loop.
type Handler<S> = Rc<RefCell<dyn FnMut(&mut Reactor<S>, &mut S) -> Result<(), Error>>>;

/// Picks a reader's socket out of the state.
pub type SocketOf<S> = fn(&S) -> &zmq::Socket;

/// Picks a reader's raw file descriptor (a UDP socket, a pipe) out of the state.
pub type FdOf<S> = fn(&S) -> RawFd;

/// What a reader waits on.
enum Source<S> {
    Socket(SocketOf<S>),
    Fd(FdOf<S>),
}

/// Names a timer, to end it with [`Reactor::timer_end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

struct Reader<S> {
    name: &'static str,
    source: Source<S>,
    handler: Handler<S>,
    /// Distinguishes a reader from a later one added under the same name.
    serial: u64,
}

struct Timer<S> {
    id: TimerId,
    delay: Duration,
    /// How many more times to fire; `None`: for ever.
    remaining: Option<u64>,
    due: Instant,
    handler: Handler<S>,
}

/// Readers and timers over a state `S`. See the module docs.
pub struct Reactor<S> {
    readers: Vec<Reader<S>>,
    timers: Vec<Timer<S>>,
    serial: u64,
    stopping: bool,
}

impl<S> Default for Reactor<S> {
    fn default() -> Self {
        Reactor::new()
    }
}

impl<S> Reactor<S> {
    /// An empty reactor.
    pub fn new() -> Reactor<S> {
        Reactor {
            readers: Vec::new(),
            timers: Vec::new(),
            serial: 0,
            stopping: false,
        }
    }

    /// Calls `handler` whenever the socket picked by `socket` is readable
    /// (`zloop_reader`). A reader already registered under `name` is replaced.
    pub fn reader(
        &mut self,
        name: &'static str,
        socket: SocketOf<S>,
        handler: impl FnMut(&mut Reactor<S>, &mut S) -> Result<(), Error> + 'static,
    ) {
        self.add_reader(name, Source::Socket(socket), handler);
    }

    /// Like [`reader`](Reactor::reader), for a raw file descriptor such as a
    /// UDP socket (`zloop_poller` with a file descriptor): `handler` is called
    /// whenever it is readable and must read from it.
    pub fn reader_fd(
        &mut self,
        name: &'static str,
        fd: FdOf<S>,
        handler: impl FnMut(&mut Reactor<S>, &mut S) -> Result<(), Error> + 'static,
    ) {
        self.add_reader(name, Source::Fd(fd), handler);
    }

    fn add_reader(
        &mut self,
        name: &'static str,
        source: Source<S>,
        handler: impl FnMut(&mut Reactor<S>, &mut S) -> Result<(), Error> + 'static,
    ) {
        self.reader_end(name);
        self.serial += 1;
        self.readers.push(Reader {
            name,
            source,
            handler: Rc::new(RefCell::new(handler)),
            serial: self.serial,
        });
    }

    /// Stops reading the socket registered as `name` (`zloop_reader_end`).
    /// Its messages wait in ZeroMQ's queues until a reader is added again.
    pub fn reader_end(&mut self, name: &str) {
        self.readers.retain(|r| r.name != name);
    }

    /// True while a reader named `name` is registered.
    pub fn has_reader(&self, name: &str) -> bool {
        self.readers.iter().any(|r| r.name == name)
    }

    /// Calls `handler` after `delay_ms`, `times` times (0: for ever), each
    /// `delay_ms` after the previous call (`zloop_timer`).
    pub fn timer(
        &mut self,
        delay_ms: u64,
        times: u64,
        handler: impl FnMut(&mut Reactor<S>, &mut S) -> Result<(), Error> + 'static,
    ) -> TimerId {
        self.serial += 1;
        let id = TimerId(self.serial);
        let delay = Duration::from_millis(delay_ms);
        self.timers.push(Timer {
            id,
            delay,
            remaining: (times > 0).then_some(times),
            due: Instant::now() + delay,
            handler: Rc::new(RefCell::new(handler)),
        });
        id
    }

    /// Cancels a timer (`zloop_timer_end`); unknown ids are ignored.
    pub fn timer_end(&mut self, id: TimerId) {
        self.timers.retain(|t| t.id != id);
    }

    /// Ends [`run`](Reactor::run) after the current handler returns.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Runs the loop until a handler stops it or fails, nothing is left to
    /// wait for, or Ctrl-C/SIGTERM (`Err(Error::Interrupted)`).
    pub fn run(&mut self, state: &mut S) -> Result<(), Error> {
        self.stopping = false;
        while !self.stopping {
            if self.readers.is_empty() && self.timers.is_empty() {
                break;
            }
            let readable = {
                let items: Vec<Pollable> = self
                    .readers
                    .iter()
                    .map(|r| match r.source {
                        Source::Socket(socket) => Pollable::Socket(socket(state)),
                        Source::Fd(fd) => Pollable::Fd(fd(state)),
                    })
                    .collect();
                interrupt::poll_any(&items, self.poll_timeout())?
            };
            let ready: Vec<u64> = self
                .readers
                .iter()
                .zip(readable)
                .filter(|(_, readable)| *readable)
                .map(|(reader, _)| reader.serial)
                .collect();
            self.fire_due_timers(state)?;
            for serial in ready {
                if self.stopping {
                    break;
                }
                // Skip a reader that an earlier handler ended this round.
                let Some(handler) = self
                    .readers
                    .iter()
                    .find(|r| r.serial == serial)
                    .map(|r| r.handler.clone())
                else {
                    continue;
                };
                let mut handler = handler.borrow_mut();
                (*handler)(self, state)?;
            }
        }
        Ok(())
    }

    /// Milliseconds until the next timer is due (rounded up, so we never wake
    /// early and spin), or -1 when there is no timer.
    fn poll_timeout(&self) -> i64 {
        let Some(next) = self.timers.iter().map(|t| t.due).min() else {
            return -1;
        };
        let left = next.saturating_duration_since(Instant::now());
        left.as_micros().div_ceil(1000) as i64
    }

    fn fire_due_timers(&mut self, state: &mut S) -> Result<(), Error> {
        let now = Instant::now();
        let mut due: Vec<(Instant, TimerId)> = self
            .timers
            .iter()
            .filter(|t| t.due <= now)
            .map(|t| (t.due, t.id))
            .collect();
        due.sort();
        for (_, id) in due {
            if self.stopping {
                break;
            }
            let Some(index) = self.timers.iter().position(|t| t.id == id) else {
                continue; // ended by an earlier handler
            };
            // Reschedule (or retire) before calling, so the handler itself
            // may end or replace its timer.
            let timer = &mut self.timers[index];
            let handler = timer.handler.clone();
            match timer.remaining {
                Some(1) => {
                    self.timers.remove(index);
                }
                remaining => {
                    timer.remaining = remaining.map(|n| n - 1);
                    timer.due = now + timer.delay;
                }
            }
            let mut handler = handler.borrow_mut();
            (*handler)(self, state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log {
        events: Vec<String>,
    }

    #[test]
    fn timers_fire_in_due_order_then_the_loop_runs_dry() {
        let mut reactor: Reactor<Log> = Reactor::new();
        for (delay, name) in [(30, "c"), (10, "a"), (20, "b"), (10, "a2")] {
            reactor.timer(delay, 1, move |_, log: &mut Log| {
                log.events.push(name.to_string());
                Ok(())
            });
        }
        let mut log = Log::default();
        reactor.run(&mut log).unwrap(); // returns: nothing left to wait for
        assert_eq!(log.events, ["a", "a2", "b", "c"]);
    }

    #[test]
    fn a_repeating_timer_fires_its_count_and_can_be_ended() {
        let mut reactor: Reactor<Log> = Reactor::new();
        reactor.timer(5, 3, |_, log: &mut Log| {
            log.events.push("three".into());
            Ok(())
        });
        let forever = reactor.timer(5, 0, |_, log: &mut Log| {
            log.events.push("forever".into());
            Ok(())
        });
        reactor.timer(100, 1, move |reactor, _| {
            reactor.timer_end(forever);
            Ok(())
        });
        let mut log = Log::default();
        reactor.run(&mut log).unwrap();
        assert_eq!(log.events.iter().filter(|e| *e == "three").count(), 3);
        // Every 5 ms for 100 ms: about 20 calls, not one per turn of the loop.
        let forever = log.events.iter().filter(|e| *e == "forever").count();
        assert!((3..=40).contains(&forever), "{forever}");
    }

    struct Pipe {
        tx: zmq::Socket,
        rx: zmq::Socket,
        got: Vec<String>,
    }

    fn pipe(name: &str) -> Pipe {
        let context = zmq::Context::new();
        let rx = context.socket(zmq::PAIR).unwrap();
        rx.bind(&format!("inproc://{name}")).unwrap();
        let tx = context.socket(zmq::PAIR).unwrap();
        tx.connect(&format!("inproc://{name}")).unwrap();
        Pipe {
            tx,
            rx,
            got: Vec::new(),
        }
    }

    fn take_one(_: &mut Reactor<Pipe>, pipe: &mut Pipe) -> Result<(), Error> {
        let text = pipe.rx.recv_string(0)?.unwrap_or_default();
        pipe.got.push(text);
        Ok(())
    }

    #[test]
    fn a_reader_that_ends_itself_is_not_called_again() {
        let mut state = pipe("reactor-end");
        state.tx.send("one", 0).unwrap();
        state.tx.send("two", 0).unwrap();
        let mut reactor = Reactor::new();
        reactor.reader(
            "rx",
            |p: &Pipe| &p.rx,
            |reactor, pipe| {
                take_one(reactor, pipe)?;
                reactor.reader_end("rx");
                Ok(())
            },
        );
        // No reader left after the first message, no timer: run returns.
        reactor.run(&mut state).unwrap();
        assert_eq!(state.got, ["one"]);
        assert_eq!(state.rx.recv_string(zmq::DONTWAIT).unwrap().unwrap(), "two");
    }

    #[test]
    fn a_reader_added_by_a_timer_drains_what_waited_and_stop_ends_the_loop() {
        let mut state = pipe("reactor-add");
        for text in ["a", "b", "c"] {
            state.tx.send(text, 0).unwrap();
        }
        let mut reactor = Reactor::new();
        reactor.timer(20, 1, |reactor, _| {
            reactor.reader(
                "rx",
                |p: &Pipe| &p.rx,
                |reactor, pipe| {
                    take_one(reactor, pipe)?;
                    if pipe.got.len() == 3 {
                        reactor.stop();
                    }
                    Ok(())
                },
            );
            Ok(())
        });
        reactor.run(&mut state).unwrap();
        assert_eq!(state.got, ["a", "b", "c"]);
        assert!(reactor.has_reader("rx"));
    }

    #[test]
    fn a_handler_error_ends_the_loop_with_that_error() {
        let mut reactor: Reactor<Log> = Reactor::new();
        reactor.timer(1, 0, |_, _| Err(Error::Protocol("bad".into())));
        let result = reactor.run(&mut Log::default());
        assert!(matches!(result, Err(Error::Protocol(what)) if what == "bad"));
    }

    struct Udp {
        socket: std::net::UdpSocket,
        got: Vec<Vec<u8>>,
    }

    #[test]
    fn a_raw_fd_reader_is_called_when_its_fd_is_readable() {
        use std::os::fd::AsRawFd;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let mut state = Udp {
            socket,
            got: Vec::new(),
        };
        let mut reactor = Reactor::new();
        reactor.reader_fd(
            "udp",
            |u: &Udp| u.socket.as_raw_fd(),
            |reactor, udp| {
                let mut buf = [0u8; 64];
                let (n, _) = udp
                    .socket
                    .recv_from(&mut buf)
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                udp.got.push(buf[..n].to_vec());
                if udp.got.len() == 2 {
                    reactor.stop();
                }
                Ok(())
            },
        );
        reactor.timer(10, 2, move |_, udp: &mut Udp| {
            udp.socket
                .send_to(b"beacon", address)
                .map_err(|e| Error::Protocol(e.to_string()))?;
            Ok(())
        });
        reactor.run(&mut state).unwrap();
        assert_eq!(state.got, [b"beacon".to_vec(), b"beacon".to_vec()]);
    }

    #[test]
    fn poll_timeout_is_tickless() {
        let mut reactor: Reactor<Log> = Reactor::new();
        assert_eq!(reactor.poll_timeout(), -1, "no timer: wait for ever");
        reactor.timer(1000, 1, |_, _| Ok(()));
        let timeout = reactor.poll_timeout();
        assert!((900..=1000).contains(&timeout), "{timeout}");
    }

    struct TwoPipes {
        first: Pipe,
        second: Pipe,
        got: Vec<String>,
    }

    /// Both readable in the same round: each handler is called once and
    /// reads its own socket (without waiting: a handler called for the
    /// other's socket fails); an ended reader is gone from `has_reader`.
    #[test]
    fn two_readers_each_read_their_own_socket() {
        let mut state = TwoPipes {
            first: pipe("reactor-first"),
            second: pipe("reactor-second"),
            got: Vec::new(),
        };
        state.first.tx.send("1", 0).unwrap();
        state.second.tx.send("2", 0).unwrap();
        let mut reactor = Reactor::new();
        reactor.reader(
            "first",
            |t: &TwoPipes| &t.first.rx,
            |reactor, t| {
                let text = t.first.rx.recv_string(zmq::DONTWAIT)?.unwrap_or_default();
                t.got.push(format!("first {text}"));
                if t.got.len() == 2 {
                    reactor.stop();
                }
                Ok(())
            },
        );
        reactor.reader(
            "second",
            |t: &TwoPipes| &t.second.rx,
            |reactor, t| {
                let text = t.second.rx.recv_string(zmq::DONTWAIT)?.unwrap_or_default();
                t.got.push(format!("second {text}"));
                if t.got.len() == 2 {
                    reactor.stop();
                }
                Ok(())
            },
        );
        assert!(reactor.has_reader("first") && reactor.has_reader("second"));
        assert!(!reactor.has_reader("third"));
        reactor.run(&mut state).unwrap();
        state.got.sort();
        assert_eq!(state.got, ["first 1", "second 2"]);
        reactor.reader_end("first");
        assert!(!reactor.has_reader("first") && reactor.has_reader("second"));
    }
}
