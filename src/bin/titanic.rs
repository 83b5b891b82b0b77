//! Titanic service (§30 "Disconnected Reliability (Titanic Pattern)"): the
//! server side of TSP (RFC 9), the port of `titanic.c`.
//!
//! Titanic is an MDP worker for three services and an MDP client of the real
//! ones, all against the broker at `tcp://localhost:5555`:
//! * `titanic.request` `[service][body…]`: stores the request, answers
//!   `[200][UUID]`;
//! * `titanic.reply` `[UUID]`: `[200][reply…]` once the reply is stored,
//!   `[300]` while the request is pending, `[400]` if it is unknown;
//! * `titanic.close` `[UUID]`: forgets request and reply, `[200]`;
//! * the dispatcher (main thread) works through the pending requests: for
//!   each it asks the broker (`mmi.service`) whether the service has a
//!   worker, and if so calls it and stores the reply.
//!
//! Each service runs on its own thread as an [`Actor`] (the C's `zthread`);
//! the request service tells the dispatcher about new UUIDs over its pipe.
//! `-v` prints `I: processing request <UUID>` for every attempt.
//!
//! Run beside it: `mdbroker`, `ticlient`, and (any time later) `mdworker`.
//!
//! Differs from the C, on purpose:
//! * **No self-calls.** A request for a `titanic.*` or `mmi.*` service is
//!   refused with `400` (the TSP code for "bad request, do not retry"). The
//!   C stored it and called itself: `titanic.request` stored the body as a
//!   new request, one frame shorter, and called itself again, so 120 KB in
//!   became 16,000 files and 738 MB in 76 s.
//! * **Bounded store** (see [`zguide::mdp::titanic`] for the numbers): at
//!   most 1000 requests, 16 MiB of requests and 16 MiB of replies, 1 MiB per
//!   message, 255-byte service names. A request past a quota is answered
//!   `500` (server busy, try later) and not stored; one too large, or with no
//!   service or no body, `400`. A reply that does not fit marks its request
//!   failed, and `titanic.reply` answers `500` for it: once `200` was said,
//!   the request is answered, never silently dropped. Requests nobody closed
//!   are forgotten an hour after their last change (checked every minute),
//!   the queue file is compacted, and leftovers of a crash (`*.tmp-*` files
//!   and the like) are removed at start.
//! * **No head-of-line blocking.** The C called one service at a time and
//!   waited up to 1 s for each, so every request for a silent worker cost
//!   every other request a second per pass (60 of them took a legitimate
//!   request from 0.5 s to 119 s). Here each call is asynchronous, on its
//!   own DEALER socket with a deadline of [`CALL_TIMEOUT`]: at most
//!   [`MAX_CALLS`] at a time, one per service, services that waited longest
//!   first. A service whose call timed out or that had no worker is tried
//!   again [`RETRY_DELAY`] later (the C's one-second pass). A service that
//!   never answers thus costs one call slot, not everybody's time.
//! * UUIDs from the wire are validated (32 hex digits) before they are used
//!   in a path; anything else is answered `400`. A storage failure is `500`.
//! * Writes are crash-safe and the request service appends to the queue,
//!   durably, **before** it answers `200` (in the C the main thread appends
//!   later, so a crash in between lost an accepted request). After a
//!   restart the queue is worked through again.
//! * Refusals are logged at most once a second (with a count), so a flood
//!   of bad requests cannot flood the log.
//!
//! **Idempotency.** A request can still be executed more than once: if
//! Titanic dies after the service answered but before the reply is stored,
//! or the service takes longer than [`CALL_TIMEOUT`], the request is sent
//! again later. The client still reads exactly one stored reply. Like the
//! book, Titanic assumes services are idempotent.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use zguide::actor::{Actor, Pipe};
use zguide::mdp::protocol;
use zguide::mdp::titanic::{is_reserved_service, Pending, Store, StoreError, Uuid, DIR};
use zguide::mdp::Worker;
use zguide::message::show;
use zguide::{interrupt, program, socket, Error, Message};

