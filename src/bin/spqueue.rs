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

use zguide::envelope;
use zguide::message::show;
use zguide::ppp::READY;
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
            let msg = Message::recv_now(&backend)?;
            match worker_message(msg) {
                Ok((identity, reply)) => {
                    // Use the worker identity for load balancing.
                    workers.retain(|w| *w != identity);
                    workers.push_back(identity);
                    // Forward the message to the client if it's not a READY.
                    if let Some(reply) = reply {
                        reply.send(&frontend)?;
                    }
                }
                Err(e) => log::error!("invalid message from worker: {e}"),
            }
        }
        if readable.get(1) == Some(&true) {
            // Get a client request, route it to the first available worker.
            let msg = Message::recv_now(&frontend)?;
            match envelope::split(msg) {
                Ok((client, body)) => dispatch(&backend, &mut workers, envelope::to(client, body))?,
                Err(e) => log::error!("invalid message from client: {e}"),
            }
        }
    }
    Ok(())
}

/// Takes the REQ worker's envelope off `[worker][""][READY]` or
/// `[worker][""][client][""][body…]`: returns the worker identity and, unless
/// it was a READY, the reply for the client.
fn worker_message(msg: Message) -> Result<(Vec<u8>, Option<Message>), Error> {
    let (identity, body) = envelope::split(msg)?;
    if body.len() == 1 && body.first() == Some(READY) {
        return Ok((identity, None));
    }
    let (client, reply) = envelope::split(body)?;
    Ok((identity, Some(envelope::to(client, reply))))
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
        wrapped.wrap_envelope(worker.clone());
        match wrapped.send_flags(backend, zmq::DONTWAIT) {
            Ok(()) => return Ok(()),
            Err(Error::Zmq(zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN)) => {
                log::warn!("worker {} has gone, trying the next one", show(&worker))
            }
            Err(e) => return Err(e),
        }
    }
    log::warn!("no worker left for a client request; dropped");
    Ok(())
}
