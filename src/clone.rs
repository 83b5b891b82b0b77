//! The Clone pattern (§39–§46, CHP): the shared key-value map with its
//! bounds, the snapshot exchange, the server's update rules, and the §46
//! multithreaded client API ([`Client`], the C `clone` class).
//!
//! Every Clone model keeps the same things: a map of keys to the last
//! update of each, a sequence number, and the snapshot dialogue
//! (`ICANHAZ?` → entries → `KTHXBAI`). They live here once, generic over the
//! wire class ([`Entry`]: [`KvSimple`] for models 1–4, [`KvMsg`] for 5–6), so
//! each `clonesrvN`/`clonecliN` reads like its C original.
//!
//! ## Bounds (what a hostile peer can make a server hold)
//!
//! * [`KvMap`]: at most [`MAX_KEYS`] keys and [`MAX_MAP_BYTES`] of keys,
//!   values and properties. An update that would go past either is
//!   **refused**: not stored, not published, not given a sequence number
//!   (logged, rate-limited), so every client's map stays equal to the
//!   server's. Updates to existing keys and deletes are always accepted if
//!   they fit.
//! * Frames: servers make their sockets with [`MAX_FRAME`] as `MAXMSGSIZE`;
//!   a larger frame makes libzmq drop that peer's connection. Collectors
//!   queue at most [`COLLECTOR_HWM`] updates per client.
//! * Logs: every complaint about a peer goes through [`Warnings`] (at most
//!   [`WARNINGS_PER_SECOND`] lines a second, then one line with the number
//!   suppressed) and prints peer bytes through [`show`](crate::message::show).
//! * Snapshots: sent with `ROUTER_MANDATORY` and [`send_or_drop`](Message::send_or_drop)
//!   on a socket whose send HWM holds one full snapshot ([`SNAPSHOT_HWM`]);
//!   a client that does not read its snapshot gets the rest of it dropped
//!   (no `KTHXBAI`), so one connection can hold at most one snapshot's worth
//!   of memory in the server.
//!
//! ## Looking at a map from outside: `ZGUIDE_CLONE_DUMP`
//!
//! With the environment variable `ZGUIDE_CLONE_DUMP` set (to anything), every
//! Clone server and client prints its map when it stops on Ctrl-C, after the
//! C's own last lines: one `map: <key> = <value>` line per entry in key order
//! (through `show`, so bounded and escaped) and a last line
//! `map: N entries, sequence S, digest D`, where `D` is a 64-bit FNV-1a hash
//! over every key and value (full bytes, in key order). Two maps are equal
//! when their digests are; that is how the tests compare a client with its
//! server. Properties are not part of it: a server stores `ttl` as an
//! absolute time, its clients as sent.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::actor::{self, Actor, Pipe};
use crate::kvmsg::KvMsg;
use crate::kvsimple::{KvSimple, Malformed, MAX_KEY_BYTES};
use crate::mdp::protocol::clock_log;
use crate::message::show;
use crate::{helpers, Error, Message};

/// The snapshot request command (CHP `ICANHAZ`).
pub const ICANHAZ: &str = "ICANHAZ?";
/// The key of the message that ends a snapshot (CHP `KTHXBAI`).
pub const KTHXBAI: &str = "KTHXBAI";
/// The key of the server's heartbeat (CHP `HUGZ`, model 6).
pub const HUGZ: &str = "HUGZ";
/// A server that says nothing for this long is dead (`SERVER_TTL`, ms).
pub const SERVER_TTL_MS: u64 = 5000;
/// How many servers a [`Client`] talks to (`SERVER_MAX`).
pub const SERVER_MAX: usize = 2;
/// How often model 6 servers send HUGZ and models 5–6 flush expired keys.
pub const TICK_MS: u64 = 1000;

/// The most keys a map holds.
pub const MAX_KEYS: usize = 100_000;
/// The most bytes (keys + values + properties) a map holds: 32 MiB.
pub const MAX_MAP_BYTES: usize = 32 << 20;
/// The largest inbound frame a Clone server accepts (`MAXMSGSIZE`): 64 KiB.
pub const MAX_FRAME: i64 = 64 << 10;
/// The collector's receive HWM: updates queued per client before libzmq
/// stops reading from it (PUSH clients wait, PUB clients drop), so a client
/// that floods can park at most 100 updates (6.4 MiB of values) in the server.
pub const COLLECTOR_HWM: i32 = 100;
/// The snapshot socket's send HWM: one full snapshot and its `KTHXBAI`.
pub const SNAPSHOT_HWM: i32 = MAX_KEYS as i32 + 1;
/// How many complaints about peers [`Warnings`] logs per second.
pub const WARNINGS_PER_SECOND: u32 = 10;
/// The environment variable that asks for a map dump on exit.
pub const DUMP_ENV: &str = "ZGUIDE_CLONE_DUMP";

/// What the map needs to know about a wire class.
pub trait Entry: Clone {
    fn key(&self) -> &[u8];
    fn body(&self) -> &[u8];
    fn sequence(&self) -> i64;
    fn set_sequence(&mut self, sequence: i64);
    /// True when storing this entry removes its key (kvmsg's empty body).
    fn is_delete(&self) -> bool;
    /// The bytes the entry costs the map (key, body, properties).
    fn cost(&self) -> usize;
    fn to_message(&self) -> Message;
    fn from_message(msg: Message) -> Result<Self, Malformed>;
    /// The message that ends a snapshot: key `KTHXBAI`, this sequence.
    fn kthxbai(sequence: i64) -> Self;
    /// The server's step between publishing an update and storing it
    /// (kvmsg: `ttl` seconds become an absolute expiry). Default: nothing.
    fn stamp_expiry(&mut self, _now_ms: u64) {}
    /// When a stored entry expires (epoch ms); default never.
    fn expiry_ms(&self) -> Option<u64> {
        None
    }
    /// Turns a stored entry into the delete a server publishes on expiry.
    fn into_delete(self) -> Self;
}

impl Entry for KvSimple {
    fn key(&self) -> &[u8] {
        KvSimple::key(self)
    }
    fn body(&self) -> &[u8] {
        KvSimple::body(self)
    }
    fn sequence(&self) -> i64 {
        KvSimple::sequence(self)
    }
    fn set_sequence(&mut self, sequence: i64) {
        KvSimple::set_sequence(self, sequence)
    }
    /// kvsimple has no delete: an empty body is stored as a value.
    fn is_delete(&self) -> bool {
        false
    }
    fn cost(&self) -> usize {
        self.key().len() + self.body().len()
    }
    fn to_message(&self) -> Message {
        KvSimple::to_message(self)
    }
    fn from_message(msg: Message) -> Result<Self, Malformed> {
        KvSimple::from_message(msg)
    }
    fn kthxbai(sequence: i64) -> Self {
        KvSimple::with(KTHXBAI, sequence, "")
    }
    fn into_delete(mut self) -> Self {
        self.set_body("");
        self
    }
}

impl Entry for KvMsg {
    fn key(&self) -> &[u8] {
        KvMsg::key(self)
    }
    fn body(&self) -> &[u8] {
        KvMsg::body(self)
    }
    fn sequence(&self) -> i64 {
        KvMsg::sequence(self)
    }
    fn set_sequence(&mut self, sequence: i64) {
        KvMsg::set_sequence(self, sequence)
    }
    fn is_delete(&self) -> bool {
        self.body().is_empty()
    }
    fn cost(&self) -> usize {
        self.key().len() + self.body().len() + self.encode_props().len() + 16
    }
    fn to_message(&self) -> Message {
        KvMsg::to_message(self)
    }
    fn from_message(msg: Message) -> Result<Self, Malformed> {
        KvMsg::from_message(msg)
    }
    /// C sends the subtree with length 0: the last frame is empty.
    fn kthxbai(sequence: i64) -> Self {
        KvMsg::with(KTHXBAI, sequence, "")
    }
    fn stamp_expiry(&mut self, now_ms: u64) {
        KvMsg::stamp_expiry(self, now_ms)
    }
    fn expiry_ms(&self) -> Option<u64> {
        KvMsg::expiry_ms(self)
    }
    /// Differs from the C: the delete goes out without the client's UUID.
    /// It is the server's own update, and a passive `clonesrv6` must not
    /// mistake it for the client's update of that UUID (it would keep it on
    /// its pending list for ever and republish the stale delete on failover).
    fn into_delete(mut self) -> Self {
        self.set_body("");
        self.clear_uuid();
        self
    }
}

