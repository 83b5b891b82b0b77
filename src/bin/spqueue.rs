//! §24 Basic Reliable Queuing, Simple Pirate (`spqueue.c`): the load-balancing
//! broker with no reliability of its own; clients recover by retrying.
//!
//! Clients (REQ, e.g. `lpclient`) connect to the ROUTER at `tcp://*:5555`,
//! workers (REQ, `spworker`) to the ROUTER at `tcp://*:5556`. A worker says
//! READY (`0x01`) and every reply it sends makes it ready again; each client
//! request goes to the worker that has waited longest. Silent, runs until
//! Ctrl-C. Run one `lpclient` and a few `spworker`s beside it.
//!
//! Differs from the C (robustness fixes, none visible to well-behaved peers):
//! * `-v` logs the queue's decisions (`D: worker <id> ready (<n> idle)`,
//!   `D: request to worker <id>`), as `ppqueue -v` does;
//! * a worker message must be READY or a reply with a client envelope, and a
//!   client message must have an envelope; anything else is logged
//!   (`E: invalid message from worker/client: <why>: <bounded summary>`) and
//!   dropped, and does not make its sender a worker. The C took any frame
//!   *starting* with 0x01 as READY, so a reply to a client id starting with
//!   0x01 was swallowed;
//! * READY may also be the text `READY` of the C++ `spworker.cpp`, so C++
//!   workers serve through this queue (`spworker --cpp` does the reverse);
//! * a worker is in the ready list at most once, and the list holds at most
//!   [`MAX_WORKERS`] (100) workers: past that the longest-waiting one is
//!   forgotten to make room (`W: 100 workers ready, the most kept: forgot
//!   worker …`, at most once a second). With no heartbeats a worker that went
//!   away stays in the list until a request finds it gone, so the oldest
//!   entries are the likeliest to be dead;
//! * the backend is a ROUTER_MANDATORY socket and requests go out without
//!   blocking: a request for a worker that has gone away, or that does not
//!   read, goes to the next ready worker (`W: worker … has gone, trying the
//!   next one`); with none left it is dropped and the client retries;
//! * replies go out without blocking too (ROUTER_MANDATORY frontend): the
//!   reply for a client that has gone or does not read its replies is
//!   dropped (`W: client … is gone or not reading; reply dropped`, at most
//!   once a second);
//! * memory: inbound frames up to 1 MiB (`ZMQ_MAXMSGSIZE`, a larger frame
//!   drops that connection); requests waiting for a worker stay in libzmq's
//!   pipe of their client, at most [`CLIENT_HWM`] per client connection
//!   (a REQ client has one in flight), and past it libzmq stops reading that
//!   client;
//! * Ctrl-C/SIGTERM ends it cleanly with exit code 0, within the 1 s LINGER
//!   even when a reply is still queued for a client that died.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::envelope;
use zguide::heartbeat::ReadyList;
use zguide::log_limit::Window;
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

        // Queue of available workers, longest waiting first. Simple Pirate has
        // no heartbeats, so nothing ever expires: the list is never purged.
        let mut workers =
            ReadyList::new(HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS).with_limit(MAX_WORKERS);
        let mut list_full = Window::new(1, Duration::from_secs(1));
        let mut reply_drops = Window::new(1, Duration::from_secs(1));

        loop {
            // Poll the frontend only if we have available workers.
            let sockets: &[&zmq::Socket] = if workers.is_empty() {
                &[&backend]
            } else {
                &[&backend, &frontend]
            };
            let readable = interrupt::poll(sockets, -1)?;

            // Handle worker activity on the backend.
            if readable[0] {
                let msg = Message::recv_now(&backend)?;
                let (identity, said) = ppp::split_worker_message(msg, WorkerSocket::Req);
                // Use the worker identity for load balancing. (The dialect
                // only matters for heartbeats, which Simple Pirate has not.)
                let ready = |dialect| {
                    let worker = Worker { identity, dialect };
                    ppp::worker_ready(&mut workers, worker, &mut list_full, Instant::now());
                };
                match said {
                    WorkerMessage::Ready(dialect) => ready(dialect),
                    // Forward the message to the client if it's not a READY.
                    WorkerMessage::Reply(reply) => {
                        ready(Dialect::Ppp);
                        ppp::reply_to_client(&frontend, reply, &mut reply_drops)?;
                    }
                    WorkerMessage::Heartbeat(_) => {
                        log::error!("invalid message from worker: Simple Pirate has no heartbeats")
                    }
                    WorkerMessage::Invalid(why) => {
                        log::error!("invalid message from worker: {why}")
                    }
                }
            }
            if readable.get(1) == Some(&true) {
                // Get a client request, route it to the first available worker.
                let msg = Message::recv_now(&frontend)?;
                let summary = msg.summary();
                match envelope::split(msg) {
                    Ok((client, body)) => {
                        let request = envelope::to(client, body);
                        ppp::dispatch(&backend, &mut workers, request, WorkerSocket::Req)?;
                    }
                    Err(e) => log::error!("invalid message from client: {e}: {summary}"),
                }
            }
        }
    })
}
