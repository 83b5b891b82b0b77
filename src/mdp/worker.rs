//! `Worker`: the Majordomo worker API (the guide's `mdwrkapi`).
//!
//! A worker registers for one service with READY and then loops on
//! [`Worker::recv`], which first sends the reply to the previous request (if
//! any) and then waits for the next one. Meanwhile it keeps the connection
//! honest with heartbeats in both directions: it sends HEARTBEAT every 2.5 s
//! while it waits, and if the broker stays silent for 3 intervals it assumes
//! the broker died, waits the reconnect delay (2.5 s) and registers again on
//! a **new** socket. A new socket matters: the broker would take a second
//! READY from an identity it knows as a protocol error.
//!
//! Differences from `mdwrkapi.c`: bad messages from the broker are logged and
//! dropped instead of `assert`ing (logged bounded and escaped; `-v` dumps
//! both directions with frames cut to 32 bytes as czmq's `zmsg_dump` does: a
//! reply echoes a client's bytes, and a 64 KiB body was a 64 KiB log line); the reconnect sleep and
//! a send to a broker that stopped reading end early on Ctrl-C; LINGER is 0
//! on discarded sockets.

use std::time::{Duration, Instant};

use crate::heartbeat::{Beat, Liveness};
use crate::mdp::protocol::{self, clock_log, Command, WorkerCommand};
use crate::{interrupt, Error, Message};

/// MDP worker for one service. See the module docs.
pub struct Worker {
    context: zmq::Context,
    broker: String,
    service: Vec<u8>,
    socket: zmq::Socket,
    verbose: bool,
    heartbeat: Duration,
    reconnect: Duration,
    liveness: Liveness,
    beat: Beat,
    /// The client address of the request being processed.
    reply_to: Option<Vec<u8>>,
}

impl Worker {
    /// Connects to `broker` and registers for `service` (`mdwrk_new`).
    pub fn new(broker: &str, service: &str, verbose: bool) -> Result<Worker, Error> {
        let context = zmq::Context::new();
        let heartbeat = Duration::from_millis(protocol::HEARTBEAT_INTERVAL_MS);
        let socket = super::broker_socket(&context, zmq::DEALER).build()?;
        let mut worker = Worker {
            context,
            broker: broker.to_string(),
            service: service.as_bytes().to_vec(),
            socket,
            verbose,
            heartbeat,
            reconnect: heartbeat,
            liveness: Liveness::new(protocol::HEARTBEAT_LIVENESS),
            beat: Beat::new(heartbeat, Instant::now()),
            reply_to: None,
        };
        worker.connect_to_broker()?;
        Ok(worker)
    }

    /// Heartbeat interval (default 2500 ms). Must match the broker's.
    pub fn set_heartbeat(&mut self, heartbeat_ms: u64) {
        self.heartbeat = Duration::from_millis(heartbeat_ms.max(1));
        self.beat = Beat::new(self.heartbeat, Instant::now());
    }

    /// Delay before reconnecting to a broker that went silent (default 2500 ms).
    pub fn set_reconnect(&mut self, reconnect_ms: u64) {
        self.reconnect = Duration::from_millis(reconnect_ms);
    }

    /// A fresh socket, READY, full liveness (`s_mdwrk_connect_to_broker`).
    fn connect_to_broker(&mut self) -> Result<(), Error> {
        let socket = super::broker_socket(&self.context, zmq::DEALER).connect(&self.broker)?;
        // The old socket is dropped (closed) here.
        self.socket = socket;
        if self.verbose {
            clock_log(&format!("I: connecting to broker at {}...", self.broker));
        }
        let service = self.service.clone();
        self.send_to_broker(Command::Ready, Some(&service), None)?;
        self.liveness.reset();
        self.beat = Beat::new(self.heartbeat, Instant::now());
        Ok(())
    }