/// A key-value map with bounds. See the module docs.
#[derive(Clone, Debug)]
pub struct KvMap<T> {
    entries: BTreeMap<Vec<u8>, T>,
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
}

impl<T: Entry> Default for KvMap<T> {
    fn default() -> Self {
        KvMap::new()
    }
}

impl<T: Entry> KvMap<T> {
    /// An empty map with the default bounds ([`MAX_KEYS`], [`MAX_MAP_BYTES`]).
    pub fn new() -> KvMap<T> {
        KvMap::with_limits(MAX_KEYS, MAX_MAP_BYTES)
    }

    /// An empty map with other bounds.
    pub fn with_limits(max_keys: usize, max_bytes: usize) -> KvMap<T> {
        KvMap {
            entries: BTreeMap::new(),
            bytes: 0,
            max_keys,
            max_bytes,
        }
    }

    /// True when [`store`](KvMap::store) would take `entry`.
    pub fn admits(&self, entry: &T) -> bool {
        if entry.is_delete() {
            return true;
        }
        let old = self.entries.get(entry.key());
        let keys = self.entries.len() + usize::from(old.is_none());
        let bytes = self.bytes - old.map_or(0, Entry::cost) + entry.cost();
        keys <= self.max_keys && bytes <= self.max_bytes
    }

    /// Stores `entry` under its key, or deletes the key for a delete
    /// (`kvmsg_store`). Returns false, changing nothing, when the map is
    /// full (see [`admits`](KvMap::admits)).
    pub fn store(&mut self, entry: T) -> bool {
        if entry.is_delete() {
            self.remove(entry.key());
            return true;
        }
        if !self.admits(&entry) {
            return false;
        }
        self.bytes += entry.cost();
        if let Some(old) = self.entries.insert(entry.key().to_vec(), entry) {
            self.bytes -= old.cost();
        }
        true
    }

