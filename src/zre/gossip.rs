//! Gossip discovery: CZMQ's `zgossip` (the ZeroMQ Gossip Protocol), which
//! zyre uses where UDP broadcast does not reach — another subnet, a WAN, a
//! cloud network. Wire-compatible with CZMQ's `zgossip_msg` codec.
//!
//! **The idea** (chapter 8's "Harmony" pattern, loosely coupled). Every node
//! keeps a table of *tuples*, `key → value`; for ZRE the key is a node's UUID
//! in 32 uppercase hex digits and the value its mailbox endpoint (zyre adds
//! `|<public key>` when it uses CURVE). A node may run a *server* (a ROUTER,
//! `--gossip-bind`) and connect to any number of *remote* servers (one
//! DEALER each, `--gossip-connect`, the seeds). A tuple a node has not seen
//! (or whose value changed) is stored, handed to the node (which connects to
//! that peer's mailbox as if a beacon had named it), and forwarded to every
//! client of its server and every remote; a tuple seen before stops there.
//! So each node needs one seed, and any tree of servers spreads everything.
//!
//! **The wire.** One frame per message: `AA A0` (the signature), an id
//! (1 HELLO, 2 PUBLISH, 3 PING, 4 PONG, 5 INVALID), the version `01`, and for
//! PUBLISH a key (1-byte length), a value (4-byte length, network order) and
//! a TTL (4 bytes, milliseconds; CZMQ sends 0 and ignores it, as we do). A
//! client says HELLO and the server answers with every tuple it has; then
//! either side PUBLISHes new tuples. A PUBLISH from a client that has not
//! said HELLO is answered INVALID, and the client says HELLO again.
//!
//! **Where we differ from CZMQ**, each time to lose nothing:
//! - our client PINGs each live remote twice a second (CZMQ's does not, and
//!   CZMQ's server forgets a client silent for one second, after which it
//!   no longer forwards new tuples to it); our server forgets a client silent
//!   for [`CLIENT_EXPIRY`], and answers a PING from a client it does not know
//!   with INVALID (CZMQ: PONG), so that the client says HELLO again and is
//!   sent what it missed;
//! - on every completed handshake with a remote (the first connection and
//!   each reconnection, seen by a socket monitor as CZMQ does) the client says
//!   HELLO and publishes all its tuples again: a restarted server learns them
//!   back, and the client hears all of the server's;
//! - ZMTP heartbeats (1 s, dead after 5 s) on every gossip connection, so a
//!   cut link is noticed and the reconnection above happens when it heals;
//! - [`unpublish`](Gossip::unpublish) (the node calls it when a peer is
//!   removed, as zyre does) forgets a tuple locally, so the tuple counts as
//!   new when it comes again — a peer that was cut off is found again.
//!
//! **Bounds.** At most [`MAX_TUPLES`] tuples (new keys past that are
//! ignored, with one warning), values of at most [`MAX_VALUE`] bytes, keys
//! and values valid UTF-8, frames of at most [`MAX_FRAME`] bytes
//! (`MAXMSGSIZE`), at most [`MAX_CLIENTS`] clients (the one heard from
//! longest ago is forgotten for a new one), at most [`READ_BATCH`] messages
//! per socket per wake-up. Every send is non-blocking: a client whose queue
//! is full is forgotten (it comes back with HELLO), a remote that does not
//! read misses tuples until its next handshake. There is no tuple expiry in
//! the protocol: a node that died stays in the tables until every node has
//! tried its endpoint and removed it (see [`unpublish`](Gossip::unpublish)).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::message::show;
use crate::socket::{self, Watched};
use crate::{log_limit, Error, Message};

/// The two signature bytes that start every message.
pub const SIGNATURE: [u8; 2] = [0xAA, 0xA0];
/// The protocol version every message carries.
pub const VERSION: u8 = 1;
/// The most tuples a node keeps.
pub const MAX_TUPLES: usize = 10_000;
/// The longest value accepted, in bytes.
pub const MAX_VALUE: usize = 4096;
/// The largest frame a gossip socket accepts (`MAXMSGSIZE`).
pub const MAX_FRAME: i64 = 8192;
/// The most clients a server follows.
pub const MAX_CLIENTS: usize = 1024;
/// How often a client PINGs each remote.
pub const PING_INTERVAL: Duration = Duration::from_millis(500);
/// Silence after which a server forgets a client.
pub const CLIENT_EXPIRY: Duration = Duration::from_secs(30);
/// Messages read per socket per wake-up at most.
pub const READ_BATCH: usize = 1000;
/// How long a remote may go without a handshake before we warn, once.
const SILENT_REMOTE: Duration = Duration::from_secs(5);
/// How often the handshake counters of the remotes are looked at.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// Messages queued per connection: a full table, and some.
const SEND_HWM: i32 = MAX_TUPLES as i32 + 100;

