//! `Actor`: a thread that talks to its owner over a PAIR pipe (the czmq
//! `zactor` idea, and the older `zthread_fork`).
//!
//! The guide runs clients, workers and servers as threads of one process, each
//! behaving as if it were a separate program: the only link between a thread
//! and the code that started it is a pair of `inproc://` PAIR sockets, the
//! *pipe*. Messages cross threads; shared state does not.
//!
//! The handshake is the one `zactor` uses:
//!
//! 1. [`Actor::new`] starts the thread and **waits until the task calls
//!    [`Pipe::signal`]**, so when `new` returns the task has made its sockets
//!    (a bound endpoint is really bound; nobody races ahead of it);
//! 2. the task serves its sockets and its pipe, and returns when it reads the
//!    [`TERM`] command (`$TERM`) from the pipe ([`is_term`] tests for it);
//! 3. dropping the `Actor` sends `$TERM` and joins the thread.
//!
//! If the task returns (or panics) before it signalled, `new` still returns:
//! the thread sends a signal on its way out, so nobody waits forever. A panic
//! in the task is reported with `log::error!` when the actor is dropped.
//!
//! Signals are single frames that cannot be mistaken for text: 8 bytes, the
//! 7-byte marker czmq uses (`0x77665544332211`) plus a status byte, as
//! `zsock_signal` sends them. [`Pipe::wait`] skips anything else, like
//! `zsock_wait`.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crate::interrupt;
use crate::{Error, Message};

/// The command that asks an actor to finish (czmq's `$TERM`).
pub const TERM: &str = "$TERM";

/// The marker that starts every signal frame, as in `zsock_signal`.
const SIGNAL_MARKER: u64 = 0x7766_5544_3322_1100;

/// True when `msg` is the [`TERM`] command.
pub fn is_term(msg: &Message) -> bool {
    msg.len() == 1 && msg.first() == Some(TERM.as_bytes())
}

/// The actor's end of the pipe, handed to the task.
pub struct Pipe {
    socket: zmq::Socket,
    context: zmq::Context,
}

impl Pipe {
    /// The PAIR socket: poll it with the task's other sockets.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The context the actor was started in, for the task's own sockets
    /// (inproc endpoints only connect within one context).
    pub fn context(&self) -> &zmq::Context {
        &self.context
    }

    /// Tells the owner "ready" (status 0) or reports a status (`zsock_signal`).
    pub fn signal(&self, status: u8) -> Result<(), Error> {
        send_signal(&self.socket, status)
    }

    /// Waits for a signal from the owner and returns its status
    /// (`zsock_wait`); other messages are dropped.
    pub fn wait(&self) -> Result<u8, Error> {
        wait_signal(&self.socket)
    }

    /// Receives the next message (command) from the owner.
    pub fn recv(&self) -> Result<Message, Error> {
        Message::recv_now(&self.socket)
    }

    /// Sends a message to the owner.
    pub fn send(&self, msg: Message) -> Result<(), Error> {
        msg.send(&self.socket)
    }

    /// The usual actor loop step: waits up to `timeout_ms` (-1: no limit)
    /// until one of `sockets` is readable, watching the pipe as well.
    /// `Ok(Some(flags))` says which sockets are readable (all false on
    /// timeout); `Ok(None)` means time to stop: `$TERM` arrived, or Ctrl-C.
    /// Other commands on the pipe are not expected by such a task; they are
    /// logged and dropped.
    pub fn poll(
        &self,
        sockets: &[&zmq::Socket],
        timeout_ms: i64,
    ) -> Result<Option<Vec<bool>>, Error> {
        let mut all = vec![&self.socket];
        all.extend_from_slice(sockets);
        let mut ready = match interrupt::poll(&all, timeout_ms) {
            Ok(ready) => ready,
            Err(Error::Interrupted) => return Ok(None),
            Err(e) => return Err(e),
        };
        if ready[0] {
            let command = self.recv()?;
            if is_term(&command) {
                return Ok(None);
            }
            log::warn!("actor: unexpected command dropped: {command:?}");
        }
        ready.remove(0);
        Ok(Some(ready))
    }
}

/// A running task on its own thread, with the owner's end of the pipe.
pub struct Actor {
    pipe: zmq::Socket,
    thread: Option<JoinHandle<()>>,
}

