//! Titanic service (§30 "Disconnected Reliability (Titanic Pattern)"): the
//! server side of TSP (RFC 9), the port of `titanic.c`.
//!
//! Titanic is an MDP worker for three services and an MDP client of the real
//! ones, all against the broker at `tcp://localhost:5555`:
//! * `titanic.request` `[service][body…]`: stores the request, answers
//!   `[200][UUID]`;
//! * `titanic.reply` `[UUID]`: `[200][reply…]` once the reply is stored,
//!   `[300]` while the request is pending, `[400]` if it is unknown;
//! * `titanic.close` `[UUID]`: forgets request and reply, `[200]`;
//! * the dispatcher (main thread) works through the pending requests in
//!   `.titanic/queue` once a second, or as soon as a new one arrives: for each
//!   it asks the broker (`mmi.service`) whether the service has a worker,
//!   and if so calls it and stores the reply.
//!
//! Each service runs on its own thread as an [`Actor`] (the C's `zthread`);
//! the request service tells the dispatcher about new UUIDs over its pipe.
//! `-v` prints `I: processing request <UUID>` for every attempt.
//!
//! Run beside it: `mdbroker`, `ticlient`, and (any time later) `mdworker`.
//!
//! Differs from the C, on purpose:
//! * UUIDs from the wire are validated (32 hex digits) before they are used
//!   in a path; anything else is answered `400`. A malformed
//!   `titanic.request` (no service or no body) is answered `400`; a storage
//!   failure `500`.
//! * Writes are crash-safe (see [`zguide::mdp::titanic`]) and the request
//!   service appends to the queue, durably, **before** it answers `200` (in
//!   the C the main thread appends later, so a crash in between lost an
//!   accepted request). After a restart the queue is worked through again.
//! * A stored reply whose queue line is still `-` (a crash between the two)
//!   is just marked done, the service is not called again.
//! * The dispatcher keeps one MDP client instead of making one per request.
//!
//! **Idempotency.** A request can still be executed more than once: if
//! Titanic dies after the service answered but before the reply is stored,
//! or the service takes longer than the 1 s client timeout, the request is
//! sent again later. The client still reads exactly one stored reply. Like
//! the book, Titanic assumes services are idempotent.

use zguide::actor::{Actor, Pipe};
use zguide::helpers::init_log;
use zguide::mdp::titanic::{Store, Uuid, DIR};
use zguide::mdp::{Client, Worker};
use zguide::{interrupt, Error, Message};

const BROKER: &str = "tcp://localhost:5555";

/// One TSP answer: a status code, then optional frames.
fn status(code: &str, rest: Message) -> Message {
    let mut reply = rest;
    reply.push(code);
    reply
}

// .split Titanic request service
// Stores each request, queues its UUID, tells the dispatcher, answers 200.

fn titanic_request(pipe: &Pipe, store: Store) -> Result<(), Error> {
    let mut worker = Worker::new(BROKER, "titanic.request", false)?;
    pipe.signal(0)?;
    let mut reply = None;
    loop {
        let request = worker.recv(reply.take())?;
        reply = Some(accept_request(&store, request, pipe));
    }
}

fn accept_request(store: &Store, request: Message, pipe: &Pipe) -> Message {
    let valid = request.len() >= 2 && request.first().is_some_and(|s| !s.is_empty());
    if !valid {
        log::warn!(
            "titanic.request: malformed request refused ({} frames)",
            request.len()
        );
        return status("400", Message::new());
    }
    let uuid = Uuid::generate();
    let saved = store
        .save_request(&uuid, &request)
        .and_then(|()| store.enqueue(&uuid));
    if let Err(e) = saved {
        log::error!("titanic.request: cannot store request {uuid}: {e}");
        return status("500", Message::new());
    }
    // Wake the dispatcher; the queue on disk is what counts.
    let _ = pipe.send(Message::from_frames([uuid.as_str()]));
    status("200", Message::from_frames([uuid.as_str()]))
}

// .split Titanic reply service
// 200 and the reply if we have it, 300 while pending, 400 if unknown.

fn titanic_reply(pipe: &Pipe, store: Store) -> Result<(), Error> {
    let mut worker = Worker::new(BROKER, "titanic.reply", false)?;
    pipe.signal(0)?;
    let mut reply = None;
    loop {
        let mut request = worker.recv(reply.take())?;
        let uuid = request.pop().and_then(|frame| Uuid::parse(&frame));
        reply = Some(match uuid {
            None => status("400", Message::new()),
            Some(uuid) => match store.load_reply(&uuid) {
                Ok(Some(stored)) => status("200", stored),
                Ok(None) if store.has_request(&uuid) => status("300", Message::new()),
                Ok(None) => status("400", Message::new()),
                Err(e) => {
                    log::error!("titanic.reply: cannot read reply {uuid}: {e}");
                    status("500", Message::new())
                }
            },
        });
    }
}

