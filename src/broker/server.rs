//! The study broker's socket loop: MDP/0.1, MDP/0.2 (RFC 18 and the
//! majortomo dialect) and SBP/1 on one ROUTER socket, bound to any number of
//! endpoints (tcp, ipc, inproc: transport bridging).
//!
//! The decisions are [`BrokerState`]'s; this module turns what arrives into
//! calls on it and its [`Action`]s into frames, in the dialect each peer
//! speaks. Around that it keeps what the state does not: heartbeats to
//! workers, the `mmi.*` management services, the request store, the name
//! service, UDP survey answers and the metrics page.
//!
//! ## Dialects
//!
//! The broker tells protocols apart by the signature frame, after an optional
//! leading empty frame, and answers each peer in the shape it spoke:
//!
//! | signature | peer | shape of the answer |
//! |---|---|---|
//! | `MDPC01` | the guide's `mdcliapi`/`mdcliapi2` | `[""]["MDPC01"][service][body…]` |
//! | `MDPC02`, no empty frame | RFC 18 client | `["MDPC02"][0x02/0x03][service][body…]` |
//! | `MDPC02` after an empty frame | majortomo client | `[""]["MDPC02"][0x03/0x04][body…]` (majortomo numbers client commands as its worker ones: REQUEST 0x02, PARTIAL 0x03, FINAL 0x04; and no service frame) |
//! | `SBPC01` | SBP/1 client, with or without the empty frame | SBP/1 REPLY |
//! | `MDPW01` / `MDPW02` / `SBPW01` | workers | that worker's dialect, with the empty frame if it sent one |
//!
//! The broker's token for a client, which workers echo, is one byte naming
//! the client's dialect followed by its routing id. A request from an MDP
//! client gets a correlation id from the broker (MDP has none).
//!
//! MDP has no status codes. A reply whose status is not 200 (a deadline, a
//! dead worker, a full queue) is not sent to an MDP client: it times out
//! and retries, as MDP clients do after any failure. A worker's PARTIAL
//! replies go straight to an MDP/0.2 client; a client that cannot take more
//! than one reply (MDP/0.1, SBP/1) gets the partial bodies in front of the
//! FINAL body, in one reply (at most [`MAX_PARTIAL_BYTES`]; past it the
//! partials are dropped and the reply says so in its `reason`).
//!
//! ## Replies to a client that is away
//!
//! A reply to an SBP/1 client whose connection is gone for the moment (it is
//! reconnecting, or the broker just restarted) is kept, with its request
//! still in the store, and sent as soon as the client is heard from again:
//! its PING (the client API pings every 2 s while it waits) or its retry.
//!
//! ## Persistence
//!
//! With a store, every SBP/1 request is written to it, in one durable
//! transaction per batch of messages read, *before* the broker acts on it;
//! a request is forgotten when its reply is sent. After a crash the broker
//! reloads what is stored and serves it again: clients retry with the same
//! correlation id, and a request already stored is not stored twice, so each
//! is answered once (a reply that was sent just before a crash may be sent
//! again; the client API drops it by its correlation id). MDP requests are
//! not stored: MDP clients retry on their own new sockets, whose routing
//! ids a restarted broker could not reach anyway.
//!
//! ## Bounds, and what happens past each
//!
//! | what | default | past it |
//! |---|---|---|
//! | one frame (`ZMQ_MAXMSGSIZE`) | 4 MiB | libzmq drops the connection |
//! | messages queued per peer, each way (HWM) | 1,000 | libzmq stops reading from that peer; a reply that cannot be queued is dropped and counted |
//! | requests per service / bytes per service / bytes in all | 100,000 / 64 MiB / 256 MiB (100,000 `mdclient2` requests, its default, take about 34 MiB) | 503 |
//! | services, workers | 10,000 each | 503 / DISCONNECT |
//! | names in the name service | 10,000 | 503 |
//! | routing id | 254 bytes | message dropped (the client token must fit SBP's 255) |
//! | partial replies held for one client | 16 MiB | dropped, reason says so |
//! | replies kept for an SBP/1 client that is not connected | 10,000 per client, 64 MiB in all, 60 s | dropped (the client retries by correlation id) |
//! | log lines about peers | 10 per 2.5 s for each kind of fault, escaped and cut | counted, the count logged |

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::broker::metrics::{self, BrokerFigures, MetricsServer};
use crate::broker::pair::{Pair, PairOptions};
use crate::broker::peering::{self, Peering};
use crate::broker::protocol::{
    self, ClientCommand, Frames, Properties, Reply, Request, Status, WorkerCommand,
};
use crate::broker::state::{Action, BrokerState, Config};
use crate::broker::store::{self, Store};
use crate::broker::MAX_NAMES;
use crate::curve::{Authenticator, Keys};
use crate::interrupt::{self, Pollable};
use crate::log_limit::Window;
use crate::message::show;
use crate::{survey, Error, Message};

/// Heartbeat interval towards workers (MDP's 2.5 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(2500);
/// How often deadlines and silent workers are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Messages read before the broker acts on them (one store transaction).
pub const BATCH: usize = 256;
/// The largest frame accepted (`ZMQ_MAXMSGSIZE`).
pub const MAX_FRAME: i64 = 4 << 20;
/// Partial reply bytes held for a client that takes one reply only.
pub const MAX_PARTIAL_BYTES: usize = 16 << 20;
/// Messages queued per peer, each way.
pub const HWM: i32 = 1000;
/// Replies kept for one unreachable SBP/1 client, and in all (bytes).
pub const MAX_PARKED_PER_CLIENT: usize = 10_000;
pub const MAX_PARKED_BYTES: usize = 64 << 20;
/// How long a reply waits for its client to come back.
pub const PARKED_EXPIRY: Duration = Duration::from_secs(60);
/// Log lines per heartbeat interval about one kind of fault.
pub const FAULT_LINES: u32 = 10;

const MDPC01: &[u8] = b"MDPC01";
const MDPC02: &[u8] = b"MDPC02";
const MDPW01: &[u8] = b"MDPW01";
const MDPW02: &[u8] = b"MDPW02";

/// How a client speaks: the first byte of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientDialect {
    Mdp01,
    Rfc18,
    Majortomo,
    Sbp { leading_empty: bool },
}

impl ClientDialect {
    fn tag(self) -> u8 {
        match self {
            ClientDialect::Mdp01 => b'1',
            ClientDialect::Rfc18 => b'2',
            ClientDialect::Majortomo => b'm',
            ClientDialect::Sbp {
                leading_empty: false,
            } => b'S',
            ClientDialect::Sbp {
                leading_empty: true,
            } => b's',
        }
    }

    fn from_tag(tag: u8) -> Option<ClientDialect> {
        Some(match tag {
            b'1' => ClientDialect::Mdp01,
            b'2' => ClientDialect::Rfc18,
            b'm' => ClientDialect::Majortomo,
            b'S' => ClientDialect::Sbp {
                leading_empty: false,
            },
            b's' => ClientDialect::Sbp {
                leading_empty: true,
            },
            _ => return None,
        })
    }

    fn streams(self) -> bool {
        matches!(self, ClientDialect::Rfc18 | ClientDialect::Majortomo)
    }
}

/// The broker's token for a client: its dialect, then its routing id.
fn client_token(dialect: ClientDialect, routing_id: &[u8]) -> Vec<u8> {
    let mut token = Vec::with_capacity(routing_id.len() + 1);
    token.push(dialect.tag());
    token.extend_from_slice(routing_id);
    token
}

fn split_token(token: &[u8]) -> Option<(ClientDialect, &[u8])> {
    let (&tag, routing_id) = token.split_first()?;
    if routing_id.is_empty() {
        return None;
    }
    Some((ClientDialect::from_tag(tag)?, routing_id))
}

/// Which protocol and side a message speaks, by its signature frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signature {
    Mdp01Client,
    Mdp02Client,
    SbpClient,
    Mdp01Worker,
    Mdp02Worker,
    SbpWorker,
}

/// The partial replies a worker sent before its final one, as kept in
/// `Broker::partials` (frames, bytes): the frames, and whether some were
/// dropped past the bound (marked by a size of `usize::MAX`).
fn held_partials(held: Option<(Vec<Vec<u8>>, usize)>) -> (Vec<Vec<u8>>, bool) {
    held.map_or((Vec::new(), false), |(frames, size)| {
        (frames, size == usize::MAX)
    })
}

/// What became of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Delivered,
    /// No peer has that routing id now.
    Unreachable,
    /// The peer is there but not reading (its queue is full): dropped.
    Dropped,
}

/// A reply waiting for its client to come back.
struct Parked {
    frames: Frames,
    stored: Option<u64>,
    size: usize,
    until: Instant,
}

/// How a worker speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerDialect {
    Mdp01,
    Mdp02 { leading_empty: bool },
    Sbp { leading_empty: bool },
}

/// The broker's settings; `Options::default()` is `mdbroker`'s.
#[derive(Debug, Clone)]
pub struct Options {
    /// Endpoints to bind (tcp, ipc, inproc); the first tcp one's port is the
    /// one survey answers give.
    pub binds: Vec<String>,
    pub verbose: bool,
    pub config: Config,
    /// The request store's file; `None`: requests live in memory only.
    pub store: Option<PathBuf>,
    /// CURVE: the server's keys, and the directory of allowed clients'
    /// public keys. With keys, plain connections are refused.
    pub curve: Option<(Keys, PathBuf)>,
    /// Serve Prometheus metrics over HTTP on this address.
    pub metrics: Option<String>,
    /// Answer UDP surveys on this port (`None`: do not).
    pub survey_port: Option<u16>,
    pub heartbeat: Duration,
    pub max_frame: i64,
    pub hwm: i32,
    /// Peer brokers' endpoints (peering: services whose policy is
    /// `forward` are served by them when no worker is here).
    pub peers: Vec<String>,
    /// How often each peer is asked for its capacity.
    pub peer_interval: Duration,
    /// Silence after which a peer is forgotten.
    pub peer_ttl: Duration,
    /// One of a Binary Star failover pair (see [`crate::broker::pair`]).
    pub pair: Option<PairOptions>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            binds: vec![crate::broker::DEFAULT_BIND.to_string()],
            verbose: false,
            config: Config::default(),
            store: None,
            curve: None,
            metrics: None,
            survey_port: None,
            heartbeat: HEARTBEAT_INTERVAL,
            max_frame: MAX_FRAME,
            hwm: HWM,
            peers: Vec::new(),
            peer_interval: peering::POLL_INTERVAL,
            peer_ttl: peering::PEER_TTL,
            pair: None,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One message read, classified, before the broker acts on it.
enum Inbound {
    /// A client request; `stored` is filled once it is in the store.
    Request { token: Vec<u8>, request: Request },
    /// A request to `mmi.*`.
    Management { token: Vec<u8>, request: Request },
    Ping {
        routing_id: Vec<u8>,
        leading_empty: bool,
    },
    Worker {
        routing_id: Vec<u8>,
        dialect: WorkerDialect,
        command: WorkerInput,
    },
    /// Broken: logged, dropped; a 400 answer if one can be given.
    Malformed { answer: Option<(Vec<u8>, Reply)> },
}

/// A worker's command, dialect-free.
enum WorkerInput {
    Ready {
        service: Vec<u8>,
        properties: Properties,
    },
    /// MDP/0.2 PARTIAL.
    Partial {
        client: Vec<u8>,
        body: Frames,
    },
    /// An MDP reply (0.1 REPLY or 0.2 FINAL): no correlation of its own.
    Final {
        client: Vec<u8>,
        body: Frames,
    },
    Reply {
        client: Vec<u8>,
        reply: Reply,
    },
    Heartbeat,
    Disconnect,
    /// A command a worker may not send: DISCONNECT.
    Invalid(String),
}

/// The running broker.
pub struct Broker {
    socket: zmq::Socket,
    state: BrokerState,
    options: Options,
    workers: HashMap<Vec<u8>, WorkerDialect>,
    store: Option<Store>,
    /// (client token, correlation) → store id, for every stored request.
    stored: HashMap<(Vec<u8>, Vec<u8>), u64>,
    /// Forgotten store ids, written with the next batch.
    to_forget: Vec<u64>,
    /// The name service: (environment, name) → endpoint.
    names: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    /// Replies kept for SBP/1 clients that are not connected right now.
    parked: HashMap<Vec<u8>, std::collections::VecDeque<Parked>>,
    parked_bytes: usize,
    /// Partial bodies held per worker for a client that takes one reply.
    partials: HashMap<Vec<u8>, (Frames, usize)>,
    figures: BrokerFigures,
    /// The properties of every MDP request (made once: they are the same).
    default_properties: Properties,
    started: Instant,
    next_correlation: u64,
    heartbeat_at: Instant,
    /// When the deadlines and silent workers are next checked.
    next_tick: Instant,
    /// When the metrics are next rendered.
    next_publish: Instant,
    /// One log window per place a fault is noticed, so that a flood of one
    /// kind does not hide the others.
    faults: HashMap<u32, Window>,
    survey: Option<survey::Responder>,
    survey_port: u16,
    metrics: Option<MetricsServer>,
    peering: Option<Peering>,
    pair: Option<Pair>,
    _authenticator: Option<Authenticator>,
}

impl Broker {
    /// Binds the socket, opens the store (serving again what it holds),
    /// and starts the optional parts.
    pub fn new(context: &zmq::Context, options: Options) -> Result<Broker, Error> {
        let authenticator = match &options.curve {
            Some((_, allowed_dir)) => {
                let allowed = crate::curve::load_public_keys(allowed_dir).map_err(|e| {
                    Error::Protocol(format!("client keys in {}: {e}", allowed_dir.display()))
                })?;
                log::info!("CURVE on, {} client keys allowed", allowed.len());
                Some(Authenticator::start(context, allowed, options.verbose)?)
            }
            None => None,
        };
        // The store first: a broker that cannot open it (another broker has
        // it locked) must not bind and take requests.
        let store = match &options.store {
            Some(path) => Some(Store::open(path)?),
            None => None,
        };
        let socket = crate::socket::new(context, zmq::ROUTER)
            .max_message_size(options.max_frame)
            .send_hwm(options.hwm)
            .receive_hwm(options.hwm)
            .router_mandatory()
            .build()?;
        if let Some((keys, _)) = &options.curve {
            keys.make_server(&socket)?;
        }
        for endpoint in &options.binds {
            socket.bind(endpoint).map_err(|source| Error::Endpoint {
                action: "bind",
                endpoint: endpoint.clone(),
                source,
            })?;
            log::info!("broker is active at {endpoint}");
        }
        let survey_port = options
            .binds
            .iter()
            .filter(|e| e.starts_with("tcp://"))
            .find_map(|e| e.rsplit(':').next()?.parse().ok())
            .unwrap_or(0);
        let survey = match options.survey_port {
            Some(port) => {
                let udp = survey::bind_udp(port)
                    .map_err(|e| Error::Protocol(format!("survey port {port}: {e}")))?;
                Some(survey::Responder::new(udp, Vec::new(), 100)?)
            }
            None => None,
        };
        let metrics = match &options.metrics {
            Some(address) => {
                let server = MetricsServer::start(address)?;
                log::info!("metrics at http://{}/metrics", server.local_addr());
                Some(server)
            }
            None => None,
        };
        let peering = match options.peers.is_empty() {
            true => None,
            false => Some(Peering::new(
                context,
                &options.peers,
                options.peer_interval,
                options.peer_ttl,
                options.max_frame,
            )?),
        };
        let pair = match &options.pair {
            Some(pair) => Some(Pair::new(context, pair, options.max_frame)?),
            None => None,
        };
        let mut broker = Broker {
            socket,
            state: BrokerState::new(options.config.clone()),
            workers: HashMap::new(),
            store,
            stored: HashMap::new(),
            to_forget: Vec::new(),
            names: BTreeMap::new(),
            partials: HashMap::new(),
            parked: HashMap::new(),
            parked_bytes: 0,
            figures: BrokerFigures::default(),
            default_properties: Properties::default(),
            started: Instant::now(),
            next_correlation: 0,
            heartbeat_at: Instant::now() + options.heartbeat,
            next_tick: Instant::now() + TICK,
            next_publish: Instant::now(),
            faults: HashMap::new(),
            survey,
            survey_port,
            metrics,
            peering,
            pair,
            _authenticator: authenticator,
            options,
        };
        // One of a pair serves what it stored when it becomes active.
        if broker.pair.is_none() {
            broker.restore()?;
        }
        Ok(broker)
    }