impl Actor {
    /// Starts `task` on a new thread and returns once it signalled ready.
    /// The task gets its end of the pipe, and must return on `$TERM`.
    pub fn new<F>(context: &zmq::Context, task: F) -> Result<Actor, Error>
    where
        F: FnOnce(&Pipe) + Send + 'static,
    {
        static PIPES: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!(
            "inproc://zguide-actor-{}-{}",
            std::process::id(),
            PIPES.fetch_add(1, Ordering::Relaxed)
        );
        let owner_end = context.socket(zmq::PAIR)?;
        owner_end.set_linger(0)?;
        owner_end.bind(&endpoint)?;
        let task_end = context.socket(zmq::PAIR)?;
        task_end.set_linger(0)?;
        task_end.connect(&endpoint)?;
        let pipe = Pipe {
            socket: task_end,
            context: context.clone(),
        };
        let thread = std::thread::spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| task(&pipe)));
            // Whatever happened, say so: this unblocks a `new` still waiting
            // for "ready", and tells the owner the task is over.
            let _ = pipe.signal(if outcome.is_ok() { 0 } else { 1 });
            drop(pipe);
            if let Err(panic) = outcome {
                resume_unwind(panic);
            }
        });
        let actor = Actor {
            pipe: owner_end,
            thread: Some(thread),
        };
        actor.wait()?;
        Ok(actor)
    }

    /// The owner's PAIR socket: poll it to hear from the actor.
    pub fn socket(&self) -> &zmq::Socket {
        &self.pipe
    }

    /// Sends a message (a command) to the actor. Waits while the pipe is
    /// full, but not for ever: once the task has ended (its end of the pipe
    /// is closed, and a PAIR with no peer would block for good) this returns
    /// [`Error::ActorEnded`].
    pub fn send(&self, msg: Message) -> Result<(), Error> {
        loop {
            match msg.clone().send_flags(&self.pipe, zmq::DONTWAIT) {
                Err(Error::Zmq(zmq::Error::EAGAIN)) => {}
                other => return other,
            }
            if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                return Err(Error::ActorEnded);
            }
            // Full, or the task is on its way out: look again shortly.
            let mut items = [self.pipe.as_poll_item(zmq::POLLOUT)];
            match zmq::poll(&mut items, 10) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receives a message from the actor, waiting as long as it takes
    /// (interruptible by Ctrl-C).
    pub fn recv(&self) -> Result<Message, Error> {
        Message::recv(&self.pipe)
    }

    /// Sends a signal to the actor (`zsock_signal` on a `zactor`); like
    /// [`send`](Actor::send), [`Error::ActorEnded`] once the task has ended.
    pub fn signal(&self, status: u8) -> Result<(), Error> {
        self.send(signal_message(status))
    }

    /// Waits for a signal from the actor (`zsock_wait`); other messages are dropped.
    pub fn wait(&self) -> Result<u8, Error> {
        wait_signal(&self.pipe)
    }
}

impl Drop for Actor {
    /// Sends `$TERM` and joins the thread (`zactor_destroy`).
    fn drop(&mut self) {
        // The task may already be gone; then nobody reads this, which is fine
        // (LINGER is 0, and DONTWAIT never blocks on a full pipe).
        let _ = self.pipe.send(TERM, zmq::DONTWAIT);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("an actor's task panicked");
            }
        }
    }
}

fn signal_message(status: u8) -> Message {
    Message::from_frames([(SIGNAL_MARKER | u64::from(status)).to_be_bytes()])
}

fn send_signal(socket: &zmq::Socket, status: u8) -> Result<(), Error> {
    signal_message(status).send(socket)
}

fn wait_signal(socket: &zmq::Socket) -> Result<u8, Error> {
    loop {
        let msg = Message::recv_now(socket)?;
        if let Some(status) = signal_status(&msg) {
            return Ok(status);
        }
    }
}