// .split Titanic close service
// Removes any stored request and reply; idempotent.

fn titanic_close(pipe: &Pipe, store: Store) -> Result<(), Error> {
    let mut worker = Worker::new(BROKER, "titanic.close", false)?;
    pipe.signal(0)?;
    let mut reply = None;
    loop {
        let mut request = worker.recv(reply.take())?;
        let uuid = request.pop().and_then(|frame| Uuid::parse(&frame));
        reply = Some(match uuid {
            None => status("400", Message::new()),
            Some(uuid) => match store.close(&uuid) {
                Ok(()) => status("200", Message::new()),
                Err(e) => {
                    log::error!("titanic.close: cannot delete {uuid}: {e}");
                    status("500", Message::new())
                }
            },
        });
    }
}

/// Runs a service loop as an actor; it ends on Ctrl-C.
fn start(
    context: &zmq::Context,
    store: &Store,
    service: fn(&Pipe, Store) -> Result<(), Error>,
) -> Result<Actor, Error> {
    let store = store.clone();
    Actor::new(context, move |pipe| match service(pipe, store) {
        Ok(()) | Err(Error::Interrupted) => {}
        Err(e) => log::error!("titanic service stopped: {e}"),
    })
}

// .split main task: the dispatcher
// Starts the three services, then works through the queue once a second,
// or at once when the request service reports a new UUID.

fn main() {
    init_log("info");
    interrupt::catch_signals();
    let verbose = std::env::args().nth(1).as_deref() == Some("-v");
    if let Err(e) = run(verbose) {
        log::error!("titanic: {e}");
        std::process::exit(1);
    }
}

fn run(verbose: bool) -> Result<(), Error> {
    let store = Store::open(DIR).map_err(|e| Error::Protocol(format!("cannot open {DIR}: {e}")))?;
    let context = zmq::Context::new();
    let request_pipe = start(&context, &store, titanic_request)?;
    let _reply = start(&context, &store, titanic_reply)?;
    let _close = start(&context, &store, titanic_close)?;

    let mut client = Client::new(BROKER, false)?;
    client.set_timeout(1000); //  1 sec
    client.set_retries(1); //  only 1 attempt
    loop {
        match interrupt::poll(&[request_pipe.socket()], 1000) {
            Ok(ready) => {
                if ready[0] {
                    // Drain the wake-ups; the UUIDs are already in the queue.
                    while Message::try_recv(request_pipe.socket())?.is_some() {}
                }
            }
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        }
        match dispatch(&store, &mut client, verbose) {
            Err(Error::Interrupted) => return Ok(()),
            other => other?,
        }
    }
}

/// One pass over the pending requests.
fn dispatch(store: &Store, client: &mut Client, verbose: bool) -> Result<(), Error> {
    let pending = match store.pending() {
        Ok(pending) => pending,
        Err(e) => {
            log::error!("titanic: cannot read the queue: {e}");
            return Ok(());
        }
    };
    for entry in pending {
        if verbose {
            println!("I: processing request {}", entry.uuid);
        }
        if service_success(store, client, &entry.uuid)? {
            if let Err(e) = store.mark_done(&entry) {
                log::error!("titanic: cannot update the queue: {e}");
            }
        }
    }
    Ok(())
}

// .split try to call a service
// Ask the broker (MMI) whether the service has a worker; if so, call it
// and store the reply. `Ok(true)` when the queue entry is finished.

fn service_success(store: &Store, client: &mut Client, uuid: &Uuid) -> Result<bool, Error> {
    if store.has_reply(uuid) {
        return Ok(true); // stored before a crash, not yet marked
    }
    let mut request = match store.load_request(uuid) {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(true), // the client already closed it
        Err(e) => {
            log::error!("titanic: request {uuid} is unreadable, dropping it: {e}");
            return Ok(true);
        }
    };
    let Some(service) = request.pop() else {
        return Ok(true);
    };
    let lookup = Message::from_frames([service.clone()]);
    let service_ok = match client.send("mmi.service", lookup) {
        Ok(reply) => reply.first() == Some(&b"200"[..]),
        Err(Error::Timeout) => false,
        Err(e) => return Err(e),
    };
    if !service_ok {
        return Ok(false);
    }
    match client.send(&service, request) {
        Ok(reply) => {
            if !store.has_request(uuid) {
                return Ok(true); // closed while we waited: keep nothing
            }
            match store.save_reply(uuid, &reply) {
                Ok(()) => Ok(true),
                Err(e) => {
                    log::error!("titanic: cannot store reply {uuid}: {e}");
                    Ok(false)
                }
            }
        }
        Err(Error::Timeout) => Ok(false),
        Err(e) => Err(e),
    }
}