    /// Serves again every request the store holds.
    fn restore(&mut self) -> Result<(), Error> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let records = store.load()?;
        let count = records.len();
        let now = now_ms();
        let mut actions = Vec::new();
        for record in records {
            let key = (record.client.clone(), record.request.correlation.clone());
            if self.stored.contains_key(&key) {
                self.to_forget.push(record.id);
                continue;
            }
            self.stored.insert(key, record.id);
            actions.extend(self.state.request(&record.client, record.request, now));
        }
        if count > 0 {
            log::info!("{count} stored requests served again");
        }
        self.perform(actions);
        Ok(())
    }

    /// Runs until Ctrl-C/SIGTERM (then returns `Ok`).
    pub fn run(&mut self) -> Result<(), Error> {
        loop {
            match self.turn(None) {
                Ok(()) => {}
                Err(Error::Interrupted) => return self.shutdown(),
                Err(e) => return Err(e),
            }
        }
    }

    /// One turn of [`run`](Broker::run)'s loop: waits for a message or the
    /// next timer (at most `longest`, for tests), handles what came and the
    /// timers that are due. `Error::Interrupted` on Ctrl-C.
    fn turn(&mut self, longest: Option<Duration>) -> Result<(), Error> {
        let now = Instant::now();
        let mut wake = self.next_tick.min(self.heartbeat_at);
        if let Some(pair) = &self.pair {
            wake = wake.min(pair.next_tick());
        }
        let mut wait = wake.saturating_duration_since(now);
        if let Some(longest) = longest {
            wait = wait.min(longest);
        }
        let mut items = vec![Pollable::Socket(&self.socket)];
        let survey_index = items.len();
        if let Some(responder) = &self.survey {
            items.push(Pollable::Fd(responder.socket().as_raw_fd()));
        }
        let pair_index = items.len();
        if let Some(pair) = &self.pair {
            items.extend(pair.sockets().map(Pollable::Socket));
        }
        let peers_index = items.len();
        if let Some(peering) = &self.peering {
            items.extend(peering.sockets().map(Pollable::Socket));
        }
        let ready = interrupt::poll_any(&items, interrupt::millis(wait))?;
        if ready[0] {
            // Read on while messages wait (a few batches at most, so the
            // timers below still run on time under load).
            for _ in 0..8 {
                if self.read_batch()? < BATCH {
                    break;
                }
            }
        }
        if self.survey.is_some() && ready.get(survey_index).copied().unwrap_or(false) {
            self.answer_surveys();
        }
        if self.pair.is_some() {
            self.pair_messages(
                ready.get(pair_index).copied().unwrap_or(false),
                ready.get(pair_index + 1).copied().unwrap_or(false),
            )?;
        }
        for (index, _) in ready
            .iter()
            .skip(peers_index)
            .enumerate()
            .filter(|(_, ready)| **ready)
        {
            self.peer_replies(index);
        }
        let now = Instant::now();
        if now >= self.next_tick {
            self.tick_peering(now);
            let actions = self.state.tick(now_ms(), now);
            self.perform(actions);
            self.forget_silent_workers();
            self.expire_parked(now);
            self.next_tick = now + TICK;
        }
        if now >= self.heartbeat_at {
            self.heartbeat_workers();
            self.heartbeat_at = now + self.options.heartbeat;
            self.report_held_faults();
        }
        if now >= self.next_publish {
            self.publish_metrics();
            self.next_publish = now + Duration::from_secs(1);
        }
        self.flush_store();
        Ok(())
    }

    /// Logs how many faults were counted but not logged.
    fn report_held_faults(&mut self) {
        let held: u64 = self.faults.values_mut().map(Window::take_held_back).sum();
        if held > 0 {
            log::warn!("broker: {held} more faults not logged");
        }
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        self.report_held_faults();
        log::info!("interrupt received, shutting down...");
        self.flush_store();
        if let Some(store) = self.store.as_mut() {
            store.sync()?;
        }
        Ok(())
    }

    /// Reads what is waiting (up to [`BATCH`] messages), stores the new
    /// requests in one transaction, then acts on each message in order.
    fn read_batch(&mut self) -> Result<usize, Error> {
        let mut inbound = Vec::new();
        while inbound.len() < BATCH {
            let Some(message) = Message::try_recv(&self.socket)? else {
                break;
            };
            if self.options.verbose {
                log::info!("received message: {}", message.summary());
            }
            let message = self.classify(message.into_frames());
            if self.pair.is_some() && !self.pair_admits(&message) {
                continue;
            }
            inbound.push(message);
        }
        let count = inbound.len();
        self.store_requests(&mut inbound);
        for message in inbound {
            self.handle(message);
        }
        Ok(count)
    }

