//! §22 Putting it All Together (`peering3.c`): state, local and cloud flows
//! in one broker.
//!
//! `peering3 me {you}...`: the sockets of `peering2` (cloudfe, cloudbe,
//! localfe, localbe) plus the state flow of `peering1` (a PUB bound to
//! `ipc://<me>-state.ipc`, a SUB connected to each peer's) and a monitor PULL
//! bound to `ipc://<me>-monitor.ipc`, all files in the working directory.
//! Each broker runs 10 client threads and 5 worker threads, each with its own
//! context. A client sleeps 0–4 s, then sends a burst of 0–14 requests, each a
//! random four-digit hex task id, waiting up to 10 s for each echo; it pushes
//! each answered id to the monitor, which the broker prints, or
//! `E: CLIENT EXIT - lost task XXXX` when a reply does not come, and stops. A
//! worker echoes each request after 0 or 1 s.
//!
//! The broker routes a request to a local worker while one is free, else to a
//! peer that reported free workers, and publishes `[me][free workers]` to its
//! peers. Run three in one directory: `peering3 DC1 DC2 DC3`,
//! `peering3 DC2 DC1 DC3`, `peering3 DC3 DC1 DC2`. Runs until Ctrl-C.
//!
//! Differs from the C (which keeps one `cloud_capacity` number, the last one
//! any peer reported, for ever; once a peer dies, requests still go to it and
//! clients lose tasks, as the guide admits):
//! * capacity is kept **per peer**, and a peer whose state has not arrived for
//!   3 s is forgotten (`W: peer X is silent: forgetting its capacity`). To
//!   make silence meaningful, each broker publishes its state at least once a
//!   second, not only when it changes;
//! * with a worker free, a peer's request is taken before our clients' ones
//!   (the C does it the other way round, so under local load a peer's request
//!   can wait until its client gives up and reports a lost task);
//! * a request that reaches an idle broker is routed at once: the main poll
//!   also watches the frontends whose requests it can route now (the C polls
//!   only workers, peers' replies, state and monitor, so such a request
//!   waited up to a second, or, with only cloud capacity, until something
//!   else happened);
//! * a request goes to a random peer *that has capacity*, whose known capacity
//!   then drops by one until its next report (the C can pick a peer with none);
//! * if that peer is gone (its connection is down, as cloudbe's monitor tells
//!   ([`socket::Watched`]), or its queue is full: cloudbe is
//!   ROUTER_MANDATORY) it is forgotten and the request waits for the next
//!   free worker or peer instead of being lost;
//! * a worker goes on the free list only after its message proved well
//!   formed, and never twice (the C lists whoever sent anything, so a peer
//!   that sends garbage is handed requests nobody answers); malformed
//!   messages are logged and dropped;
//! * no send blocks (policy): a reply whose client or peer is gone or not
//!   reading is dropped and logged; a request goes to the next free worker if
//!   the first is gone or full (dropped, logged, if none can take it); at
//!   most one request waits for capacity inside the broker, the rest stay in
//!   ZeroMQ's bounded queues;
//! * sockets take frames of at most 1 MiB and have LINGER 0; warnings about
//!   peers are limited to 20 lines a second, and everything logged or printed
//!   that came from the network (state messages, monitor lines, malformed
//!   requests) is cut short and escaped (`show`, `Message::summary`): our
//!   own task ids and `E: CLIENT EXIT - lost task XXXX` print as in the C;
//! * a wrong reply makes the client report `E: CLIENT EXIT - bad reply XXXX`
//!   where the C `assert`s;
//! * beside the C++ `peering3` (which puts an empty frame after the peer's
//!   name, and asserts on it): requests from peers are accepted in both
//!   shapes, `[peer][client][""][request]` (C) and
//!   `[peer][""][client][""][request]` (C++), and answered in the shape they
//!   came in; set `ZGUIDE_PEER_DELIMITER=1` to send our requests to peers in
//!   the C++ shape too. The C++ broker publishes its state only when it
//!   changes, so we forget it 3 s after its last change (we still serve its
//!   requests);
//! * for tests, `ZGUIDE_CLIENTS` and `ZGUIDE_WORKERS` (defaults 10 and 5) set
//!   how many client and worker threads it starts;
//! * Ctrl-C/SIGTERM ends it with exit code 0.

use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use zguide::envelope::{self, PeerShape};
use zguide::heartbeat::{expiry_after, Beat};
use zguide::log_limit::complain;
use zguide::message::show;
use zguide::routing::{self, WorkerQueue};
use zguide::{helpers, interrupt, program, socket, Error, Message};

const NBR_CLIENTS: u64 = 10;
const NBR_WORKERS: u64 = 5;
const WORKER_READY: &[u8] = b"\x01"; // Signals worker is ready

