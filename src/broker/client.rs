//! The SBP/1 client API (study part 2, `../shared/spec/etude.md` §4): a
//! DEALER socket that sends requests in batches and matches their replies by
//! correlation id (`zguide/broker-protocol.md` §3).
//!
//! * [`Client::send`] queues one REQUEST and returns its correlation id at
//!   once; the client chooses the ids (a counter, unique per [`Client`], or
//!   the caller's own in [`RequestOptions::correlation`]).
//! * [`Client::recv`] waits (bounded) for the next [`Event`]: a reply matched
//!   to a pending request, or [`Event::GaveUp`] for a request that got no
//!   reply after [`ClientOptions::retries`] attempts. Meanwhile it resends
//!   each pending request, with the **same** correlation id, after
//!   [`ClientOptions::timeout`], the wait doubling per attempt (2.5 s, 5 s,
//!   10 s by default), and watches the broker (below).
//! * **PING.** The client sends PING whenever it has heard nothing from the
//!   broker for [`ClientOptions::ping_interval`] (2 s) and has sent no PING
//!   in that long either, whatever else it sends: at most one PING per
//!   interval. Requests are no sign of life: a broker drops a resent request
//!   it already holds without a word (the first copy's reply will answer
//!   it), so a client that keeps resending to a broker whose workers are
//!   slow would otherwise hear nothing and take a busy broker for a dead one.
//! * **Silence.** After [`ClientOptions::broker_ttl`] (6 s) without a word
//!   from the broker (a PONG, a reply, anything):
//!   - with no [`ClientOptions::failover`] endpoints, it logs that once and
//!     keeps its socket and its retries: a DEALER reconnects by itself;
//!   - with failover endpoints (a Binary Star pair), it **fails over** to the
//!     next endpoint of the ring `[endpoint, failover…]`: it closes its socket
//!     (LINGER 0: what it had queued for the silent broker is dropped), opens
//!     a new DEALER with the **same** routing id and CURVE settings, resends
//!     every pending request at once in the order they were first sent, with
//!     the same correlation ids, and logs one line, `broker <old> silent for
//!     <ms> ms, failing over to <new>` (warning). Silence counts again from
//!     that moment, so a pair that is all gone is tried in turn, one endpoint
//!     per TTL. [`Client::endpoint`] says where it is, [`Client::failovers`]
//!     how often it moved.
//! * **A failover resend is not an attempt.** A request keeps its count of
//!   attempts (and [`Client::resent`] does not count it). Its resend timer
//!   starts again from the failover with the whole wait of its current
//!   attempt, so the copy on the new broker gets that wait in full, but never
//!   past the moment the request would be given up if nothing answered (its
//!   last send plus the waits of the attempts left). So a client whose
//!   brokers are all gone still gives up on every request, after about
//!   `timeout` x (2^`retries` - 1), 17.5 s by default: a failover can put an
//!   attempt off, and the give-up with it, by less than the waits still to
//!   come, at most once per attempt, never without end.
//! * A failover endpoint libzmq refuses (a malformed address) is logged
//!   (bounded) and skipped for the next one of the ring.
//! * Replies for correlations not pending (a second answer to a resent
//!   request, or a stranger's) are dropped and counted
//!   ([`Client::duplicates`]); malformed messages are dropped, counted
//!   ([`Client::malformed`]) and logged (bounded, escaped).
//! * [`Client::request`] is the synchronous convenience: send, then wait for
//!   that reply or give up.
//!
//! Delivery is *at least once*: a resent request may reach a worker twice if
//! the first copy was only slow (or, after a failover, if the broker left
//! behind was only cut off, not dead). Mark requests the worker may safely repeat
//! `idempotent`; the correlation id is the same in every copy, so a worker
//! can also recognise a repeat.
//!
//! **Routing id.** The socket's routing id is set explicitly: `C-` and 16
//! random hex digits, made once per `Client` (or [`ClientOptions::identity`]).
//! The broker addresses a reply by the routing id the request came from.
//! libzmq would otherwise let the broker's ROUTER make one up per
//! connection, so after a broker restart the reconnected client would have a
//! new one, and the replies to requests the broker kept across the restart
//! (its store) would go to an id nobody holds. With a fixed id they reach
//! this client; the socket of a failover keeps it too.
//!
//! Dropping a client drops what it has not sent yet (LINGER 0): every SBP
//! request expects a reply, and nobody is left to read it.
//!
//! Bounds: at most [`MAX_PENDING`] requests pending (`send` fails past it);
//! a send waits at most `timeout` for room in the socket's queue (the broker
//! not reading) and then fails with `Error::Timeout`; every wait ends on
//! Ctrl-C with `Error::Interrupted`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::broker::protocol::{
    self, parse_client, ClientCommand, Frames, Parsed, Properties, Reply, Request,
};
use crate::curve::Keys;
use crate::log_limit::Window;
use crate::message::show;
use crate::{interrupt, Error, Message};

/// The most requests a client keeps pending.
pub const MAX_PENDING: usize = 10_000;
/// How often an idle client PINGs the broker (spec §3).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// Silence after which the broker is taken as gone (spec §3).
pub const BROKER_TTL: Duration = Duration::from_secs(6);

/// How a [`Client`] connects and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The broker's endpoint.
    pub endpoint: String,
    /// Further broker endpoints (the other broker of a Binary Star pair),
    /// tried in turn after `endpoint` when the broker is silent for
    /// `broker_ttl`; empty (the default): no failover.
    pub failover: Vec<String>,
    /// The `environment` property of every request (`None`: the broker's
    /// `default`).
    pub environment: Option<String>,
    /// The logical address sent with every request (empty: the broker uses
    /// the routing id).
    pub address: Vec<u8>,
    /// How long to wait for a reply before the first resend; doubles per
    /// attempt. Also how long a send waits for room in the socket's queue.
    pub timeout: Duration,
    /// Attempts in all (the first send included) before giving up; 0 is 1.
    pub retries: u32,
    /// CURVE: our keys (with the secret) and the broker's public key.
    pub curve: Option<(Keys, [u8; 32])>,
    /// The largest inbound frame, bytes.
    pub max_message_size: i64,
    /// The socket's routing id (1-255 bytes, not starting with a zero
    /// byte); `None`: `C-` and 16 random hex digits.
    pub identity: Option<Vec<u8>>,
    /// PING when nothing was heard from the broker for this long, at most
    /// once per this long (spec: 2 s).
    pub ping_interval: Duration,
    /// Silence after which the broker is taken as gone (spec: 6 s): fail
    /// over to the next endpoint if there is a `failover`, else log it once.
    pub broker_ttl: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            endpoint: crate::broker::DEFAULT_CONNECT.to_string(),
            failover: Vec::new(),
            environment: None,
            address: Vec::new(),
            timeout: Duration::from_millis(2500),
            retries: 3,
            curve: None,
            max_message_size: crate::socket::DEFAULT_MAX_MESSAGE_SIZE,
            identity: None,
            ping_interval: PING_INTERVAL,
            broker_ttl: BROKER_TTL,
        }
    }
}