    /// Writes every new SBP/1 request of the batch to the store, in one
    /// durable transaction. A request past the store's bounds is answered
    /// 400; if the store fails, the batch's new requests are answered 503
    /// (and the broker goes on: a full disk must not stop the service).
    fn store_requests(&mut self, inbound: &mut [Inbound]) {
        if self.store.is_none() {
            return;
        }
        let mut fresh = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, message) in inbound.iter_mut().enumerate() {
            let Inbound::Request { token, request } = message else {
                continue;
            };
            if !matches!(split_token(token), Some((ClientDialect::Sbp { .. }, _))) {
                continue;
            }
            if request.body.len() > store::MAX_BODY_FRAMES || token.len() > store::MAX_CLIENT {
                let answer = refusal(token, request, Status::MALFORMED, "over 1000 body frames");
                *message = Inbound::Malformed {
                    answer: Some(answer),
                };
                continue;
            }
            let key = (token.clone(), request.correlation.clone());
            if !self.stored.contains_key(&key) && seen.insert(key) {
                fresh.push(index);
            }
        }
        self.flush_store();
        if fresh.is_empty() {
            return;
        }
        let batch: Vec<(&[u8], &Request)> = fresh
            .iter()
            .filter_map(|&i| match &inbound[i] {
                Inbound::Request { token, request } => Some((token.as_slice(), request)),
                _ => None,
            })
            .collect();
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.accept(&batch) {
            Ok(ids) => {
                for (&index, id) in fresh.iter().zip(ids) {
                    if let Inbound::Request { token, request } = &inbound[index] {
                        self.stored
                            .insert((token.clone(), request.correlation.clone()), id);
                    }
                }
            }
            Err(e) => {
                self.fault(format_args!(
                    "broker: the request store failed: {e}; requests answered 503"
                ));
                for index in fresh {
                    if let Inbound::Request { token, request } = &inbound[index] {
                        let answer = refusal(
                            token,
                            request,
                            Status::NO_WORKERS,
                            "request store unavailable",
                        );
                        inbound[index] = Inbound::Malformed {
                            answer: Some(answer),
                        };
                    }
                }
            }
        }
    }

    /// Writes the forgotten ids (not durably: see [`Store::forget`]).
    fn flush_store(&mut self) {
        if self.to_forget.is_empty() {
            return;
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.forget(&self.to_forget) {
                log::error!("broker: the request store cannot forget answered requests: {e}");
            }
        }
        self.to_forget.clear();
    }

    /// Counts and logs a fault, at most [`FAULT_LINES`] lines per heartbeat
    /// interval for each place in the code that notices one.
    #[track_caller]
    fn fault(&mut self, what: std::fmt::Arguments) {
        self.figures.malformed += 1;
        let place = std::panic::Location::caller().line();
        let period = self.options.heartbeat;
        self.faults
            .entry(place)
            .or_insert_with(|| Window::new(FAULT_LINES, period))
            .warn(what);
    }

    /// Reads one message's dialect and command.
    fn classify(&mut self, frames: Frames) -> Inbound {
        let malformed = Inbound::Malformed { answer: None };
        // A deque: header frames come off the front without copying the body.
        let mut frames = VecDeque::from(frames);
        let Some(routing_id) = frames.pop_front() else {
            return malformed;
        };
        if routing_id.is_empty() || routing_id.len() > protocol::MAX_NAME - 1 {
            self.fault(format_args!(
                "broker: a routing id of {} bytes; dropped",
                routing_id.len()
            ));
            return malformed;
        }
        if !self.parked.is_empty() && self.parked.contains_key(&routing_id) {
            self.unpark(&routing_id);
        }
        let leading_empty = frames.front().is_some_and(Vec::is_empty);
        let signature = frames
            .get(usize::from(leading_empty))
            .map_or(&[][..], Vec::as_slice);
        let protocol = match signature {
            MDPC01 => Signature::Mdp01Client,
            MDPC02 => Signature::Mdp02Client,
            protocol::CLIENT => Signature::SbpClient,
            MDPW01 => Signature::Mdp01Worker,
            MDPW02 => Signature::Mdp02Worker,
            protocol::WORKER => Signature::SbpWorker,
            _ => {
                self.fault(format_args!(
                    "broker: invalid message from {}: {}",
                    show(&routing_id),
                    Message::from_frames(frames.iter().cloned()).summary()
                ));
                return malformed;
            }
        };
        let header = usize::from(leading_empty) + 1;
        match protocol {
            Signature::Mdp01Client => {
                frames.drain(..header);
                self.mdp_request(&routing_id, ClientDialect::Mdp01, frames)
            }
            Signature::Mdp02Client => {
                frames.drain(..header);
                // RFC 18 numbers client commands REQUEST 0x01, PARTIAL 0x02,
                // FINAL 0x03; majortomo uses its worker table for clients
                // too: REQUEST 0x02, PARTIAL 0x03, FINAL 0x04.
                let request = if leading_empty { 0x02 } else { 0x01 };
                if frames.pop_front().as_deref() != Some(&[request]) {
                    self.fault(format_args!(
                        "broker: an MDP/0.2 client command that is not REQUEST, from {}",
                        show(&routing_id)
                    ));
                    return malformed;
                }
                let dialect = if leading_empty {
                    ClientDialect::Majortomo
                } else {
                    ClientDialect::Rfc18
                };
                self.mdp_request(&routing_id, dialect, frames)
            }
            Signature::SbpClient => self.sbp_client(routing_id, &Vec::from(frames)),
            Signature::SbpWorker => Inbound::Worker {
                routing_id,
                dialect: WorkerDialect::Sbp { leading_empty },
                command: sbp_worker(&Vec::from(frames)),
            },
            Signature::Mdp01Worker | Signature::Mdp02Worker => {
                frames.drain(..header);
                let version2 = protocol == Signature::Mdp02Worker;
                let dialect = if version2 {
                    WorkerDialect::Mdp02 { leading_empty }
                } else {
                    WorkerDialect::Mdp01
                };
                Inbound::Worker {
                    routing_id,
                    dialect,
                    command: mdp_worker(version2, frames),
                }
            }
        }
    }

    /// An MDP client's `[service][body…]`.
    fn mdp_request(
        &mut self,
        routing_id: &[u8],
        dialect: ClientDialect,
        mut rest: VecDeque<Vec<u8>>,
    ) -> Inbound {
        let service = match rest.pop_front() {
            Some(service) if !service.is_empty() && service.len() <= protocol::MAX_NAME => service,
            _ => {
                self.fault(format_args!(
                    "broker: an MDP request without a service name, from {}",
                    show(routing_id)
                ));
                return Inbound::Malformed { answer: None };
            }
        };
        self.next_correlation += 1;
        let request = Request {
            service,
            address: Vec::new(),
            properties: self.default_properties.clone(),
            correlation: format!("mdp-{}", self.next_correlation).into_bytes(),
            body: Vec::from(rest),
        };
        let token = client_token(dialect, routing_id);
        if request.service.starts_with(b"mmi.") {
            Inbound::Management { token, request }
        } else {
            Inbound::Request { token, request }
        }
    }

    fn sbp_client(&mut self, routing_id: Vec<u8>, frames: &[Vec<u8>]) -> Inbound {
        match protocol::parse_client(frames) {
            Ok(parsed) => {
                let leading_empty = parsed.leading_empty;
                let token = client_token(ClientDialect::Sbp { leading_empty }, &routing_id);
                match parsed.command {
                    ClientCommand::Request(request) if request.service.starts_with(b"mmi.") => {
                        Inbound::Management { token, request }
                    }
                    ClientCommand::Request(request) => Inbound::Request { token, request },
                    ClientCommand::Ping => Inbound::Ping {
                        routing_id,
                        leading_empty,
                    },
                    ClientCommand::Reply(_) | ClientCommand::Pong => {
                        self.fault(format_args!(
                            "broker: a client sent a broker's command, from {}",
                            show(&routing_id)
                        ));
                        Inbound::Malformed { answer: None }
                    }
                }
            }
            Err(malformed) => {
                self.fault(format_args!(
                    "broker: malformed SBP client message from {}: {}",
                    show(&routing_id),
                    malformed.what
                ));
                let leading_empty = frames.first().is_some_and(Vec::is_empty);
                let answer = malformed.correlation.map(|correlation| {
                    let service = frames
                        .get(usize::from(leading_empty) + 2)
                        .filter(|s| s.len() <= protocol::MAX_NAME)
                        .cloned()
                        .unwrap_or_default();
                    let reason: String = malformed.what.chars().take(200).collect();
                    (
                        client_token(ClientDialect::Sbp { leading_empty }, &routing_id),
                        Reply {
                            service,
                            correlation,
                            status: Status::MALFORMED,
                            properties: Properties::build(None, 0, None, false, Some(&reason)),
                            body: Vec::new(),
                        },
                    )
                });
                Inbound::Malformed { answer }
            }
        }
    }

    fn handle(&mut self, message: Inbound) {
        match message {
            Inbound::Request { token, request, .. } => {
                self.figures.requests += 1;
                if let Some(pair) = self.pair.as_mut() {
                    if matches!(split_token(&token), Some((ClientDialect::Sbp { .. }, _))) {
                        pair.accepted(&token, &request);
                    }
                }
                let actions = self.state.request(&token, request, now_ms());
                self.perform(actions);
            }
            Inbound::Management { token, request } => {
                self.figures.requests += 1;
                let (status, body) = self.management(&request);
                let reply = Reply {
                    service: request.service,
                    correlation: request.correlation,
                    status,
                    properties: Properties::default(),
                    body,
                };
                self.reply_to_client(&token, reply, None);
            }
            Inbound::Ping {
                routing_id,
                leading_empty,
            } => {
                let mut frames = vec![routing_id];
                frames.extend(ClientCommand::Pong.to_frames(leading_empty));
                self.send(&frames);
            }
            Inbound::Worker {
                routing_id,
                dialect,
                command,
            } => self.worker_message(routing_id, dialect, command),
            Inbound::Malformed { answer } => {
                if let Some((token, reply)) = answer {
                    self.reply_to_client(&token, reply, None);
                }
            }
        }
    }

    fn worker_message(&mut self, worker: Vec<u8>, dialect: WorkerDialect, command: WorkerInput) {
        let now = Instant::now();
        let known_dialect = self.workers.get(&worker).copied();
        if known_dialect.is_some_and(|d| d != dialect) {
            self.fault(format_args!(
                "broker: worker {} changed dialect; disconnected",
                show(&worker)
            ));
            let actions = self.state.worker_gone(&worker);
            self.perform(actions);
            self.disconnect(&worker);
            return;
        }
        let actions = match command {
            WorkerInput::Ready {
                service,
                properties,
            } => {
                if service.starts_with(b"mmi.") {
                    self.fault(format_args!(
                        "broker: worker {} offered a reserved mmi.* service; disconnected",
                        show(&worker)
                    ));
                    self.workers.insert(worker.clone(), dialect);
                    let mut actions = self.state.worker_gone(&worker);
                    actions.push(Action::Disconnect { worker });
                    actions
                } else {
                    if self.options.verbose {
                        log::info!(
                            "registering new worker: {} for {} in {}",
                            show(&worker),
                            show(&service),
                            show(properties.environment.as_bytes())
                        );
                    }
                    self.workers.insert(worker.clone(), dialect);
                    self.forget_partials(&worker);
                    self.state.worker_ready(&worker, service, &properties, now)
                }
            }
            WorkerInput::Reply { client, reply } => {
                self.forget_partials(&worker);
                self.state.worker_reply(&worker, &client, reply, now)
            }
            WorkerInput::Partial { client, body } => self.partial(&worker, client, body, now),
            WorkerInput::Final { client, body } => {
                let correlation = self
                    .state
                    .serving(&worker)
                    .filter(|(token, _)| *token == client.as_slice())
                    .map(|(_, request)| request.correlation.clone());
                let held = match self.partials.is_empty() {
                    true => None,
                    false => self.partials.remove(&worker),
                };
                let (held, dropped) = held_partials(held);
                let streams = split_token(&client).is_some_and(|(d, _)| d.streams());
                let body = if streams { body } else { [held, body].concat() };
                let reply = Reply {
                    service: Vec::new(),
                    correlation: correlation.unwrap_or_default(),
                    status: Status::OK,
                    properties: if dropped {
                        Properties::build(
                            None,
                            0,
                            None,
                            false,
                            Some("partial replies dropped: over 16 MiB"),
                        )
                    } else {
                        Properties::default()
                    },
                    body,
                };
                self.state.worker_reply(&worker, &client, reply, now)
            }
            WorkerInput::Heartbeat => self.state.worker_alive(&worker, now),
            WorkerInput::Disconnect => {
                self.workers.remove(&worker);
                self.forget_partials(&worker);
                self.state.worker_gone(&worker)
            }
            WorkerInput::Invalid(what) => {
                self.fault(format_args!(
                    "broker: worker {}: {what}; disconnected",
                    show(&worker)
                ));
                self.workers.entry(worker.clone()).or_insert(dialect);
                let mut actions = self.state.worker_gone(&worker);
                actions.push(Action::Disconnect { worker });
                actions
            }
        };
        self.perform(actions);
    }

    fn forget_partials(&mut self, worker: &[u8]) {
        if !self.partials.is_empty() {
            self.partials.remove(worker);
        }
    }

    /// An MDP/0.2 PARTIAL: straight to a client that streams, else held.
    fn partial(
        &mut self,
        worker: &[u8],
        client: Vec<u8>,
        body: Frames,
        now: Instant,
    ) -> Vec<Action> {
        let serving = self
            .state
            .serving(worker)
            .is_some_and(|(token, _)| token == client.as_slice());
        if !serving {
            self.fault(format_args!(
                "broker: worker {} sent a PARTIAL for nobody it serves; disconnected",
                show(worker)
            ));
            let mut actions = self.state.worker_gone(worker);
            actions.push(Action::Disconnect {
                worker: worker.to_vec(),
            });
            return actions;
        }
        let alive = self.state.worker_alive(worker, now);
        match split_token(&client) {
            Some((dialect, routing_id)) if dialect.streams() => {
                let service = self
                    .state
                    .serving(worker)
                    .map(|(_, request)| request.service.clone())
                    .unwrap_or_default();
                let frames = mdp02_client_frames(dialect, routing_id, 0x02, &service, body);
                self.send(&frames);
            }
            _ => {
                let held = self.partials.entry(worker.to_vec()).or_default();
                let size: usize = body.iter().map(Vec::len).sum();
                if held.1 != usize::MAX && held.1 + size <= MAX_PARTIAL_BYTES {
                    held.1 += size;
                    held.0.extend(body);
                } else {
                    held.0.clear();
                    held.1 = usize::MAX;
                }
            }
        }
        alive
    }

    /// Does what the state decided.
    fn perform(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::ToClient { client, reply } => {
                    if let Some(pair) = self.pair.as_mut() {
                        pair.answered(&client, &reply.correlation);
                    }
                    let stored = match self.stored.is_empty() {
                        true => None,
                        false => self
                            .stored
                            .remove(&(client.clone(), reply.correlation.clone())),
                    };
                    self.figures.replies += 1;
                    self.reply_to_client(&client, reply, stored);
                }
                Action::ToWorker {
                    worker,
                    client,
                    request,
                } => {
                    if self.options.verbose {
                        log::info!("sending REQUEST to worker {}", show(&worker));
                    }
                    if self.send_request(&worker, &client, &request) != Sent::Delivered {
                        // The worker is gone and never saw the request: it
                        // is queued again for another worker.
                        self.workers.remove(&worker);
                        queue.extend(self.state.worker_unreachable(&worker));
                    }
                }
                Action::Disconnect { worker } => self.disconnect(&worker),
                Action::Forward { client, request } => {
                    queue.extend(self.forward(client, request));
                }
            }
        }
    }

    /// A request for a service with no worker here and the `forward`
    /// policy: to a peer with workers for it, else answered 503.
    fn forward(&mut self, client: Vec<u8>, request: Request) -> Option<Action> {
        let Some(peering) = self.peering.as_mut() else {
            let (client, reply) = refusal(&client, &request, Status::NO_WORKERS, "no workers");
            return Some(Action::ToClient { client, reply });
        };
        if peering.is_forwarded(&client, &request.correlation) {
            return None; // a retry: the first one's reply will answer it
        }
        match peering.forward(client.clone(), request) {
            Ok(endpoint) => {
                if self.options.verbose {
                    log::info!("forwarding a request to peer {endpoint}");
                }
                None
            }
            Err(request) => {
                let (client, reply) = refusal(
                    &client,
                    &request,
                    Status::NO_WORKERS,
                    "no workers here or at any peer",
                );
                Some(Action::ToClient { client, reply })
            }
        }
    }

    /// The pair's sockets: the peer's state (a change may make this broker
    /// active: it serves its replica and its store; or passive: its workers
    /// are sent away) and, when passive, the active's updates.
    fn pair_messages(&mut self, router_ready: bool, dealer_ready: bool) -> Result<(), Error> {
        let now = Instant::now();
        let Some(pair) = self.pair.as_mut() else {
            return Ok(());
        };
        if dealer_ready {
            pair.read_dealer();
        }
        let events = if router_ready {
            pair.read_router(now)
        } else {
            Default::default()
        };
        pair.tick(now);
        if let Some(fatal) = events.fatal {
            return Err(Error::Protocol(fatal.log_line().to_string()));
        }
        for change in events.changes {
            self.pair_changed(change)?;
        }
        Ok(())
    }

    fn pair_changed(&mut self, change: crate::bstar::Change) -> Result<(), Error> {
        use crate::bstar::State;
        if change.to() == State::Passive {
            let workers: Vec<Vec<u8>> = self.workers.keys().cloned().collect();
            for worker in workers {
                let actions = self.state.worker_gone(&worker);
                self.perform(actions);
                self.disconnect(&worker);
            }
            return Ok(());
        }
        // Active: what the old active had accepted, then what we stored.
        let replica = self.pair.as_mut().map(Pair::take_over).unwrap_or_default();
        if !replica.is_empty() {
            log::info!("broker: serving {} replicated requests", replica.len());
        }
        let mut inbound: Vec<Inbound> = replica
            .into_iter()
            .map(|(token, request)| Inbound::Request { token, request })
            .collect();
        self.store_requests(&mut inbound);
        for message in inbound {
            self.handle(message);
        }
        self.restore()
    }

    /// One of a pair: does this message go on? A client's message is a
    /// vote (which may make this broker active); it is dropped unanswered
    /// unless the broker serves. A worker is sent away by a broker that is
    /// or will be passive.
    fn pair_admits(&mut self, message: &Inbound) -> bool {
        let Some(pair) = self.pair.as_mut() else {
            return true;
        };
        match message {
            Inbound::Request { .. } | Inbound::Management { .. } | Inbound::Ping { .. } => {
                let (accept, change) = pair.vote(Instant::now());
                if let Some(change) = change {
                    if let Err(e) = self.pair_changed(change) {
                        log::error!("broker: taking over: {e}");
                    }
                }
                accept
            }
            Inbound::Worker {
                routing_id,
                dialect,
                command,
            } if !pair.takes_workers() => {
                if !matches!(command, WorkerInput::Disconnect) {
                    self.workers.insert(routing_id.clone(), *dialect);
                    self.disconnect(&routing_id.clone());
                }
                false
            }
            _ => true,
        }
    }

    /// Replies from peer `index`, passed on to their clients.
    fn peer_replies(&mut self, index: usize) {
        let Some(peering) = self.peering.as_mut() else {
            return;
        };
        let replies = peering.receive(index, Instant::now());
        let actions = replies
            .into_iter()
            .map(|(client, reply)| Action::ToClient { client, reply })
            .collect();
        self.perform(actions);
    }

    /// Capacity polls; a silent peer's requests answered 500, or handled
    /// again when idempotent (see [`crate::broker::peering`]).
    fn tick_peering(&mut self, now: Instant) {
        let Some(peering) = self.peering.as_mut() else {
            return;
        };
        let tick = peering.tick(now);
        let mut actions = Vec::new();
        let (mut failed, mut again) = (0, 0);
        for orphan in tick.orphans {
            if orphan.request.properties.idempotent {
                again += 1;
                actions.extend(self.state.request(&orphan.client, orphan.request, now_ms()));
            } else {
                failed += 1;
                let (client, reply) = refusal(
                    &orphan.client,
                    &orphan.request,
                    Status::WORKER_FAILED,
                    "peer broker gone",
                );
                actions.push(Action::ToClient { client, reply });
            }
        }
        for endpoint in tick.gone {
            log::warn!(
                "broker: peer {endpoint} silent for {} ms: forgotten ({failed} requests answered 500, {again} handled again)",
                self.options.peer_ttl.as_millis()
            );
        }
        self.perform(actions);
    }

    /// Sends a REQUEST to `worker` in its dialect, straight from the
    /// request's frames (no copy but libzmq's own).
    fn send_request(&mut self, worker: &[u8], client: &[u8], request: &Request) -> Sent {
        let dialect = self
            .workers
            .get(worker)
            .copied()
            .unwrap_or(WorkerDialect::Mdp01);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(request.body.len() + 9);
        parts.push(worker);
        match dialect {
            WorkerDialect::Mdp01 => parts.extend([&b""[..], MDPW01, &[0x02], client, b""]),
            WorkerDialect::Mdp02 { leading_empty } => {
                if leading_empty {
                    parts.push(b"");
                }
                parts.extend([MDPW02, &[0x02], client, b""]);
            }
            WorkerDialect::Sbp { leading_empty } => {
                parts.extend(protocol::worker_request_head(
                    client,
                    request,
                    leading_empty,
                ));
            }
        }
        parts.extend(request.body.iter().map(Vec::as_slice));
        self.send_parts(&parts)
    }

    /// A reply to a client, in its dialect. MDP clients hear only 200s.
    ///
    /// `stored` is the request's store id: forgotten once the reply is sent,
    /// kept while a reply to an unreachable SBP/1 client is parked.
    fn reply_to_client(&mut self, token: &[u8], reply: Reply, stored: Option<u64>) {
        self.to_forget.extend(stored);
        let Some((dialect, routing_id)) = split_token(token) else {
            log::error!("broker: a client token without a dialect; reply dropped");
            return;
        };
        let frames = match dialect {
            ClientDialect::Sbp { leading_empty } => {
                let mut frames = vec![routing_id.to_vec()];
                frames.extend(ClientCommand::Reply(reply).to_frames(leading_empty));
                if self.parked.contains_key(routing_id)
                    || self.send_frames(&frames) == Sent::Unreachable
                {
                    // Not now: kept, and the store keeps the request.
                    self.to_forget.retain(|id| Some(*id) != stored);
                    self.park(routing_id, frames, stored);
                }
                return;
            }
            _ if reply.status != Status::OK && !reply.service.starts_with(b"mmi.") => {
                log::debug!(
                    "broker: status {} not sent to MDP client {}",
                    reply.status.0,
                    show(routing_id)
                );
                return;
            }
            ClientDialect::Mdp01 => {
                let mut frames = vec![
                    routing_id.to_vec(),
                    Vec::new(),
                    MDPC01.to_vec(),
                    reply.service,
                ];
                frames.extend(reply.body);
                frames
            }
            _ => mdp02_client_frames(dialect, routing_id, 0x03, &reply.service, reply.body),
        };
        self.send(&frames);
    }

    fn disconnect(&mut self, worker: &[u8]) {
        let dialect = self.workers.remove(worker);
        self.partials.remove(worker);
        let mut frames = vec![worker.to_vec()];
        match dialect {
            Some(WorkerDialect::Mdp01) => frames.extend([Vec::new(), MDPW01.to_vec(), vec![0x05]]),
            Some(WorkerDialect::Mdp02 { leading_empty }) => {
                if leading_empty {
                    frames.push(Vec::new());
                }
                frames.extend([MDPW02.to_vec(), vec![0x06]]);
            }
            Some(WorkerDialect::Sbp { leading_empty }) => {
                frames.extend(WorkerCommand::Disconnect.to_frames(leading_empty))
            }
            None => frames.extend(WorkerCommand::Disconnect.to_frames(true)),
        }
        self.send(&frames);
    }

    fn heartbeat_workers(&mut self) {
        let workers: Vec<(Vec<u8>, WorkerDialect)> =
            self.workers.iter().map(|(w, d)| (w.clone(), *d)).collect();
        for (worker, dialect) in workers {
            let mut frames = vec![worker.clone()];
            match dialect {
                WorkerDialect::Mdp01 => frames.extend([Vec::new(), MDPW01.to_vec(), vec![0x04]]),
                WorkerDialect::Mdp02 { leading_empty } => {
                    if leading_empty {
                        frames.push(Vec::new());
                    }
                    frames.extend([MDPW02.to_vec(), vec![0x05]]);
                }
                WorkerDialect::Sbp { leading_empty } => {
                    frames.extend(WorkerCommand::Heartbeat.to_frames(leading_empty))
                }
            }
            if !self.send(&frames) {
                self.workers.remove(&worker);
                let actions = self.state.worker_gone(&worker);
                self.perform(actions);
            }
        }
    }

    /// Drops the dialect of workers the state forgot (silent ones), telling
    /// them DISCONNECT in case they are only slow.
    fn forget_silent_workers(&mut self) {
        let forgotten: Vec<Vec<u8>> = self
            .workers
            .keys()
            .filter(|w| !self.state.is_worker(w))
            .cloned()
            .collect();
        for worker in forgotten {
            self.disconnect(&worker);
        }
    }

    /// Sends without blocking; `false` if the peer is gone or not reading.
    fn send(&mut self, frames: &[Vec<u8>]) -> bool {
        self.send_frames(frames) == Sent::Delivered
    }

    fn send_frames(&mut self, frames: &[Vec<u8>]) -> Sent {
        let parts: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        self.send_parts(&parts)
    }

    fn send_parts(&mut self, frames: &[&[u8]]) -> Sent {
        let last = frames.len().saturating_sub(1);
        for (index, frame) in frames.iter().enumerate() {
            let more = if index < last { zmq::SNDMORE } else { 0 };
            if let Err(e) = self.socket.send(*frame, more | zmq::DONTWAIT) {
                // Only the first frame can fail: the rest follow it.
                if e == zmq::Error::EHOSTUNREACH {
                    return Sent::Unreachable;
                }
                self.figures.dropped_sends += 1;
                let period = self.options.heartbeat;
                let window = self
                    .faults
                    .entry(0)
                    .or_insert_with(|| Window::new(FAULT_LINES, period));
                window.warn(format_args!(
                    "broker: a message to {} dropped: {e}",
                    show(frames[0])
                ));
                return Sent::Dropped;
            }
        }
        Sent::Delivered
    }

    /// Keeps a reply for an SBP/1 client that is not connected (a broker
    /// that just restarted, a client reconnecting), with its store id; it is
    /// sent when the client is heard from again (its PING, its retry).
    fn park(&mut self, routing_id: &[u8], frames: Frames, stored: Option<u64>) {
        let size: usize = frames.iter().map(|f| f.len() + 64).sum();
        let queue = self.parked.entry(routing_id.to_vec()).or_default();
        if queue.len() >= MAX_PARKED_PER_CLIENT || self.parked_bytes + size > MAX_PARKED_BYTES {
            self.figures.dropped_sends += 1;
            self.fault(format_args!(
                "broker: no room to keep a reply for {}; dropped (the client will retry)",
                show(routing_id)
            ));
            if let Some(id) = stored {
                self.to_forget.push(id);
            }
            return;
        }
        self.parked_bytes += size;
        queue.push_back(Parked {
            frames,
            stored,
            size,
            until: Instant::now() + PARKED_EXPIRY,
        });
    }

    /// Sends the replies kept for `routing_id`, oldest first.
    fn unpark(&mut self, routing_id: &[u8]) {
        let Some(mut queue) = self.parked.remove(routing_id) else {
            return;
        };
        while let Some(parked) = queue.pop_front() {
            match self.send_frames(&parked.frames) {
                Sent::Delivered | Sent::Dropped => {
                    self.parked_bytes = self.parked_bytes.saturating_sub(parked.size);
                    if let Some(id) = parked.stored {
                        self.to_forget.push(id);
                    }
                }
                Sent::Unreachable => {
                    queue.push_front(parked);
                    self.parked.insert(routing_id.to_vec(), queue);
                    return;
                }
            }
        }
    }

    /// Drops kept replies nobody came for in [`PARKED_EXPIRY`].
    fn expire_parked(&mut self, now: Instant) {
        let mut forget = Vec::new();
        let mut freed = 0;
        self.parked.retain(|_, queue| {
            queue.retain(|parked| {
                let keep = parked.until > now;
                if !keep {
                    freed += parked.size;
                    forget.extend(parked.stored);
                }
                keep
            });
            !queue.is_empty()
        });
        self.parked_bytes = self.parked_bytes.saturating_sub(freed);
        self.to_forget.extend(forget);
    }

    /// The `mmi.*` services (see the table in the module docs of
    /// [`crate::broker`]).
    fn management(&mut self, request: &Request) -> (Status, Frames) {
        let code = |status: u16| Status(status);
        let text = |status: u16| format!("{status:03}").into_bytes();
        let body = &request.body;
        let environment = &request.properties.environment;
        let printable = |frame: &[u8]| {
            !frame.is_empty()
                && frame.len() <= protocol::MAX_NAME
                && frame.iter().all(|b| (0x21..=0x7e).contains(b))
        };
        match request.service.as_slice() {
            b"mmi.service" => {
                let Some(name) = body.last() else {
                    return (code(400), vec![text(400)]);
                };
                let workers = self.state.workers_of(&request.properties.environment, name);
                let status = if workers > 0 { 200 } else { 404 };
                // RFC 8 as the C does it: the last frame becomes the code.
                let mut answer = body.clone();
                if let Some(last) = answer.last_mut() {
                    *last = text(status);
                }
                (code(status), answer)
            }
            b"mmi.services" => {
                self.refresh_figures();
                let peers = self.peering.as_ref().map(Peering::report);
                let pair = self.pair.as_ref().map(|pair| {
                    serde_json::json!({
                        "state": format!("{:?}", pair.state()).to_lowercase(),
                        "logged": pair.logged(),
                        "dropped": pair.dropped,
                    })
                });
                let document = serde_json::json!({
                    "broker": self.figures,
                    "services": self.state.report(),
                    "peers": peers.unwrap_or_default(),
                    "pair": pair,
                });
                (
                    code(200),
                    vec![text(200), document.to_string().into_bytes()],
                )
            }
            b"mmi.register" => match body.as_slice() {
                [name, endpoint] if printable(name) && printable(endpoint) => {
                    let key = (environment.clone(), name.clone());
                    if !self.names.contains_key(&key) && self.names.len() >= MAX_NAMES {
                        return (code(503), vec![text(503)]);
                    }
                    self.names.insert(key, endpoint.clone());
                    (code(200), vec![text(200)])
                }
                _ => (code(400), vec![text(400)]),
            },
            b"mmi.lookup" => match body.as_slice() {
                [name] => match self.names.get(&(environment.clone(), name.clone())) {
                    Some(endpoint) => (code(200), vec![text(200), endpoint.clone()]),
                    None => (code(404), vec![text(404)]),
                },
                _ => (code(400), vec![text(400)]),
            },
            b"mmi.unregister" => match body.as_slice() {
                [name] => match self.names.remove(&(environment.clone(), name.clone())) {
                    Some(_) => (code(200), vec![text(200)]),
                    None => (code(404), vec![text(404)]),
                },
                _ => (code(400), vec![text(400)]),
            },
            _ => (code(501), vec![text(501)]),
        }
    }

    fn refresh_figures(&mut self) {
        let report = self.state.report();
        self.figures.uptime_seconds = self.started.elapsed().as_secs_f64();
        self.figures.workers = self.workers.len();
        self.figures.services = report.len();
        self.figures.stored = self.stored.len();
    }

    fn publish_metrics(&mut self) {
        if self.metrics.is_none() {
            return;
        }
        self.refresh_figures();
        let text = metrics::render(&self.figures, &self.state.report());
        if let Some(server) = &self.metrics {
            server.publish(text);
        }
    }

    /// Answers UDP surveys for the services that have workers now.
    fn answer_surveys(&mut self) {
        let port = self.survey_port;
        let services: Vec<survey::Service> = self
            .state
            .report()
            .into_iter()
            .filter(|s| s.workers > 0)
            .map(|s| survey::Service {
                name: s.service,
                port,
            })
            .take(survey::MAX_SERVICES)
            .collect();
        if let Some(responder) = self.survey.as_mut() {
            responder.set_services(services);
            responder.serve_batch();
        }
    }
}

