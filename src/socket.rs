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
//! * optional high-water marks, identity, `ROUTER_MANDATORY`, subscriptions.
//!
//! No `IMMEDIATE`: see [`Watched`] for why, and what to use instead.
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

/// A socket, and which endpoints it has a live connection to, learnt from
/// its monitor events (handshake done, disconnected).
///
/// Why not `ZMQ_IMMEDIATE`, whose job this looks like: in libzmq 4.3 a socket
/// with IMMEDIATE set drops every message a peer sent but the program has
/// not read yet as soon as that peer disconnects (a broker loses the replies
/// a dying peer had already delivered), and when the news arrives while the
/// program is half-way through reading one of those messages the whole
/// process aborts (`Assertion failed: !_more (src/fq.cpp:112)`, seen when a
/// `peering2` broker outlived its peer). Without IMMEDIATE a connecting
/// socket keeps a dead peer's route and queues for it, so a program that
/// must not hand work to a dead peer asks [`Watched::is_live`] first. The
/// window left is the few milliseconds between a peer's death and the event:
/// a message sent then waits in the queue for the peer's return.
///
/// libzmq sends monitor events with a *blocking* send from its I/O thread, so
/// a monitor nobody reads would, after 1,000 events (a peer that connects and
/// drops in a loop), freeze every connection of the context. A small thread
/// (an [`Actor`](crate::actor::Actor)) therefore reads the events as they
/// come, and the socket and its monitor end together: `Watched` owns the
/// socket (it dereferences to it), and on drop stops the monitor before the
/// reader goes.
pub struct Watched {
    socket: zmq::Socket,
    /// Address, as libzmq reports it → connections with a completed handshake.
    live: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    /// Handshakes completed since the socket was watched, on any endpoint.
    handshakes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Endpoint asked about → the addresses libzmq may report for it.
    aliases: std::cell::RefCell<std::collections::HashMap<String, Vec<String>>>,
    /// Reads the monitor; ended on drop, after the monitor is stopped.
    reader: Option<crate::actor::Actor>,
    /// Where the monitor is moved on drop (with no events: nothing is sent).
    retired: String,
}

impl Watched {
    /// Watches `socket`; call it before the socket connects.
    pub fn new(context: &zmq::Context, socket: zmq::Socket) -> Result<Watched, Error> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let endpoint = format!("inproc://zguide-watched-{}-{number}", std::process::id());
        let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
            | zmq::SocketEvent::DISCONNECTED.to_raw();
        socket.monitor(&endpoint, i32::from(events))?;
        let live: std::sync::Arc<std::sync::Mutex<_>> = Default::default();
        let handshakes: std::sync::Arc<std::sync::atomic::AtomicU64> = Default::default();
        let table = live.clone();
        let counter = handshakes.clone();
        let monitor_endpoint = endpoint.clone();
        let reader = crate::actor::Actor::new(context, move |pipe| {
            if let Err(e) = read_events(pipe, &monitor_endpoint, &table, &counter) {
                log::error!("socket monitor: {e}");
            }
        })?;
        Ok(Watched {
            socket,
            live,
            handshakes,
            aliases: Default::default(),
            reader: Some(reader),
            retired: format!("{endpoint}-retired"),
        })
    }

    /// Whether `endpoint` (as given to `connect`) has a live connection now.
    /// libzmq names a TCP connection by its address (`tcp://127.0.0.1:5555`
    /// for `tcp://localhost:5555`), so a host name is resolved, once.
    pub fn is_live(&self, endpoint: &str) -> bool {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut aliases = self.aliases.borrow_mut();
        let names = aliases
            .entry(endpoint.to_string())
            .or_insert_with(|| addresses_of(endpoint));
        names.iter().any(|name| live.contains_key(name))
    }

    /// How many handshakes have completed so far (first connection and every
    /// reconnection): a change tells a client that it talks to a peer that
    /// may have restarted and forgotten it, and should say hello again.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl std::ops::Deref for Watched {
    type Target = zmq::Socket;
    fn deref(&self) -> &zmq::Socket {
        &self.socket
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A new monitor with no events replaces the old one (libzmq stops the
        // old one first, its last event read by our reader): from here on
        // nothing is sent, so the reader may end.
        if let Err(e) = self.socket.monitor(&self.retired, 0) {
            log::debug!("socket monitor: cannot stop: {e}");
        }
        self.reader.take();
    }
}

/// The reader's loop: applies each event to the table until `$TERM`.
fn read_events(
    pipe: &crate::actor::Pipe,
    endpoint: &str,
    live: &std::sync::Mutex<std::collections::HashMap<String, u32>>,
    handshakes: &std::sync::atomic::AtomicU64,
) -> Result<(), Error> {
    let monitor = pipe.context().socket(zmq::PAIR);
    let monitor = monitor.and_then(|m| {
        m.set_linger(0)?;
        m.connect(endpoint)?;
        Ok(m)
    });
    // Signal even on failure, so `Watched::new` returns; then report.
    pipe.signal(u8::from(monitor.is_err()))?;
    let monitor = monitor?;
    loop {
        // Not `Pipe::poll`: this reader must outlive Ctrl-C, or libzmq's I/O
        // thread could block on an unread event while the program shuts down.
        let mut items = [
            pipe.socket().as_poll_item(zmq::POLLIN),
            monitor.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, -1) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if items[0].is_readable() && crate::actor::is_term(&pipe.recv()?) {
            return Ok(());
        }
        while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
            // Each event is two frames: 2 bytes of event id and 4 of value,
            // then the address.
            let (Some(head), Some(address)) = (frames.first(), frames.get(1)) else {
                continue;
            };
            let Some(id) = head.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]])) else {
                continue;
            };
            let address = String::from_utf8_lossy(address).into_owned();
            let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
            if id == zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw() {
                *live.entry(address).or_default() += 1;
                handshakes.fetch_add(1, std::sync::atomic::Ordering::Release);
            } else if let Some(count) = live.get_mut(&address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    live.remove(&address);
                }
            }
        }
    }
}

