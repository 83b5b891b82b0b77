//! Majordomo Protocol broker (§27 "Service-Oriented Reliable Queuing", with
//! MMI from §29): a minimal implementation of MDP/0.1 (RFC 7) and MMI (RFC 8),
//! the port of `mdbroker.c`.
//!
//! One ROUTER socket bound to `tcp://*:5555` talks to clients (`MDPC01`) and
//! workers (`MDPW01`). Each service has a queue of requests and a queue of
//! waiting workers; whenever both are non-empty a request goes to the
//! longest-waiting worker. Every 2.5 s the broker deletes workers it has not
//! heard from for 7.5 s and sends a HEARTBEAT to the others.
//! `mmi.*` services are answered here: `mmi.service` says `200` if the named
//! service has a worker, else `404`; any other `mmi.*` gives `501`.
//!
//! Run beside it: `mdworker` (any number), then `mdclient`, `mdclient2`,
//! `mmiecho`, or `titanic` + `ticlient`. `-v` prints every message (each frame
//! cut to 32 bytes, escaped, as czmq's `zmsg_dump` does).
//!
//! # Bounds, and what happens past each
//!
//! The C broker keeps whatever its peers send for as long as they like. This
//! one holds every queue to a stated bound (the sizes count a request's bytes
//! plus [`FRAME_COST`] per frame and [`REQUEST_COST`] for itself, about what
//! it really occupies):
//!
//! | what | bound | past it |
//! |---|---|---|
//! | one inbound frame (`ZMQ_MAXMSGSIZE`) | 4 MiB ([`MAX_FRAME`]) | libzmq drops that peer's connection before allocating the frame |
//! | service name | 255 bytes ([`MAX_NAME`]) | request dropped; READY answered with DISCONNECT |
//! | services | 10,000 ([`MAX_SERVICES`]) | request for a new service dropped; READY for one gets DISCONNECT |
//! | workers | 10,000 ([`MAX_WORKERS`]) | READY gets DISCONNECT |
//! | queued requests of one client, all services | 32 MiB ([`CLIENT_MAX_BYTES`]; 100,000 `mdclient2` requests take 18 MiB) | new request dropped |
//! | queued requests of one service, all clients | 64 MiB ([`SERVICE_MAX_BYTES`]) | new request dropped |
//! | queued requests, all services | 96 MiB ([`TOTAL_MAX_BYTES`]) | new request dropped |
//! | time a request waits for a worker | 10 s if the service has no worker, else 60 s ([`REQUEST_EXPIRY`]) | request dropped |
//! | time a worker holds one request | 60 s ([`BUSY_EXPIRY`]) | worker forgotten, told DISCONNECT |
//! | replies to a client that does not read | libzmq's 1000 messages (send HWM) | reply dropped |
//!
//! A dropped request is never answered (MDP has no error reply): the client
//! times out and retries, as it does after any failure. Requests are kept per
//! client and each service serves its clients **in turn**, oldest request
//! first within a client, so one client's flood delays every other client by
//! at most one request per turn. Every send is non-blocking and the socket is
//! `ROUTER_MANDATORY`, so the broker learns at once when a peer is gone: a
//! worker whose HEARTBEAT or REQUEST cannot be routed is deleted (busy workers
//! are heartbeated too, so a worker killed mid-request is gone within one
//! heartbeat interval and MMI says `404`), and a client whose reply cannot be
//! routed has its other queued requests dropped. Faults caused by peers are
//! logged with [`show`]/`summary` (bounded, escaped) and at most
//! [`LOG_BURST`] lines per heartbeat interval; the rest are counted in one
//! line. libzmq itself buffers up to 1000 messages per peer (receive HWM)
//! that the broker has not read yet; it reads them as fast as it can.
//!
//! Where it differs from the C, on purpose (bugs fixed):
//! * all the bounds above, request expiry, busy-worker expiry, and heartbeats
//!   to busy workers (RFC 7 heartbeats both ways; the C only idle workers).
//! * requests are served per client in turn (see above); the C serves one
//!   FIFO per service, so a flood starved every other client. With one client
//!   the order is the C's.
//! * purge looks at **every** worker. The C stops at the first live one,
//!   assuming the list is ordered by expiry, but heartbeats refresh the
//!   expiry without reordering, so dead workers behind a live one were never
//!   purged (zguide #579, PR #170). Dispatch also skips an expired worker.
//! * the reserved-name check on READY looks at the service frame; the C
//!   compared the *sender identity* with `mmi.`.
//! * `mmi.*` requests and `mmi.service` lookups never create services, and a
//!   service without workers is removed once its queue is empty.
//! * a malformed message (short, wrong header, unknown command, wrong frame
//!   count) is logged and dropped instead of hitting an `assert`; a worker
//!   that sends one, or a REQUEST, or a REPLY while it has no request, gets
//!   DISCONNECT as RFC 7 requires (the C only logged unknown commands).
//! * identities and names are logged through [`show`] (the C hex-dumps them
//!   whole); the heartbeat interval is 2.5 s as in the C code (its comment
//!   says 5 s).

