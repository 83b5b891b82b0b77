//! Majordomo Protocol broker (§27 "Service-Oriented Reliable Queuing", with
//! MMI from §29): a minimal implementation of MDP/0.1 (RFC 7) and MMI (RFC 8),
//! the port of `mdbroker.c`.
//!
//! One ROUTER socket bound to `tcp://*:5555` talks to clients (`MDPC01`) and
//! workers (`MDPW01`). Each service has a queue of requests and a queue of
//! waiting workers; whenever both are non-empty the oldest request goes to
//! the longest-waiting worker. Every 2.5 s the broker deletes waiting workers
//! it has not heard from for 7.5 s and sends a HEARTBEAT to the others.
//! `mmi.*` services are answered here: `mmi.service` says `200` if the named
//! service has a worker, else `404`; any other `mmi.*` gives `501`.
//!
//! Run beside it: `mdworker` (any number), then `mdclient`, `mdclient2`,
//! `mmiecho`, or `titanic` + `ticlient`. `-v` prints every message.
//!
//! Where it differs from the C, on purpose (bugs fixed):
//! * purge looks at **every** waiting worker. The C stops at the first live
//!   one, assuming the list is ordered by expiry, but heartbeats refresh the
//!   expiry without reordering, so dead workers behind a live one were never
//!   purged (zguide #579, PR #170). Dispatch also skips an expired worker.
//! * the reserved-name check on READY looks at the service frame; the C
//!   compared the *sender identity* with `mmi.`.
//! * `mmi.*` requests and `mmi.service` lookups never create services, and a
//!   service without workers is removed once its queue is empty. Requests
//!   queued for a service that has no worker expire after
//!   [`REQUEST_EXPIRY`] (RFC 7 says a broker SHOULD; the C queues them forever
//!   and keeps every name a client ever asked for), so memory stays bounded.
//! * a malformed message (short, wrong header, unknown command, wrong frame
//!   count) is logged and dropped instead of hitting an `assert`; a worker
//!   that sends one, or a REQUEST, or a REPLY while it has no request, gets
//!   DISCONNECT as RFC 7 requires (the C only logged unknown commands).
//! * the heartbeat interval is 2.5 s as in the C code (its comment says 5 s).

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use zguide::heartbeat::expiry_after;
use zguide::helpers::init_log;
use zguide::mdp::protocol::{self, clock_log, Command, WorkerCommand};
use zguide::{interrupt, Error, Message};

const HEARTBEAT_LIVENESS: u32 = protocol::HEARTBEAT_LIVENESS; //  3-5 is reasonable
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(protocol::HEARTBEAT_INTERVAL_MS);
/// Requests for a service with no worker are dropped after this long: every
/// client of the book has given up by then (3 × 2.5 s).
const REQUEST_EXPIRY: Duration = Duration::from_secs(10);
/// Messages handled per poll: draining the socket without a poll per message
/// keeps the hot path short, the limit keeps heartbeats on time under load.
const BATCH: usize = 1000;

fn heartbeat_expiry(now: Instant) -> Instant {
    expiry_after(now, HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS)
}

// .split broker, service and worker structures
// The broker has one socket for everybody, the known services and the known
// workers. Workers are keyed by their routing identity (bytes, not hex: the
// C keys by `zframe_strhex` only because zhash needs string keys).

struct Broker {
    socket: zmq::Socket,
    verbose: bool,
    services: HashMap<Vec<u8>, Service>,
    workers: HashMap<Vec<u8>, Worker>,
    heartbeat_at: Instant,
}

/// A service: its queued requests and its waiting workers, oldest first.
struct Service {
    requests: VecDeque<Request>,
    waiting: VecDeque<Vec<u8>>,
    /// Registered workers, waiting or busy.
    workers: usize,
}

/// A queued request `[client][""][body…]` and when it arrived.
struct Request {
    envelope: Message,
    queued_at: Instant,
}

/// A worker that said READY: its service, and while it waits, its expiry.
struct Worker {
    /// An `Rc` so that the clone on every reply costs no allocation.
    service: Rc<[u8]>,
    waiting: bool,
    expiry: Instant,
}