    pub fn get(&self, key: &[u8]) -> Option<&T> {
        self.entries.get(key)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<T> {
        let old = self.entries.remove(key)?;
        self.bytes -= old.cost();
        Some(old)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes held (as counted against [`MAX_MAP_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.values()
    }

    /// The entries whose key starts with `subtree` (bytewise), in key order.
    pub fn subtree<'a>(&'a self, subtree: &'a [u8]) -> impl Iterator<Item = &'a T> + 'a {
        self.entries
            .range(subtree.to_vec()..)
            .take_while(move |(key, _)| key.starts_with(subtree))
            .map(|(_, entry)| entry)
    }

    /// The keys whose stored expiry is at or before `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<Vec<u8>> {
        self.entries
            .iter()
            .filter(|(_, e)| e.expiry_ms().is_some_and(|at| at <= now_ms))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// FNV-1a (64 bit) over every key and value, in key order, each
    /// preceded by its length: equal maps, equal digests.
    pub fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in (bytes.len() as u64).to_be_bytes().iter().chain(bytes) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for entry in self.entries.values() {
            feed(entry.key());
            feed(entry.body());
        }
        hash
    }

    /// The dump text (see the module docs), ending in a newline.
    pub fn dump(&self, sequence: i64) -> String {
        let mut out = String::new();
        for entry in self.entries.values() {
            out.push_str(&format!(
                "map: {} = {}\n",
                show(entry.key()),
                show(entry.body())
            ));
        }
        out.push_str(&format!(
            "map: {} entries, sequence {sequence}, digest {:016x}\n",
            self.len(),
            self.digest()
        ));
        out
    }
}

/// Prints the map's dump on stdout if [`DUMP_ENV`] is set (programs call
/// this on their way out).
pub fn dump_on_exit<T: Entry>(map: &KvMap<T>, sequence: i64) {
    if std::env::var_os(DUMP_ENV).is_some() {
        print!("{}", map.dump(sequence));
    }
}

/// Rate-limited warnings about what peers send: at most `per_second` lines
/// a second (a [`log_limit::Window`](crate::log_limit::Window)); the rest are
/// counted and reported with the next line that gets through.
pub struct Warnings(crate::log_limit::Window);

impl Default for Warnings {
    fn default() -> Self {
        Warnings::new(WARNINGS_PER_SECOND)
    }
}

impl Warnings {
    pub fn new(per_second: u32) -> Warnings {
        Warnings(crate::log_limit::Window::new(
            per_second,
            Duration::from_secs(1),
        ))
    }

    /// Logs `what` as a warning unless this second's quota is spent.
    pub fn warn(&mut self, what: fmt::Arguments) {
        self.0.warn(what);
    }
}

/// Reads one update from `socket` if one is waiting: `Ok(None)` if there is
/// none or it was malformed (then it is logged through `warnings`).
pub fn try_recv<T: Entry>(
    socket: &zmq::Socket,
    warnings: &mut Warnings,
) -> Result<Option<T>, Error> {
    let Some(msg) = Message::try_recv(socket)? else {
        return Ok(None);
    };
    decode(msg, warnings)
}

/// Decodes `msg`, logging (rate-limited) and dropping it if malformed.
pub fn decode<T: Entry>(msg: Message, warnings: &mut Warnings) -> Result<Option<T>, Error> {
    let summary = msg.summary();
    match T::from_message(msg) {
        Ok(entry) => Ok(Some(entry)),
        Err(why) => {
            warnings.warn(format_args!("malformed update dropped ({why}): {summary}"));
            Ok(None)
        }
    }
}

// ------------------------------------------------------------- server side

/// Builds a server's snapshot ROUTER: bounded inbound frames, mandatory
/// routing and a send HWM of one whole snapshot (see the module docs).
pub fn snapshot_socket(context: &zmq::Context, endpoint: &str) -> Result<zmq::Socket, Error> {
    crate::socket::new(context, zmq::ROUTER)
        .max_message_size(MAX_FRAME)
        .router_mandatory()
        .send_hwm(SNAPSHOT_HWM)
        .bind(endpoint)
}

/// Gives a ROUTER made elsewhere (the Binary Star voter) the same options as
/// [`snapshot_socket`]; call it before any client connects.
pub fn configure_snapshot_socket(socket: &zmq::Socket) -> Result<(), Error> {
    socket.set_maxmsgsize(MAX_FRAME)?;
    socket.set_router_mandatory(true)?;
    socket.set_sndhwm(SNAPSHOT_HWM)?;
    Ok(())
}

/// A snapshot request: `[identity]["ICANHAZ?"]` or
/// `[identity]["ICANHAZ?"][subtree]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icanhaz {
    pub identity: Vec<u8>,
    /// Empty when the request had no subtree frame (models 2–3).
    pub subtree: Vec<u8>,
}

impl Icanhaz {
    /// Parses a request as read from the ROUTER. Differs from the C, which
    /// aborts (`E: bad request, aborting`) or reads the next message's frame
    /// as the subtree: anything else is an error the server logs and drops.
    pub fn parse(msg: Message) -> Result<Icanhaz, String> {
        let summary = msg.summary();
        let mut frames = msg.into_frames().into_iter();
        match (frames.next(), frames.next(), frames.next(), frames.next()) {
            (Some(identity), Some(command), subtree, None)
                if command == ICANHAZ.as_bytes()
                    && subtree.as_ref().map_or(0, Vec::len) <= MAX_KEY_BYTES =>
            {
                Ok(Icanhaz {
                    identity,
                    subtree: subtree.unwrap_or_default(),
                })
            }
            _ => Err(summary),
        }
    }
}

/// Serves one snapshot request waiting on the ROUTER `socket`, if any:
/// every entry of `map` under the request's subtree (all of them when
/// `use_subtree` is false, as in models 2–3), then `KTHXBAI` with
/// `sequence`. Returns the number of entries sent, or `None` when nothing
/// was sent (no request, a bad one — logged —, or a client that stopped
/// reading — logged, the rest dropped).
pub fn serve_snapshot<T: Entry>(
    socket: &zmq::Socket,
    map: &KvMap<T>,
    sequence: i64,
    use_subtree: bool,
    warnings: &mut Warnings,
) -> Result<Option<usize>, Error> {
    let Some(msg) = Message::try_recv(socket)? else {
        return Ok(None);
    };
    let request = match Icanhaz::parse(msg) {
        Ok(request) => request,
        Err(summary) => {
            warnings.warn(format_args!("E: bad request, dropped: {summary}"));
            return Ok(None);
        }
    };
    let subtree: &[u8] = if use_subtree { &request.subtree } else { b"" };
    let mut sent = 0;
    for entry in map.subtree(subtree) {
        let mut msg = entry.to_message();
        msg.push(request.identity.clone());
        if !msg.send_or_drop(socket)? {
            warnings.warn(format_args!(
                "snapshot to {} cut after {sent} entries: client not reading",
                show(&request.identity)
            ));
            return Ok(None);
        }
        sent += 1;
    }
    let mut end = T::kthxbai(sequence).to_message();
    end.push(request.identity);
    end.send_or_drop(socket)?;
    Ok(Some(sent))
}

/// The server's rule for an update from a client (models 3–6): the next
/// sequence number, publish it as received, then store it with its
/// expiry stamped. Returns the new sequence, or `None` if the map is full
/// (logged through `warnings`; nothing published, sequence unchanged).
pub fn publish_update<T: Entry>(
    map: &mut KvMap<T>,
    sequence: &mut i64,
    publisher: &zmq::Socket,
    mut entry: T,
    warnings: &mut Warnings,
) -> Result<Option<i64>, Error> {
    if !map.admits(&entry) {
        warnings.warn(format_args!(
            "map full ({} keys, {} bytes): update of {} refused",
            map.len(),
            map.bytes(),
            show(entry.key())
        ));
        return Ok(None);
    }
    *sequence += 1;
    entry.set_sequence(*sequence);
    // PUB never blocks: a subscriber past its HWM misses the update.
    entry.to_message().send_or_drop(publisher)?;
    entry.stamp_expiry(helpers::clock_ms());
    map.store(entry);
    Ok(Some(*sequence))
}

/// Deletes every expired entry and publishes each delete with the next
/// sequence number (`s_flush_ttl`). Returns the sequences used. Differs from
/// the C: the keys are collected first and deleted after the scan, not while
/// iterating the hash table.
pub fn flush_expired<T: Entry>(
    map: &mut KvMap<T>,
    sequence: &mut i64,
    publisher: &zmq::Socket,
) -> Result<Vec<i64>, Error> {
    let mut published = Vec::new();
    for key in map.expired(helpers::clock_ms()) {
        let Some(entry) = map.remove(&key) else {
            continue;
        };
        *sequence += 1;
        let mut delete = entry.into_delete();
        delete.set_sequence(*sequence);
        delete.to_message().send_or_drop(publisher)?;
        published.push(*sequence);
    }
    Ok(published)
}

// ------------------------------------------------------------- client side

/// Sends a snapshot request (`ICANHAZ?`, plus the subtree frame when
/// `subtree` is `Some`) and stores the entries that come back into `map`
/// until `KTHXBAI`; returns its sequence. Waits as long as it takes (Ctrl-C:
/// `Error::Interrupted`), as the C clients do. Malformed entries are logged
/// and skipped; entries that do not fit the map are logged and skipped.
pub fn get_snapshot<T: Entry>(
    snapshot: &zmq::Socket,
    subtree: Option<&str>,
    map: &mut KvMap<T>,
    warnings: &mut Warnings,
) -> Result<i64, Error> {
    let mut request = Message::from_frames([ICANHAZ]);
    if let Some(subtree) = subtree {
        request.append(subtree);
    }
    request.send(snapshot)?;
    loop {
        let Some(entry) = decode::<T>(Message::recv(snapshot)?, warnings)? else {
            continue;
        };
        if entry.key() == KTHXBAI.as_bytes() {
            return Ok(entry.sequence());
        }
        store_or_warn(map, entry, warnings);
    }
}

/// Applies an update if it is newer than `last` (every client's rule:
/// "discard out-of-sequence updates, including heartbeats"); returns true
/// when it was applied.
pub fn apply_update<T: Entry>(
    map: &mut KvMap<T>,
    last: &mut i64,
    entry: T,
    warnings: &mut Warnings,
) -> bool {
    if entry.sequence() <= *last || entry.key() == HUGZ.as_bytes() {
        return false;
    }
    *last = entry.sequence();
    store_or_warn(map, entry, warnings);
    true
}

fn store_or_warn<T: Entry>(map: &mut KvMap<T>, entry: T, warnings: &mut Warnings) {
    let key = show(entry.key());
    if !map.store(entry) {
        warnings.warn(format_args!("map full: update of {key} not stored"));
    }
}

/// The number in an environment variable that tests use to shape a client's
/// workload (e.g. `ZGUIDE_UPDATES`), or `None` when unset.
pub fn env_limit(name: &str) -> Option<u64> {
    std::env::var_os(name).map(|_| helpers::env_count(name, u64::MAX))
}

// ------------------------------------------------------ §46 the client API

/// The Clone client API of §46 (the C `clone_t`): the application's side of
/// a pipe to an agent thread that talks to up to two servers, keeps the
/// map, and fails over when the current server goes silent.
///
/// ```no_run
/// # fn main() -> Result<(), zguide::Error> {
/// let context = zmq::Context::new();
/// let clone = zguide::clone::Client::new(&context)?;
/// clone.subtree("/client/")?;
/// clone.connect("tcp://localhost", "5556")?;
/// clone.connect("tcp://localhost", "5566")?;
/// clone.set("/client/1", "42", 0)?;
/// let value = clone.get("/client/1")?;
/// # Ok(()) }
/// ```
///
/// The agent runs until the `Client` is dropped (`$TERM`), not until
/// Ctrl-C, so an application can still ask it for its map on the way out.
///
/// Differs from the C agent: it talks to each server's collector through an
/// XPUB of its own (the C has one PUB connected to all), so it hears when
/// the collector has subscribed; updates set before the current server's
/// collector listens are held back (at most 1000) instead of vanishing into
/// a PUB that is not connected yet. Snapshot leftovers are dropped before a
/// new request, `HUGZ` never counts as an update, and inbound frames are
/// limited to 64 KiB.
pub struct Client {
    actor: Actor,
}

/// How long the application waits for the agent to answer `GET`/`DUMP`.
const AGENT_REPLY_MS: i64 = 5000;

impl Client {
    /// Starts the agent (`clone_new`).
    pub fn new(context: &zmq::Context) -> Result<Client, Error> {
        Client::start(context, Duration::from_millis(SERVER_TTL_MS))
    }

    /// Starts the agent with a server's silence tolerated for `server_ttl`
    /// (tests use a short one).
    fn start(context: &zmq::Context, server_ttl: Duration) -> Result<Client, Error> {
        let actor = Actor::new(context, move |pipe| {
            if let Err(e) = Agent::run(pipe, server_ttl) {
                log::error!("clone agent: {e}");
            }
        })?;
        Ok(Client { actor })
    }

    /// Sets the subtree for snapshots and updates; call it before
    /// [`connect`](Client::connect) (`clone_subtree`).
    pub fn subtree(&self, subtree: &str) -> Result<(), Error> {
        self.actor.send(Message::from_frames(["SUBTREE", subtree]))
    }

    /// Adds a server: snapshots at `address:service`, updates from port+1,
    /// our updates to port+2 (`clone_connect`); at most [`SERVER_MAX`].
    pub fn connect(&self, address: &str, service: &str) -> Result<(), Error> {
        self.actor
            .send(Message::from_frames(["CONNECT", address, service]))
    }

    /// Sets `key` to `value` everywhere, expiring after `ttl` seconds (0:
    /// never) (`clone_set`). An empty value deletes the key.
    pub fn set(&self, key: &str, value: &str, ttl: i64) -> Result<(), Error> {
        self.actor
            .send(Message::from_frames(["SET", key, value, &ttl.to_string()]))
    }

    /// The value of `key`, empty if there is none (`clone_get`).
    pub fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        self.request(Message::from_frames(["GET", key]))
    }

    /// The map's dump text (see the module docs); an addition to the C API.
    pub fn dump(&self) -> Result<String, Error> {
        let text = self.request(Message::from_frames(["DUMP"]))?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Sends a command and waits for the agent's one-frame answer. The wait
    /// ignores Ctrl-C (the agent answers at once), so a program may still
    /// ask on its way out.
    fn request(&self, command: Message) -> Result<Vec<u8>, Error> {
        self.actor.send(command)?;
        let pipe = self.actor.socket();
        let mut items = [pipe.as_poll_item(zmq::POLLIN)];
        let deadline = Instant::now() + Duration::from_millis(AGENT_REPLY_MS as u64);
        while !items[0].is_readable() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            match zmq::poll(&mut items, crate::interrupt::millis(left)) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut reply = Message::from_frames(pipe.recv_multipart(0)?);
        Ok(reply.pop().unwrap_or_default())
    }
}

/// One server the agent knows.
struct Server {
    /// `address:port` as the C logs it.
    name: String,
    snapshot: zmq::Socket,
    subscriber: zmq::Socket,
    /// Our updates to its collector: an XPUB, so we hear its subscription.
    publisher: zmq::Socket,
    /// True once its collector has subscribed (before that, our updates
    /// would be dropped: the slow joiner).
    listening: bool,
    /// When the server counts as dead unless it speaks.
    expiry: Instant,
    /// Snapshot requests sent since it last spoke (at most 2).
    requests: u32,
}

/// The agent's states (protocols.md §8.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before asking the current server for a snapshot.
    Initial,
    /// Reading the snapshot.
    Syncing,
    /// Reading updates.
    Active,
}

/// The agent thread (`clone_agent`).
struct Agent<'p> {
    pipe: &'p Pipe,
    map: KvMap<KvMsg>,
    subtree: String,
    servers: Vec<Server>,
    state: State,
    current: usize,
    /// The last update applied.
    sequence: i64,
    /// Updates set while the current server's collector was not listening
    /// yet, held back (at most [`MAX_HELD`]).
    held: Vec<KvMsg>,
    warnings: Warnings,
    /// How long a server may be silent before we fail over
    /// ([`SERVER_TTL_MS`]).
    server_ttl: Duration,
}

/// Turns of every clone agent's loop in this process, for the test that an
/// idle agent sleeps.
#[cfg(test)]
static AGENT_TURNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The most updates the agent holds back for a server not yet listening.
const MAX_HELD: usize = 1000;

impl<'p> Agent<'p> {
    fn run(pipe: &'p Pipe, server_ttl: Duration) -> Result<(), Error> {
        let mut agent = Agent {
            pipe,
            map: KvMap::new(),
            subtree: String::new(),
            servers: Vec::new(),
            state: State::Initial,
            current: 0,
            sequence: 0,
            held: Vec::new(),
            warnings: Warnings::default(),
            server_ttl,
        };
        pipe.signal(0)?;
        agent.serve()
    }

