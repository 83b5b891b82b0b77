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
//!   readiness and forwards client messages unchecked. Whatever a peer sends,
//!   each such line shows at most 6 frames of at most 32 bytes, escaped
//!   ([`zguide::Message::summary`]): a 16 MiB frame no longer becomes 32 MiB
//!   of hex in the log;
//! * both dialects: a worker may say `0x01`/`0x02` (PPP, the C `ppworker`) or
//!   `READY`/`HEARTBEAT` (the C++ `ppworker.cpp`), and is heartbeated in the
//!   dialect it spoke, so C++ workers serve through this queue
//!   (`ppworker --cpp` does the reverse);
//! * the purge checks every idle worker, not only the head of the list;
//! * the ready list holds at most [`MAX_WORKERS`] (100) workers: past that the
//!   longest-waiting one is forgotten to make room (`W: 100 workers ready,
//!   the most kept: forgot worker …`, at most once a second); a live worker
//!   forgotten this way comes back with its next heartbeat;
//! * no send blocks. The backend is a ROUTER_MANDATORY socket: a request for
//!   a worker whose connection is gone, or that does not read, goes to the
//!   next ready worker (`W: worker <id> has gone, trying the next one`);
//!   heartbeats to such a worker are dropped and its expiry removes it. The
//!   frontend is ROUTER_MANDATORY too: the reply for a client that has gone or
//!   does not read its replies is dropped (`W: client … is gone or not
//!   reading; reply dropped`, at most once a second), and the client retries;
//! * memory: inbound frames up to 1 MiB (`ZMQ_MAXMSGSIZE`: a larger frame
//!   drops that connection before it is allocated); requests waiting for a
//!   worker stay in libzmq's pipe of their client, at most [`CLIENT_HWM`] per
//!   client connection (a REQ client has one in flight), and past it libzmq
//!   stops reading from that client;
//! * Ctrl-C/SIGTERM ends it cleanly with exit code 0, within the 1 s LINGER
//!   even when replies are still queued for clients that died.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::heartbeat::ReadyList;
use zguide::log_limit::Window;
use zguide::message::show;
use zguide::ppp::{self, Dialect, Worker, WorkerMessage, WorkerSocket, MAX_WORKERS};
use zguide::ppp::{HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS};
use zguide::{interrupt, program, socket, Message};

/// Requests (and replies) libzmq queues per client connection.
const CLIENT_HWM: i32 = 10;

fn main() -> ExitCode {
    let verbose = std::env::args().skip(1).any(|arg| arg == "-v");
    program::run_logging(if verbose { "debug" } else { "info" }, || {
        let context = zmq::Context::new();
        let frontend = socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .receive_hwm(CLIENT_HWM)
            .send_hwm(CLIENT_HWM)
            .bind("tcp://*:5555")?; // For clients
        let backend = socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .bind("tcp://*:5556")?; // For workers

        // Idle workers, longest waiting first, each with its expiry; and the
        // workers that have a request, so that a reply tells us the dialect
        // of the worker it came from.
        let mut workers =
            ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS).with_limit(MAX_WORKERS);
        let mut busy: ReadyList<Worker> =
            ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS).with_limit(MAX_WORKERS);
        let mut list_full = Window::new(1, Duration::from_secs(1));
        let mut reply_drops = Window::new(1, Duration::from_secs(1));

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
            let readable = interrupt::poll(sockets, interrupt::millis(timeout))?;

            // Handle worker activity on the backend.
            if readable[0] {
                let msg = Message::recv_now(&backend)?;
                let (identity, said) = ppp::split_worker_message(msg, WorkerSocket::Dealer);
                // Any sign of life from a worker means it's ready; a reply
                // says nothing about the dialect, the request we sent does.
                let known = busy.take(&Worker {
                    identity: identity.clone(),
                    dialect: Dialect::Ppp,
                });
                let dialect = match &said {
                    WorkerMessage::Ready(dialect) | WorkerMessage::Heartbeat(dialect) => *dialect,
                    _ => known.map_or(Dialect::Ppp, |worker| worker.dialect),
                };
                match said {
                    WorkerMessage::Invalid(why) => {
                        log::error!("invalid message from worker {}: {why}", show(&identity));
                    }
                    said => {
                        let worker = Worker { identity, dialect };
                        ppp::worker_ready(&mut workers, worker, &mut list_full, Instant::now());
                        // Return a reply to its client.
                        if let WorkerMessage::Reply(reply) = said {
                            ppp::reply_to_client(&frontend, reply, &mut reply_drops)?;
                        }
                    }
                }
            }
            if readable.get(1) == Some(&true) {
                // Get the next client request, route it to the next worker.
                let msg = Message::recv_now(&frontend)?;
                match ppp::check_request(msg) {
                    Ok(request) => {
                        let now = Instant::now();
                        let to =
                            ppp::dispatch(&backend, &mut workers, request, WorkerSocket::Dealer)?;
                        if let Some(worker) = to {
                            busy.ready(worker, now);
                        }
                    }
                    Err(why) => log::error!("invalid message from client: {why}"),
                }
            }

            // After any socket activity: heartbeat idle workers if it's time,
            // then purge the dead ones.
            let now = Instant::now();
            if now >= heartbeat_at {
                for worker in workers.iter() {
                    let beat =
                        Message::from_frames([&worker.identity[..], worker.dialect.heartbeat()]);
                    // A worker that is gone or not reading misses this one;
                    // its expiry will remove it, as in the C.
                    beat.send_or_drop(&backend)?;
                }
                heartbeat_at = now + HEARTBEAT_INTERVAL;
            }
            for dead in workers.purge(now) {
                log::debug!("worker {} expired, purged", show(&dead.identity));
            }
            busy.purge(now);
        }
    })
}