use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use zguide::heartbeat::expiry_after;
use zguide::log_limit::Window;
use zguide::mdp;
use zguide::mdp::protocol::{self, clock_log, Command, WorkerCommand};
use zguide::message::show;
use zguide::{interrupt, program, socket, Error, Message};

const HEARTBEAT_LIVENESS: u32 = protocol::HEARTBEAT_LIVENESS; //  3-5 is reasonable
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(protocol::HEARTBEAT_INTERVAL_MS);

/// `ZMQ_MAXMSGSIZE`: the largest frame a peer may send, the same bound the
/// MDP client and worker APIs accept (see [`mdp::MAX_FRAME`]).
const MAX_FRAME: i64 = mdp::MAX_FRAME;
/// The longest service name: room for any sensible name (a DNS name is at
/// most 253), while 20 workers can no longer park 32 MiB names here.
const MAX_NAME: usize = 255;
/// Services (with workers or queued requests) the broker keeps at once.
const MAX_SERVICES: usize = 10_000;
/// Registered workers the broker keeps at once.
const MAX_WORKERS: usize = 10_000;
/// What one queued request counts against the bounds, besides its bytes:
/// per frame and per request, roughly what the `Vec`s and queues around
/// them occupy.
const FRAME_COST: usize = 48;
const REQUEST_COST: usize = 64;
/// Queued bytes per client: `mdclient2` pipelines 100,000 requests, about
/// 18 MiB by the count above, so the book's own demo is never cut short.
const CLIENT_MAX_BYTES: usize = 32 << 20;
/// Queued bytes per service, all clients together.
const SERVICE_MAX_BYTES: usize = 64 << 20;
/// Queued bytes in the whole broker.
const TOTAL_MAX_BYTES: usize = 96 << 20;
/// Requests for a service with no worker are dropped after this long: every
/// client of the book has given up by then (3 × 2.5 s).
const NO_WORKER_EXPIRY: Duration = Duration::from_secs(10);
/// Any request still queued after this long is dropped: its client has
/// given up (`mdcliapi` after 7.5 s) or is gone, while `mdclient2`'s 100,000
/// requests drain through one worker in about 25 s.
const REQUEST_EXPIRY: Duration = Duration::from_secs(60);
/// A worker that holds one request this long without a reply is forgotten
/// (and told DISCONNECT, so a live one registers again).
const BUSY_EXPIRY: Duration = Duration::from_secs(60);
/// Messages handled per poll: draining the socket without a poll per message
/// keeps the hot path short, the limit keeps heartbeats on time under load.
const BATCH: usize = 1000;
/// Peer faults logged per heartbeat interval; the rest are only counted.
const LOG_BURST: usize = 20;

fn heartbeat_expiry(now: Instant) -> Instant {
    expiry_after(now, HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS)
}

// .split broker, service and worker structures
// The broker has one socket for everybody, the known services and the known
// workers. Workers are keyed by their routing identity (bytes, not hex: the
// C keys by `zframe_strhex` only because zhash needs string keys). It also
// counts what each client has queued, to hold every client to its bound.

struct Broker {
    socket: zmq::Socket,
    verbose: bool,
    services: HashMap<Vec<u8>, Service>,
    workers: HashMap<Vec<u8>, Worker>,
    /// Queued bytes per client, for clients with queued requests.
    clients: HashMap<Vec<u8>, usize>,
    /// Queued bytes in all services.
    queued_bytes: usize,
    heartbeat_at: Instant,
    faults: FaultLog,
}

/// A service: its queued requests, per client, and its waiting workers.
struct Service {
    /// Each client's requests, oldest first.
    queues: HashMap<Vec<u8>, VecDeque<Request>>,
    /// The clients with queued requests, whose turn is next first.
    turns: VecDeque<Vec<u8>>,
    /// Queued bytes, all clients.
    bytes: usize,
    /// Waiting workers, longest-waiting first.
    waiting: VecDeque<Vec<u8>>,
    /// Registered workers, waiting or busy.
    workers: usize,
}