/// We publish our state at least this often...
const STATE_INTERVAL: Duration = Duration::from_secs(1);
/// ...and forget a peer after this many intervals without its state.
const STATE_LIVENESS: u32 = 3;

// This is the client task. It issues a burst of requests and then sleeps for
// a few seconds. This simulates sporadic activity; when a number of clients
// are active at once, the local workers should be overloaded. The client uses
// a REQ socket for requests and also pushes statistics to the monitor socket.
fn client_task(me: String) -> Result<(), Error> {
    let context = zmq::Context::new();
    let client = socket::new(&context, zmq::REQ)
        .linger(0)
        .connect(&format!("ipc://{me}-localfe.ipc"))?;
    let monitor = socket::new(&context, zmq::PUSH).connect(&format!("ipc://{me}-monitor.ipc"))?;

    loop {
        interrupt::sleep_ms(u64::from(helpers::randof(5)) * 1000)?;
        for _ in 0..helpers::randof(15) {
            // Send request with random hex id.
            let task_id = format!("{:04X}", helpers::randof(0x10000));
            helpers::send_string(&client, &task_id)?;

            // Wait max ten seconds for a reply, then complain.
            if !interrupt::wait_readable(&client, 10 * 1000)? {
                let complaint = format!("E: CLIENT EXIT - lost task {task_id}");
                return helpers::send_string(&monitor, &complaint);
            }
            // Worker is supposed to answer us with our task id.
            let reply = helpers::recv_string(&client)?;
            if reply != task_id {
                log::error!(
                    "client: reply {} for task {task_id}",
                    show(reply.as_bytes())
                );
                let complaint = format!("E: CLIENT EXIT - bad reply {task_id}");
                return helpers::send_string(&monitor, &complaint);
            }
            helpers::send_string(&monitor, &reply)?;
        }
    }
}

// This is the worker task, which uses a REQ socket to plug into the
// load-balancer. It's the same stub worker task that you've seen in other
// examples.
fn worker_task(me: String) -> Result<(), Error> {
    let context = zmq::Context::new();
    let worker = socket::new(&context, zmq::REQ)
        .linger(0)
        .connect(&format!("ipc://{me}-localbe.ipc"))?;

    // Tell broker we're ready for work.
    worker.send(WORKER_READY, 0)?;

    // Process messages as they arrive.
    loop {
        let msg = Message::recv(&worker)?;
        // Workers are busy for 0/1 seconds.
        interrupt::sleep_ms(u64::from(helpers::randof(2)) * 1000)?;
        msg.send(&worker)?;
    }
}

/// What we know about a peer: how many workers it has free, and when we stop
/// believing it.
struct Peer {
    capacity: usize,
    expires: Instant,
}

// The main task begins by setting up all its sockets. The local frontend
// talks to clients, and our local backend talks to workers. The cloud
// frontend talks to peer brokers as if they were clients, and the cloud
// backend talks to peer brokers as if they were workers. The state backend
// publishes regular state messages, and the state frontend subscribes to all
// state backends to collect these messages. Finally, we use a PULL monitor
// socket to collect printable messages from tasks.
/// Where broker `name` takes requests from its peers.
fn cloud_endpoint(name: &str) -> String {
    format!("ipc://{name}-cloud.ipc")
}

fn main() -> ExitCode {
    program::run(main_task)
}

