//! Majordomo: service-oriented reliable request-reply (§27–§30).
//!
//! The guide builds Majordomo from a protocol (MDP 0.1, RFC 7; MMI, RFC 8) and
//! three small classes that hide it from applications. Here they are:
//!
//! | item | guide | what it does |
//! |---|---|---|
//! | [`protocol`] | `mdp.h` | headers, commands, frame building and checking |
//! | [`Client`] | `mdcliapi` | one request at a time, retries on a new socket |
//! | [`AsyncClient`] | `mdcliapi2` | many requests in flight over a DEALER |
//! | [`Worker`] | `mdwrkapi` | READY, heartbeats, reconnect, reply-then-receive |
//! | [`titanic`] | `titanic.c` storage | crash-safe request/reply store for TSP (RFC 9) |
//!
//! The broker itself is the program `src/bin/mdbroker.rs`: it is the lesson,
//! so it reads top to bottom like `mdbroker.c`.

pub mod async_client;
pub mod client;
pub mod protocol;
pub mod titanic;
pub mod worker;

pub use async_client::AsyncClient;
pub use client::Client;
pub use worker::Worker;

/// The largest frame `mdbroker` and the MDP APIs accept (`ZMQ_MAXMSGSIZE`):
/// 4 MiB. Every message of the book is a few bytes; 4 MiB leaves room for
/// real payloads (a file chunk, a Titanic request with a big body), while a
/// larger frame makes libzmq drop the sender's connection before it
/// allocates a byte.
pub const MAX_FRAME: i64 = 4 << 20;

/// A new socket of `kind` for talking to a broker, made with the
/// [`socket`](crate::socket) builder: LINGER 0, so a socket dropped with
/// requests still queued never blocks the program's exit; the builder's
/// [`MAX_FRAME`] as `MAXMSGSIZE`, the same bound the broker puts on every
/// frame, so whatever the broker forwards its peers accept; and a
/// printable identity, as the C++ `mdcliapi`/`mdwrkapi` give theirs
/// (`s_set_id`). The C++ broker handles routing ids as C strings and cannot
/// route libzmq's generated ids, which start with a zero byte; our broker and
/// the C one do not care, so this only helps mixing the languages. A fresh
/// random identity per socket keeps a reconnect distinct from the old peer.
pub(crate) fn broker_socket(
    context: &zmq::Context,
    kind: zmq::SocketType,
) -> crate::socket::Builder<'_> {
    crate::socket::new(context, kind)
        .linger(0)
        .max_message_size(MAX_FRAME)
        .identity(crate::helpers::random_identity())
}

/// Sends `msg` to the broker: waits while the socket's queue is full (the
/// broker does not read), but returns `Error::Interrupted` as soon as Ctrl-C
/// arrives, which a plain blocking send would not.
pub(crate) fn send(socket: &zmq::Socket, msg: crate::Message) -> Result<(), crate::Error> {
    use crate::{interrupt, Error};
    let frames = msg.into_frames();
    let last = frames.len().saturating_sub(1);
    for (index, frame) in frames.iter().enumerate() {
        let more = if index < last { zmq::SNDMORE } else { 0 };
        loop {
            match socket.send(frame.as_slice(), more | zmq::DONTWAIT) {
                Ok(()) => break,
                Err(zmq::Error::EAGAIN) => wait_writable(socket)?,
                Err(zmq::Error::EINTR) if interrupt::interrupted() => {
                    return Err(Error::Interrupted)
                }
                Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Waits until `socket` can take a message, or Ctrl-C.
fn wait_writable(socket: &zmq::Socket) -> Result<(), crate::Error> {
    use crate::{interrupt, Error};
    loop {
        if interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        let mut items = vec![socket.as_poll_item(zmq::POLLOUT)];
        if let Some(fd) = interrupt::wake_fd() {
            items.push(zmq::PollItem::from_fd(fd, zmq::POLLIN));
        }
        match zmq::poll(&mut items, 1000) {
            Ok(_) if items[0].is_writable() => return Ok(()),
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A broker the MDP API tests script by hand: a ROUTER on a free loopback
/// port that reads and writes raw frames.
#[cfg(test)]
pub(crate) mod fake_broker {
    pub(crate) struct FakeBroker {
        pub(crate) router: zmq::Socket,
        pub(crate) endpoint: String,
        _context: zmq::Context,
    }

    impl FakeBroker {
        pub(crate) fn new() -> FakeBroker {
            let context = zmq::Context::new();
            let router = context.socket(zmq::ROUTER).unwrap();
            router.set_linger(0).unwrap();
            router.bind("tcp://127.0.0.1:*").unwrap();
            let endpoint = router.get_last_endpoint().unwrap().unwrap();
            FakeBroker {
                router,
                endpoint,
                _context: context,
            }
        }

        /// The next message within `ms`, its sender's routing id first.
        pub(crate) fn within(&self, ms: i32) -> Option<Vec<Vec<u8>>> {
            self.router.set_rcvtimeo(ms).unwrap();
            self.router.recv_multipart(0).ok()
        }

        /// The next message (at most 10 s).
        pub(crate) fn next(&self) -> Vec<Vec<u8>> {
            self.within(10_000).expect("a message from the API")
        }

        pub(crate) fn send(&self, frames: Vec<Vec<u8>>) {
            self.router.send_multipart(frames, 0).unwrap();
        }
    }

    /// Frames from text.
    pub(crate) fn frames(texts: &[&[u8]]) -> Vec<Vec<u8>> {
        texts.iter().map(|t| t.to_vec()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_to_a_full_queue_waits_and_goes_on_once_the_peer_reads() {
        let context = zmq::Context::new();
        let router = crate::socket::new(&context, zmq::ROUTER)
            .receive_hwm(1)
            .max_message_size(-1)
            .build()
            .unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let dealer = crate::socket::new(&context, zmq::DEALER)
            .send_hwm(1)
            .connect(&endpoint)
            .unwrap();
        // 64 MiB: far more than the queues and the TCP buffers hold, so the
        // sender meets a full queue while nobody reads.
        let sender = std::thread::spawn(move || {
            for _ in 0..64 {
                send(&dealer, crate::Message::from_frames([vec![7u8; 1 << 20]])).unwrap();
            }
            dealer
        });
        // Not a synchronisation: reading late only makes the queue full.
        std::thread::sleep(std::time::Duration::from_millis(300));
        router.set_rcvtimeo(10_000).unwrap();
        for n in 0..64 {
            let message = router
                .recv_multipart(0)
                .unwrap_or_else(|e| panic!("message {n} never came: {e}"));
            assert_eq!(message[1].len(), 1 << 20);
        }
        drop(sender.join().unwrap());
    }
}
