//! `AsyncClient`: the asynchronous Majordomo client API (the guide's
//! `mdcliapi2`, §28).
//!
//! A DEALER socket instead of REQ, so the client may have any number of
//! requests in flight: `send` queues one and returns at once, `recv` waits up
//! to the timeout (2500 ms) for the next reply. A DEALER adds no envelope, so
//! `send` puts the empty frame a REQ socket would add in front of the
//! request itself, and `recv` expects it back.
//!
//! There are no retries: after a broker failure the client cannot know which
//! of its requests were lost without keeping them all, which is what Titanic
//! (§30) is for.
//!
//! Differences from `mdcliapi2.c`: a malformed reply is logged and skipped
//! instead of `assert`ing; both high-water marks are 0 (no limit), because
//! the caller decides how many requests are outstanding (mdclient2 sends
//! 100,000 before it reads a reply) and a full DEALER queue would otherwise
//! block `send`, or make the broker's ROUTER drop replies; LINGER is 0; `-v`
//! dumps requests and replies with frames cut to 32 bytes (czmq's `zmsg_dump`).

use std::time::{Duration, Instant};

use crate::mdp::protocol::{self, clock_log};
use crate::message::show;
use crate::{Error, Message};

/// Asynchronous MDP client. See the module docs.
pub struct AsyncClient {
    // Kept so the socket's context lives as long as the client.
    _context: zmq::Context,
    socket: zmq::Socket,
    verbose: bool,
    timeout_ms: u64,
}

impl AsyncClient {
    /// Connects to the broker at `broker` (`mdcli_new`).
    pub fn new(broker: &str, verbose: bool) -> Result<AsyncClient, Error> {
        let context = zmq::Context::new();
        let socket = super::broker_socket(&context, zmq::DEALER)
            .send_hwm(0)
            .receive_hwm(0)
            .connect(broker)?;
        if verbose {
            clock_log(&format!("I: connecting to broker at {broker}..."));
        }
        Ok(AsyncClient {
            _context: context,
            socket,
            verbose,
            timeout_ms: 2500,
        })
    }

    /// How long `recv` waits for a reply, in milliseconds (default 2500).
    pub fn set_timeout(&mut self, timeout_ms: u64) {
        self.timeout_ms = timeout_ms;
    }

    /// Sends `request` to `service` without waiting for the reply.
    pub fn send(&mut self, service: impl AsRef<[u8]>, request: Message) -> Result<(), Error> {
        let service = service.as_ref();
        let mut request = request;
        request.push(service);
        request.push(protocol::CLIENT);
        request.push(Vec::new());
        if self.verbose {
            clock_log(&format!("I: send request to '{}' service:", show(service)));
            print!("{}", request.dump_short());
        }
        super::send(&self.socket, request)
    }

    /// Waits for the next reply and returns its body, or `Ok(None)` if none
    /// came within the timeout. `Err(Interrupted)` on Ctrl-C (after printing
    /// `W: interrupt received, killing client...`).
    pub fn recv(&mut self) -> Result<Option<Message>, Error> {
        let deadline = Instant::now() + Duration::from_millis(self.timeout_ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match Message::recv_timeout(&self.socket, crate::interrupt::millis(left)) {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(Error::Interrupted) => {
                    println!("W: interrupt received, killing client...");
                    return Err(Error::Interrupted);
                }
                Err(e) => return Err(e),
            };
            if self.verbose {
                clock_log("I: received reply:");
                print!("{}", msg.dump_short());
            }
            match parse_reply(msg) {
                Ok(body) => return Ok(Some(body)),
                Err(e) => log::warn!("dropping malformed reply from broker: {e}"),
            }
        }
        if self.verbose {
            clock_log("W: permanent error, abandoning request");
        }
        Ok(None)
    }
}

/// `[""]["MDPC01"][service][body…]` → body.
fn parse_reply(mut msg: Message) -> Result<Message, Error> {
    if msg.len() < 4 {
        return Err(Error::Protocol(format!(
            "reply has {} frame(s), needs at least 4",
            msg.len()
        )));
    }
    if msg.pop().is_some_and(|f| !f.is_empty()) {
        return Err(Error::Protocol(
            "reply does not start with an empty frame".into(),
        ));
    }
    if msg.pop().as_deref() != Some(protocol::CLIENT) {
        return Err(Error::Protocol("reply header is not MDPC01".into()));
    }
    msg.pop(); // the service name
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdp::fake_broker::{frames, FakeBroker};

    #[test]
    fn requests_go_out_at_once_and_replies_come_back_in_any_order() {
        let broker = FakeBroker::new();
        let mut client = AsyncClient::new(&broker.endpoint, false).unwrap();
        client.set_timeout(5000);
        for body in ["one", "two"] {
            client.send("echo", Message::from_frames([body])).unwrap();
        }
        let mut ids = Vec::new();
        for body in [b"one", b"two"] {
            let request = broker.next();
            assert_eq!(
                request[1..],
                frames(&[b"", protocol::CLIENT, b"echo", body]),
                "{request:?}"
            );
            ids.push(request[0].clone());
        }
        // Junk first: dropped, and the good reply after it is returned.
        broker.send(vec![ids[0].clone(), b"junk".to_vec()]);
        for body in [b"2", b"1"] {
            let mut reply = vec![ids[0].clone()];
            reply.extend(frames(&[b"", protocol::CLIENT, b"echo", body]));
            broker.send(reply);
        }
        assert_eq!(
            client.recv().unwrap().unwrap().into_frames(),
            frames(&[b"2"])
        );
        assert_eq!(
            client.recv().unwrap().unwrap().into_frames(),
            frames(&[b"1"])
        );
    }

    #[test]
    fn recv_gives_up_after_its_timeout() {
        let broker = FakeBroker::new();
        let mut client = AsyncClient::new(&broker.endpoint, false).unwrap();
        client.set_timeout(150);
        let started = Instant::now();
        assert!(client.recv().unwrap().is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(140), "{waited:?}");
        assert!(
            waited < Duration::from_secs(2),
            "{waited:?} (the default is 2.5 s)"
        );
    }

    #[test]
    fn replies_are_checked_frame_by_frame() {
        let reply = |texts: &[&[u8]]| Message::from_frames(frames(texts));
        let body = parse_reply(reply(&[b"", protocol::CLIENT, b"echo", b"a", b"b"])).unwrap();
        assert_eq!(body.into_frames(), frames(&[b"a", b"b"]));
        assert_eq!(
            parse_reply(reply(&[b"", protocol::CLIENT, b"echo", b""]))
                .unwrap()
                .into_frames(),
            frames(&[b""])
        );
        for bad in [
            reply(&[b"", protocol::CLIENT, b"echo"]),
            reply(&[b"x", protocol::CLIENT, b"echo", b"a"]),
            reply(&[b"", b"MDPC02", b"echo", b"a"]),
        ] {
            assert!(matches!(parse_reply(bad), Err(Error::Protocol(_))));
        }
    }
}
