//! §25 Robust Reliable Queuing, Paranoid Pirate (`ppqueue.c`): a load-balancing
//! queue that heartbeats its workers and forgets the dead ones.
//!
//! Clients (REQ, e.g. `lpclient`) connect to the ROUTER at `tcp://*:5555`,
//! workers (DEALER, `ppworker`) to the ROUTER at `tcp://*:5556`, and speak the
//! Paranoid Pirate Protocol ([`zguide::ppp`]). Any valid message from a worker
//! (READY, HEARTBEAT or a reply) puts it at the tail of the ready list with a
//! fresh expiry of 3 s; each client request goes to the head. Every second the
//! queue heartbeats every idle worker and purges those it has not heard from
//! for three heartbeat intervals. Runs until Ctrl-C; prints nothing unless
//! something is wrong. Run `lpclient` and a few `ppworker`s beside it, and
//! kill or restart any of them.
//!
//! Differs from the C:
//! * `-v` logs the queue's decisions (`D: worker <id> ready (<n> idle)`,
//!   `D: request to worker <id>`, `D: worker <id> expired, purged`), so you and
//!   the tests can watch registration, dispatch and purging;
//! * invalid messages are checked, logged and dropped, and do not count as a
//!   sign of life: a worker message must be exactly READY/HEARTBEAT or a reply
//!   with a client envelope (`E: invalid message from worker <id>: <why>`),
//!   a client request must be `[client][""][body]`
//!   (`E: invalid message from client: …`). The C treats any worker traffic as
//!   readiness and forwards client messages unchecked;
//! * the purge checks every idle worker, not only the head of the list;
//! * the backend is a ROUTER_MANDATORY socket: a request for a worker whose
//!   connection is already gone goes to the next ready worker instead of
//!   being lost (`W: worker <id> has gone, trying the next one`);
//! * Ctrl-C/SIGTERM ends it cleanly with exit code 0.

use std::time::Instant;

use zguide::heartbeat::ReadyList;
use zguide::message::show;
use zguide::ppp::{self, WorkerMessage, HEARTBEAT, HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS};
use zguide::{helpers, interrupt, Error, Message};

fn main() -> Result<(), Error> {
    let verbose = std::env::args().skip(1).any(|arg| arg == "-v");
    helpers::init_log(if verbose { "debug" } else { "info" });
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let frontend = context.socket(zmq::ROUTER)?;
    let backend = context.socket(zmq::ROUTER)?;
    frontend.set_linger(0)?;
    backend.set_linger(0)?;
    backend.set_router_mandatory(true)?;
    frontend.bind("tcp://*:5555")?; // For clients
    backend.bind("tcp://*:5556")?; // For workers

    // Idle workers, longest waiting first, each with its expiry.
    let mut workers: ReadyList<Vec<u8>> = ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS);

    // Send out heartbeats at regular intervals.
    let mut heartbeat_at = Instant::now() + HEARTBEAT_INTERVAL;

    loop {
        // Poll the frontend only if we have available workers; never sleep
        // through a heartbeat.
        let sockets: &[&zmq::Socket] = if workers.is_empty() {
            &[&backend]
        } else {
            &[&backend, &frontend]
        };
        let timeout = heartbeat_at.saturating_duration_since(Instant::now());
        let readable = match interrupt::poll(sockets, timeout.as_millis() as i64) {
            Ok(readable) => readable,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };

        // Handle worker activity on the backend.
        if readable[0] {
            let mut msg = Message::recv_now(&backend)?;
            let identity = msg.pop().unwrap_or_default();
            match ppp::classify_worker_message(msg) {
                WorkerMessage::Invalid(reason) => {
                    log::error!("invalid message from worker {}: {reason}", show(&identity));
                }
                valid => {
                    // Any sign of life from a worker means it's ready.
                    let name = show(&identity);
                    if workers.ready(identity, Instant::now()) {
                        log::debug!("worker {name} ready ({} idle)", workers.len());
                    }
                    // Return a reply to its client.
                    if let WorkerMessage::Reply(reply) = valid {
                        reply.send(&frontend)?;
                    }
                }
            }
        }
        if readable.get(1) == Some(&true) {
            // Get the next client request, route it to the next worker.
            let msg = Message::recv_now(&frontend)?;
            match ppp::check_request(msg) {
                Ok(request) => dispatch(&backend, &mut workers, request)?,
                Err(reason) => log::error!("invalid message from client: {reason}"),
            }
        }

        // After any socket activity: heartbeat idle workers if it's time,
        // then purge the dead ones.
        let now = Instant::now();
        if now >= heartbeat_at {
            for worker in workers.iter() {
                let beat = Message::from_frames([worker.as_slice(), HEARTBEAT]);
                // A worker that is gone cannot be reached (ROUTER_MANDATORY);
                // its expiry will remove it, as in the C.
                match beat.send_flags(&backend, zmq::DONTWAIT) {
                    Ok(()) | Err(Error::Zmq(zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN)) => {}
                    Err(e) => return Err(e),
                }
            }
            heartbeat_at = now + HEARTBEAT_INTERVAL;
        }
        for dead in workers.purge(now) {
            log::debug!("worker {} expired, purged", show(&dead));
        }
    }
    Ok(())
}

/// Sends a client request to the longest-waiting worker, skipping workers
/// whose connection is already gone. With none left the request is dropped
/// and the client's retry deals with it.
fn dispatch(
    backend: &zmq::Socket,
    workers: &mut ReadyList<Vec<u8>>,
    msg: Message,
) -> Result<(), Error> {
    while let Some(worker) = workers.take_next() {
        let mut routed = msg.clone();
        routed.push(worker.clone());
        match routed.send_flags(backend, zmq::DONTWAIT) {
            Ok(()) => {
                log::debug!("request to worker {}", show(&worker));
                return Ok(());
            }
            Err(Error::Zmq(zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN)) => {
                log::warn!("worker {} has gone, trying the next one", show(&worker))
            }
            Err(e) => return Err(e),
        }
    }
    log::warn!("no worker left for a client request; dropped");
    Ok(())
}