    fn serve(&mut self) -> Result<(), Error> {
        loop {
            #[cfg(test)]
            AGENT_TURNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut timeout = -1;
            if let Some(server) = self.servers.get_mut(self.current) {
                if self.state == State::Initial {
                    // Ask the server for a snapshot, at most twice in a row.
                    clock_log(&format!("I: waiting for server at {}...", server.name));
                    if server.requests < 2 {
                        // Leftovers of an earlier request would pass for
                        // this snapshot: drop them first.
                        while Message::try_recv(&server.snapshot)?.is_some() {}
                        let request = Message::from_frames([ICANHAZ, self.subtree.as_str()]);
                        request.send_or_drop(&server.snapshot)?;
                        server.requests += 1;
                    }
                    server.expiry = Instant::now() + self.server_ttl;
                    self.state = State::Syncing;
                }
                timeout = crate::interrupt::millis_until(server.expiry);
            }
            // Poll without the Ctrl-C wake-up: the agent ends on $TERM only.
            let (pipe_ready, server_ready, publishers_ready) = {
                let mut items = vec![self.pipe.socket().as_poll_item(zmq::POLLIN)];
                if let Some(server) = self.servers.get(self.current) {
                    let socket = match self.state {
                        State::Active => &server.subscriber,
                        _ => &server.snapshot,
                    };
                    items.push(socket.as_poll_item(zmq::POLLIN));
                }
                let first_publisher = items.len();
                items.extend(
                    self.servers
                        .iter()
                        .map(|s| s.publisher.as_poll_item(zmq::POLLIN)),
                );
                match zmq::poll(&mut items, timeout) {
                    Ok(_) => {}
                    Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                (
                    items[0].is_readable(),
                    first_publisher == 2 && items[1].is_readable(),
                    items[first_publisher..].iter().any(|i| i.is_readable()),
                )
            };
            if publishers_ready {
                self.subscriptions()?;
            }
            if pipe_ready {
                let command = Message::recv_now(self.pipe.socket())?;
                if actor::is_term(&command) {
                    return Ok(());
                }
                self.control_message(command)?;
            } else if server_ready {
                self.server_message()?;
            } else if self
                .servers
                .get(self.current)
                .is_some_and(|server| Instant::now() >= server.expiry)
            {
                // The server has died: fail over to the next.
                clock_log(&format!(
                    "I: server at {} didn't give HUGZ",
                    self.servers[self.current].name
                ));
                self.current = (self.current + 1) % self.servers.len();
                self.state = State::Initial;
                self.release_held()?;
            }
        }
    }

    /// Reads what the XPUBs tell us: a subscription (`\x01…`) means that
    /// server's collector listens. Once the current server's does, held
    /// updates go out.
    fn subscriptions(&mut self) -> Result<(), Error> {
        for server in &mut self.servers {
            while let Some(msg) = Message::try_recv(&server.publisher)? {
                if msg.first().is_some_and(|f| f.first() == Some(&1)) {
                    server.listening = true;
                }
            }
        }
        self.release_held()
    }

    /// Sends the held updates if the current server's collector listens.
    fn release_held(&mut self) -> Result<(), Error> {
        if self.servers.get(self.current).is_some_and(|s| s.listening) {
            for update in std::mem::take(&mut self.held) {
                self.publish(&update)?;
            }
        }
        Ok(())
    }

    /// Sends an update to every server whose collector listens (`PUB`
    /// semantics: never blocks; a server past its HWM misses it).
    fn publish(&self, update: &KvMsg) -> Result<(), Error> {
        for server in self.servers.iter().filter(|s| s.listening) {
            update.to_message().send_or_drop(&server.publisher)?;
        }
        Ok(())
    }

    /// `SUBTREE`, `CONNECT`, `SET`, `GET`, and our `DUMP`.
    fn control_message(&mut self, command: Message) -> Result<(), Error> {
        let frames = command.into_frames();
        let text =
            |n: usize| String::from_utf8_lossy(frames.get(n).map_or(&[][..], |f| f)).into_owned();
        match frames.first().map(Vec::as_slice) {
            Some(b"SUBTREE") => self.subtree = text(1),
            Some(b"CONNECT") => self.connect(&text(1), &text(2))?,
            Some(b"SET") => {
                let mut update = KvMsg::with(text(1), 0, text(2));
                update.set_uuid();
                if update.set_prop("ttl", &text(3)).is_err() {
                    log::warn!(
                        "SET {}: bad ttl {}",
                        show(update.key()),
                        show(text(3).as_bytes())
                    );
                    return Ok(());
                }
                // Differs from the C: until the current server's collector
                // has subscribed, a PUB would drop the update (the slow
                // joiner), so it is held back until then.
                if self.servers.get(self.current).is_some_and(|s| s.listening) {
                    self.publish(&update)?;
                } else if self.held.len() < MAX_HELD {
                    self.held.push(update.clone());
                } else {
                    log::warn!("clone agent: not in sync yet, update dropped");
                    return Ok(());
                }
                store_or_warn(&mut self.map, update, &mut self.warnings);
            }
            Some(b"GET") => {
                let value = self
                    .map
                    .get(text(1).as_bytes())
                    .map_or(Vec::new(), |e| e.body().to_vec());
                self.pipe.send(Message::from_frames([value]))?;
            }
            Some(b"DUMP") => {
                let dump = self.map.dump(self.sequence);
                self.pipe.send(Message::from_frames([dump]))?;
            }
            _ => log::warn!("clone agent: unknown command {}", command_summary(&frames)),
        }
        Ok(())
    }

    fn connect(&mut self, address: &str, service: &str) -> Result<(), Error> {
        if self.servers.len() >= SERVER_MAX {
            clock_log(&format!("E: too many servers (max. {SERVER_MAX})"));
            return Ok(());
        }
        let port = helpers::atoi(service.as_bytes());
        if !(1..=65533).contains(&port) {
            log::warn!("clone agent: bad port {}", show(service.as_bytes()));
            return Ok(());
        }
        let name = format!("{address}:{port}");
        clock_log(&format!("I: adding server {name}..."));
        let context = self.pipe.context();
        let snapshot = crate::socket::new(context, zmq::DEALER)
            .linger(0)
            .max_message_size(MAX_FRAME)
            .connect(&name)?;
        let subscriber = crate::socket::new(context, zmq::SUB)
            .linger(0)
            .max_message_size(MAX_FRAME)
            .subscribe(self.subtree.as_str())
            .subscribe(HUGZ) // HUGZ reaches us whatever the subtree
            .connect(&format!("{address}:{}", port + 1))?;
        // We broadcast updates to all known servers (one XPUB each, where
        // the C has one PUB connected to all, so we know who listens).
        let publisher = crate::socket::new(context, zmq::XPUB)
            .linger(0)
            .connect(&format!("{address}:{}", port + 2))?;
        self.servers.push(Server {
            name,
            snapshot,
            subscriber,
            publisher,
            listening: false,
            expiry: Instant::now() + self.server_ttl,
            requests: 0,
        });
        Ok(())
    }

    /// A message from the current server: snapshot entries while syncing,
    /// updates and HUGZ while active. Anything proves the server alive.
    fn server_message(&mut self) -> Result<(), Error> {
        let server = &mut self.servers[self.current];
        let socket = match self.state {
            State::Active => &server.subscriber,
            _ => &server.snapshot,
        };
        let msg = Message::recv_now(socket)?;
        server.expiry = Instant::now() + self.server_ttl;
        let Some(update) = decode::<KvMsg>(msg, &mut self.warnings)? else {
            return Ok(());
        };
        let name = server.name.clone();
        if self.state == State::Syncing {
            server.requests = 0;
            if update.key() == KTHXBAI.as_bytes() {
                self.sequence = update.sequence();
                self.state = State::Active;
                clock_log(&format!(
                    "I: received from {name} snapshot={}",
                    self.sequence
                ));
            } else {
                store_or_warn(&mut self.map, update, &mut self.warnings);
            }
        } else if apply_update(
            &mut self.map,
            &mut self.sequence,
            update,
            &mut self.warnings,
        ) {
            clock_log(&format!("I: received from {name} update={}", self.sequence));
        }
        Ok(())
    }
}

fn command_summary(frames: &[Vec<u8>]) -> String {
    Message::from_frames(frames.iter().cloned()).summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, seq: i64, body: &str) -> KvMsg {
        KvMsg::with(key, seq, body)
    }