/// A queued request `[client][""][body…]`, when it arrived and what it costs.
struct Request {
    envelope: Message,
    queued_at: Instant,
    cost: usize,
}

/// A worker that said READY: its service, whether it waits for work, and
/// when it expires (silent while waiting, or holding a request too long).
struct Worker {
    /// An `Rc` so that the clone on every reply costs no allocation.
    service: Rc<[u8]>,
    waiting: bool,
    expiry: Instant,
}

/// What became of a message the broker sent.
#[derive(PartialEq, Eq)]
enum Sent {
    Queued,
    /// The peer does not read: its pipe is full. The message is dropped.
    Full,
    /// No peer has this identity any more. The message is dropped.
    Gone,
}

fn main() -> ExitCode {
    program::run(|| {
        let verbose = std::env::args().nth(1).as_deref() == Some("-v");
        let context = zmq::Context::new();
        let mut broker = Broker::new(&context, verbose)?;
        broker.bind("tcp://*:5555")?;
        let result = broker.run();
        if let Err(Error::Interrupted) = result {
            println!("W: interrupt received, shutting down...");
        }
        result
    })
}

// .split broker constructor, bind and main loop

impl Broker {
    fn new(context: &zmq::Context, verbose: bool) -> Result<Broker, Error> {
        let socket = socket::new(context, zmq::ROUTER)
            .max_message_size(MAX_FRAME)
            .router_mandatory()
            .build()?;
        Ok(Broker {
            socket,
            verbose,
            services: HashMap::new(),
            workers: HashMap::new(),
            clients: HashMap::new(),
            queued_bytes: 0,
            heartbeat_at: Instant::now() + HEARTBEAT_INTERVAL,
            faults: FaultLog::default(),
        })
    }

    /// Binds to `endpoint`; MDP uses one socket for clients and workers.
    fn bind(&mut self, endpoint: &str) -> Result<(), Error> {
        self.socket
            .bind(endpoint)
            .map_err(|source| Error::Endpoint {
                action: "bind",
                endpoint: endpoint.to_string(),
                source,
            })?;
        clock_log(&format!("I: MDP broker/0.2.0 is active at {endpoint}"));
        Ok(())
    }

    /// Processes messages until Ctrl-C; purges, expires and heartbeats on
    /// time.
    fn run(&mut self) -> Result<(), Error> {
        loop {
            let wait = self.heartbeat_at.saturating_duration_since(Instant::now());
            let readable = interrupt::poll(&[&self.socket], interrupt::millis(wait))?[0];
            if readable {
                for _ in 0..BATCH {
                    match Message::try_recv(&self.socket)? {
                        Some(msg) => self.handle(msg),
                        None => break,
                    }
                }
            }
            let now = Instant::now();
            if now >= self.heartbeat_at {
                self.purge(now);
                self.expire_requests(now);
                self.heartbeat_workers();
                self.faults.flush();
                self.heartbeat_at = now + HEARTBEAT_INTERVAL;
            }
        }
    }

    /// `[sender][""][header]…`: route to the client or the worker path.
    fn handle(&mut self, mut msg: Message) {
        if self.verbose {
            clock_log("I: received message:");
            print!("{}", msg.dump_short());
        }
        if msg.len() < 3 || msg.get(1).is_some_and(|f| !f.is_empty()) {
            self.faults
                .error(|| format!("invalid message: {}", msg.summary()));
            return;
        }
        let (Some(sender), Some(_empty), Some(header)) = (msg.pop(), msg.pop(), msg.pop()) else {
            return;
        };
        if header == protocol::CLIENT {
            self.client_msg(sender, msg);
        } else if header == protocol::WORKER {
            self.worker_msg(sender, msg);
        } else {
            msg.push(header);
            self.faults
                .error(|| format!("invalid message (unknown header): {}", msg.summary()));
        }
    }

    // .split worker messages
    // READY, REPLY, HEARTBEAT or DISCONNECT from a worker. Unlike the C, a
    // worker record exists only after a valid READY, so an unknown worker's
    // message never creates one.