/// A broker's answer to a request it will not serve.
fn refusal(token: &[u8], request: &Request, status: Status, reason: &str) -> (Vec<u8>, Reply) {
    let reply = Reply {
        service: request.service.clone(),
        correlation: request.correlation.clone(),
        status,
        properties: Properties::build(None, 0, None, false, Some(reason)),
        body: Vec::new(),
    };
    (token.to_vec(), reply)
}

/// An MDP/0.2 reply (`command` 0x02 PARTIAL, 0x03 FINAL) to a client.
fn mdp02_client_frames(
    dialect: ClientDialect,
    routing_id: &[u8],
    command: u8,
    service: &[u8],
    body: Frames,
) -> Frames {
    let mut frames = vec![routing_id.to_vec()];
    if dialect == ClientDialect::Majortomo {
        // majortomo reads `[""]["MDPC02"][command][body…]`: no service
        // frame, and PARTIAL/FINAL numbered 0x03/0x04 (its worker table).
        frames.extend([Vec::new(), MDPC02.to_vec(), vec![command + 1]]);
    } else {
        frames.extend([MDPC02.to_vec(), vec![command], service.to_vec()]);
    }
    frames.extend(body);
    frames
}

/// An MDP worker's command: `[command][…]` after the signature.
fn mdp_worker(version2: bool, mut rest: VecDeque<Vec<u8>>) -> WorkerInput {
    let command = match rest.pop_front() {
        Some(command) if command.len() == 1 => command[0],
        _ => return WorkerInput::Invalid("no one-byte command".into()),
    };
    // `[client][""][body…]`, or None.
    let addressed = |mut rest: VecDeque<Vec<u8>>| -> Option<(Vec<u8>, Frames)> {
        if rest.len() < 2 || rest[0].is_empty() || !rest[1].is_empty() {
            return None;
        }
        let client = rest.pop_front()?;
        rest.pop_front();
        Some((client, Vec::from(rest)))
    };
    let unaddressed = || WorkerInput::Invalid("a reply without `[client][\"\"]`".into());
    match (version2, command) {
        (_, 0x01) => match rest.pop_front() {
            Some(service)
                if rest.is_empty()
                    && !service.is_empty()
                    && service.len() <= protocol::MAX_NAME =>
            {
                WorkerInput::Ready {
                    service,
                    properties: Properties::default(),
                }
            }
            _ => WorkerInput::Invalid("READY without one service frame".into()),
        },
        (false, 0x03) | (true, 0x04) => match addressed(rest) {
            Some((client, body)) => WorkerInput::Final { client, body },
            None => unaddressed(),
        },
        (true, 0x03) => match addressed(rest) {
            Some((client, body)) => WorkerInput::Partial { client, body },
            None => unaddressed(),
        },
        (false, 0x04) | (true, 0x05) => WorkerInput::Heartbeat,
        (false, 0x05) | (true, 0x06) => WorkerInput::Disconnect,
        (_, other) => WorkerInput::Invalid(format!("command {other:#04x} is not a worker's")),
    }
}