/// Per-request settings.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// The broker answers 504 instead of delivering after this moment.
    pub deadline: Option<SystemTime>,
    /// Higher first within the service's queue.
    pub priority: i8,
    /// The broker may give it to another worker if its worker dies.
    pub idempotent: bool,
    /// The correlation id (1-64 bytes, not pending); `None`: the client's
    /// next number.
    pub correlation: Option<Vec<u8>>,
}

impl RequestOptions {
    /// Options whose deadline is `after` from now.
    pub fn deadline_in(after: Duration) -> RequestOptions {
        RequestOptions {
            deadline: Some(SystemTime::now() + after),
            ..RequestOptions::default()
        }
    }
}

/// What [`Client::recv`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The reply to a pending request (any status).
    Reply(Reply),
    /// No reply after every attempt: the request is no longer pending.
    GaveUp {
        correlation: Vec<u8>,
        service: Vec<u8>,
    },
}

/// A request waiting for its reply.
struct Pending {
    frames: Frames,
    service: Vec<u8>,
    /// Sends so far (1 after the first); a failover's resend is not one.
    attempts: u32,
    /// Which timer entry is current (older ones in the heap are stale).
    timer: u64,
    /// When it is given up if no failover intervenes: the last send plus the
    /// waits of the attempts left.
    give_up_at: Instant,
    /// The current timer is the last one: a failover moved it to
    /// `give_up_at`.
    last_wait: bool,
    /// Send order, for resending in that order after a failover.
    order: u64,
}

/// An SBP/1 client. See the module docs.
pub struct Client {
    // Kept so the socket's context lives as long as the client.
    context: zmq::Context,
    socket: zmq::Socket,
    options: ClientOptions,
    /// The ring `[endpoint, failover…]`.
    endpoints: Vec<String>,
    /// The index in `endpoints` of the broker the socket is connected to.
    current: usize,
    failovers: u64,
    identity: Vec<u8>,
    next_correlation: u64,
    pending: HashMap<Vec<u8>, Pending>,
    /// When each pending request is due for a resend or giving up.
    timers: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    next_timer: u64,
    next_order: u64,
    /// Events read by [`Client::request`] for other requests.
    stash: VecDeque<Event>,
    duplicates: u64,
    malformed: u64,
    resent: u64,
    last_heard: Instant,
    last_ping: Instant,
    broker_gone: bool,
    complaints: Window,
}