/// The status of a signal message, or `None` if `msg` is not a signal.
fn signal_status(msg: &Message) -> Option<u8> {
    let frame: [u8; 8] = msg.first()?.try_into().ok()?;
    let value = u64::from_be_bytes(frame);
    (msg.len() == 1 && value & !0xFF == SIGNAL_MARKER).then_some((value & 0xFF) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An actor that echoes commands until `$TERM`.
    fn echo(pipe: &Pipe) {
        pipe.signal(0).unwrap();
        while let Ok(msg) = pipe.recv() {
            if is_term(&msg) {
                break;
            }
            pipe.send(msg).unwrap();
        }
    }

    /// A PAIR whose peer has closed blocks a sender for ever; the owner of
    /// an actor whose task ended must get an error instead (asyncsrv's main
    /// used to hang when Ctrl-C ended its server before main told it to).
    #[test]
    fn commands_for_an_ended_task_are_refused_not_blocked() {
        let context = zmq::Context::new();
        let actor = Actor::new(&context, |pipe| pipe.signal(0).unwrap()).unwrap();
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Until the task's end of the pipe is closed, commands still
            // queue; after that, every one is refused.
            let mut sent = 0;
            let result = loop {
                match actor.signal(7) {
                    Ok(()) if sent < 5_000 => sent += 1,
                    other => break other,
                }
            };
            let again = actor.send(Message::from_frames(["hello"]));
            drop(actor);
            let _ = done.send((result, again, sent));
        });
        let (result, again, sent) = outcome
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a command for an ended actor blocked");
        assert!(
            matches!(result, Err(Error::ActorEnded)),
            "{result:?} after {sent}"
        );
        assert!(matches!(again, Err(Error::ActorEnded)), "{again:?}");
    }

    #[test]
    fn echo_actor_answers_then_stops_on_drop() {
        let context = zmq::Context::new();
        let actor = Actor::new(&context, echo).unwrap();
        actor.send(Message::from_frames(["ping", "1"])).unwrap();
        assert_eq!(
            actor.recv().unwrap().into_frames(),
            vec![b"ping".to_vec(), b"1".to_vec()]
        );
        drop(actor); // must not hang: the task reads $TERM and returns
    }

    #[test]
    fn new_returns_only_after_ready_so_bound_endpoints_exist() {
        let context = zmq::Context::new();
        let actor = Actor::new(&context, |pipe| {
            let server = pipe.context().socket(zmq::PAIR).unwrap();
            server.bind("inproc://actor-test-ready").unwrap();
            pipe.signal(0).unwrap();
            let _ = pipe.wait();
            drop(server);
        })
        .unwrap();
        // inproc connect before bind would also work in libzmq 4.x; what we
        // check here is that the endpoint is taken by the time new returns.
        let other = context.socket(zmq::PAIR).unwrap();
        assert!(other.bind("inproc://actor-test-ready").is_err());
        actor.signal(0).unwrap();
    }

    #[test]
    fn pipe_poll_reports_sockets_and_stops_on_term() {
        let context = zmq::Context::new();
        let actor = Actor::new(&context, |pipe| {
            let inbox = pipe.context().socket(zmq::PULL).unwrap();
            inbox.bind("inproc://actor-test-poll").unwrap();
            // Before "ready" nobody can send yet: this poll times out.
            assert_eq!(pipe.poll(&[&inbox], 10).unwrap(), Some(vec![false]));
            pipe.signal(0).unwrap();
            while let Some(ready) = pipe.poll(&[&inbox], -1).unwrap() {
                if ready[0] {
                    let text = inbox.recv_bytes(0).unwrap();
                    pipe.send(Message::from_frames([text])).unwrap();
                }
            }
        })
        .unwrap();
        let push = context.socket(zmq::PUSH).unwrap();
        push.connect("inproc://actor-test-poll").unwrap();
        push.send("job", 0).unwrap();
        assert_eq!(actor.recv().unwrap().first(), Some(&b"job"[..]));
        drop(actor); // $TERM ends the poll loop
    }

    #[test]
    fn signals_carry_a_status_and_are_not_text() {
        let context = zmq::Context::new();
        let actor = Actor::new(&context, |pipe| {
            pipe.signal(0).unwrap();
            pipe.send(Message::from_frames(["noise"])).unwrap();
            pipe.signal(7).unwrap();
            let _ = pipe.recv();
        })
        .unwrap();
        assert_eq!(actor.wait().unwrap(), 7, "wait skips the text message");
        assert_eq!(signal_status(&Message::from_frames(["12345678"])), None);
    }

    #[test]
    fn the_task_waits_for_its_owners_status() {
        let context = zmq::Context::new();
        let actor = Actor::new(&context, |pipe| {
            pipe.signal(0).unwrap();
            let status = pipe.wait().unwrap();
            pipe.send(Message::from_frames([status.to_string()]))
                .unwrap();
            let _ = pipe.recv();
        })
        .unwrap();
        actor.send(Message::from_frames(["not a signal"])).unwrap();
        actor.signal(42).unwrap();
        assert_eq!(actor.recv().unwrap().first(), Some(&b"42"[..]));
    }

    #[test]
    fn only_a_lone_term_frame_is_term() {
        assert!(is_term(&Message::from_frames([TERM])));
        assert!(!is_term(&Message::from_frames([TERM, "x"])));
        assert!(!is_term(&Message::from_frames(["$TERMINATE"])));
        assert!(!is_term(&Message::new()));
    }

    #[test]
    fn a_task_that_ends_or_panics_early_does_not_hang_its_owner() {
        let context = zmq::Context::new();
        let quits = Actor::new(&context, |_pipe| {}).unwrap();
        drop(quits);
        // The exit signal (status 1) stands in for "ready"; drop logs the panic.
        let panics = Actor::new(&context, |_pipe| panic!("task failed on purpose")).unwrap();
        drop(panics);
    }
}