    fn worker_msg(&mut self, sender: Vec<u8>, msg: Message) {
        let known = self.workers.get(&sender).map(|w| w.waiting);
        let command = match protocol::parse_worker_command(msg) {
            Ok(command) => command,
            Err(e) => {
                self.faults
                    .error(|| format!("invalid message from worker {}: {e}", show(&sender)));
                return self.delete_worker(&sender, true);
            }
        };
        match command {
            WorkerCommand::Ready { service } => {
                let refusal = if known.is_some() {
                    Some("second READY")
                } else if protocol::is_mmi(&service) {
                    // The C tested the sender identity here, not the service.
                    Some("READY for a reserved service")
                } else if service.len() > MAX_NAME {
                    Some("READY with a service name over 255 bytes")
                } else if self.workers.len() >= MAX_WORKERS {
                    Some("READY past the worker limit")
                } else if !self.services.contains_key(&service)
                    && self.services.len() >= MAX_SERVICES
                {
                    Some("READY for a new service past the service limit")
                } else {
                    None
                };
                match refusal {
                    Some(why) => {
                        self.faults.error(|| {
                            format!("{why} from worker {}: {}", show(&sender), show(&service))
                        });
                        self.delete_worker(&sender, true);
                    }
                    None => self.register_worker(sender, service),
                }
            }
            WorkerCommand::Reply { mut envelope } => {
                // Only a busy worker (one we sent a request to) may reply.
                if known == Some(false) {
                    let Some(client) = envelope.unwrap_envelope() else {
                        return;
                    };
                    if let Some(worker) = self.workers.get(&sender) {
                        let service = worker.service.clone();
                        let head = [&client[..], b"", protocol::CLIENT, &service[..]];
                        self.reply_to_client(&client, &head, envelope);
                        self.worker_waiting(sender);
                    }
                } else {
                    self.faults.error(|| {
                        format!("REPLY from a worker without a request: {}", show(&sender))
                    });
                    self.delete_worker(&sender, true);
                }
            }
            WorkerCommand::Heartbeat => match self.workers.get_mut(&sender) {
                // A busy worker keeps its request deadline.
                Some(worker) if worker.waiting => worker.expiry = heartbeat_expiry(Instant::now()),
                Some(_) => {}
                None => self.delete_worker(&sender, true),
            },
            WorkerCommand::Disconnect => self.delete_worker(&sender, false),
            WorkerCommand::Request { .. } => {
                self.faults.error(|| {
                    format!(
                        "REQUEST from worker {}: not a worker command",
                        show(&sender)
                    )
                });
                self.delete_worker(&sender, true);
            }
        }
    }

    // .split client messages
    // A request `[service][body…]` from a client. MMI requests are answered
    // right here; anything else is queued on its service, within the bounds,
    // and dispatched.

    fn client_msg(&mut self, sender: Vec<u8>, mut msg: Message) {
        if msg.len() < 2 {
            self.faults
                .error(|| format!("invalid client request: {}", msg.summary()));
            return;
        }
        let Some(service_name) = msg.pop() else {
            return;
        };
        if protocol::is_mmi(&service_name) {
            return self.mmi_reply(sender, service_name, msg);
        }
        // Set reply return identity to client sender
        msg.wrap_envelope(sender.clone());
        let cost = REQUEST_COST + msg.content_size() + msg.len() * FRAME_COST;
        if let Some(why) = self.refuse_request(&sender, &service_name, cost) {
            self.faults.warn(|| {
                format!(
                    "dropped a request from client {} for service {}: {why}",
                    show(&sender),
                    show(&service_name)
                )
            });
            return;
        }
        let request = Request {
            envelope: msg,
            queued_at: Instant::now(),
            cost,
        };
        *self.clients.entry(sender.clone()).or_default() += cost;
        self.queued_bytes += cost;
        let verbose = self.verbose;
        let service = self
            .services
            .entry(service_name.clone())
            .or_insert_with_key(|name| {
                if verbose {
                    clock_log(&format!("I: added service: {}", show(name)));
                }
                Service::new()
            });
        service.enqueue(sender, request);
        self.dispatch(&service_name);
    }

