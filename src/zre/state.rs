//! Replicated state on ZRE (study §7, "Replication"): a group of nodes
//! shares a key-value map, each node keeping a copy of the whole map or of
//! one subtree, and every copy converges to the same content whatever the
//! order in which updates arrive, and again after a partition heals.
//!
//! It is the Clone pattern of chapter 5 (`clone.rs`: snapshot + updates)
//! without the server: updates are SHOUTed to the group, snapshots are
//! WHISPERed by peers, and the order of arrival stops mattering because
//! every update carries a version and the newest version of each key wins.
//!
//! **Keys and subtrees.** Keys are paths, `/path/to/resource`: UTF-8, start
//! with `/`, at most 255 bytes ([`MAX_KEY_BYTES`]), no control characters.
//! A *subtree* is a key prefix that starts and ends in `/` (`/` is the whole
//! map); a [`Map`] made for `/sensors/` holds only keys under it and drops
//! the rest, as `clonecli`'s SUBTREE.
//!
//! **Messages** are the content frames of ZRE SHOUT and WHISPER: a first
//! frame naming the kind, then (for the whisper kinds) the group, then the
//! five frames of chapter 5's [`kvmsg`](crate::kvmsg) per entry (key,
//! sequence, uuid, properties, body):
//!
//! ```text
//! SHOUT   [KVPUB]                        [kvmsg ×1]   one update
//! WHISPER [KVGET]  [group] [subtree]                  "send me your snapshot of subtree"
//! WHISPER [KVSNAP] [group] [subtree]     [kvmsg ×n]   snapshot entries, n ≤ BATCH_ENTRIES
//! WHISPER [KVEND]  [group] [subtree] [count]          end of a snapshot; count = entries sent
//! ```
//!
//! **Versions (last writer wins, per key).** In each kvmsg, `sequence` is a
//! Lamport clock (1 ≤ clock ≤ [`MAX_CLOCK`]) and `uuid` is the ZRE UUID of
//! the node that made the update (required). A version is the pair
//! `(clock, uuid)`, compared clock first, then the UUID bytes as a
//! tie-break, so every node orders any two versions the same way. A node
//! applies an update only if its version is greater than the one it holds
//! for that key, and advances its clock to at least every clock it sees; a
//! local write takes `clock + 1`. A delete is an update with an empty body,
//! kept as a *tombstone* so it still beats older values that arrive later.
//! Applying a set of updates in any order, any number of times, therefore
//! gives the same map (the unit tests try every order): two halves of a
//! partitioned network that exchange what they hold converge.
//!
//! **Joining** ([`Replica`], the study's order, implemented literally): join
//! the group (subscribe); wait for one KVPUB or [`Timing::settle`]; queue
//! KVPUBs from then on; WHISPER `KVGET` to the group's mediator
//! ([`Node::leader`]), or to any member when the mediator is us or there is
//! none; collect its `KVSNAP`s up to its `KVEND`; apply the snapshot; apply
//! the queue. No member at all: nothing to fetch, synced at once. No `KVEND`
//! within [`Timing::request`] (the source went away): ask again, at most
//! [`MAX_REQUESTS`] times, then go on without (anti-entropy still brings
//! the state).
//!
//! **Anti-entropy (healing).** Whenever a peer joins our group (its HELLO
//! lists it, or it sends JOIN: after a partition heals, the other half's
//! nodes enter again), *every* node WHISPERs that peer its whole map as
//! `KVSNAP`s and a `KVEND`, whatever its sync phase. Why every node and
//! not only the mediator: a write made at node `y` either reaches `x` by
//! SHOUT (`y` already counts `x` as a member) or is in `y`'s map when `y`
//! sees `x` join, and then `y`'s push carries it; so no write is lost in the
//! gap between the two sides noticing each other, and nothing depends on the
//! two halves agreeing on a mediator while they heal. The price is one
//! snapshot per pair of nodes that meet (n² after a full heal), fine for
//! the maps of a LAN group. Entries from a push are handled like updates
//! (queued before sync, applied after); a push that comes from the node we
//! asked, before its answer, serves as the answer (it is a whole snapshot).
//!
//! **Bounds and policies** (nothing from the wire is trusted; no panics):
//!
//! * Keys at most [`MAX_KEY_BYTES`]; values at most [`MAX_VALUE_BYTES`]
//!   (the node's 1 MiB inbound frame limit); live keys at most
//!   [`MAX_KEYS`] and [`MAX_MAP_BYTES`] of keys and values: a *new* key or
//!   a larger value past either is refused (locally an error; from a peer
//!   dropped, counted, logged at a limited rate; that one key then differs
//!   between nodes, which is the stated cost of a full map).
//! * Tombstones at most [`MAX_TOMBSTONES`]; past that the oldest (smallest
//!   version) is forgotten, so a value older than every kept tombstone and
//!   delivered after that could come back.
//! * Clocks above [`MAX_CLOCK`] are refused, so the clock never overflows.
//!   (A hostile member can still win every key with a high clock: LWW
//!   without authentication trusts its members; CURVE is the answer.)
//! * Snapshots: at most [`BATCH_ENTRIES`] entries and about
//!   [`BATCH_BYTES`] per WHISPER (so a KVSNAP stays within ZRE's
//!   256 content frames), the whole map at most per request; one `KVGET`
//!   per peer per [`GET_INTERVAL`] is answered, the others dropped. A
//!   snapshot being received holds at most [`MAX_KEYS`] + [`MAX_TOMBSTONES`]
//!   entries (more are applied at once); the queue at most [`MAX_QUEUE`]
//!   (more are applied at once: LWW makes early application safe, the
//!   queue only keeps the study's order).
//! * Malformed content (unknown kind, wrong frame count, bad kvmsg, bad key,
//!   bad subtree, KVPUB whispered or KVGET shouted…) is dropped with a
//!   rate-limited warning ([`log_limit::complain`]).
//!
//! **Missing.** Tombstones are never garbage-collected by agreement (only
//! bounded); a push sends the whole map even to a node that replicates a
//! subtree (the receiver filters); no digest exchange to skip pushes between
//! nodes that already agree; no `ttl` (the kvmsg property) on entries. A
//! snapshot goes out in one burst: a full map (100,000 keys, about 2,000
//! KVSNAPs) comes close to the node's per-peer send HWM
//! ([`PEER_SEND_HWM`](super::node::PEER_SEND_HWM), 3,000 messages), so a peer
//! that reads slowly may be dropped by the node and, when it is back,
//! pushed the map again; pacing snapshots by credit (as `fileio3`) would
//! fix it. Members are trusted: no authentication of who wrote what.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use super::node::{Event, Node};
use super::wire::Uuid;
use crate::interface::hex;
use crate::kvmsg::{KvMsg, FRAMES};
use crate::kvsimple::encode_sequence;
use crate::log_limit;
use crate::{Error, Message};

pub use crate::kvsimple::MAX_KEY_BYTES;

/// The first content frame of an update (SHOUT).
pub const KVPUB: &[u8] = b"KVPUB";
/// The first content frame of a snapshot request (WHISPER).
pub const KVGET: &[u8] = b"KVGET";
/// The first content frame of snapshot entries (WHISPER).
pub const KVSNAP: &[u8] = b"KVSNAP";
/// The first content frame of the end of a snapshot (WHISPER).
pub const KVEND: &[u8] = b"KVEND";

/// The most live keys a map holds.
pub const MAX_KEYS: usize = 100_000;
/// The most bytes of keys and values a map holds: 64 MiB.
pub const MAX_MAP_BYTES: usize = 64 << 20;
/// The largest value: 1 MiB (a node's default inbound frame limit).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The most tombstones (deleted keys) a map remembers.
pub const MAX_TOMBSTONES: usize = 10_000;
/// The largest Lamport clock accepted (2^62), so `clock + 1` never overflows.
pub const MAX_CLOCK: u64 = 1 << 62;
/// Entries per KVSNAP message at most: 1 + 2 + 50 × 5 = 253 content frames,
/// within ZRE's 256.
pub const BATCH_ENTRIES: usize = 50;
/// Bytes per KVSNAP message, about: a batch is closed once it holds this much.
pub const BATCH_BYTES: usize = 4 << 20;
/// Updates queued while joining at most.
pub const MAX_QUEUE: usize = 100_000;
/// Snapshot requests sent while joining at most, before going on without.
pub const MAX_REQUESTS: u32 = 3;
/// One KVGET per peer per this interval is answered.
pub const GET_INTERVAL: Duration = Duration::from_millis(500);
/// Peers remembered for [`GET_INTERVAL`] at most.
const MAX_SERVED: usize = 10_000;

// ---------------------------------------------------------------------------
// Versions, updates, the map (pure logic)

/// When an update was made: a Lamport clock, then the origin node's UUID as
/// the tie-break. Ordered by clock, then UUID bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub clock: u64,
    pub origin: Uuid,
}

