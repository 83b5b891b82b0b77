//! §19 The Asynchronous Client/Server Pattern (`asyncsrv.c`): DEALER to ROUTER.
//!
//! One process, four [`Actor`]s, each conceptually a separate program:
//! * three clients: a DEALER with a random printable identity connects to
//!   `tcp://localhost:5570`, sends `request #1`, `request #2`, … about once a
//!   second, and prints every reply as it arrives, prefixed by its identity:
//!   `3F2A-91C0[010] request #1`;
//! * a server: a ROUTER bound to `tcp://*:5570` faces the clients, a DEALER
//!   bound to `inproc://backend` faces five worker actors, and a proxy loop
//!   passes messages both ways. A worker takes `[client][request]` and sends
//!   back 0 to 4 copies of it, each after a random pause of up to a second, so
//!   clients get any number of replies, in any order, at any time.
//!
//! Main runs it all for 5 seconds and exits. Runs alone.
//!
//! Differs from the C: the proxy is a small poll loop inside the server actor
//! (czmq's `zproxy` actor is not ported); workers sleep between replies on
//! their pipe, so shutdown does not wait for their pauses to end; identities
//! come from a thread-safe random generator (the C's unseeded `random()`
//! repeats them). Against careless or hostile clients:
//! * no send blocks (policy). A request that no worker can take now (all five
//!   have a full queue) is dropped, and so is a reply whose client is gone or
//!   not reading (the frontend is ROUTER_MANDATORY, so the drop is logged).
//!   A blocking send here used to stop the proxy under load, and Ctrl-C then
//!   waited for it for ever;
//! * sockets take frames of at most 1 MiB (larger ones close that client's
//!   connection) and have LINGER 0 (in-flight replies are worthless at exit);
//! * a message that is not `[client][request]` is logged and dropped; the
//!   warning holds a bounded, escaped summary of it (at most 20 warnings a
//!   second), not the whole message in hex.

use std::process::ExitCode;

use zguide::actor::{Actor, Pipe};
use zguide::log_limit::complain;
use zguide::message::format_frame;
use zguide::routing;
use zguide::{helpers, interrupt, program, socket, Error, Message};

// This is our client task. It connects to the server, and then sends a
// request once per second. It collects responses as they arrive, and prints
// them out. We run several client tasks in parallel, each with a different
// random identity.
fn client_task(pipe: &Pipe) {
    if let Err(e) = client(pipe) {
        log::error!("client: {e}");
    }
}

fn client(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?;
    // Set a random identity to make tracing easier (before connecting).
    let identity = helpers::random_identity();
    let client = socket::new(pipe.context(), zmq::DEALER)
        .linger(0)
        .identity(identity.as_str())
        .connect("tcp://localhost:5570")?;

    let mut request_nbr = 0;
    loop {
        // Tick once per second, pulling in arriving messages.
        for _centitick in 0..100 {
            let Some(ready) = pipe.poll(&[&client], 10)? else {
                return Ok(()); // Told to stop.
            };
            if ready[0] {
                let msg = Message::recv_now(&client)?;
                println!(
                    "{}",
                    format_frame(&identity, msg.last().unwrap_or_default())
                );
            }
        }
        request_nbr += 1;
        helpers::send_string(&client, &format!("request #{request_nbr}"))?;
    }
}

// This is our server task. It uses the multithreaded server model to deal
// requests out to a pool of workers and route replies back to clients. One
// worker can handle one request at a time but one client can talk to
// multiple workers at once.
fn server_task(pipe: &Pipe) {
    if let Err(e) = server(pipe) {
        log::error!("server: {e}");
    }
}

fn server(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?;
    let frontend = socket::new(pipe.context(), zmq::ROUTER)
        .linger(0)
        .router_mandatory()
        .bind("tcp://*:5570")?;
    let backend = socket::new(pipe.context(), zmq::DEALER)
        .linger(0)
        .bind("inproc://backend")?;

    // Launch pool of worker threads, precise number is not critical.
    const NBR_THREADS: usize = 5;
    let workers = (0..NBR_THREADS)
        .map(|_| Actor::new(pipe.context(), server_worker))
        .collect::<Result<Vec<_>, _>>()?;

    // Connect backend to frontend, until the owner signals shutdown.
    loop {
        let ready = match interrupt::poll(&[pipe.socket(), &frontend, &backend], -1) {
            Ok(ready) => ready,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };
        if ready[0] {
            break; // The shutdown signal (or $TERM).
        }
        // Never block: a blocked proxy serves nobody and misses the
        // shutdown signal.
        if ready[1] && !Message::recv_now(&frontend)?.send_or_drop(&backend)? {
            complain(format_args!(
                "backend: no worker can take a request now; dropped"
            ));
        }
        if ready[2] {
            routing::send_or_log(Message::recv_now(&backend)?, &frontend, "frontend")?;
        }
    }
    drop(workers);
    Ok(())
}

// Each worker task works on one request at a time and sends a random number
// of replies back, with random delays between replies.
fn server_worker(pipe: &Pipe) {
    if let Err(e) = worker(pipe) {
        log::error!("worker: {e}");
    }
}

fn worker(pipe: &Pipe) -> Result<(), Error> {
    pipe.signal(0)?;
    let worker = socket::new(pipe.context(), zmq::DEALER)
        .linger(0)
        .connect("inproc://backend")?;

    while pipe.poll(&[&worker], -1)?.is_some() {
        // The DEALER socket gives us the reply envelope and message.
        let msg = Message::recv_now(&worker)?;
        if msg.len() != 2 {
            complain(format_args!(
                "worker: expected [client][request], got {}",
                msg.summary()
            ));
            continue;
        }
        // Send 0..4 replies back.
        let replies = helpers::randof(5);
        for _ in 0..replies {
            // Sleep for some fraction of a second (on the pipe, so a
            // shutdown does not wait for us).
            if pipe
                .poll(&[], u64::from(helpers::randof(1000) + 1) as i64)?
                .is_none()
            {
                return Ok(());
            }
            // Like the C, never block: if the server cannot take it, drop it.
            msg.clone().send_or_drop(&worker)?;
        }
    }
    Ok(())
}

// The main thread simply starts several clients and a server, and then
// waits for the server to finish.
fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let client1 = Actor::new(&context, client_task)?;
        let client2 = Actor::new(&context, client_task)?;
        let client3 = Actor::new(&context, client_task)?;
        let server = Actor::new(&context, server_task)?;

        // Run for 5 seconds then quit. On Ctrl-C every actor sees the signal
        // and ends by itself: the server may be gone already, so it is not
        // told (a send to an ended actor is an error, not a hang).
        if interrupt::sleep_ms(5 * 1000).is_ok() {
            server.signal(0)?;
        }

        drop(server);
        drop((client1, client2, client3));
        Ok(())
    })
}