    /// Why a new request may not be queued, if it may not (see the bounds).
    fn refuse_request(
        &self,
        client: &[u8],
        service_name: &[u8],
        cost: usize,
    ) -> Option<&'static str> {
        let service = self.services.get(service_name);
        if service_name.len() > MAX_NAME {
            Some("service name over 255 bytes")
        } else if service.is_none() && self.services.len() >= MAX_SERVICES {
            Some("too many services")
        } else if self.clients.get(client).copied().unwrap_or(0) + cost > CLIENT_MAX_BYTES {
            Some("the client's queue is full")
        } else if service.map_or(0, |s| s.bytes) + cost > SERVICE_MAX_BYTES {
            Some("the service's queue is full")
        } else if self.queued_bytes + cost > TOTAL_MAX_BYTES {
            Some("the broker's queues are full")
        } else {
            None
        }
    }

    /// MMI (RFC 8): the last body frame becomes the answer code.
    fn mmi_reply(&mut self, client: Vec<u8>, service_name: Vec<u8>, mut body: Message) {
        let code: &[u8] = if service_name == b"mmi.service" {
            let wanted = body.last().unwrap_or_default();
            match self.services.get(wanted) {
                Some(service) if service.workers > 0 => b"200",
                _ => b"404",
            }
        } else {
            b"501"
        };
        body.set_last(code);
        let head = [&client[..], b"", protocol::CLIENT, &service_name];
        self.reply_to_client(&client, &head, body);
    }

    /// Sends a reply; if the client is gone, drops its other requests too:
    /// nobody would read their replies.
    fn reply_to_client(&mut self, client: &[u8], head: &[&[u8]], body: Message) {
        match self.send(head, &body) {
            Sent::Queued => {}
            Sent::Full => self.faults.warn(|| {
                format!(
                    "dropped a reply to client {}: it does not read",
                    show(client)
                )
            }),
            Sent::Gone => self.forget_client(client),
        }
    }

    /// Drops every queued request of a client that has gone.
    fn forget_client(&mut self, client: &[u8]) {
        if self.clients.remove(client).is_none() {
            return;
        }
        let mut dropped = 0;
        for service in self.services.values_mut() {
            for request in service.remove_client(client) {
                self.queued_bytes -= request.cost;
                dropped += 1;
            }
        }
        self.services.retain(|_, s| s.workers > 0 || !s.is_idle());
        self.faults.warn(|| {
            format!(
                "client {} is gone: dropped its {dropped} queued request(s)",
                show(client)
            )
        });
    }

    // .split purge, request expiry and heartbeats

    /// Deletes every worker whose expiry has passed: waiting ones that went
    /// silent, busy ones that held a request too long. The C stops at the
    /// first live worker; see the file docs for why that is wrong.
    fn purge(&mut self, now: Instant) {
        let expired: Vec<(Vec<u8>, bool)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.expiry <= now)
            .map(|(id, w)| (id.clone(), w.waiting))
            .collect();
        for (identity, waiting) in expired {
            if self.verbose {
                clock_log(&format!("I: deleting expired worker: {}", show(&identity)));
            }
            // A busy one may still be alive: tell it to register again.
            self.delete_worker(&identity, !waiting);
        }
    }

    /// Drops requests that waited too long, and services nobody uses.
    fn expire_requests(&mut self, now: Instant) {
        let mut dropped = 0;
        for service in self.services.values_mut() {
            let expiry = if service.workers == 0 {
                NO_WORKER_EXPIRY
            } else {
                REQUEST_EXPIRY
            };
            for request in service.expire(now, expiry) {
                self.queued_bytes -= request.cost;
                if let Some(client) = request.envelope.first() {
                    release(&mut self.clients, client, request.cost);
                }
                dropped += 1;
            }
        }
        self.services.retain(|_, s| s.workers > 0 || !s.is_idle());
        if dropped > 0 {
            self.faults
                .warn(|| format!("dropped {dropped} request(s) that waited too long"));
        }
    }

    /// HEARTBEAT to every worker, waiting or busy; one we cannot route to
    /// any more has gone (killed, or its connection broke) and is deleted.
    fn heartbeat_workers(&mut self) {
        let identities: Vec<Vec<u8>> = self.workers.keys().cloned().collect();
        for identity in identities {
            if self.send_to_worker(&identity, Command::Heartbeat, &Message::new()) == Sent::Gone {
                if self.verbose {
                    clock_log(&format!(
                        "I: deleting disconnected worker: {}",
                        show(&identity)
                    ));
                }
                self.delete_worker(&identity, false);
            }
        }
    }

    // .split service dispatch
    // Sends queued requests to waiting workers, longest-waiting worker first,
    // while the service has both.

    fn dispatch(&mut self, service_name: &[u8]) {
        let now = Instant::now();
        loop {
            let Some(service) = self.services.get_mut(service_name) else {
                return;
            };
            if service.is_idle() {
                return;
            }
            let Some(identity) = service.waiting.pop_front() else {
                return;
            };
            let Some(worker) = self.workers.get_mut(&identity) else {
                continue;
            };
            if worker.expiry <= now {
                // Never hand a request to a worker that has gone silent.
                worker.waiting = false;
                if self.verbose {
                    clock_log(&format!("I: deleting expired worker: {}", show(&identity)));
                }
                self.delete_worker(&identity, false);
                continue;
            }
            let Some((client, request)) = service.next_request() else {
                service.waiting.push_front(identity);
                return;
            };
            worker.waiting = false;
            worker.expiry = now + BUSY_EXPIRY;
            if self.send_to_worker(&identity, Command::Request, &request.envelope) == Sent::Queued {
                self.queued_bytes -= request.cost;
                release(&mut self.clients, &client, request.cost);
            } else {
                // Gone or not reading: the request waits for another worker.
                if let Some(service) = self.services.get_mut(service_name) {
                    service.requeue(client, request);
                }
                self.delete_worker(&identity, false);
            }
        }
    }

    // .split worker methods

    /// A valid READY from a new worker: attach it to its service.
    fn register_worker(&mut self, identity: Vec<u8>, service_name: Vec<u8>) {
        if self.verbose {
            clock_log(&format!("I: registering new worker: {}", show(&identity)));
        }
        let verbose = self.verbose;
        let service = self
            .services
            .entry(service_name.clone())
            .or_insert_with_key(|name| {
                if verbose {
                    clock_log(&format!("I: added service: {}", show(name)));
                }
                Service::new()
            });
        service.workers += 1;
        self.workers.insert(
            identity.clone(),
            Worker {
                service: Rc::from(service_name),
                waiting: false,
                expiry: heartbeat_expiry(Instant::now()),
            },
        );
        self.worker_waiting(identity);
    }

    /// The worker is now waiting for work: queue it and dispatch.
    fn worker_waiting(&mut self, identity: Vec<u8>) {
        let Some(worker) = self.workers.get_mut(&identity) else {
            return;
        };
        worker.waiting = true;
        worker.expiry = heartbeat_expiry(Instant::now());
        let service_name = worker.service.clone();
        if let Some(service) = self.services.get_mut(&service_name[..]) {
            service.waiting.push_back(identity);
        }
        self.dispatch(&service_name);
    }

    /// Forgets a worker, optionally telling it with DISCONNECT. Unknown
    /// workers can be told too: that is how they learn to register again.
    fn delete_worker(&mut self, identity: &[u8], disconnect: bool) {
        if disconnect {
            self.send_to_worker(identity, Command::Disconnect, &Message::new());
        }
        let Some(worker) = self.workers.remove(identity) else {
            return;
        };
        if let Some(service) = self.services.get_mut(&worker.service[..]) {
            service.workers = service.workers.saturating_sub(1);
            if worker.waiting {
                service.waiting.retain(|w| w != identity);
            }
            if service.workers == 0 && service.is_idle() {
                self.services.remove(&worker.service[..]);
            }
        }
    }

    // .split sending
    // Frames go straight onto the socket from borrowed slices: building a
    // message first would copy every header for every request. No send ever
    // blocks: a peer that does not read, or has gone, loses the message.

    fn send_to_worker(&mut self, identity: &[u8], command: Command, body: &Message) -> Sent {
        if self.verbose {
            clock_log(&format!("I: sending {} to worker", command.name()));
            let mut shown = body.clone();
            shown.push(command.frame());
            shown.push(protocol::WORKER);
            shown.wrap_envelope(identity);
            print!("{}", shown.dump_short());
        }
        let head = [identity, b"", protocol::WORKER, command.frame()];
        let sent = self.send(&head, body);
        if sent == Sent::Full {
            self.faults.warn(|| {
                format!(
                    "dropped {} to worker {}: it does not read",
                    command.name(),
                    show(identity)
                )
            });
        }
        sent
    }

    /// Sends `head` then `body` as one message, never blocking. With
    /// `ROUTER_MANDATORY` an unknown identity (`EHOSTUNREACH`) or a full
    /// pipe (`EAGAIN`) fails on the first frame, so nothing half-sent is
    /// left behind.
    fn send(&self, head: &[&[u8]], body: &Message) -> Sent {
        let result = (|| -> Result<(), Error> {
            let last = head.len() + body.len() - 1;
            let frames = head.iter().copied().chain(body.iter());
            for (index, frame) in frames.enumerate() {
                let more = if index < last { zmq::SNDMORE } else { 0 };
                interrupt::retry_eintr(|| self.socket.send(frame, more | zmq::DONTWAIT))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Sent::Queued,
            Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => Sent::Gone,
            Err(Error::Zmq(zmq::Error::EAGAIN)) => Sent::Full,
            Err(e) => {
                log::error!("send failed: {e}");
                Sent::Full
            }
        }
    }
}

/// Takes `cost` off a client's queued bytes; forgets the client at zero.
fn release(clients: &mut HashMap<Vec<u8>, usize>, client: &[u8], cost: usize) {
    if let Some(bytes) = clients.get_mut(client) {
        *bytes = bytes.saturating_sub(cost);
        if *bytes == 0 {
            clients.remove(client);
        }
    }
}

// .split service queues
// Each client has its own FIFO queue; the clients take turns.

impl Service {
    fn new() -> Service {
        Service {
            queues: HashMap::new(),
            turns: VecDeque::new(),
            bytes: 0,
            waiting: VecDeque::new(),
            workers: 0,
        }
    }

    /// True when no request is queued.
    fn is_idle(&self) -> bool {
        self.turns.is_empty()
    }

    /// Queues a request at the back of its client's queue.
    fn enqueue(&mut self, client: Vec<u8>, request: Request) {
        self.bytes += request.cost;
        match self.queues.get_mut(&client) {
            Some(queue) => queue.push_back(request),
            None => {
                self.turns.push_back(client.clone());
                self.queues.insert(client, VecDeque::from([request]));
            }
        }
    }

    /// The oldest request of the client whose turn it is; that client's
    /// next turn comes after every other client's.
    fn next_request(&mut self) -> Option<(Vec<u8>, Request)> {
        let client = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&client)?;
        let request = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&client);
        } else {
            self.turns.push_back(client.clone());
        }
        self.bytes -= request.cost;
        Some((client, request))
    }

    /// Puts a request that could not be sent back where it came from: first
    /// in its client's queue, that client's turn first.
    fn requeue(&mut self, client: Vec<u8>, request: Request) {
        self.bytes += request.cost;
        match self.queues.get_mut(&client) {
            Some(queue) => {
                queue.push_front(request);
                self.turns.retain(|c| *c != client);
            }
            None => {
                self.queues
                    .insert(client.clone(), VecDeque::from([request]));
            }
        }
        self.turns.push_front(client);
    }

    /// Removes and returns a client's queued requests.
    fn remove_client(&mut self, client: &[u8]) -> VecDeque<Request> {
        let Some(queue) = self.queues.remove(client) else {
            return VecDeque::new();
        };
        self.turns.retain(|c| c != client);
        self.bytes -= queue.iter().map(|r| r.cost).sum::<usize>();
        queue
    }

    /// Removes and returns the requests queued longer than `expiry`.
    fn expire(&mut self, now: Instant, expiry: Duration) -> Vec<Request> {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue
                .front()
                .is_some_and(|r| now.duration_since(r.queued_at) >= expiry)
            {
                expired.extend(queue.pop_front());
            }
        }
        if !expired.is_empty() {
            self.queues.retain(|_, q| !q.is_empty());
            let queues = &self.queues;
            self.turns.retain(|c| queues.contains_key(c));
            self.bytes -= expired.iter().map(|r| r.cost).sum::<usize>();
        }
        expired
    }
}