const BROKER: &str = "tcp://localhost:5555";
/// How long the dispatcher waits for one answer from the broker (the MMI
/// lookup, then the service's reply): mdcliapi's default timeout.
const CALL_TIMEOUT: Duration = Duration::from_millis(2500);
/// Calls in flight at once (one socket each).
const MAX_CALLS: usize = 32;
/// Before a service that had no worker, or did not answer, is tried again.
const RETRY_DELAY: Duration = Duration::from_millis(1000);
/// How often the store looks for expired requests.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// One TSP answer: a status code, then optional frames.
fn status(code: &str, rest: Message) -> Message {
    let mut reply = rest;
    reply.push(code);
    reply
}

// .split Titanic request service
// Checks and stores each request, tells the dispatcher, answers 200.

fn titanic_request(pipe: &Pipe, store: Store) -> Result<(), Error> {
    let mut worker = Worker::new(BROKER, "titanic.request", false)?;
    pipe.signal(0)?;
    let mut refusals = LogLimit::default();
    let mut reply = None;
    loop {
        let request = worker.recv(reply.take())?;
        reply = Some(accept_request(&store, request, pipe, &mut refusals));
    }
}

fn accept_request(store: &Store, request: Message, pipe: &Pipe, log: &mut LogLimit) -> Message {
    let service = request.first().unwrap_or_default();
    let refusal = if request.len() < 2 || service.is_empty() {
        Some("needs a service and a body")
    } else if service.len() > store.limits().max_service_name {
        Some("service name too long")
    } else if is_reserved_service(service) {
        // Differs from the C: see the file docs (no self-calls).
        Some("reserved service (titanic.* and mmi.* are not callable)")
    } else {
        None
    };
    if let Some(why) = refusal {
        log.warn(|| format!("titanic.request: refused, {why}: {}", request.summary()));
        return status("400", Message::new());
    }
    match store.store_request(&request) {
        Ok(uuid) => {
            // Wake the dispatcher; the queue on disk is what counts.
            // (Never blocks: a dropped wake-up only delays it to the next
            // one-second pass.)
            let _ = Message::from_frames([uuid.as_str()]).send_or_drop(pipe.socket());
            status("200", Message::from_frames([uuid.as_str()]))
        }
        Err(StoreError::Full(quota)) => {
            log.warn(|| format!("titanic.request: refused, {quota}"));
            status("500", Message::new())
        }
        Err(e @ StoreError::TooLarge(_)) => {
            log.warn(|| format!("titanic.request: refused, {e}"));
            status("400", Message::new())
        }
        Err(StoreError::Io(e)) => {
            log::error!("titanic.request: cannot store a request: {e}");
            status("500", Message::new())
        }
    }
}

// .split Titanic reply service
// 200 and the reply if we have it, 300 while pending, 400 if unknown, 500
// if it failed for good.

fn titanic_reply(pipe: &Pipe, store: Store) -> Result<(), Error> {
    let mut worker = Worker::new(BROKER, "titanic.reply", false)?;
    pipe.signal(0)?;
    let mut reply = None;
    loop {
        let mut request = worker.recv(reply.take())?;
        let uuid = request.pop().and_then(|frame| Uuid::parse(&frame));
        reply = Some(match uuid {
            None => status("400", Message::new()),
            Some(uuid) => match store.load_reply(&uuid) {
                Ok(Some(stored)) => status("200", stored),
                Ok(None) if store.has_failed(&uuid) => status("500", Message::new()),
                Ok(None) if store.has_request(&uuid) => status("300", Message::new()),
                Ok(None) => status("400", Message::new()),
                Err(e) => {
                    log::error!("titanic.reply: cannot read reply {uuid}: {e}");
                    status("500", Message::new())
                }
            },
        });
    }
}

// .split Titanic close service
// Removes any stored request and reply; idempotent.

