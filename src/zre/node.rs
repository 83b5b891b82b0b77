//! The ZRE [`Node`]: a zyre-like peer on a background thread (an
//! [`Actor`]), wire-compatible with zyre and pyre (RFC 36, spec §10).
//!
//! **The API.** [`Node::new`] makes the node (its UUID, its name) and starts
//! its thread; [`start`](Node::start) binds the mailbox and begins to beacon;
//! [`join`](Node::join)/[`leave`](Node::leave) groups,
//! [`whisper`](Node::whisper) to a peer, [`shout`](Node::shout) to a group;
//! [`peers`](Node::peers), [`peer_name`](Node::peer_name) … ask what the node
//! knows; [`recv`](Node::recv) gives the [`Event`]s (ENTER, JOIN, WHISPER …).
//! Every method is a request on the actor's pipe with a reply, so when it
//! returns the node has done it. Events come on a second pipe
//! ([`socket`](Node::socket), to poll beside other sockets), as zyre has an
//! `inbox` beside its actor: a reply never waits behind events, and events
//! are never lost to a method waiting for its reply.
//!
//! **Discovery and connections** (§10.1–§10.2). The node beacons
//! `ZRE 01 <uuid> <port>` (a [`wire::Beacon`]) through the
//! [`Beacon`](crate::beacon::Beacon) actor every `interval`. Its mailbox is a
//! ROUTER bound on the first free port found from a random start in
//! 49152–65535 (CZMQ's range, [`EPHEMERAL_PORTS`]) on the interface address
//! ([`mailbox_ip`]): `127.0.0.1` for the default loopback broadcast. For each
//! peer it learns of (a beacon from a new UUID, or a HELLO) it opens one
//! DEALER with routing id `01 <own uuid>`, `SNDTIMEO` 0 and a send HWM of
//! [`PEER_SEND_HWM`], connects to the peer's mailbox and sends HELLO first.
//! A send that would block (`EAGAIN`: the peer does not read) removes that
//! peer, as chapter 8 says of a blocked peer: the node never waits for one
//! peer. It comes back with its next beacon. The ROUTER drops messages whose
//! routing id is not 17 bytes.
//!
//! **Gossip instead of beacons** (`gossip_bind`, `gossip_connect`; zyre's
//! gossip mode): where broadcast does not reach, the node sends no beacons
//! but publishes `<uuid hex> → <mailbox endpoint>` in the gossip network of
//! [`gossip`](super::gossip) (CZMQ's zgossip) and connects to each node a
//! tuple names, exactly as if its beacon had been heard. With no port-0
//! beacon to leave by, [`stop`](Node::stop) sends each peer GOODBYE, which
//! removes us at once; a removed peer's tuple is forgotten, so it is found
//! again if it comes back.
//!
//! **CURVE** ([`NodeCurve`], zyre's secure mode): the mailbox is a CURVE
//! server, beacons are version 3 ([`wire::SecureBeacon`], our public key
//! after the port), HELLO carries the key in [`PUBLIC_KEY_HEADER`] and the
//! gossip value is `endpoint|key`; each peer DEALER is a CURVE client with
//! the key the peer gave. A peer that gives no key is ignored, never spoken
//! to in plain text; plain and CURVE nodes do not see each other. With a
//! trust list only the listed keys: others are neither connected to nor let
//! in (the ZAP handler of [`crate::curve`] in the node's context, so one
//! node with a trust list per context). Our gossip sockets stay plain (zyre
//! makes them CURVE too): a gossip tuple only names an endpoint and a key,
//! and the connection it leads to is CURVE.
//!
//! **The rules** (§10.4) are in [`Peer`]: HELLO first, sequence numbers
//! exactly one more each time, the status byte on JOIN/LEAVE. A peer that
//! breaks one is removed (EXIT) and taken back when it says HELLO again or
//! its next beacon arrives, as is a peer that expired. A HELLO from a peer we
//! know already replaces it (EXIT, then ENTER). A port-0 beacon removes the
//! peer at once; [`stop`](Node::stop) (and dropping the node) sends one.
//!
//! **Silence** (§10.5): a peer silent for `evasive` (5 s) gets a PING and is
//! reported EVASIVE, then SILENT if it has not answered within a reap
//! interval, and is removed (EXIT) when silent for `expired` (30 s). Only ZRE
//! messages count as life (zyre since 2017), so the node answers every PING.
//!
//! **The mediator.** For each group the node is in, the *leader* is the
//! member with the smallest UUID among the node itself and the ready peers it
//! sees in that group. Every node that sees the same members computes the same
//! leader, without messages; when membership changes (a JOIN, a LEAVE, a
//! peer gone or back) it is recomputed and [`Event::Leader`] reports a
//! change. zyre elects by messages (ELECT/LEADER, an echo-wave election among
//! the nodes that called `zyre_set_contest_in_group`), and its winner is the
//! challenger whose UUID string compares smallest (`strcmp`); UUIDs as
//! uppercase hex sort like the bytes, so with every member contesting, zyre's
//! leader is ours. We never contest (pyre does not know ELECT), but we take
//! part in zyre's waves as its non-contesting nodes do (`Election`: pass a
//! better challenger's ELECT on, echo it to where it came from once every
//! member has sent it, pass LEADER on once), so zyre nodes that contest in a
//! group we are in finish their election. Where only some zyre members
//! contest, their leader is the smallest *contestant* and may differ from
//! our mediator (the smallest member).
//!
//! **Bounds.** Everything a peer can make us keep is bounded: at most
//! [`MAX_PEERS`] peers (new ones past that are ignored, with one warning);
//! per peer at most [`wire::MAX_GROUPS`] groups and [`wire::MAX_HEADERS`]
//! headers; every inbound frame at most `max_frame_size` (the ROUTER's
//! `MAXMSGSIZE`, 1 MiB by default) and every message at most
//! [`wire::MAX_CONTENT_FRAMES`] content frames (the rest is read and thrown
//! away); at most [`READ_BATCH`] messages and beacons per wake-up, so a flood
//! cannot starve the timers; events for an owner that does not read are
//! dropped past [`EVENT_QUEUE`] (counted, logged at 1, 2, 4 … drops). A HELLO
//! must name a `tcp://<ip>:<port>` endpoint, so a peer cannot make us connect
//! to `inproc://` or `ipc://` endpoints of this process. Logs about bad input
//! go through [`log_limit::complain`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};

use super::gossip::Gossip;
use super::peer::{Alarm, Outcome, Peer, Timing};
use super::wire::{self, Command, Headers, Uuid};
use crate::actor::{self, Actor, Pipe};
use crate::beacon::Beacon;
use crate::interface::hex;
use crate::interrupt::{self, Pollable};
use crate::message::show;
use crate::{log_limit, socket, udp, Error, Message};

/// The UDP port of ZRE beacons (IANA "ZRE-DISC").
pub const DEFAULT_PORT: u16 = 5670;
/// How often the node beacons by default (CZMQ `zbeacon`'s interval).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// Where the mailbox port is looked for (CZMQ's dynamic range).
pub const EPHEMERAL_PORTS: RangeInclusive<u16> = 0xC000..=0xFFFF;
/// The most peers a node follows.
pub const MAX_PEERS: usize = 10_000;
/// Messages queued for one peer before a send would block (and the peer is
/// removed); RFC 36 suggests about 3,000 (zyre sets 3,000,000).
pub const PEER_SEND_HWM: i32 = 3000;
/// Events queued for the owner before new ones are dropped.
pub const EVENT_QUEUE: i32 = 10_000;
/// Messages (and beacons) read per wake-up at most.
pub const READ_BATCH: usize = 1000;

/// How a node is set up; [`NodeConfig::default`] gives zyre's defaults on
/// the loopback broadcast address.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name; `None` gives the first 6 hex digits of its UUID.
    pub name: Option<String>,
    /// Headers sent in HELLO (e.g. `X-FILEMQ` → a service endpoint).
    pub headers: Headers,
    /// The UDP beacon port.
    pub port: u16,
    /// Where beacons go.
    pub broadcast: Ipv4Addr,
    /// How often to beacon.
    pub interval: Duration,
    /// The evasive and expired timeouts.
    pub timing: Timing,
    /// The address to bind the mailbox on; `None` derives it from the
    /// broadcast address ([`mailbox_ip`]).
    pub interface: Option<Ipv4Addr>,
    /// The largest inbound frame (`MAXMSGSIZE` on the mailbox).
    pub max_frame_size: i64,
    /// Gossip discovery: where our zgossip server listens
    /// (`tcp://<ip>:<port>`). With this or `gossip_connect` the node does not
    /// beacon: peers are learnt from the gossip network (zyre's rule).
    pub gossip_bind: Option<String>,
    /// Gossip discovery: the zgossip servers to connect to (seeds).
    pub gossip_connect: Vec<String>,
    /// CURVE between nodes (zyre's secure mode); `None`: plain ZRE v2.
    pub curve: Option<NodeCurve>,
}

/// CURVE between nodes, as zyre does it: our mailbox is a CURVE server with
/// our key pair; we beacon version 3 (our public key in the beacon), give
/// the key in HELLO's `X-PUBLICKEY` header and after a `|` in our gossip
/// value; and we connect to each peer as a CURVE client with the key it
/// gave. A peer that gives no key is ignored (no downgrade to plain text).
#[derive(Clone, Debug)]
pub struct NodeCurve {
    /// Our key pair (the secret key is needed).
    pub keys: crate::curve::Keys,
    /// When set, only these public keys: we connect to no one else, and our
    /// mailbox admits no one else (a ZAP handler in the node's context).
    /// `None`: any peer that gives a key — private against listeners, but
    /// anyone can join.
    pub trusted: Option<HashSet<[u8; 32]>>,
}

/// The HELLO header that carries a node's CURVE public key (Z85), as zyre
/// names it.
pub const PUBLIC_KEY_HEADER: &str = "X-PUBLICKEY";

impl NodeConfig {
    /// True when peers are found by gossip instead of beacons.
    pub fn gossip(&self) -> bool {
        self.gossip_bind.is_some() || !self.gossip_connect.is_empty()
    }

    /// How peers are found, for a program's first log line: `beacons to
    /// <broadcast>:<port> every <n> ms`, or `gossip (server <endpoint>,
    /// seeds <endpoint> …)`.
    pub fn discovery(&self) -> String {
        if !self.gossip() {
            return format!(
                "beacons to {}:{} every {} ms",
                self.broadcast,
                self.port,
                self.interval.as_millis()
            );
        }
        let mut parts = Vec::new();
        if let Some(bind) = &self.gossip_bind {
            parts.push(format!("server {bind}"));
        }
        if !self.gossip_connect.is_empty() {
            parts.push(format!("seeds {}", self.gossip_connect.join(" ")));
        }
        format!("gossip ({})", parts.join(", "))
    }
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            name: None,
            headers: Headers::new(),
            port: DEFAULT_PORT,
            broadcast: udp::DEFAULT_BROADCAST,
            interval: DEFAULT_INTERVAL,
            timing: Timing::default(),
            interface: None,
            max_frame_size: socket::DEFAULT_MAX_MESSAGE_SIZE,
            gossip_bind: None,
            gossip_connect: Vec::new(),
            curve: None,
        }
    }
}

/// The address to bind the mailbox on for beacons sent to `broadcast`: a
/// receiver connects back to the address a beacon came from, so it is the
/// address of the interface the beacons leave by. `127.0.0.1` for a
/// loopback broadcast; else the interface whose broadcast address it is;
/// else (`255.255.255.255`) the first interface with a broadcast address
/// that is not loopback; else `127.0.0.1`.
pub fn mailbox_ip(broadcast: Ipv4Addr) -> Ipv4Addr {
    if broadcast.is_loopback() {
        return Ipv4Addr::LOCALHOST;
    }
    let list = udp::interfaces().unwrap_or_default();
    list.iter()
        .find(|i| i.broadcast == Some(broadcast))
        .or_else(|| {
            list.iter()
                .find(|i| !i.address.is_loopback() && i.broadcast.is_some())
        })
        .map_or(Ipv4Addr::LOCALHOST, |i| i.address)
}

/// What happened, as the node reports it ([`Node::recv`]); zyre's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer said HELLO; `address` is the mailbox endpoint it gave.
    Enter {
        peer: Uuid,
        name: String,
        headers: Headers,
        address: String,
    },
    /// A peer is gone (left, expired, broke a rule, or we stopped).
    Exit { peer: Uuid, name: String },
    /// A peer joined a group (also once per group listed in its HELLO).
    Join {
        peer: Uuid,
        name: String,
        group: String,
    },
    /// A peer left a group.
    Leave {
        peer: Uuid,
        name: String,
        group: String,
    },
    /// A message for us.
    Whisper {
        peer: Uuid,
        name: String,
        content: Vec<Vec<u8>>,
    },
    /// A message to a group.
    Shout {
        peer: Uuid,
        name: String,
        group: String,
        content: Vec<Vec<u8>>,
    },
    /// A peer has been silent for the evasive timeout; we sent it a PING.
    Evasive { peer: Uuid, name: String },
    /// A peer has not answered our PING.
    Silent { peer: Uuid, name: String },
    /// The leader of a group we are in is now `peer` (maybe ourselves).
    Leader {
        group: String,
        peer: Uuid,
        name: String,
    },
    /// The node has stopped.
    Stop,
}

/// What the node knows of one peer ([`Node::peer_info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: String,
    /// The mailbox endpoint its HELLO gave.
    pub address: String,
    pub headers: Headers,
    pub groups: Vec<String>,
}