    #[test]
    fn the_map_stores_deletes_and_counts_bytes() {
        let mut map = KvMap::new();
        assert!(map.store(kv("a", 1, "xx")));
        assert!(map.store(kv("b", 2, "y")));
        assert!(map.store(kv("a", 3, "zzz")));
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(b"a").unwrap().body(), b"zzz");
        assert_eq!(map.bytes(), (1 + 3 + 16) + (1 + 1 + 16));
        assert!(map.store(kv("a", 4, "")), "empty body deletes");
        assert_eq!(map.len(), 1);
        assert_eq!(map.bytes(), 1 + 1 + 16);
        // kvsimple keeps an empty body as a value.
        let mut simple = KvMap::new();
        simple.store(KvSimple::with("k", 1, ""));
        assert_eq!(simple.len(), 1);
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_takes_deletes_and_updates() {
        let mut map = KvMap::with_limits(2, 1000);
        assert!(map.store(kv("a", 1, "1")));
        assert!(map.store(kv("b", 2, "2")));
        assert!(!map.admits(&kv("c", 3, "3")));
        assert!(!map.store(kv("c", 3, "3")));
        assert!(map.store(kv("a", 4, "new")), "existing key");
        assert!(map.store(kv("b", 5, "")), "delete");
        assert!(map.store(kv("c", 6, "3")), "room again");
        let mut small = KvMap::with_limits(10, 40);
        assert!(small.store(kv("a", 1, "1234567890")));
        assert!(!small.store(kv("b", 1, "1234567890")), "byte bound");
        assert_eq!(small.len(), 1);
    }

    #[test]
    fn subtrees_are_prefixes_and_digests_compare_maps() {
        let mut map = KvMap::new();
        for key in ["/client/1", "/client/2", "/clientele", "/other/1", "/"] {
            map.store(kv(key, 1, "v"));
        }
        let keys: Vec<&[u8]> = map.subtree(b"/client/").map(|e| e.key()).collect();
        assert_eq!(keys, [&b"/client/1"[..], b"/client/2"]);
        assert_eq!(map.subtree(b"").count(), 5);
        let mut other = KvMap::new();
        for key in ["/other/1", "/client/2", "/", "/clientele", "/client/1"] {
            other.store(kv(key, 9, "v"));
        }
        assert_eq!(
            map.digest(),
            other.digest(),
            "order and sequence do not count"
        );
        other.store(kv("/", 10, "w"));
        assert_ne!(map.digest(), other.digest());
        let dump = map.dump(7);
        assert!(dump.ends_with(&format!(
            "map: 5 entries, sequence 7, digest {:016x}\n",
            map.digest()
        )));
        assert!(dump.contains("map: /client/1 = v\n"));
    }

    #[test]
    fn expired_entries_are_found_and_ttl_zero_never_expires() {
        let mut map = KvMap::new();
        let mut ephemeral = kv("e", 1, "v");
        ephemeral.set_prop("ttl", "2").unwrap();
        ephemeral.stamp_expiry(10_000);
        map.store(ephemeral);
        let mut forever = kv("f", 2, "v");
        forever.set_prop("ttl", "0").unwrap();
        forever.stamp_expiry(10_000);
        map.store(forever);
        map.store(kv("g", 3, "v"));
        assert!(map.expired(11_999).is_empty());
        assert_eq!(map.expired(12_000), [b"e".to_vec()]);
        assert_eq!(map.expired(u64::MAX), [b"e".to_vec()]);
    }