fn titanic_close(pipe: &Pipe, store: Store) -> Result<(), Error> {
    let mut worker = Worker::new(BROKER, "titanic.close", false)?;
    pipe.signal(0)?;
    let mut reply = None;
    loop {
        let mut request = worker.recv(reply.take())?;
        let uuid = request.pop().and_then(|frame| Uuid::parse(&frame));
        reply = Some(match uuid {
            None => status("400", Message::new()),
            Some(uuid) => match store.close(&uuid) {
                Ok(()) => status("200", Message::new()),
                Err(e) => {
                    log::error!("titanic.close: cannot delete {uuid}: {e}");
                    status("500", Message::new())
                }
            },
        });
    }
}

/// Runs a service loop as an actor; it ends on Ctrl-C.
fn start(
    context: &zmq::Context,
    store: &Store,
    service: fn(&Pipe, Store) -> Result<(), Error>,
) -> Result<Actor, Error> {
    let store = store.clone();
    Actor::new(context, move |pipe| {
        if let Err(e) = program::interrupted_is_ok(service(pipe, store)) {
            log::error!("titanic service stopped: {e}");
        }
    })
}

// .split main task: the dispatcher
// Starts the three services, then dispatches pending requests whenever a
// call finishes, a new request arrives, or at least once a second.

fn main() -> ExitCode {
    program::run(|| {
        let verbose = std::env::args().nth(1).as_deref() == Some("-v");
        let store =
            Store::open(DIR).map_err(|e| Error::Protocol(format!("cannot open {DIR}: {e}")))?;
        let context = zmq::Context::new();
        let request_pipe = start(&context, &store, titanic_request)?;
        let _reply = start(&context, &store, titanic_reply)?;
        let _close = start(&context, &store, titanic_close)?;

        let mut dispatcher = Dispatcher::new(&context, store, verbose);
        let mut next_expiry = Instant::now() + EXPIRY_CHECK;
        loop {
            dispatcher.start_calls()?;
            let timeout = dispatcher
                .next_deadline()
                .map_or(1000, interrupt::millis_until);
            let ready = {
                let mut sockets = vec![request_pipe.socket()];
                sockets.extend(dispatcher.calls.iter().map(|call| &call.socket));
                interrupt::poll(&sockets, timeout.min(1000))?
            };
            if ready[0] {
                // Drain the wake-ups; the store already has the new UUIDs.
                while Message::try_recv(request_pipe.socket())?.is_some() {}
            }
            dispatcher.handle_replies(&ready[1..])?;
            dispatcher.expire_calls();
            if Instant::now() >= next_expiry {
                if let Err(e) = dispatcher.store.expire(SystemTime::now()) {
                    log::error!("titanic: cannot expire old requests: {e}");
                }
                next_expiry = Instant::now() + EXPIRY_CHECK;
            }
        }
    })
}

/// The dispatcher's state: the calls in flight, the sockets of finished
/// calls kept for reuse, and per service when it may be tried again.
struct Dispatcher {
    context: zmq::Context,
    store: Store,
    verbose: bool,
    calls: Vec<Call>,
    idle: Vec<zmq::Socket>,
    services: HashMap<Vec<u8>, ServiceState>,
}

/// One request being dispatched: first the MMI lookup, then the call.
struct Call {
    uuid: Uuid,
    service: Vec<u8>,
    socket: zmq::Socket,
    stage: Stage,
    deadline: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Asked the broker `mmi.service`; waiting for `200` or `404`.
    Lookup,
    /// Sent the request to the service; waiting for its reply.
    Request,
}