/// A ZRE node; see the module docs.
pub struct Node {
    actor: Actor,
    events: zmq::Socket,
    uuid: Uuid,
    name: String,
}

impl Node {
    /// Makes a node with a new random UUID and starts its thread (not yet
    /// beaconing: see [`start`](Node::start)). Fails if the name or a header
    /// does not fit in a HELLO.
    pub fn new(context: &zmq::Context, mut config: NodeConfig) -> Result<Node, Error> {
        if let Some(curve) = &config.curve {
            if curve.keys.secret.is_none() {
                return Err(Error::Protocol("CURVE needs our secret key".into()));
            }
            config
                .headers
                .insert(PUBLIC_KEY_HEADER.into(), curve.keys.public_text());
        }
        let mut uuid = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut uuid);
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| hex(&uuid)[..6].to_string());
        // A HELLO with our name and headers must encode.
        wire::Message {
            sequence: 1,
            command: Command::Hello {
                endpoint: String::new(),
                groups: Vec::new(),
                status: 0,
                name: name.clone(),
                headers: config.headers.clone(),
            },
        }
        .encode()?;

        static EVENT_PIPES: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!(
            "inproc://zguide-zre-events-{}-{}",
            std::process::id(),
            EVENT_PIPES.fetch_add(1, Ordering::Relaxed)
        );
        let events = context.socket(zmq::PAIR)?;
        events.set_linger(0)?;
        events.set_rcvhwm(EVENT_QUEUE)?;
        events.bind(&endpoint)?;
        let outbox = context.socket(zmq::PAIR)?;
        outbox.set_linger(0)?;
        outbox.set_sndhwm(EVENT_QUEUE)?;
        outbox.connect(&endpoint)?;

        let agent_name = name.clone();
        let actor = Actor::new(context, move |pipe| {
            let mut agent = Agent::new(pipe.context().clone(), uuid, agent_name, config, outbox);
            if let Err(e) = agent.run(pipe) {
                log::error!("ZRE node stopped: {e}");
                agent.stop();
            }
        })?;
        Ok(Node {
            actor,
            events,
            uuid,
            name,
        })
    }

    /// Our UUID.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Our name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Binds the mailbox, starts beaconing, and returns the mailbox endpoint
    /// (`tcp://<ip>:<port>`). Starting a started node does nothing.
    pub fn start(&self) -> Result<String, Error> {
        let mut reply = self.request(vec![b"START".to_vec()])?;
        reply
            .pop_string()
            .ok_or_else(|| Error::Protocol("ZRE node: no endpoint".into()))
    }

    /// Says goodbye (a port-0 beacon), closes every peer connection (an EXIT
    /// event for each peer that had entered) and the mailbox, then reports
    /// [`Event::Stop`]. Our groups are kept for the next start.
    pub fn stop(&self) -> Result<(), Error> {
        self.request(vec![b"STOP".to_vec()]).map(|_| ())
    }

    /// The mailbox endpoint while started.
    pub fn endpoint(&self) -> Result<Option<String>, Error> {
        Ok(self.request(vec![b"ENDPOINT".to_vec()])?.pop_string())
    }

    /// Joins `group` (at most 255 bytes; at most [`wire::MAX_GROUPS`]
    /// groups); joining a group we are in does nothing.
    pub fn join(&self, group: &str) -> Result<(), Error> {
        wire::check_string("group", group)?;
        self.request(vec![b"JOIN".to_vec(), group.into()])
            .map(|_| ())
    }

    /// Leaves `group`; leaving a group we are not in does nothing.
    pub fn leave(&self, group: &str) -> Result<(), Error> {
        wire::check_string("group", group)?;
        self.request(vec![b"LEAVE".to_vec(), group.into()])
            .map(|_| ())
    }

    /// Sends `content` to `peer` alone: true if it was queued, false if we
    /// do not know the peer (or it was just removed for not reading).
    pub fn whisper(&self, peer: &Uuid, content: Vec<Vec<u8>>) -> Result<bool, Error> {
        check_content(&content)?;
        let mut frames = vec![b"WHISPER".to_vec(), peer.to_vec()];
        frames.extend(content);
        let mut reply = self.request(frames)?;
        Ok(reply.pop().as_deref() == Some(b"1"))
    }

    /// Sends `content` to every peer in `group` (we need not be in it);
    /// returns how many peers it was queued for.
    pub fn shout(&self, group: &str, content: Vec<Vec<u8>>) -> Result<usize, Error> {
        wire::check_string("group", group)?;
        check_content(&content)?;
        let mut frames = vec![b"SHOUT".to_vec(), group.into()];
        frames.extend(content);
        let mut reply = self.request(frames)?;
        Ok(reply
            .pop_string()
            .and_then(|count| count.parse().ok())
            .unwrap_or(0))
    }

    /// The peers that have entered (said HELLO), in UUID order.
    pub fn peers(&self) -> Result<Vec<Uuid>, Error> {
        uuids(self.request(vec![b"PEERS".to_vec()])?)
    }

    /// The peers in `group`, in UUID order.
    pub fn peers_by_group(&self, group: &str) -> Result<Vec<Uuid>, Error> {
        uuids(self.request(vec![b"PEERS".to_vec(), group.into()])?)
    }

    /// What we know of `peer`, if it has entered.
    pub fn peer_info(&self, peer: &Uuid) -> Result<Option<PeerInfo>, Error> {
        let reply = self.request(vec![b"PEER".to_vec(), peer.to_vec()])?;
        let mut frames = reply.into_frames().into_iter().map(lossy);
        let (Some(name), Some(address), Some(count)) =
            (frames.next(), frames.next(), frames.next())
        else {
            return Ok(None);
        };
        let count: usize = count.parse().unwrap_or(0);
        let mut headers = Headers::new();
        for _ in 0..count {
            if let (Some(key), Some(value)) = (frames.next(), frames.next()) {
                headers.insert(key, value);
            }
        }
        Ok(Some(PeerInfo {
            name,
            address,
            headers,
            groups: frames.collect(),
        }))
    }

    /// The name `peer` gave in its HELLO.
    pub fn peer_name(&self, peer: &Uuid) -> Result<Option<String>, Error> {
        Ok(self.peer_info(peer)?.map(|info| info.name))
    }

    /// One header of `peer`'s HELLO.
    pub fn peer_header(&self, peer: &Uuid, key: &str) -> Result<Option<String>, Error> {
        Ok(self
            .peer_info(peer)?
            .and_then(|mut info| info.headers.remove(key)))
    }

    /// The mailbox endpoint `peer` gave in its HELLO.
    pub fn peer_address(&self, peer: &Uuid) -> Result<Option<String>, Error> {
        Ok(self.peer_info(peer)?.map(|info| info.address))
    }

    /// The groups we are in, sorted.
    pub fn own_groups(&self) -> Result<Vec<String>, Error> {
        strings(self.request(vec![b"GROUPS".to_vec()])?)
    }

    /// The groups our peers are in, sorted.
    pub fn peer_groups(&self) -> Result<Vec<String>, Error> {
        strings(self.request(vec![b"PEER GROUPS".to_vec()])?)
    }

    /// The leader of `group`, if we are in it (see the module docs).
    pub fn leader(&self, group: &str) -> Result<Option<Uuid>, Error> {
        Ok(uuids(self.request(vec![b"LEADER".to_vec(), group.into()])?)?.pop())
    }

    /// The next event (waits; Ctrl-C gives `Error::Interrupted`).
    pub fn recv(&self) -> Result<Event, Error> {
        Event::from_message(Message::recv(&self.events)?)
    }

    /// The next event within `timeout`, if any.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Event>, Error> {
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        match Message::recv_timeout(&self.events, ms)? {
            Some(msg) => Event::from_message(msg).map(Some),
            None => Ok(None),
        }
    }

    /// The event pipe, to poll beside other sockets; read it with
    /// [`recv`](Node::recv).
    pub fn socket(&self) -> &zmq::Socket {
        &self.events
    }

    /// Sends a request to the agent and returns the reply's frames after `OK`.
    fn request(&self, frames: Vec<Vec<u8>>) -> Result<Message, Error> {
        self.actor.send(Message::from_frames(frames))?;
        let mut reply = self.actor.recv()?;
        match reply.pop().as_deref() {
            Some(b"OK") => Ok(reply),
            Some(b"ERR") => Err(Error::Protocol(reply.pop_string().unwrap_or_default())),
            // The task's exit signal: it has ended.
            _ => Err(Error::ActorEnded),
        }
    }
}

/// The agent's `ERR` reply for `e`. [`Node::request`] makes its text an
/// [`Error::Protocol`] again, so a protocol error sends its reason alone
/// (the caller would otherwise read "protocol error: protocol error: …").
fn refused(e: Error) -> Message {
    let text = match e {
        Error::Protocol(why) => why,
        other => other.to_string(),
    };
    Message::from_frames([b"ERR".to_vec(), text.into_bytes()])
}

fn check_content(content: &[Vec<u8>]) -> Result<(), Error> {
    if content.len() > wire::MAX_CONTENT_FRAMES {
        return Err(wire::EncodeError::TooMany {
            field: "content frames",
            count: content.len(),
            max: wire::MAX_CONTENT_FRAMES,
        }
        .into());
    }
    Ok(())
}

