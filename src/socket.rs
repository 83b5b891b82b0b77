//! Sockets with their limits set: [`new`] returns a builder.
//!
//! A libzmq socket's defaults suit a trusting demo, not a program that other
//! people's programs connect to: LINGER is infinite (closing a socket with
//! unsent messages to a dead peer hangs the process at exit), and a peer may
//! send one frame as large as it likes (libzmq allocates it whole before the
//! program sees a byte). Every guide program in this crate makes its sockets
//! through this builder, so each socket states its limits in one place:
//!
//! * **LINGER** [`DEFAULT_LINGER_MS`] (1 s): long enough for the last messages
//!   to reach a live peer on loopback, short enough that Ctrl-C always ends
//!   the program promptly;
//! * **MAXMSGSIZE** [`DEFAULT_MAX_MESSAGE_SIZE`] (1 MiB per inbound frame): a
//!   larger frame makes libzmq drop that peer's connection before allocating
//!   it. Every message in the guide is far smaller; a program that needs more
//!   says so with [`Builder::max_message_size`];
//! * optional high-water marks, identity, `ROUTER_MANDATORY`, `IMMEDIATE`,
//!   subscriptions.
//!
//! ```no_run
//! # fn main() -> Result<(), zguide::Error> {
//! let context = zmq::Context::new();
//! let frontend = zguide::socket::new(&context, zmq::ROUTER)
//!     .router_mandatory()
//!     .bind("tcp://*:5555")?;
//! # Ok(()) }
//! ```
//!
//! A send that must not block when a peer stops reading is
//! [`Message::send_or_drop`](crate::Message::send_or_drop).

use crate::Error;

/// LINGER for every socket the builder makes, in milliseconds.
pub const DEFAULT_LINGER_MS: i32 = 1000;
/// The largest inbound frame a builder socket accepts, in bytes (1 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: i64 = 1 << 20;

/// Options for one socket; see the module docs. Made by [`new`].
#[must_use = "a builder does nothing until bind, connect or build"]
pub struct Builder<'a> {
    context: &'a zmq::Context,
    kind: zmq::SocketType,
    linger_ms: i32,
    max_message_size: i64,
    send_hwm: Option<i32>,
    receive_hwm: Option<i32>,
    identity: Option<Vec<u8>>,
    router_mandatory: bool,
    immediate: bool,
    subscriptions: Vec<Vec<u8>>,
}

/// A builder for a socket of `kind` in `context`, with the default limits.
pub fn new(context: &zmq::Context, kind: zmq::SocketType) -> Builder<'_> {
    Builder {
        context,
        kind,
        linger_ms: DEFAULT_LINGER_MS,
        max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        send_hwm: None,
        receive_hwm: None,
        identity: None,
        router_mandatory: false,
        immediate: false,
        subscriptions: Vec::new(),
    }
}