fn main_task() -> Result<(), Error> {
    // First argument is this broker's name; other arguments are our peers' names.
    let args: Vec<String> = std::env::args().collect();
    let Some(me) = args.get(1).cloned() else {
        println!("syntax: peering3 me {{you}}...");
        return Ok(());
    };
    println!("I: preparing broker at {me}...");
    let context = zmq::Context::new();
    // Every ROUTER is MANDATORY: a send to a gone or full peer fails at once,
    // so it is dropped and logged, never blocked on or silently lost.
    let router = || {
        socket::new(&context, zmq::ROUTER)
            .linger(0)
            .router_mandatory()
    };

    // Prepare local frontend and backend.
    let localfe = router().bind(&format!("ipc://{me}-localfe.ipc"))?;
    let localbe = router().bind(&format!("ipc://{me}-localbe.ipc"))?;

    // Bind cloud frontend to endpoint.
    let cloudfe = router().identity(me.as_str()).bind(&cloud_endpoint(&me))?;

    // Connect cloud backend to all peers.
    // A connecting socket keeps the route of a dead peer and queues our
    // requests for it, so ROUTER_MANDATORY alone cannot tell us the peer is
    // gone: its monitor can (`socket::Watched` says why not IMMEDIATE).
    let cloudbe = socket::Watched::new(&context, router().identity(me.as_str()).build()?)?;
    for peer in &args[2..] {
        println!("I: connecting to cloud frontend at '{peer}'");
        cloudbe.connect(&cloud_endpoint(peer))?;
    }
    // Bind state backend to endpoint (a PUB never blocks: it drops what a
    // slow subscriber cannot take).
    let statebe = socket::new(&context, zmq::PUB)
        .linger(0)
        .bind(&format!("ipc://{me}-state.ipc"))?;

    // Connect state frontend to all peers.
    let statefe = socket::new(&context, zmq::SUB)
        .linger(0)
        .subscribe("")
        .build()?;
    for peer in &args[2..] {
        println!("I: connecting to state backend at '{peer}'");
        statefe.connect(&format!("ipc://{peer}-state.ipc"))?;
    }
    // Prepare monitor socket.
    let monitor = socket::new(&context, zmq::PULL)
        .linger(0)
        .bind(&format!("ipc://{me}-monitor.ipc"))?;

    // After binding and connecting all our sockets, we start our child
    // tasks: workers and clients.
    for _ in 0..helpers::env_count("ZGUIDE_WORKERS", NBR_WORKERS) {
        let me = me.clone();
        thread::spawn(move || worker_task(me));
    }
    for _ in 0..helpers::env_count("ZGUIDE_CLIENTS", NBR_CLIENTS) {
        let me = me.clone();
        thread::spawn(move || client_task(me));
    }
    let mut broker = Broker {
        me,
        peer_names: args[2..].to_vec(),
        shape: PeerShape::from_env(),
        localfe,
        localbe,
        cloudfe,
        cloudbe,
        statebe,
        statefe,
        monitor,
        workers: WorkerQueue::new(),
        peers: HashMap::new(),
        waiting: VecDeque::new(),
    };
    broker.run()
}

struct Broker {
    me: String,
    peer_names: Vec<String>,
    /// How our requests to peers are framed (C, or C++ with a delimiter).
    shape: PeerShape,
    localfe: zmq::Socket,
    localbe: zmq::Socket,
    cloudfe: zmq::Socket,
    /// Knows which peers' cloud frontends it is connected to now.
    cloudbe: socket::Watched,
    statebe: zmq::Socket,
    statefe: zmq::Socket,
    monitor: zmq::Socket,
    /// Queue of available workers (local capacity), least recently used first.
    workers: WorkerQueue,
    /// Peers whose state we heard recently (cloud capacity).
    peers: HashMap<String, Peer>,
    /// A request a vanished peer could not take, served before new ones.
    waiting: VecDeque<Message>,
}

impl Broker {
    // The main loop has two parts. First, we poll workers and our two service
    // sockets (statefe and monitor), in any case. If we have no ready workers,
    // then there's no point in looking at incoming requests. These can remain
    // on their internal ZeroMQ queues.
    fn run(&mut self) -> Result<(), Error> {
        let mut beat = Beat::new(STATE_INTERVAL, Instant::now());
        loop {
            // Wake at least for our next state broadcast. Also wake for a
            // request we could route now: the C polls only these four, so a
            // request reaching an idle broker waited for the next wake-up
            // (up to 1 s; for ever with cloud capacity only).
            let timeout = interrupt::millis(beat.time_left(Instant::now()));
            let mut primary = vec![&self.localbe, &self.cloudbe, &self.statefe, &self.monitor];
            primary.extend(self.routable());
            let ready = interrupt::poll(&primary, timeout)?;

            // Track if capacity changes during this iteration.
            let previous = self.workers.len();
            if ready[0] {
                self.handle_worker(Message::recv_now(&self.localbe)?)?;
            } else if ready[1] {
                // Or handle reply from peer broker: we don't use the peer
                // broker identity for anything.
                match envelope::peer_reply(Message::recv_now(&self.cloudbe)?) {
                    Ok(reply) => {
                        routing::send_or_log(reply, &self.localfe, "localfe")?;
                    }
                    Err(e) => complain(format_args!("cloudbe: malformed reply dropped: {e}")),
                }
            }
            // If we have input messages on our statefe or monitor sockets, we
            // can process these immediately.
            if ready[2] {
                self.update_peer(Message::recv_now(&self.statefe)?);
            }
            if ready[3] {
                let status = Message::recv_now(&self.monitor)?;
                println!("{}", show(status.first().unwrap_or_default()));
            }
            self.forget_silent_peers(Instant::now());
            self.route_requests()?;

            // We broadcast capacity messages to other peers when it changed,
            // and once a second anyway so that peers can tell we are alive.
            if self.workers.len() != previous || beat.due(Instant::now()) {
                let capacity = self.workers.len().to_string();
                Message::from_frames([self.me.as_str(), capacity.as_str()]).send(&self.statebe)?;
            }
        }
    }

