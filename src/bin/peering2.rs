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
//! Differs from the C: if the chosen peer is gone (cloudbe is ROUTER_MANDATORY
//! and IMMEDIATE, so a send to a dead peer fails instead of queueing for it)
//! the request is served locally instead of being lost, so killing one broker
//! no longer makes the others' clients block one by one (except for requests
//! the dead broker already held); malformed messages are logged and dropped;
//! Ctrl-C/SIGTERM ends it with exit code 0.

use std::collections::VecDeque;

use zguide::actor::{Actor, Pipe};
use zguide::message::format_frame;
use zguide::{envelope, helpers, interrupt, Error, Message};

const NBR_CLIENTS: usize = 10;
const NBR_WORKERS: usize = 3;
const WORKER_READY: &[u8] = b"\x01"; // Signals worker is ready

// The client task does a request-reply dialog using a standard synchronous
// REQ socket.
fn client_task(pipe: &Pipe, me: &str) -> Result<(), Error> {
    pipe.signal(0)?;
    let client = pipe.context().socket(zmq::REQ)?;
    client.set_linger(0)?;
    client.connect(&format!("ipc://{me}-localfe.ipc"))?;
    loop {
        // Send request, get reply.
        helpers::send_string(&client, "HELLO")?;
        if pipe.poll(&[&client], -1)?.is_none() {
            return Ok(()); // Done
        }
        println!("Client: {}", helpers::recv_string(&client)?);
        if pipe.poll(&[], 1000)?.is_none() {
            return Ok(());
        }
    }
}

// The worker task plugs into the load-balancer using a REQ socket.
fn worker_task(pipe: &Pipe, me: &str) -> Result<(), Error> {
    pipe.signal(0)?;
    let worker = pipe.context().socket(zmq::REQ)?;
    worker.set_linger(0)?;
    worker.connect(&format!("ipc://{me}-localbe.ipc"))?;

    // Tell broker we're ready for work.
    worker.send(WORKER_READY, 0)?;

    // Process messages as they arrive.
    while pipe.poll(&[&worker], -1)?.is_some() {
        let mut msg = Message::recv_now(&worker)?;
        println!(
            "{}",
            format_frame("Worker: ", msg.last().unwrap_or_default())
        );
        msg.set_last("OK");
        msg.send(&worker)?;
    }
    Ok(())
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
fn main() -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // First argument is this broker's name; other arguments are our peers' names.
    let args: Vec<String> = std::env::args().collect();
    let Some(me) = args.get(1).cloned() else {
        println!("syntax: peering2 me {{you}}...");
        return Ok(());
    };
    let peers = &args[2..];
    println!("I: preparing broker at {me}...");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let router = || -> Result<zmq::Socket, Error> {
        let socket = context.socket(zmq::ROUTER)?;
        socket.set_linger(0)?;
        socket.set_router_mandatory(true)?; // report unroutable messages
        Ok(socket)
    };

    // Bind cloud frontend to endpoint.
    let cloudfe = router()?;
    cloudfe.set_identity(me.as_bytes())?;
    cloudfe.bind(&format!("ipc://{me}-cloud.ipc"))?;

    // Connect cloud backend to all peers.
    let cloudbe = router()?;
    cloudbe.set_identity(me.as_bytes())?;
    // Only routes to live connections: without IMMEDIATE a connecting socket
    // keeps the route of a dead peer and queues our requests for it, so
    // ROUTER_MANDATORY could never tell us the peer is gone.
    cloudbe.set_immediate(true)?;
    for peer in peers {
        println!("I: connecting to cloud frontend at '{peer}'");
        cloudbe.connect(&format!("ipc://{peer}-cloud.ipc"))?;
    }
    // Prepare local frontend and backend.
    let localfe = router()?;
    localfe.bind(&format!("ipc://{me}-localfe.ipc"))?;
    let localbe = router()?;
    localbe.bind(&format!("ipc://{me}-localbe.ipc"))?;

    // Get user to tell us when we can start...
    print!("Press Enter when all brokers are started: ");
    helpers::flush_stdout();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);

    // Start local workers, then local clients.
    let mut actors = Vec::new();
    for _ in 0..NBR_WORKERS {
        actors.push(start(&context, &me, worker_task)?);
    }
    for _ in 0..NBR_CLIENTS {
        actors.push(start(&context, &me, client_task)?);
    }
    let broker = Broker {
        peers,
        cloudfe,
        cloudbe,
        localfe,
        localbe,
    };
    let result = broker.run();
    drop(actors);
    match result {
        Ok(()) | Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}

