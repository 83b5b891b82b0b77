//! `Client`: the synchronous Majordomo client API (the guide's `mdcliapi`).
//!
//! One request at a time over a REQ socket. `send` waits up to the timeout
//! (2500 ms) for the reply; if none comes it assumes the broker or the worker
//! died, throws the socket away (a REQ socket that sent and got nothing back
//! cannot send again), connects a new one and resends, up to `retries`
//! attempts in all (3). So a request may reach a worker more than once: MDP
//! services are assumed idempotent.
//!
//! Differences from `mdcliapi.c`: a malformed reply is logged and counted as
//! a failed attempt instead of `assert`ing (logged through `Message::summary`,
//! and `-v` dumps requests and replies with frames cut to 32 bytes as czmq's
//! `zmsg_dump` does, so nothing the broker sends can flood or forge log lines); a send waits for a full queue but
//! ends on Ctrl-C; LINGER is 0 so a discarded socket
//! with an unanswered request never blocks the exit (czmq's `zctx` did the
//! same); and after giving up the client reconnects anyway, so the same
//! `Client` can be used for the next request (titanic relies on this; the C
//! titanic made a new client per request instead).

use crate::mdp::protocol::{self, clock_log};
use crate::message::show;
use crate::{Error, Message};

/// Synchronous MDP client. See the module docs.
pub struct Client {
    context: zmq::Context,
    broker: String,
    socket: zmq::Socket,
    verbose: bool,
    timeout_ms: i64,
    retries: u32,
}

impl Client {
    /// Connects to the broker at `broker` (`mdcli_new`). Verbose prints every
    /// message sent and received.
    pub fn new(broker: &str, verbose: bool) -> Result<Client, Error> {
        let context = zmq::Context::new();
        let socket = connect(&context, broker, verbose)?;
        Ok(Client {
            context,
            broker: broker.to_string(),
            socket,
            verbose,
            timeout_ms: 2500,
            retries: 3,
        })
    }

    /// How long to wait for each reply, in milliseconds (default 2500).
    pub fn set_timeout(&mut self, timeout_ms: i64) {
        self.timeout_ms = timeout_ms;
    }

    /// How many attempts in all before giving up (default 3).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries.max(1);
    }

    fn reconnect(&mut self) -> Result<(), Error> {
        self.socket = connect(&self.context, &self.broker, self.verbose)?;
        Ok(())
    }

    /// Sends `request` to `service` and returns the reply body. Errors:
    /// `Timeout` when every attempt went unanswered, `Interrupted` on Ctrl-C
    /// (after printing the C's `W: interrupt received, killing client...`).
    pub fn send(&mut self, service: impl AsRef<[u8]>, request: Message) -> Result<Message, Error> {
        let service = service.as_ref();
        let mut request = request;
        request.push(service);
        request.push(protocol::CLIENT);
        if self.verbose {
            clock_log(&format!("I: send request to '{}' service:", show(service)));
            print!("{}", request.dump_short());
        }
        let result = self.attempts(service, &request);
        if let Err(Error::Interrupted) = result {
            println!("W: interrupt received, killing client...");
        }
        result
    }

    fn attempts(&mut self, service: &[u8], request: &Message) -> Result<Message, Error> {
        let mut retries_left = self.retries;
        loop {
            super::send(&self.socket, request.clone())?;
            match self.wait_reply(service)? {
                Some(reply) => return Ok(reply),
                None => {
                    retries_left -= 1;
                    if retries_left > 0 {
                        if self.verbose {
                            clock_log("W: no reply, reconnecting...");
                        }
                        self.reconnect()?;
                    } else {
                        if self.verbose {
                            clock_log("W: permanent error, abandoning");
                        }
                        // Leave a usable socket behind for the next request.
                        self.reconnect()?;
                        return Err(Error::Timeout);
                    }
                }
            }
        }
    }

    /// Waits for one reply; `None` if the time ran out or the reply was bad.
    fn wait_reply(&mut self, service: &[u8]) -> Result<Option<Message>, Error> {
        let Some(reply) = Message::recv_timeout(&self.socket, self.timeout_ms)? else {
            return Ok(None);
        };
        if self.verbose {
            clock_log("I: received reply:");
            print!("{}", reply.dump_short());
        }
        match protocol::parse_client_reply(reply, service) {
            Ok(body) => Ok(Some(body)),
            Err(e) => {
                log::warn!("dropping malformed reply from broker: {e}");
                Ok(None)
            }
        }
    }
}

