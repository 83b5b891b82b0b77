//! §S2 The CZMQ High-Level API (`lbbroker3.c`): the load balancer as a reactor.
//!
//! The same topology as `lbbroker` (`ipc://frontend.ipc`, `ipc://backend.ipc`
//! in the working directory; 10 client and 3 worker actors), but the broker
//! is two handlers on a [`Reactor`]: one for worker messages on the backend,
//! one for client requests on the frontend. The frontend reader exists only
//! while a worker is free: the backend handler adds it when the queue goes
//! from 0 to 1 worker, the frontend handler ends it when the last free worker
//! is taken. Free workers are served least recently used first. Workers signal
//! READY with the single byte `0x01`, print `Worker: [005] HELLO` and answer
//! `OK`; clients send `HELLO` once a second for ever and print `Client: OK`.
//! Runs until Ctrl-C. Runs alone.
//!
//! Differs from the C: malformed messages are logged and dropped, replies for
//! clients that are gone are logged (ROUTER_MANDATORY), Ctrl-C/SIGTERM ends it
//! with exit code 0 and stops the actors without waiting out their sleep, and
//! `ZGUIDE_CLIENTS`/`ZGUIDE_WORKERS` (defaults 10 and 3) set the number of
//! client and worker actors (tests use 0 and bring their own).

use std::collections::VecDeque;

use zguide::actor::{Actor, Pipe};
use zguide::message::format_frame;
use zguide::reactor::Reactor;
use zguide::{envelope, helpers, interrupt, Error, Message};

const WORKER_READY: &[u8] = b"\x01"; // Signals worker is ready

// Basic request-reply client using a REQ socket: one HELLO a second.
fn client_task(pipe: &Pipe) {
    if let Err(e) = client(pipe) {
        log::error!("client: {e}");
    }
}

fn client(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?;
    let client = pipe.context().socket(zmq::REQ)?;
    client.connect("ipc://frontend.ipc")?;
    loop {
        helpers::send_string(&client, "HELLO")?;
        if pipe.poll(&[&client], -1)?.is_none() {
            return Ok(()); // Shutdown
        }
        println!("Client: {}", helpers::recv_string(&client)?);
        // Sleep a second, but wake at once if told to stop.
        if pipe.poll(&[], 1000)?.is_none() {
            return Ok(());
        }
    }
}

// Worker using a REQ socket to do load-balancing.
fn worker_task(pipe: &Pipe) {
    if let Err(e) = worker(pipe) {
        log::error!("worker: {e}");
    }
}

fn worker(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?;
    let worker = pipe.context().socket(zmq::REQ)?;
    worker.connect("ipc://backend.ipc")?;

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

// Our load-balancer structure, passed to reactor handlers.
struct LbBroker {
    frontend: zmq::Socket,      // Listen to clients
    backend: zmq::Socket,       // Listen to workers
    workers: VecDeque<Vec<u8>>, // List of ready workers, least recently used first
}

// In the reactor design, each time a message arrives on a socket, the
// reactor passes it to a handler function. We have two handlers; one for the
// frontend, one for the backend.

// Handle input from client, on frontend.
fn handle_frontend(reactor: &mut Reactor<LbBroker>, this: &mut LbBroker) -> Result<(), Error> {
    let msg = Message::recv_now(&this.frontend)?;
    if let Err(e) = envelope::split(msg.clone()) {
        log::warn!("frontend: malformed request dropped: {e}");
        return Ok(());
    }
    if let Some(worker) = this.workers.pop_front() {
        envelope::to(worker, msg).send(&this.backend)?;
    }
    // Cancel reader on frontend if we went from 1 to 0 workers.
    if this.workers.is_empty() {
        reactor.reader_end("frontend");
    }
    Ok(())
}

// Handle input from worker, on backend.
fn handle_backend(reactor: &mut Reactor<LbBroker>, this: &mut LbBroker) -> Result<(), Error> {
    // Use worker identity for load-balancing.
    let (identity, msg) = match envelope::split(Message::recv_now(&this.backend)?) {
        Ok(parts) => parts,
        Err(e) => {
            log::warn!("backend: malformed message dropped: {e}");
            return Ok(());
        }
    };
    this.workers.push_back(identity);

    // Enable reader on frontend if we went from 0 to 1 workers.
    if this.workers.len() == 1 {
        reactor.reader("frontend", |b: &LbBroker| &b.frontend, handle_frontend);
    }
    // Forward message to client if it's not a READY.
    if msg.first() == Some(WORKER_READY) {
        return Ok(());
    }
    let (client, reply) = match envelope::split(msg) {
        Ok(parts) => parts,
        Err(e) => {
            log::warn!("backend: malformed reply dropped: {e}");
            return Ok(());
        }
    };
    match envelope::to(client.clone(), reply).send(&this.frontend) {
        Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => {
            log::warn!(
                "frontend: reply for unknown client {} dropped",
                zguide::message::show(&client)
            );
            Ok(())
        }
        other => other,
    }
}

// The main task sets up child tasks, then starts its reactor. If you press
// Ctrl-C, the reactor exits and the main task shuts down.
fn main() -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let mut broker = LbBroker {
        frontend: context.socket(zmq::ROUTER)?,
        backend: context.socket(zmq::ROUTER)?,
        workers: VecDeque::new(),
    };
    broker.frontend.set_router_mandatory(true)?;
    broker.frontend.set_linger(0)?;
    broker.backend.set_linger(0)?;
    broker.frontend.bind("ipc://frontend.ipc")?;
    broker.backend.bind("ipc://backend.ipc")?;

    let mut actors = Vec::new();
    for _ in 0..helpers::env_count("ZGUIDE_CLIENTS", 10) {
        actors.push(Actor::new(&context, client_task)?);
    }
    for _ in 0..helpers::env_count("ZGUIDE_WORKERS", 3) {
        actors.push(Actor::new(&context, worker_task)?);
    }

    // Prepare reactor and fire it up.
    let mut reactor = Reactor::new();
    reactor.reader("backend", |b: &LbBroker| &b.backend, handle_backend);
    let result = reactor.run(&mut broker);
    drop(actors);
    match result {
        Ok(()) | Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}