struct Broker<'a> {
    peers: &'a [String],
    cloudfe: zmq::Socket,
    cloudbe: zmq::Socket,
    localfe: zmq::Socket,
    localbe: zmq::Socket,
}

impl Broker<'_> {
    // Here, we handle the request-reply flow. We're using load-balancing to
    // poll workers at all times, and clients only when there are one or more
    // workers available.
    fn run(&self) -> Result<(), Error> {
        // Least recently used queue of available workers.
        let mut workers: VecDeque<Vec<u8>> = VecDeque::new();
        loop {
            // First, route any waiting replies from workers. If we have no
            // workers, wait indefinitely.
            let timeout = if workers.is_empty() { -1 } else { 1000 };
            let ready = interrupt::poll(&[&self.localbe, &self.cloudbe], timeout)?;
            if ready[0] {
                // Handle reply from local worker.
                match envelope::split(Message::recv_now(&self.localbe)?) {
                    Err(e) => log::warn!("localbe: malformed message dropped: {e}"),
                    Ok((worker, msg)) => {
                        workers.push_back(worker);
                        // If it's READY, don't route the message any further.
                        if msg.first() != Some(WORKER_READY) {
                            self.route_reply(msg)?;
                        }
                    }
                }
            } else if ready[1] {
                // Or handle reply from peer broker: we don't use the peer
                // broker identity for anything.
                let mut msg = Message::recv_now(&self.cloudbe)?;
                msg.unwrap_envelope();
                if msg.is_empty() {
                    log::warn!("cloudbe: empty reply dropped");
                } else {
                    self.route_reply(msg)?;
                }
            }

            // Now we route as many client requests as we have worker capacity
            // for. We may reroute requests from our local frontend, but not
            // from the cloud frontend. We reroute randomly now, just to test
            // things out; peering3 does it properly with cloud capacity.
            while !workers.is_empty() {
                // We'll do peer brokers first, to prevent starvation.
                let ready = interrupt::poll(&[&self.cloudfe, &self.localfe], 0)?;
                let (mut msg, reroutable) = if ready[0] {
                    (Message::recv_now(&self.cloudfe)?, false)
                } else if ready[1] {
                    (Message::recv_now(&self.localfe)?, true)
                } else {
                    break; // No work, go back to backends.
                };
                if !is_request(&msg, !reroutable) {
                    log::warn!("frontend: malformed request dropped: {msg:?}");
                    continue;
                }
                // If reroutable, send to cloud 20% of the time. Here we'd
                // normally use cloud status information.
                if reroutable && !self.peers.is_empty() && helpers::randof(5) == 0 {
                    // Route to random broker peer.
                    let peer = &self.peers[helpers::randof(self.peers.len() as u32) as usize];
                    let mut rerouted = msg.clone();
                    rerouted.push(peer.as_str());
                    match rerouted.send(&self.cloudbe) {
                        Ok(()) => continue,
                        Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => {
                            log::warn!("peer {peer} is not connected: serving the request here");
                        }
                        Err(e) => return Err(e),
                    }
                }
                if let Some(worker) = workers.pop_front() {
                    msg.wrap_envelope(worker);
                    self.send_logged(msg, &self.localbe, "localbe")?;
                }
            }
        }
    }

    /// Routes a reply to the cloud if it's addressed to a broker, else to
    /// our client.
    fn route_reply(&self, msg: Message) -> Result<(), Error> {
        let to_peer = msg
            .first()
            .is_some_and(|first| self.peers.iter().any(|p| p.as_bytes() == first));
        if to_peer {
            self.send_logged(msg, &self.cloudfe, "cloudfe")
        } else {
            self.send_logged(msg, &self.localfe, "localfe")
        }
    }

    /// Sends on a ROUTER, logging (not failing on) an unknown destination.
    fn send_logged(&self, msg: Message, socket: &zmq::Socket, name: &str) -> Result<(), Error> {
        let destination = msg.first().map(zguide::message::show).unwrap_or_default();
        match msg.send(socket) {
            Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => {
                log::warn!("{name}: no peer {destination}, message dropped");
                Ok(())
            }
            other => other,
        }
    }
}

/// True for `[client][""][body…]`, after the peer's identity if `from_peer`.
fn is_request(msg: &Message, from_peer: bool) -> bool {
    let mut msg = msg.clone();
    if from_peer {
        msg.pop();
    }
    envelope::split(msg).is_ok()
}
