//! §S2 The CZMQ High-Level API (`lbbroker2.c`): `lbbroker` with actors and messages.
//!
//! The same broker as `lbbroker`, on the same endpoints (`ipc://frontend.ipc`,
//! `ipc://backend.ipc` in the working directory), written with the high-level
//! pieces: clients and workers are [`Actor`]s (a thread plus a pipe), and the
//! broker handles whole [`Message`]s instead of frame by frame. Workers print
//! the request frame (`Worker: [005] HELLO`) and answer by replacing it with
//! `OK`; clients print `Client: OK`. The broker serves free workers least
//! recently used first, reads the frontend only while one is free, and exits
//! after 10 replies. Runs alone.
//!
//! Differs from the C:
//! * a worker goes on the free list only after its message proved well
//!   formed, and never twice; malformed messages are logged and dropped;
//! * no send blocks (policy): a reply its client cannot take now (gone, or
//!   not reading: ROUTER_MANDATORY) is dropped and logged, and a request goes
//!   to the next free worker if the first is gone or full, or is dropped
//!   (logged) if none can take it;
//! * workers print the request through `show` (cut short, escaped; the
//!   guide's `HELLO` prints as in the C);
//! * sockets have LINGER 1 s and take frames of at most 1 MiB; at most 10 000
//!   workers are remembered as free; warnings about peers are limited to 20
//!   lines a second, wire data cut short and escaped;
//! * Ctrl-C/SIGTERM ends it cleanly, and `ZGUIDE_CLIENTS`/`ZGUIDE_WORKERS`
//!   (defaults 10 and 3) set the number of client and worker actors; it exits
//!   after as many replies as it started clients, so with `ZGUIDE_CLIENTS=0`
//!   it serves outside clients until Ctrl-C.

use std::process::ExitCode;

use zguide::actor::{Actor, Pipe};
use zguide::log_limit::complain;
use zguide::routing::{self, WorkerQueue};
use zguide::{envelope, helpers, interrupt, program, socket, Error, Message};

const WORKER_READY: &[u8] = b"READY"; // Signals worker is ready

// Basic request-reply client using a REQ socket.
fn client_task(pipe: &Pipe) {
    if let Err(e) = client(pipe) {
        log::error!("client: {e}");
    }
}

fn client(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?; // Tell the owner we have started.
    let client = socket::new(pipe.context(), zmq::REQ).connect("ipc://frontend.ipc")?;

    // Send request, get reply. We do not watch the pipe meanwhile: the
    // broker stops us only after our reply went out, and we must print it
    // first (Ctrl-C still ends the wait).
    helpers::send_string(&client, "HELLO")?;
    println!("Client: {}", helpers::recv_string(&client)?);
    Ok(())
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

    // Process messages as they arrive, until told to stop.
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

fn main() -> ExitCode {
    program::run(broker)
}

fn broker() -> Result<(), Error> {
    let context = zmq::Context::new();
    // ROUTER_MANDATORY: a send to a gone or full peer fails at once, so the
    // broker can drop it and go on instead of blocking.
    let frontend = socket::new(&context, zmq::ROUTER)
        .router_mandatory()
        .bind("ipc://frontend.ipc")?;
    let backend = socket::new(&context, zmq::ROUTER)
        .router_mandatory()
        .bind("ipc://backend.ipc")?;

    // The actors share our context: their pipes are inproc endpoints.
    let nbr_clients = helpers::env_count("ZGUIDE_CLIENTS", 10);
    let mut actors = Vec::new();
    for _ in 0..nbr_clients {
        actors.push(Actor::new(&context, client_task)?);
    }
    for _ in 0..helpers::env_count("ZGUIDE_WORKERS", 3) {
        actors.push(Actor::new(&context, worker_task)?);
    }

    // Queue of available workers, least recently used first.
    let mut workers = WorkerQueue::new();
    let mut client_nbr = nbr_clients;
    loop {
        // Poll frontend only if we have available workers.
        let sockets: &[&zmq::Socket] = if workers.is_empty() {
            &[&backend]
        } else {
            &[&backend, &frontend]
        };
        let ready = match interrupt::poll(sockets, -1) {
            Ok(ready) => ready,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };
        // Handle worker activity on backend: use the worker identity for
        // load-balancing, and forward anything but READY to its client. The
        // worker is free again only once its whole message checked out.
        if ready[0] {
            let msg = Message::recv_now(&backend)?;
            let (identity, reply) = match envelope::from_worker(msg, WORKER_READY) {
                Ok(parts) => parts,
                Err(e) => {
                    complain(format_args!("backend: malformed message dropped: {e}"));
                    continue;
                }
            };
            let Some(reply) = reply else {
                workers.ready(identity);
                continue;
            };
            if let Err(e) = envelope::check(&reply) {
                complain(format_args!("backend: malformed reply dropped: {e}"));
                continue;
            }
            workers.ready(identity);
            if routing::send_or_log(reply, &frontend, "frontend")? {
                client_nbr = client_nbr.saturating_sub(1);
                if client_nbr == 0 && nbr_clients > 0 {
                    break; // Exit after N messages.
                }
            }
        } else if ready.get(1) == Some(&true) {
            // Get client request, route to first available worker.
            let msg = Message::recv_now(&frontend)?;
            match envelope::check(&msg) {
                Ok(()) => {
                    routing::dispatch(&backend, &mut workers, &msg)?;
                }
                Err(e) => complain(format_args!("frontend: malformed request dropped: {e}")),
            }
        }
    }
    // Dropping the actors stops and joins them: clients first, so each has
    // printed its reply before we exit.
    drop(actors);
    Ok(())
}