/// One zgossip message (see the module docs for the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Hello,
    Publish {
        key: String,
        value: String,
        ttl: u32,
    },
    Ping,
    Pong,
    Invalid,
}

impl Command {
    fn id(&self) -> u8 {
        match self {
            Command::Hello => 1,
            Command::Publish { .. } => 2,
            Command::Ping => 3,
            Command::Pong => 4,
            Command::Invalid => 5,
        }
    }

    /// The message's one frame; fails if a key is longer than 255 bytes or a
    /// value longer than [`MAX_VALUE`].
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut frame = Vec::with_capacity(16);
        frame.extend_from_slice(&SIGNATURE);
        frame.push(self.id());
        frame.push(VERSION);
        if let Command::Publish { key, value, ttl } = self {
            let key_len = u8::try_from(key.len())
                .map_err(|_| Error::Protocol(format!("gossip key of {} bytes", key.len())))?;
            if value.len() > MAX_VALUE {
                return Err(Error::Protocol(format!(
                    "gossip value of {} bytes (at most {MAX_VALUE})",
                    value.len()
                )));
            }
            frame.push(key_len);
            frame.extend_from_slice(key.as_bytes());
            frame.extend_from_slice(&(value.len() as u32).to_be_bytes());
            frame.extend_from_slice(value.as_bytes());
            frame.extend_from_slice(&ttl.to_be_bytes());
        }
        Ok(frame)
    }

    /// Reads one frame; every length is checked against what is left.
    /// Bytes after the message are ignored, as CZMQ does.
    pub fn decode(frame: &[u8]) -> Result<Command, String> {
        let mut reader = Reader { rest: frame };
        if reader.take(2)? != SIGNATURE {
            return Err("not a zgossip message (bad signature)".into());
        }
        let id = reader.byte()?;
        let version = reader.byte()?;
        if version != VERSION {
            return Err(format!("zgossip version {version}"));
        }
        Ok(match id {
            1 => Command::Hello,
            2 => {
                let key_len = usize::from(reader.byte()?);
                let key = reader.text(key_len)?;
                let value_len = reader.number4()? as usize;
                if value_len > MAX_VALUE {
                    return Err(format!("value of {value_len} bytes (at most {MAX_VALUE})"));
                }
                let value = reader.text(value_len)?;
                let ttl = reader.number4()?;
                Command::Publish { key, value, ttl }
            }
            3 => Command::Ping,
            4 => Command::Pong,
            5 => Command::Invalid,
            other => return Err(format!("unknown zgossip message id {other}")),
        })
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < count {
            return Err(format!(
                "truncated: {count} bytes wanted, {} left",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(count);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn number4(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn text(&mut self, count: usize) -> Result<String, String> {
        let bytes = self.take(count)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string that is not UTF-8".into())
    }
}

/// A remote server we connect to.
struct Remote {
    endpoint: String,
    socket: Watched,
    /// The handshake count when we last said HELLO.
    greeted: u64,
    /// Whether we said that it has not answered yet.
    warned: bool,
}

/// Where a tuple came from, so it is not sent straight back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin<'a> {
    Local,
    Client(&'a [u8]),
    Remote(usize),
}

/// One node's gossip: its tuples, its server and its remotes. It lives in
/// the node's thread: the node polls [`sockets`](Gossip::sockets), calls
/// [`read`](Gossip::read) with what was ready and [`tick`](Gossip::tick)
/// by [`next_tick`](Gossip::next_tick).
pub struct Gossip {
    server: Option<zmq::Socket>,
    remotes: Vec<Remote>,
    tuples: BTreeMap<String, String>,
    /// Clients that said HELLO → when last heard from.
    clients: HashMap<Vec<u8>, Instant>,
    ping_at: Instant,
    check_at: Instant,
    started: Instant,
    warned_full: bool,
}

/// ZMTP heartbeats on a gossip socket: a PING every second, the connection
/// dropped when nothing is heard for five.
fn heartbeat(socket: &zmq::Socket) -> Result<(), Error> {
    socket.set_heartbeat_ivl(1000)?;
    socket.set_heartbeat_timeout(5000)?;
    socket.set_heartbeat_ttl(5000)?;
    Ok(())
}

impl Gossip {
    /// A server bound at `bind` (if any) and a client of each of `connect`.
    pub fn new(
        context: &zmq::Context,
        bind: Option<&str>,
        connect: &[String],
    ) -> Result<Gossip, Error> {
        let server = match bind {
            Some(endpoint) => {
                let server = socket::new(context, zmq::ROUTER)
                    .linger(0)
                    .max_message_size(MAX_FRAME)
                    .send_hwm(SEND_HWM)
                    .router_mandatory()
                    .build()?;
                heartbeat(&server)?;
                server.bind(endpoint).map_err(|source| Error::Endpoint {
                    action: "bind",
                    endpoint: endpoint.to_string(),
                    source,
                })?;
                Some(server)
            }
            None => None,
        };
        let mut remotes = Vec::with_capacity(connect.len());
        for endpoint in connect {
            let socket = socket::new(context, zmq::DEALER)
                .linger(0)
                .max_message_size(MAX_FRAME)
                .send_hwm(SEND_HWM)
                .build()?;
            heartbeat(&socket)?;
            let socket = Watched::new(context, socket)?;
            socket.connect(endpoint).map_err(|source| Error::Endpoint {
                action: "connect to",
                endpoint: endpoint.clone(),
                source,
            })?;
            remotes.push(Remote {
                endpoint: endpoint.clone(),
                socket,
                greeted: 0,
                warned: false,
            });
        }
        let now = Instant::now();
        Ok(Gossip {
            server,
            remotes,
            tuples: BTreeMap::new(),
            clients: HashMap::new(),
            ping_at: now + PING_INTERVAL,
            check_at: now,
            started: now,
            warned_full: false,
        })
    }

    /// The sockets to poll for input: the server's first (if any), then
    /// each remote's; [`read`](Gossip::read) takes readiness in this order.
    pub fn sockets(&self) -> Vec<&zmq::Socket> {
        let mut list: Vec<&zmq::Socket> = self.server.iter().collect();
        list.extend(self.remotes.iter().map(|r| &*r.socket));
        list
    }

    /// Where our server listens, as libzmq reports it (the port filled in
    /// when it was bound to `*`).
    pub fn server_endpoint(&self) -> Option<String> {
        let server = self.server.as_ref()?;
        server.get_last_endpoint().ok()?.ok()
    }

    /// The tuples known, in key order.
    pub fn tuples(&self) -> &BTreeMap<String, String> {
        &self.tuples
    }

    /// Publishes our own tuple: stored and sent to every client and remote.
    pub fn publish(&mut self, key: &str, value: &str) {
        self.accept(key, value, Origin::Local);
    }

    /// Forgets a tuple here (nothing is sent): when it comes again it is new.
    pub fn unpublish(&mut self, key: &str) {
        self.tuples.remove(key);
    }

    /// When [`tick`](Gossip::tick) wants to run next.
    pub fn next_tick(&self) -> Instant {
        self.ping_at.min(self.check_at)
    }

    /// Says HELLO (and publishes every tuple) to each remote that completed
    /// a handshake since we last did; PINGs live remotes every
    /// [`PING_INTERVAL`]; forgets clients silent for [`CLIENT_EXPIRY`].
    pub fn tick(&mut self, now: Instant) {
        if now >= self.check_at {
            self.check_at = now + CHECK_INTERVAL;
            for index in 0..self.remotes.len() {
                let handshakes = self.remotes[index].socket.handshakes();
                if handshakes != self.remotes[index].greeted {
                    self.remotes[index].greeted = handshakes;
                    self.greet(index);
                }
            }
        }
        if now >= self.ping_at {
            self.ping_at = now + PING_INTERVAL;
            for index in 0..self.remotes.len() {
                let remote = &self.remotes[index];
                if remote.socket.is_live(&remote.endpoint) {
                    self.send_remote(index, &Command::Ping);
                }
            }
            self.clients
                .retain(|_, heard| now.duration_since(*heard) < CLIENT_EXPIRY);
            if now.duration_since(self.started) >= SILENT_REMOTE {
                for remote in &mut self.remotes {
                    if remote.greeted == 0 && !remote.warned {
                        remote.warned = true;
                        log::warn!(
                            "gossip: no connection to {} after {} s (not running, unreachable, \
                             or not a plain zgossip server)",
                            remote.endpoint,
                            SILENT_REMOTE.as_secs()
                        );
                    }
                }
            }
        }
    }

    /// Reads what is waiting on the sockets marked ready (in the order of
    /// [`sockets`](Gossip::sockets)); returns the tuples that are new.
    pub fn read(&mut self, ready: &[bool]) -> Vec<(String, String)> {
        let mut delivered = Vec::new();
        let mut flags = ready.iter().copied();
        if self.server.is_some() && flags.next().unwrap_or(false) {
            self.read_server(&mut delivered);
        }
        for index in 0..self.remotes.len() {
            if flags.next().unwrap_or(false) {
                self.read_remote(index, &mut delivered);
            }
        }
        delivered
    }

    fn read_server(&mut self, delivered: &mut Vec<(String, String)>) {
        for _ in 0..READ_BATCH {
            let Some(server) = &self.server else { return };
            let frames = match server.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    log::warn!("gossip server: {e}");
                    return;
                }
            };
            let (Some(client), Some(frame)) = (frames.first(), frames.get(1)) else {
                continue;
            };
            let command = match Command::decode(frame) {
                Ok(command) => command,
                Err(e) => {
                    log_limit::complain(format_args!(
                        "gossip server: bad message from client {}: {e}",
                        show(client)
                    ));
                    continue;
                }
            };
            let now = Instant::now();
            let known = self.clients.contains_key(client);
            match command {
                Command::Hello => self.welcome(client.clone(), now),
                Command::Publish { key, value, .. } if known => {
                    self.clients.insert(client.clone(), now);
                    if self.accept(&key, &value, Origin::Client(client)) {
                        delivered.push((key, value));
                    }
                }
                Command::Ping if known => {
                    self.clients.insert(client.clone(), now);
                    self.send_client(client, &Command::Pong);
                }
                // Not said HELLO (or forgotten), or a command a client does
                // not send: INVALID, and the client starts again.
                _ => {
                    self.clients.remove(client);
                    self.send_client(client, &Command::Invalid);
                }
            }
        }
    }

    /// A client said HELLO: it gets every tuple.
    fn welcome(&mut self, client: Vec<u8>, now: Instant) {
        if !self.clients.contains_key(&client) && self.clients.len() >= MAX_CLIENTS {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(_, heard)| **heard)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                log_limit::complain(format_args!(
                    "gossip server: {MAX_CLIENTS} clients, forgot the quietest"
                ));
                self.clients.remove(&oldest);
            }
        }
        self.clients.insert(client.clone(), now);
        let all: Vec<Command> = self
            .tuples
            .iter()
            .map(|(key, value)| Command::Publish {
                key: key.clone(),
                value: value.clone(),
                ttl: 0,
            })
            .collect();
        for command in &all {
            if !self.send_client(&client, command) {
                return;
            }
        }
    }

    fn read_remote(&mut self, index: usize, delivered: &mut Vec<(String, String)>) {
        for _ in 0..READ_BATCH {
            let frames = match self.remotes[index].socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    log::warn!("gossip client: {e}");
                    return;
                }
            };
            let Some(frame) = frames.first() else {
                continue;
            };
            match Command::decode(frame) {
                Ok(Command::Publish { key, value, .. }) => {
                    if self.accept(&key, &value, Origin::Remote(index)) {
                        delivered.push((key, value));
                    }
                }
                // The server has forgotten us: HELLO again, as CZMQ does.
                Ok(Command::Invalid) => {
                    self.send_remote(index, &Command::Hello);
                }
                Ok(_) => {}
                Err(e) => log_limit::complain(format_args!(
                    "gossip client: bad message from {}: {e}",
                    self.remotes[index].endpoint
                )),
            }
        }
    }

    /// Stores a tuple that is new or changed and forwards it to every client
    /// and remote but the one it came from; true if it was new.
    fn accept(&mut self, key: &str, value: &str, origin: Origin) -> bool {
        if self.tuples.get(key).is_some_and(|known| known == value) {
            return false;
        }
        if value.len() > MAX_VALUE || key.len() > 255 {
            log_limit::complain(format_args!("gossip: tuple too large, ignored"));
            return false;
        }
        if !self.tuples.contains_key(key) && self.tuples.len() >= MAX_TUPLES {
            if !self.warned_full {
                log::warn!("gossip: {MAX_TUPLES} tuples known, ignoring new ones");
                self.warned_full = true;
            }
            return false;
        }
        self.tuples.insert(key.to_string(), value.to_string());
        let command = Command::Publish {
            key: key.to_string(),
            value: value.to_string(),
            ttl: 0,
        };
        let clients: Vec<Vec<u8>> = self
            .clients
            .keys()
            .filter(|id| origin != Origin::Client(id))
            .cloned()
            .collect();
        for client in clients {
            self.send_client(&client, &command);
        }
        for index in 0..self.remotes.len() {
            // A remote not greeted yet hears every tuple when it is.
            if origin != Origin::Remote(index) && self.remotes[index].greeted > 0 {
                self.send_remote(index, &command);
            }
        }
        true
    }

    /// HELLO and every tuple to remote `index`.
    fn greet(&mut self, index: usize) {
        log::debug!("gossip: connected to {}", self.remotes[index].endpoint);
        self.send_remote(index, &Command::Hello);
        let all: Vec<Command> = self
            .tuples
            .iter()
            .map(|(key, value)| Command::Publish {
                key: key.clone(),
                value: value.clone(),
                ttl: 0,
            })
            .collect();
        for command in &all {
            if !self.send_remote(index, command) {
                return;
            }
        }
    }

    /// Sends to a client without waiting; a client that cannot take it (gone,
    /// or its queue full) is forgotten. False if not sent.
    fn send_client(&mut self, client: &[u8], command: &Command) -> bool {
        let Some(server) = &self.server else {
            return false;
        };
        let Ok(frame) = command.encode() else {
            return false;
        };
        match Message::from_frames([client.to_vec(), frame]).send_or_drop(server) {
            Ok(true) => true,
            Ok(false) => {
                self.clients.remove(client);
                false
            }
            Err(e) => {
                log_limit::complain(format_args!("gossip server: cannot send: {e}"));
                self.clients.remove(client);
                false
            }
        }
    }

    /// Sends to a remote without waiting; false if not sent (it will hear
    /// everything again at its next handshake).
    fn send_remote(&mut self, index: usize, command: &Command) -> bool {
        let Ok(frame) = command.encode() else {
            return false;
        };
        let remote = &self.remotes[index];
        match Message::from_frames([frame]).send_or_drop(&remote.socket) {
            Ok(true) => true,
            Ok(false) => {
                log_limit::complain(format_args!(
                    "gossip client: {} does not read, a message dropped",
                    remote.endpoint
                ));
                false
            }
            Err(e) => {
                log_limit::complain(format_args!(
                    "gossip client: cannot send to {}: {e}",
                    remote.endpoint
                ));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn publish(key: &str, value: &str) -> Command {
        Command::Publish {
            key: key.into(),
            value: value.into(),
            ttl: 0,
        }
    }

    #[test]
    fn messages_are_czmq_frames_byte_for_byte() {
        assert_eq!(Command::Hello.encode().unwrap(), [0xAA, 0xA0, 1, 1]);
        assert_eq!(Command::Ping.encode().unwrap(), [0xAA, 0xA0, 3, 1]);
        assert_eq!(Command::Pong.encode().unwrap(), [0xAA, 0xA0, 4, 1]);
        assert_eq!(Command::Invalid.encode().unwrap(), [0xAA, 0xA0, 5, 1]);
        let frame = Command::Publish {
            key: "AB".into(),
            value: "tcp://1.2.3.4:5".into(),
            ttl: 0x0102_0304,
        }
        .encode()
        .unwrap();
        let mut expected = vec![0xAA, 0xA0, 2, 1, 2, b'A', b'B', 0, 0, 0, 15];
        expected.extend_from_slice(b"tcp://1.2.3.4:5");
        expected.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(frame, expected);
        for command in [
            Command::Hello,
            Command::Ping,
            Command::Pong,
            Command::Invalid,
            publish("AB", "tcp://1.2.3.4:5"),
            publish("", ""),
        ] {
            assert_eq!(Command::decode(&command.encode().unwrap()), Ok(command));
        }
        // Trailing bytes are ignored, as CZMQ does.
        assert_eq!(
            Command::decode(&[0xAA, 0xA0, 1, 1, 9, 9]),
            Ok(Command::Hello)
        );
    }

    #[test]
    fn bad_frames_are_refused_without_panic_or_large_allocation() {
        let good = publish("key", "value").encode().unwrap();
        for cut in 0..good.len() {
            assert!(Command::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Command::decode(&[0xAA, 0xA1, 1, 1]).is_err(), "signature");
        assert!(Command::decode(&[0xAA, 0xA0, 1, 2]).is_err(), "version");
        assert!(Command::decode(&[0xAA, 0xA0, 9, 1]).is_err(), "id");
        // A value length of 4 GiB is refused before anything is read.
        let huge = [0xAA, 0xA0, 2, 1, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        let error = Command::decode(&huge).unwrap_err();
        assert!(error.contains("at most"), "{error}");
        let mut not_utf8 = vec![0xAA, 0xA0, 2, 1, 1, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(Command::decode(&not_utf8).is_err());
        not_utf8[5] = b'k';
        assert_eq!(Command::decode(&not_utf8), Ok(publish("k", "")));
        assert!(publish(&"k".repeat(256), "").encode().is_err());
        assert!(publish("k", &"v".repeat(MAX_VALUE + 1)).encode().is_err());
        // The bounds themselves are allowed.
        let longest = publish(&"k".repeat(255), &"v".repeat(MAX_VALUE));
        assert_eq!(Command::decode(&longest.encode().unwrap()), Ok(longest));
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x60551);
        for _ in 0..20_000 {
            let size = rng.gen_range(0..40);
            let mut bytes: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
            if size >= 4 && rng.gen_bool(0.5) {
                bytes[..2].copy_from_slice(&SIGNATURE);
                bytes[2] = rng.gen_range(1..=5);
                bytes[3] = VERSION;
            }
            let _ = Command::decode(&bytes);
        }
    }

    /// Runs every gossip (poll, read, tick) until `done` holds for what
    /// each has been delivered, or panics after five seconds.
    fn pump(
        gossips: &mut [&mut Gossip],
        delivered: &mut [Vec<(String, String)>],
        done: impl Fn(&[Vec<(String, String)>]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(delivered) {
            assert!(Instant::now() < deadline, "gossip: got only {delivered:?}");
            for (index, gossip) in gossips.iter_mut().enumerate() {
                let ready: Vec<bool> = {
                    let sockets = gossip.sockets();
                    let mut items: Vec<zmq::PollItem> = sockets
                        .iter()
                        .map(|s| s.as_poll_item(zmq::POLLIN))
                        .collect();
                    zmq::poll(&mut items, 5).unwrap();
                    items.iter().map(zmq::PollItem::is_readable).collect()
                };
                delivered[index].extend(gossip.read(&ready));
                gossip.tick(Instant::now());
            }
        }
    }

    fn has(list: &[(String, String)], key: &str, value: &str) -> bool {
        list.iter().any(|(k, v)| k == key && v == value)
    }

    #[test]
    fn tuples_spread_through_a_server_once_and_come_back_after_it_restarts() {
        let context = zmq::Context::new();
        let mut server = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &[]).unwrap();
        let endpoint = server.server_endpoint().unwrap();
        let seeds = [endpoint.clone()];
        let mut ann = Gossip::new(&context, None, &seeds).unwrap();
        let mut bob = Gossip::new(&context, None, &seeds).unwrap();
        server.publish("S", "server");
        ann.publish("A", "ann");
        let mut delivered = vec![Vec::new(), Vec::new(), Vec::new()];
        pump(
            &mut [&mut server, &mut ann, &mut bob],
            &mut delivered,
            |d| has(&d[2], "S", "server") && has(&d[2], "A", "ann") && has(&d[1], "S", "server"),
        );
        // A changed value is new again; the same value is not.
        ann.publish("A", "ann-2");
        ann.publish("A", "ann-2");
        pump(
            &mut [&mut server, &mut ann, &mut bob],
            &mut delivered,
            |d| has(&d[2], "A", "ann-2"),
        );
        bob.publish("B", "bob");
        pump(
            &mut [&mut server, &mut ann, &mut bob],
            &mut delivered,
            |d| has(&d[1], "B", "bob"),
        );
        let count =
            |list: &[(String, String)], key: &str| list.iter().filter(|(k, _)| k == key).count();
        assert_eq!(count(&delivered[2], "A"), 2, "{:?}", delivered[2]);
        assert_eq!(
            count(&delivered[1], "A"),
            0,
            "our own tuple is not delivered to us"
        );
        assert_eq!(count(&delivered[0], "B"), 1);
        assert_eq!(server.tuples().len(), 3);

        // The server restarts empty at the same endpoint: both clients
        // reconnect, say HELLO and publish what they know again, so a new
        // client hears of ann and bob from it.
        drop(server);
        // (libzmq closes the old listener in its own time: retry a while.)
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut server = loop {
            match Gossip::new(&context, Some(&endpoint), &[]) {
                Ok(server) => break server,
                Err(e) if Instant::now() < deadline => {
                    log::debug!("rebinding: {e}");
                    std::thread::yield_now();
                }
                Err(e) => panic!("cannot bind {endpoint} again: {e}"),
            }
        };
        let mut carl = Gossip::new(&context, None, &seeds).unwrap();
        let mut delivered = vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        pump(
            &mut [&mut server, &mut ann, &mut bob, &mut carl],
            &mut delivered,
            |d| has(&d[3], "A", "ann-2") && has(&d[3], "B", "bob") && has(&d[3], "S", "server"),
        );
    }

    #[test]
    fn a_chain_of_servers_carries_tuples_both_ways() {
        // dave → carl's server → (carl is a client of) ann's server → bob.
        let context = zmq::Context::new();
        let mut ann = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &[]).unwrap();
        let ann_server = [ann.server_endpoint().unwrap()];
        let mut carl = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &ann_server).unwrap();
        let carl_server = [carl.server_endpoint().unwrap()];
        let mut bob = Gossip::new(&context, None, &ann_server).unwrap();
        let mut dave = Gossip::new(&context, None, &carl_server).unwrap();
        let mut delivered = vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        pump(
            &mut [&mut ann, &mut carl, &mut bob, &mut dave],
            &mut delivered,
            |_| true,
        );
        dave.publish("D", "dave");
        bob.publish("B", "bob");
        pump(
            &mut [&mut ann, &mut carl, &mut bob, &mut dave],
            &mut delivered,
            |d| has(&d[2], "D", "dave") && has(&d[3], "B", "bob"),
        );
        assert!(has(&delivered[0], "D", "dave") && has(&delivered[1], "B", "bob"));
    }

    #[test]
    fn a_client_that_did_not_say_hello_is_told_invalid_and_a_forgotten_tuple_is_new_again() {
        let context = zmq::Context::new();
        let mut server = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &[]).unwrap();
        let endpoint = server.server_endpoint().unwrap();
        let raw = context.socket(zmq::DEALER).unwrap();
        raw.set_linger(0).unwrap();
        raw.set_rcvtimeo(5000).unwrap();
        raw.connect(&endpoint).unwrap();
        raw.send(publish("X", "x").encode().unwrap(), 0).unwrap();
        let mut answer = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while answer.is_none() && Instant::now() < deadline {
            let ready = vec![
                server
                    .server
                    .as_ref()
                    .unwrap()
                    .poll(zmq::POLLIN, 10)
                    .unwrap()
                    > 0,
            ];
            assert!(server.read(&ready).is_empty(), "no tuple from a stranger");
            if let Ok(frame) = raw.recv_bytes(zmq::DONTWAIT) {
                answer = Some(Command::decode(&frame).unwrap());
            }
        }
        assert_eq!(answer, Some(Command::Invalid));
        assert!(server.tuples().is_empty());
        // After HELLO, the same PUBLISH is taken.
        raw.send(Command::Hello.encode().unwrap(), 0).unwrap();
        raw.send(publish("X", "x").encode().unwrap(), 0).unwrap();
        let mut delivered = vec![Vec::new()];
        pump(&mut [&mut server], &mut delivered, |d| has(&d[0], "X", "x"));
        server.unpublish("X");
        raw.send(publish("X", "x").encode().unwrap(), 0).unwrap();
        let mut again = vec![Vec::new()];
        pump(&mut [&mut server], &mut again, |d| has(&d[0], "X", "x"));
    }

    #[test]
    fn gossip_sockets_heartbeat_and_have_room_for_one_whole_table() {
        let context = zmq::Context::new();
        let remotes = ["inproc://gossip-options".to_string()];
        let gossip = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &remotes).unwrap();
        assert_eq!(gossip.sockets().len(), 2);
        for socket in gossip.sockets() {
            assert_eq!(socket.get_heartbeat_ivl().unwrap(), 1000);
            assert_eq!(socket.get_heartbeat_timeout().unwrap(), 5000);
            // A HELLO's answer (every tuple) fits; a peer that never reads
            // is dropped after about one table, not a hundred.
            let hwm = socket.get_sndhwm().unwrap() as usize;
            assert!(hwm > MAX_TUPLES && hwm < 2 * MAX_TUPLES, "SNDHWM {hwm}");
        }
    }

    #[test]
    fn ticks_come_when_due_and_the_next_is_always_ahead() {
        let context = zmq::Context::new();
        let mut gossip = Gossip::new(&context, None, &[]).unwrap();
        let due = gossip.ping_at;
        let early = due - Duration::from_millis(1);
        gossip.tick(early);
        assert_eq!(gossip.ping_at, due, "a ping round before it was due");
        assert_eq!(gossip.check_at, early + CHECK_INTERVAL);
        gossip.tick(due);
        assert_eq!(gossip.ping_at, due + PING_INTERVAL);
        assert_eq!(gossip.next_tick(), early + CHECK_INTERVAL);
    }

    #[test]
    fn a_server_forgets_a_client_silent_for_the_expiry_and_no_sooner() {
        let context = zmq::Context::new();
        let mut server = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &[]).unwrap();
        let start = server.started;
        let first = start + CLIENT_EXPIRY - Duration::from_millis(1);
        let second = first + PING_INTERVAL;
        server.clients.insert(b"quiet".to_vec(), start);
        server
            .clients
            .insert(b"edge".to_vec(), second - CLIENT_EXPIRY);
        server.clients.insert(b"chatty".to_vec(), first);
        server.tick(first);
        let known = |server: &Gossip, id: &[u8]| server.clients.contains_key(id);
        assert!(known(&server, b"quiet") && known(&server, b"edge") && known(&server, b"chatty"));
        server.tick(second);
        assert!(!known(&server, b"quiet"), "silent longer than the expiry");
        assert!(!known(&server, b"edge"), "silent for exactly the expiry");
        assert!(known(&server, b"chatty"));
    }

    #[test]
    fn a_remote_never_reached_is_named_once_after_five_seconds() {
        crate::log_limit::captured::install();
        let lines = crate::log_limit::captured::lines_with;
        let context = zmq::Context::new();
        let never = "inproc://gossip-never-bound".to_string();
        let mut gossip = Gossip::new(&context, None, std::slice::from_ref(&never)).unwrap();
        let line = format!("gossip: no connection to {never} after 5 s");
        let start = gossip.started;
        gossip.tick(start + SILENT_REMOTE - Duration::from_millis(1));
        assert!(lines(&line).is_empty(), "named too early");
        gossip.tick(start + SILENT_REMOTE + PING_INTERVAL);
        assert_eq!(lines(&line).len(), 1);
        gossip.tick(start + SILENT_REMOTE + 3 * PING_INTERVAL);
        assert_eq!(lines(&line).len(), 1, "named again");
        // One that answered (a handshake, so it was greeted) is never named.
        let server = context.socket(zmq::ROUTER).unwrap();
        server.set_linger(0).unwrap();
        server.bind("tcp://127.0.0.1:*").unwrap();
        let reached = server.get_last_endpoint().unwrap().unwrap();
        let mut gossip = Gossip::new(&context, None, std::slice::from_ref(&reached)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while gossip.remotes[0].greeted == 0 {
            assert!(Instant::now() < deadline, "no handshake with {reached}");
            server.poll(zmq::POLLIN, 10).unwrap();
            gossip.tick(Instant::now());
        }
        gossip.tick(gossip.started + 2 * SILENT_REMOTE);
        assert!(lines(&format!("no connection to {reached}")).is_empty());
    }

    /// Sends `command` from the raw client `raw` and runs the server until
    /// the client hears an answer (5 s at most).
    fn answer_to(server: &mut Gossip, raw: &zmq::Socket, command: &Command) -> Command {
        raw.send(command.encode().unwrap(), 0).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no answer to {command:?}");
            let socket = server.server.as_ref().unwrap();
            let readable = socket.poll(zmq::POLLIN, 10).unwrap() > 0;
            server.read(&[readable]);
            if let Ok(frame) = raw.recv_bytes(zmq::DONTWAIT) {
                return Command::decode(&frame).unwrap();
            }
        }
    }

    #[test]
    fn a_ping_is_answered_pong_only_after_hello() {
        let context = zmq::Context::new();
        let mut server = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &[]).unwrap();
        let raw = context.socket(zmq::DEALER).unwrap();
        raw.set_linger(0).unwrap();
        raw.connect(&server.server_endpoint().unwrap()).unwrap();
        assert_eq!(
            answer_to(&mut server, &raw, &Command::Ping),
            Command::Invalid
        );
        // An empty table: HELLO has no answer, the PING after it has.
        raw.send(Command::Hello.encode().unwrap(), 0).unwrap();
        assert_eq!(answer_to(&mut server, &raw, &Command::Ping), Command::Pong);
        assert_eq!(answer_to(&mut server, &raw, &Command::Ping), Command::Pong);
    }

    #[test]
    fn a_full_server_forgets_its_quietest_client_for_a_new_one_only() {
        let context = zmq::Context::new();
        let mut server = Gossip::new(&context, Some("tcp://127.0.0.1:*"), &[]).unwrap();
        let start = Instant::now();
        for n in 0..MAX_CLIENTS {
            let heard = start + Duration::from_millis(n as u64);
            server
                .clients
                .insert(format!("client {n}").into_bytes(), heard);
        }
        let later = start + Duration::from_secs(10);
        // A known client says HELLO again: nobody is forgotten.
        server.welcome(b"client 7".to_vec(), later);
        assert_eq!(server.clients.len(), MAX_CLIENTS);
        assert!(server.clients.contains_key(&b"client 0"[..]));
        server.welcome(b"newcomer".to_vec(), later);
        assert_eq!(server.clients.len(), MAX_CLIENTS);
        assert!(
            !server.clients.contains_key(&b"client 0"[..]),
            "the quietest stays"
        );
        assert!(server.clients.contains_key(&b"newcomer"[..]));
    }

    #[test]
    fn tuple_bounds_hold_at_their_limits() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let mut gossip = Gossip::new(&context, None, &[]).unwrap();
        let longest_key = "k".repeat(255);
        gossip.publish(&longest_key, &"v".repeat(MAX_VALUE));
        assert!(
            gossip.tuples().contains_key(&longest_key),
            "the bounds are allowed"
        );
        gossip.publish(&"k".repeat(256), "v");
        gossip.publish("a long value", &"v".repeat(MAX_VALUE + 1));
        assert_eq!(gossip.tuples().len(), 1);
        // Full: no new key, but a known one may still change.
        for n in 1..MAX_TUPLES {
            gossip.publish(&format!("{n:05}"), "x");
        }
        assert_eq!(gossip.tuples().len(), MAX_TUPLES);
        gossip.publish("one too many", "x");
        gossip.publish("two too many", "x");
        assert_eq!(gossip.tuples().len(), MAX_TUPLES);
        assert!(!gossip.tuples().contains_key("one too many"));
        gossip.publish("00001", "changed");
        assert_eq!(gossip.tuples()["00001"], "changed");
        let warning = format!("gossip: {MAX_TUPLES} tuples known, ignoring new ones");
        assert_eq!(crate::log_limit::captured::lines_with(&warning).len(), 1);
    }

    #[test]
    fn a_remote_hears_hello_before_any_tuple() {
        let context = zmq::Context::new();
        // Nobody listens there yet: a tuple published now waits for the
        // handshake and comes after HELLO, not queued before it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("tcp://127.0.0.1:{port}");
        let mut gossip = Gossip::new(&context, None, std::slice::from_ref(&endpoint)).unwrap();
        gossip.publish("K", "v");
        let fake = context.socket(zmq::ROUTER).unwrap();
        fake.set_linger(0).unwrap();
        fake.bind(&endpoint).unwrap();
        let mut heard = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while heard.len() < 2 {
            assert!(Instant::now() < deadline, "heard only {heard:?}");
            if fake.poll(zmq::POLLIN, 10).unwrap() > 0 {
                let frames = fake.recv_multipart(0).unwrap();
                heard.push(Command::decode(&frames[1]).unwrap());
            }
            gossip.tick(Instant::now());
        }
        assert_eq!(heard, [Command::Hello, publish("K", "v")]);
    }
}
