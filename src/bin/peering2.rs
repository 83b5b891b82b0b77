//! §21 Prototyping the Local and Cloud Flows (`peering2.c`): brokers that
//! lend each other work.
//!
//! `peering2 me {you}...`: each broker is a load balancer (like `lbbroker3`)
//! for its own 10 clients and 3 workers, and also a client and a worker of its
//! peers. Sockets, all `ipc://` files in the working directory:
//! * cloudfe, a ROUTER bound to `<me>-cloud.ipc`: peers send us requests;
//! * cloudbe, a ROUTER connected to each `<you>-cloud.ipc`: we send requests
//!   to peers (both cloud sockets carry our name as their identity, so a
//!   peer can route back to us by name);
//! * localfe `<me>-localfe.ipc` for our clients, localbe `<me>-localbe.ipc`
//!   for our workers.
//!
//! It prints `Press Enter when all brokers are started: ` and waits for a line
//! on stdin, then starts its workers (REQ, READY is `0x01`, print
//! `Worker: [005] HELLO`, answer `OK`) and clients (REQ, `HELLO` once a second,
//! print `Client: OK`). While a worker is free it takes requests, peers' first,
//! and sends one in five of its own clients' requests to a random peer (the
//! peer's name pushed in front, so cloudbe routes it there). A reply whose first
//! frame is a peer's name goes back to that peer, any other to our client.
//! Run `peering2 me you` and `peering2 you me` in one directory. Runs until
//! Ctrl-C.
//!
//! Differs from the C:
//! * if the chosen peer cannot take a request (its connection is down, as
//!   cloudbe's monitor tells [`socket::Watched`], or its queue is full:
//!   cloudbe is ROUTER_MANDATORY) the request is served locally instead of
//!   being lost, so killing one broker no longer makes the others' clients
//!   block one by one (except for requests the dead broker already held, or
//!   sent in the milliseconds before its death was seen);
//! * a worker goes on the free list only after its message proved well
//!   formed, and never twice; malformed messages are logged and dropped;
//! * no send blocks (policy): a reply whose client or peer is gone or not
//!   reading is dropped and logged, a request goes to the next free worker if
//!   the first is gone or full (dropped, logged, if none can take it);
//! * sockets take frames of at most 1 MiB and have LINGER 0; warnings about
//!   peers are limited to 20 lines a second, and everything printed or logged
//!   that came from the network is cut short and escaped (`show`), so the
//!   guide's `Worker: [005] HELLO` and `Client: OK` print as in the C;
//! * beside the C++ `peering2` (which puts an empty frame after the peer's
//!   name, and asserts on it): requests from peers are accepted in both
//!   shapes, `[peer][client][""][request]` (C) and
//!   `[peer][""][client][""][request]` (C++), and answered in the shape they
//!   came in; set `ZGUIDE_PEER_DELIMITER=1` to send our requests to peers in
//!   the C++ shape too (needed when a peer is the C++ program);
//! * for tests, `ZGUIDE_CLIENTS` and `ZGUIDE_WORKERS` (defaults 10 and 3) set
//!   how many client and worker threads it starts;
//! * Ctrl-C/SIGTERM ends it with exit code 0.

use std::process::ExitCode;

use zguide::actor::{Actor, Pipe};
use zguide::envelope::{self, PeerShape};
use zguide::log_limit::complain;
use zguide::message::show;
use zguide::routing::{self, WorkerQueue};
use zguide::{helpers, interrupt, program, socket, Error, Message};

const NBR_CLIENTS: u64 = 10;
const NBR_WORKERS: u64 = 3;
const WORKER_READY: &[u8] = b"\x01"; // Signals worker is ready