// .split fault log
// Whatever peers do wrong is logged, but a flood of bad messages must not
// become a flood of log lines: at most LOG_BURST per heartbeat interval.

/// The broker's [`Window`]: [`LOG_BURST`] fault lines per heartbeat
/// interval; what it held back is reported once per interval by `flush`.
struct FaultLog(Window);

impl Default for FaultLog {
    fn default() -> FaultLog {
        FaultLog(Window::new(LOG_BURST as u32, HEARTBEAT_INTERVAL))
    }
}

impl FaultLog {
    fn error(&mut self, line: impl FnOnce() -> String) {
        self.log(log::Level::Error, line);
    }

    fn warn(&mut self, line: impl FnOnce() -> String) {
        self.log(log::Level::Warn, line);
    }

    /// Builds the line only if it will be logged.
    fn log(&mut self, level: log::Level, line: impl FnOnce() -> String) {
        if let Some(held_back) = self.0.allow(Instant::now()) {
            FaultLog::report(held_back);
            log::log!(level, "{}", line());
        }
    }

    /// Once per heartbeat interval: how many lines were not shown.
    fn flush(&mut self) {
        FaultLog::report(self.0.take_held_back());
    }

    fn report(suppressed: u64) {
        if suppressed > 0 {
            log::warn!("{suppressed} more peer fault(s) in the last interval not shown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: &str, body: &str, queued_at: Instant) -> Request {
        let mut envelope = Message::from_frames([body]);
        envelope.wrap_envelope(client);
        Request {
            cost: REQUEST_COST + envelope.content_size() + envelope.len() * FRAME_COST,
            envelope,
            queued_at,
        }
    }

    fn body(request: &Request) -> String {
        String::from_utf8_lossy(request.envelope.last().unwrap_or_default()).into_owned()
    }

    /// The bodies in the order `next_request` hands them out; checks that
    /// each comes with its own client and that the byte count ends at zero.
    fn drain(service: &mut Service) -> Vec<String> {
        let mut order = Vec::new();
        while let Some((client, request)) = service.next_request() {
            assert_eq!(request.envelope.first(), Some(&client[..]));
            order.push(body(&request));
        }
        assert!(service.is_idle());
        assert_eq!(service.bytes, 0);
        order
    }

    fn queued_cost(service: &Service) -> usize {
        service.queues.values().flatten().map(|r| r.cost).sum()
    }

    #[test]
    fn clients_take_turns_oldest_first() {
        let now = Instant::now();
        let mut service = Service::new();
        for (client, body) in [
            ("A", "a1"),
            ("A", "a2"),
            ("A", "a3"),
            ("B", "b1"),
            ("C", "c1"),
            ("B", "b2"),
        ] {
            service.enqueue(client.into(), request(client, body, now));
            assert_eq!(service.bytes, queued_cost(&service));
        }
        assert!(!service.is_idle());
        assert_eq!(drain(&mut service), ["a1", "b1", "c1", "a2", "b2", "a3"]);
    }

    #[test]
    fn a_requeued_request_goes_first_again() {
        let now = Instant::now();
        let mut service = Service::new();
        for (client, body) in [("A", "a1"), ("A", "a2"), ("B", "b1")] {
            service.enqueue(client.into(), request(client, body, now));
        }
        let (client, first) = service.next_request().unwrap();
        service.requeue(client, first);
        assert_eq!(service.bytes, queued_cost(&service));
        // A client whose only request comes back.
        let mut lone = Service::new();
        lone.enqueue(b"C".to_vec(), request("C", "c1", now));
        lone.enqueue(b"D".to_vec(), request("D", "d1", now));
        let (client, only) = lone.next_request().unwrap();
        lone.requeue(client, only);
        assert_eq!(drain(&mut service), ["a1", "b1", "a2"]);
        assert_eq!(drain(&mut lone), ["c1", "d1"]);
    }

    #[test]
    fn removing_a_client_keeps_the_others() {
        let now = Instant::now();
        let mut service = Service::new();
        for (client, body) in [("A", "a1"), ("B", "b1"), ("A", "a2"), ("C", "c1")] {
            service.enqueue(client.into(), request(client, body, now));
        }
        let removed: Vec<String> = service.remove_client(b"A").iter().map(body).collect();
        assert_eq!(removed, ["a1", "a2"]);
        assert!(service.remove_client(b"nobody").is_empty());
        assert_eq!(service.bytes, queued_cost(&service));
        assert_eq!(drain(&mut service), ["b1", "c1"]);
    }

    #[test]
    fn requests_expire_at_their_age_limit_only() {
        let now = Instant::now() + Duration::from_secs(100);
        let old = now - Duration::from_secs(10);
        let young = now - Duration::from_secs(9);
        let mut service = Service::new();
        for (client, body, at) in [
            ("A", "a1", old),
            ("A", "a2", young),
            ("B", "b1", old),
            ("C", "c1", young),
        ] {
            service.enqueue(client.into(), request(client, body, at));
        }
        let mut expired: Vec<String> = service
            .expire(now, Duration::from_secs(10))
            .iter()
            .map(body)
            .collect();
        expired.sort();
        assert_eq!(expired, ["a1", "b1"]);
        assert!(service.expire(now, Duration::from_secs(10)).is_empty());
        assert_eq!(service.bytes, queued_cost(&service));
        assert_eq!(drain(&mut service), ["a2", "c1"]);
    }

    #[test]
    fn release_forgets_a_client_at_zero() {
        let mut clients = HashMap::from([(b"A".to_vec(), 300), (b"B".to_vec(), 100)]);
        release(&mut clients, b"A", 100);
        assert_eq!(clients.get(&b"A"[..]), Some(&200));
        release(&mut clients, b"B", 100);
        assert!(!clients.contains_key(&b"B"[..]));
        release(&mut clients, b"nobody", 100);
        assert_eq!(clients.len(), 1);
    }
}
