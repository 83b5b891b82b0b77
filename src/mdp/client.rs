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
//! and `-v` dumps replies with frames cut to 32 bytes, so nothing the broker
//! sends can flood or forge log lines); a send waits for a full queue but
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
            print!("{}", request.dump());
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