/// One key's update: a new value, or a delete (empty value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub key: String,
    pub version: Version,
    /// The value; empty means "deleted".
    pub value: Vec<u8>,
}

impl Update {
    /// True for a delete (a tombstone once stored).
    pub fn is_delete(&self) -> bool {
        self.value.is_empty()
    }

    /// The update as a chapter 5 kvmsg: key, sequence = clock, uuid =
    /// origin, no properties, body = value.
    pub fn to_kvmsg(&self) -> KvMsg {
        // MAX_CLOCK < i64::MAX: the cast keeps the value.
        let clock = self.version.clock as i64;
        // KvMsg makes random UUIDs only; the origin goes in through its
        // decoder, from frames that always decode (the key was checked).
        let frames = [
            self.key.as_bytes().to_vec(),
            encode_sequence(clock),
            self.version.origin.to_vec(),
            Vec::new(),
            self.value.clone(),
        ];
        KvMsg::from_message(Message::from_frames(frames))
            .unwrap_or_else(|_| KvMsg::with(self.key.as_bytes(), clock, self.value.clone()))
    }

    /// The update in a kvmsg from the wire; every field checked.
    pub fn from_kvmsg(msg: &KvMsg) -> Result<Update, Rejected> {
        let key = check_key(msg.key())?;
        let clock = u64::try_from(msg.sequence())
            .ok()
            .filter(|c| (1..=MAX_CLOCK).contains(c))
            .ok_or(Rejected::Clock(msg.sequence()))?;
        let origin = *msg.uuid().ok_or(Rejected::NoOrigin)?;
        if msg.body().len() > MAX_VALUE_BYTES {
            return Err(Rejected::ValueTooLarge(msg.body().len()));
        }
        Ok(Update {
            key,
            version: Version { clock, origin },
            value: msg.body().to_vec(),
        })
    }

    /// The five kvmsg frames.
    fn frames(&self) -> Vec<Vec<u8>> {
        self.to_kvmsg().to_message().into_frames()
    }

    /// One update from five kvmsg frames.
    fn from_frames(frames: &[Vec<u8>]) -> Result<Update, Rejected> {
        let msg = KvMsg::from_message(Message::from_frames(frames.iter().cloned()))
            .map_err(|e| Rejected::Malformed(e.to_string()))?;
        Update::from_kvmsg(&msg)
    }
}

/// Why an update, a key, or a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not a path key (what is wrong).
    Key(&'static str),
    /// Not a subtree (`/…/`).
    Subtree(&'static str),
    /// A value over [`MAX_VALUE_BYTES`] (its size).
    ValueTooLarge(usize),
    /// A clock of 0, negative, or over [`MAX_CLOCK`].
    Clock(i64),
    /// A kvmsg without an origin UUID.
    NoOrigin,
    /// The key is not in this map's subtree.
    OutsideSubtree,
    /// [`MAX_KEYS`] or [`MAX_MAP_BYTES`] reached.
    Full,
    /// A message of an unknown kind or shape (what is wrong).
    Malformed(String),
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Key(what) => write!(f, "bad key: {what}"),
            Rejected::Subtree(what) => write!(f, "bad subtree: {what}"),
            Rejected::ValueTooLarge(n) => {
                write!(f, "a {n}-byte value, over {MAX_VALUE_BYTES}")
            }
            Rejected::Clock(c) => write!(f, "clock {c} not in 1..={MAX_CLOCK}"),
            Rejected::NoOrigin => f.write_str("no origin UUID"),
            Rejected::OutsideSubtree => f.write_str("key outside our subtree"),
            Rejected::Full => write!(f, "map full ({MAX_KEYS} keys or {MAX_MAP_BYTES} bytes)"),
            Rejected::Malformed(what) => write!(f, "malformed: {what}"),
        }
    }
}

impl From<Rejected> for Error {
    fn from(r: Rejected) -> Error {
        Error::Protocol(r.to_string())
    }
}

/// Checks a path key: UTF-8, starts with `/`, at most [`MAX_KEY_BYTES`], no
/// control characters.
pub fn check_key(key: &[u8]) -> Result<String, Rejected> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Rejected::Key("over 255 bytes"));
    }
    let text = std::str::from_utf8(key).map_err(|_| Rejected::Key("not UTF-8"))?;
    if !text.starts_with('/') {
        return Err(Rejected::Key("does not start with '/'"));
    }
    if text.chars().any(char::is_control) {
        return Err(Rejected::Key("holds a control character"));
    }
    Ok(text.to_string())
}

/// Checks a subtree: a key-like prefix that starts and ends with `/`.
pub fn check_subtree(subtree: &[u8]) -> Result<String, Rejected> {
    let text = check_key(subtree).map_err(|_| Rejected::Subtree("not a path"))?;
    if !text.ends_with('/') {
        return Err(Rejected::Subtree("does not end with '/'"));
    }
    Ok(text)
}

/// What [`Map::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Newer than what we held: stored.
    Stored,
    /// Not newer (or the same): ignored.
    Stale,
    /// Outside our subtree: ignored.
    Outside,
    /// Would go past [`MAX_KEYS`] or [`MAX_MAP_BYTES`]: refused.
    Full,
}

/// A last-writer-wins map of path keys (pure: no sockets, no clock but the
/// Lamport one). See the module docs.
#[derive(Clone, Debug)]
pub struct Map {
    subtree: String,
    /// Every key we hold, live or tombstone.
    entries: BTreeMap<String, (Version, Vec<u8>)>,
    /// Tombstones by version, oldest first, for eviction.
    tombstones: BTreeSet<(Version, String)>,
    live: usize,
    bytes: usize,
    clock: u64,
}

impl Map {
    /// An empty map of `subtree` (`/` for everything).
    pub fn new(subtree: &str) -> Result<Map, Rejected> {
        Ok(Map {
            subtree: check_subtree(subtree.as_bytes())?,
            entries: BTreeMap::new(),
            tombstones: BTreeSet::new(),
            live: 0,
            bytes: 0,
            clock: 0,
        })
    }

    /// The subtree this map holds.
    pub fn subtree(&self) -> &str {
        &self.subtree
    }

    /// The Lamport clock: the highest clock seen or used.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no key is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Tombstones kept.
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// True if `key` is in this map's subtree.
    pub fn covers(&self, key: &str) -> bool {
        key.starts_with(&self.subtree)
    }

    /// The value of a live key.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .get(key)
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| v.as_slice())
    }

    /// The version held for `key` (live or tombstone).
    pub fn version(&self, key: &str) -> Option<Version> {
        self.entries.get(key).map(|(v, _)| *v)
    }

    /// The live entries in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries
            .iter()
            .filter(|(_, (_, v))| !v.is_empty())
            .map(|(k, (_, v))| (k.as_str(), v.as_slice()))
    }

    /// Every update we hold under `subtree` (tombstones too), in key order:
    /// what a snapshot sends.
    pub fn updates_under<'a>(&'a self, subtree: &'a str) -> impl Iterator<Item = Update> + 'a {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(subtree),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(subtree))
            .map(|(k, (version, value))| Update {
                key: k.clone(),
                version: *version,
                value: value.clone(),
            })
    }

    /// FNV-1a (64 bit) over every live key and value in key order, each
    /// preceded by its length (as `clone::KvMap::digest`): equal content,
    /// equal digests.
    pub fn digest(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in (bytes.len() as u64).to_be_bytes().iter().chain(bytes) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (key, value) in self.entries() {
            feed(key.as_bytes());
            feed(value);
        }
        hash
    }

    /// A local write by `origin`: the next clock, applied at once. `value`
    /// empty is a delete.
    pub fn write(&mut self, origin: Uuid, key: &str, value: Vec<u8>) -> Result<Update, Rejected> {
        let key = check_key(key.as_bytes())?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Rejected::ValueTooLarge(value.len()));
        }
        if !self.covers(&key) {
            return Err(Rejected::OutsideSubtree);
        }
        if self.clock >= MAX_CLOCK {
            return Err(Rejected::Clock(self.clock as i64));
        }
        let update = Update {
            key,
            version: Version {
                clock: self.clock + 1,
                origin,
            },
            value,
        };
        match self.apply(&update) {
            Applied::Stored => Ok(update),
            Applied::Full => Err(Rejected::Full),
            // A newer clock always wins; unreachable in practice.
            Applied::Stale | Applied::Outside => Err(Rejected::OutsideSubtree),
        }
    }

    /// Applies an update if it is newer than what we hold for its key (see
    /// the module docs). Advances the clock in every case but `Outside`.
    pub fn apply(&mut self, update: &Update) -> Applied {
        if !self.covers(&update.key) {
            return Applied::Outside;
        }
        let clock = update.version.clock.min(MAX_CLOCK);
        self.clock = self.clock.max(clock);
        let old = self.entries.get(&update.key);
        if old.is_some_and(|(v, _)| *v >= update.version) {
            return Applied::Stale;
        }
        let (old_live, old_bytes) = match old {
            Some((_, v)) if !v.is_empty() => (true, update.key.len() + v.len()),
            _ => (false, 0),
        };
        if !update.is_delete() {
            let new_bytes = update.key.len() + update.value.len();
            if (!old_live && self.live >= MAX_KEYS)
                || self.bytes - old_bytes + new_bytes > MAX_MAP_BYTES
            {
                return Applied::Full;
            }
        }
        if let Some((version, value)) = self.entries.remove(&update.key) {
            if value.is_empty() {
                self.tombstones.remove(&(version, update.key.clone()));
            }
        }
        self.bytes -= old_bytes;
        if old_live {
            self.live -= 1;
        }
        if update.is_delete() {
            self.tombstones.insert((update.version, update.key.clone()));
            while self.tombstones.len() > MAX_TOMBSTONES {
                if let Some((_, key)) = self.tombstones.pop_first() {
                    self.entries.remove(&key);
                }
            }
            // The new tombstone itself may have been the oldest.
            if self
                .tombstones
                .contains(&(update.version, update.key.clone()))
            {
                self.entries
                    .insert(update.key.clone(), (update.version, Vec::new()));
            }
        } else {
            self.live += 1;
            self.bytes += update.key.len() + update.value.len();
            self.entries
                .insert(update.key.clone(), (update.version, update.value.clone()));
        }
        Applied::Stored
    }
}