    // Now route as many client requests as we can handle. If we have local
    // capacity, we poll both localfe and cloudfe. If we have cloud capacity
    // only, we poll just localfe. We route any request locally if we can,
    // else we route to the cloud.
    fn route_requests(&mut self) -> Result<(), Error> {
        while !self.workers.is_empty() || self.cloud_capacity() > 0 {
            let msg = if let Some(msg) = self.waiting.pop_front() {
                msg
            } else {
                // Peers' requests first when a worker is free: the C takes
                // local ones first, and under local load a peer's request
                // then starves until its client gives up on it.
                let ready = interrupt::poll(&self.routable(), 0)?;
                let (msg, from_peer) = if ready.get(1) == Some(&true) {
                    (Message::recv_now(&self.cloudfe)?, true)
                } else if ready[0] {
                    (Message::recv_now(&self.localfe)?, false)
                } else {
                    return Ok(()); // No work, go back to primary.
                };
                let checked = if from_peer {
                    envelope::check_peer_request(&msg)
                } else {
                    envelope::check(&msg)
                };
                if let Err(e) = checked {
                    complain(format_args!(
                        "frontend: malformed request dropped: {e}: {}",
                        msg.summary()
                    ));
                    continue;
                }
                msg
            };
            if !self.workers.is_empty() {
                routing::dispatch(&self.localbe, &mut self.workers, &msg)?;
            } else {
                self.route_to_cloud(msg)?;
            }
        }
        Ok(())
    }

    /// The frontends whose requests we can route now: both with a local
    /// worker free, only our clients' with cloud capacity alone (a peer's
    /// request never goes on to a third broker), none without capacity.
    fn routable(&self) -> Vec<&zmq::Socket> {
        if !self.workers.is_empty() {
            vec![&self.localfe, &self.cloudfe]
        } else if self.cloud_capacity() > 0 {
            vec![&self.localfe]
        } else {
            Vec::new()
        }
    }

    /// Sends a request to a random peer with capacity. If the peer turns out
    /// to be gone, forget it and keep the request for the next round.
    fn route_to_cloud(&mut self, msg: Message) -> Result<(), Error> {
        let candidates: Vec<&String> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.capacity > 0)
            .map(|(name, _)| name)
            .collect();
        let Some(&name) = candidates.get(helpers::randof(candidates.len() as u32) as usize) else {
            self.waiting.push_front(msg);
            return Ok(());
        };
        let name = name.clone();
        let live = self.cloudbe.is_live(&cloud_endpoint(&name));
        if live
            && self
                .shape
                .address(&name, msg.clone())
                .send_or_drop(&self.cloudbe)?
        {
            if let Some(peer) = self.peers.get_mut(&name) {
                peer.capacity -= 1;
            }
        } else {
            complain(format_args!(
                "peer {name} is not connected or not reading: forgetting its capacity"
            ));
            self.peers.remove(&name);
            self.waiting.push_front(msg);
        }
        Ok(())
    }

    /// A message from a local worker: READY, or a reply for a client or a
    /// peer. The worker is free again only once its message checked out.
    fn handle_worker(&mut self, msg: Message) -> Result<(), Error> {
        let (worker, reply) = match envelope::from_worker(msg, WORKER_READY) {
            Ok(parts) => parts,
            Err(e) => {
                complain(format_args!("localbe: malformed message dropped: {e}"));
                return Ok(());
            }
        };
        if let Some(reply) = &reply {
            if let Err(e) = envelope::check_reply(reply, &self.peer_names) {
                complain(format_args!("localbe: malformed reply dropped: {e}"));
                return Ok(());
            }
        }
        self.workers.ready(worker);
        // If it's READY, don't route the message any further.
        if let Some(reply) = reply {
            routing::route_reply(reply, &self.peer_names, &self.cloudfe, &self.localfe)?;
        }
        Ok(())
    }

    /// A state message `[peer][free workers]` refreshes what we know of it.
    fn update_peer(&mut self, msg: Message) {
        let (Some(name), Some(count), 2) = (msg.get(0), msg.get(1), msg.len()) else {
            complain(format_args!(
                "statefe: expected [peer][count], got {}",
                msg.summary()
            ));
            return;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let capacity = std::str::from_utf8(count).ok().and_then(|c| c.parse().ok());
        match capacity {
            Some(capacity) if self.peer_names.contains(&name) => {
                let expires = expiry_after(Instant::now(), STATE_INTERVAL, STATE_LIVENESS);
                self.peers.insert(name, Peer { capacity, expires });
            }
            _ => complain(format_args!("statefe: bad state {}", msg.summary())),
        }
    }

    /// Forgets peers whose state stopped arriving (the C never does).
    fn forget_silent_peers(&mut self, now: Instant) {
        self.peers.retain(|name, peer| {
            let alive = peer.expires > now;
            if !alive {
                log::warn!("peer {name} is silent: forgetting its capacity");
            }
            alive
        });
    }

    fn cloud_capacity(&self) -> usize {
        self.peers.values().map(|p| p.capacity).sum()
    }
}
