//! §18 A Load Balancing Message Broker (`lbbroker.c`): the LRU queue.
//!
//! One process plays three roles, each thread with its own context as if it
//! were a separate program. 10 clients (REQ) connect to the frontend ROUTER
//! at `ipc://frontend.ipc`, send `HELLO` and print `Client: OK`. 3 workers
//! (REQ) connect to the backend ROUTER at `ipc://backend.ipc`, say `READY`,
//! then print `Worker: HELLO` for each request and answer `OK`. The broker
//! keeps a queue of free workers: a worker joins the back when it says READY
//! or returns a reply, and each client request goes to the worker at the
//! front, the least recently used one. It reads the frontend only while a
//! worker is free, so waiting requests stay in ZeroMQ's queues. It exits after
//! 10 replies. The `.ipc` files are made in the working directory. Runs alone.
//!
//! Differs from the C:
//! * every message is checked before it is acted on: a malformed one (wrong
//!   frame count, missing delimiter) is logged and dropped where the C
//!   `assert`s, and a worker goes on the free list only after its message
//!   proved well formed, and never twice (a worker listed twice, or a peer
//!   that sent garbage, would be handed requests nobody answers);
//! * no send blocks (policy): the broker never waits for a peer that stopped
//!   reading. A reply its client cannot take now (gone, or its queue full
//!   because it does not read) is dropped and logged (ROUTER_MANDATORY on the
//!   frontend; the C drops replies for gone clients silently and would block
//!   on a full one); a request goes to the next free worker if the first is
//!   gone or full, and is dropped (logged) if none can take it;
//! * sockets have LINGER 1 s and take frames of at most 1 MiB (larger ones
//!   close that peer's connection); at most 10 000 workers are remembered as
//!   free; warnings about peers are limited to 20 lines a second, and wire
//!   data in them, and in the workers' `Worker: HELLO` lines, is cut short
//!   and escaped (`show`);
//! * the broker waits for its clients to print their reply before exiting (the
//!   C returns at once and may cut the last `Client: OK`);
//! * Ctrl-C/SIGTERM ends it cleanly, with exit code 0;
//! * for tests, `ZGUIDE_CLIENTS` and `ZGUIDE_WORKERS` (defaults 10 and 3) set
//!   how many client and worker threads to start; the broker exits after as
//!   many replies as it started clients, so with `ZGUIDE_CLIENTS=0` it serves
//!   outside clients until Ctrl-C.

use std::process::ExitCode;
use std::thread;

use zguide::log_limit::complain;
use zguide::message::show;
use zguide::routing::{self, WorkerQueue};
use zguide::{envelope, helpers, interrupt, program, socket, Error, Message};

const WORKER_READY: &[u8] = b"READY";

// Basic request-reply client using a REQ socket, with a printable identity.
fn client_task() -> Result<(), Error> {
    let context = zmq::Context::new();
    let client = socket::new(&context, zmq::REQ)
        .identity(helpers::random_identity())
        .connect("ipc://frontend.ipc")?;

    // Send request, get reply.
    helpers::send_string(&client, "HELLO")?;
    let reply = helpers::recv_string(&client)?;
    println!("Client: {reply}");
    Ok(())
}

// Worker using a REQ socket to do load-balancing. Its REQ socket strips the
// broker's envelope, so a request arrives as [client][""][request].
fn worker_task() -> Result<(), Error> {
    let context = zmq::Context::new();
    let worker = socket::new(&context, zmq::REQ)
        .identity(helpers::random_identity())
        .connect("ipc://backend.ipc")?;

    // Tell broker we're ready for work.
    worker.send(WORKER_READY, 0)?;

    loop {
        let (client, request) = match envelope::split_exact(Message::recv(&worker)?, 1) {
            Ok(parts) => parts,
            Err(e) => {
                // REQ must answer before it may receive again: READY puts
                // us back in the broker's queue.
                log::warn!("worker: bad request dropped: {e}");
                worker.send(WORKER_READY, 0)?;
                continue;
            }
        };
        println!("Worker: {}", show(request.last().unwrap_or_default()));
        envelope::to(client, Message::from_frames(["OK"])).send(&worker)?;
    }
}

fn main() -> ExitCode {
    program::run(broker)
}

fn broker() -> Result<(), Error> {
    let context = zmq::Context::new();
    // Both ROUTER_MANDATORY: a send to a gone or full peer fails at once, so
    // the broker can drop it and go on instead of blocking or losing it silently.
    let frontend = socket::new(&context, zmq::ROUTER)
        .router_mandatory()
        .bind("ipc://frontend.ipc")?;
    let backend = socket::new(&context, zmq::ROUTER)
        .router_mandatory()
        .bind("ipc://backend.ipc")?;

    let nbr_clients = helpers::env_count("ZGUIDE_CLIENTS", 10);
    let clients: Vec<_> = (0..nbr_clients)
        .map(|_| thread::spawn(client_task))
        .collect();
    for _ in 0..helpers::env_count("ZGUIDE_WORKERS", 3) {
        thread::spawn(worker_task);
    }

    // The LRU queue: free workers, least recently used at the front.
    let mut worker_queue = WorkerQueue::new();
    let mut replies = 0;
    loop {
        // Poll the frontend only if we have available workers.
        let sockets: &[&zmq::Socket] = if worker_queue.is_empty() {
            &[&backend]
        } else {
            &[&backend, &frontend]
        };
        let ready = interrupt::poll(sockets, -1)?;

        // Handle worker activity on backend:
        // [worker][""][READY] or [worker][""][client][""][reply].
        // The worker is free again only once its message checked out.
        if ready[0] {
            let msg = Message::recv_now(&backend)?;
            match worker_message(msg) {
                Err(e) => complain(format_args!("backend: malformed message dropped: {e}")),
                Ok((worker, None)) => {
                    worker_queue.ready(worker);
                }
                Ok((worker, Some((client, reply)))) => {
                    worker_queue.ready(worker);
                    let reply = envelope::to(client, reply);
                    if routing::send_or_log(reply, &frontend, "frontend")? {
                        replies += 1;
                    }
                    if nbr_clients > 0 && replies == nbr_clients {
                        break; // Exit after N messages.
                    }
                }
            }
        }
        // Here is how we handle a client request: [client][""][request] goes
        // to the least recently used worker, wrapped in that worker's envelope.
        if ready.get(1) == Some(&true) {
            let msg = Message::recv_now(&frontend)?;
            match envelope::split_exact(msg, 1) {
                Err(e) => complain(format_args!("frontend: malformed request dropped: {e}")),
                Ok((client, request)) => {
                    let request = envelope::to(client, request);
                    routing::dispatch(&backend, &mut worker_queue, &request)?;
                }
            }
        }
    }
    // Let every client print its reply before the process ends.
    for client in clients {
        let _ = client.join();
    }
    Ok(())
}

/// A worker's message: its identity, and the client's identity and reply
/// unless it is the READY signal.
type WorkerMessage = (Vec<u8>, Option<(Vec<u8>, Message)>);

fn worker_message(msg: Message) -> Result<WorkerMessage, Error> {
    let (worker, body) = envelope::split(msg)?;
    if body.len() == 1 && body.first() == Some(WORKER_READY) {
        return Ok((worker, None));
    }
    let (client, reply) = envelope::split_exact(body, 1)?;
    Ok((worker, Some((client, reply))))
}