// ---------------------------------------------------------------------------
// The messages (pure codec)

/// One replication message, as the content frames of a SHOUT or WHISPER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvMessage {
    /// One update (SHOUT to the group).
    Pub(Update),
    /// "Send me your snapshot of `subtree`" (WHISPER).
    Get { group: String, subtree: String },
    /// Snapshot entries (WHISPER).
    Snap {
        group: String,
        subtree: String,
        updates: Vec<Update>,
    },
    /// The end of a snapshot: `count` entries were sent (WHISPER).
    End {
        group: String,
        subtree: String,
        count: u64,
    },
}

impl KvMessage {
    /// The content frames.
    pub fn encode(&self) -> Vec<Vec<u8>> {
        match self {
            KvMessage::Pub(update) => {
                let mut frames = vec![KVPUB.to_vec()];
                frames.extend(update.frames());
                frames
            }
            KvMessage::Get { group, subtree } => {
                vec![KVGET.to_vec(), group.clone().into(), subtree.clone().into()]
            }
            KvMessage::Snap {
                group,
                subtree,
                updates,
            } => {
                let mut frames = vec![
                    KVSNAP.to_vec(),
                    group.clone().into(),
                    subtree.clone().into(),
                ];
                for update in updates {
                    frames.extend(update.frames());
                }
                frames
            }
            KvMessage::End {
                group,
                subtree,
                count,
            } => vec![
                KVEND.to_vec(),
                group.clone().into(),
                subtree.clone().into(),
                count.to_string().into(),
            ],
        }
    }

    /// Decodes content frames; anything but the shapes of the module docs is
    /// [`Rejected`].
    pub fn decode(content: &[Vec<u8>]) -> Result<KvMessage, Rejected> {
        let bad = |what: &str| Rejected::Malformed(what.to_string());
        let (kind, rest) = content.split_first().ok_or_else(|| bad("no frames"))?;
        let group = |frame: &[u8]| {
            std::str::from_utf8(frame)
                .ok()
                .filter(|g| g.len() <= super::wire::MAX_STRING)
                .map(str::to_string)
                .ok_or_else(|| bad("group not UTF-8 or too long"))
        };
        match kind.as_slice() {
            KVPUB if rest.len() == FRAMES => Ok(KvMessage::Pub(Update::from_frames(rest)?)),
            KVPUB => Err(bad("KVPUB without exactly one kvmsg")),
            KVGET => match rest {
                [g, s] => Ok(KvMessage::Get {
                    group: group(g)?,
                    subtree: check_subtree(s)?,
                }),
                _ => Err(bad("KVGET is [group][subtree]")),
            },
            KVSNAP => {
                let [g, s, entries @ ..] = rest else {
                    return Err(bad("KVSNAP is [group][subtree][kvmsg…]"));
                };
                if entries.len() % FRAMES != 0 || entries.len() / FRAMES > BATCH_ENTRIES {
                    return Err(bad("KVSNAP entries are not whole kvmsgs, or too many"));
                }
                Ok(KvMessage::Snap {
                    group: group(g)?,
                    subtree: check_subtree(s)?,
                    updates: entries
                        .chunks(FRAMES)
                        .map(Update::from_frames)
                        .collect::<Result<_, _>>()?,
                })
            }
            KVEND => match rest {
                [g, s, count] => Ok(KvMessage::End {
                    group: group(g)?,
                    subtree: check_subtree(s)?,
                    count: std::str::from_utf8(count)
                        .ok()
                        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|c| c.parse().ok())
                        .ok_or_else(|| bad("KVEND count not a number"))?,
                }),
                _ => Err(bad("KVEND is [group][subtree][count]")),
            },
            _ => Err(bad("unknown kind")),
        }
    }
}

/// A snapshot of `map` under `subtree` as WHISPER contents: KVSNAPs of at
/// most [`BATCH_ENTRIES`] entries (closed early past [`BATCH_BYTES`]), then
/// the KVEND with the count.
pub fn snapshot(map: &Map, group: &str, subtree: &str) -> Vec<Vec<Vec<u8>>> {
    let mut messages = Vec::new();
    let mut batch: Vec<Update> = Vec::new();
    let mut bytes = 0;
    let mut count = 0u64;
    let flush = |batch: &mut Vec<Update>, messages: &mut Vec<Vec<Vec<u8>>>| {
        if !batch.is_empty() {
            messages.push(
                KvMessage::Snap {
                    group: group.to_string(),
                    subtree: subtree.to_string(),
                    updates: std::mem::take(batch),
                }
                .encode(),
            );
        }
    };
    for update in map.updates_under(subtree) {
        bytes += update.key.len() + update.value.len();
        batch.push(update);
        count += 1;
        if batch.len() == BATCH_ENTRIES || bytes >= BATCH_BYTES {
            flush(&mut batch, &mut messages);
            bytes = 0;
        }
    }
    flush(&mut batch, &mut messages);
    messages.push(
        KvMessage::End {
            group: group.to_string(),
            subtree: subtree.to_string(),
            count,
        }
        .encode(),
    );
    messages
}

// ---------------------------------------------------------------------------
// The replica: the map on a node, in the study's order

/// The replica's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for a first update before asking for a snapshot.
    pub settle: Duration,
    /// How long to wait for a snapshot's KVEND before asking again.
    pub request: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            settle: Duration::from_millis(1000),
            request: Duration::from_millis(3000),
        }
    }
}

/// Where a replica is in the study's join order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Joined; waiting for one update or the settle timeout.
    Subscribing { until: Instant },
    /// Asked `source` for a snapshot (`attempt` of [`MAX_REQUESTS`]).
    Requesting {
        source: Uuid,
        until: Instant,
        attempt: u32,
    },
    /// Snapshot and queue applied: updates apply as they come.
    Synced,
}

/// What a replica did that its owner may want to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A peer's update was applied (`from` sent it; the origin is in the
    /// version).
    Applied { from: Uuid, update: Update },
    /// The join order is done: `snapshot` entries came from `source` (none
    /// when nobody was asked or nobody answered), `queued` updates were
    /// applied after them.
    Synced {
        source: Option<Uuid>,
        snapshot: usize,
        queued: usize,
    },
}

/// A [`Map`] kept in step with a ZRE group through a [`Node`]. Feed it the
/// node's events ([`handle`](Replica::handle)) and call
/// [`tick`](Replica::tick) by [`next_timeout`](Replica::next_timeout). See
/// the module docs.
pub struct Replica<'n> {
    node: &'n Node,
    group: String,
    map: Map,
    timing: Timing,
    phase: Phase,
    /// Updates (with who sent them) that came while joining.
    queue: Vec<(Uuid, Update)>,
    /// The snapshot being received from the source.
    incoming: Vec<Update>,
    /// When we last answered each peer's KVGET.
    served: HashMap<Uuid, Instant>,
    refused: log_limit::Sparse,
}

impl<'n> Replica<'n> {
    /// Joins `group` on `node` (started or not) and starts the join order
    /// for a copy of `subtree` (`/` for everything).
    pub fn new(
        node: &'n Node,
        group: &str,
        subtree: &str,
        timing: Timing,
    ) -> Result<Replica<'n>, Error> {
        let map = Map::new(subtree)?;
        node.join(group)?;
        Ok(Replica {
            node,
            group: group.to_string(),
            map,
            timing,
            phase: Phase::Subscribing {
                until: Instant::now() + timing.settle,
            },
            queue: Vec::new(),
            incoming: Vec::new(),
            served: HashMap::new(),
            refused: log_limit::Sparse::default(),
        })
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The map as it stands.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Where we are in the join order.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// True once the join order is done.
    pub fn is_synced(&self) -> bool {
        self.phase == Phase::Synced
    }