// The client task does a request-reply dialog using a standard synchronous
// REQ socket.
fn client_task(pipe: &Pipe, me: &str) -> Result<(), Error> {
    pipe.signal(0)?;
    let client = socket::new(pipe.context(), zmq::REQ)
        .linger(0)
        .connect(&format!("ipc://{me}-localfe.ipc"))?;
    loop {
        // Send request, get reply.
        helpers::send_string(&client, "HELLO")?;
        if pipe.poll(&[&client], -1)?.is_none() {
            return Ok(()); // Done
        }
        let reply = Message::recv_now(&client)?;
        println!("Client: {}", show(reply.last().unwrap_or_default()));
        if pipe.poll(&[], 1000)?.is_none() {
            return Ok(());
        }
    }
}

// The worker task plugs into the load-balancer using a REQ socket.
fn worker_task(pipe: &Pipe, me: &str) -> Result<(), Error> {
    pipe.signal(0)?;
    let worker = socket::new(pipe.context(), zmq::REQ)
        .linger(0)
        .connect(&format!("ipc://{me}-localbe.ipc"))?;

    // Tell broker we're ready for work.
    worker.send(WORKER_READY, 0)?;

    // Process messages as they arrive.
    while pipe.poll(&[&worker], -1)?.is_some() {
        let mut msg = Message::recv_now(&worker)?;
        println!(
            "{}",
            envelope::show_frame("Worker: ", msg.last().unwrap_or_default())
        );
        msg.set_last("OK");
        msg.send(&worker)?;
    }
    Ok(())
}

/// Where broker `name` takes requests from its peers.
fn cloud_endpoint(name: &str) -> String {
    format!("ipc://{name}-cloud.ipc")
}

/// Starts an actor running `task` with our broker name, logging its errors.
fn start(
    context: &zmq::Context,
    me: &str,
    task: fn(&Pipe, &str) -> Result<(), Error>,
) -> Result<Actor, Error> {
    let me = me.to_string();
    Actor::new(context, move |pipe| {
        if let Err(e) = task(pipe, &me) {
            log::error!("task: {e}");
        }
    })
}

// The main task begins by setting up its frontend and backend sockets and
// then starting its client and worker tasks.
fn main() -> ExitCode {
    program::run(main_task)
}

fn main_task() -> Result<(), Error> {
    // First argument is this broker's name; other arguments are our peers' names.
    let args: Vec<String> = std::env::args().collect();
    let Some(me) = args.get(1).cloned() else {
        println!("syntax: peering2 me {{you}}...");
        return Ok(());
    };
    let peers = &args[2..];
    println!("I: preparing broker at {me}...");
    let context = zmq::Context::new();
    // Every ROUTER is MANDATORY: a send to a gone or full peer fails at once,
    // so it is dropped and logged, never blocked on or silently lost.
    let router = || {
        socket::new(&context, zmq::ROUTER)
            .linger(0)
            .router_mandatory()
    };

    // Bind cloud frontend to endpoint.
    let cloudfe = router().identity(me.as_str()).bind(&cloud_endpoint(&me))?;

    // Connect cloud backend to all peers.
    // A connecting socket keeps the route of a dead peer and queues our
    // requests for it, so ROUTER_MANDATORY alone cannot tell us the peer is
    // gone: its monitor can (`socket::Watched` says why not IMMEDIATE).
    let cloudbe = socket::Watched::new(&context, router().identity(me.as_str()).build()?)?;
    for peer in peers {
        println!("I: connecting to cloud frontend at '{peer}'");
        cloudbe.connect(&cloud_endpoint(peer))?;
    }
    // Prepare local frontend and backend.
    let localfe = router().bind(&format!("ipc://{me}-localfe.ipc"))?;
    let localbe = router().bind(&format!("ipc://{me}-localbe.ipc"))?;

    // Get user to tell us when we can start...
    print!("Press Enter when all brokers are started: ");
    helpers::flush_stdout();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);

    // Start local workers, then local clients.
    let mut actors = Vec::new();
    for _ in 0..helpers::env_count("ZGUIDE_WORKERS", NBR_WORKERS) {
        actors.push(start(&context, &me, worker_task)?);
    }
    for _ in 0..helpers::env_count("ZGUIDE_CLIENTS", NBR_CLIENTS) {
        actors.push(start(&context, &me, client_task)?);
    }
    let broker = Broker {
        peers,
        shape: PeerShape::from_env(),
        cloudfe,
        cloudbe,
        localfe,
        localbe,
    };
    let result = broker.run();
    drop(actors);
    result
}