fn connect(context: &zmq::Context, broker: &str, verbose: bool) -> Result<zmq::Socket, Error> {
    let socket = super::broker_socket(context, zmq::REQ).connect(broker)?;
    if verbose {
        clock_log(&format!("I: connecting to broker at {broker}..."));
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::mdp::fake_broker::{frames, FakeBroker};

    /// `[id][""][MDPC01][service][body…]`, as the broker reads a request.
    fn is_request(message: &[Vec<u8>], service: &[u8], body: &[u8]) -> bool {
        message.len() == 5
            && message[1].is_empty()
            && message[2] == protocol::CLIENT
            && message[3] == service
            && message[4] == body
    }

    fn answer(broker: &FakeBroker, request: &[Vec<u8>], reply: &[&[u8]]) {
        let mut message = vec![request[0].clone(), Vec::new()];
        message.extend(frames(reply));
        broker.send(message);
    }

    #[test]
    fn a_request_goes_out_as_mdp_and_the_reply_body_comes_back() {
        let broker = FakeBroker::new();
        let mut client = Client::new(&broker.endpoint, false).unwrap();
        let handle = std::thread::spawn(move || {
            let reply = client.send("echo", Message::from_frames(["hello"]));
            (client, reply)
        });
        let request = broker.next();
        assert!(is_request(&request, b"echo", b"hello"), "{request:?}");
        answer(
            &broker,
            &request,
            &[protocol::CLIENT, b"echo", b"hi", b"there"],
        );
        let (_, reply) = handle.join().unwrap();
        assert_eq!(reply.unwrap().into_frames(), frames(&[b"hi", b"there"]));
    }

    /// Every attempt on a new socket (a new identity); after the last a
    /// timeout, and the client still works for the next request.
    #[test]
    fn an_unanswered_request_is_sent_again_on_new_sockets_then_times_out() {
        let broker = FakeBroker::new();
        let mut client = Client::new(&broker.endpoint, false).unwrap();
        client.set_timeout(100);
        client.set_retries(2);
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            let first = client.send("echo", Message::from_frames(["a"]));
            (client, first)
        });
        let mut senders = BTreeSet::new();
        while !handle.is_finished() {
            if let Some(request) = broker.within(20) {
                assert!(is_request(&request, b"echo", b"a"), "{request:?}");
                senders.insert(request[0].clone());
            }
        }
        let (mut client, first) = handle.join().unwrap();
        assert!(matches!(first, Err(Error::Timeout)), "{first:?}");
        assert_eq!(senders.len(), 2, "two attempts, each on its own socket");
        // Two of 100 ms (the default is three of 2.5 s).
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let handle = std::thread::spawn(move || client.send("echo", Message::from_frames(["b"])));
        let request = broker.next();
        assert!(
            !senders.contains(&request[0]),
            "a fresh socket after giving up"
        );
        answer(&broker, &request, &[protocol::CLIENT, b"echo", b"ok"]);
        assert_eq!(
            handle.join().unwrap().unwrap().into_frames(),
            frames(&[b"ok"])
        );
    }

    /// A malformed reply, or one for another service, counts as a failed
    /// attempt: the request goes again, and the good answer is taken.
    #[test]
    fn a_bad_reply_is_an_attempt_lost() {
        let broker = FakeBroker::new();
        let mut client = Client::new(&broker.endpoint, false).unwrap();
        client.set_timeout(2000);
        client.set_retries(3);
        let handle = std::thread::spawn(move || client.send("echo", Message::from_frames(["x"])));
        let request = broker.next();
        answer(&broker, &request, &[b"MDPC02", b"echo", b"bad"]);
        let request = broker.next();
        answer(&broker, &request, &[protocol::CLIENT, b"other", b"bad"]);
        let request = broker.next();
        answer(&broker, &request, &[protocol::CLIENT, b"echo", b"good"]);
        assert_eq!(
            handle.join().unwrap().unwrap().into_frames(),
            frames(&[b"good"])
        );
    }

    #[test]
    fn at_least_one_attempt_is_made() {
        let broker = FakeBroker::new();
        let mut client = Client::new(&broker.endpoint, false).unwrap();
        client.set_timeout(50);
        client.set_retries(0);
        let result = client.send("echo", Message::from_frames(["x"]));
        assert!(matches!(result, Err(Error::Timeout)));
        assert!(broker.within(1000).is_some(), "the one attempt");
        assert!(broker.within(300).is_none(), "and no other");
    }
}
