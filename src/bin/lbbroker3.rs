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
//! Differs from the C:
//! * a worker goes on the free list only after its message proved well
//!   formed, and never twice (the C lists whoever sent anything: a peer that
//!   sends garbage, or READY twice, is then handed requests nobody answers,
//!   until every client waits for ever); malformed messages are logged and
//!   dropped;
//! * no send blocks (policy): a reply its client cannot take now (gone, or
//!   not reading: ROUTER_MANDATORY) is dropped and logged, so a client that
//!   sends requests and never reads replies no longer freezes the broker for
//!   everybody; a request goes to the next free worker if the first is gone
//!   or full, or is dropped (logged) if none can take it;
//! * workers print the request through `show` (cut short, escaped; the
//!   guide's `HELLO` prints as in the C);
//! * sockets take frames of at most 1 MiB (larger ones close that peer's
//!   connection); at most 10 000 workers are remembered as free; warnings
//!   about peers are limited to 20 lines a second, wire data cut short and
//!   escaped;
//! * Ctrl-C/SIGTERM ends it with exit code 0 and stops the actors without
//!   waiting out their sleep, and `ZGUIDE_CLIENTS`/`ZGUIDE_WORKERS` (defaults
//!   10 and 3) set the number of client and worker actors (tests use 0 and
//!   bring their own).

use std::process::ExitCode;

use zguide::actor::{Actor, Pipe};
use zguide::log_limit::complain;
use zguide::reactor::Reactor;
use zguide::routing::{self, WorkerQueue};
use zguide::{envelope, helpers, program, socket, Error, Message};

const WORKER_READY: &[u8] = b"\x01"; // Signals worker is ready

// Basic request-reply client using a REQ socket: one HELLO a second.
fn client_task(pipe: &Pipe) {
    if let Err(e) = client(pipe) {
        log::error!("client: {e}");
    }
}

fn client(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?;
    let client = socket::new(pipe.context(), zmq::REQ).connect("ipc://frontend.ipc")?;
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
    let worker = socket::new(pipe.context(), zmq::REQ).connect("ipc://backend.ipc")?;

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

// Our load-balancer structure, passed to reactor handlers.
struct LbBroker {
    frontend: zmq::Socket, // Listen to clients
    backend: zmq::Socket,  // Listen to workers
    workers: WorkerQueue,  // List of ready workers, least recently used first
}

// In the reactor design, each time a message arrives on a socket, the
// reactor passes it to a handler function. We have two handlers; one for the
// frontend, one for the backend.

// Handle input from client, on frontend.
fn handle_frontend(reactor: &mut Reactor<LbBroker>, this: &mut LbBroker) -> Result<(), Error> {
    let msg = Message::recv_now(&this.frontend)?;
    match envelope::check(&msg) {
        Ok(()) => {
            routing::dispatch(&this.backend, &mut this.workers, &msg)?;
        }
        Err(e) => complain(format_args!("frontend: malformed request dropped: {e}")),
    }
    // Cancel reader on frontend if we went from 1 to 0 workers.
    if this.workers.is_empty() {
        reactor.reader_end("frontend");
    }
    Ok(())
}

// Handle input from worker, on backend.
fn handle_backend(reactor: &mut Reactor<LbBroker>, this: &mut LbBroker) -> Result<(), Error> {
    // Use worker identity for load-balancing, once its message checked out:
    // [worker][""][READY] or [worker][""][client][""][reply].
    let msg = Message::recv_now(&this.backend)?;
    let (identity, reply) = match envelope::from_worker(msg, WORKER_READY) {
        Ok(parts) => parts,
        Err(e) => {
            complain(format_args!("backend: malformed message dropped: {e}"));
            return Ok(());
        }
    };
    if let Some(reply) = &reply {
        if let Err(e) = envelope::check(reply) {
            complain(format_args!("backend: malformed reply dropped: {e}"));
            return Ok(());
        }
    }
    this.workers.ready(identity);

    // Enable reader on frontend if we went from 0 to 1 workers.
    if this.workers.len() == 1 {
        reactor.reader("frontend", |b: &LbBroker| &b.frontend, handle_frontend);
    }
    // Forward message to client if it's not a READY.
    if let Some(reply) = reply {
        routing::send_or_log(reply, &this.frontend, "frontend")?;
    }
    Ok(())
}

// The main task sets up child tasks, then starts its reactor. If you press
// Ctrl-C, the reactor exits and the main task shuts down.
fn main() -> ExitCode {
    program::run(|| {
        // ROUTER_MANDATORY: a send to a gone or full peer fails at once, so
        // the broker can drop it and go on instead of blocking.
        let context = zmq::Context::new();
        let mut broker = LbBroker {
            frontend: socket::new(&context, zmq::ROUTER)
                .router_mandatory()
                .bind("ipc://frontend.ipc")?,
            backend: socket::new(&context, zmq::ROUTER)
                .router_mandatory()
                .bind("ipc://backend.ipc")?,
            workers: WorkerQueue::new(),
        };

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
        result
    })
}