    fn send_to_broker(
        &self,
        command: Command,
        option: Option<&[u8]>,
        body: Option<Message>,
    ) -> Result<(), Error> {
        let msg = protocol::worker_message(command, option, body);
        if self.verbose {
            clock_log(&format!("I: sending {} to broker", command.name()));
            print!("{}", msg.dump_short());
        }
        super::send(&self.socket, msg)
    }

    /// Sends `reply` (if any) to the client of the last request, then waits
    /// for the next request and returns its body. `Err(Interrupted)` on
    /// Ctrl-C, after printing `W: interrupt received, killing worker...`.
    pub fn recv(&mut self, reply: Option<Message>) -> Result<Message, Error> {
        let result = self.send_reply_and_wait(reply);
        if let Err(Error::Interrupted) = result {
            println!("W: interrupt received, killing worker...");
        }
        result
    }

    fn send_reply_and_wait(&mut self, reply: Option<Message>) -> Result<Message, Error> {
        if let Some(mut reply) = reply {
            match self.reply_to.take() {
                Some(client) => {
                    reply.wrap_envelope(client);
                    self.send_to_broker(Command::Reply, None, Some(reply))?;
                }
                None => log::warn!("reply without a request to answer: dropped"),
            }
        }
        loop {
            if interrupt::wait_readable(&self.socket, interrupt::millis(self.heartbeat))? {
                let msg = Message::recv_now(&self.socket)?;
                if self.verbose {
                    clock_log("I: received message from broker:");
                    print!("{}", msg.dump_short());
                }
                // Any traffic proves the broker is alive.
                self.liveness.reset();
                match protocol::parse_to_worker(msg) {
                    Ok(WorkerCommand::Request { mut envelope }) => {
                        // `[client][""][body…]`: keep the address for the reply.
                        self.reply_to = envelope.unwrap_envelope();
                        return Ok(envelope);
                    }
                    Ok(WorkerCommand::Heartbeat) => {}
                    Ok(WorkerCommand::Disconnect) => self.connect_to_broker()?,
                    Ok(other) => log::warn!("unexpected command from broker: {}", other.name()),
                    Err(e) => log::warn!("invalid message from broker: {e}"),
                }
            } else if self.liveness.miss() {
                if self.verbose {
                    clock_log("W: disconnected from broker - retrying...");
                }
                interrupt::sleep_ms(self.reconnect.as_millis() as u64)?;
                self.connect_to_broker()?;
            }
            if self.beat.due(Instant::now()) {
                self.send_to_broker(Command::Heartbeat, None, None)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::mdp::fake_broker::{frames, FakeBroker};

    /// `[id][""][MDPW01][command][rest…]` → (id, command, rest).
    fn split(message: Vec<Vec<u8>>) -> (Vec<u8>, Command, Vec<Vec<u8>>) {
        assert!(message.len() >= 4, "{message:?}");
        assert!(
            message[1].is_empty() && message[2] == protocol::WORKER,
            "{message:?}"
        );
        let command = Command::from_frame(&message[3]).expect("a command");
        (message[0].clone(), command, message[4..].to_vec())
    }

    /// The next message that is not a HEARTBEAT.
    fn next_not_heartbeat(broker: &FakeBroker) -> (Vec<u8>, Command, Vec<Vec<u8>>) {
        loop {
            let message = split(broker.next());
            if message.1 != Command::Heartbeat {
                return message;
            }
        }
    }

    fn to_worker(id: &[u8], command: Command, rest: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut message = vec![id.to_vec(), Vec::new(), protocol::WORKER.to_vec()];
        message.push(vec![command as u8]);
        message.extend(frames(rest));
        message
    }

    /// A worker in a thread: each request body it gets goes out on the
    /// channel; each reply comes in on the other.
    fn spawn_worker(
        endpoint: String,
        heartbeat_ms: u64,
        reconnect_ms: u64,
    ) -> (mpsc::Receiver<Message>, mpsc::Sender<Message>) {
        let (got, requests) = mpsc::channel();
        let (replies, reply) = mpsc::channel::<Message>();
        std::thread::spawn(move || {
            let mut worker = Worker::new(&endpoint, "echo", false).unwrap();
            worker.set_heartbeat(heartbeat_ms);
            worker.set_reconnect(reconnect_ms);
            let mut answer = None;
            loop {
                let Ok(request) = worker.recv(answer.take()) else {
                    return;
                };
                if got.send(request).is_err() {
                    return;
                }
                match reply.recv() {
                    Ok(message) => answer = Some(message),
                    Err(_) => return,
                }
            }
        });
        (requests, replies)
    }

    #[test]
    fn a_worker_registers_takes_a_request_and_replies_to_its_client() {
        let broker = FakeBroker::new();
        let (requests, replies) = spawn_worker(broker.endpoint.clone(), 2500, 2500);
        let (id, command, rest) = split(broker.next());
        assert_eq!((command, rest), (Command::Ready, frames(&[b"echo"])));
        broker.send(to_worker(
            &id,
            Command::Request,
            &[b"client-1", b"", b"ping"],
        ));
        let body = requests.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(body.into_frames(), frames(&[b"ping"]));
        replies.send(Message::from_frames(["pong"])).unwrap();
        let (from, command, rest) = next_not_heartbeat(&broker);
        assert_eq!(from, id);
        assert_eq!(
            (command, rest),
            (Command::Reply, frames(&[b"client-1", b"", b"pong"]))
        );
        // A bad command and junk are dropped; the next request still comes.
        broker.send(to_worker(&id, Command::Ready, &[b"echo"]));
        broker.send(vec![id.clone(), b"junk".to_vec()]);
        broker.send(to_worker(
            &id,
            Command::Request,
            &[b"client-2", b"", b"again"],
        ));
        let body = requests.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(body.into_frames(), frames(&[b"again"]));
    }

    /// Silent broker: HEARTBEATs every interval, then after three missed a
    /// new socket (a new identity) says READY again. DISCONNECT does the
    /// same at once.
    #[test]
    fn a_worker_heartbeats_and_registers_again_when_the_broker_is_silent_or_says_disconnect() {
        let broker = FakeBroker::new();
        let (_requests, _replies) = spawn_worker(broker.endpoint.clone(), 100, 50);
        let (first, command, _) = split(broker.next());
        assert_eq!(command, Command::Ready);
        let mut beats = 0;
        let started = Instant::now();
        let second = loop {
            let (id, command, _) = split(broker.next());
            match command {
                Command::Heartbeat => {
                    assert_eq!(id, first);
                    beats += 1;
                }
                Command::Ready => break id,
                other => panic!("{other:?}"),
            }
        };
        assert_ne!(second, first, "registered again on a new socket");
        assert!(
            (1..=4).contains(&beats),
            "{beats} heartbeats before giving up"
        );
        // Three intervals of 100 ms of silence, then the reconnect delay of
        // 50 ms (the defaults: 2.5 s each).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        broker.send(to_worker(&second, Command::Disconnect, &[]));
        let (third, command, _) = next_not_heartbeat(&broker);
        assert_eq!(command, Command::Ready);
        assert_ne!(third, second);
    }

    /// Traffic from the broker keeps the worker on its socket.
    #[test]
    fn heartbeats_from_the_broker_keep_the_worker_registered() {
        let broker = FakeBroker::new();
        let (_requests, _replies) = spawn_worker(broker.endpoint.clone(), 100, 50);
        let (id, command, _) = split(broker.next());
        assert_eq!(command, Command::Ready);
        let until = Instant::now() + Duration::from_millis(1000);
        while Instant::now() < until {
            broker.send(to_worker(&id, Command::Heartbeat, &[]));
            if let Some(message) = broker.within(50) {
                let (from, command, _) = split(message);
                assert_eq!((from, command), (id.clone(), Command::Heartbeat));
            }
        }
    }
}