    #[test]
    fn icanhaz_requests_parse_with_or_without_subtree() {
        let parse = |parts: &[&[u8]]| {
            Icanhaz::parse(Message::from_frames(parts.iter().map(|p| p.to_vec())))
        };
        assert_eq!(
            parse(&[b"id", b"ICANHAZ?", b"/client/"]),
            Ok(Icanhaz {
                identity: b"id".to_vec(),
                subtree: b"/client/".to_vec()
            })
        );
        assert_eq!(parse(&[b"id", b"ICANHAZ?"]).unwrap().subtree, b"");
        for bad in [
            &[&b"id"[..], b"ICANHAZ"][..],
            &[b"id"],
            &[b"id", b"ICANHAZ?", b"", b"x"],
            &[b"id", b"ICANHAZ?", &[b'x'; 256]],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clients_apply_only_newer_updates_and_never_hugz() {
        let mut map = KvMap::new();
        let mut last = 5;
        let mut warnings = Warnings::default();
        assert!(!apply_update(
            &mut map,
            &mut last,
            kv("a", 5, "old"),
            &mut warnings
        ));
        assert!(apply_update(
            &mut map,
            &mut last,
            kv("a", 6, "new"),
            &mut warnings
        ));
        assert!(!apply_update(
            &mut map,
            &mut last,
            kv(HUGZ, 9, ""),
            &mut warnings
        ));
        assert_eq!((last, map.len()), (6, 1));
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut warnings = Warnings::new(3);
        for n in 0..100 {
            warnings.warn(format_args!("{n}"));
        }
        assert_eq!(warnings.0.take_held_back(), 97);
    }

    /// The agent over inproc: a fake server answers the snapshot, publishes
    /// an update and HUGZ; SET reaches the fake collector; GET and DUMP answer.
    #[test]
    fn the_client_api_syncs_updates_sets_and_gets() {
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).unwrap();
        router.bind("inproc://clone-test:5556").unwrap();
        let publisher = context.socket(zmq::PUB).unwrap();
        publisher.bind("inproc://clone-test:5557").unwrap();
        let collector = context.socket(zmq::SUB).unwrap();
        collector.set_subscribe(b"").unwrap();
        collector.bind("inproc://clone-test:5558").unwrap();
        router.set_rcvtimeo(5000).unwrap();
        collector.set_rcvtimeo(5000).unwrap();

        let clone = Client::new(&context).unwrap();
        clone.subtree("/t/").unwrap();
        clone.connect("inproc://clone-test", "5556").unwrap();
        let request = router.recv_multipart(0).unwrap();
        assert_eq!(&request[1..], [b"ICANHAZ?".to_vec(), b"/t/".to_vec()]);
        let id = request[0].clone();
        let mut entry = kv("/t/a", 3, "A").to_message();
        entry.push(id.clone());
        entry.send(&router).unwrap();
        let mut end = KvMsg::kthxbai(3).to_message();
        end.push(id);
        end.send(&router).unwrap();
        // Updates flow once the subscription is in: publish until one lands.
        let deadline = Instant::now() + Duration::from_secs(5);
        while clone.get("/t/b").unwrap().is_empty() && Instant::now() < deadline {
            kv(HUGZ, 3, "").to_message().send(&publisher).unwrap();
            kv("/t/b", 4, "B").to_message().send(&publisher).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(clone.get("/t/a").unwrap(), b"A");
        assert_eq!(clone.get("/t/b").unwrap(), b"B");
        assert_eq!(clone.get("/t/none").unwrap(), b"");
        // SET is published with a UUID and the ttl, and stored locally.
        let deadline = Instant::now() + Duration::from_secs(5);
        let set = loop {
            clone.set("/t/c", "C", 7).unwrap();
            if let Ok(frames) = collector.recv_multipart(zmq::DONTWAIT) {
                break KvMsg::from_message(Message::from_frames(frames)).unwrap();
            }
            assert!(Instant::now() < deadline, "no SET reached the collector");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            (set.key(), set.body(), set.prop("ttl")),
            (&b"/t/c"[..], &b"C"[..], "7")
        );
        assert!(set.uuid().is_some());
        assert_eq!(clone.get("/t/c").unwrap(), b"C");
        let dump = clone.dump().unwrap();
        assert!(
            dump.contains("map: 3 entries, sequence 4, digest"),
            "{dump}"
        );
    }

    /// kvsimple through the map's trait: its fields, its cost, its frames,
    /// KTHXBAI, a "delete" that is an empty value, and no expiry.
    #[test]
    fn kvsimple_entries_through_the_trait() {
        let mut entry = KvSimple::with("key", 3, "body");
        assert_eq!(
            (Entry::key(&entry), Entry::body(&entry)),
            (&b"key"[..], &b"body"[..])
        );
        assert_eq!(Entry::sequence(&entry), 3);
        Entry::set_sequence(&mut entry, -4);
        assert_eq!(Entry::sequence(&entry), -4);
        assert_eq!(Entry::cost(&entry), 3 + 4);
        let frames = Entry::to_message(&entry);
        assert_eq!(frames.len(), 3);
        assert_eq!(<KvSimple as Entry>::from_message(frames), Ok(entry.clone()));
        let end = <KvSimple as Entry>::kthxbai(9);
        assert_eq!((end.key(), end.sequence()), (KTHXBAI.as_bytes(), 9));
        assert_eq!(Entry::expiry_ms(&entry), None);
        let mut map = KvMap::new();
        map.store(entry.clone());
        assert!(map.expired(u64::MAX).is_empty(), "kvsimple never expires");
        let gone = entry.into_delete();
        assert_eq!((gone.key(), gone.body()), (&b"key"[..], &b""[..]));
    }

    /// The snapshot ROUTER: frames up to 64 KiB come in, a larger one drops
    /// the sender; its send HWM holds a whole snapshot and its KTHXBAI.
    #[test]
    fn the_snapshot_socket_takes_frames_up_to_64_kib() {
        let context = zmq::Context::new();
        let dir = crate::test_support::TempDir::new("clone-snapshot");
        let endpoint = format!("ipc://{}/snapshot", dir.path().display());
        let router = snapshot_socket(&context, &endpoint).unwrap();
        assert_eq!(router.get_sndhwm().unwrap(), MAX_KEYS as i32 + 1);
        router.set_rcvtimeo(5000).unwrap();
        let client = |size: usize| {
            let dealer = context.socket(zmq::DEALER).unwrap();
            dealer.set_linger(0).unwrap();
            dealer.connect(&endpoint).unwrap();
            dealer.send(vec![b'x'; size], 0).unwrap();
            dealer
        };
        let _over = client((64 << 10) + 1);
        let _fits = client(64 << 10);
        let frames = router.recv_multipart(0).expect("the 64 KiB frame");
        assert_eq!(frames[1].len(), 64 << 10);
        router.set_rcvtimeo(300).unwrap();
        assert!(
            router.recv_multipart(0).is_err(),
            "the larger frame came in"
        );
        let voter = context.socket(zmq::ROUTER).unwrap();
        configure_snapshot_socket(&voter).unwrap();
        assert_eq!(voter.get_sndhwm().unwrap(), MAX_KEYS as i32 + 1);
        assert_eq!(voter.get_maxmsgsize().unwrap(), 64 << 10);
    }

    /// kvmsg through the trait: its sequence and frames, the ttl stamped as
    /// an absolute expiry, and a delete without the client's UUID.
    #[test]
    fn kvmsg_entries_through_the_trait() {
        let mut entry = kv("k", 1, "v");
        entry.set_uuid();
        entry.set_prop("ttl", "30").unwrap();
        Entry::set_sequence(&mut entry, 7);
        assert_eq!(KvMsg::sequence(&entry), 7);
        assert_eq!(Entry::to_message(&entry), entry.to_message());
        assert_eq!(Entry::to_message(&entry).len(), 5);
        Entry::stamp_expiry(&mut entry, 1_000);
        assert_eq!(Entry::expiry_ms(&entry), Some(31_000));
        let delete = Entry::into_delete(entry);
        assert_eq!(
            (delete.key(), delete.body(), delete.uuid()),
            (&b"k"[..], &b""[..], None)
        );
    }

    #[test]
    fn the_map_lists_clears_and_takes_a_same_size_rewrite_when_full() {
        let (a, b) = (kv("a", 1, "xx"), kv("b", 2, "yy"));
        let mut map = KvMap::with_limits(2, a.cost() + b.cost());
        assert!(map.is_empty());
        assert!(map.store(a) && map.store(b));
        assert!(!map.is_empty());
        let keys: Vec<&[u8]> = map.iter().map(|e| e.key()).collect();
        assert_eq!(keys, [&b"a"[..], &b"b"[..]]);
        // Full to the byte: a rewrite of the same size still fits, a
        // larger one does not.
        assert!(map.admits(&kv("a", 3, "zz")));
        assert!(!map.admits(&kv("a", 3, "zzz")));
        map.clear();
        assert!(map.is_empty() && map.bytes() == 0 && map.iter().next().is_none());
    }

    /// The server's snapshot and update rules over real sockets.
    #[test]
    fn snapshots_and_updates_over_sockets() {
        let context = zmq::Context::new();
        let snapshot = snapshot_socket(&context, "inproc://clone-snapshot-test").unwrap();
        let client = context.socket(zmq::DEALER).unwrap();
        client.connect("inproc://clone-snapshot-test").unwrap();
        let publisher = context.socket(zmq::PUB).unwrap();
        publisher.bind("inproc://clone-updates-test").unwrap();
        let subscriber = context.socket(zmq::SUB).unwrap();
        subscriber.set_subscribe(b"").unwrap();
        subscriber.connect("inproc://clone-updates-test").unwrap();
        let mut warnings = Warnings::default();
        let mut map = KvMap::with_limits(2, 1 << 20);
        let mut sequence = 0;
        for (key, body) in [("/a/1", "x"), ("/b/1", "y")] {
            let published = publish_update(
                &mut map,
                &mut sequence,
                &publisher,
                kv(key, 0, body),
                &mut warnings,
            );
            assert_eq!(published.unwrap(), Some(sequence));
        }
        assert_eq!(sequence, 2);
        // Full (two keys): refused, not published, the sequence unchanged.
        let refused = publish_update(
            &mut map,
            &mut sequence,
            &publisher,
            kv("/c", 0, "z"),
            &mut warnings,
        );
        assert_eq!((refused.unwrap(), sequence), (None, 2));
        let mut items = [subscriber.as_poll_item(zmq::POLLIN)];
        for want in [("/a/1", 1), ("/b/1", 2)] {
            zmq::poll(&mut items, 5000).unwrap();
            let update = KvMsg::from_message(Message::recv_now(&subscriber).unwrap()).unwrap();
            assert_eq!(
                (update.key(), update.sequence()),
                (want.0.as_bytes(), want.1)
            );
        }
        assert!(
            Message::try_recv(&subscriber).unwrap().is_none(),
            "the refused one"
        );

        assert_eq!(
            serve_snapshot(&snapshot, &map, sequence, true, &mut warnings).unwrap(),
            None
        );
        Message::from_frames([ICANHAZ, "/b"]).send(&client).unwrap();
        let mut items = [snapshot.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, 5000).unwrap();
        assert_eq!(
            serve_snapshot(&snapshot, &map, sequence, true, &mut warnings).unwrap(),
            Some(1)
        );
        let mut items = [client.as_poll_item(zmq::POLLIN)];
        let mut got = Vec::new();
        loop {
            zmq::poll(&mut items, 5000).unwrap();
            let entry = KvMsg::from_message(Message::recv_now(&client).unwrap()).unwrap();
            got.push((entry.key().to_vec(), entry.sequence()));
            if entry.key() == KTHXBAI.as_bytes() {
                break;
            }
        }
        assert_eq!(
            got,
            [(b"/b/1".to_vec(), 2), (KTHXBAI.as_bytes().to_vec(), 2)]
        );
        assert!(try_recv::<KvMsg>(&subscriber, &mut warnings)
            .unwrap()
            .is_none());
        // A rewrite of a key fits the full map: published as sequence 3.
        let rewrite = publish_update(
            &mut map,
            &mut sequence,
            &publisher,
            kv("/a/1", 0, "w"),
            &mut warnings,
        );
        assert_eq!(rewrite.unwrap(), Some(3));
        let mut items = [subscriber.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, 5000).unwrap();
        let received = try_recv::<KvMsg>(&subscriber, &mut warnings)
            .unwrap()
            .expect("the rewrite");
        assert_eq!((received.body(), received.sequence()), (&b"w"[..], 3));
        assert_eq!(map.get(b"/a/1").unwrap().body(), b"w");
    }

    /// Waits up to `ms` for a message on `socket`.
    fn recv_within(socket: &zmq::Socket, ms: i64) -> Option<Vec<Vec<u8>>> {
        (socket.poll(zmq::POLLIN, ms).unwrap() > 0).then(|| socket.recv_multipart(0).unwrap())
    }

    #[test]
    fn flush_expired_deletes_and_publishes_each_expired_entry_with_the_next_sequence() {
        let context = zmq::Context::new();
        let publisher = context.socket(zmq::PUB).unwrap();
        publisher.bind("inproc://clone-flush-test").unwrap();
        let subscriber = context.socket(zmq::SUB).unwrap();
        subscriber.set_subscribe(b"").unwrap();
        subscriber.connect("inproc://clone-flush-test").unwrap();
        let mut map = KvMap::new();
        let mut expired = kv("/gone", 1, "v");
        expired.set_prop("ttl", "1").unwrap();
        expired.stamp_expiry(helpers::clock_ms() - 10_000);
        map.store(expired);
        let mut later = kv("/later", 2, "v");
        later.set_prop("ttl", "3600").unwrap();
        later.stamp_expiry(helpers::clock_ms());
        map.store(later);
        let mut sequence = 5;
        assert_eq!(
            flush_expired(&mut map, &mut sequence, &publisher).unwrap(),
            [6]
        );
        assert_eq!(sequence, 6);
        assert!(map.get(b"/gone").is_none());
        assert!(map.get(b"/later").is_some());
        let delete = KvMsg::from_message(Message::from_frames(
            recv_within(&subscriber, 5000).expect("the delete is published"),
        ))
        .unwrap();
        assert_eq!(
            (delete.key(), delete.sequence(), delete.body()),
            (&b"/gone"[..], 6, &b""[..])
        );
        assert!(flush_expired(&mut map, &mut sequence, &publisher)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn get_snapshot_stores_entries_until_kthxbai_and_returns_its_sequence() {
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).unwrap();
        router.bind("inproc://clone-get-snapshot-test").unwrap();
        let server = std::thread::spawn(move || {
            let request = recv_within(&router, 10_000).expect("a snapshot request");
            assert_eq!(&request[1..], [ICANHAZ.as_bytes(), b"/s/"]);
            for entry in [kv("/s/a", 3, "A"), kv("/s/b", 4, "B"), KvMsg::kthxbai(42)] {
                let mut msg = entry.to_message();
                msg.push(request[0].clone());
                msg.send(&router).unwrap();
            }
        });
        let snapshot = context.socket(zmq::DEALER).unwrap();
        snapshot
            .connect("inproc://clone-get-snapshot-test")
            .unwrap();
        let mut map = KvMap::new();
        let sequence =
            get_snapshot::<KvMsg>(&snapshot, Some("/s/"), &mut map, &mut Warnings::default())
                .unwrap();
        server.join().unwrap();
        assert_eq!(sequence, 42);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(b"/s/b").unwrap().body(), b"B");
        assert!(map.get(KTHXBAI.as_bytes()).is_none());
    }

    #[test]
    fn an_update_that_does_not_fit_is_warned_about_and_one_that_fits_is_not() {
        crate::log_limit::captured::install();
        let mut warnings = Warnings::default();
        let mut map = KvMap::with_limits(1, 1 << 20);
        store_or_warn(&mut map, kv("/fits-in-the-map", 1, "v"), &mut warnings);
        store_or_warn(&mut map, kv("/over-the-map", 2, "v"), &mut warnings);
        let lines = crate::log_limit::captured::lines_with("map full");
        assert!(
            lines.iter().any(|l| l.contains("/over-the-map")),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("/fits-in-the-map")),
            "{lines:?}"
        );
    }

    /// In a child process (this binary, this test alone): `env_limit` and
    /// `dump_on_exit` read the environment the parent gives, and an agent
    /// with no server sleeps (its loop turns only for commands).
    #[test]
    fn env_limit_dump_on_exit_and_an_idle_agent_in_a_child() {
        const CHILD: &str = "ZGUIDE_CLONE_CHILD";
        const LIMIT: &str = "ZGUIDE_CLONE_TEST_LIMIT";
        if std::env::var_os(CHILD).is_some() {
            println!(
                "limits {:?} {:?}",
                env_limit(LIMIT),
                env_limit("ZGUIDE_CLONE_TEST_UNSET")
            );
            let mut map = KvMap::new();
            map.store(kv("/dumped", 9, "yes"));
            dump_on_exit(&map, 9);
            let context = zmq::Context::new();
            let clone = Client::new(&context).unwrap();
            clone.get("/warm-up").unwrap();
            let before = AGENT_TURNS.load(std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(1));
            let turns = AGENT_TURNS.load(std::sync::atomic::Ordering::Relaxed) - before;
            println!("idle turns {turns}");
            return;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "clone::tests::env_limit_dump_on_exit_and_an_idle_agent_in_a_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env(LIMIT, "250")
            .env(DUMP_ENV, "1")
            .env_remove("ZGUIDE_CLONE_TEST_UNSET")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stdout.contains("limits Some(250) None"), "{stdout}{stderr}");
        assert!(stdout.contains("map: /dumped = yes\n"), "{stdout}{stderr}");
        assert!(
            stdout.contains("map: 1 entries, sequence 9, digest"),
            "{stdout}{stderr}"
        );
        let turns: u64 = stdout
            .lines()
            .find_map(|line| line.strip_prefix("idle turns "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no figure from the child: {stdout}{stderr}"));
        // Nothing to do for a second: a loop that polled with a timeout of
        // a millisecond turns about a thousand times.
        assert!(turns < 50, "{turns} turns in an idle second");
    }

    #[test]
    fn a_request_to_an_agent_that_never_answers_times_out() {
        let context = zmq::Context::new();
        let mute = Actor::new(&context, |pipe| {
            let _ = pipe.signal(0);
            while let Ok(Some(_)) = pipe.poll(&[], -1) {}
        })
        .unwrap();
        let clone = Client { actor: mute };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(clone.get("/k"));
        });
        let result = done_rx
            .recv_timeout(Duration::from_millis(AGENT_REPLY_MS as u64 + 20_000))
            .expect("the request returns after its timeout");
        assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    }

    #[test]
    fn a_silent_server_is_asked_for_a_snapshot_twice_a_ttl_apart_and_no_more() {
        const TTL: Duration = Duration::from_millis(300);
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).unwrap();
        router.bind("inproc://clone-silent:5556").unwrap();
        let clone = Client::start(&context, TTL).unwrap();
        clone.connect("inproc://clone-silent", "5556").unwrap();
        let mut asked = Vec::new();
        for _ in 0..2 {
            recv_within(&router, 20_000).expect("a snapshot request");
            asked.push(Instant::now());
        }
        assert!(
            asked[1] - asked[0] >= TTL * 9 / 10,
            "{:?}",
            asked[1] - asked[0]
        );
        assert!(
            recv_within(&router, (TTL * 4).as_millis() as i64).is_none(),
            "a third request"
        );
    }

