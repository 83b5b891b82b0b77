//! §10 Multithreading with ZeroMQ (`mtserver.c`): the multithreaded Hello
//! World server.
//!
//! A ROUTER bound to `tcp://*:5555` faces the clients (`hwclient`), a DEALER
//! bound to `inproc://workers` faces five worker threads, each a REP socket
//! that prints `Received request: [<request>]`, works for a second and
//! replies `World`; `zmq_proxy` joins the two. One context for the whole
//! process, one socket per thread, and the DEALER is bound before the workers
//! connect, as the section's rules say. Run one or more `hwclient` beside it.
//!
//! Limits: a request frame may be at most 1 KiB (`MAXMSGSIZE` on the ROUTER),
//! so the requests queued for one client (1000 at most) stay under 1 MiB;
//! requests are printed through `message::show` (first frame, at most 32
//! bytes, escaped). No send blocks: `zmq_proxy` hands a request on only when
//! a worker can take it, a REP send never blocks, and the ROUTER drops a
//! reply for a client that has gone or stopped reading. LINGER is 0 on the
//! proxy's sockets.
//!
//! Differs from the C: a worker reads the whole request (the C reads one
//! frame, so a two-frame request killed the worker that got it, and five
//! left the server up with no one to serve); a worker that fails says so at
//! once. Ctrl-C/SIGTERM stops the proxy (`interrupt::proxy`) and the workers
//! (their waits are interruptible), the threads are joined, and the program
//! exits with code 0.

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, interrupt, program, socket, Error, Message};

/// The size of the pool of worker threads.
const WORKERS: usize = 5;

fn worker_routine(context: zmq::Context) -> Result<(), Error> {
    // Socket to talk to dispatcher.
    let receiver = socket::new(&context, zmq::REP).connect("inproc://workers")?;

    loop {
        let request = Message::recv(&receiver)?;
        println!(
            "Received request: [{}]",
            show(request.first().unwrap_or_default())
        );
        interrupt::sleep_ms(1000)?; // Do some 'work'.
        helpers::send_string(&receiver, "World")?; // Send reply back to client.
    }
}

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to talk to clients.
        let mut clients = socket::new(&context, zmq::ROUTER)
            .max_message_size(1024)
            .linger(0)
            .bind("tcp://*:5555")?;

        // Socket to talk to workers.
        let mut workers = socket::new(&context, zmq::DEALER)
            .linger(0)
            .bind("inproc://workers")?;

        // Launch pool of worker threads.
        let pool: Vec<_> = (0..WORKERS)
            .map(|_| {
                let context = context.clone();
                std::thread::spawn(move || {
                    let result = program::interrupted_is_ok(worker_routine(context));
                    if let Err(e) = &result {
                        log::error!("worker failed: {e}");
                    }
                    result
                })
            })
            .collect();

        // Connect work threads to client threads via a queue proxy.
        let result = interrupt::proxy(&context, &mut clients, &mut workers);
        for worker in pool {
            if worker.join().is_err() {
                log::error!("worker panicked");
            }
        }
        result
    })
}