impl Client {
    /// A client in a context of its own.
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        Client::with_context(&zmq::Context::new(), options)
    }

    /// A client whose socket lives in `context` (so it can reach
    /// `inproc://` endpoints of that context).
    pub fn with_context(context: &zmq::Context, options: ClientOptions) -> Result<Client, Error> {
        if let Some(environment) = &options.environment {
            check_environment(environment)?;
        }
        if options.address.len() > protocol::MAX_NAME {
            return Err(Error::Protocol("an address is at most 255 bytes".into()));
        }
        let identity = match &options.identity {
            Some(identity) => {
                if identity.is_empty() || identity.len() > 255 || identity[0] == 0 {
                    return Err(Error::Protocol(
                        "a routing id is 1-255 bytes and does not start with a zero byte".into(),
                    ));
                }
                identity.clone()
            }
            None => random_id("C").into_bytes(),
        };
        let socket = dealer(
            context,
            &options.endpoint,
            &identity,
            options.curve.as_ref(),
            options.max_message_size,
        )?;
        let mut endpoints = vec![options.endpoint.clone()];
        endpoints.extend(options.failover.iter().cloned());
        let now = Instant::now();
        Ok(Client {
            context: context.clone(),
            socket,
            options,
            endpoints,
            current: 0,
            failovers: 0,
            identity,
            next_correlation: 1,
            pending: HashMap::new(),
            timers: BinaryHeap::new(),
            next_timer: 0,
            next_order: 0,
            stash: VecDeque::new(),
            duplicates: 0,
            malformed: 0,
            resent: 0,
            last_heard: now,
            last_ping: now,
            broker_gone: false,
            complaints: Window::new(10, Duration::from_secs(10)),
        })
    }

    /// The socket's routing id.
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    /// Requests sent and not yet answered or given up.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Replies dropped because their correlation was not pending.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Messages from the broker dropped as malformed or unexpected.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Requests sent again after a timeout (a failover's resends are not
    /// counted).
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// The endpoint of the broker the client talks to now: `endpoint`, or
    /// the failover endpoint it moved to.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// How many times the client failed over to another broker.
    pub fn failovers(&self) -> u64 {
        self.failovers
    }

    /// Sends a REQUEST to `service` without waiting for its reply; returns
    /// its correlation id. Fails (nothing sent) with `Error::Protocol` for a
    /// bad service name or correlation, or past [`MAX_PENDING`], and with
    /// `Error::Timeout` when the socket's queue stays full for `timeout`.
    pub fn send(
        &mut self,
        service: &str,
        body: Vec<Vec<u8>>,
        options: &RequestOptions,
    ) -> Result<Vec<u8>, Error> {
        if self.pending.len() >= MAX_PENDING {
            return Err(Error::Protocol(format!(
                "{MAX_PENDING} requests pending already: read replies first"
            )));
        }
        check_service(service.as_bytes())?;
        let correlation = match &options.correlation {
            Some(correlation) => {
                if correlation.is_empty() || correlation.len() > protocol::MAX_CORRELATION {
                    return Err(Error::Protocol("a correlation id is 1-64 bytes".into()));
                }
                if self.pending.contains_key(correlation) {
                    return Err(Error::Protocol(format!(
                        "correlation {} is pending already",
                        show(correlation)
                    )));
                }
                correlation.clone()
            }
            None => loop {
                let correlation = self.next_correlation.to_string().into_bytes();
                self.next_correlation += 1;
                if !self.pending.contains_key(&correlation) {
                    break correlation;
                }
            },
        };
        let deadline = options.deadline.map(|deadline| {
            deadline
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        let properties = Properties::build(
            deadline,
            options.priority,
            self.options.environment.as_deref(),
            options.idempotent,
            None,
        );
        let frames = ClientCommand::Request(Request {
            service: service.as_bytes().to_vec(),
            address: self.options.address.clone(),
            properties,
            correlation: correlation.clone(),
            body,
        })
        .to_frames(false);
        if !send_frames(&self.socket, &frames, self.options.timeout)? {
            return Err(Error::Timeout);
        }
        let now = Instant::now();
        let timer = self.schedule(now + self.wait(1), &correlation);
        let order = self.next_order;
        self.next_order += 1;
        self.pending.insert(
            correlation.clone(),
            Pending {
                frames,
                service: service.as_bytes().to_vec(),
                attempts: 1,
                timer,
                give_up_at: now + self.waits_from(1),
                last_wait: false,
                order,
            },
        );
        Ok(correlation)
    }

    /// Waits at most `timeout` for the next event; `Ok(None)` if none came.
    /// Resends, gives up, PINGs and watches the broker meanwhile (see the
    /// module docs). `timeout` zero: only what is due or already arrived.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, Error> {
        if let Some(event) = self.stash.pop_front() {
            return Ok(Some(event));
        }
        let deadline = Instant::now() + timeout;
        loop {
            // What has arrived, a bounded batch at a time so timers still run.
            for _ in 0..1000 {
                let frames = match self.socket.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => frames,
                    Err(zmq::Error::EAGAIN) => break,
                    Err(zmq::Error::EINTR) if interrupt::interrupted() => {
                        return Err(Error::Interrupted)
                    }
                    Err(zmq::Error::EINTR) => break,
                    Err(e) => return Err(e.into()),
                };
                if let Some(event) = self.take(frames) {
                    return Ok(Some(event));
                }
            }
            let now = Instant::now();
            if let Some(event) = self.due(now)? {
                return Ok(Some(event));
            }
            self.keep_alive(now)?;
            if now >= deadline {
                return Ok(None);
            }
            let mut wake =
                deadline.min(self.last_heard.max(self.last_ping) + self.options.ping_interval);
            if let Some(Reverse((at, _, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            if !self.broker_gone {
                wake = wake.min(self.last_heard + self.options.broker_ttl);
            }
            interrupt::poll(
                &[&self.socket],
                ceil_ms(wake.saturating_duration_since(now)),
            )?;
        }
    }

    /// Sends a request and waits for its reply (any status). Gives up with
    /// `Error::Timeout` after every attempt went unanswered. Events for other
    /// pending requests that arrive meanwhile are kept for [`Client::recv`].
    pub fn request(
        &mut self,
        service: &str,
        body: Vec<Vec<u8>>,
        options: &RequestOptions,
    ) -> Result<Reply, Error> {
        let correlation = self.send(service, body, options)?;
        let mut others = Vec::new();
        let result = loop {
            // Bounded: the request is answered or given up after its last
            // attempt's wait.
            match self.recv(Duration::from_millis(500)) {
                Ok(Some(Event::Reply(reply))) if reply.correlation == correlation => {
                    break Ok(reply)
                }
                Ok(Some(Event::GaveUp {
                    correlation: gone, ..
                })) if gone == correlation => break Err(Error::Timeout),
                Ok(Some(other)) => others.push(other),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        };
        self.stash.extend(others);
        result
    }

    /// The wait for a reply after attempt `attempt` (1 for the first send).
    fn wait(&self, attempt: u32) -> Duration {
        self.options
            .timeout
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
    }

    /// The waits of attempt `attempt` and of every one after it: how long
    /// after that attempt's send the request is given up.
    fn waits_from(&self, attempt: u32) -> Duration {
        (attempt..=self.options.retries.max(1))
            .map(|n| self.wait(n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    fn schedule(&mut self, at: Instant, correlation: &[u8]) -> u64 {
        let timer = self.next_timer;
        self.next_timer += 1;
        self.timers.push(Reverse((at, timer, correlation.to_vec())));
        timer
    }

    /// One message from the broker: the event it makes, if any.
    fn take(&mut self, frames: Frames) -> Option<Event> {
        self.last_heard = Instant::now();
        if self.broker_gone {
            self.broker_gone = false;
            log::info!("broker at {} answers again", self.endpoint());
        }
        match parse_client(&frames) {
            Ok(Parsed {
                command: ClientCommand::Reply(reply),
                ..
            }) => {
                if self.pending.remove(&reply.correlation).is_some() {
                    return Some(Event::Reply(reply));
                }
                self.duplicates += 1;
                log::debug!(
                    "dropped a reply for correlation {} (not pending: a duplicate)",
                    show(&reply.correlation)
                );
            }
            Ok(Parsed {
                command: ClientCommand::Pong,
                ..
            }) => {}
            Ok(Parsed { command, .. }) => {
                self.malformed += 1;
                let what = match command {
                    ClientCommand::Request(_) => "REQUEST",
                    _ => "PING",
                };
                self.complaints.warn(format_args!(
                    "client: unexpected {what} from the broker: dropped"
                ));
            }
            Err(e) => {
                self.malformed += 1;
                self.complaints.warn(format_args!(
                    "client: malformed message from the broker ({}): {}",
                    e.what,
                    Message::from_frames(frames).summary()
                ));
            }
        }
        None
    }

    /// Resends what is due, or gives up on it.
    fn due(&mut self, now: Instant) -> Result<Option<Event>, Error> {
        while let Some(Reverse((at, timer, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let timer = *timer;
            let Some(Reverse((_, _, correlation))) = self.timers.pop() else {
                break;
            };
            let Some(pending) = self.pending.get_mut(&correlation) else {
                continue; // answered meanwhile
            };
            if pending.timer != timer {
                continue;
            }
            if pending.attempts >= self.options.retries.max(1) || pending.last_wait {
                let service = self
                    .pending
                    .remove(&correlation)
                    .map(|p| p.service)
                    .unwrap_or_default();
                log::debug!(
                    "no reply to {} from {} after {} attempt(s): giving up",
                    show(&correlation),
                    show(&service),
                    self.options.retries.max(1)
                );
                return Ok(Some(Event::GaveUp {
                    correlation,
                    service,
                }));
            }
            // A full queue means the first copy is still waiting in it.
            if !send_frames(&self.socket, &pending.frames, Duration::ZERO)? {
                log::debug!("resend of {} dropped: queue full", show(&correlation));
            }
            pending.attempts += 1;
            let attempts = pending.attempts;
            let wait = self.wait(attempts);
            let give_up_at = now + self.waits_from(attempts);
            log::debug!(
                "no reply to {}: sent again (attempt {attempts}), next wait {wait:?}",
                show(&correlation),
            );
            self.resent += 1;
            let timer = self.schedule(now + wait, &correlation);
            if let Some(pending) = self.pending.get_mut(&correlation) {
                pending.timer = timer;
                pending.give_up_at = give_up_at;
            }
        }
        Ok(None)
    }

    /// PINGs a broker not heard from for a while; fails over from a silent
    /// one, or notes it.
    fn keep_alive(&mut self, now: Instant) -> Result<(), Error> {
        let silent = now.duration_since(self.last_heard);
        if silent >= self.options.broker_ttl {
            if self.endpoints.len() > 1 {
                self.fail_over(now, silent)?;
            } else if !self.broker_gone {
                self.broker_gone = true;
                log::warn!(
                    "no word from the broker at {} for {:.1} s: taking it as gone, still retrying",
                    self.endpoint(),
                    silent.as_secs_f64()
                );
            }
        }
        // Whatever else was sent: requests are no sign of life (a broker
        // drops a resent request it holds already, silently).
        let interval = self.options.ping_interval;
        if now.duration_since(self.last_heard) >= interval
            && now.duration_since(self.last_ping) >= interval
        {
            let ping = ClientCommand::Ping.to_frames(false);
            // A full queue holds messages enough to keep the broker busy.
            send_frames(&self.socket, &ping, Duration::ZERO)?;
            self.last_ping = now;
        }
        Ok(())
    }

    /// Moves to the next endpoint of the ring that takes a socket: same
    /// routing id and CURVE settings, every pending request resent at once
    /// (not counted as an attempt), silence counted from now.
    fn fail_over(&mut self, now: Instant, silent: Duration) -> Result<(), Error> {
        let count = self.endpoints.len();
        // Silence counts from now whatever happens: one try per TTL.
        self.last_heard = now;
        for step in 1..count {
            let next = (self.current + step) % count;
            let socket = match dealer(
                &self.context,
                &self.endpoints[next],
                &self.identity,
                self.options.curve.as_ref(),
                self.options.max_message_size,
            ) {
                Ok(socket) => socket,
                Err(e) => {
                    self.complaints.warn(format_args!(
                        "client: cannot fail over to {}: {e}",
                        self.endpoints[next]
                    ));
                    continue;
                }
            };
            log::warn!(
                "broker {} silent for {} ms, failing over to {}",
                self.endpoint(),
                silent.as_millis(),
                self.endpoints[next]
            );
            // What was queued for the silent broker goes with its socket.
            let _ = self.socket.set_linger(0);
            self.socket = socket;
            self.current = next;
            self.failovers += 1;
            self.broker_gone = false;
            self.resend_all(now)?;
            return Ok(());
        }
        Ok(())
    }

    /// After a failover: every pending request on the new socket, in the
    /// order first sent, each timer restarted from `now` with the whole wait
    /// of its current attempt, but no later than its `give_up_at`.
    fn resend_all(&mut self, now: Instant) -> Result<(), Error> {
        let mut order: Vec<(u64, Vec<u8>)> = self
            .pending
            .iter()
            .map(|(correlation, pending)| (pending.order, correlation.clone()))
            .collect();
        order.sort_unstable();
        let mut queue_full = false;
        for (_, correlation) in order {
            let Some(pending) = self.pending.get(&correlation) else {
                continue;
            };
            // A new socket's queue holds a high-water mark's worth; the rest
            // go with their timers.
            if !queue_full && !send_frames(&self.socket, &pending.frames, Duration::ZERO)? {
                queue_full = true;
                log::debug!(
                    "failover resends stopped at {}: queue full",
                    show(&correlation)
                );
            }
            let (attempts, give_up_at) = (pending.attempts, pending.give_up_at);
            let mut at = now + self.wait(attempts);
            let last_wait = at >= give_up_at;
            if last_wait {
                at = give_up_at.max(now);
            }
            let timer = self.schedule(at, &correlation);
            if let Some(pending) = self.pending.get_mut(&correlation) {
                pending.timer = timer;
                pending.last_wait = last_wait;
            }
        }
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Requests still pending die with the client: nothing queued for a
        // broker that is gone may hold the exit up (LINGER 0).
        let _ = self.socket.set_linger(0);
    }
}

/// A printable random routing id, `<prefix>-` and 16 hex digits.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}-{:016X}", rand::thread_rng().gen::<u64>())
}

/// A DEALER socket (LINGER and frame limit from the socket builder) with
/// `identity`, CURVE if asked, connected to `endpoint`.
pub(crate) fn dealer(
    context: &zmq::Context,
    endpoint: &str,
    identity: &[u8],
    curve: Option<&(Keys, [u8; 32])>,
    max_message_size: i64,
) -> Result<zmq::Socket, Error> {
    let socket = crate::socket::new(context, zmq::DEALER)
        .max_message_size(max_message_size)
        .identity(identity)
        .build()?;
    if let Some((keys, server)) = curve {
        keys.make_client(&socket, server)?;
    }
    socket.connect(endpoint).map_err(|source| Error::Endpoint {
        action: "connect to",
        endpoint: endpoint.to_string(),
        source,
    })?;
    Ok(socket)
}

/// Sends `frames` as one message without blocking for more than `wait` for
/// room in the queue: `Ok(false)` if there was none (nothing sent).
/// Interruptible.
pub(crate) fn send_frames(
    socket: &zmq::Socket,
    frames: &[Vec<u8>],
    wait: Duration,
) -> Result<bool, Error> {
    let deadline = Instant::now() + wait;
    let last = frames.len().saturating_sub(1);
    for (index, frame) in frames.iter().enumerate() {
        let more = if index < last { zmq::SNDMORE } else { 0 };
        loop {
            match socket.send(frame.as_slice(), zmq::DONTWAIT | more) {
                Ok(()) => break,
                // libzmq takes a message whole once its first frame is in, so
                // only the first can find the queue full.
                Err(zmq::Error::EAGAIN) if index == 0 => {
                    if !wait_writable(socket, deadline)? {
                        return Ok(false);
                    }
                }
                Err(zmq::Error::EAGAIN) => {
                    wait_writable(socket, Instant::now() + Duration::from_millis(100))?;
                }
                Err(zmq::Error::EINTR) if interrupt::interrupted() => {
                    return Err(Error::Interrupted)
                }
                Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(true)
}

/// Waits until `socket` can take a message (`true`) or `deadline` passes.
fn wait_writable(socket: &zmq::Socket, deadline: Instant) -> Result<bool, Error> {
    loop {
        if interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        let mut items = vec![socket.as_poll_item(zmq::POLLOUT)];
        if let Some(fd) = interrupt::wake_fd() {
            items.push(zmq::PollItem::from_fd(fd, zmq::POLLIN));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match zmq::poll(&mut items, ceil_ms(left)) {
            Ok(_) => {
                if items.get(1).is_some_and(zmq::PollItem::is_readable) {
                    return Err(Error::Interrupted);
                }
                if items[0].is_writable() {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
            }
            Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A poll timeout in whole milliseconds, rounded up (so a poll does not wake
/// just before the moment it waits for and spin).
pub(crate) fn ceil_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// Spec §2: 1-255 printable ASCII bytes.
pub(crate) fn check_service(service: &[u8]) -> Result<(), Error> {
    let printable = service.iter().all(|b| (0x21..=0x7e).contains(b));
    if service.is_empty() || service.len() > protocol::MAX_NAME || !printable {
        return Err(Error::Protocol(format!(
            "service {:?}: a service name is 1-255 printable ASCII bytes",
            show(service)
        )));
    }
    Ok(())
}

/// Spec §5: 1-64 bytes.
pub(crate) fn check_environment(environment: &str) -> Result<(), Error> {
    if environment.is_empty() || environment.len() > protocol::MAX_ENVIRONMENT {
        return Err(Error::Protocol(format!(
            "environment {:?}: 1-64 bytes",
            show(environment.as_bytes())
        )));
    }
    Ok(())
}

/// CURVE settings from the command line's key files: `keys` is our key pair
/// (the `_secret` file, or its public file beside it) and `server` the
/// broker's public key file. Both or neither.
pub fn load_curve(
    keys: Option<&Path>,
    server: Option<&Path>,
) -> Result<Option<(Keys, [u8; 32])>, Error> {
    crate::curve::load_client(keys, server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::protocol::Status;
    use crate::broker::thread_cpu;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ENDPOINTS: AtomicUsize = AtomicUsize::new(0);

    /// A scripted broker: a ROUTER bound to a fresh inproc endpoint.
    fn broker(context: &zmq::Context) -> (zmq::Socket, String) {
        let endpoint = format!(
            "inproc://client-test-{}",
            ENDPOINTS.fetch_add(1, Ordering::SeqCst)
        );
        let router = context.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind(&endpoint).unwrap();
        (router, endpoint)
    }

    fn options(endpoint: &str, timeout_ms: u64, retries: u32) -> ClientOptions {
        ClientOptions {
            endpoint: endpoint.to_string(),
            timeout: Duration::from_millis(timeout_ms),
            retries,
            environment: Some("test".into()),
            ..ClientOptions::default()
        }
    }

    /// The next message the broker gets, within 5 s; its arrival time.
    fn next(router: &zmq::Socket) -> (Vec<Vec<u8>>, Instant) {
        let mut items = [router.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, 5000).unwrap();
        assert!(items[0].is_readable(), "the broker got nothing in 5 s");
        (router.recv_multipart(0).unwrap(), Instant::now())
    }

    /// Everything the broker got within `ms`.
    fn all_within(router: &zmq::Socket, ms: i64) -> Vec<Vec<Vec<u8>>> {
        let deadline = Instant::now() + Duration::from_millis(ms as u64);
        let mut got = Vec::new();
        loop {
            let left = ceil_ms(deadline.saturating_duration_since(Instant::now()));
            let mut items = [router.as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, left).unwrap();
            if !items[0].is_readable() {
                return got;
            }
            got.push(router.recv_multipart(0).unwrap());
        }
    }

    /// The request in a message the broker got: (routing id, request).
    fn request_in(frames: &[Vec<u8>]) -> (Vec<u8>, Request) {
        match parse_client(&frames[1..]).unwrap().command {
            ClientCommand::Request(request) => (frames[0].clone(), request),
            other => panic!("not a request: {other:?}"),
        }
    }

    fn answer(router: &zmq::Socket, client: &[u8], request: &Request, status: Status) {
        let reply = ClientCommand::Reply(Reply {
            service: request.service.clone(),
            correlation: request.correlation.clone(),
            status,
            properties: Properties::default(),
            body: request.body.clone(),
        });
        let mut frames = vec![client.to_vec()];
        frames.extend(reply.to_frames(false));
        router.send_multipart(frames, 0).unwrap();
    }

    fn reply_of(event: Option<Event>) -> Reply {
        match event {
            Some(Event::Reply(reply)) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_is_matched_by_correlation_whatever_the_order_of_replies() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        assert!(client.identity().starts_with(b"C-"));
        let mut sent = Vec::new();
        for n in 0..5 {
            let body = vec![format!("body {n}").into_bytes()];
            sent.push(
                client
                    .send("echo", body, &RequestOptions::default())
                    .unwrap(),
            );
        }
        assert_eq!(client.pending(), 5);
        let mut unique = sent.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "correlations are unique: {sent:?}");
        let requests: Vec<_> = (0..5).map(|_| request_in(&next(&router).0)).collect();
        for (client_id, request) in &requests {
            assert_eq!(client_id, client.identity());
            assert_eq!(request.properties.environment, "test");
        }
        for (client_id, request) in requests.iter().rev() {
            answer(&router, client_id, request, Status::OK);
        }
        for n in (0..5).rev() {
            let reply = reply_of(client.recv(Duration::from_secs(5)).unwrap());
            assert_eq!(reply.correlation, sent[n]);
            assert_eq!(reply.body, vec![format!("body {n}").into_bytes()]);
        }
        assert_eq!((client.pending(), client.duplicates()), (0, 0));
    }

    #[test]
    fn a_duplicate_reply_is_dropped_and_counted() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let correlation = client
            .send("echo", vec![b"x".to_vec()], &RequestOptions::default())
            .unwrap();
        let (id, request) = request_in(&next(&router).0);
        answer(&router, &id, &request, Status::OK);
        answer(&router, &id, &request, Status::OK);
        let reply = reply_of(client.recv(Duration::from_secs(5)).unwrap());
        assert_eq!(reply.correlation, correlation);
        assert_eq!(client.recv(Duration::from_millis(200)).unwrap(), None);
        assert_eq!(client.duplicates(), 1);
        // A stranger's correlation counts too.
        let mut stranger = request.clone();
        stranger.correlation = b"never-sent".to_vec();
        answer(&router, &id, &stranger, Status::OK);
        assert_eq!(client.recv(Duration::from_millis(200)).unwrap(), None);
        assert_eq!(client.duplicates(), 2);
    }

    #[test]
    fn an_unanswered_request_is_resent_with_its_correlation_then_given_up() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 100, 3)).unwrap();
        let started = Instant::now();
        let correlation = client
            .send("echo", vec![b"x".to_vec()], &RequestOptions::default())
            .unwrap();
        let event = client.recv(Duration::from_secs(5)).unwrap();
        let waited = started.elapsed();
        assert_eq!(
            event,
            Some(Event::GaveUp {
                correlation: correlation.clone(),
                service: b"echo".to_vec()
            })
        );
        // 100 + 200 + 400 ms: the wait doubles per attempt.
        assert!(
            waited >= Duration::from_millis(700) && waited < Duration::from_millis(2000),
            "{waited:?}"
        );
        let copies: Vec<_> = all_within(&router, 200)
            .into_iter()
            .filter(|f| f.get(2) == Some(&vec![0x01]))
            .collect();
        assert_eq!(copies.len(), 3, "3 attempts in all");
        for copy in &copies {
            assert_eq!(request_in(copy).1.correlation, correlation);
        }
        assert_eq!((client.pending(), client.resent()), (0, 2));
    }

    #[test]
    fn resends_come_at_doubling_intervals() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 100, 4)).unwrap();
        client
            .send("echo", Vec::new(), &RequestOptions::default())
            .unwrap();
        let collector = std::thread::spawn(move || {
            let mut times = Vec::new();
            while times.len() < 4 {
                let (frames, at) = next(&router);
                if frames.get(2) == Some(&vec![0x01]) {
                    times.push(at);
                }
            }
            times
        });
        let event = client.recv(Duration::from_secs(5)).unwrap();
        assert!(matches!(event, Some(Event::GaveUp { .. })), "{event:?}");
        let times = collector.join().unwrap();
        let gaps: Vec<u128> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        // 100, 200, 400 ms: each wait at least twice the one before (only
        // lower bounds: a busy machine makes waits longer, never shorter).
        assert!(gaps[0] >= 90, "{gaps:?}");
        assert!(gaps[1] >= 190, "{gaps:?}");
        assert!(gaps[2] >= 390, "{gaps:?}");
    }

    #[test]
    fn a_reply_to_a_resent_request_ends_it_and_the_late_one_is_a_duplicate() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 100, 3)).unwrap();
        let correlation = client
            .send("echo", vec![b"x".to_vec()], &RequestOptions::default())
            .unwrap();
        let (id, first) = request_in(&next(&router).0);
        assert_eq!(client.recv(Duration::from_millis(150)).unwrap(), None);
        let (_, second) = request_in(&next(&router).0);
        assert_eq!(second.correlation, first.correlation);
        answer(&router, &id, &first, Status::OK);
        answer(&router, &id, &second, Status::OK);
        let reply = reply_of(client.recv(Duration::from_secs(5)).unwrap());
        assert_eq!(reply.correlation, correlation);
        assert_eq!(client.recv(Duration::from_millis(100)).unwrap(), None);
        assert_eq!(client.duplicates(), 1);
    }

    #[test]
    fn an_idle_client_pings_and_notes_a_silent_broker() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut opts = options(&endpoint, 5000, 1);
        opts.ping_interval = Duration::from_millis(100);
        opts.broker_ttl = Duration::from_millis(300);
        let mut client = Client::with_context(&context, opts).unwrap();
        assert_eq!(client.recv(Duration::from_millis(450)).unwrap(), None);
        let got = all_within(&router, 100);
        let pings = got
            .iter()
            .filter(|f| f[1..] == ClientCommand::Ping.to_frames(false)[..])
            .count();
        assert!(pings >= 3 && pings == got.len(), "{got:?}");
        let gone = crate::log_limit::captured::lines_with(&format!(
            "no word from the broker at {endpoint} "
        ));
        assert_eq!(gone.len(), 1, "logged once: {gone:?}");
        // No failover endpoint: it stays where it is.
        assert_eq!((client.failovers(), client.endpoint()), (0, &endpoint[..]));
        // A PONG brings it back.
        let mut pong = vec![client.identity().to_vec()];
        pong.extend(ClientCommand::Pong.to_frames(false));
        router.send_multipart(pong, 0).unwrap();
        assert_eq!(client.recv(Duration::from_millis(50)).unwrap(), None);
        assert_eq!(
            crate::log_limit::captured::lines_with(&format!("broker at {endpoint} answers again"))
                .len(),
            1
        );
    }

    #[test]
    fn a_malformed_reply_is_ignored() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let correlation = client
            .send("echo", Vec::new(), &RequestOptions::default())
            .unwrap();
        let (id, request) = request_in(&next(&router).0);
        for junk in [
            vec![b"SBPC01".to_vec(), vec![0x02], b"echo".to_vec()],
            vec![b"MDPC01".to_vec(), b"echo".to_vec(), b"hi".to_vec()],
            vec![
                b"SBPC01".to_vec(),
                vec![0x02],
                b"echo".to_vec(),
                correlation.clone(),
                b"2x0".to_vec(),
                vec![0x80],
            ],
        ] {
            let mut frames = vec![id.clone()];
            frames.extend(junk);
            router.send_multipart(frames, 0).unwrap();
        }
        answer(&router, &id, &request, Status::NO_WORKERS);
        let reply = reply_of(client.recv(Duration::from_secs(5)).unwrap());
        assert_eq!(
            (reply.correlation, reply.status),
            (correlation, Status::NO_WORKERS)
        );
        assert_eq!((client.malformed(), client.duplicates()), (3, 0));
    }

    #[test]
    fn request_waits_for_its_own_reply_and_keeps_the_others() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let early = client
            .send("echo", vec![b"early".to_vec()], &RequestOptions::default())
            .unwrap();
        let answerer = std::thread::spawn(move || {
            let first = request_in(&next(&router).0);
            let second = request_in(&next(&router).0);
            answer(&router, &first.0, &first.1, Status::OK);
            answer(&router, &second.0, &second.1, Status::OK);
            router
        });
        let reply = client
            .request("echo", vec![b"late".to_vec()], &RequestOptions::default())
            .unwrap();
        assert_eq!(reply.body, vec![b"late".to_vec()]);
        let kept = reply_of(client.recv(Duration::from_secs(1)).unwrap());
        assert_eq!(kept.correlation, early);
        drop(answerer.join().unwrap());
    }

    #[test]
    fn sends_are_bounded_and_checked() {
        let context = zmq::Context::new();
        let (_router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let none = RequestOptions::default();
        assert!(client.send("bad name", Vec::new(), &none).is_err());
        assert!(client.send("", Vec::new(), &none).is_err());
        let mine = RequestOptions {
            correlation: Some(b"mine".to_vec()),
            ..RequestOptions::default()
        };
        assert_eq!(client.send("echo", Vec::new(), &mine).unwrap(), b"mine");
        assert!(client.send("echo", Vec::new(), &mine).is_err(), "pending");
        // No peer reads: the queue fills, then a send fails in bounded time.
        let (_, lonely) = broker(&context);
        let mut opts = options(&lonely, 50, 1);
        opts.endpoint = "tcp://127.0.0.1:9".into(); // nobody listens
        let mut stuck = Client::with_context(&context, opts).unwrap();
        let started = Instant::now();
        let mut result = Ok(Vec::new());
        for _ in 0..MAX_PENDING {
            result = stuck.send("echo", Vec::new(), &none);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Options with failover endpoints and short PING and TTL times.
    fn pair_options(
        endpoint: &str,
        failover: &str,
        timeout_ms: u64,
        retries: u32,
        ping_ms: u64,
        ttl_ms: u64,
    ) -> ClientOptions {
        ClientOptions {
            failover: vec![failover.to_string()],
            ping_interval: Duration::from_millis(ping_ms),
            broker_ttl: Duration::from_millis(ttl_ms),
            ..options(endpoint, timeout_ms, retries)
        }
    }

    fn is_ping(frames: &[Vec<u8>]) -> bool {
        frames[1..] == ClientCommand::Ping.to_frames(false)[..]
    }

    #[test]
    fn a_client_pings_a_silent_broker_however_much_else_it_sends() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut opts = options(&endpoint, 5000, 1);
        opts.ping_interval = Duration::from_millis(100);
        let mut client = Client::with_context(&context, opts).unwrap();
        // A request every 20 ms for 500 ms: the client never stops sending,
        // and the broker never says a word.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) {
            client
                .send("echo", Vec::new(), &RequestOptions::default())
                .unwrap();
            assert_eq!(client.recv(Duration::from_millis(20)).unwrap(), None);
        }
        let got = all_within(&router, 100);
        let pings = got.iter().filter(|f| is_ping(f)).count();
        // One PING per 100 ms of silence: about 5, never one per send.
        assert!((3..=6).contains(&pings), "{pings} PINGs in 500 ms");
        assert!(got.len() - pings >= 20, "the requests went too");
    }

    #[test]
    fn a_broker_that_answers_pings_is_not_failed_over_however_long_its_replies_take() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let (_other, other) = broker(&context);
        // Sends every 40 ms, a 500 ms TTL: only PONGs keep it here.
        let mut client =
            Client::with_context(&context, pair_options(&endpoint, &other, 50, 30, 100, 500))
                .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ponger = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut pongs = 0;
                while !stop.load(Ordering::SeqCst) {
                    for frames in all_within(&router, 20) {
                        if is_ping(&frames) {
                            let mut pong = vec![frames[0].clone()];
                            pong.extend(ClientCommand::Pong.to_frames(false));
                            router.send_multipart(pong, 0).unwrap();
                            pongs += 1;
                        }
                    }
                }
                pongs
            })
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1000) {
            client
                .send("slow", Vec::new(), &RequestOptions::default())
                .unwrap();
            assert_eq!(client.recv(Duration::from_millis(40)).unwrap(), None);
        }
        stop.store(true, Ordering::SeqCst);
        let pongs = ponger.join().unwrap();
        assert!(pongs >= 5, "{pongs} PONGs");
        assert_eq!((client.failovers(), client.endpoint()), (0, &endpoint[..]));
    }

    #[test]
    fn a_silent_broker_means_failover_with_every_pending_request_resent_at_once() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let (first, endpoint) = broker(&context);
        let (second, other) = broker(&context);
        let mut client =
            Client::with_context(&context, pair_options(&endpoint, &other, 5000, 2, 100, 300))
                .unwrap();
        let started = Instant::now();
        let mut sent = Vec::new();
        // Correlations that sort against the order sent: the resends follow
        // the sending order, not the ids'.
        for (n, correlation) in ["z", "y", "x"].into_iter().enumerate() {
            let body = vec![format!("body {n}").into_bytes()];
            let options = RequestOptions {
                correlation: Some(correlation.as_bytes().to_vec()),
                ..RequestOptions::default()
            };
            sent.push(client.send("echo", body, &options).unwrap());
        }
        for correlation in &sent {
            let (_, request) = request_in(&next(&first).0);
            assert_eq!(&request.correlation, correlation);
        }
        // The first broker never answers (not even PINGs): after 300 ms the
        // client moves, and the second broker gets the three at once, in
        // the order sent, from the same routing id.
        let mut copies = Vec::new();
        while copies.len() < 3 {
            assert_eq!(client.recv(Duration::from_millis(20)).unwrap(), None);
            copies.extend(
                all_within(&second, 0)
                    .into_iter()
                    .filter(|f| !is_ping(f))
                    .map(|f| request_in(&f)),
            );
            assert!(started.elapsed() < Duration::from_secs(5), "no failover");
        }
        let moved = started.elapsed();
        assert!(
            moved >= Duration::from_millis(290) && moved < Duration::from_millis(1500),
            "{moved:?}"
        );
        assert_eq!((client.failovers(), client.endpoint()), (1, &other[..]));
        let line = format!("broker {endpoint} silent for ");
        let logged = crate::log_limit::captured::lines_with(&line);
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(
            logged[0].ends_with(&format!(" ms, failing over to {other}")),
            "{logged:?}"
        );
        for ((id, request), correlation) in copies.iter().zip(&sent) {
            assert_eq!(id, client.identity());
            assert_eq!(&request.correlation, correlation);
        }
        // Not attempts, not timeouts.
        assert_eq!(client.resent(), 0);
        for (id, request) in copies.iter().rev() {
            answer(&second, id, request, Status::OK);
        }
        for n in (0..3).rev() {
            let reply = reply_of(client.recv(Duration::from_secs(5)).unwrap());
            assert_eq!(reply.correlation, sent[n]);
        }
        assert_eq!(client.pending(), 0);
    }

    #[test]
    fn a_pair_that_is_all_silent_is_tried_in_turn_and_still_gives_up() {
        let context = zmq::Context::new();
        let (_first, endpoint) = broker(&context);
        let (_second, other) = broker(&context);
        // Attempts at 0, 100 and (after a failover restarted its timer) 450
        // ms; failovers every 250 ms; given up at 850 ms. A failover that
        // counted as an attempt would give up with one resend; timers that
        // failovers could push back without a bound would never give up.
        let mut client =
            Client::with_context(&context, pair_options(&endpoint, &other, 100, 3, 50, 250))
                .unwrap();
        let started = Instant::now();
        let correlation = client
            .send("echo", Vec::new(), &RequestOptions::default())
            .unwrap();
        let event = client.recv(Duration::from_secs(3)).unwrap();
        let waited = started.elapsed();
        assert_eq!(
            event,
            Some(Event::GaveUp {
                correlation,
                service: b"echo".to_vec()
            }),
            "after {waited:?}, {} failovers",
            client.failovers()
        );
        assert!(
            waited >= Duration::from_millis(700) && waited < Duration::from_millis(2000),
            "{waited:?}"
        );
        assert_eq!(client.resent(), 2, "3 attempts in all");
        assert!(client.failovers() >= 2, "{}", client.failovers());
    }

    #[test]
    fn names_and_environments_are_checked_at_their_bounds() {
        assert!(check_service(&[b's'; protocol::MAX_NAME]).is_ok());
        assert!(check_service(&[b's'; protocol::MAX_NAME + 1]).is_err());
        assert!(check_service(b"").is_err());
        assert!(check_service(b"two words").is_err());
        assert!(check_service(b"~!").is_ok());
        assert!(check_environment(&"e".repeat(protocol::MAX_ENVIRONMENT)).is_ok());
        assert!(check_environment(&"e".repeat(protocol::MAX_ENVIRONMENT + 1)).is_err());
        assert!(check_environment("").is_err());
    }

    #[test]
    fn ceil_ms_rounds_up_to_whole_milliseconds() {
        assert_eq!(ceil_ms(Duration::ZERO), 0);
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_micros(1999)), 2);
        assert_eq!(ceil_ms(Duration::from_millis(2500)), 2500);
        assert_eq!(ceil_ms(Duration::MAX), i64::MAX);
    }

    #[test]
    fn deadline_in_is_that_far_ahead() {
        let before = SystemTime::now();
        let options = RequestOptions::deadline_in(Duration::from_secs(60));
        let deadline = options.deadline.expect("a deadline");
        let ahead = deadline.duration_since(before).expect("in the future");
        assert!(ahead >= Duration::from_secs(60) && ahead < Duration::from_secs(61));
    }

    #[test]
    fn addresses_routing_ids_and_correlations_are_checked_at_their_bounds() {
        let context = zmq::Context::new();
        let (_router, endpoint) = broker(&context);
        let make = |address: usize, identity: Option<Vec<u8>>| {
            let options = ClientOptions {
                address: vec![b'a'; address],
                identity,
                ..options(&endpoint, 5000, 1)
            };
            Client::with_context(&context, options).map(|client| client.identity().to_vec())
        };
        assert!(make(protocol::MAX_NAME, None).is_ok());
        assert!(make(protocol::MAX_NAME + 1, None).is_err());
        assert_eq!(make(0, Some(b"x".to_vec())).unwrap(), b"x");
        assert_eq!(make(0, Some(vec![b'i'; 255])).unwrap(), vec![b'i'; 255]);
        assert!(make(0, Some(vec![b'i'; 256])).is_err());
        assert!(make(0, Some(Vec::new())).is_err());
        assert!(make(0, Some(vec![0, b'x'])).is_err(), "reserved by libzmq");

        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let with = |correlation: Vec<u8>| RequestOptions {
            correlation: Some(correlation),
            ..RequestOptions::default()
        };
        let longest = vec![b'c'; protocol::MAX_CORRELATION];
        assert_eq!(
            client
                .send("echo", Vec::new(), &with(longest.clone()))
                .unwrap(),
            longest
        );
        let too_long = vec![b'c'; protocol::MAX_CORRELATION + 1];
        assert!(client.send("echo", Vec::new(), &with(too_long)).is_err());
        assert!(client.send("echo", Vec::new(), &with(Vec::new())).is_err());
        assert_eq!(client.pending(), 1);
    }

    #[test]
    fn an_idle_client_sleeps_between_pings_before_and_after_the_broker_goes_silent() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let quick = ClientOptions {
            ping_interval: Duration::from_millis(100),
            broker_ttl: Duration::from_millis(300),
            ..options(&endpoint, 5000, 1)
        };
        let mut client = Client::with_context(&context, quick).unwrap();
        // 0-300 ms the broker counts as alive, then as silent: in both the
        // client wakes for its PINGs and the broker's time to live, and
        // sleeps in between.
        let cpu = thread_cpu();
        let started = Instant::now();
        assert_eq!(client.recv(Duration::from_millis(800)).unwrap(), None);
        let (waited, spent) = (started.elapsed(), thread_cpu() - cpu);
        assert!(waited >= Duration::from_millis(790), "{waited:?}");
        assert!(
            spent < Duration::from_millis(150),
            "{spent:?} of CPU in {waited:?}"
        );
        let pings = all_within(&router, 0).iter().filter(|f| is_ping(f)).count();
        assert!((5..=12).contains(&pings), "{pings} PINGs in {waited:?}");
    }

    #[test]
    fn request_gives_up_on_its_own_last_attempt_not_on_another_requests() {
        let context = zmq::Context::new();
        let (_router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 100, 1)).unwrap();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let first = client
                .send("echo", vec![b"first".to_vec()], &RequestOptions::default())
                .unwrap();
            // Sent later, so given up later than `first`.
            std::thread::sleep(Duration::from_millis(50));
            let outcome = client.request("echo", Vec::new(), &RequestOptions::default());
            let pending = client.pending();
            let kept = client.recv(Duration::ZERO).unwrap();
            let _ = done.send((first, outcome, pending, kept));
        });
        let (first, outcome, pending, kept) = result
            .recv_timeout(Duration::from_secs(5))
            .expect("request still waiting 5 s after its only attempt timed out");
        assert!(matches!(outcome, Err(Error::Timeout)), "{outcome:?}");
        assert_eq!(pending, 0, "returned before its own request gave up");
        assert_eq!(
            kept,
            Some(Event::GaveUp {
                correlation: first,
                service: b"echo".to_vec()
            })
        );
    }

    #[test]
    fn a_request_or_ping_from_the_broker_is_counted_and_named() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let correlation = client
            .send("echo", Vec::new(), &RequestOptions::default())
            .unwrap();
        let (id, request) = request_in(&next(&router).0);
        for command in [ClientCommand::Request(request.clone()), ClientCommand::Ping] {
            let mut frames = vec![id.clone()];
            frames.extend(command.to_frames(false));
            router.send_multipart(frames, 0).unwrap();
        }
        answer(&router, &id, &request, Status::OK);
        let reply = reply_of(client.recv(Duration::from_secs(5)).unwrap());
        assert_eq!(reply.correlation, correlation);
        assert_eq!(client.malformed(), 2);
        for what in ["REQUEST", "PING"] {
            let line = format!("client: unexpected {what} from the broker: dropped");
            assert!(
                !crate::log_limit::captured::lines_with(&line).is_empty(),
                "no warning {line:?}"
            );
        }
    }

    #[test]
    fn a_resend_that_goes_out_is_not_logged_as_dropped() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 100, 2)).unwrap();
        let probe = RequestOptions {
            correlation: Some(b"resend-log-probe".to_vec()),
            ..RequestOptions::default()
        };
        client.send("echo", Vec::new(), &probe).unwrap();
        assert!(matches!(
            client.recv(Duration::from_secs(2)).unwrap(),
            Some(Event::GaveUp { .. })
        ));
        assert_eq!(client.resent(), 1);
        let (_, first) = request_in(&next(&router).0);
        let (_, second) = request_in(&next(&router).0);
        assert_eq!(first.correlation, second.correlation);
        let dropped = crate::log_limit::captured::lines_with("resend of resend-log-probe dropped");
        assert!(dropped.is_empty(), "{dropped:?}");
    }

    #[test]
    fn a_send_waits_for_room_while_the_broker_catches_up() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut client = Client::with_context(&context, options(&endpoint, 5000, 1)).unwrap();
        let none = RequestOptions::default();
        // Fill the queue while the broker reads nothing.
        let mut sent = 0;
        while client.socket.get_events().unwrap().contains(zmq::POLLOUT) {
            client.send("echo", Vec::new(), &none).unwrap();
            sent += 1;
            assert!(sent < MAX_PENDING / 2, "the queue never filled");
        }
        // Now the broker reads: the next sends wait for room, then go.
        let reader = std::thread::spawn(move || {
            let mut got = 0;
            while got < sent + 100 {
                next(&router);
                got += 1;
            }
        });
        for _ in 0..100 {
            client.send("echo", Vec::new(), &none).unwrap();
        }
        reader.join().unwrap();
    }

    #[test]
    fn dropping_a_client_with_requests_queued_does_not_hold_its_context_up() {
        let context = zmq::Context::new();
        let mut opts = options("tcp://127.0.0.1:9", 5000, 1); // nobody listens
        opts.environment = None;
        let mut client = Client::with_context(&context, opts).unwrap();
        client
            .send("echo", vec![vec![0; 1000]], &RequestOptions::default())
            .unwrap();
        let started = Instant::now();
        drop(client);
        drop(context);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(300),
            "{took:?} (LINGER is 1 s)"
        );
    }

    #[test]
    fn curve_settings_come_from_both_key_files_or_none() {
        let dir = std::env::temp_dir().join(format!("client-curve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ours, server) = (Keys::generate().unwrap(), Keys::generate().unwrap());
        ours.save(&dir.join("client")).unwrap();
        server.save(&dir.join("broker")).unwrap();
        let loaded = load_curve(Some(&dir.join("client")), Some(&dir.join("broker"))).unwrap();
        assert_eq!(loaded, Some((ours, server.public)));
        assert_eq!(load_curve(None, None).unwrap(), None);
        assert!(load_curve(Some(&dir.join("client")), None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