#[derive(Default)]
struct ServiceState {
    busy: bool,
    not_before: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl Dispatcher {
    fn new(context: &zmq::Context, store: Store, verbose: bool) -> Dispatcher {
        Dispatcher {
            context: context.clone(),
            store,
            verbose,
            calls: Vec::new(),
            idle: Vec::new(),
            services: HashMap::new(),
        }
    }

    /// Starts calls for pending requests while slots are free: one per
    /// service, the services tried least recently first, each service's
    /// oldest request first.
    fn start_calls(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let pending = self.store.pending();
        // Forget services nobody waits for (bounded by the store's quota).
        let waiting: HashSet<&[u8]> = pending.iter().map(|p| &p.service[..]).collect();
        self.services
            .retain(|name, state| state.busy || waiting.contains(&name[..]));
        let mut chosen: HashSet<&[u8]> = HashSet::new();
        let mut candidates: Vec<&Pending> = Vec::new();
        for entry in &pending {
            let state = self.services.entry(entry.service.clone()).or_default();
            let ready = !state.busy && state.not_before.is_none_or(|t| t <= now);
            if ready && chosen.insert(&entry.service) {
                candidates.push(entry);
            }
        }
        candidates.sort_by_key(|c| self.services[&c.service].last_attempt);
        for entry in candidates {
            if self.calls.len() >= MAX_CALLS {
                break;
            }
            self.start_call(entry, now)?;
        }
        Ok(())
    }

    /// Asks the broker whether `entry`'s service has a worker.
    fn start_call(&mut self, entry: &Pending, now: Instant) -> Result<(), Error> {
        if self.verbose {
            println!("I: processing request {}", entry.uuid);
        }
        if is_reserved_service(&entry.service) || !self.store.has_request(&entry.uuid) {
            // Closed meanwhile, or stored by an older Titanic that did not
            // refuse self-calls: never call those.
            return self.finish_failed(&entry.uuid);
        }
        let socket = match self.idle.pop() {
            Some(socket) => socket,
            None => socket::new(&self.context, zmq::DEALER)
                .linger(0)
                .identity(Uuid::generate().as_str())
                .connect(BROKER)?,
        };
        let lookup =
            Message::from_frames([&b""[..], protocol::CLIENT, b"mmi.service", &entry.service]);
        let sent = lookup.send_or_drop(&socket)?;
        let state = self.services.entry(entry.service.clone()).or_default();
        state.last_attempt = Some(now);
        if !sent {
            // The socket's queue is full (no broker for a long while).
            state.not_before = Some(now + RETRY_DELAY);
            return Ok(());
        }
        state.busy = true;
        self.calls.push(Call {
            uuid: entry.uuid.clone(),
            service: entry.service.clone(),
            socket,
            stage: Stage::Lookup,
            deadline: now + CALL_TIMEOUT,
        });
        Ok(())
    }

    /// When the dispatcher must look again: the earliest deadline of the
    /// calls in flight, or the end of a service's retry delay.
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let calls = self.calls.iter().map(|call| call.deadline);
        let retries = self.services.values().filter_map(|s| s.not_before);
        calls.chain(retries.filter(|t| *t > now)).min()
    }