fn sbp_worker(frames: &[Vec<u8>]) -> WorkerInput {
    match protocol::parse_worker(frames) {
        Ok(parsed) => match parsed.command {
            WorkerCommand::Ready {
                service,
                properties,
            } => WorkerInput::Ready {
                service,
                properties,
            },
            WorkerCommand::Reply { client, reply } => WorkerInput::Reply { client, reply },
            WorkerCommand::Heartbeat => WorkerInput::Heartbeat,
            WorkerCommand::Disconnect => WorkerInput::Disconnect,
            WorkerCommand::Request { .. } => {
                WorkerInput::Invalid("REQUEST is the broker's command".into())
            }
        },
        Err(malformed) => WorkerInput::Invalid(malformed.what),
    }
}

/// Runs a broker with `options` until Ctrl-C.
pub fn run(options: Options) -> Result<(), Error> {
    let context = zmq::Context::new();
    let mut broker = Broker::new(&context, options)?;
    broker.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_carry_the_dialect_and_the_routing_id() {
        for dialect in [
            ClientDialect::Mdp01,
            ClientDialect::Rfc18,
            ClientDialect::Majortomo,
            ClientDialect::Sbp {
                leading_empty: true,
            },
            ClientDialect::Sbp {
                leading_empty: false,
            },
        ] {
            let token = client_token(dialect, b"\x00id");
            assert_eq!(split_token(&token), Some((dialect, &b"\x00id"[..])));
        }
        assert_eq!(split_token(b"x\x00id"), None);
        assert_eq!(split_token(b"1"), None);
        assert_eq!(split_token(b""), None);
    }

    #[test]
    fn majortomo_replies_have_no_service_frame_and_rfc18_replies_do() {
        let body = vec![b"hi".to_vec()];
        let majortomo =
            mdp02_client_frames(ClientDialect::Majortomo, b"C", 0x03, b"echo", body.clone());
        assert_eq!(
            majortomo,
            [&b"C"[..], b"", b"MDPC02", b"\x04", b"hi"].map(<[u8]>::to_vec)
        );
        let rfc18 = mdp02_client_frames(ClientDialect::Rfc18, b"C", 0x02, b"echo", body);
        assert_eq!(
            rfc18,
            [&b"C"[..], b"MDPC02", b"\x02", b"echo", b"hi"].map(<[u8]>::to_vec)
        );
    }

    #[test]
    fn mdp_worker_commands_by_version() {
        let frames = |parts: &[&[u8]]| {
            parts
                .iter()
                .map(|p| p.to_vec())
                .collect::<VecDeque<Vec<u8>>>()
        };
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x03", b"C", b"", b"x"])),
            WorkerInput::Final { .. }
        ));
        assert!(matches!(
            mdp_worker(true, frames(&[b"\x03", b"C", b"", b"x"])),
            WorkerInput::Partial { .. }
        ));
        assert!(matches!(
            mdp_worker(true, frames(&[b"\x04", b"C", b"", b"x"])),
            WorkerInput::Final { .. }
        ));
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x04"])),
            WorkerInput::Heartbeat
        ));
        assert!(matches!(
            mdp_worker(true, frames(&[b"\x05"])),
            WorkerInput::Heartbeat
        ));
        assert!(matches!(
            mdp_worker(true, frames(&[b"\x06"])),
            WorkerInput::Disconnect
        ));
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x02", b"C", b""])),
            WorkerInput::Invalid(_)
        ));
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x03", b"C", b"not empty"])),
            WorkerInput::Invalid(_)
        ));
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x01", b"echo", b"extra"])),
            WorkerInput::Invalid(_)
        ));
        // A reply with no body; a reply without its empty frame; a command
        // of two bytes.
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x03", b"C", b""])),
            WorkerInput::Final { client, body } if client == b"C" && body.is_empty()
        ));
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x03", b"C"])),
            WorkerInput::Invalid(_)
        ));
        assert!(matches!(
            mdp_worker(false, frames(&[b"\x04\x04"])),
            WorkerInput::Invalid(_)
        ));
    }

    static ENDPOINTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A broker bound to a fresh inproc endpoint of `context`, never run:
    /// the tests call its steps.
    fn broker(context: &zmq::Context) -> (Broker, String) {
        let n = ENDPOINTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let endpoint = format!("inproc://server-test-{n}");
        let options = Options {
            binds: vec![endpoint.clone()],
            ..Options::default()
        };
        (Broker::new(context, options).unwrap(), endpoint)
    }

    fn frames(parts: &[&[u8]]) -> Frames {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    /// The request in `inbound`, with the dialect and routing id of its
    /// token; panics on anything else.
    fn request_of(inbound: Inbound) -> (ClientDialect, Vec<u8>, Request, bool) {
        let (token, request, management) = match inbound {
            Inbound::Request { token, request } => (token, request, false),
            Inbound::Management { token, request } => (token, request, true),
            _ => panic!("not a request"),
        };
        let (dialect, routing_id) = split_token(&token).unwrap();
        (dialect, routing_id.to_vec(), request, management)
    }

    fn worker_of(inbound: Inbound) -> (WorkerDialect, WorkerInput) {
        match inbound {
            Inbound::Worker {
                dialect, command, ..
            } => (dialect, command),
            _ => panic!("not a worker's message"),
        }
    }

    fn is_malformed(inbound: &Inbound) -> bool {
        matches!(inbound, Inbound::Malformed { .. })
    }

    #[test]
    fn every_dialect_is_known_by_its_signature_and_its_empty_frame() {
        let context = zmq::Context::new();
        let (mut broker, _) = broker(&context);
        let mut classify = |parts: &[&[u8]]| broker.classify(frames(parts));

        // MDP/0.1 clients, with the REQ socket's empty frame or without.
        for parts in [
            &[&b"C"[..], b"", b"MDPC01", b"echo", b"hi"][..],
            &[&b"C"[..], b"MDPC01", b"echo", b"hi"][..],
        ] {
            let (dialect, id, request, management) = request_of(classify(parts));
            assert_eq!(
                (dialect, &id[..], management),
                (ClientDialect::Mdp01, &b"C"[..], false)
            );
            assert_eq!(
                (request.service, request.body),
                (b"echo".to_vec(), vec![b"hi".to_vec()])
            );
        }
        let (_, _, request, management) =
            request_of(classify(&[b"C", b"MDPC01", b"mmi.service", b"echo"]));
        assert!(management, "{request:?}");
        // Each MDP request gets a correlation of its own.
        let (_, _, again, _) = request_of(classify(&[b"C", b"MDPC01", b"mmi.service"]));
        assert_ne!(request.correlation, again.correlation);
        // MDP/0.2: RFC 18 (REQUEST 0x01, no empty frame) and majortomo
        // (REQUEST 0x02 after an empty frame).
        let (dialect, _, request, _) =
            request_of(classify(&[b"C", b"MDPC02", b"\x01", b"echo", b"x"]));
        assert_eq!(
            (dialect, request.body),
            (ClientDialect::Rfc18, vec![b"x".to_vec()])
        );
        let (dialect, _, _, _) = request_of(classify(&[b"C", b"", b"MDPC02", b"\x02", b"echo"]));
        assert_eq!(dialect, ClientDialect::Majortomo);
        assert!(is_malformed(&classify(&[
            b"C", b"MDPC02", b"\x02", b"echo"
        ])));
        assert!(is_malformed(&classify(&[
            b"C", b"", b"MDPC02", b"\x01", b"echo"
        ])));
        // An MDP service name: 1-255 bytes.
        let longest = [b's'; protocol::MAX_NAME];
        let (_, _, request, _) = request_of(classify(&[b"C", b"MDPC01", &longest]));
        assert_eq!(request.service.len(), protocol::MAX_NAME);
        let too_long = [b's'; protocol::MAX_NAME + 1];
        assert!(is_malformed(&classify(&[b"C", b"MDPC01", &too_long])));
        assert!(is_malformed(&classify(&[b"C", b"MDPC01", b""])));
        assert!(is_malformed(&classify(&[b"C", b"MDPC01"])));

        // SBP/1 clients, with or without the empty frame.
        for leading_empty in [false, true] {
            let request = Request {
                service: b"echo".to_vec(),
                address: Vec::new(),
                properties: Properties::default(),
                correlation: b"7".to_vec(),
                body: vec![b"x".to_vec()],
            };
            let mut message = vec![b"S".to_vec()];
            message.extend(ClientCommand::Request(request.clone()).to_frames(leading_empty));
            let (dialect, id, got, management) = request_of(broker.classify(message));
            assert_eq!(dialect, ClientDialect::Sbp { leading_empty });
            assert_eq!(
                (&id[..], got.correlation, management),
                (&b"S"[..], request.correlation.clone(), false)
            );
            let mmi = Request {
                service: b"mmi.service".to_vec(),
                ..request.clone()
            };
            let mut message = vec![b"S".to_vec()];
            message.extend(ClientCommand::Request(mmi).to_frames(leading_empty));
            assert!(
                request_of(broker.classify(message)).3,
                "mmi.* is the broker's"
            );
            let mut ping = vec![b"S".to_vec()];
            ping.extend(ClientCommand::Ping.to_frames(leading_empty));
            assert!(matches!(
                broker.classify(ping),
                Inbound::Ping { routing_id, leading_empty: empty } if routing_id == b"S" && empty == leading_empty
            ));
            let mut pong = vec![b"S".to_vec()];
            pong.extend(ClientCommand::Pong.to_frames(leading_empty));
            assert!(matches!(
                broker.classify(pong),
                Inbound::Malformed { answer: None }
            ));
        }
        // A broken SBP/1 request whose correlation can be read gets a 400.
        let answer = broker.classify(frames(&[
            b"S", b"SBPC01", b"\x01", b"echo", b"", b"junk", b"9",
        ]));
        match answer {
            Inbound::Malformed {
                answer: Some((token, reply)),
            } => {
                assert_eq!(
                    split_token(&token),
                    Some((
                        ClientDialect::Sbp {
                            leading_empty: false
                        },
                        &b"S"[..]
                    ))
                );
                assert_eq!(
                    (reply.status, reply.correlation),
                    (Status::MALFORMED, b"9".to_vec())
                );
                assert_eq!(reply.service, b"echo");
            }
            _ => panic!("no 400 answer"),
        }

        // Workers: MDP/0.1, MDP/0.2 both ways, SBP/1 both ways.
        let mut classify = |parts: &[&[u8]]| broker.classify(frames(parts));
        let (dialect, command) = worker_of(classify(&[b"W", b"", b"MDPW01", b"\x01", b"echo"]));
        assert_eq!(dialect, WorkerDialect::Mdp01);
        assert!(matches!(command, WorkerInput::Ready { service, .. } if service == b"echo"));
        for (parts, leading_empty) in [
            (&[&b"W"[..], b"MDPW02", b"\x01", b"echo"][..], false),
            (&[&b"W"[..], b"", b"MDPW02", b"\x01", b"echo"][..], true),
        ] {
            let (dialect, command) = worker_of(classify(parts));
            assert_eq!(dialect, WorkerDialect::Mdp02 { leading_empty });
            assert!(matches!(command, WorkerInput::Ready { .. }));
        }
        for leading_empty in [false, true] {
            let ready = protocol::WorkerCommand::Ready {
                service: b"echo".to_vec(),
                properties: Properties::default(),
            };
            let mut message = vec![b"W".to_vec()];
            message.extend(ready.to_frames(leading_empty));
            let (dialect, command) = worker_of(broker.classify(message));
            assert_eq!(dialect, WorkerDialect::Sbp { leading_empty });
            assert!(matches!(command, WorkerInput::Ready { service, .. } if service == b"echo"));
        }

        // Routing ids of 1-254 bytes (libzmq's own are 5); anything else,
        // and unknown signatures, are dropped.
        let mut classify = |parts: &[&[u8]]| broker.classify(frames(parts));
        let longest = [b'r'; protocol::MAX_NAME - 1];
        assert!(!is_malformed(&classify(&[&longest, b"MDPC01", b"echo"])));
        let too_long = [b'r'; protocol::MAX_NAME];
        assert!(is_malformed(&classify(&[&too_long, b"MDPC01", b"echo"])));
        assert!(is_malformed(&classify(&[b"", b"MDPC01", b"echo"])));
        assert!(is_malformed(&classify(&[])));
        assert!(is_malformed(&classify(&[b"C", b"HTTP/1.1", b"echo"])));
        assert!(is_malformed(&classify(&[
            b"C", b"", b"", b"MDPC01", b"echo"
        ])));
    }

    #[test]
    fn held_partials_are_joined_and_a_dropped_batch_is_marked() {
        assert_eq!(held_partials(None), (Vec::<Vec<u8>>::new(), false));
        let two = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(held_partials(Some((two.clone(), 2))), (two, false));
        assert_eq!(
            held_partials(Some((Vec::new(), usize::MAX))),
            (Vec::<Vec<u8>>::new(), true)
        );
    }

    #[test]
    fn a_send_to_a_gone_peer_is_unreachable_and_one_to_a_full_peer_is_dropped_and_counted() {
        let context = zmq::Context::new();
        let (mut broker, endpoint) = broker(&context);
        // Nobody by that name: unreachable (a reply gets parked), not a drop.
        assert_eq!(broker.send_parts(&[b"nobody", b"x"]), Sent::Unreachable);
        assert_eq!(broker.figures.dropped_sends, 0);
        // A peer that never reads: deliveries until its queue is full, then
        // each message is dropped without blocking, and counted.
        let slow = dealer(&context, &endpoint, "slow");
        slow.set_rcvhwm(1).unwrap();
        send(&slow, &[b"hello"]);
        broker.socket.recv_multipart(0).unwrap();
        let mut delivered = 0;
        while broker.send_parts(&[b"slow", b"x"]) == Sent::Delivered {
            delivered += 1;
            assert!(delivered < 1_000_000, "the peer's queue never filled");
        }
        assert!(delivered >= 1);
        assert_eq!(broker.figures.dropped_sends, 1);
        assert_eq!(broker.send_parts(&[b"slow", b"x"]), Sent::Dropped);
        assert_eq!(broker.figures.dropped_sends, 2);
        assert_eq!(broker.send_parts(&[b"nobody", b"x"]), Sent::Unreachable);
        assert_eq!(broker.figures.dropped_sends, 2);
    }

    #[test]
    fn kept_replies_are_bounded_sent_in_order_when_their_client_comes_and_expire() {
        let context = zmq::Context::new();
        let (mut broker, endpoint) = broker(&context);
        broker.park(b"C", frames(&[b"C", b"first"]), Some(7));
        broker.park(b"C", frames(&[b"C", b"second"]), None);
        let size = (1 + 64) + (5 + 64) + (1 + 64) + (6 + 64);
        assert_eq!(broker.parked_bytes, size);
        // Not yet expired.
        broker.expire_parked(Instant::now());
        assert_eq!(broker.parked_bytes, size);
        // The client comes: its first message sends what was kept, oldest
        // first, and frees it.
        let client = context.socket(zmq::DEALER).unwrap();
        client.set_identity(b"C").unwrap();
        client.set_linger(0).unwrap();
        client.set_rcvtimeo(5000).unwrap();
        client.connect(&endpoint).unwrap();
        client.send(&b"MDPC01"[..], zmq::SNDMORE).unwrap();
        client.send(&b"echo"[..], 0).unwrap();
        let arrived = broker.socket.recv_multipart(0).unwrap();
        assert!(!is_malformed(&broker.classify(arrived)));
        assert_eq!(client.recv_multipart(0).unwrap(), [b"first".to_vec()]);
        assert_eq!(client.recv_multipart(0).unwrap(), [b"second".to_vec()]);
        assert_eq!((broker.parked_bytes, broker.parked.len()), (0, 0));
        assert_eq!(broker.to_forget, [7], "delivered: forgotten in the store");

        // Nobody comes for these: they expire after PARKED_EXPIRY.
        broker.to_forget.clear();
        broker.park(b"D", frames(&[b"D", b"x"]), Some(8));
        broker.park(b"E", frames(&[b"E", b"y"]), Some(9));
        broker.expire_parked(Instant::now() + PARKED_EXPIRY - Duration::from_secs(1));
        assert_eq!(broker.parked.len(), 2);
        broker.expire_parked(Instant::now() + PARKED_EXPIRY + Duration::from_millis(1));
        assert_eq!((broker.parked_bytes, broker.parked.len()), (0, 0));
        broker.to_forget.sort_unstable();
        assert_eq!(broker.to_forget, [8, 9]);

        // Bounds: the bytes (exactly reached, then one more) ...
        broker.to_forget.clear();
        let dropped = broker.figures.dropped_sends;
        broker.park(b"F", vec![vec![0; MAX_PARKED_BYTES - 64]], None);
        assert_eq!(broker.parked_bytes, MAX_PARKED_BYTES);
        broker.park(b"G", frames(&[b""]), Some(10));
        assert_eq!(broker.parked_bytes, MAX_PARKED_BYTES);
        assert_eq!(broker.figures.dropped_sends, dropped + 1);
        assert_eq!(broker.to_forget, [10], "dropped: forgotten too");
        broker.expire_parked(Instant::now() + PARKED_EXPIRY * 2);
        // (The bound is on the sum: a small reply and a 2 MiB one fit.)
        broker.park(b"F", frames(&[b"x"]), None);
        broker.park(b"F", vec![vec![0; 2 << 20]], None);
        assert_eq!(broker.parked[&b"F".to_vec()].len(), 2);
        broker.expire_parked(Instant::now() + PARKED_EXPIRY * 2);
        // ... and the count per client.
        for _ in 0..MAX_PARKED_PER_CLIENT {
            broker.park(b"H", frames(&[b"h"]), None);
        }
        broker.park(b"H", frames(&[b"h"]), None);
        assert_eq!(broker.parked[&b"H".to_vec()].len(), MAX_PARKED_PER_CLIENT);
        assert_eq!(broker.figures.dropped_sends, dropped + 2);
        broker.park(b"I", frames(&[b"i"]), None);
        assert_eq!(broker.parked[&b"I".to_vec()].len(), 1, "per client");
    }

    /// A broker on a fresh inproc endpoint with `options` (binds replaced).
    fn broker_with(context: &zmq::Context, options: Options) -> (Broker, String) {
        let n = ENDPOINTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let endpoint = format!("inproc://server-loop-test-{n}");
        let options = Options {
            binds: vec![endpoint.clone()],
            ..options
        };
        (Broker::new(context, options).unwrap(), endpoint)
    }

    /// Turns the broker's loop (20 ms at most a turn) until `done`; fails
    /// after 20 s.
    fn turn_until<T>(broker: &mut Broker, what: &str, done: impl FnMut(&Broker) -> Option<T>) -> T {
        turn_with(broker, None, what, done)
    }

    /// A raw DEALER named `identity` connected to `endpoint`, to play a
    /// client or a worker of any dialect by hand.
    fn dealer(context: &zmq::Context, endpoint: &str, identity: &str) -> zmq::Socket {
        let socket = context.socket(zmq::DEALER).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_identity(identity.as_bytes()).unwrap();
        socket.connect(endpoint).unwrap();
        socket
    }

    fn send(socket: &zmq::Socket, parts: &[&[u8]]) {
        socket.send_multipart(parts, 0).unwrap();
    }

    fn sbp_client(context: &zmq::Context, endpoint: &str) -> crate::broker::client::Client {
        let options = crate::broker::client::ClientOptions {
            endpoint: endpoint.to_string(),
            timeout: Duration::from_secs(60),
            retries: 1,
            ..Default::default()
        };
        crate::broker::client::Client::with_context(context, options).unwrap()
    }

    fn sbp_worker(
        context: &zmq::Context,
        endpoint: &str,
        service: &str,
    ) -> crate::broker::worker::Worker {
        let options = crate::broker::worker::WorkerOptions {
            endpoint: endpoint.to_string(),
            service: service.to_string(),
            ..Default::default()
        };
        crate::broker::worker::Worker::with_context(context, options).unwrap()
    }

    fn reply_of(event: Option<crate::broker::client::Event>) -> Option<Reply> {
        match event {
            Some(crate::broker::client::Event::Reply(reply)) => Some(reply),
            Some(other) => panic!("{other:?}"),
            None => None,
        }
    }

    #[test]
    fn the_loop_takes_requests_to_a_worker_and_replies_to_their_client() {
        let context = zmq::Context::new();
        let (mut broker, endpoint) = broker_with(&context, Options::default());
        let mut worker = sbp_worker(&context, &endpoint, "echo");
        let mut client = sbp_client(&context, &endpoint);
        let correlation = client
            .send("echo", vec![b"hi".to_vec()], &Default::default())
            .unwrap();
        let incoming = turn_until(&mut broker, "the request at the worker", |_| {
            worker.recv_timeout(Duration::ZERO).unwrap()
        });
        assert_eq!(incoming.request.body, [b"hi".to_vec()]);
        worker
            .reply(&incoming, Status::OK, vec![b"HI".to_vec()], None)
            .unwrap();
        let reply = turn_until(&mut broker, "the reply at the client", |_| {
            reply_of(client.recv(Duration::ZERO).unwrap())
        });
        assert_eq!(
            (reply.status, reply.correlation, reply.body),
            (Status::OK, correlation, vec![b"HI".to_vec()])
        );
        assert_eq!(
            (
                broker.figures.requests,
                broker.figures.replies,
                broker.figures.malformed
            ),
            (1, 1, 0)
        );
        // A management request counts as a request too.
        client
            .send("mmi.service", vec![b"echo".to_vec()], &Default::default())
            .unwrap();
        let reply = turn_until(&mut broker, "the mmi reply", |_| {
            reply_of(client.recv(Duration::ZERO).unwrap())
        });
        assert_eq!(reply.status, Status::OK);
        assert_eq!(broker.figures.requests, 2);
        // Garbage is counted as a fault.
        let raw = context.socket(zmq::DEALER).unwrap();
        raw.connect(&endpoint).unwrap();
        raw.send("garbage", 0).unwrap();
        turn_until(&mut broker, "the fault counted", |broker| {
            (broker.figures.malformed == 1).then_some(())
        });
    }

    #[test]
    fn stored_requests_are_served_again_by_the_next_broker_on_the_store() {
        let dir = crate::test_support::TempDir::new("server-restore");
        let context = zmq::Context::new();
        let options = Options {
            store: Some(dir.path().join("requests")),
            ..Options::default()
        };
        let (mut first, endpoint) = broker_with(&context, options.clone());
        // The same request twice (a resend): stored once.
        let raw = context.socket(zmq::DEALER).unwrap();
        raw.set_linger(0).unwrap();
        raw.connect(&endpoint).unwrap();
        let request = |correlation: &str, body: Vec<Vec<u8>>| {
            ClientCommand::Request(Request {
                service: b"later".to_vec(),
                address: Vec::new(),
                properties: Properties::default(),
                correlation: correlation.as_bytes().to_vec(),
                body,
            })
            .to_frames(false)
        };
        let kept = request("c-1", vec![b"keep me".to_vec()]);
        raw.send_multipart(&kept, 0).unwrap();
        raw.send_multipart(&kept, 0).unwrap();
        turn_until(&mut first, "two requests read", |broker| {
            (broker.figures.requests == 2).then_some(())
        });
        assert_eq!(first.store.as_ref().unwrap().len().unwrap(), 1);
        // Bounds: 1000 body frames are stored, 1001 refused with 400; the
        // longest routing id taken (254 bytes) is stored.
        raw.send_multipart(
            request("c-2", vec![b"x".to_vec(); store::MAX_BODY_FRAMES]),
            0,
        )
        .unwrap();
        raw.send_multipart(
            request("c-3", vec![b"x".to_vec(); store::MAX_BODY_FRAMES + 1]),
            0,
        )
        .unwrap();
        let refusal = turn_until(&mut first, "the refusal", |_| {
            raw.recv_multipart(zmq::DONTWAIT).ok()
        });
        match protocol::parse_client(&refusal).map(|parsed| parsed.command) {
            Ok(ClientCommand::Reply(reply)) => assert_eq!(
                (reply.correlation, reply.status),
                (b"c-3".to_vec(), Status::MALFORMED)
            ),
            other => panic!("{other:?}"),
        }
        let long = context.socket(zmq::DEALER).unwrap();
        long.set_linger(0).unwrap();
        long.set_identity(&[b'i'; protocol::MAX_NAME - 1]).unwrap();
        long.connect(&endpoint).unwrap();
        long.send_multipart(request("c-4", vec![b"long".to_vec()]), 0)
            .unwrap();
        // (The refused one is not a request the broker took.)
        turn_until(&mut first, "all requests read", |broker| {
            (broker.figures.requests == 4).then_some(())
        });
        assert_eq!(first.store.as_ref().unwrap().len().unwrap(), 3);
        drop(first);
        // The next broker on the store serves them again.
        let (mut second, endpoint) = broker_with(&context, options);
        let mut worker = sbp_worker(&context, &endpoint, "later");
        let incoming = turn_until(&mut second, "a stored request at a worker", |_| {
            worker.recv_timeout(Duration::ZERO).unwrap()
        });
        assert_eq!(
            (incoming.request.correlation, incoming.request.body),
            (b"c-1".to_vec(), vec![b"keep me".to_vec()])
        );
    }

    #[test]
    fn a_deadline_passes_on_the_loops_tick() {
        let context = zmq::Context::new();
        let (mut broker, endpoint) = broker_with(&context, Options::default());
        let mut client = sbp_client(&context, &endpoint);
        let start = Instant::now();
        let options =
            crate::broker::client::RequestOptions::deadline_in(Duration::from_millis(300));
        client
            .send("nobody", vec![b"x".to_vec()], &options)
            .unwrap();
        let reply = turn_until(&mut broker, "the 504", |_| {
            reply_of(client.recv(Duration::ZERO).unwrap())
        });
        assert_eq!(reply.status, Status::DEADLINE_PASSED);
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn an_idle_loop_sleeps_between_its_ticks() {
        let context = zmq::Context::new();
        let options = Options {
            heartbeat: Duration::from_millis(300),
            ..Options::default()
        };
        let (mut broker, _) = broker_with(&context, options);
        let start = Instant::now();
        let mut turns = 0;
        while start.elapsed() < Duration::from_millis(600) {
            broker.turn(None).unwrap();
            turns += 1;
        }
        // A tick every 100 ms and two heartbeats: about ten turns; a loop
        // that did not wait turns thousands of times.
        assert!(turns < 40, "{turns} turns in 600 ms");
    }

    #[test]
    fn workers_get_a_heartbeat_each_interval_and_faults_held_back_are_counted() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        // Not a multiple of the 100 ms tick, so that a heartbeat sent on
        // every turn instead shows.
        let options = Options {
            heartbeat: Duration::from_millis(250),
            ..Options::default()
        };
        let (mut broker, endpoint) = broker_with(&context, options);
        let worker = context.socket(zmq::DEALER).unwrap();
        worker.set_linger(0).unwrap();
        worker.connect(&endpoint).unwrap();
        let ready = WorkerCommand::Ready {
            service: b"beats".to_vec(),
            properties: Properties::default(),
        };
        worker.send_multipart(ready.to_frames(false), 0).unwrap();
        // Faults past the log's limit, to be reported as held back.
        for _ in 0..FAULT_LINES * 3 {
            worker.send("garbage", 0).unwrap();
        }
        let heartbeat = WorkerCommand::Heartbeat.to_frames(false);
        let start = Instant::now();
        let mut beats = 0;
        while start.elapsed() < Duration::from_secs(1) {
            broker.turn(Some(Duration::from_millis(20))).unwrap();
            while let Ok(frames) = worker.recv_multipart(zmq::DONTWAIT) {
                beats += usize::from(frames == heartbeat);
            }
        }
        assert!(
            (2..=8).contains(&beats),
            "{beats} heartbeats in 1 s at 250 ms"
        );
        assert_eq!(broker.figures.malformed, u64::from(FAULT_LINES) * 3);
        let held = crate::log_limit::captured::lines_with("more faults not logged");
        assert!(
            held.iter()
                .any(|l| l.contains(&format!("{} more", FAULT_LINES * 2))),
            "{held:?}"
        );
        assert!(
            !crate::log_limit::captured::lines_with("broker: 0 more faults")
                .iter()
                .any(|_| true),
            "nothing held back is not reported"
        );
    }

    /// An MMI request as the broker's `management` sees it.
    fn mmi(broker: &mut Broker, service: &str, environment: &str, body: &[&[u8]]) -> (u16, Frames) {
        let request = Request {
            service: service.as_bytes().to_vec(),
            address: Vec::new(),
            properties: Properties::build(None, 0, Some(environment), false, None),
            correlation: b"m".to_vec(),
            body: body.iter().map(|f| f.to_vec()).collect(),
        };
        let (status, frames) = broker.management(&request);
        (status.0, frames)
    }

    #[test]
    fn management_services_answer_by_the_rules_and_names_are_bounded() {
        let context = zmq::Context::new();
        let (mut broker, endpoint) = broker_with(&context, Options::default());
        // mmi.service: 404 without a worker, 200 with one; the last frame
        // becomes the code.
        assert_eq!(
            mmi(&mut broker, "mmi.service", "default", &[b"echo"]),
            (404, vec![b"404".to_vec()])
        );
        let _worker = sbp_worker(&context, &endpoint, "echo");
        turn_until(&mut broker, "the worker registered", |broker| {
            (broker.state.workers_of("default", b"echo") > 0).then_some(())
        });
        assert_eq!(
            mmi(&mut broker, "mmi.service", "default", &[b"x", b"echo"]),
            (200, vec![b"x".to_vec(), b"200".to_vec()])
        );
        assert_eq!(mmi(&mut broker, "mmi.service", "default", &[]).0, 400);
        let (status, frames) = mmi(&mut broker, "mmi.services", "default", &[]);
        assert_eq!(status, 200);
        let document: serde_json::Value = serde_json::from_slice(&frames[1]).unwrap();
        assert_eq!(document["broker"]["workers"], 1, "{document}");
        // Names: printable ASCII, 1 to MAX_NAME bytes, per environment.
        let longest = vec![b'n'; protocol::MAX_NAME];
        for (name, status) in [
            (&b"svc"[..], 200),
            (&b"!~"[..], 200),
            (&longest[..], 200),
            (&b""[..], 400),
            (&b"with space"[..], 400),
            (&b"del\x7f"[..], 400),
            (&[b'n'; protocol::MAX_NAME + 1][..], 400),
        ] {
            assert_eq!(
                mmi(&mut broker, "mmi.register", "prod", &[name, b"tcp://h:1"]).0,
                status,
                "name {}",
                show(name)
            );
            assert_eq!(
                mmi(&mut broker, "mmi.register", "prod", &[b"ok", name]).0,
                status,
                "endpoint {}",
                show(name)
            );
        }
        assert_eq!(mmi(&mut broker, "mmi.register", "prod", &[b"svc"]).0, 400);
        assert_eq!(
            mmi(&mut broker, "mmi.lookup", "prod", &[b"svc"]),
            (200, vec![b"200".to_vec(), b"tcp://h:1".to_vec()])
        );
        assert_eq!(mmi(&mut broker, "mmi.lookup", "test", &[b"svc"]).0, 404);
        assert_eq!(mmi(&mut broker, "mmi.lookup", "prod", &[b"a", b"b"]).0, 400);
        assert_eq!(mmi(&mut broker, "mmi.unregister", "prod", &[b"svc"]).0, 200);
        assert_eq!(mmi(&mut broker, "mmi.unregister", "prod", &[b"svc"]).0, 404);
        assert_eq!(mmi(&mut broker, "mmi.unregister", "prod", &[]).0, 400);
        assert_eq!(mmi(&mut broker, "mmi.lookup", "prod", &[b"svc"]).0, 404);
        assert_eq!(mmi(&mut broker, "mmi.other", "prod", &[]).0, 501);
        // At most MAX_NAMES names: then 503 for a new one, a known one may
        // still change.
        assert_eq!(
            mmi(&mut broker, "mmi.register", "full", &[b"kept", b"e"]).0,
            200
        );
        while broker.names.len() < MAX_NAMES {
            let name = format!("n{}", broker.names.len());
            assert_eq!(
                mmi(
                    &mut broker,
                    "mmi.register",
                    "full",
                    &[name.as_bytes(), b"e"]
                )
                .0,
                200
            );
        }
        assert_eq!(
            mmi(&mut broker, "mmi.register", "full", &[b"new", b"e"]).0,
            503
        );
        assert_eq!(
            mmi(&mut broker, "mmi.register", "full", &[b"kept", b"e2"]).0,
            200
        );
    }

    #[test]
    fn mdp_clients_and_workers_through_the_loop_heartbeats_and_a_silent_worker_forgotten() {
        let context = zmq::Context::new();
        let options = Options {
            heartbeat: Duration::from_millis(100),
            config: Config {
                default_policy: crate::broker::state::Policy::Notify,
                worker_expiry: Duration::from_millis(600),
                ..Config::default()
            },
            ..Options::default()
        };
        let (mut broker, endpoint) = broker_with(&context, options);
        let socket = |identity: &str| dealer(&context, &endpoint, identity);
        let worker = socket("W");
        send(&worker, &[b"", b"MDPW01", &[0x01], b"echo"]);
        let client = socket("C");
        send(&client, &[b"", b"MDPC01", b"echo", b"hi"]);
        // The worker gets the request between heartbeats.
        let request = turn_until(&mut broker, "the request at the MDP worker", |_| {
            let frames = worker.recv_multipart(zmq::DONTWAIT).ok()?;
            (frames[2] == [0x02]).then_some(frames)
        });
        assert_eq!(&request[..3], [&b""[..], b"MDPW01", &[0x02]]);
        assert_eq!(&request[4..], [&b""[..], b"hi"]);
        let address = request[3].clone();
        send(&worker, &[b"", b"MDPW01", &[0x03], &address, b"", b"HI"]);
        let reply = turn_until(&mut broker, "the reply at the MDP client", |_| {
            client.recv_multipart(zmq::DONTWAIT).ok()
        });
        assert_eq!(reply, [&b""[..], b"MDPC01", b"echo", b"HI"]);
        // An error status is not sent to an MDP/0.1 client (it has no way
        // to say it), except from an mmi.* service: the next thing this
        // client hears is the mmi answer.
        send(&client, &[b"", b"MDPC01", b"nobody", b"x"]);
        send(&client, &[b"", b"MDPC01", b"mmi.service", b"nobody"]);
        let reply = turn_until(&mut broker, "the mmi answer", |_| {
            client.recv_multipart(zmq::DONTWAIT).ok()
        });
        assert_eq!(reply, [&b""[..], b"MDPC01", b"mmi.service", b"404"]);
        // The worker goes silent: heartbeats keep coming until it is
        // forgotten and told to go.
        let mut heartbeats = 0;
        let disconnect = turn_until(&mut broker, "the silent worker told to go", |_| {
            let frames = worker.recv_multipart(zmq::DONTWAIT).ok()?;
            match frames[2].as_slice() {
                [0x04] => {
                    heartbeats += 1;
                    None
                }
                _ => Some(frames),
            }
        });
        assert_eq!(disconnect, [&b""[..], b"MDPW01", &[0x05]]);
        assert!(heartbeats >= 2, "{heartbeats} heartbeats before the expiry");
        assert_eq!(broker.state.workers_of("default", b"echo"), 0);
        // A worker that changes dialect is disconnected.
        let turncoat = socket("T");
        send(&turncoat, &[b"", b"MDPW01", &[0x01], b"echo"]);
        send(
            &turncoat,
            &WorkerCommand::Heartbeat
                .to_frames(true)
                .iter()
                .map(Vec::as_slice)
                .collect::<Vec<_>>(),
        );
        let frames = turn_until(&mut broker, "the turncoat told to go", |_| {
            let frames = turncoat.recv_multipart(zmq::DONTWAIT).ok()?;
            (frames != [&b""[..], b"MDPW01", &[0x04]]).then_some(frames)
        });
        assert_eq!(frames, [&b""[..], b"MDPW01", &[0x05]]);
    }

    #[test]
    fn mdp02_partials_stream_to_rfc18_clients_and_are_joined_within_bounds_for_others() {
        let context = zmq::Context::new();
        let (mut broker, endpoint) = broker_with(&context, Options::default());
        let socket = |identity: &str| dealer(&context, &endpoint, identity);
        let worker = socket("W");
        send(&worker, &[b"MDPW02", &[0x01], b"stream"]);
        // The next REQUEST at the worker: its client's address.
        let next_request = |broker: &mut Broker| -> Vec<u8> {
            let request = turn_until(broker, "a request at the worker", |_| {
                let frames = worker.recv_multipart(zmq::DONTWAIT).ok()?;
                (frames[1] == [0x02]).then_some(frames)
            });
            request[2].clone()
        };
        let reply_at = |broker: &mut Broker, client: &zmq::Socket| {
            turn_until(broker, "a reply at the client", |_| {
                client.recv_multipart(zmq::DONTWAIT).ok()
            })
        };
        // An RFC 18 client gets each PARTIAL as it comes, then the FINAL.
        let streaming = socket("R");
        send(&streaming, &[b"MDPC02", &[0x01], b"stream", b"go"]);
        let address = next_request(&mut broker);
        send(&worker, &[b"MDPW02", &[0x03], &address, b"", b"p1"]);
        assert_eq!(
            reply_at(&mut broker, &streaming),
            [&b"MDPC02"[..], &[0x02], b"stream", b"p1"]
        );
        send(&worker, &[b"MDPW02", &[0x04], &address, b"", b"end"]);
        assert_eq!(
            reply_at(&mut broker, &streaming),
            [&b"MDPC02"[..], &[0x03], b"stream", b"end"]
        );
        // An MDP/0.1 client gets one reply: the partials and the final.
        let whole = socket("O");
        send(&whole, &[b"", b"MDPC01", b"stream", b"go"]);
        let address = next_request(&mut broker);
        for part in [&b"a"[..], b"b"] {
            send(&worker, &[b"MDPW02", &[0x03], &address, b"", part]);
        }
        send(&worker, &[b"MDPW02", &[0x04], &address, b"", b"c"]);
        assert_eq!(
            reply_at(&mut broker, &whole),
            [&b""[..], b"MDPC01", b"stream", b"a", b"b", b"c"]
        );
        // Past MAX_PARTIAL_BYTES the held partials are dropped: the final
        // alone arrives. Exactly at the bound they are kept.
        let half = vec![b'h'; MAX_PARTIAL_BYTES / 2];
        for (parts, kept) in [(2, true), (3, false)] {
            send(&whole, &[b"", b"MDPC01", b"stream", b"go"]);
            let address = next_request(&mut broker);
            for _ in 0..parts {
                send(&worker, &[b"MDPW02", &[0x03], &address, b"", &half]);
            }
            send(&worker, &[b"MDPW02", &[0x04], &address, b"", b"z"]);
            let reply = reply_at(&mut broker, &whole);
            let held = reply.len() - 4;
            assert_eq!(held, if kept { parts } else { 0 }, "{parts} halves");
            assert_eq!(reply.last().unwrap(), b"z");
        }
        // A PARTIAL for a client the worker does not serve: told to go.
        send(&worker, &[b"MDPW02", &[0x03], b"\x01nobody", b"", b"x"]);
        let frames = turn_until(&mut broker, "the worker told to go", |_| {
            let frames = worker.recv_multipart(zmq::DONTWAIT).ok()?;
            (frames[1] != [0x05]).then_some(frames)
        });
        assert_eq!(frames, [&b"MDPW02"[..], &[0x06]]);
        assert_eq!(broker.state.workers_of("default", b"stream"), 0);
    }

    /// Turns two brokers in step until `done` (which looks at the first).
    fn turn_both_until<T>(
        a: &mut Broker,
        b: &mut Broker,
        what: &str,
        done: impl FnMut(&Broker) -> Option<T>,
    ) -> T {
        turn_with(a, Some(b), what, done)
    }

    /// Turns `a` (and `b`, in step) 20 ms at most a turn until `done(a)`;
    /// fails after 20 s.
    fn turn_with<T>(
        a: &mut Broker,
        mut b: Option<&mut Broker>,
        what: &str,
        mut done: impl FnMut(&Broker) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = done(a) {
                return value;
            }
            assert!(Instant::now() < deadline, "{what}: not within 20 s");
            a.turn(Some(Duration::from_millis(20))).unwrap();
            if let Some(b) = b.as_deref_mut() {
                b.turn(Some(Duration::from_millis(20))).unwrap();
            }
        }
    }

    #[test]
    fn a_request_without_a_worker_here_is_served_by_a_peer_and_fails_when_the_peer_dies() {
        let context = zmq::Context::new();
        let (mut peer, peer_endpoint) = broker_with(&context, Options::default());
        let options = Options {
            peers: vec![peer_endpoint.clone()],
            peer_interval: Duration::from_millis(100),
            peer_ttl: Duration::from_millis(600),
            config: Config {
                default_policy: crate::broker::state::Policy::Forward,
                ..Config::default()
            },
            ..Options::default()
        };
        let (mut broker, endpoint) = broker_with(&context, options);
        let mut worker = sbp_worker(&context, &peer_endpoint, "echo");
        let mut client = sbp_client(&context, &endpoint);
        turn_both_until(
            &mut broker,
            &mut peer,
            "the peer's capacity known",
            |broker| {
                let peering = broker.peering.as_ref()?;
                (peering.capacity(0, "default", b"echo").workers == 1).then_some(())
            },
        );
        let correlation = client
            .send("echo", vec![b"hi".to_vec()], &Default::default())
            .unwrap();
        let incoming = turn_both_until(
            &mut broker,
            &mut peer,
            "the request at the peer's worker",
            |_| worker.recv_timeout(Duration::ZERO).unwrap(),
        );
        assert_eq!(incoming.request.body, [b"hi".to_vec()]);
        worker
            .reply(&incoming, Status::OK, vec![b"HI".to_vec()], None)
            .unwrap();
        let reply = turn_both_until(&mut broker, &mut peer, "the reply through the peer", |_| {
            reply_of(client.recv(Duration::ZERO).unwrap())
        });
        assert_eq!(
            (reply.status, reply.correlation, reply.body),
            (Status::OK, correlation, vec![b"HI".to_vec()])
        );
        // A second request reaches the peer's worker, then the peer dies:
        // once it has been silent for its TTL, the client hears 500.
        let lost = client
            .send("echo", vec![b"lost".to_vec()], &Default::default())
            .unwrap();
        turn_both_until(
            &mut broker,
            &mut peer,
            "the second request at the worker",
            |_| worker.recv_timeout(Duration::ZERO).unwrap(),
        );
        drop(peer);
        drop(worker);
        let reply = turn_until(&mut broker, "the 500 for the dead peer's request", |_| {
            reply_of(client.recv(Duration::ZERO).unwrap())
        });
        assert_eq!(
            (reply.status, reply.correlation),
            (Status::WORKER_FAILED, lost)
        );
    }

    /// A Binary Star pair of brokers in one test: the active one serves and
    /// replicates what it accepted; the passive one sends workers away; when
    /// the active one dies, the other takes over on a client's vote and
    /// serves the replicated request.
    #[test]
    fn a_pair_serves_from_the_active_one_and_the_backup_takes_over_what_was_accepted() {
        use crate::bstar::{Role, State};
        let context = zmq::Context::new();
        let n = ENDPOINTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (primary_pair, backup_pair) = (
            format!("inproc://pair-test-{n}-primary"),
            format!("inproc://pair-test-{n}-backup"),
        );
        let pair = |role, bind: &str, connect: &str| Options {
            pair: Some(PairOptions {
                role,
                bind: bind.to_string(),
                connect: connect.to_string(),
            }),
            ..Options::default()
        };
        let (mut primary, primary_endpoint) =
            broker_with(&context, pair(Role::Primary, &primary_pair, &backup_pair));
        let (mut backup, backup_endpoint) =
            broker_with(&context, pair(Role::Backup, &backup_pair, &primary_pair));
        let state = |broker: &Broker| broker.pair.as_ref().unwrap().state();
        turn_both_until(&mut primary, &mut backup, "the primary active", |primary| {
            (state(primary) == State::Active).then_some(())
        });
        turn_both_until(&mut backup, &mut primary, "the backup passive", |backup| {
            (state(backup) == State::Passive).then_some(())
        });
        // A worker at the passive backup is sent away.
        let stray = context.socket(zmq::DEALER).unwrap();
        stray.set_linger(0).unwrap();
        stray.connect(&backup_endpoint).unwrap();
        let ready = WorkerCommand::Ready {
            service: b"echo".to_vec(),
            properties: Properties::default(),
        };
        stray.send_multipart(ready.to_frames(false), 0).unwrap();
        let told = turn_until(&mut backup, "the stray worker told to go", |_| {
            stray.recv_multipart(zmq::DONTWAIT).ok()
        });
        assert_eq!(told, WorkerCommand::Disconnect.to_frames(false));
        // The active primary takes a request and replicates it.
        let mut worker = sbp_worker(&context, &primary_endpoint, "echo");
        let mut client = sbp_client(&context, &primary_endpoint);
        client
            .send("echo", vec![b"keep".to_vec()], &Default::default())
            .unwrap();
        turn_both_until(
            &mut primary,
            &mut backup,
            "the request at the worker",
            |_| worker.recv_timeout(Duration::ZERO).unwrap(),
        );
        turn_both_until(
            &mut backup,
            &mut primary,
            "the request replicated",
            |backup| (backup.pair.as_ref().unwrap().logged() == 1).then_some(()),
        );
        // The primary dies with the request unanswered. A client's request
        // at the backup is a vote: once the primary is silent for long, the
        // backup goes active and serves what was accepted.
        drop(primary);
        drop(worker);
        let voter = context.socket(zmq::DEALER).unwrap();
        voter.set_linger(0).unwrap();
        voter.connect(&backup_endpoint).unwrap();
        let vote = ClientCommand::Ping.to_frames(false);
        turn_until(&mut backup, "the backup active", |backup| {
            if state(backup) == State::Active {
                return Some(());
            }
            voter.send_multipart(&vote, zmq::DONTWAIT).unwrap();
            None
        });
        let mut worker = sbp_worker(&context, &backup_endpoint, "echo");
        let incoming = turn_until(&mut backup, "the replicated request served", |_| {
            worker.recv_timeout(Duration::ZERO).unwrap()
        });
        assert_eq!(incoming.request.body, [b"keep".to_vec()]);
    }

    /// The metrics text is rendered again about once a second.
    #[test]
    fn the_metrics_are_published_from_the_loop() {
        let context = zmq::Context::new();
        let options = Options {
            metrics: Some("127.0.0.1:0".into()),
            ..Options::default()
        };
        let (mut broker, endpoint) = broker_with(&context, options);
        let address = broker.metrics.as_ref().unwrap().local_addr();
        let get = || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        let mut client = sbp_client(&context, &endpoint);
        client
            .send("nobody", vec![b"x".to_vec()], &Default::default())
            .unwrap();
        turn_until(&mut broker, "the request read", |broker| {
            (broker.figures.requests == 1).then_some(())
        });
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !last.contains("\nzguide_broker_requests_total 1\n") {
            assert!(Instant::now() < deadline, "not published:\n{last}");
            for _ in 0..10 {
                broker.turn(Some(Duration::from_millis(20))).unwrap();
            }
            last = get();
        }
        // Once a second, not on every turn: a publication due now sets the
        // next a second later.
        broker.next_publish = Instant::now();
        broker.turn(Some(Duration::ZERO)).unwrap();
        assert!(broker.next_publish > Instant::now() + Duration::from_millis(500));
    }

    /// An answered request is forgotten by the store (else the next broker
    /// on it would serve it again).
    #[test]
    fn an_answered_request_leaves_the_store() {
        let dir = crate::test_support::TempDir::new("server-forget");
        let context = zmq::Context::new();
        let options = Options {
            store: Some(dir.path().join("requests")),
            ..Options::default()
        };
        let (mut broker, endpoint) = broker_with(&context, options);
        let mut worker = sbp_worker(&context, &endpoint, "echo");
        let mut client = sbp_client(&context, &endpoint);
        client
            .send("echo", vec![b"once".to_vec()], &Default::default())
            .unwrap();
        let incoming = turn_until(&mut broker, "the request at the worker", |_| {
            worker.recv_timeout(Duration::ZERO).unwrap()
        });
        assert_eq!(broker.store.as_ref().unwrap().len().unwrap(), 1);
        worker
            .reply(&incoming, Status::OK, vec![b"done".to_vec()], None)
            .unwrap();
        turn_until(&mut broker, "the reply", |_| {
            reply_of(client.recv(Duration::ZERO).unwrap())
        });
        turn_until(&mut broker, "the request forgotten", |broker| {
            (broker.store.as_ref().unwrap().len().unwrap() == 0).then_some(())
        });
    }

    /// `run` serves until SIGINT, then shuts down (the store synced) and
    /// returns `Ok`. In a child process (this test binary, this test alone),
    /// as Ctrl-C is process-wide.
    #[test]
    fn run_serves_until_sigint_then_shuts_down() {
        const CHILD: &str = "ZGUIDE_BROKER_RUN_CHILD";
        if let Some(dir) = std::env::var_os(CHILD) {
            crate::interrupt::catch_signals();
            let context = zmq::Context::new();
            let options = Options {
                binds: vec![format!("ipc://{}/broker", dir.to_string_lossy())],
                store: Some(std::path::Path::new(&dir).join("requests")),
                ..Options::default()
            };
            let mut broker = Broker::new(&context, options).unwrap();
            let result = broker.run();
            println!("run returned {result:?}");
            return;
        }
        let dir = crate::test_support::TempDir::new("server-run");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "broker::server::tests::run_serves_until_sigint_then_shuts_down",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Serving: a PING is answered.
        let context = zmq::Context::new();
        let endpoint = format!("ipc://{}/broker", dir.path().display());
        let ping = ClientCommand::Ping.to_frames(false);
        let probe = dealer(&context, &endpoint, "probe");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(
                Instant::now() < deadline,
                "the broker never answered a PING"
            );
            probe.send_multipart(&ping, 0).unwrap();
            if probe.poll(zmq::POLLIN, 200).unwrap() > 0 {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run returned before SIGINT"
        );
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("run returned Ok(())"), "{stdout}");
    }
}