/// `endpoint` itself and, for `tcp://host:port`, each address the host
/// resolves to.
fn addresses_of(endpoint: &str) -> Vec<String> {
    use std::net::ToSocketAddrs;
    let mut names = vec![endpoint.to_string()];
    if let Some(host_port) = endpoint.strip_prefix("tcp://") {
        if let Ok(addresses) = host_port.to_socket_addrs() {
            names.extend(addresses.map(|address| format!("tcp://{address}")));
        }
    }
    names
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
            .build()
            .unwrap();
        assert_eq!(socket.get_linger().unwrap(), 0, "never infinite");
        assert_eq!(socket.get_maxmsgsize().unwrap(), 100);
        assert_eq!(socket.get_sndhwm().unwrap(), 7);
        assert_eq!(socket.get_rcvhwm().unwrap(), 9);
        assert_eq!(socket.get_identity().unwrap(), b"A");
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

    /// What `Watched` replaces IMMEDIATE for: a dead peer is seen as
    /// gone, a live one (first, and again after it comes back) as live, and
    /// nothing it sent before it went is lost. (With IMMEDIATE, libzmq 4.3
    /// threw away all but the first 20 of them, and can abort the reader.)
    #[test]
    fn connections_follow_a_peer_that_comes_and_goes_and_nothing_it_sent_is_lost() {
        // Both rounds' messages stay under the reader's receive HWM of 1000
        // (libzmq counts what was read in steps of 500), so the peer's
        // whole backlog waits in the reader when the peer goes.
        const MESSAGES: usize = 400;
        let path =
            std::env::temp_dir().join(format!("zguide-connections-{}.ipc", std::process::id()));
        let endpoint = &format!("ipc://{}", path.display());
        let context = zmq::Context::new();
        let reader = new(&context, zmq::ROUTER).linger(0).build().unwrap();
        let reader = Watched::new(&context, reader).unwrap();
        reader.connect(endpoint).unwrap();
        let wait_until = |live: bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while reader.is_live(endpoint) != live {
                assert!(std::time::Instant::now() < deadline, "never live == {live}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        assert!(!reader.is_live(endpoint), "nothing listens yet");
        assert_eq!(reader.handshakes(), 0);
        for round in 0..2 {
            let sender_context = zmq::Context::new();
            let sender = new(&sender_context, zmq::DEALER).bind(endpoint).unwrap();
            wait_until(true);
            // Each connection is one more handshake.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while reader.handshakes() != round + 1 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: {} handshakes",
                    reader.handshakes()
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            for n in 0..MESSAGES {
                let body = n.to_string();
                let frames: [&[u8]; 4] = [b"a", b"b", b"c", body.as_bytes()];
                sender.send_multipart(frames, 0).unwrap();
            }
            reader.set_rcvtimeo(10_000).unwrap();
            let first = reader.recv_multipart(0).unwrap();
            assert_eq!(first.len(), 5, "identity and four frames");
            // The peer goes: its context flushes what it sent, then closes.
            drop(sender);
            drop(sender_context);
            wait_until(false);
            let mut received = 1;
            reader.set_rcvtimeo(100).unwrap();
            while let Ok(frames) = reader.recv_multipart(0) {
                assert_eq!(
                    frames.len(),
                    5,
                    "round {round}: message {received} came apart"
                );
                assert_eq!(frames[4], received.to_string().as_bytes());
                received += 1;
            }
            assert_eq!(received, MESSAGES, "round {round}");
        }
    }

    /// libzmq's I/O thread blocks on a monitor event nobody reads (after
    /// about 2,000 of them). 1,500 peers that each connect, say one thing
    /// and go make 3,000 events while the program never asks `is_live`:
    /// every one of their messages must still arrive.
    #[test]
    fn a_flood_of_connections_never_freezes_the_socket() {
        const PEERS: usize = 1500;
        let context = zmq::Context::new();
        let path = std::env::temp_dir().join(format!("zguide-flood-{}.ipc", std::process::id()));
        let endpoint = format!("ipc://{}", path.display());
        let server = new(&context, zmq::ROUTER)
            .linger(0)
            .bind(&endpoint)
            .unwrap();
        let server = Watched::new(&context, server).unwrap();
        server.set_rcvtimeo(10_000).unwrap();
        let peers = zmq::Context::new();
        let mut received = 0;
        for n in 0..PEERS {
            let peer = new(&peers, zmq::DEALER)
                .linger(1000)
                .connect(&endpoint)
                .unwrap();
            peer.send(n.to_string().as_bytes(), 0).unwrap();
            // One message read per peer, so the peers' sends never wait on us.
            match server.recv_multipart(0) {
                Ok(frames) => assert_eq!(frames[1], n.to_string().as_bytes()),
                Err(e) => panic!("after {received} peers, no message in 10 s: {e}"),
            }
            received += 1;
        }
        assert_eq!(received, PEERS);
    }
}
