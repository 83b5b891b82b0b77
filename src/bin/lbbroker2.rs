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
//! Differs from the C: malformed messages are logged and dropped, replies for
//! clients that are gone are logged (ROUTER_MANDATORY), Ctrl-C/SIGTERM ends it
//! cleanly, and `ZGUIDE_CLIENTS`/`ZGUIDE_WORKERS` (defaults 10 and 3) set the
//! number of client and worker actors; it exits after as many replies as it
//! started clients, so with `ZGUIDE_CLIENTS=0` it serves outside clients
//! until Ctrl-C.

use std::collections::VecDeque;

use zguide::actor::{Actor, Pipe};
use zguide::message::format_frame;
use zguide::{envelope, helpers, interrupt, Error, Message};

const WORKER_READY: &[u8] = b"READY"; // Signals worker is ready

// Basic request-reply client using a REQ socket.
fn client_task(pipe: &Pipe) {
    if let Err(e) = client(pipe) {
        log::error!("client: {e}");
    }
}

fn client(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?; // Tell the owner we have started.
    let client = pipe.context().socket(zmq::REQ)?;
    client.connect("ipc://frontend.ipc")?;

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
    let worker = pipe.context().socket(zmq::REQ)?;
    worker.connect("ipc://backend.ipc")?;

    // Tell broker we're ready for work.
    worker.send(WORKER_READY, 0)?;

    // Process messages as they arrive, until told to stop.
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

fn main() -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let frontend = context.socket(zmq::ROUTER)?;
    let backend = context.socket(zmq::ROUTER)?;
    frontend.set_router_mandatory(true)?;
    frontend.set_linger(1000)?;
    backend.set_linger(1000)?;
    frontend.bind("ipc://frontend.ipc")?;
    backend.bind("ipc://backend.ipc")?;

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
    let mut workers: VecDeque<Vec<u8>> = VecDeque::new();
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
        // load-balancing, and forward anything but READY to its client.
        if ready[0] {
            let (identity, msg) = match envelope::split(Message::recv_now(&backend)?) {
                Ok(parts) => parts,
                Err(e) => {
                    log::warn!("backend: malformed message dropped: {e}");
                    continue;
                }
            };
            workers.push_back(identity);
            if msg.first() == Some(WORKER_READY) {
                continue;
            }
            let (client, reply) = match envelope::split(msg) {
                Ok(parts) => parts,
                Err(e) => {
                    log::warn!("backend: malformed reply dropped: {e}");
                    continue;
                }
            };
            match envelope::to(client.clone(), reply).send(&frontend) {
                Ok(()) => {
                    client_nbr = client_nbr.saturating_sub(1);
                    if client_nbr == 0 && nbr_clients > 0 {
                        break; // Exit after N messages.
                    }
                }
                Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => {
                    log::warn!(
                        "frontend: reply for unknown client {} dropped",
                        zguide::message::show(&client)
                    )
                }
                Err(e) => return Err(e),
            }
        } else if ready.get(1) == Some(&true) {
            // Get client request, route to first available worker.
            let msg = Message::recv_now(&frontend)?;
            if let Err(e) = envelope::split(msg.clone()) {
                log::warn!("frontend: malformed request dropped: {e}");
                continue;
            }
            if let Some(worker) = workers.pop_front() {
                envelope::to(worker, msg).send(&backend)?;
            }
        }
    }
    // Dropping the actors stops and joins them: clients first, so each has
    // printed its reply before we exit.
    drop(actors);
    Ok(())
}
