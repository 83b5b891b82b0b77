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
//! * a worker message must be READY (exactly `0x01`) or a reply with a client
//!   envelope, and a client message must have an envelope; anything else is
//!   logged (`E: invalid message from worker/client`) and dropped, and does
//!   not make its sender a worker. The C took any frame *starting* with 0x01
//!   as READY, so a reply to a client id starting with 0x01 was swallowed;
//! * a worker is in the ready list at most once;
//! * the backend is a ROUTER_MANDATORY socket: a request for a worker that has
//!   gone away is not silently lost but goes to the next ready worker
//!   (`W: worker … has gone, trying the next one`);
//! * Ctrl-C/SIGTERM ends it cleanly with exit code 0.

use std::collections::VecDeque;

use zguide::message::frame_text;
use zguide::ppp::{self, READY};
use zguide::{helpers, interrupt, Error, Message};

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let frontend = context.socket(zmq::ROUTER)?;
    let backend = context.socket(zmq::ROUTER)?;
    frontend.set_linger(0)?;
    backend.set_linger(0)?;
    backend.set_router_mandatory(true)?;
    frontend.bind("tcp://*:5555")?; // For clients
    backend.bind("tcp://*:5556")?; // For workers

    // Queue of available workers, longest waiting first.
    let mut workers: VecDeque<Vec<u8>> = VecDeque::new();

    loop {
        // Poll the frontend only if we have available workers.
        let sockets: &[&zmq::Socket] = if workers.is_empty() {
            &[&backend]
        } else {
            &[&backend, &frontend]
        };
        let readable = match interrupt::poll(sockets, -1) {
            Ok(readable) => readable,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };

        // Handle worker activity on the backend.
        if readable[0] {
            let mut msg = Message::recv_now(&backend)?;
            match worker_message(&mut msg) {
                Ok((identity, ready)) => {
                    // Use the worker identity for load balancing.
                    workers.retain(|w| *w != identity);
                    workers.push_back(identity);
                    // Forward the message to the client if it's not a READY.
                    if !ready {
                        msg.send(&frontend)?;
                    }
                }
                Err(reason) => {
                    log::error!(
                        "invalid message from worker: {reason}\n{}",
                        msg.dump().trim_end()
                    )
                }
            }
        }
        if readable.get(1) == Some(&true) {
            // Get a client request, route it to the first available worker.
            let msg = Message::recv_now(&frontend)?;
            match ppp::check_envelope(&msg) {
                Ok(()) => dispatch(&backend, &mut workers, msg)?,
                Err(reason) => {
                    log::error!(
                        "invalid message from client: {reason}\n{}",
                        msg.dump().trim_end()
                    )
                }
            }
        }
    }
    Ok(())
}

/// Checks a worker message `[worker][""][READY]` or
/// `[worker][""][client][""][body…]` and takes off the worker's envelope.
/// Returns the worker identity and whether it was a READY.
fn worker_message(msg: &mut Message) -> Result<(Vec<u8>, bool), String> {
    ppp::check_envelope(msg).map_err(|reason| format!("no REQ envelope: {reason}"))?;
    let identity = msg.unwrap().unwrap_or_default();
    if msg.len() == 1 && msg.first() == Some(READY) {
        return Ok((identity, true));
    }
    ppp::check_envelope(msg).map_err(|reason| format!("neither READY nor a reply: {reason}"))?;
    Ok((identity, false))
}

/// Sends a client request to the longest-waiting worker. A worker whose
/// connection is gone is dropped and the next one tried; with none left the
/// request is dropped and the client's retry deals with it.
fn dispatch(
    backend: &zmq::Socket,
    workers: &mut VecDeque<Vec<u8>>,
    msg: Message,
) -> Result<(), Error> {
    while let Some(worker) = workers.pop_front() {
        let mut wrapped = msg.clone();
        wrapped.wrap(worker.clone());
        match wrapped.send_flags(backend, zmq::DONTWAIT) {
            Ok(()) => return Ok(()),
            Err(Error::Zmq(zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN)) => {
                log::warn!(
                    "worker {} has gone, trying the next one",
                    frame_text(&worker)
                )
            }
            Err(e) => return Err(e),
        }
    }
    log::warn!("no worker left for a client request; dropped");
    Ok(())
}