fn lossy(frame: Vec<u8>) -> String {
    String::from_utf8(frame).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn uuid_of(frame: Option<Vec<u8>>) -> Result<Uuid, Error> {
    frame
        .and_then(|f| Uuid::try_from(f.as_slice()).ok())
        .ok_or_else(|| Error::Protocol("ZRE node: bad UUID frame".into()))
}

fn uuids(reply: Message) -> Result<Vec<Uuid>, Error> {
    reply
        .into_frames()
        .into_iter()
        .map(|f| uuid_of(Some(f)))
        .collect()
}

fn strings(reply: Message) -> Result<Vec<String>, Error> {
    Ok(reply.into_frames().into_iter().map(lossy).collect())
}

fn text(frames: &mut impl Iterator<Item = Vec<u8>>) -> String {
    lossy(frames.next().unwrap_or_default())
}

impl Event {
    /// The event as frames on the event pipe: its kind, the peer's UUID and
    /// name, then its other fields (content last).
    fn into_message(self) -> Message {
        let head = |kind: &str, peer: Uuid, name: String| {
            vec![kind.as_bytes().to_vec(), peer.to_vec(), name.into_bytes()]
        };
        let frames = match self {
            Event::Enter {
                peer,
                name,
                headers,
                address,
            } => {
                let mut frames = head("ENTER", peer, name);
                frames.push(address.into_bytes());
                for (key, value) in headers {
                    frames.push(key.into_bytes());
                    frames.push(value.into_bytes());
                }
                frames
            }
            Event::Exit { peer, name } => head("EXIT", peer, name),
            Event::Join { peer, name, group } => {
                let mut frames = head("JOIN", peer, name);
                frames.push(group.into_bytes());
                frames
            }
            Event::Leave { peer, name, group } => {
                let mut frames = head("LEAVE", peer, name);
                frames.push(group.into_bytes());
                frames
            }
            Event::Whisper {
                peer,
                name,
                content,
            } => {
                let mut frames = head("WHISPER", peer, name);
                frames.extend(content);
                frames
            }
            Event::Shout {
                peer,
                name,
                group,
                content,
            } => {
                let mut frames = head("SHOUT", peer, name);
                frames.push(group.into_bytes());
                frames.extend(content);
                frames
            }
            Event::Evasive { peer, name } => head("EVASIVE", peer, name),
            Event::Silent { peer, name } => head("SILENT", peer, name),
            Event::Leader { group, peer, name } => {
                let mut frames = head("LEADER", peer, name);
                frames.push(group.into_bytes());
                frames
            }
            Event::Stop => vec![b"STOP".to_vec()],
        };
        Message::from_frames(frames)
    }

    /// The event in frames from the event pipe.
    fn from_message(msg: Message) -> Result<Event, Error> {
        let mut frames = msg.into_frames().into_iter();
        let kind = frames.next().unwrap_or_default();
        if kind == b"STOP" {
            return Ok(Event::Stop);
        }
        let peer = uuid_of(frames.next())?;
        let name = text(&mut frames);
        Ok(match kind.as_slice() {
            b"ENTER" => {
                let address = text(&mut frames);
                let mut headers = Headers::new();
                while let (Some(key), Some(value)) = (frames.next(), frames.next()) {
                    headers.insert(lossy(key), lossy(value));
                }
                Event::Enter {
                    peer,
                    name,
                    headers,
                    address,
                }
            }
            b"EXIT" => Event::Exit { peer, name },
            b"JOIN" => Event::Join {
                peer,
                name,
                group: text(&mut frames),
            },
            b"LEAVE" => Event::Leave {
                peer,
                name,
                group: text(&mut frames),
            },
            b"WHISPER" => Event::Whisper {
                peer,
                name,
                content: frames.collect(),
            },
            b"SHOUT" => Event::Shout {
                peer,
                name,
                group: text(&mut frames),
                content: frames.collect(),
            },
            b"EVASIVE" => Event::Evasive { peer, name },
            b"SILENT" => Event::Silent { peer, name },
            b"LEADER" => Event::Leader {
                peer,
                name,
                group: text(&mut frames),
            },
            _ => return Err(Error::Protocol(format!("ZRE node: event {}", show(&kind)))),
        })
    }
}

// ---------------------------------------------------------------------------
// The agent: the node's thread

/// A peer and our connection to it.
struct Link {
    peer: Peer,
    dealer: zmq::Socket,
}

/// The node's state, owned by its thread.
struct Agent {
    context: zmq::Context,
    uuid: Uuid,
    name: String,
    config: NodeConfig,
    /// Our end of the event pipe.
    outbox: zmq::Socket,
    /// While started: the ROUTER, its endpoint, the beacon.
    mailbox: Option<zmq::Socket>,
    endpoint: Option<String>,
    beacon: Option<Beacon>,
    /// In gossip mode, instead of the beacon.
    gossip: Option<Gossip>,
    /// With a CURVE trust list: the ZAP handler of our context.
    authenticator: Option<crate::curve::Authenticator>,
    /// Peers refused for an untrusted key, so each is logged once.
    refused: HashSet<Uuid>,
    peers: HashMap<Uuid, Link>,
    own_groups: BTreeSet<String>,
    /// Our count of JOINs and LEAVEs, mod 256.
    status: u8,
    /// The leader of each of our groups, as last reported.
    leaders: BTreeMap<String, Uuid>,
    /// zyre's elections we take part in, by group (see [`Election`]).
    elections: HashMap<String, Election>,
    events_dropped: log_limit::Sparse,
    warned_full: bool,
}

/// One group's zyre election as a node that does not contest sees it
/// (zyre's `zyre_election`, an echo wave): the *current active wave* (the
/// best challenger so far, a UUID in 32 uppercase hex digits; zyre compares
/// them with `strcmp`, which is `String`'s order), the peer it came from
/// first (the *father*), and how many ELECT and LEADER messages of that wave
/// came in. Each member of the group sends each other member one ELECT per
/// wave; a node that has heard it from all of them echoes it to its father.
#[derive(Debug, Default)]
struct Election {
    caw: Option<String>,
    father: Option<Uuid>,
    elect_count: usize,
    leader_count: usize,
}

/// What a mailbox read gave.
enum Inbound {
    /// Nothing waiting.
    None,
    /// A message, cut to at most [`MAX_FRAMES`] frames (`complete` false
    /// if it had more).
    Message {
        frames: Vec<Vec<u8>>,
        complete: bool,
    },
}

/// Turns of every agent's loop in this process, for the test that an idle
/// node sleeps between its timers.
#[cfg(test)]
static AGENT_TURNS: AtomicU64 = AtomicU64::new(0);

/// Frames kept of one inbound message: routing id, frame 0, content.
const MAX_FRAMES: usize = 2 + wire::MAX_CONTENT_FRAMES;

impl Agent {
    fn new(
        context: zmq::Context,
        uuid: Uuid,
        name: String,
        config: NodeConfig,
        outbox: zmq::Socket,
    ) -> Agent {
        Agent {
            context,
            uuid,
            name,
            config,
            outbox,
            mailbox: None,
            endpoint: None,
            beacon: None,
            gossip: None,
            authenticator: None,
            refused: HashSet::new(),
            peers: HashMap::new(),
            own_groups: BTreeSet::new(),
            status: 0,
            leaders: BTreeMap::new(),
            elections: HashMap::new(),
            events_dropped: log_limit::Sparse::default(),
            warned_full: false,
        }
    }

    /// The loop: requests from the owner, messages from peers, beacons, and
    /// the timers every reap interval, until `$TERM` or Ctrl-C.
    fn run(&mut self, pipe: &Pipe) -> Result<(), Error> {
        pipe.signal(0)?;
        let reap = self
            .config
            .timing
            .reap_interval()
            .max(Duration::from_millis(10));
        let mut reap_at = Instant::now() + reap;
        loop {
            #[cfg(test)]
            AGENT_TURNS.fetch_add(1, Ordering::Relaxed);
            let wake_at = self
                .gossip
                .as_ref()
                .map_or(reap_at, |g| g.next_tick().min(reap_at));
            let wait = wake_at.saturating_duration_since(Instant::now());
            let timeout = i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
            // The pipe, then the mailbox, the beacon, the gossip sockets
            // (each only while there is one).
            let ready = {
                let mut items = vec![Pollable::Socket(pipe.socket())];
                items.extend(self.mailbox.iter().map(Pollable::Socket));
                items.extend(self.beacon.iter().map(|b| Pollable::Socket(b.socket())));
                if let Some(gossip) = &self.gossip {
                    items.extend(gossip.sockets().into_iter().map(Pollable::Socket));
                }
                match interrupt::poll_any(&items, timeout) {
                    Ok(ready) => ready,
                    Err(Error::Interrupted) => {
                        self.stop();
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            };
            let mut flags = ready[1..].iter().copied();
            let mailbox_ready = self.mailbox.is_some() && flags.next().unwrap_or(false);
            let beacon_ready = self.beacon.is_some() && flags.next().unwrap_or(false);
            let gossip_ready: Vec<bool> = flags.collect();
            if ready[0] {
                let request = pipe.recv()?;
                if actor::is_term(&request) {
                    self.stop();
                    return Ok(());
                }
                let reply = self.obey(request);
                pipe.send(reply)?;
            }
            if mailbox_ready {
                self.read_mailbox()?;
            }
            if beacon_ready {
                self.read_beacons()?;
            }
            if gossip_ready.iter().any(|ready| *ready) {
                self.read_gossip(&gossip_ready);
            }
            let now = Instant::now();
            if let Some(gossip) = &mut self.gossip {
                if now >= gossip.next_tick() {
                    gossip.tick(now);
                }
            }
            if now >= reap_at {
                self.reap(now);
                reap_at = now + reap;
            }
        }
    }

    /// Carries out one request from the owner; the reply starts with `OK`
    /// or `ERR`.
    fn obey(&mut self, mut request: Message) -> Message {
        let command = request.pop().unwrap_or_default();
        let arg = request.first().map(<[u8]>::to_vec).unwrap_or_default();
        let text_arg = lossy(arg.clone());
        let mut reply: Vec<Vec<u8>> = vec![b"OK".to_vec()];
        match command.as_slice() {
            b"START" => match self.start() {
                Ok(endpoint) => reply.push(endpoint.into_bytes()),
                Err(e) => return refused(e),
            },
            b"STOP" => self.stop(),
            b"ENDPOINT" => reply.extend(self.endpoint.clone().map(String::into_bytes)),
            b"JOIN" => {
                if let Err(e) = self.join(text_arg) {
                    return refused(e);
                }
            }
            b"LEAVE" => self.leave(&text_arg),
            b"WHISPER" => {
                request.pop();
                let sent = match Uuid::try_from(arg.as_slice()) {
                    Ok(uuid) if self.peers.contains_key(&uuid) => self.send_to(
                        &uuid,
                        Command::Whisper {
                            content: request.into_frames(),
                        },
                    ),
                    _ => false,
                };
                reply.push(if sent { b"1".to_vec() } else { b"0".to_vec() });
            }
            b"SHOUT" => {
                request.pop();
                let sent = self.shout(&text_arg, request.into_frames());
                reply.push(sent.to_string().into_bytes());
            }
            b"PEERS" => {
                let group = (!request.is_empty()).then_some(text_arg);
                let mut list: Vec<Uuid> = self
                    .peers
                    .values()
                    .filter(|l| l.peer.is_ready())
                    .filter(|l| group.as_ref().is_none_or(|g| l.peer.in_group(g)))
                    .map(|l| *l.peer.uuid())
                    .collect();
                list.sort();
                reply.extend(list.iter().map(|u| u.to_vec()));
            }
            b"PEER" => {
                let link = Uuid::try_from(arg.as_slice())
                    .ok()
                    .and_then(|uuid| self.peers.get(&uuid))
                    .filter(|l| l.peer.is_ready());
                if let Some(Link { peer, .. }) = link {
                    reply.push(peer.name().into());
                    reply.push(peer.address().into());
                    reply.push(peer.headers().len().to_string().into_bytes());
                    for (key, value) in peer.headers() {
                        reply.push(key.clone().into_bytes());
                        reply.push(value.clone().into_bytes());
                    }
                    reply.extend(peer.groups().iter().map(|g| g.clone().into_bytes()));
                }
            }
            b"GROUPS" => reply.extend(self.own_groups.iter().map(|g| g.clone().into_bytes())),
            b"PEER GROUPS" => {
                let all: BTreeSet<&String> = self
                    .peers
                    .values()
                    .filter(|l| l.peer.is_ready())
                    .flat_map(|l| l.peer.groups())
                    .collect();
                reply.extend(all.into_iter().map(|g| g.clone().into_bytes()));
            }
            b"LEADER" => reply.extend(self.leaders.get(&text_arg).map(|u| u.to_vec())),
            other => {
                log::warn!("ZRE node: unknown request {}", show(other));
                return Message::from_frames([b"ERR".to_vec(), b"unknown request".to_vec()]);
            }
        }
        Message::from_frames(reply)
    }

    // --- start and stop ----------------------------------------------------

    /// Binds the mailbox and starts beaconing; returns the endpoint.
    fn start(&mut self) -> Result<String, Error> {
        if let Some(endpoint) = &self.endpoint {
            return Ok(endpoint.clone());
        }
        let ip = self
            .config
            .interface
            .unwrap_or_else(|| mailbox_ip(self.config.broadcast));
        if let Some(trusted) = self.config.curve.as_ref().and_then(|c| c.trusted.clone()) {
            if self.authenticator.is_none() {
                let authenticator =
                    crate::curve::Authenticator::start(&self.context, trusted, false).map_err(
                        |e| {
                            Error::Protocol(format!(
                            "ZRE node: cannot start the CURVE trust list (one per context): {e}"
                        ))
                        },
                    )?;
                self.authenticator = Some(authenticator);
            }
        }
        let (mailbox, port) = bind_mailbox(
            &self.context,
            ip,
            self.config.max_frame_size,
            self.config.curve.as_ref().map(|c| &c.keys),
        )?;
        let endpoint = format!("tcp://{ip}:{port}");
        if self.config.gossip() {
            // No beacons: our endpoint goes into the gossip network.
            let mut gossip = Gossip::new(
                &self.context,
                self.config.gossip_bind.as_deref(),
                &self.config.gossip_connect,
            )?;
            let value = match &self.config.curve {
                Some(curve) => format!("{endpoint}|{}", curve.keys.public_text()),
                None => endpoint.clone(),
            };
            gossip.publish(&hex(&self.uuid), &value);
            log::debug!("ZRE node {} started at {endpoint} (gossip)", self.name);
            self.gossip = Some(gossip);
            self.mailbox = Some(mailbox);
            self.endpoint = Some(endpoint.clone());
            self.update_leaders();
            return Ok(endpoint);
        }
        let beacon = Beacon::new(&self.context, self.config.port, self.config.broadcast)?;
        beacon.subscribe(match self.config.curve {
            Some(_) => &wire::SECURE_BEACON_PREFIX,
            None => &wire::BEACON_PREFIX,
        })?;
        beacon.publish(&self.beacon_payload(port), self.config.interval)?;
        log::debug!("ZRE node {} started at {endpoint}", self.name);
        self.mailbox = Some(mailbox);
        self.beacon = Some(beacon);
        self.endpoint = Some(endpoint.clone());
        self.update_leaders();
        Ok(endpoint)
    }

    /// Says goodbye and drops every peer and the mailbox; see [`Node::stop`].
    fn stop(&mut self) {
        if self.endpoint.is_none() {
            return;
        }
        if self.gossip.take().is_some() {
            // No beacon to say goodbye with: a GOODBYE to each peer (zyre's
            // gossip mode).
            for uuid in self.peer_uuids() {
                self.send_to(&uuid, Command::Goodbye);
            }
        }
        if let Some(beacon) = self.beacon.take() {
            self.say_goodbye(beacon);
        }
        self.close_peers();
    }

    /// Our beacon for mailbox `port` (0: goodbye): version 3 with CURVE.
    fn beacon_payload(&self, port: u16) -> Vec<u8> {
        match &self.config.curve {
            Some(curve) => wire::SecureBeacon {
                uuid: self.uuid,
                port,
                public_key: curve.keys.public,
            }
            .encode()
            .to_vec(),
            None => wire::Beacon {
                uuid: self.uuid,
                port,
            }
            .encode()
            .to_vec(),
        }
    }

    /// The port-0 beacon.
    fn say_goodbye(&mut self, beacon: Beacon) {
        let goodbye = self.beacon_payload(0);
        // The beacon agent sends a new payload at once, in the same turn of
        // its loop that acknowledges it, before it reads the `$TERM` that
        // dropping it sends: the goodbye goes out. After Ctrl-C/SIGTERM the
        // agent has ended (its poll reports the signal before it reads a
        // command), so we send the goodbye ourselves.
        let said = !interrupt::interrupted()
            && beacon.publish(&goodbye, self.config.interval).is_ok()
            && !interrupt::interrupted();
        if !said {
            if let Err(e) = send_goodbye(&goodbye, self.config.broadcast, self.config.port) {
                log::warn!("ZRE node: cannot say goodbye: {e}");
            }
        }
        drop(beacon);
    }

    /// Drops every peer and the mailbox, then reports [`Event::Stop`].
    fn close_peers(&mut self) {
        let mut peers: Vec<Link> = self.peers.drain().map(|(_, link)| link).collect();
        peers.sort_by_key(|l| *l.peer.uuid());
        for link in peers {
            if link.peer.is_ready() {
                self.emit(Event::Exit {
                    peer: *link.peer.uuid(),
                    name: link.peer.name().to_string(),
                });
            }
        }
        self.mailbox = None;
        self.endpoint = None;
        self.leaders.clear();
        self.emit(Event::Stop);
    }

    // --- our groups --------------------------------------------------------

    fn join(&mut self, group: String) -> Result<(), Error> {
        if self.own_groups.contains(&group) {
            return Ok(());
        }
        if self.own_groups.len() >= wire::MAX_GROUPS {
            return Err(Error::Protocol(format!(
                "in {} groups already (at most {})",
                self.own_groups.len(),
                wire::MAX_GROUPS
            )));
        }
        self.own_groups.insert(group.clone());
        self.status = self.status.wrapping_add(1);
        let status = self.status;
        for uuid in self.peer_uuids() {
            self.send_to(
                &uuid,
                Command::Join {
                    group: group.clone(),
                    status,
                },
            );
        }
        self.update_leaders();
        Ok(())
    }

    fn leave(&mut self, group: &str) {
        if !self.own_groups.remove(group) {
            return;
        }
        self.status = self.status.wrapping_add(1);
        let status = self.status;
        for uuid in self.peer_uuids() {
            self.send_to(
                &uuid,
                Command::Leave {
                    group: group.to_string(),
                    status,
                },
            );
        }
        self.update_leaders();
    }

    /// Sends to every ready peer in `group`; how many it was queued for.
    fn shout(&mut self, group: &str, content: Vec<Vec<u8>>) -> usize {
        let members: Vec<Uuid> = self
            .peers
            .values()
            .filter(|l| l.peer.is_ready() && l.peer.in_group(group))
            .map(|l| *l.peer.uuid())
            .collect();
        let mut sent = 0;
        for uuid in members {
            let command = Command::Shout {
                group: group.to_string(),
                content: content.clone(),
            };
            if self.send_to(&uuid, command) {
                sent += 1;
            }
        }
        sent
    }

    fn peer_uuids(&self) -> Vec<Uuid> {
        self.peers.keys().copied().collect()
    }

    // --- peers -------------------------------------------------------------

    /// Connects to a peer we do not know yet and says HELLO; false if we
    /// cannot (too many peers, or the connect failed), or must not: with
    /// CURVE, a peer that gave no public key or one we do not trust.
    fn require_peer(&mut self, uuid: Uuid, endpoint: &str, key: Option<[u8; 32]>) -> bool {
        if self.peers.contains_key(&uuid) {
            return true;
        }
        if let Some(curve) = &self.config.curve {
            let Some(key) = key else {
                log_limit::complain(format_args!(
                    "ZRE node: peer {} gave no CURVE key: ignored (no downgrade to plain text)",
                    hex(&uuid)
                ));
                return false;
            };
            if curve.trusted.as_ref().is_some_and(|t| !t.contains(&key)) {
                // Once per stranger (it beacons every second): a bounded set.
                if self.refused.len() >= MAX_PEERS {
                    self.refused.clear();
                }
                if self.refused.insert(uuid) {
                    log_limit::complain(format_args!(
                        "ZRE node: peer {} has a CURVE key we do not trust: ignored",
                        hex(&uuid)
                    ));
                }
                return false;
            }
        }
        if self.peers.len() >= MAX_PEERS {
            if !self.warned_full {
                log::warn!("ZRE node: {MAX_PEERS} peers known, ignoring new ones");
                self.warned_full = true;
            }
            return false;
        }
        // A node that restarted with a new UUID on the same endpoint: the
        // old one is gone (zyre purges it too).
        let stale: Vec<Uuid> = self
            .peers
            .iter()
            .filter(|(_, l)| l.peer.endpoint() == endpoint)
            .map(|(u, _)| *u)
            .collect();
        for old in stale {
            self.remove_peer(&old, "replaced by a new node at its endpoint");
        }
        let dealer = match self.connect(endpoint, key) {
            Ok(dealer) => dealer,
            Err(e) => {
                log_limit::complain(format_args!("ZRE node: cannot connect to a peer: {e}"));
                return false;
            }
        };
        let peer = Peer::new(
            uuid,
            endpoint.to_string(),
            Instant::now(),
            self.config.timing,
        );
        self.peers.insert(uuid, Link { peer, dealer });
        let hello = Command::Hello {
            endpoint: self.endpoint.clone().unwrap_or_default(),
            groups: self.own_groups.iter().cloned().collect(),
            status: self.status,
            name: self.name.clone(),
            headers: self.config.headers.clone(),
        };
        self.send_to(&uuid, hello)
    }

    /// A DEALER to a peer's mailbox; see the module docs.
    fn connect(&self, endpoint: &str, key: Option<[u8; 32]>) -> Result<zmq::Socket, Error> {
        let mut identity = vec![1u8];
        identity.extend_from_slice(&self.uuid);
        let dealer = socket::new(&self.context, zmq::DEALER)
            .identity(identity)
            .send_hwm(PEER_SEND_HWM)
            .max_message_size(self.config.max_frame_size)
            .build()?;
        dealer.set_sndtimeo(0)?;
        if let (Some(curve), Some(key)) = (&self.config.curve, key) {
            curve.keys.make_client(&dealer, &key)?;
        }
        dealer.connect(endpoint).map_err(|source| Error::Endpoint {
            action: "connect to",
            endpoint: endpoint.to_string(),
            source,
        })?;
        Ok(dealer)
    }

    /// Removes a peer: EXIT if it had entered, its connection closed.
    fn remove_peer(&mut self, uuid: &Uuid, why: &str) {
        let Some(link) = self.peers.remove(uuid) else {
            return;
        };
        log::debug!(
            "ZRE node {}: peer {} ({}) removed: {why}",
            self.name,
            hex(uuid),
            show(link.peer.name().as_bytes())
        );
        if link.peer.is_ready() {
            self.emit(Event::Exit {
                peer: *uuid,
                name: link.peer.name().to_string(),
            });
        }
        for group in link.peer.groups() {
            self.elections.remove(group);
        }
        drop(link);
        // zyre's rule: the peer's tuple is forgotten here, so that if it
        // comes again (the peer was only cut off) it is new, and we connect.
        if let Some(gossip) = &mut self.gossip {
            gossip.unpublish(&hex(uuid));
        }
        self.update_leaders();
    }

    /// Sends `command` to a peer with its next sequence number: true if
    /// queued. A peer that does not read (the send would block) is removed.
    fn send_to(&mut self, uuid: &Uuid, command: Command) -> bool {
        let Some(link) = self.peers.get_mut(uuid) else {
            return false;
        };
        let message = wire::Message {
            sequence: link.peer.next_sequence(),
            command,
        };
        let frames = match message.encode() {
            Ok(frames) => frames,
            Err(e) => {
                log::warn!("ZRE node: cannot send {}: {e}", message.command.name());
                return false;
            }
        };
        match Message::from_frames(frames).send_or_drop(&link.dealer) {
            Ok(true) => true,
            Ok(false) => {
                log_limit::complain(format_args!(
                    "ZRE node: peer {} does not read: disconnected",
                    hex(uuid)
                ));
                self.remove_peer(uuid, "does not read");
                false
            }
            Err(e) => {
                log_limit::complain(format_args!("ZRE node: cannot send to {}: {e}", hex(uuid)));
                self.remove_peer(uuid, "send failed");
                false
            }
        }
    }

    /// Reports an event to the owner, never waiting for it.
    fn emit(&mut self, event: Event) {
        match event.into_message().send_or_drop(&self.outbox) {
            Ok(true) => {}
            Ok(false) => {
                if let Some(count) = self.events_dropped.note() {
                    log::warn!(
                        "ZRE node {}: the owner does not read events, {count} dropped",
                        self.name
                    );
                }
            }
            Err(e) => log::debug!("ZRE node: cannot report an event: {e}"),
        }
    }

    /// Recomputes the leader of each of our groups and reports changes.
    fn update_leaders(&mut self) {
        self.leaders
            .retain(|group, _| self.own_groups.contains(group));
        if self.endpoint.is_none() {
            return; // not started: no one to lead
        }
        let mut changes = Vec::new();
        for group in &self.own_groups {
            let (leader, name) = self
                .peers
                .values()
                .filter(|l| l.peer.is_ready() && l.peer.in_group(group))
                .map(|l| (*l.peer.uuid(), l.peer.name()))
                .chain(std::iter::once((self.uuid, self.name.as_str())))
                .min_by_key(|(uuid, _)| *uuid)
                .unwrap_or((self.uuid, self.name.as_str()));
            if self.leaders.get(group) != Some(&leader) {
                changes.push((group.clone(), leader, name.to_string()));
            }
        }
        for (group, peer, name) in changes {
            self.leaders.insert(group.clone(), peer);
            self.emit(Event::Leader { group, peer, name });
        }
    }

    // --- input -------------------------------------------------------------

    /// Reads what is waiting on the mailbox (at most [`READ_BATCH`]).
    fn read_mailbox(&mut self) -> Result<(), Error> {
        for _ in 0..READ_BATCH {
            let Some(mailbox) = &self.mailbox else {
                return Ok(());
            };
            let (frames, complete) = match recv_bounded(mailbox)? {
                Inbound::None => return Ok(()),
                Inbound::Message { frames, complete } => (frames, complete),
            };
            let identity = &frames[0];
            let Ok(uuid) = Uuid::try_from(identity.get(1..).unwrap_or_default()) else {
                log_limit::complain(format_args!(
                    "ZRE node: dropped a message from routing id {} (not 17 bytes)",
                    show(identity)
                ));
                continue;
            };
            if uuid == self.uuid {
                continue;
            }
            if !complete {
                log_limit::complain(format_args!(
                    "ZRE node: dropped a message of more than {MAX_FRAMES} frames from {}",
                    hex(&uuid)
                ));
                continue;
            }
            match wire::Message::decode(&frames[1..]) {
                Ok(message) => self.handle(uuid, message),
                // Not decoded: the sequence does not advance, so the next
                // good message from this peer looks like a gap (as in zyre).
                Err(e) => log_limit::complain(format_args!(
                    "ZRE node: bad message from {}: {e}",
                    hex(&uuid)
                )),
            }
        }
        Ok(())
    }

    /// Applies one message from peer `uuid`.
    fn handle(&mut self, uuid: Uuid, message: wire::Message) {
        if let Command::Hello { endpoint, .. } = &message.command {
            if !is_tcp_endpoint(endpoint) {
                log_limit::complain(format_args!(
                    "ZRE node: HELLO from {} with endpoint {} ignored",
                    hex(&uuid),
                    show(endpoint.as_bytes())
                ));
                return;
            }
            if self.peers.get(&uuid).is_some_and(|l| l.peer.is_ready()) {
                self.remove_peer(&uuid, "said HELLO again");
            }
            let key = match &message.command {
                Command::Hello { headers, .. } => headers
                    .get(PUBLIC_KEY_HEADER)
                    .and_then(|text| zmq::z85_decode(text).ok())
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()),
                _ => None,
            };
            if !self.require_peer(uuid, endpoint, key) {
                return;
            }
        }
        let Some(link) = self.peers.get_mut(&uuid) else {
            return; // not HELLO and not known: ignored
        };
        match link.peer.receive(&message, Instant::now()) {
            Outcome::Ignored => {}
            Outcome::Invalid(why) => {
                log_limit::complain(format_args!(
                    "ZRE node: peer {} ({}) removed: {why}",
                    hex(&uuid),
                    show(link.peer.name().as_bytes())
                ));
                self.remove_peer(&uuid, "broke a rule");
            }
            Outcome::Accepted { changed } => {
                let name = link.peer.name().to_string();
                self.apply(uuid, name, message.command, changed);
            }
        }
    }

    /// What an accepted command means to the owner.
    fn apply(&mut self, peer: Uuid, name: String, command: Command, changed: bool) {
        match command {
            Command::Hello {
                endpoint, headers, ..
            } => {
                self.emit(Event::Enter {
                    peer,
                    name: name.clone(),
                    headers,
                    address: endpoint,
                });
                let groups: Vec<String> = self
                    .peers
                    .get(&peer)
                    .map(|l| l.peer.groups().iter().cloned().collect())
                    .unwrap_or_default();
                for group in groups {
                    self.emit(Event::Join {
                        peer,
                        name: name.clone(),
                        group,
                    });
                }
                self.update_leaders();
            }
            Command::Whisper { content } => self.emit(Event::Whisper {
                peer,
                name,
                content,
            }),
            Command::Shout { group, content } => self.emit(Event::Shout {
                peer,
                name,
                group,
                content,
            }),
            Command::Join { group, .. } if changed => {
                // The members changed: a zyre contestant starts a new wave.
                self.elections.remove(&group);
                self.emit(Event::Join { peer, name, group });
                self.update_leaders();
            }
            Command::Leave { group, .. } if changed => {
                self.elections.remove(&group);
                self.emit(Event::Leave { peer, name, group });
                self.update_leaders();
            }
            Command::Ping => {
                self.send_to(&peer, Command::PingOk);
            }
            Command::Elect { group, challenger } => self.on_elect(peer, group, challenger),
            Command::Leader { group, leader } => self.on_leader(peer, group, leader),
            // Gossip mode has no port-0 beacon: the peer says goodbye itself.
            Command::Goodbye if self.gossip.is_some() => {
                self.remove_peer(&peer, "said goodbye");
            }
            // PING-OK refreshed the peer; GOODBYE with beacons (they say
            // it); JOIN/LEAVE without a change.
            _ => {}
        }
    }

    /// The ready peers in `group`, as zyre's group of neighbours.
    fn group_members(&self, group: &str) -> Vec<Uuid> {
        let mut members: Vec<Uuid> = self
            .peers
            .values()
            .filter(|l| l.peer.is_ready() && l.peer.in_group(group))
            .map(|l| *l.peer.uuid())
            .collect();
        members.sort();
        members
    }

    /// ELECT from `peer`: take part in the wave as zyre's non-contesting
    /// nodes do (`zyre_node.c`): a better challenger starts a new wave here,
    /// sent on to every other member; an ELECT of the current wave is
    /// counted, and when every member has sent one it is echoed to the
    /// father. Without this a zyre contestant waits for us for ever. Only
    /// from a member of the group (which bounds what we keep).
    fn on_elect(&mut self, peer: Uuid, group: String, challenger: String) {
        let members = self.group_members(&group);
        if !members.contains(&peer) {
            return;
        }
        let election = self.elections.entry(group.clone()).or_default();
        let mut sends: Vec<(Uuid, Command)> = Vec::new();
        if election.caw.as_ref().is_none_or(|caw| challenger < *caw) {
            *election = Election {
                caw: Some(challenger.clone()),
                father: Some(peer),
                ..Election::default()
            };
            for member in members.iter().filter(|m| **m != peer) {
                sends.push((
                    *member,
                    Command::Elect {
                        group: group.clone(),
                        challenger: challenger.clone(),
                    },
                ));
            }
        }
        if election.caw.as_deref() == Some(challenger.as_str()) {
            election.elect_count += 1;
            if election.elect_count == members.len() {
                if let Some(father) = election.father {
                    sends.push((father, Command::Elect { group, challenger }));
                }
            }
        }
        for (member, command) in sends {
            self.send_to(&member, command);
        }
    }

    /// LEADER from `peer`: passed on once to every member (as zyre does),
    /// counted, and the wave forgotten when every member has sent one.
    fn on_leader(&mut self, peer: Uuid, group: String, leader: String) {
        let members = self.group_members(&group);
        let Some(election) = self.elections.get_mut(&group) else {
            log::debug!(
                "ZRE node: LEADER for {} outside an election, ignored",
                show(group.as_bytes())
            );
            return;
        };
        let Some(caw) = election.caw.clone() else {
            return;
        };
        let first = election.leader_count == 0;
        election.leader_count += 1;
        let finished = election.leader_count >= members.len();
        if finished {
            log::debug!(
                "ZRE node: zyre election in {} finished: leader {} (from {})",
                show(group.as_bytes()),
                show(leader.as_bytes()),
                hex(&peer)
            );
            self.elections.remove(&group);
        }
        if first {
            for member in members {
                let command = Command::Leader {
                    group: group.clone(),
                    leader: caw.clone(),
                };
                self.send_to(&member, command);
            }
        }
    }

    /// Reads the gossip sockets that are ready and connects to each peer a
    /// new tuple names (a key of 32 hex digits, a value `tcp://<ip>:<port>`,
    /// maybe followed by `|<public key>` from a zyre node that uses CURVE).
    fn read_gossip(&mut self, ready: &[bool]) {
        let Some(gossip) = &mut self.gossip else {
            return;
        };
        for (key, value) in gossip.read(ready) {
            let mut parts = value.splitn(2, '|');
            let endpoint = parts.next().unwrap_or_default();
            let public_key = parts
                .next()
                .and_then(|text| zmq::z85_decode(text).ok())
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
            let uuid = uuid_from_hex(&key);
            match uuid {
                Some(uuid) if uuid == self.uuid => {}
                Some(_) if self.endpoint.as_deref() == Some(endpoint) => {}
                Some(uuid) if is_tcp_endpoint(endpoint) => {
                    if !self.peers.contains_key(&uuid) {
                        log::debug!("ZRE node: gossip names {key} at {endpoint}");
                    }
                    self.require_peer(uuid, endpoint, public_key);
                }
                _ => log_limit::complain(format_args!(
                    "ZRE node: gossip tuple {} = {} is not a ZRE node",
                    show(key.as_bytes()),
                    show(value.as_bytes())
                )),
            }
        }
    }

    /// Reads what beacons are waiting (at most [`READ_BATCH`]).
    fn read_beacons(&mut self) -> Result<(), Error> {
        for _ in 0..READ_BATCH {
            let Some(beacon) = &self.beacon else {
                return Ok(());
            };
            let heard = match beacon.recv_timeout(0) {
                Ok(Some(heard)) => heard,
                Ok(None) => return Ok(()),
                Err(Error::Protocol(e)) => {
                    log::debug!("ZRE node: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Plain nodes hear v2 beacons only, CURVE nodes v3 only.
            let decoded = match self.config.curve {
                None => wire::Beacon::decode(&heard.payload).map(|b| (b.uuid, b.port, None)),
                Some(_) => wire::SecureBeacon::decode(&heard.payload)
                    .map(|b| (b.uuid, b.port, Some(b.public_key))),
            };
            let Some((uuid, port, key)) = decoded else {
                log::debug!(
                    "ZRE node: not a ZRE beacon from {}: {}",
                    heard.from,
                    show(&heard.payload)
                );
                continue;
            };
            if uuid == self.uuid {
                continue;
            }
            if port == 0 {
                self.remove_peer(&uuid, "said goodbye (port 0)");
            } else if !self.peers.contains_key(&uuid) {
                let endpoint = format!("tcp://{}", SocketAddr::new(heard.from.ip(), port));
                self.require_peer(uuid, &endpoint, key);
            }
        }
        Ok(())
    }

    /// The timers: PING evasive peers, report silent ones, remove expired.
    fn reap(&mut self, now: Instant) {
        let mut alarms: Vec<(Uuid, Alarm, bool, String)> = Vec::new();
        for (uuid, link) in &mut self.peers {
            if let Some(alarm) = link.peer.tick(now) {
                alarms.push((
                    *uuid,
                    alarm,
                    link.peer.is_ready(),
                    link.peer.name().to_string(),
                ));
            }
        }
        alarms.sort_by_key(|(uuid, ..)| *uuid);
        for (peer, alarm, ready, name) in alarms {
            match alarm {
                Alarm::Evasive => {
                    if self.send_to(&peer, Command::Ping) && ready {
                        self.emit(Event::Evasive { peer, name });
                    }
                }
                Alarm::Silent => {
                    if ready && self.peers.contains_key(&peer) {
                        self.emit(Event::Silent { peer, name });
                    }
                }
                Alarm::Expired => self.remove_peer(&peer, "expired"),
            }
        }
    }
}

/// One goodbye beacon from a socket of its own, for when the beacon agent
/// has already ended (see [`Agent::stop`]).
fn send_goodbye(goodbye: &[u8], broadcast: Ipv4Addr, port: u16) -> std::io::Result<()> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.set_broadcast(true)?;
    socket.send_to(goodbye, (broadcast, port)).map(|_| ())
}

/// A UUID from 32 hex digits (zyre writes them in upper case).
fn uuid_from_hex(text: &str) -> Option<Uuid> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (index, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).ok()?;
    }
    Some(uuid)
}

/// True for `tcp://<ip>:<port>` (IPv4 or bracketed IPv6), the only
/// endpoints a peer may make us connect to.
fn is_tcp_endpoint(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("tcp://")
        .and_then(|rest| rest.parse::<SocketAddr>().ok())
        .is_some_and(|address| address.port() != 0)
}

/// The mailbox: a ROUTER bound on `ip` at the first free port from a random
/// start in [`EPHEMERAL_PORTS`].
fn bind_mailbox(
    context: &zmq::Context,
    ip: Ipv4Addr,
    max_frame: i64,
    curve: Option<&crate::curve::Keys>,
) -> Result<(zmq::Socket, u16), Error> {
    let mailbox = socket::new(context, zmq::ROUTER)
        .linger(0)
        .max_message_size(max_frame)
        .build()?;
    if let Some(keys) = curve {
        // A CURVE server: plain-text peers fail their handshake; zyre's ZAP
        // domain, so a trust list (our ZAP handler) is asked.
        keys.make_server(&mailbox)?;
        mailbox.set_zap_domain("global")?;
    }
    // A peer that reconnects (a new DEALER, the same routing id) takes over
    // at once, instead of being refused until libzmq drops the old pipe.
    mailbox.set_router_handover(true)?;
    let mut last = None;
    for port in ports_in_turn(&EPHEMERAL_PORTS, rand::thread_rng().gen()) {
        let endpoint = format!("tcp://{}:{port}", IpAddr::V4(ip));
        match mailbox.bind(&endpoint) {
            Ok(()) => return Ok((mailbox, port)),
            Err(zmq::Error::EADDRINUSE) => last = Some(endpoint),
            Err(source) => {
                return Err(Error::Endpoint {
                    action: "bind",
                    endpoint,
                    source,
                })
            }
        }
    }
    Err(Error::Endpoint {
        action: "bind",
        endpoint: last.unwrap_or_default(),
        source: zmq::Error::EADDRINUSE,
    })
}

/// Every port of `ports` once, from the one `start` picks (taken modulo
/// the range's size) to the end, then from the range's start on.
fn ports_in_turn(ports: &RangeInclusive<u16>, start: u32) -> impl Iterator<Item = u16> {
    let (low, high) = (*ports.start(), *ports.end());
    let span = u32::from(high - low) + 1;
    let start = start % span;
    (0..span).map(move |step| low + ((start + step) % span) as u16)
}

/// Reads one message without waiting, keeping at most [`MAX_FRAMES`]
/// frames (the rest is read and dropped).
fn recv_bounded(socket: &zmq::Socket) -> Result<Inbound, Error> {
    let first = match interrupt::retry_eintr(|| socket.recv_bytes(zmq::DONTWAIT)) {
        Ok(frame) => frame,
        Err(Error::Zmq(zmq::Error::EAGAIN)) => return Ok(Inbound::None),
        Err(e) => return Err(e),
    };
    let mut frames = vec![first];
    let mut complete = true;
    while interrupt::retry_eintr(|| socket.get_rcvmore())? {
        let frame = interrupt::retry_eintr(|| socket.recv_bytes(0))?;
        if frames.len() < MAX_FRAMES {
            frames.push(frame);
        } else {
            complete = false;
        }
    }
    Ok(Inbound::Message { frames, complete })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// The longest any one expected event may take.
    const WAIT: Duration = Duration::from_secs(10);
    /// How long we listen for events that must not come.
    const QUIET: Duration = Duration::from_millis(300);

    fn config(port: u16, name: &str) -> NodeConfig {
        NodeConfig {
            name: Some(name.into()),
            port,
            interval: Duration::from_millis(50),
            ..NodeConfig::default()
        }
    }

    /// A node's events, read as needed; those not asked for yet are kept.
    struct Events<'a> {
        node: &'a Node,
        kept: VecDeque<Event>,
    }

    impl<'a> Events<'a> {
        fn of(node: &'a Node) -> Events<'a> {
            Events {
                node,
                kept: VecDeque::new(),
            }
        }

        /// The first event that matches, waiting at most [`WAIT`].
        fn expect(&mut self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
            if let Some(at) = self.kept.iter().position(&wanted) {
                return self.kept.remove(at).unwrap();
            }
            let deadline = Instant::now() + WAIT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "{}: no {what} in {WAIT:?}; got {:?}",
                    self.node.name(),
                    self.kept
                );
                if let Some(event) = self.node.recv_timeout(left).unwrap() {
                    if wanted(&event) {
                        return event;
                    }
                    self.kept.push_back(event);
                }
            }
        }

        /// How many events that match arrive (or were kept) within [`QUIET`];
        /// they are consumed.
        fn count(&mut self, wanted: impl Fn(&Event) -> bool) -> usize {
            let deadline = Instant::now() + QUIET;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.node.recv_timeout(left).unwrap() {
                    Some(event) => self.kept.push_back(event),
                    None => break,
                }
            }
            let before = self.kept.len();
            self.kept.retain(|e| !wanted(e));
            before - self.kept.len()
        }
    }

    fn is_enter(peer: Uuid) -> impl Fn(&Event) -> bool {
        move |e| matches!(e, Event::Enter { peer: p, .. } if *p == peer)
    }

    fn is_exit(peer: Uuid) -> impl Fn(&Event) -> bool {
        move |e| matches!(e, Event::Exit { peer: p, .. } if *p == peer)
    }

    fn is_join(peer: Uuid, group: &str) -> impl Fn(&Event) -> bool + '_ {
        move |e| matches!(e, Event::Join { peer: p, group: g, .. } if *p == peer && g == group)
    }

    fn is_leader(peer: Uuid, group: &str) -> impl Fn(&Event) -> bool + '_ {
        move |e| matches!(e, Event::Leader { peer: p, group: g, .. } if *p == peer && g == group)
    }

    fn is_shout(e: &Event) -> bool {
        matches!(e, Event::Shout { .. })
    }

    fn is_whisper(e: &Event) -> bool {
        matches!(e, Event::Whisper { .. })
    }

    #[test]
    fn two_nodes_enter_join_whisper_shout_leave_and_exit() {
        let context = zmq::Context::new();
        let mut alpha_config = config(5840, "alpha");
        alpha_config
            .headers
            .insert("X-HELLO".into(), "world".into());
        let alpha = Node::new(&context, alpha_config).unwrap();
        let beta = Node::new(&context, config(5840, "beta")).unwrap();
        let (a, b) = (alpha.uuid(), beta.uuid());
        let mut alpha_events = Events::of(&alpha);
        let mut beta_events = Events::of(&beta);
        alpha.join("CHAT").unwrap(); // before start: HELLO carries it
        let alpha_endpoint = alpha.start().unwrap();
        assert!(
            alpha_endpoint.starts_with("tcp://127.0.0.1:"),
            "{alpha_endpoint}"
        );
        let port: u16 = alpha_endpoint.rsplit(':').next().unwrap().parse().unwrap();
        assert!(EPHEMERAL_PORTS.contains(&port));
        assert_eq!(alpha.start().unwrap(), alpha_endpoint, "started once");
        alpha_events.expect("alpha leads CHAT alone", is_leader(a, "CHAT"));
        beta.start().unwrap();

        // ENTER, with the name, headers and address of the HELLO.
        let Event::Enter {
            name,
            headers,
            address,
            ..
        } = beta_events.expect("ENTER alpha", is_enter(a))
        else {
            unreachable!()
        };
        assert_eq!(name, "alpha");
        assert_eq!(headers.get("X-HELLO").map(String::as_str), Some("world"));
        assert_eq!(address, alpha_endpoint);
        beta_events.expect("JOIN from alpha's HELLO", is_join(a, "CHAT"));
        alpha_events.expect("ENTER beta", is_enter(b));
        assert_eq!(alpha.peers().unwrap(), vec![b]);
        assert_eq!(beta.peer_name(&a).unwrap().as_deref(), Some("alpha"));
        assert_eq!(
            beta.peer_header(&a, "X-HELLO").unwrap().as_deref(),
            Some("world")
        );
        assert_eq!(
            beta.peer_address(&a).unwrap().as_deref(),
            Some(alpha_endpoint.as_str())
        );
        assert_eq!(beta.peer_groups().unwrap(), vec!["CHAT".to_string()]);
        assert_eq!(beta.peers_by_group("CHAT").unwrap(), vec![a]);
        assert_eq!(alpha.peer_name(&[0; 16]).unwrap(), None);

        // JOIN: both agree on the mediator, the smaller UUID.
        beta.join("CHAT").unwrap();
        alpha_events.expect("JOIN beta", is_join(b, "CHAT"));
        let leader = a.min(b);
        assert_eq!(alpha.leader("CHAT").unwrap(), Some(leader));
        assert_eq!(beta.leader("CHAT").unwrap(), Some(leader));
        assert_eq!(beta.own_groups().unwrap(), vec!["CHAT".to_string()]);

        // WHISPER and SHOUT, each exactly once.
        assert!(alpha.whisper(&b, vec![b"hi".to_vec()]).unwrap());
        let Event::Whisper { peer, content, .. } = beta_events.expect("WHISPER", is_whisper) else {
            unreachable!()
        };
        assert_eq!((peer, content), (a, vec![b"hi".to_vec()]));
        assert_eq!(
            beta.shout("CHAT", vec![b"all".to_vec(), b"two".to_vec()])
                .unwrap(),
            1
        );
        let Event::Shout {
            peer,
            group,
            content,
            ..
        } = alpha_events.expect("SHOUT", is_shout)
        else {
            unreachable!()
        };
        assert_eq!(peer, b);
        assert_eq!(group, "CHAT");
        assert_eq!(content, vec![b"all".to_vec(), b"two".to_vec()]);
        assert_eq!(beta_events.count(is_whisper), 0, "one WHISPER only");
        assert_eq!(alpha_events.count(is_shout), 0, "one SHOUT only");

        // LEAVE, then EXIT when alpha stops (its port-0 beacon).
        beta.leave("CHAT").unwrap();
        let left = |e: &Event| matches!(e, Event::Leave { peer, group, .. } if *peer == b && group == "CHAT");
        alpha_events.expect("LEAVE beta", left);
        assert_eq!(alpha.leader("CHAT").unwrap(), Some(a));
        alpha.stop().unwrap();
        alpha_events.expect("EXIT beta, on our side", is_exit(b));
        alpha_events.expect("STOP", |e| *e == Event::Stop);
        beta_events.expect("EXIT alpha", is_exit(a));
        assert!(beta.peers().unwrap().is_empty());
        assert_eq!(alpha.endpoint().unwrap(), None);
    }

    #[test]
    fn shouts_reach_the_group_only_and_the_mediator_changes_when_it_leaves() {
        let context = zmq::Context::new();
        let nodes: Vec<Node> = ["one", "two", "three"]
            .iter()
            .map(|name| Node::new(&context, config(5841, name)).unwrap())
            .collect();
        let uuids: Vec<Uuid> = nodes.iter().map(Node::uuid).collect();
        nodes[0].join("G").unwrap();
        nodes[1].join("G").unwrap();
        nodes[2].join("H").unwrap();
        let mut events: Vec<Events> = nodes.iter().map(Events::of).collect();
        for node in &nodes {
            node.start().unwrap();
        }
        for (i, events) in events.iter_mut().enumerate() {
            for (j, uuid) in uuids.iter().enumerate() {
                if i != j {
                    events.expect("ENTER", is_enter(*uuid));
                }
            }
        }
        let leader = uuids[0].min(uuids[1]);
        for events in &mut events[..2] {
            events.expect("the G leader", is_leader(leader, "G"));
        }

        // three is not in G and may shout to it; one's shout reaches two only.
        assert_eq!(nodes[2].shout("G", vec![b"x".to_vec()]).unwrap(), 2);
        assert_eq!(nodes[0].shout("G", vec![b"y".to_vec()]).unwrap(), 1);
        let from =
            |peer: Uuid| move |e: &Event| matches!(e, Event::Shout { peer: p, .. } if *p == peer);
        events[0].expect("three's SHOUT", from(uuids[2]));
        events[1].expect("three's SHOUT", from(uuids[2]));
        events[1].expect("one's SHOUT", from(uuids[0]));
        assert_eq!(events[2].count(is_shout), 0, "three is not in G");
        assert_eq!(events[0].count(is_shout), 0, "not to ourselves");

        // The leader stops: the other member of G takes over.
        let (gone, stays) = if leader == uuids[0] { (0, 1) } else { (1, 0) };
        nodes[gone].stop().unwrap();
        events[stays].expect("EXIT of the leader", is_exit(leader));
        events[stays].expect("the new leader", is_leader(uuids[stays], "G"));
        assert_eq!(nodes[stays].leader("G").unwrap(), Some(uuids[stays]));
        events[2].expect("EXIT of the leader", is_exit(leader));
    }

    /// A hand-made peer speaking raw ZRE bytes: the identity rule, the
    /// sequence and status rules, PING, coming back, and silence.
    #[test]
    fn a_raw_peer_is_held_to_the_rules_and_timed_out_when_silent() {
        let context = zmq::Context::new();
        let mut node_config = config(5842, "node");
        node_config.timing = Timing {
            evasive: Duration::from_millis(300),
            expired: Duration::from_millis(1500),
        };
        let node = Node::new(&context, node_config).unwrap();
        let endpoint = node.start().unwrap();
        let mut events = Events::of(&node);

        // The fake peer's mailbox, where the node connects back to.
        let inbox = socket::new(&context, zmq::ROUTER)
            .linger(0)
            .bind("tcp://127.0.0.1:*")
            .unwrap();
        inbox.set_router_handover(true).unwrap();
        inbox.set_rcvtimeo(10_000).unwrap();
        let inbox_endpoint = inbox.get_last_endpoint().unwrap().unwrap();
        let fake: Uuid = [0xFE; 16];
        let mut identity = vec![1u8];
        identity.extend_from_slice(&fake);
        let outbox = socket::new(&context, zmq::DEALER)
            .linger(0)
            .identity(identity)
            .connect(&endpoint)
            .unwrap();
        let send = |sequence: u16, command: Command| {
            let frames = wire::Message { sequence, command }.encode().unwrap();
            outbox.send_multipart(frames, 0).unwrap();
        };
        let hello = |groups: Vec<String>| Command::Hello {
            endpoint: inbox_endpoint.clone(),
            groups,
            status: 3,
            name: "fake".into(),
            headers: Headers::new(),
        };
        // What the node sends the fake peer: routing id, then the message.
        let received = || {
            let frames = inbox.recv_multipart(0).expect("a message from the node");
            assert_eq!(frames[0].len(), 17);
            assert_eq!(frames[0][0], 1);
            assert_eq!(&frames[0][1..], &node.uuid());
            wire::Message::decode(&frames[1..]).unwrap()
        };

        // A routing id that is not 17 bytes: dropped, whatever it says.
        let stranger = socket::new(&context, zmq::DEALER)
            .linger(0)
            .identity("abc")
            .connect(&endpoint)
            .unwrap();
        let frames = wire::Message {
            sequence: 1,
            command: hello(vec![]),
        }
        .encode()
        .unwrap();
        stranger.send_multipart(frames, 0).unwrap();
        // Commands before HELLO are ignored; garbage is dropped.
        send(1, Command::Ping);
        outbox.send("not ZRE at all", 0).unwrap();

        send(1, hello(vec!["G".into()]));
        let Event::Enter { name, .. } = events.expect("ENTER fake", is_enter(fake)) else {
            unreachable!()
        };
        assert_eq!(name, "fake");
        events.expect("JOIN G", is_join(fake, "G"));
        let first = received();
        assert_eq!(first.sequence, 1);
        let Command::Hello {
            endpoint: theirs,
            name,
            ..
        } = first.command
        else {
            panic!("not a HELLO first: {first:?}")
        };
        assert_eq!(
            (theirs.as_str(), name.as_str()),
            (endpoint.as_str(), "node")
        );

        // PING → PING-OK, with the next sequence number.
        send(2, Command::Ping);
        let answer = received();
        assert_eq!((answer.sequence, answer.command), (2, Command::PingOk));

        // A JOIN of a group it is in and a LEAVE of one it is not in count
        // (status 4 and 5) but change nothing: no event.
        send(
            3,
            Command::Join {
                group: "G".into(),
                status: 4,
            },
        );
        send(
            4,
            Command::Leave {
                group: "K".into(),
                status: 5,
            },
        );
        send(5, Command::Ping);
        assert_eq!(received().command, Command::PingOk);
        let membership = |e: &Event| matches!(e, Event::Join { peer, .. } | Event::Leave { peer, .. } if *peer == fake);
        assert_eq!(events.count(membership), 0, "an event without a change");
        // With beacons a GOODBYE changes nothing (the port-0 beacon says it).
        send(6, Command::Goodbye);
        send(7, Command::Ping);
        assert_eq!(received().command, Command::PingOk);
        assert_eq!(events.count(is_exit(fake)), 0, "GOODBYE without gossip");

        // A JOIN with the wrong status (5 + 1 is 6): removed, not aborted.
        send(
            8,
            Command::Join {
                group: "H".into(),
                status: 7,
            },
        );
        events.expect("EXIT after a missed JOIN", is_exit(fake));
        assert!(node.peers().unwrap().is_empty());

        // It comes back with a new HELLO: ENTER again, and our HELLO anew.
        send(1, hello(vec![]));
        events.expect("ENTER again", is_enter(fake));
        let again = received();
        assert!(matches!(again.command, Command::Hello { .. }));
        assert_eq!(again.sequence, 1);

        // A sequence gap: removed.
        send(3, Command::Ping);
        events.expect("EXIT after a gap", is_exit(fake));

        // Back once more, then silent: PING, EVASIVE, SILENT, then EXIT.
        send(1, hello(vec![]));
        events.expect("ENTER a third time", is_enter(fake));
        let start = Instant::now();
        assert!(matches!(received().command, Command::Hello { .. }));
        let evasive = |e: &Event| matches!(e, Event::Evasive { peer, .. } if *peer == fake);
        let silent = |e: &Event| matches!(e, Event::Silent { peer, .. } if *peer == fake);
        events.expect("EVASIVE", evasive);
        assert_eq!(received().command, Command::Ping);
        events.expect("SILENT", silent);
        events.expect("EXIT on expiry", is_exit(fake));
        assert!(
            start.elapsed() >= Duration::from_millis(1400),
            "{:?}",
            start.elapsed()
        );
        // The stranger never entered.
        assert_eq!(events.count(|e| matches!(e, Event::Enter { .. })), 0);
    }

    #[test]
    fn events_cross_the_pipe_unchanged() {
        let peer = [9; 16];
        let headers: Headers = [
            ("A".to_string(), "1".to_string()),
            ("B".into(), String::new()),
        ]
        .into_iter()
        .collect();
        let all = vec![
            Event::Enter {
                peer,
                name: "n".into(),
                headers,
                address: "tcp://127.0.0.1:50000".into(),
            },
            Event::Enter {
                peer,
                name: String::new(),
                headers: Headers::new(),
                address: String::new(),
            },
            Event::Exit {
                peer,
                name: "n".into(),
            },
            Event::Join {
                peer,
                name: "n".into(),
                group: "g".into(),
            },
            Event::Leave {
                peer,
                name: "n".into(),
                group: "g".into(),
            },
            Event::Whisper {
                peer,
                name: "n".into(),
                content: vec![vec![], b"x".to_vec()],
            },
            Event::Shout {
                peer,
                name: "n".into(),
                group: "g".into(),
                content: vec![b"y".to_vec()],
            },
            Event::Evasive {
                peer,
                name: "n".into(),
            },
            Event::Silent {
                peer,
                name: "n".into(),
            },
            Event::Leader {
                group: "g".into(),
                peer,
                name: "n".into(),
            },
            Event::Stop,
        ];
        for event in all {
            assert_eq!(
                Event::from_message(event.clone().into_message()).unwrap(),
                event
            );
        }
        assert!(Event::from_message(Message::from_frames(["NOPE", "x"])).is_err());
    }

    #[test]
    fn gossip_nodes_find_each_other_through_one_seed_and_say_goodbye_without_beacons() {
        let context = zmq::Context::new();
        // A free port for the seed's gossip server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let seed = format!("tcp://127.0.0.1:{port}");
        let gossip = |name: &str, bind: bool| NodeConfig {
            gossip_bind: bind.then(|| seed.clone()),
            gossip_connect: if bind { vec![] } else { vec![seed.clone()] },
            // Beacons would find them too: a port nobody listens on, and
            // an expiry far beyond the test, so only gossip and GOODBYE act.
            port: 5849,
            timing: Timing {
                evasive: Duration::from_secs(60),
                expired: Duration::from_secs(120),
            },
            ..config(5849, name)
        };
        let nodes: Vec<Node> = ["hub", "ann", "bob"]
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let node = Node::new(&context, gossip(name, index == 0)).unwrap();
                node.join("G").unwrap();
                node.start().unwrap();
                node
            })
            .collect();
        let uuids: Vec<Uuid> = nodes.iter().map(Node::uuid).collect();
        let mut events: Vec<Events> = nodes.iter().map(Events::of).collect();
        for (index, list) in events.iter_mut().enumerate() {
            for (other, uuid) in uuids.iter().enumerate() {
                if other != index {
                    list.expect("ENTER", is_enter(*uuid));
                    list.expect("JOIN", is_join(*uuid, "G"));
                }
            }
        }
        // ann and bob met through the seed's gossip, not through each other.
        assert_eq!(nodes[1].peers().unwrap().len(), 2);
        nodes[2].stop().unwrap();
        events[0].expect("EXIT of bob (GOODBYE)", is_exit(uuids[2]));
        events[1].expect("EXIT of bob (GOODBYE)", is_exit(uuids[2]));
    }

    #[test]
    fn curve_nodes_meet_only_curve_nodes_and_a_trust_list_keeps_strangers_out() {
        use crate::curve::Keys;
        crate::log_limit::captured::install();
        // A context each: a trust list is a ZAP handler, one per context.
        let contexts: Vec<zmq::Context> = (0..4).map(|_| zmq::Context::new()).collect();
        let keys: Vec<Keys> = (0..3).map(|_| Keys::generate().unwrap()).collect();
        let secure = |name: &str, keys: &Keys, trusted: Option<Vec<[u8; 32]>>| NodeConfig {
            curve: Some(NodeCurve {
                keys: keys.clone(),
                trusted: trusted.map(|list| list.into_iter().collect()),
            }),
            ..config(5851, name)
        };
        // ann trusts everyone; tess only ann; ugo is a stranger to tess;
        // pat is plain.
        let configs = [
            secure("ann", &keys[0], None),
            secure("tess", &keys[1], Some(vec![keys[0].public])),
            secure("ugo", &keys[2], None),
            config(5851, "pat"),
        ];
        let nodes: Vec<Node> = configs
            .into_iter()
            .zip(&contexts)
            .map(|(config, context)| {
                let node = Node::new(context, config).unwrap();
                node.start().unwrap();
                node
            })
            .collect();
        let [ann, tess, ugo, pat] = [0, 1, 2, 3].map(|i| nodes[i].uuid());
        let mut events: Vec<Events> = nodes.iter().map(Events::of).collect();
        events[0].expect("tess ENTER", is_enter(tess));
        events[0].expect("ugo ENTER", is_enter(ugo));
        events[1].expect("ann ENTER", is_enter(ann));
        events[2].expect("ann ENTER", is_enter(ann));
        // Our key travels in HELLO, as zyre's X-PUBLICKEY.
        let header = nodes[1].peer_header(&ann, PUBLIC_KEY_HEADER).unwrap();
        assert_eq!(header, Some(keys[0].public_text()));
        assert!(nodes[0].whisper(&tess, vec![b"secret".to_vec()]).unwrap());
        let whisper = events[1].expect("WHISPER", is_whisper);
        assert!(
            matches!(whisper, Event::Whisper { content, .. } if content == [b"secret".to_vec()])
        );
        // By now each has heard the others' beacons many times over (every
        // 50 ms): tess and ugo never met, and pat met no one.
        assert_eq!(events[1].count(is_enter(ugo)), 0, "tess let a stranger in");
        // Said once per stranger, not once per beacon (at most once: pat's
        // beacons make complaints too, and the process-wide window may
        // hold that one line back).
        let refused = format!("peer {} has a CURVE key we do not trust", hex(&ugo));
        let said = crate::log_limit::captured::lines_with(&refused);
        assert!(said.len() <= 1, "{said:?}");
        assert_eq!(
            events[2].count(is_enter(tess)),
            0,
            "ugo got past tess's trust list"
        );
        assert_eq!(
            events[3].count(|e| matches!(e, Event::Enter { .. })),
            0,
            "plain met CURVE"
        );
        for secure_node in &mut events[..3] {
            assert_eq!(secure_node.count(is_enter(pat)), 0, "CURVE met plain");
        }
        // tess's mailbox itself: ann's key gets through the handshake, a
        // stranger's is refused by the trust list (ZAP), before any message.
        let mailbox = nodes[1].endpoint().unwrap().unwrap();
        let keys_of_tess = keys[1].public;
        let handshake = |keys: &Keys, tag: &str| {
            let context = zmq::Context::new();
            let dealer = context.socket(zmq::DEALER).unwrap();
            dealer.set_linger(0).unwrap();
            keys.make_client(&dealer, &keys_of_tess).unwrap();
            let monitor_endpoint = format!("inproc://curve-probe-{tag}");
            let wanted = zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
                | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw();
            dealer
                .monitor(&monitor_endpoint, i32::from(wanted))
                .unwrap();
            let monitor = context.socket(zmq::PAIR).unwrap();
            monitor.set_rcvtimeo(10_000).unwrap();
            monitor.connect(&monitor_endpoint).unwrap();
            dealer.connect(&mailbox).unwrap();
            let event = monitor
                .recv_multipart(0)
                .expect("a handshake event in 10 s");
            u16::from_le_bytes([event[0][0], event[0][1]])
        };
        assert_eq!(
            handshake(&keys[0], "ann"),
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
        );
        assert_eq!(
            handshake(&keys[2], "ugo"),
            zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()
        );
    }

    /// A fake peer made of raw sockets: a mailbox (ROUTER) the node connects
    /// to, and a DEALER to the node's mailbox.
    struct FakePeer {
        uuid: Uuid,
        inbox: zmq::Socket,
        outbox: zmq::Socket,
        sequence: u16,
    }

    impl FakePeer {
        fn new(
            context: &zmq::Context,
            uuid: Uuid,
            node_mailbox: &str,
            groups: &[&str],
        ) -> FakePeer {
            let inbox = socket::new(context, zmq::ROUTER)
                .linger(0)
                .bind("tcp://127.0.0.1:*")
                .unwrap();
            inbox.set_rcvtimeo(10_000).unwrap();
            let mut identity = vec![1u8];
            identity.extend_from_slice(&uuid);
            let outbox = socket::new(context, zmq::DEALER)
                .linger(0)
                .identity(identity)
                .connect(node_mailbox)
                .unwrap();
            let mut fake = FakePeer {
                uuid,
                inbox,
                outbox,
                sequence: 0,
            };
            let endpoint = fake.inbox.get_last_endpoint().unwrap().unwrap();
            fake.send(Command::Hello {
                endpoint,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                status: 1,
                name: hex(&uuid)[..4].into(),
                headers: Headers::new(),
            });
            fake
        }

        fn send(&mut self, command: Command) {
            self.sequence += 1;
            let frames = wire::Message {
                sequence: self.sequence,
                command,
            }
            .encode()
            .unwrap();
            self.outbox.send_multipart(frames, 0).unwrap();
        }

        /// The next message from the node that is not HELLO or PING.
        fn next(&self) -> Command {
            loop {
                let frames = self
                    .inbox
                    .recv_multipart(0)
                    .expect("a message from the node");
                let command = wire::Message::decode(&frames[1..]).unwrap().command;
                if !matches!(command, Command::Hello { .. } | Command::Ping) {
                    return command;
                }
            }
        }
    }

    /// zyre's echo-wave election with two fake zyre contestants, zed (the
    /// smaller UUID) and yan, and our node, which does not contest: it sends
    /// zed's wave on to yan, ignores yan's worse challenger, echoes to zed
    /// once it has heard zed's wave from both, and passes zed's LEADER on.
    #[test]
    fn a_zyre_election_gets_our_echo_and_our_leader_message() {
        let context = zmq::Context::new();
        let node = Node::new(&context, config(5852, "node")).unwrap();
        node.join("G").unwrap();
        let mailbox = node.start().unwrap();
        let mut events = Events::of(&node);
        let mut zed = FakePeer::new(&context, [0x0A; 16], &mailbox, &["G"]);
        let mut yan = FakePeer::new(&context, [0x0B; 16], &mailbox, &["G"]);
        let mut xio = FakePeer::new(&context, [0x0C; 16], &mailbox, &["G"]);
        // A ready peer in another group only: not a member of G's wave.
        let wil = FakePeer::new(&context, [0x0D; 16], &mailbox, &["H"]);
        events.expect("JOIN zed", is_join(zed.uuid, "G"));
        events.expect("JOIN yan", is_join(yan.uuid, "G"));
        events.expect("JOIN xio", is_join(xio.uuid, "G"));
        events.expect("JOIN wil", is_join(wil.uuid, "H"));
        let (zed_id, yan_id) = (hex(&zed.uuid), hex(&yan.uuid));
        let elect = |challenger: &str| Command::Elect {
            group: "G".into(),
            challenger: challenger.into(),
        };
        let leader = |leader: &str| Command::Leader {
            group: "G".into(),
            leader: leader.into(),
        };

        // zed's wave (the lowest id wins) is sent on to the other members.
        zed.send(elect(&zed_id));
        assert_eq!(yan.next(), elect(&zed_id), "zed's wave sent on to yan");
        assert_eq!(xio.next(), elect(&zed_id), "zed's wave sent on to xio");
        // yan's own, worse, challenger is ignored; yan's and xio's echoes of
        // zed's are counted (not a new wave), and with every member's the
        // echo goes to the father alone.
        yan.send(elect(&yan_id));
        yan.send(elect(&zed_id));
        xio.send(elect(&zed_id));
        assert_eq!(zed.next(), elect(&zed_id), "the echo to the father");
        zed.send(leader(&zed_id));
        assert_eq!(zed.next(), leader(&zed_id));
        assert_eq!(yan.next(), leader(&zed_id));
        assert_eq!(xio.next(), leader(&zed_id));
        // Until every member's LEADER is in, the wave goes on: a worse
        // challenger is still ignored.
        yan.send(elect(&yan_id));
        yan.send(leader(&zed_id));
        xio.send(leader(&zed_id));
        // (xio's PING-OK: its LEADER has been read, and nothing came first.)
        xio.send(Command::Ping);
        assert_eq!(xio.next(), Command::PingOk);
        // The wave is over: a new one from yan starts afresh.
        yan.send(elect(&yan_id));
        assert_eq!(zed.next(), elect(&yan_id));
        assert_eq!(xio.next(), elect(&yan_id));
        // Nothing else was sent: in particular no second echo or LEADER.
        zed.outbox.send("not ZRE", 0).unwrap();
        // wil heard the node's HELLO (and maybe PINGs), nothing of G.
        wil.inbox.set_rcvtimeo(300).unwrap();
        while let Ok(frames) = wil.inbox.recv_multipart(0) {
            let command = wire::Message::decode(&frames[1..]).unwrap().command;
            assert!(
                matches!(command, Command::Hello { .. } | Command::Ping),
                "wil got {command:?}"
            );
        }
        for (name, peer) in [("zed", &zed), ("yan", &yan), ("xio", &xio)] {
            peer.inbox.set_rcvtimeo(300).unwrap();
            let extra = peer.inbox.recv_multipart(0);
            assert!(extra.is_err(), "{name} got more: {extra:?}");
        }
    }

    #[test]
    fn only_tcp_endpoints_with_an_address_are_accepted_from_peers() {
        assert!(is_tcp_endpoint("tcp://127.0.0.1:49152"));
        assert!(is_tcp_endpoint("tcp://[::1]:49152"));
        assert!(!is_tcp_endpoint("tcp://127.0.0.1:0"));
        assert!(!is_tcp_endpoint("tcp://*:49152"));
        assert!(!is_tcp_endpoint("inproc://zguide-actor-1-0"));
        assert!(!is_tcp_endpoint("ipc:///tmp/x"));
        assert!(!is_tcp_endpoint("tcp://example.com:80"));
    }

    #[test]
    fn names_and_headers_that_do_not_fit_in_a_hello_are_refused() {
        let context = zmq::Context::new();
        let mut long_name = config(5843, "x");
        long_name.name = Some("n".repeat(256));
        assert!(Node::new(&context, long_name).is_err());
        let mut long_key = config(5843, "x");
        long_key.headers.insert("k".repeat(256), String::new());
        assert!(Node::new(&context, long_key).is_err());
        let node = Node::new(&context, NodeConfig::default()).unwrap();
        assert_eq!(node.name(), &hex(&node.uuid())[..6], "default name");
        assert!(node.join(&"g".repeat(256)).is_err());
        assert_eq!(mailbox_ip(udp::DEFAULT_BROADCAST), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn the_mailbox_binds_on_the_interface_the_beacons_leave_by() {
        let list = udp::interfaces().unwrap();
        for interface in &list {
            if let Some(broadcast) = interface.broadcast.filter(|b| !b.is_loopback()) {
                let first = list
                    .iter()
                    .find(|i| i.broadcast == Some(broadcast))
                    .unwrap();
                assert_eq!(mailbox_ip(broadcast), first.address, "{list:?}");
            }
        }
        // 255.255.255.255, or a broadcast address of no interface here: the
        // first interface with a broadcast address that is not loopback.
        let wide = match list
            .iter()
            .find(|i| !i.address.is_loopback() && i.broadcast.is_some())
        {
            Some(interface) => interface.address,
            None => Ipv4Addr::LOCALHOST,
        };
        assert_eq!(mailbox_ip(Ipv4Addr::BROADCAST), wide, "{list:?}");
        assert_eq!(mailbox_ip(Ipv4Addr::new(198, 51, 100, 255)), wide);
    }

    #[test]
    fn content_is_checked_against_the_frame_bound() {
        let frames = |n: usize| vec![b"x".to_vec(); n];
        assert!(check_content(&frames(wire::MAX_CONTENT_FRAMES)).is_ok());
        assert!(check_content(&frames(wire::MAX_CONTENT_FRAMES + 1)).is_err());
        assert!(check_content(&[]).is_ok());
    }

    #[test]
    fn gossip_tuples_naming_us_or_an_endpoint_that_is_not_tcp_are_not_followed() {
        use super::super::gossip::Command as Gossip;
        let context = zmq::Context::new();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let seed = format!("tcp://127.0.0.1:{port}");
        let node = Node::new(
            &context,
            NodeConfig {
                gossip_bind: Some(seed.clone()),
                timing: Timing {
                    evasive: Duration::from_millis(100),
                    expired: Duration::from_millis(800),
                },
                ..config(5853, "seed")
            },
        )
        .unwrap();
        node.start().unwrap();
        // Three mailboxes a tuple may point the node at.
        let mailbox = |endpoint: &str| {
            let inbox = socket::new(&context, zmq::ROUTER)
                .linger(0)
                .bind(endpoint)
                .unwrap();
            let bound = inbox.get_last_endpoint().unwrap().unwrap();
            (inbox, bound)
        };
        let ipc = std::env::temp_dir().join(format!("zre-gossip-test-{}", std::process::id()));
        let (ours, ours_endpoint) = mailbox("tcp://127.0.0.1:*");
        let (not_tcp, not_tcp_endpoint) = mailbox(&format!("ipc://{}", ipc.display()));
        let (good, good_endpoint) = mailbox("tcp://127.0.0.1:*");
        // A gossip client publishes them, in this order.
        let client = socket::new(&context, zmq::DEALER)
            .linger(0)
            .connect(&seed)
            .unwrap();
        let publish = |uuid: Uuid, endpoint: &str| {
            let tuple = Gossip::Publish {
                key: hex(&uuid),
                value: endpoint.to_string(),
                ttl: 600,
            };
            client.send(tuple.encode().unwrap(), 0).unwrap();
        };
        client.send(Gossip::Hello.encode().unwrap(), 0).unwrap();
        publish(node.uuid(), &ours_endpoint);
        publish([0x77; 16], &not_tcp_endpoint);
        publish([0x55; 16], &good_endpoint);
        // The last one is followed: the node says HELLO there ...
        good.set_rcvtimeo(10_000).unwrap();
        let hello = good.recv_multipart(0).expect("a HELLO from the node");
        let hello = wire::Message::decode(&hello[1..]).unwrap();
        assert!(matches!(hello.command, Command::Hello { .. }));
        // ... and neither of the others, read before it, was.
        for (name, inbox) in [("our own UUID", &ours), ("an ipc endpoint", &not_tcp)] {
            inbox.set_rcvtimeo(300).unwrap();
            let got = inbox.recv_multipart(0);
            assert!(got.is_err(), "the node followed {name}: {got:?}");
        }
        // The peer it followed never says HELLO: it is PINGed when evasive
        // and dropped when expired, and, never having entered, makes no
        // event on the way.
        let ping = good.recv_multipart(0).expect("a PING when evasive");
        let ping = wire::Message::decode(&ping[1..]).unwrap();
        assert_eq!(ping.command, Command::Ping);
        let quiet_until = Instant::now() + Duration::from_millis(1500);
        while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
            if let Some(event) = node.recv_timeout(left).unwrap() {
                assert!(
                    !matches!(
                        event,
                        Event::Evasive { .. } | Event::Silent { .. } | Event::Exit { .. }
                    ),
                    "{event:?}"
                );
            }
        }
        let _ = std::fs::remove_file(&ipc);
    }

    #[test]
    fn a_gossip_key_is_a_uuid_in_32_hex_digits() {
        assert_eq!(uuid_from_hex(&"0A".repeat(16)), Some([0x0A; 16]));
        assert_eq!(uuid_from_hex(&"fe".repeat(16)), Some([0xFE; 16]));
        let mut counting = String::new();
        for n in 0..16u8 {
            counting.push_str(&format!("{n:02x}"));
        }
        let expected: Vec<u8> = (0..16).collect();
        assert_eq!(uuid_from_hex(&counting).map(|u| u.to_vec()), Some(expected));
        assert_eq!(uuid_from_hex(&"0A".repeat(15)), None);
        assert_eq!(uuid_from_hex(&format!("{}0", "0A".repeat(16))), None);
        assert_eq!(uuid_from_hex(&format!("{}zz", "0A".repeat(15))), None);
        // 32 bytes but not ASCII: refused, not sliced inside a character.
        assert_eq!(uuid_from_hex(&format!("é{}", "0".repeat(30))), None);
    }

    #[test]
    fn a_message_is_kept_to_its_first_max_frames() {
        let context = zmq::Context::new();
        let (sender, receiver) = (
            context.socket(zmq::PAIR).unwrap(),
            context.socket(zmq::PAIR).unwrap(),
        );
        receiver.bind("inproc://recv-bounded").unwrap();
        sender.connect("inproc://recv-bounded").unwrap();
        let read = || {
            let mut items = [receiver.as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, 5000).unwrap();
            match recv_bounded(&receiver).unwrap() {
                Inbound::Message { frames, complete } => (frames, complete),
                Inbound::None => panic!("nothing to read"),
            }
        };
        let numbered = |n: usize| {
            (0..n)
                .map(|i| i.to_string().into_bytes())
                .collect::<Vec<_>>()
        };
        sender.send_multipart(numbered(MAX_FRAMES), 0).unwrap();
        assert_eq!(read(), (numbered(MAX_FRAMES), true));
        sender.send_multipart(numbered(MAX_FRAMES + 5), 0).unwrap();
        assert_eq!(read(), (numbered(MAX_FRAMES), false));
        // What a peer may send: its routing id, the command frame and
        // wire::MAX_CONTENT_FRAMES content frames; not a frame more.
        sender
            .send_multipart(numbered(2 + wire::MAX_CONTENT_FRAMES + 1), 0)
            .unwrap();
        assert_eq!(read(), (numbered(2 + wire::MAX_CONTENT_FRAMES), false));
        // The rest of the long one was read and dropped.
        sender.send("next", 0).unwrap();
        assert_eq!(read(), (vec![b"next".to_vec()], true));
        assert!(matches!(recv_bounded(&receiver).unwrap(), Inbound::None));
    }

    #[test]
    fn discovery_says_how_peers_are_found() {
        let beacons = NodeConfig {
            port: 5670,
            broadcast: Ipv4Addr::new(127, 255, 255, 255),
            interval: Duration::from_millis(250),
            ..NodeConfig::default()
        };
        assert_eq!(
            beacons.discovery(),
            "beacons to 127.255.255.255:5670 every 250 ms"
        );
        let server = NodeConfig {
            gossip_bind: Some("tcp://127.0.0.1:9999".into()),
            ..NodeConfig::default()
        };
        assert_eq!(server.discovery(), "gossip (server tcp://127.0.0.1:9999)");
        let seeds = NodeConfig {
            gossip_connect: vec!["tcp://127.0.0.1:1".into(), "tcp://127.0.0.1:2".into()],
            ..NodeConfig::default()
        };
        assert_eq!(
            seeds.discovery(),
            "gossip (seeds tcp://127.0.0.1:1 tcp://127.0.0.1:2)"
        );
        let both = NodeConfig {
            gossip_bind: Some("tcp://127.0.0.1:9999".into()),
            ..seeds
        };
        assert_eq!(
            both.discovery(),
            "gossip (server tcp://127.0.0.1:9999, seeds tcp://127.0.0.1:1 tcp://127.0.0.1:2)"
        );
    }

    /// The agent's `ERR` reaches the caller as the protocol error it names,
    /// not as an ended task.
    #[test]
    fn a_node_joins_at_most_max_groups_and_says_why_not() {
        let context = zmq::Context::new();
        let node = Node::new(&context, config(5846, "many")).unwrap();
        for index in 0..wire::MAX_GROUPS {
            node.join(&format!("g{index}")).unwrap();
        }
        node.join("g0").unwrap(); // in it already: no change, no error
        match node.join("one more") {
            Err(Error::Protocol(why)) => {
                assert_eq!(why, "in 256 groups already (at most 256)")
            }
            other => panic!("the 257th group: {other:?}"),
        }
        node.leave("g0").unwrap();
        node.join("one more").unwrap();
    }

    #[test]
    fn the_mailbox_tries_every_port_of_the_range_once_in_turn() {
        for start in [0u32, 1, 2, 3, 4, 6, u32::MAX] {
            let ports: Vec<u16> = ports_in_turn(&(10..=13), start).collect();
            assert_eq!(ports[0], 10 + (start % 4) as u16, "from {start}");
            for pair in ports.windows(2) {
                let next = if pair[0] == 13 { 10 } else { pair[0] + 1 };
                assert_eq!(pair[1], next, "from {start}: {ports:?}");
            }
            let mut sorted = ports.clone();
            sorted.sort();
            assert_eq!(sorted, [10, 11, 12, 13], "from {start}");
        }
        let all: BTreeSet<u16> = ports_in_turn(&EPHEMERAL_PORTS, 12_345).collect();
        assert_eq!(all, EPHEMERAL_PORTS.collect::<BTreeSet<u16>>());
    }

    /// The goodbye sent from a socket of its own after Ctrl-C.
    #[test]
    fn a_goodbye_of_our_own_reaches_the_beacon_port() {
        let listener = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_read_timeout(Some(WAIT)).unwrap();
        let port = listener.local_addr().unwrap().port();
        send_goodbye(b"goodbye", Ipv4Addr::LOCALHOST, port).unwrap();
        let mut buffer = [0u8; 64];
        let (size, _) = listener.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..size], b"goodbye");
    }

    /// Its beacons, then a port-0 beacon (goodbye) when it stops, from the
    /// beacon's own socket, and by no other way.
    #[test]
    fn a_stopping_node_says_goodbye_by_beacon() {
        let context = zmq::Context::new();
        let listener = Beacon::new(&context, 5847, udp::DEFAULT_BROADCAST).unwrap();
        listener.subscribe(b"ZRE").unwrap();
        let node = Node::new(&context, config(5847, "leaving")).unwrap();
        let uuid = node.uuid();
        // The node's next beacon within `within`: its source and port.
        let next = |within: Duration| {
            let deadline = Instant::now() + within;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                let heard = listener.recv_timeout(left.as_millis() as i64).unwrap()?;
                if let Some(beacon) = wire::Beacon::decode(&heard.payload) {
                    if beacon.uuid == uuid {
                        return Some((heard.from, beacon.port));
                    }
                }
            }
            None
        };
        node.start().unwrap();
        let (source, port) = next(WAIT).expect("a beacon");
        assert_ne!(port, 0);
        node.stop().unwrap();
        loop {
            match next(WAIT).expect("a goodbye") {
                (from, 0) => {
                    assert_eq!(from, source, "the goodbye's source");
                    break;
                }
                (from, _) => assert_eq!(from, source),
            }
        }
        // The beacon may repeat its goodbye; nothing comes from elsewhere.
        while let Some((from, port)) = next(QUIET) {
            assert_eq!((from, port), (source, 0), "after the goodbye");
        }
    }

    /// Between its timers the agent sleeps: an idle node's loop turns for
    /// what it hears and for its reaps, not more. Counted in a
    /// child process (this test binary, this test alone), so that other
    /// tests' nodes do not count.
    #[test]
    fn an_idle_node_does_not_spin() {
        const CHILD: &str = "ZGUIDE_ZRE_IDLE_CHILD";
        const IDLE: Duration = Duration::from_secs(1);
        if std::env::var_os(CHILD).is_some() {
            let context = zmq::Context::new();
            let node = Node::new(&context, config(5845, "idle")).unwrap();
            node.start().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let before = AGENT_TURNS.load(Ordering::Relaxed);
            std::thread::sleep(IDLE);
            println!(
                "idle turns {}",
                AGENT_TURNS.load(Ordering::Relaxed) - before
            );
            return;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "zre::node::tests::an_idle_node_does_not_spin",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let turns: u64 = stdout
            .lines()
            .find_map(|line| line.split_once("idle turns "))
            .and_then(|(_, micros)| micros.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no figure from the child: {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        // No peer here, so a turn a reap (one a second; here 1 or 2); a loop
        // that did not wait turns tens of thousands of times.
        assert!(turns < 500, "{turns} turns in {IDLE:?} idle");
    }
}