struct Broker<'a> {
    peers: &'a [String],
    /// How our requests to peers are framed (C, or C++ with a delimiter).
    shape: PeerShape,
    cloudfe: zmq::Socket,
    /// Knows which peers' cloud frontends it is connected to now.
    cloudbe: socket::Watched,
    localfe: zmq::Socket,
    localbe: zmq::Socket,
}

impl Broker<'_> {
    // Here, we handle the request-reply flow. We're using load-balancing to
    // poll workers at all times, and clients only when there are one or more
    // workers available.
    fn run(&self) -> Result<(), Error> {
        // Least recently used queue of available workers.
        let mut workers = WorkerQueue::new();
        loop {
            // First, route any waiting replies from workers. If we have no
            // workers, wait indefinitely.
            let timeout = if workers.is_empty() { -1 } else { 1000 };
            let ready = interrupt::poll(&[&self.localbe, &self.cloudbe], timeout)?;
            if ready[0] {
                // Handle reply from local worker.
                self.handle_worker(Message::recv_now(&self.localbe)?, &mut workers)?;
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

            // Now we route as many client requests as we have worker capacity
            // for. We may reroute requests from our local frontend, but not
            // from the cloud frontend. We reroute randomly now, just to test
            // things out; peering3 does it properly with cloud capacity.
            while !workers.is_empty() {
                // We'll do peer brokers first, to prevent starvation.
                let ready = interrupt::poll(&[&self.cloudfe, &self.localfe], 0)?;
                let (msg, reroutable) = if ready[0] {
                    (Message::recv_now(&self.cloudfe)?, false)
                } else if ready[1] {
                    (Message::recv_now(&self.localfe)?, true)
                } else {
                    break; // No work, go back to backends.
                };
                let checked = if reroutable {
                    envelope::check(&msg)
                } else {
                    envelope::check_peer_request(&msg)
                };
                if let Err(e) = checked {
                    complain(format_args!("frontend: malformed request dropped: {e}"));
                    continue;
                }
                // If reroutable, send to cloud 20% of the time. Here we'd
                // normally use cloud status information.
                if reroutable && !self.peers.is_empty() && helpers::randof(5) == 0 {
                    // Route to random broker peer.
                    let peer = &self.peers[helpers::randof(self.peers.len() as u32) as usize];
                    let live = self.cloudbe.is_live(&cloud_endpoint(peer));
                    if live
                        && self
                            .shape
                            .address(peer, msg.clone())
                            .send_or_drop(&self.cloudbe)?
                    {
                        continue;
                    }
                    complain(format_args!(
                        "peer {peer} is not connected or not reading: serving the request here"
                    ));
                }
                routing::dispatch(&self.localbe, &mut workers, &msg)?;
            }
        }
    }

    /// A message from a local worker: READY, or a reply for a client or a
    /// peer. The worker is free again only once its message checked out.
    fn handle_worker(&self, msg: Message, workers: &mut WorkerQueue) -> Result<(), Error> {
        let (worker, reply) = match envelope::from_worker(msg, WORKER_READY) {
            Ok(parts) => parts,
            Err(e) => {
                complain(format_args!("localbe: malformed message dropped: {e}"));
                return Ok(());
            }
        };
        if let Some(reply) = &reply {
            if let Err(e) = envelope::check_reply(reply, self.peers) {
                complain(format_args!("localbe: malformed reply dropped: {e}"));
                return Ok(());
            }
        }
        workers.ready(worker);
        // If it's READY, don't route the message any further.
        if let Some(reply) = reply {
            routing::route_reply(reply, self.peers, &self.cloudfe, &self.localfe)?;
        }
        Ok(())
    }
}