    /// Reads the answers on the sockets that `ready` marks.
    fn handle_replies(&mut self, ready: &[bool]) -> Result<(), Error> {
        let mut index = 0;
        for &readable in ready {
            if !readable {
                index += 1;
                continue;
            }
            let reply = Message::recv_now(&self.calls[index].socket)?;
            match self.on_reply(index, reply) {
                Ok(true) => {
                    let call = self.calls.remove(index);
                    self.end_call(call, true);
                }
                Ok(false) => index += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Handles one answer; `Ok(true)` when the call is over.
    fn on_reply(&mut self, index: usize, reply: Message) -> Result<bool, Error> {
        let call = &mut self.calls[index];
        let body = match parse_client_reply(reply, &call.service, call.stage) {
            Ok(body) => body,
            Err(e) => {
                log::warn!("titanic: dropping a bad answer from the broker: {e}");
                return Ok(false); // the deadline ends the call
            }
        };
        match call.stage {
            Stage::Lookup if body.first() == Some(&b"200"[..]) => {
                let request = match self.store.load_request(&call.uuid) {
                    Ok(Some(request)) => request,
                    Ok(None) => {
                        return self
                            .store
                            .mark_done(&call.uuid)
                            .map(|()| true)
                            .or_else(log_io)
                    }
                    Err(e) => {
                        log::error!("titanic: request {} is unreadable: {e}", call.uuid);
                        let uuid = call.uuid.clone();
                        self.finish_failed(&uuid)?;
                        return Ok(true);
                    }
                };
                let mut request = request;
                request.pop(); // the service, sent as the header
                request.push(call.service.clone());
                request.push(protocol::CLIENT);
                request.push(Vec::new());
                if !request.send_or_drop(&call.socket)? {
                    return Ok(false); // the deadline ends the call
                }
                call.stage = Stage::Request;
                call.deadline = Instant::now() + CALL_TIMEOUT;
                Ok(false)
            }
            Stage::Lookup => {
                // No worker (404): try again after the retry delay.
                self.retry_later(index);
                Ok(true)
            }
            Stage::Request => {
                let uuid = call.uuid.clone();
                match self.store.save_reply(&uuid, &body) {
                    Ok(()) => {}
                    Err(StoreError::Io(e)) => {
                        log::error!("titanic: cannot store reply {uuid}: {e}");
                        self.retry_later(index);
                    }
                    Err(refusal) => {
                        log::warn!("titanic: reply {uuid} not stored ({refusal}): request failed");
                        self.finish_failed(&uuid)?;
                    }
                }
                Ok(true)
            }
        }
    }

    /// Ends calls whose deadline passed: the socket is closed (a late answer
    /// must not reach the next call), the service tried again later.
    fn expire_calls(&mut self) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.calls.len() {
            if self.calls[index].deadline <= now {
                self.retry_later(index);
                let call = self.calls.remove(index);
                self.end_call(call, false);
            } else {
                index += 1;
            }
        }
    }

    fn retry_later(&mut self, index: usize) {
        let service = &self.calls[index].service;
        if let Some(state) = self.services.get_mut(service) {
            state.not_before = Some(Instant::now() + RETRY_DELAY);
        }
    }

    /// Frees the service; keeps the socket for the next call if its
    /// exchange is complete.
    fn end_call(&mut self, call: Call, reusable: bool) {
        if let Some(state) = self.services.get_mut(&call.service) {
            state.busy = false;
        }
        if reusable && self.idle.len() < MAX_CALLS {
            self.idle.push(call.socket);
        }
    }

    /// Marks a request that can never be answered (`titanic.reply`: 500).
    fn finish_failed(&mut self, uuid: &Uuid) -> Result<(), Error> {
        self.store.fail(uuid).or_else(log_io)
    }
}

/// Storage errors while dispatching are logged; the request is retried.
fn log_io<T: Default>(e: std::io::Error) -> Result<T, Error> {
    log::error!("titanic: cannot update the store: {e}");
    Ok(T::default())
}

/// `[""]["MDPC01"][service][body…]` → body, checking the header and that
/// the answer is for the service asked (`mmi.service` for a lookup).
fn parse_client_reply(mut reply: Message, service: &[u8], stage: Stage) -> Result<Message, Error> {
    let expected: &[u8] = match stage {
        Stage::Lookup => b"mmi.service",
        Stage::Request => service,
    };
    let empty = reply.pop();
    let header = reply.pop();
    let from = reply.pop();
    if empty.as_deref() != Some(b"") || header.as_deref() != Some(protocol::CLIENT) {
        return Err(Error::Protocol(format!(
            "not an MDP client reply: {}",
            reply.summary()
        )));
    }
    if from.as_deref() != Some(expected) {
        return Err(Error::Protocol(format!(
            "answer from {} instead of {}",
            show(&from.unwrap_or_default()),
            show(expected)
        )));
    }
    Ok(reply)
}

/// Logs a warning at most once a second; the ones in between are counted
/// and reported with the next one.
#[derive(Default)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    fn warn(&mut self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now < last + Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!("{} ({} similar since)", line(), self.suppressed);
        } else {
            log::warn!("{}", line());
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}
