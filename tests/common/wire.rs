//! Probe sockets that speak raw frames to the programs under test, so that a
//! test checks the bytes of the protocol rather than our own client code.
//! Use them inside [`Scenario::in_namespace`](super::Scenario::in_namespace).
//!
//! Every probe has LINGER 0 and bounded send and receive timeouts (stretched by
//! `ZGUIDE_TEST_SLOWDOWN`), so a probe never hangs a test; a receive that times
//! out is an `Err` with a message that says who waited for what.

use super::timeout_ms;

/// A multipart message as plain frames.
pub type Frames = Vec<Vec<u8>>;

/// `frames(&[b"", b"MDPW01", b"\x01"])`: frames from byte-string literals.
pub fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// Options for a probe socket; see [`probe`].
pub struct Probe<'a> {
    context: &'a zmq::Context,
    kind: zmq::SocketType,
    identity: Option<Vec<u8>>,
    linger_ms: i32,
    receive_timeout_ms: u64,
    receive_hwm: Option<i32>,
    receive_buffer: Option<i32>,
}

/// A probe socket of `kind`: LINGER 0, receive timeout 10 s, send timeout 10 s.
pub fn probe(context: &zmq::Context, kind: zmq::SocketType) -> Probe<'_> {
    Probe {
        context,
        kind,
        identity: None,
        linger_ms: 0,
        receive_timeout_ms: 10_000,
        receive_hwm: None,
        receive_buffer: None,
    }
}

impl Probe<'_> {
    /// A routing identity (e.g. `"C"`, so a test knows whom a reply is for).
    pub fn identity(mut self, identity: impl Into<Vec<u8>>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// LINGER, for a probe that sends and closes at once and must still be
    /// heard; the test then waits for the program's reaction, not for time.
    pub fn linger(mut self, ms: i32) -> Self {
        self.linger_ms = ms;
        self
    }

    /// The receive timeout in milliseconds (before the slowdown factor).
    pub fn receive_timeout(mut self, ms: u64) -> Self {
        self.receive_timeout_ms = ms;
        self
    }

    /// A client that never reads: its own receive queue holds `messages` at
    /// most (`RCVHWM`) and its kernel buffer `bytes` (`SO_RCVBUF`), so what
    /// it does not read backs up into the program under test instead of
    /// being absorbed by the probe's libzmq.
    pub fn never_reads(mut self, messages: i32, bytes: i32) -> Self {
        self.receive_hwm = Some(messages);
        self.receive_buffer = Some(bytes);
        self
    }

    /// The socket, connected to `endpoint`.
    pub fn connect(self, endpoint: &str) -> zmq::Socket {
        let socket = self.build();
        socket
            .connect(endpoint)
            .unwrap_or_else(|e| panic!("probe cannot connect to {endpoint}: {e}"));
        socket
    }

    /// The socket, bound to `endpoint` (a probe that plays a server).
    pub fn bind(self, endpoint: &str) -> zmq::Socket {
        let socket = self.build();
        socket
            .bind(endpoint)
            .unwrap_or_else(|e| panic!("probe cannot bind {endpoint}: {e}"));
        socket
    }

    fn build(self) -> zmq::Socket {
        let socket = self.context.socket(self.kind).expect("probe socket");
        socket.set_linger(self.linger_ms).expect("linger");
        socket
            .set_rcvtimeo(timeout_ms(self.receive_timeout_ms))
            .expect("rcvtimeo");
        socket.set_sndtimeo(timeout_ms(10_000)).expect("sndtimeo");
        if let Some(identity) = &self.identity {
            socket.set_identity(identity).expect("identity");
        }
        if let Some(hwm) = self.receive_hwm {
            socket.set_rcvhwm(hwm).expect("rcvhwm");
        }
        if let Some(bytes) = self.receive_buffer {
            socket.set_rcvbuf(bytes).expect("rcvbuf");
        }
        socket
    }
}

/// Sends `parts` as one message; panics if that is not possible in 10 s.
pub fn send(socket: &zmq::Socket, parts: &[&[u8]]) {
    socket
        .send_multipart(parts.iter().copied(), 0)
        .unwrap_or_else(|e| panic!("probe cannot send {parts:?}: {e}"));
}

/// Receives one message, or an error saying `who` got nothing in time.
pub fn try_recv(socket: &zmq::Socket, who: &str) -> Result<Frames, String> {
    socket
        .recv_multipart(0)
        .map_err(|e| format!("{who} got nothing in time: {e}"))
}

/// Receives one message; panics (with who waited) if none comes in time.
pub fn recv(socket: &zmq::Socket, who: &str) -> Frames {
    try_recv(socket, who).unwrap_or_else(|e| panic!("{e}"))
}

/// Receives until `wanted` holds for a message, skipping the others (such as
/// heartbeats) for at most `within`; `Err` names what was skipped.
pub fn recv_until(
    socket: &zmq::Socket,
    who: &str,
    within: std::time::Duration,
    wanted: impl Fn(&Frames) -> bool,
) -> Result<Frames, String> {
    let deadline = std::time::Instant::now() + within;
    let mut skipped = 0;
    while std::time::Instant::now() < deadline {
        let mut items = [socket.as_poll_item(zmq::POLLIN)];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        zmq::poll(&mut items, left.as_millis() as i64).map_err(|e| e.to_string())?;
        if items[0].is_readable() {
            let msg = try_recv(socket, who)?;
            if wanted(&msg) {
                return Ok(msg);
            }
            skipped += 1;
        }
    }
    Err(format!(
        "{who} did not get the message it waited for within {within:?} ({skipped} others skipped)"
    ))
}

/// `count` REQ probes each send `request` to `endpoint` at once, then each
/// waits (up to 20 s) for its reply: the replies, or who got none.
pub fn requests(endpoint: &str, request: &[&[u8]], count: usize) -> Result<Vec<Frames>, String> {
    let context = zmq::Context::new();
    let clients: Vec<zmq::Socket> = (0..count)
        .map(|_| {
            probe(&context, zmq::REQ)
                .receive_timeout(20_000)
                .connect(endpoint)
        })
        .collect();
    for client in &clients {
        send(client, request);
    }
    clients
        .iter()
        .map(|client| try_recv(client, "a REQ probe"))
        .collect()
}