    #[test]
    fn the_agent_fails_over_from_a_silent_server_to_the_next() {
        const TTL: Duration = Duration::from_millis(300);
        let context = zmq::Context::new();
        let silent = context.socket(zmq::ROUTER).unwrap();
        silent.bind("inproc://clone-failover-a:5556").unwrap();
        let backup = context.socket(zmq::ROUTER).unwrap();
        backup.bind("inproc://clone-failover-b:5556").unwrap();
        let clone = Client::start(&context, TTL).unwrap();
        clone.connect("inproc://clone-failover-a", "5556").unwrap();
        clone.connect("inproc://clone-failover-b", "5556").unwrap();
        recv_within(&silent, 20_000).expect("the first server is asked first");
        let request = recv_within(&backup, 20_000).expect("then the second");
        for entry in [kv("/k", 1, "from b"), KvMsg::kthxbai(1)] {
            let mut msg = entry.to_message();
            msg.push(request[0].clone());
            msg.send(&backup).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while clone.get("/k").unwrap() != b"from b" {
            assert!(Instant::now() < deadline, "no snapshot from the second");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_server_that_keeps_speaking_stays_current() {
        const TTL: Duration = Duration::from_secs(2);
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).unwrap();
        router.bind("inproc://clone-speaking:5556").unwrap();
        let publisher = context.socket(zmq::PUB).unwrap();
        publisher.bind("inproc://clone-speaking:5557").unwrap();
        let clone = Client::start(&context, TTL).unwrap();
        clone.connect("inproc://clone-speaking", "5556").unwrap();
        let request = recv_within(&router, 20_000).expect("a snapshot request");
        let mut end = KvMsg::kthxbai(1).to_message();
        end.push(request[0].clone());
        end.send(&router).unwrap();
        // HUGZ ten times a TTL, for one and a half TTLs: never asked again.
        for _ in 0..15 {
            kv(HUGZ, 1, "").to_message().send(&publisher).unwrap();
            assert!(
                recv_within(&router, (TTL / 10).as_millis() as i64).is_none(),
                "asked for a snapshot again while the server spoke"
            );
        }
    }

    #[test]
    fn updates_set_before_the_collector_listens_are_held_up_to_the_bound() {
        let context = zmq::Context::new();
        let clone = Client::start(&context, Duration::from_secs(600)).unwrap();
        clone.connect("inproc://clone-held", "5556").unwrap();
        for n in 0..MAX_HELD + 5 {
            clone.set(&format!("/held/{n:04}"), "v", 0).unwrap();
        }
        assert_eq!(clone.get("/held/0999").unwrap(), b"v");
        assert_eq!(clone.get("/held/1000").unwrap(), b"", "dropped, not stored");
        // The collector comes: its subscription releases what was held.
        let collector = context.socket(zmq::SUB).unwrap();
        collector.set_subscribe(b"").unwrap();
        collector.bind("inproc://clone-held:5558").unwrap();
        for n in 0..MAX_HELD {
            let frames = recv_within(&collector, 10_000)
                .unwrap_or_else(|| panic!("held update {n} not released"));
            let update = KvMsg::from_message(Message::from_frames(frames)).unwrap();
            assert_eq!(update.key(), format!("/held/{n:04}").as_bytes());
        }
        // All were sent in one go, so a 1001st would be here already.
        assert!(collector.recv_multipart(zmq::DONTWAIT).is_err());
    }

    #[test]
    fn an_unknown_command_is_logged_with_its_frames() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let clone = Client::new(&context).unwrap();
        clone
            .actor
            .send(Message::from_frames(["BOGUS", "the-argument"]))
            .unwrap();
        clone.get("/k").unwrap();
        let lines = crate::log_limit::captured::lines_with("unknown command");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("BOGUS") && l.contains("the-argument")),
            "{lines:?}"
        );
    }
}