fn main() {
    init_log("info");
    interrupt::catch_signals();
    let verbose = std::env::args().nth(1).as_deref() == Some("-v");

    let context = zmq::Context::new();
    let mut broker = match Broker::new(&context, verbose) {
        Ok(broker) => broker,
        Err(e) => {
            log::error!("cannot start the broker: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = broker.bind("tcp://*:5555") {
        log::error!("cannot bind tcp://*:5555: {e}");
        std::process::exit(1);
    }
    match broker.run() {
        Err(Error::Interrupted) => println!("W: interrupt received, shutting down..."),
        Err(e) => {
            log::error!("broker stopped: {e}");
            std::process::exit(1);
        }
        Ok(()) => {}
    }
}

// .split broker constructor, bind and main loop

impl Broker {
    fn new(context: &zmq::Context, verbose: bool) -> Result<Broker, Error> {
        let socket = context.socket(zmq::ROUTER)?;
        socket.set_linger(0)?;
        Ok(Broker {
            socket,
            verbose,
            services: HashMap::new(),
            workers: HashMap::new(),
            heartbeat_at: Instant::now() + HEARTBEAT_INTERVAL,
        })
    }

    /// Binds to `endpoint`; MDP uses one socket for clients and workers.
    fn bind(&mut self, endpoint: &str) -> Result<(), Error> {
        self.socket.bind(endpoint)?;
        clock_log(&format!("I: MDP broker/0.2.0 is active at {endpoint}"));
        Ok(())
    }

    /// Processes messages until Ctrl-C; purges and heartbeats on time.
    fn run(&mut self) -> Result<(), Error> {
        loop {
            let wait = self.heartbeat_at.saturating_duration_since(Instant::now());
            let readable = interrupt::poll(&[&self.socket], wait.as_millis() as i64)?[0];
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
                self.heartbeat_waiting();
                self.heartbeat_at = now + HEARTBEAT_INTERVAL;
            }
        }
    }

    /// `[sender][""][header]…`: route to the client or the worker path.
    fn handle(&mut self, mut msg: Message) {
        if self.verbose {
            clock_log("I: received message:");
            print!("{}", msg.dump());
        }
        if msg.len() < 3 || msg.get(1).is_some_and(|f| !f.is_empty()) {
            log::error!("invalid message: {}", msg.summary());
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
            log::error!("invalid message (unknown header): {}", msg.summary());
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
                log::error!("invalid message from worker {}: {e}", hex(&sender));
                return self.delete_worker(&sender, true);
            }
        };
        match command {
            WorkerCommand::Ready { service } => {
                if known.is_some() {
                    log::error!("second READY from worker {}", hex(&sender));
                    self.delete_worker(&sender, true);
                } else if protocol::is_mmi(&service) {
                    // The C tested the sender identity here, not the service.
                    log::error!(
                        "worker {} tried to register reserved service {}",
                        hex(&sender),
                        String::from_utf8_lossy(&service)
                    );
                    self.delete_worker(&sender, true);
                } else {
                    self.register_worker(sender, service);
                }
            }
            WorkerCommand::Reply { mut envelope } => {
                // Only a busy worker (one we sent a request to) may reply.
                if known == Some(false) {
                    let Some(client) = envelope.unwrap_envelope() else {
                        return;
                    };
                    if let Some(worker) = self.workers.get(&sender) {
                        let head = [&client[..], b"", protocol::CLIENT, &worker.service[..]];
                        self.send(&head, envelope);
                        self.worker_waiting(sender);
                    }
                } else {
                    log::error!("REPLY from a worker without a request: {}", hex(&sender));
                    self.delete_worker(&sender, true);
                }
            }
            WorkerCommand::Heartbeat => match self.workers.get_mut(&sender) {
                Some(worker) => worker.expiry = heartbeat_expiry(Instant::now()),
                None => self.delete_worker(&sender, true),
            },
            WorkerCommand::Disconnect => self.delete_worker(&sender, false),
            WorkerCommand::Request { .. } => {
                log::error!("REQUEST from worker {}: not a worker command", hex(&sender));
                self.delete_worker(&sender, true);
            }
        }
    }

    // .split client messages
    // A request `[service][body…]` from a client. MMI requests are answered
    // right here; anything else is queued on its service and dispatched.

    fn client_msg(&mut self, sender: Vec<u8>, mut msg: Message) {
        if msg.len() < 2 {
            log::error!("invalid client request: {}", msg.summary());
            return;
        }
        let Some(service_name) = msg.pop() else {
            return;
        };
        if protocol::is_mmi(&service_name) {
            return self.mmi_reply(sender, service_name, msg);
        }
        // Set reply return identity to client sender
        msg.wrap_envelope(sender);
        let request = Request {
            envelope: msg,
            queued_at: Instant::now(),
        };
        match self.services.get_mut(&service_name) {
            Some(service) => service.requests.push_back(request),
            None => {
                if self.verbose {
                    clock_log(&format!(
                        "I: added service: {}",
                        String::from_utf8_lossy(&service_name)
                    ));
                }
                let mut service = Service::new();
                service.requests.push_back(request);
                self.services.insert(service_name.clone(), service);
            }
        }
        self.dispatch(&service_name);
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
        self.send(&head, body);
    }

    // .split purge, request expiry and heartbeats

    /// Deletes every waiting worker whose expiry has passed. The C stops at
    /// the first live worker; see the file docs for why that is wrong.
    fn purge(&mut self, now: Instant) {
        let expired: Vec<Vec<u8>> = self
            .workers
            .iter()
            .filter(|(_, w)| w.waiting && w.expiry <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for identity in expired {
            if self.verbose {
                clock_log(&format!("I: deleting expired worker: {}", hex(&identity)));
            }
            self.delete_worker(&identity, false);
        }
    }

    /// Drops requests nobody can serve, and services nobody uses.
    fn expire_requests(&mut self, now: Instant) {
        self.services.retain(|name, service| {
            if service.workers == 0 {
                let before = service.requests.len();
                service
                    .requests
                    .retain(|r| now.duration_since(r.queued_at) < REQUEST_EXPIRY);
                let dropped = before - service.requests.len();
                if dropped > 0 {
                    log::warn!(
                        "dropped {dropped} request(s) for service {} (no worker)",
                        String::from_utf8_lossy(name)
                    );
                }
            }
            service.workers > 0 || !service.requests.is_empty()
        });
    }

    fn heartbeat_waiting(&mut self) {
        let waiting: Vec<Vec<u8>> = self
            .workers
            .iter()
            .filter(|(_, w)| w.waiting)
            .map(|(id, _)| id.clone())
            .collect();
        for identity in waiting {
            self.send_to_worker(&identity, Command::Heartbeat, Message::new());
        }
    }

    // .split service dispatch
    // Sends queued requests to waiting workers, oldest to oldest, while the
    // service has both.

    fn dispatch(&mut self, service_name: &[u8]) {
        let now = Instant::now();
        loop {
            let Some(service) = self.services.get_mut(service_name) else {
                return;
            };
            if service.requests.is_empty() {
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
                    clock_log(&format!("I: deleting expired worker: {}", hex(&identity)));
                }
                self.delete_worker(&identity, false);
                continue;
            }
            worker.waiting = false;
            if let Some(request) = service.requests.pop_front() {
                self.send_to_worker(&identity, Command::Request, request.envelope);
            }
        }
    }

    // .split worker methods

    /// A valid READY from a new worker: attach it to its service.
    fn register_worker(&mut self, identity: Vec<u8>, service_name: Vec<u8>) {
        if self.verbose {
            clock_log(&format!("I: registering new worker: {}", hex(&identity)));
        }
        let verbose = self.verbose;
        let service = self
            .services
            .entry(service_name.clone())
            .or_insert_with_key(|name| {
                if verbose {
                    clock_log(&format!(
                        "I: added service: {}",
                        String::from_utf8_lossy(name)
                    ));
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
            self.send_to_worker(identity, Command::Disconnect, Message::new());
        }
        let Some(worker) = self.workers.remove(identity) else {
            return;
        };
        if let Some(service) = self.services.get_mut(&worker.service[..]) {
            service.workers = service.workers.saturating_sub(1);
            if worker.waiting {
                service.waiting.retain(|w| w != identity);
            }
            if service.workers == 0 && service.requests.is_empty() {
                self.services.remove(&worker.service[..]);
            }
        }
    }

    // .split sending
    // Frames go straight onto the socket from borrowed slices: building a
    // message first would copy every header for every request.

    fn send_to_worker(&self, identity: &[u8], command: Command, body: Message) {
        if self.verbose {
            clock_log(&format!("I: sending {} to worker", command.name()));
            let mut shown = body.clone();
            shown.push(command.frame());
            shown.push(protocol::WORKER);
            shown.wrap_envelope(identity);
            print!("{}", shown.dump());
        }
        let head = [identity, b"", protocol::WORKER, command.frame()];
        self.send(&head, body);
    }

    /// Sends `head` then `body` as one message. ROUTER sends do not block
    /// (an unknown or full peer's message is dropped), so only a real error
    /// is possible; it is logged, the broker goes on.
    fn send(&self, head: &[&[u8]], body: Message) {
        let result = (|| -> Result<(), Error> {
            let last = head.len() + body.len() - 1;
            for (index, frame) in head.iter().enumerate() {
                let more = if index < last { zmq::SNDMORE } else { 0 };
                interrupt::retry_eintr(|| self.socket.send(*frame, more))?;
            }
            for (index, frame) in body.iter().enumerate() {
                let more = if head.len() + index < last {
                    zmq::SNDMORE
                } else {
                    0
                };
                interrupt::retry_eintr(|| self.socket.send(frame, more))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            log::error!("send failed: {e}");
        }
    }
}

impl Service {
    fn new() -> Service {
        Service {
            requests: VecDeque::new(),
            waiting: VecDeque::new(),
            workers: 0,
        }
    }
}

/// Identity as uppercase hex, as the C logs it (`zframe_strhex`).
fn hex(identity: &[u8]) -> String {
    identity.iter().map(|b| format!("{b:02X}")).collect()
}