    /// A live key's value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.map.get(key)
    }

    /// The live entries in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.map.entries()
    }

    /// Sets `key` to `value` (not empty: use [`delete`](Replica::delete))
    /// here and SHOUTs it to the group; returns the update.
    pub fn set(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<Update, Error> {
        let value = value.into();
        if value.is_empty() {
            return Err(Error::Protocol(
                "an empty value is a delete: use delete".into(),
            ));
        }
        self.write(key, value)
    }

    /// Deletes `key` (a tombstone) here and SHOUTs it to the group.
    pub fn delete(&mut self, key: &str) -> Result<Update, Error> {
        self.write(key, Vec::new())
    }

    fn write(&mut self, key: &str, value: Vec<u8>) -> Result<Update, Error> {
        let update = self.map.write(self.node.uuid(), key, value)?;
        self.node
            .shout(&self.group, KvMessage::Pub(update.clone()).encode())?;
        Ok(update)
    }

    /// How long until [`tick`](Replica::tick) has something to do (`None`:
    /// nothing pending).
    pub fn next_timeout(&self) -> Option<Duration> {
        match &self.phase {
            Phase::Subscribing { until } | Phase::Requesting { until, .. } => {
                Some(until.saturating_duration_since(Instant::now()))
            }
            Phase::Synced => None,
        }
    }

    /// Runs the join order's timers.
    pub fn tick(&mut self) -> Result<Vec<Change>, Error> {
        let now = Instant::now();
        match self.phase {
            Phase::Subscribing { until } if now >= until => self.request(1),
            Phase::Requesting { until, attempt, .. } if now >= until => {
                if attempt >= MAX_REQUESTS {
                    log::warn!(
                        "state {}: no snapshot after {attempt} requests; going on",
                        self.group
                    );
                    Ok(self.finish_sync(None))
                } else {
                    self.request(attempt + 1)
                }
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Step 4 of the join order: ask the mediator (or any member) for a
    /// snapshot; nobody to ask: synced.
    fn request(&mut self, attempt: u32) -> Result<Vec<Change>, Error> {
        let us = self.node.uuid();
        let source = match self.node.leader(&self.group)? {
            Some(leader) if leader != us => Some(leader),
            _ => {
                let members = self.node.peers_by_group(&self.group)?;
                // Any member: a different one on each attempt.
                (!members.is_empty()).then(|| members[(attempt as usize - 1) % members.len()])
            }
        };
        let Some(source) = source else {
            return Ok(self.finish_sync(None));
        };
        self.incoming.clear();
        let get = KvMessage::Get {
            group: self.group.clone(),
            subtree: self.map.subtree().to_string(),
        };
        self.node.whisper(&source, get.encode())?;
        log::debug!(
            "state {}: KVGET to {} (attempt {attempt})",
            self.group,
            hex(&source)
        );
        self.phase = Phase::Requesting {
            source,
            until: Instant::now() + self.timing.request,
            attempt,
        };
        Ok(Vec::new())
    }

    /// Steps 5–6: apply the snapshot, then the queue.
    fn finish_sync(&mut self, source: Option<Uuid>) -> Vec<Change> {
        let snapshot = std::mem::take(&mut self.incoming);
        let queue = std::mem::take(&mut self.queue);
        let mut changes = Vec::new();
        let from = source.unwrap_or_default();
        let (snapshot_len, queued) = (snapshot.len(), queue.len());
        for update in snapshot {
            self.apply(from, update, &mut changes);
        }
        for (from, update) in queue {
            self.apply(from, update, &mut changes);
        }
        self.phase = Phase::Synced;
        changes.push(Change::Synced {
            source,
            snapshot: snapshot_len,
            queued,
        });
        changes
    }

    fn apply(&mut self, from: Uuid, update: Update, changes: &mut Vec<Change>) {
        match self.map.apply(&update) {
            Applied::Stored => changes.push(Change::Applied { from, update }),
            Applied::Full => {
                if let Some(n) = self.refused.note() {
                    log::warn!(
                        "state {}: {} refused ({n} so far)",
                        self.group,
                        Rejected::Full
                    );
                }
            }
            Applied::Stale | Applied::Outside => {}
        }
    }

    /// An update from a peer: queued while joining, applied once synced.
    fn receive(&mut self, from: Uuid, update: Update, changes: &mut Vec<Change>) {
        if self.is_synced() || self.queue.len() >= MAX_QUEUE {
            self.apply(from, update, changes);
        } else if self.map.covers(&update.key) {
            self.queue.push((from, update));
        }
    }

    /// Feeds one node event to the replica; returns what changed.
    pub fn handle(&mut self, event: &Event) -> Result<Vec<Change>, Error> {
        let mut changes = Vec::new();
        match event {
            Event::Shout {
                peer,
                group,
                content,
                ..
            } if *group == self.group => match KvMessage::decode(content) {
                Ok(KvMessage::Pub(update)) => {
                    self.receive(*peer, update, &mut changes);
                    if matches!(self.phase, Phase::Subscribing { .. }) {
                        // Step 3: one update received; the rest are queued.
                        changes.extend(self.request(1)?);
                    }
                }
                Ok(_) => self.complain(peer, "only KVPUB may be shouted"),
                Err(e) => self.complain(peer, &e.to_string()),
            },
            Event::Whisper { peer, content, .. } => {
                if content.first().map(Vec::as_slice) == Some(KVPUB) {
                    self.complain(peer, "KVPUB is shouted, not whispered");
                    return Ok(changes);
                }
                match KvMessage::decode(content) {
                    Ok(message) => self.whispered(*peer, message, &mut changes)?,
                    Err(e) => self.complain(peer, &e.to_string()),
                }
            }
            Event::Join { peer, group, .. } if *group == self.group => {
                // Anti-entropy: every member pushes its map to a newcomer.
                let subtree = self.map.subtree().to_string();
                self.send_snapshot(peer, &subtree)?;
            }
            Event::Exit { peer, .. } => {
                self.served.remove(peer);
                self.lost(peer)?;
            }
            Event::Leave { peer, group, .. } if *group == self.group => self.lost(peer)?,
            _ => {}
        }
        Ok(changes)
    }

    /// Our source went away while we waited: ask someone else.
    fn lost(&mut self, peer: &Uuid) -> Result<(), Error> {
        if let Phase::Requesting {
            source, attempt, ..
        } = self.phase
        {
            if source == *peer {
                self.phase = Phase::Requesting {
                    source,
                    until: Instant::now(),
                    attempt,
                };
            }
        }
        Ok(())
    }

    fn whispered(
        &mut self,
        peer: Uuid,
        message: KvMessage,
        changes: &mut Vec<Change>,
    ) -> Result<(), Error> {
        let ours = |group: &str| group == self.group;
        match message {
            KvMessage::Get { group, subtree } if ours(&group) => {
                let now = Instant::now();
                if self
                    .served
                    .get(&peer)
                    .is_some_and(|at| now.duration_since(*at) < GET_INTERVAL)
                {
                    self.complain(&peer, "KVGET again too soon: dropped");
                    return Ok(());
                }
                if self.served.len() >= MAX_SERVED {
                    self.served
                        .retain(|_, at| now.duration_since(*at) < GET_INTERVAL);
                }
                if self.served.len() < MAX_SERVED {
                    self.served.insert(peer, now);
                }
                self.send_snapshot(&peer, &subtree)?;
            }
            KvMessage::Snap { group, updates, .. } if ours(&group) => {
                let from_source =
                    matches!(self.phase, Phase::Requesting { source, .. } if source == peer);
                for update in updates {
                    if from_source && self.incoming.len() < MAX_KEYS + MAX_TOMBSTONES {
                        if self.map.covers(&update.key) {
                            self.incoming.push(update);
                        }
                    } else {
                        self.receive(peer, update, changes);
                    }
                }
            }
            KvMessage::End { group, count, .. } if ours(&group) => {
                if matches!(self.phase, Phase::Requesting { source, .. } if source == peer) {
                    log::debug!(
                        "state {}: snapshot of {count} entries from {} ({} ours)",
                        self.group,
                        hex(&peer),
                        self.incoming.len()
                    );
                    changes.extend(self.finish_sync(Some(peer)));
                }
            }
            KvMessage::Pub(_) => self.complain(&peer, "KVPUB is shouted, not whispered"),
            // Another group's replication: not ours.
            _ => {}
        }
        Ok(())
    }

    /// WHISPERs `peer` our entries under `subtree`, then KVEND.
    fn send_snapshot(&mut self, peer: &Uuid, subtree: &str) -> Result<(), Error> {
        for content in snapshot(&self.map, &self.group, subtree) {
            if !self.node.whisper(peer, content)? {
                break; // gone (or removed for not reading)
            }
        }
        Ok(())
    }

    fn complain(&self, peer: &Uuid, what: &str) {
        log_limit::complain(format_args!(
            "state {}: from {}: {what}",
            super::printable(self.group.as_bytes(), 64),
            hex(peer)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(n: u8) -> Uuid {
        [n; 16]
    }

    fn up(key: &str, clock: u64, origin: u8, value: &str) -> Update {
        Update {
            key: key.into(),
            version: Version {
                clock,
                origin: uuid(origin),
            },
            value: value.into(),
        }
    }

    fn content(map: &Map) -> Vec<(String, Vec<u8>)> {
        map.entries()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    /// Every permutation of `items` (Heap's algorithm).
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn heap<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            heap(k - 1, a, out);
            for i in 0..k - 1 {
                if k.is_multiple_of(2) {
                    a.swap(i, k - 1);
                } else {
                    a.swap(0, k - 1);
                }
                heap(k - 1, a, out);
            }
        }
        let mut out = Vec::new();
        heap(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    #[test]
    fn any_order_of_delivery_gives_the_same_map() {
        // Concurrent writes to one key (same clock, different origins), a
        // delete racing a set, an old value arriving after its delete, and
        // a key nobody else touches.
        let updates = vec![
            up("/a", 1, 1, "a1"),
            up("/a", 2, 2, "a2"),
            up("/a", 2, 3, "a3"), // same clock: origin 3 > 2 wins
            up("/b", 1, 1, "b1"),
            up("/b", 3, 2, ""), // delete wins over the older set
            up("/c", 5, 4, "c"),
            up("/b", 2, 3, "b2"),
        ];
        let perms = permutations(&updates);
        assert_eq!(perms.len(), 5040);
        let mut first = None;
        for order in perms {
            let mut map = Map::new("/").unwrap();
            for u in &order {
                map.apply(u);
            }
            // Delivered twice: nothing changes (idempotent).
            for u in &order {
                assert_ne!(map.apply(u), Applied::Stored);
            }
            let got = (content(&map), map.digest(), map.clock(), map.tombstones());
            match &first {
                None => first = Some(got),
                Some(want) => assert_eq!(&got, want, "{order:?}"),
            }
        }
        let (entries, _, clock, tombstones) = first.unwrap();
        assert_eq!(
            entries,
            vec![("/a".into(), b"a3".to_vec()), ("/c".into(), b"c".to_vec())]
        );
        assert_eq!((clock, tombstones), (5, 1));
    }

    #[test]
    fn random_orders_of_many_updates_converge_like_two_healed_halves() {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Two halves write independently (own clocks), some keys on both.
        let (mut left, mut right) = (Map::new("/").unwrap(), Map::new("/").unwrap());
        let mut all = Vec::new();
        for i in 0..200 {
            let key = format!("/k/{}", i % 37);
            let value = if i % 11 == 0 {
                String::new()
            } else {
                format!("v{i}")
            };
            let side = if i % 2 == 0 { &mut left } else { &mut right };
            all.push(
                side.write(uuid(1 + (i % 2) as u8), &key, value.into())
                    .unwrap(),
            );
        }
        // Heal: each gets the other's whole map, in a shuffled order.
        let mut reference: Option<u64> = None;
        for _ in 0..20 {
            let (mut a, mut b) = (left.clone(), right.clone());
            let mut from_b: Vec<Update> = right.updates_under("/").collect();
            let mut from_a: Vec<Update> = left.updates_under("/").collect();
            from_b.shuffle(&mut rng);
            from_a.shuffle(&mut rng);
            from_b.iter().for_each(|u| {
                a.apply(u);
            });
            from_a.iter().for_each(|u| {
                b.apply(u);
            });
            assert_eq!(content(&a), content(&b));
            let mut all_shuffled = all.clone();
            all_shuffled.shuffle(&mut rng);
            let mut c = Map::new("/").unwrap();
            all_shuffled.iter().for_each(|u| {
                c.apply(u);
            });
            assert_eq!(content(&a), content(&c));
            assert_eq!(*reference.get_or_insert(a.digest()), a.digest());
        }
    }

    #[test]
    fn a_delete_is_a_tombstone_that_beats_older_values() {
        let mut map = Map::new("/").unwrap();
        let set = map.write(uuid(1), "/x", b"1".to_vec()).unwrap();
        let del = map.write(uuid(1), "/x", Vec::new()).unwrap();
        assert_eq!((map.get("/x"), map.len(), map.tombstones()), (None, 0, 1));
        assert_eq!(map.apply(&set), Applied::Stale, "the old value comes late");
        assert_eq!(map.get("/x"), None);
        assert_eq!(map.version("/x"), Some(del.version));
        // A newer value revives it.
        assert_eq!(map.apply(&up("/x", 10, 2, "back")), Applied::Stored);
        assert_eq!((map.get("/x"), map.tombstones()), (Some(&b"back"[..]), 0));
        assert_eq!(map.clock(), 10);
        let next = map.write(uuid(1), "/y", b"y".to_vec()).unwrap();
        assert_eq!(next.version.clock, 11, "Lamport: past every clock seen");
    }

    #[test]
    fn tombstones_are_bounded_oldest_first() {
        let mut map = Map::new("/").unwrap();
        for i in 0..MAX_TOMBSTONES as u64 + 5 {
            map.apply(&up(&format!("/t/{i}"), i + 1, 1, ""));
        }
        assert_eq!(map.tombstones(), MAX_TOMBSTONES);
        assert_eq!(map.version("/t/0"), None, "the oldest went first");
        assert!(map.version(&format!("/t/{}", MAX_TOMBSTONES + 4)).is_some());
        // An older tombstone than every kept one is not kept.
        map.apply(&up("/old", 1, 0, ""));
        assert_eq!(map.version("/old"), None);
        assert_eq!(map.tombstones(), MAX_TOMBSTONES);
    }

    #[test]
    fn a_subtree_map_keeps_only_its_keys() {
        let mut map = Map::new("/sensors/").unwrap();
        assert_eq!(map.apply(&up("/sensors/t1", 1, 1, "20")), Applied::Stored);
        assert_eq!(map.apply(&up("/actuators/v", 2, 1, "on")), Applied::Outside);
        assert_eq!(map.apply(&up("/sensors", 3, 1, "x")), Applied::Outside);
        assert_eq!(map.clock(), 1, "an update outside does not move the clock");
        assert_eq!(
            map.write(uuid(1), "/actuators/v", b"on".to_vec()),
            Err(Rejected::OutsideSubtree)
        );
        let mut all = Map::new("/").unwrap();
        all.apply(&up("/a/1", 1, 1, "1"));
        all.apply(&up("/a/2", 1, 1, ""));
        all.apply(&up("/ab", 1, 1, "x"));
        all.apply(&up("/b/1", 1, 1, "1"));
        let keys: Vec<String> = all.updates_under("/a/").map(|u| u.key).collect();
        assert_eq!(keys, ["/a/1", "/a/2"], "tombstones included, /ab not");
        for bad in ["", "a/", "/a", "/a\n/"] {
            assert!(Map::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bounds_refuse_new_keys_and_large_values() {
        let mut map = Map::new("/").unwrap();
        for i in 0..MAX_KEYS {
            assert_eq!(map.apply(&up(&format!("/{i}"), 1, 1, "v")), Applied::Stored);
        }
        assert_eq!(map.apply(&up("/new", 2, 1, "v")), Applied::Full);
        assert_eq!(
            map.write(uuid(1), "/new", b"v".to_vec()),
            Err(Rejected::Full)
        );
        // An existing key may change, a delete makes room.
        assert_eq!(map.apply(&up("/0", 3, 1, "w")), Applied::Stored);
        assert_eq!(map.apply(&up("/1", 3, 1, "")), Applied::Stored);
        assert_eq!(map.apply(&up("/new", 4, 1, "v")), Applied::Stored);
        assert_eq!(map.len(), MAX_KEYS);

        let mut map = Map::new("/").unwrap();
        let big = vec![b'x'; MAX_VALUE_BYTES];
        assert!(map.write(uuid(1), "/big", big.clone()).is_ok());
        assert_eq!(
            map.write(uuid(1), "/big", vec![b'x'; MAX_VALUE_BYTES + 1]),
            Err(Rejected::ValueTooLarge(MAX_VALUE_BYTES + 1))
        );
        for i in 0..MAX_MAP_BYTES / MAX_VALUE_BYTES {
            let _ = map.apply(&up(&format!("/b{i}"), 9, 1, ""));
            if map.apply(&Update {
                key: format!("/b{i}"),
                version: Version {
                    clock: 10,
                    origin: uuid(1),
                },
                value: big.clone(),
            }) == Applied::Full
            {
                assert!(i > 0);
                return;
            }
        }
        panic!("MAX_MAP_BYTES was never reached");
    }

    #[test]
    fn the_byte_bound_holds_exactly_and_replacing_a_value_costs_only_the_difference() {
        let mut map = Map::new("/").unwrap();
        let put = |map: &mut Map, key: &str, clock: u64, len: usize| {
            map.apply(&Update {
                key: key.to_string(),
                version: Version {
                    clock,
                    origin: uuid(1),
                },
                value: vec![b'x'; len],
            })
        };
        // 64 entries of exactly 1 MiB each (a 4-byte key and the rest value)
        // fill MAX_MAP_BYTES to the byte: every one is stored.
        let entry = MAX_MAP_BYTES / 64;
        for i in 0..64 {
            let key = format!("/b{i:02}");
            assert_eq!(
                put(&mut map, &key, 1, entry - key.len()),
                Applied::Stored,
                "{key}"
            );
        }
        // One byte more is refused.
        assert_eq!(put(&mut map, "/z", 2, 1), Applied::Full);
        // Replacing a value counts what it replaces, again and again.
        for clock in 3..6 {
            assert_eq!(put(&mut map, "/b00", clock, entry - 4), Applied::Stored);
        }
        assert_eq!(put(&mut map, "/b01", 6, entry - 4 + 1), Applied::Full);
        assert_eq!(put(&mut map, "/b01", 7, entry - 4 - 10), Applied::Stored);
        // The 10 bytes freed hold a 10-byte entry, not one byte more.
        assert_eq!(put(&mut map, "/zz", 8, 8), Applied::Full);
        assert_eq!(put(&mut map, "/z", 9, 8), Applied::Stored);
        // A delete frees its entry's bytes.
        assert_eq!(put(&mut map, "/b02", 10, 0), Applied::Stored);
        assert_eq!(put(&mut map, "/new", 11, entry - 4), Applied::Stored);
        assert_eq!(map.len(), 65);
    }

    #[test]
    fn keys_must_be_paths() {
        assert_eq!(check_key(b"/a/b"), Ok("/a/b".into()));
        assert!(check_key(b"a").is_err());
        assert!(check_key(b"").is_err());
        assert!(check_key(b"/\x1b[2J").is_err());
        assert!(check_key(b"/\xff").is_err());
        assert!(check_key(&[b'/'; 256]).is_err());
        assert!(check_key(&[b'/'; 255]).is_ok());
    }

    #[test]
    fn messages_survive_the_round_trip_as_kvmsg_frames() {
        let update = up("/a/b", 42, 9, "value");
        let frames = KvMessage::Pub(update.clone()).encode();
        assert_eq!(frames.len(), 1 + FRAMES);
        assert_eq!(frames[0], KVPUB);
        assert_eq!(frames[1], b"/a/b");
        assert_eq!(frames[2], 42i64.to_be_bytes());
        assert_eq!(frames[3], [9u8; 16]);
        assert_eq!(frames[4], b"");
        assert_eq!(frames[5], b"value");
        assert_eq!(KvMessage::decode(&frames), Ok(KvMessage::Pub(update)));
        for message in [
            KvMessage::Get {
                group: "KV".into(),
                subtree: "/a/".into(),
            },
            KvMessage::End {
                group: "KV".into(),
                subtree: "/".into(),
                count: 7,
            },
            KvMessage::Snap {
                group: "KV".into(),
                subtree: "/".into(),
                updates: vec![up("/x", 1, 1, "1"), up("/y", 2, 2, "")],
            },
        ] {
            assert_eq!(KvMessage::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn a_snapshot_round_trips_in_batches() {
        let mut map = Map::new("/").unwrap();
        for i in 0..123 {
            map.write(uuid(1), &format!("/s/{i:03}"), format!("{i}").into())
                .unwrap();
        }
        map.write(uuid(1), "/s/000", Vec::new()).unwrap();
        map.write(uuid(1), "/t", b"outside".to_vec()).unwrap();
        let messages = snapshot(&map, "KV", "/s/");
        assert_eq!(messages.len(), 3 + 1, "50 + 50 + 23, then KVEND");
        let mut copy = Map::new("/").unwrap();
        let mut received = 0;
        for content in &messages {
            assert!(content.len() <= super::super::wire::MAX_CONTENT_FRAMES);
            match KvMessage::decode(content).unwrap() {
                KvMessage::Snap { updates, .. } => {
                    received += updates.len();
                    updates.iter().for_each(|u| {
                        copy.apply(u);
                    });
                }
                KvMessage::End { count, .. } => assert_eq!(count as usize, received),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(received, 123);
        assert_eq!((copy.len(), copy.tombstones()), (122, 1));
        let want: Vec<_> = map
            .entries()
            .filter(|(k, _)| k.starts_with("/s/"))
            .collect();
        assert_eq!(copy.entries().collect::<Vec<_>>(), want);
        // An empty map: just KVEND 0.
        let empty = snapshot(&Map::new("/").unwrap(), "KV", "/");
        assert_eq!(
            empty,
            vec![vec![
                KVEND.to_vec(),
                b"KV".to_vec(),
                b"/".to_vec(),
                b"0".to_vec()
            ]]
        );
    }

    #[test]
    fn garbage_is_rejected_never_a_panic() {
        let good = KvMessage::Pub(up("/k", 1, 1, "v")).encode();
        let with = |i: usize, frame: &[u8]| {
            let mut f = good.clone();
            f[i] = frame.to_vec();
            f
        };
        let bad: Vec<Vec<Vec<u8>>> = vec![
            vec![],
            vec![b"NOPE".to_vec()],
            vec![KVPUB.to_vec()],
            good[..5].to_vec(),
            [good.clone(), vec![b"x".to_vec()]].concat(),
            with(1, b"no-slash"),
            with(1, b"/\x07bell"),
            with(2, &[0; 7]),
            with(2, &0i64.to_be_bytes()),
            with(2, &(-5i64).to_be_bytes()),
            with(2, &i64::MAX.to_be_bytes()),
            with(3, b""), // no origin
            with(3, &[1; 15]),
            with(4, b"ttl"), // properties without LF
            with(5, &vec![0u8; MAX_VALUE_BYTES + 1]),
            vec![KVGET.to_vec(), b"KV".to_vec()],
            vec![KVGET.to_vec(), b"KV".to_vec(), b"/no-end".to_vec()],
            vec![KVGET.to_vec(), b"\xff".to_vec(), b"/".to_vec()],
            vec![
                KVEND.to_vec(),
                b"KV".to_vec(),
                b"/".to_vec(),
                b"-1".to_vec(),
            ],
            vec![
                KVEND.to_vec(),
                b"KV".to_vec(),
                b"/".to_vec(),
                b"99999999999999999999999".to_vec(),
            ],
            vec![KVEND.to_vec(), b"KV".to_vec(), b"/".to_vec(), b"".to_vec()],
            // Rust's parse takes a leading '+'; the protocol's digits do not.
            vec![
                KVEND.to_vec(),
                b"KV".to_vec(),
                b"/".to_vec(),
                b"+5".to_vec(),
            ],
            [
                vec![KVSNAP.to_vec(), b"KV".to_vec(), b"/".to_vec()],
                good[1..5].to_vec(),
            ]
            .concat(),
            [
                vec![KVSNAP.to_vec(), b"KV".to_vec(), b"/".to_vec()],
                (0..=BATCH_ENTRIES)
                    .flat_map(|_| good[1..].to_vec())
                    .collect(),
            ]
            .concat(),
        ];
        for content in &bad {
            assert!(KvMessage::decode(content).is_err(), "{content:?}");
        }
        // A KVPUB must carry exactly one kvmsg; said as such.
        for content in [
            vec![KVPUB.to_vec()],
            [good.clone(), vec![b"x".to_vec()]].concat(),
        ] {
            assert_eq!(
                KvMessage::decode(&content),
                Err(Rejected::Malformed(
                    "KVPUB without exactly one kvmsg".into()
                ))
            );
        }
        // Random frames: never a panic.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let kinds = [KVPUB, KVGET, KVSNAP, KVEND];
        for _ in 0..5000 {
            let n = rng.gen_range(0..12);
            let mut content: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = rng.gen_range(0..20);
                    (0..len).map(|_| rng.gen()).collect()
                })
                .collect();
            if let Some(first) = content.first_mut() {
                *first = kinds[rng.gen_range(0..kinds.len())].to_vec();
            }
            let _ = KvMessage::decode(&content);
        }
    }

    #[test]
    fn accessors_and_the_digest_say_what_the_map_holds() {
        let mut map = Map::new("/s/").unwrap();
        assert_eq!(map.subtree(), "/s/");
        assert!(map.is_empty());
        // FNV-1a's offset basis: nothing fed yet.
        assert_eq!(map.digest(), 0xcbf2_9ce4_8422_2325);
        map.write(uuid(1), "/s/k", b"v".to_vec()).unwrap();
        assert!(!map.is_empty());
        // The digest by hand: FNV-1a over each length (8 bytes, big-endian)
        // and its bytes, key then value.
        let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [&b"/s/k"[..], b"v"] {
            for &b in (part.len() as u64).to_be_bytes().iter().chain(part) {
                expected ^= u64::from(b);
                expected = expected.wrapping_mul(0x0100_0000_01b3);
            }
        }
        assert_eq!(map.digest(), expected);
        // A delete leaves a tombstone, which the digest does not see.
        map.write(uuid(1), "/s/k", Vec::new()).unwrap();
        assert!(map.is_empty());
        assert_eq!(map.digest(), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn a_value_of_the_largest_size_passes_and_one_byte_more_does_not() {
        let largest = Update {
            value: vec![b'v'; MAX_VALUE_BYTES],
            ..up("/k", 1, 1, "")
        };
        assert_eq!(Update::from_kvmsg(&largest.to_kvmsg()), Ok(largest.clone()));
        let over = Update {
            value: vec![b'v'; MAX_VALUE_BYTES + 1],
            ..largest
        };
        assert_eq!(
            Update::from_kvmsg(&over.to_kvmsg()),
            Err(Rejected::ValueTooLarge(MAX_VALUE_BYTES + 1))
        );
        assert_eq!(
            Rejected::ValueTooLarge(MAX_VALUE_BYTES + 1).to_string(),
            format!(
                "a {}-byte value, over {MAX_VALUE_BYTES}",
                MAX_VALUE_BYTES + 1
            )
        );
        assert_eq!(Rejected::NoOrigin.to_string(), "no origin UUID");
    }

    #[test]
    fn a_snapshot_batch_closes_early_past_its_byte_bound() {
        // Ten 1 MiB values: a batch closes once it holds 4 MiB, so 4 + 4 + 2.
        let mut map = Map::new("/").unwrap();
        for i in 0..10 {
            map.write(uuid(1), &format!("/big/{i}"), vec![b'x'; MAX_VALUE_BYTES])
                .unwrap();
        }
        let sizes: Vec<usize> = snapshot(&map, "KV", "/")
            .iter()
            .map(|content| match KvMessage::decode(content).unwrap() {
                KvMessage::Snap { updates, .. } => updates.len(),
                KvMessage::End { count, .. } => count as usize,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [4, 4, 2, 10], "three KVSNAPs, then KVEND 10");
    }

    // The replica on a real node, its peers nodes the test drives by hand
    // (UDP beacons on loopback, on a port no other test uses). The group's
    // mediator (the node's leader) is its lowest UUID, so the tests sort the
    // nodes to say who it is.

    const WAIT: Duration = Duration::from_secs(5);

    /// `count` started nodes, in UUID order.
    fn nodes(context: &zmq::Context, port: u16, count: usize) -> Vec<Node> {
        let mut nodes: Vec<Node> = (0..count)
            .map(|n| {
                let config = super::super::node::NodeConfig {
                    name: Some(format!("n{n}")),
                    port,
                    interval: Duration::from_millis(50),
                    ..Default::default()
                };
                let node = Node::new(context, config).unwrap();
                node.start().unwrap();
                node
            })
            .collect();
        nodes.sort_by_key(Node::uuid);
        nodes
    }

    /// Waits (at most [`WAIT`]) until `node` sees `peer` join `group`.
    fn await_join(node: &Node, peer: Uuid, group: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{}: no JOIN of {group}", node.name());
            if let Some(Event::Join {
                peer: p, group: g, ..
            }) = node.recv_timeout(left).unwrap()
            {
                if p == peer && g == group {
                    return;
                }
            }
        }
    }

    /// Runs the replica (its node's events and its timers) and reads what
    /// each driver gets from it, until `stop` says so (at most [`WAIT`]).
    /// Returns the replica's changes and, per driver, the messages it got.
    fn run(
        replica: &mut Replica,
        host: &Node,
        drivers: &[&Node],
        mut stop: impl FnMut(&Replica, &[Change], &[Vec<KvMessage>]) -> bool,
    ) -> (Vec<Change>, Vec<Vec<KvMessage>>) {
        let deadline = Instant::now() + WAIT;
        let mut changes = Vec::new();
        let mut got = vec![Vec::new(); drivers.len()];
        while !stop(replica, &changes, &got) {
            assert!(
                Instant::now() < deadline,
                "not done in {WAIT:?}: {:?}, changes {changes:?}, drivers got {got:?}",
                replica.phase()
            );
            let slice = Duration::from_millis(10);
            let wait = replica.next_timeout().map_or(slice, |t| t.min(slice));
            if let Some(event) = host.recv_timeout(wait).unwrap() {
                changes.extend(replica.handle(&event).unwrap());
            }
            changes.extend(replica.tick().unwrap());
            for (driver, got) in drivers.iter().zip(&mut got) {
                if let Some(
                    Event::Whisper { peer, content, .. } | Event::Shout { peer, content, .. },
                ) = driver.recv_timeout(Duration::from_millis(1)).unwrap()
                {
                    if peer == host.uuid() {
                        got.push(KvMessage::decode(&content).unwrap());
                    }
                }
            }
        }
        (changes, got)
    }

    fn is_get(message: &KvMessage) -> bool {
        matches!(message, KvMessage::Get { .. })
    }

    fn gets(got: &[KvMessage]) -> usize {
        got.iter().filter(|m| is_get(m)).count()
    }

    fn get(group: &str, subtree: &str) -> KvMessage {
        KvMessage::Get {
            group: group.into(),
            subtree: subtree.into(),
        }
    }

    #[test]
    fn a_replica_joins_in_order_serves_snapshots_and_shouts_its_writes() {
        let context = zmq::Context::new();
        // The host is the mediator: it asks any member.
        let nodes = nodes(&context, 5854, 2);
        let (host, driver) = (&nodes[0], &nodes[1]);
        host.join("OTHER").unwrap();
        driver.join("OTHER").unwrap();
        driver.join("KV").unwrap();
        await_join(host, driver.uuid(), "KV");
        let long = Timing {
            settle: Duration::from_secs(3),
            request: Duration::from_secs(3),
        };
        let mut replica = Replica::new(host, "KV", "/", long).unwrap();
        assert_eq!(replica.group(), "KV");
        assert!(!replica.is_synced());
        assert!(replica
            .next_timeout()
            .is_some_and(|t| t > Duration::from_secs(2) && t <= Duration::from_secs(3)));
        await_join(driver, host.uuid(), "KV");
        let drivers = [driver];

        // Another group's KVPUB is not ours; then step 3: one update of
        // ours (queued) starts the snapshot request.
        driver
            .shout("OTHER", KvMessage::Pub(up("/x", 9, 9, "other")).encode())
            .unwrap();
        driver
            .shout("KV", KvMessage::Pub(up("/a", 5, 9, "new")).encode())
            .unwrap();
        let (_, got) = run(&mut replica, host, &drivers, |_, _, got| gets(&got[0]) > 0);
        assert!(got[0].contains(&get("KV", "/")));
        assert!(matches!(
            replica.phase(),
            Phase::Requesting { source, attempt: 1, .. } if *source == driver.uuid()
        ));
        // Steps 5-6: the snapshot, then the queue (whose /a is newer).
        // Another group's KVEND does not end ours.
        let snap = KvMessage::Snap {
            group: "KV".into(),
            subtree: "/".into(),
            updates: vec![up("/a", 4, 9, "old"), up("/b", 3, 9, "b")],
        };
        let end = |group: &str| KvMessage::End {
            group: group.into(),
            subtree: "/".into(),
            count: 2,
        };
        driver.whisper(&host.uuid(), end("OTHER").encode()).unwrap();
        driver.whisper(&host.uuid(), snap.encode()).unwrap();
        driver.whisper(&host.uuid(), end("KV").encode()).unwrap();
        let (changes, _) = run(&mut replica, host, &drivers, |replica, _, _| {
            replica.is_synced()
        });
        assert!(changes.contains(&Change::Synced {
            source: Some(driver.uuid()),
            snapshot: 2,
            queued: 1
        }));
        assert_eq!(
            replica.entries().collect::<Vec<_>>(),
            [("/a", &b"new"[..]), ("/b", &b"b"[..])]
        );
        assert_eq!(replica.get("/a"), Some(&b"new"[..]));
        assert_eq!(replica.get("/x"), None, "another group's update");
        crate::log_limit::captured::install();
        assert_eq!(replica.next_timeout(), None);
        // Synced: a peer's update applies at once. (A shouted KVGET is
        // refused, and said.)
        driver.shout("KV", get("KV", "/").encode()).unwrap();
        driver
            .shout("KV", KvMessage::Pub(up("/d", 7, 9, "d")).encode())
            .unwrap();
        run(&mut replica, host, &drivers, |_, changes, _| {
            changes
                .iter()
                .any(|c| matches!(c, Change::Applied { update, .. } if update.key == "/d"))
        });
        let refused = format!("from {}: only KVPUB may be shouted", hex(&driver.uuid()));
        assert_eq!(crate::log_limit::captured::lines_with(&refused).len(), 1);

        // Serving: a KVGET of another group is not ours; one of ours gets
        // the entries and KVEND; a second one at once is dropped (at most
        // one per GET_INTERVAL per peer).
        driver
            .whisper(&host.uuid(), get("OTHER", "/a/").encode())
            .unwrap();
        driver
            .whisper(&host.uuid(), get("KV", "/").encode())
            .unwrap();
        driver
            .whisper(&host.uuid(), get("KV", "/").encode())
            .unwrap();
        let (_, got) = run(&mut replica, host, &drivers, |_, _, got| {
            got[0].iter().any(|m| matches!(m, KvMessage::End { .. }))
        });
        let served: Vec<&str> = got[0]
            .iter()
            .filter_map(|m| match m {
                KvMessage::Snap { updates, .. } => Some(updates),
                _ => None,
            })
            .flatten()
            .map(|u| u.key.as_str())
            .collect();
        assert_eq!(served, ["/a", "/b", "/d"]);
        // Writes are shouted with the next Lamport clock; then the second
        // KVGET has had its chance to be (wrongly) answered.
        let written = replica.set("/c", "c").unwrap();
        assert_eq!(written.version.clock, 8);
        assert_eq!(written.version.origin, host.uuid());
        assert!(replica.set("/c", "").is_err(), "a delete says so");
        replica.delete("/c").unwrap();
        let (_, got) = run(&mut replica, host, &drivers, |_, _, got| {
            got[0]
                .iter()
                .any(|m| matches!(m, KvMessage::Pub(u) if u.key == "/c" && u.value.is_empty()))
        });
        assert_eq!(
            got[0].first(),
            Some(&KvMessage::Pub(written)),
            "the second KVGET was answered: {got:?}"
        );
        assert_eq!(replica.get("/c"), None);

        // A member that joins is sent our map (anti-entropy) ...
        driver.leave("KV").unwrap();
        driver.join("KV").unwrap();
        let (_, got) = run(&mut replica, host, &drivers, |_, _, got| {
            got[0].iter().any(|m| matches!(m, KvMessage::End { .. }))
        });
        let ends: Vec<u64> = got[0]
            .iter()
            .filter_map(|m| match m {
                KvMessage::End { count, .. } => Some(*count),
                _ => None,
            })
            .collect();
        assert_eq!(ends, [4], "one snapshot (three keys and a tombstone)");
        // ... but not one that joins another group. (The driver's KVPUB
        // after its JOIN is applied, so the JOIN has been seen; then our
        // KVPUB comes after anything the JOIN made us send.)
        driver.join("THIRD").unwrap();
        driver
            .shout("KV", KvMessage::Pub(up("/y", 20, 9, "y")).encode())
            .unwrap();
        run(&mut replica, host, &drivers, |_, changes, _| {
            changes
                .iter()
                .any(|c| matches!(c, Change::Applied { update, .. } if update.key == "/y"))
        });
        replica.set("/z", "z").unwrap();
        let (_, got) = run(&mut replica, host, &drivers, |_, _, got| {
            got[0]
                .iter()
                .any(|m| matches!(m, KvMessage::Pub(u) if u.key == "/z"))
        });
        assert!(
            matches!(&got[0][..], [KvMessage::Pub(_)]),
            "sent on a JOIN of another group: {got:?}"
        );
    }

    /// A source that never answers is asked [`MAX_REQUESTS`] times, then
    /// the replica goes on without a snapshot. When the host is the mediator
    /// each attempt asks the next member; else every one asks the mediator.
    #[test]
    fn a_silent_source_is_asked_three_times_then_the_replica_goes_on() {
        let short = Timing {
            settle: Duration::from_millis(100),
            request: Duration::from_millis(150),
        };
        for (host_rank, expected) in [(0, [0, 1, 2]), (3, [0, 0, 0])] {
            let context = zmq::Context::new();
            let mut nodes = nodes(&context, 5855, 4);
            let host = nodes.remove(host_rank);
            for driver in &nodes {
                driver.join("KV").unwrap();
                await_join(&host, driver.uuid(), "KV");
            }
            let drivers: Vec<&Node> = nodes.iter().collect();
            let started = Instant::now();
            let mut replica = Replica::new(&host, "KV", "/", short).unwrap();
            // Which driver got each KVGET, in order (they are 150 ms apart).
            let (mut order, mut seen, mut took) = (Vec::new(), [0; 3], None);
            let (changes, _) = run(&mut replica, &host, &drivers, |replica, _, got| {
                for (driver, got) in got.iter().enumerate() {
                    while seen[driver] < gets(got) {
                        order.push(driver);
                        seen[driver] += 1;
                    }
                }
                if replica.is_synced() && took.is_none() {
                    took = Some(started.elapsed());
                }
                replica.is_synced() && order.len() >= MAX_REQUESTS as usize
            });
            assert_eq!(
                changes,
                [Change::Synced {
                    source: None,
                    snapshot: 0,
                    queued: 0
                }]
            );
            // 100 ms of settling, then three requests 150 ms apart.
            let took = took.unwrap();
            assert!(
                took >= Duration::from_millis(540) && took < Duration::from_millis(3000),
                "{took:?}"
            );
            assert_eq!(order, expected, "who was asked, host rank {host_rank}");
        }
    }

    /// A source that leaves the group or exits is replaced at once, not
    /// after the request timer.
    #[test]
    fn a_source_that_goes_away_is_replaced_at_once() {
        let context = zmq::Context::new();
        let mut nodes = nodes(&context, 5856, 3);
        // The host has the highest UUID: the mediator is the first driver.
        let host = nodes.pop().unwrap();
        for driver in &nodes {
            driver.join("OTHER").unwrap();
            driver.join("KV").unwrap();
            await_join(&host, driver.uuid(), "KV");
        }
        let slow = Timing {
            settle: Duration::from_millis(100),
            request: Duration::from_secs(5),
        };
        let mut replica = Replica::new(&host, "KV", "/", slow).unwrap();
        let drivers = [&nodes[0], &nodes[1]];
        let (_, got) = run(&mut replica, &host, &drivers, |_, _, got| gets(&got[0]) > 0);
        assert_eq!(gets(&got[1]), 0, "the mediator is asked");
        // A snapshot from a member that is not the source is queued like
        // updates, not taken as the snapshot (its KVEND ends nothing).
        let from_other = KvMessage::Snap {
            group: "KV".into(),
            subtree: "/".into(),
            updates: vec![up("/n", 1, 9, "n")],
        };
        let end = KvMessage::End {
            group: "KV".into(),
            subtree: "/".into(),
            count: 1,
        };
        nodes[1].whisper(&host.uuid(), from_other.encode()).unwrap();
        nodes[1].whisper(&host.uuid(), end.encode()).unwrap();
        // The mediator leaving another group changes nothing: its KVGET,
        // read after, is answered, and nothing was asked of it before.
        nodes[0].leave("OTHER").unwrap();
        nodes[0]
            .whisper(&host.uuid(), get("KV", "/").encode())
            .unwrap();
        let (_, served) = run(&mut replica, &host, &drivers, |_, _, got| {
            got[0].iter().any(|m| matches!(m, KvMessage::End { .. }))
        });
        assert_eq!(
            gets(&got[0]) + gets(&served[0]),
            1,
            "asked again when it left another group: {served:?}"
        );
        // Then it leaves ours: the next one is asked at once.
        let left = Instant::now();
        nodes[0].leave("KV").unwrap();
        let (_, more) = run(&mut replica, &host, &drivers, |_, _, got| gets(&got[1]) > 0);
        let asked = left.elapsed();
        assert!(asked < Duration::from_secs(2), "{asked:?}");
        // It exits: nobody is left to ask, so the replica goes on.
        let exited = Instant::now();
        nodes[1].stop().unwrap();
        let (changes, last) = run(&mut replica, &host, &drivers, |replica, _, _| {
            replica.is_synced()
        });
        let went_on = exited.elapsed();
        assert_eq!(
            gets(&got[0]) + gets(&served[0]) + gets(&more[0]) + gets(&last[0]),
            1,
            "the mediator was asked again after it left"
        );
        assert!(went_on < Duration::from_secs(2), "{went_on:?}");
        assert!(
            changes.contains(&Change::Synced {
                source: None,
                snapshot: 0,
                queued: 1
            }),
            "{changes:?}"
        );
        assert_eq!(replica.get("/n"), Some(&b"n"[..]));
    }
}
