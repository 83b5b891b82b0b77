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
//! * a malformed message (wrong frame count, missing delimiter) is logged and
//!   dropped where the C `assert`s, and a reply for a client that is gone is
//!   logged (ROUTER_MANDATORY) where the C drops it silently;
//! * the broker waits for its clients to print their reply before exiting (the
//!   C returns at once and may cut the last `Client: OK`);
//! * Ctrl-C/SIGTERM ends it cleanly;
//! * for tests, `ZGUIDE_CLIENTS` and `ZGUIDE_WORKERS` (defaults 10 and 3) set
//!   how many client and worker threads to start; the broker exits after as
//!   many replies as it started clients, so with `ZGUIDE_CLIENTS=0` it serves
//!   outside clients until Ctrl-C.

use std::collections::VecDeque;
use std::thread;

use zguide::{envelope, helpers, interrupt, Error, Message};

const WORKER_READY: &[u8] = b"READY";

// Basic request-reply client using a REQ socket, with a printable identity.
fn client_task() -> Result<(), Error> {
    let context = zmq::Context::new();
    let client = context.socket(zmq::REQ)?;
    helpers::set_random_identity(&client)?;
    client.connect("ipc://frontend.ipc")?;

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
    let worker = context.socket(zmq::REQ)?;
    helpers::set_random_identity(&worker)?;
    worker.connect("ipc://backend.ipc")?;

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
        println!(
            "Worker: {}",
            String::from_utf8_lossy(request.last().unwrap_or_default())
        );
        envelope::to(client, Message::from_frames(["OK"])).send(&worker)?;
    }
}

fn main() -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let frontend = context.socket(zmq::ROUTER)?;
    let backend = context.socket(zmq::ROUTER)?;
    // Report replies to clients that are gone instead of dropping them silently.
    frontend.set_router_mandatory(true)?;
    frontend.set_linger(1000)?;
    backend.set_linger(1000)?;
    frontend.bind("ipc://frontend.ipc")?;
    backend.bind("ipc://backend.ipc")?;

    let nbr_clients = helpers::env_count("ZGUIDE_CLIENTS", 10);
    let clients: Vec<_> = (0..nbr_clients)
        .map(|_| thread::spawn(client_task))
        .collect();
    for _ in 0..helpers::env_count("ZGUIDE_WORKERS", 3) {
        thread::spawn(worker_task);
    }

    // The LRU queue: free workers, least recently used at the front.
    let mut worker_queue: VecDeque<Vec<u8>> = VecDeque::new();
    let mut replies = 0;
    loop {
        // Poll the frontend only if we have available workers.
        let sockets: &[&zmq::Socket] = if worker_queue.is_empty() {
            &[&backend]
        } else {
            &[&backend, &frontend]
        };
        let ready = match interrupt::poll(sockets, -1) {
            Ok(ready) => ready,
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        };

        // Handle worker activity on backend:
        // [worker][""][READY] or [worker][""][client][""][reply].
        if ready[0] {
            let msg = Message::recv_now(&backend)?;
            match worker_message(msg) {
                Err(e) => log::warn!("backend: malformed message dropped: {e}"),
                Ok((worker, None)) => worker_queue.push_back(worker),
                Ok((worker, Some((client, reply)))) => {
                    worker_queue.push_back(worker);
                    match envelope::to(client.clone(), reply).send(&frontend) {
                        Ok(()) => replies += 1,
                        Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => log::warn!(
                            "frontend: reply for unknown client {} dropped",
                            zguide::message::show(&client)
                        ),
                        Err(e) => return Err(e),
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
                Err(e) => log::warn!("frontend: malformed request dropped: {e}"),
                Ok((client, request)) => {
                    let Some(worker) = worker_queue.pop_front() else {
                        continue; // cannot happen: we poll only with a free worker
                    };
                    envelope::to(worker, envelope::to(client, request)).send(&backend)?;
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