impl Builder<'_> {
    /// LINGER in milliseconds (0: drop unsent messages at close; never -1).
    pub fn linger(mut self, ms: i32) -> Self {
        self.linger_ms = ms.max(0);
        self
    }

    /// The largest inbound frame in bytes; -1 lifts the limit (only for tools
    /// whose whole point is large messages, such as the perf tools).
    pub fn max_message_size(mut self, bytes: i64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// `ZMQ_SNDHWM`: messages queued per peer before sends block or drop.
    pub fn send_hwm(mut self, messages: i32) -> Self {
        self.send_hwm = Some(messages);
        self
    }

    /// `ZMQ_RCVHWM`: messages queued per peer before libzmq stops reading.
    pub fn receive_hwm(mut self, messages: i32) -> Self {
        self.receive_hwm = Some(messages);
        self
    }

    /// `ZMQ_IDENTITY` (routing id) before connecting.
    pub fn identity(mut self, identity: impl Into<Vec<u8>>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// `ZMQ_ROUTER_MANDATORY`: a send to an unknown or gone peer fails with
    /// `EHOSTUNREACH` instead of vanishing, and a full peer gives `EAGAIN`.
    pub fn router_mandatory(mut self) -> Self {
        self.router_mandatory = true;
        self
    }

    /// `ZMQ_IMMEDIATE`: queue messages only to completed connections.
    pub fn immediate(mut self) -> Self {
        self.immediate = true;
        self
    }

    /// `ZMQ_SUBSCRIBE` (SUB sockets); may be given several times.
    pub fn subscribe(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.subscriptions.push(prefix.into());
        self
    }

    /// The socket with every option set, neither bound nor connected.
    pub fn build(self) -> Result<zmq::Socket, Error> {
        let socket = self.context.socket(self.kind)?;
        socket.set_linger(self.linger_ms)?;
        socket.set_maxmsgsize(self.max_message_size)?;
        if let Some(hwm) = self.send_hwm {
            socket.set_sndhwm(hwm)?;
        }
        if let Some(hwm) = self.receive_hwm {
            socket.set_rcvhwm(hwm)?;
        }
        if let Some(identity) = &self.identity {
            socket.set_identity(identity)?;
        }
        if self.router_mandatory {
            socket.set_router_mandatory(true)?;
        }
        if self.immediate {
            socket.set_immediate(true)?;
        }
        for prefix in &self.subscriptions {
            socket.set_subscribe(prefix)?;
        }
        Ok(socket)
    }

    /// Builds the socket and binds it to `endpoint`.
    pub fn bind(self, endpoint: &str) -> Result<zmq::Socket, Error> {
        let socket = self.build()?;
        socket.bind(endpoint).map_err(|source| Error::Endpoint {
            action: "bind",
            endpoint: endpoint.to_string(),
            source,
        })?;
        Ok(socket)
    }

    /// Builds the socket and connects it to `endpoint`.
    pub fn connect(self, endpoint: &str) -> Result<zmq::Socket, Error> {
        let socket = self.build()?;
        socket.connect(endpoint).map_err(|source| Error::Endpoint {
            action: "connect to",
            endpoint: endpoint.to_string(),
            source,
        })?;
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_bounded_and_options_are_applied() {
        let context = zmq::Context::new();
        let socket = new(&context, zmq::ROUTER).build().unwrap();
        assert_eq!(socket.get_linger().unwrap(), DEFAULT_LINGER_MS);
        assert_eq!(socket.get_maxmsgsize().unwrap(), DEFAULT_MAX_MESSAGE_SIZE);

        let socket = new(&context, zmq::DEALER)
            .linger(-5)
            .max_message_size(100)
            .send_hwm(7)
            .receive_hwm(9)
            .identity("A")
            .immediate()
            .build()
            .unwrap();
        assert_eq!(socket.get_linger().unwrap(), 0, "never infinite");
        assert_eq!(socket.get_maxmsgsize().unwrap(), 100);
        assert_eq!(socket.get_sndhwm().unwrap(), 7);
        assert_eq!(socket.get_rcvhwm().unwrap(), 9);
        assert_eq!(socket.get_identity().unwrap(), b"A");
        assert!(socket.is_immediate().unwrap());
    }

    #[test]
    fn a_failed_bind_names_its_endpoint() {
        let context = zmq::Context::new();
        let Err(error) = new(&context, zmq::PULL).bind("tcp://nonsense") else {
            panic!("bound to nonsense");
        };
        assert!(error.to_string().contains("tcp://nonsense"), "{error}");
    }

    #[test]
    fn an_oversized_frame_never_reaches_the_program() {
        let context = zmq::Context::new();
        let pull = new(&context, zmq::PULL)
            .max_message_size(1000)
            .bind("tcp://127.0.0.1:*")
            .unwrap();
        let endpoint = pull.get_last_endpoint().unwrap().unwrap();
        let push = new(&context, zmq::PUSH).connect(&endpoint).unwrap();
        push.send(vec![0u8; 5000], 0).unwrap();
        // The big frame kills that connection; a new one carries the small.
        let push2 = new(&context, zmq::PUSH).connect(&endpoint).unwrap();
        push2.send("small", 0).unwrap();
        pull.set_rcvtimeo(10_000).unwrap();
        assert_eq!(pull.recv_bytes(0).unwrap(), b"small");
    }
}
