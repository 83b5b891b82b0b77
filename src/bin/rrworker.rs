//! §5 Shared Queue (`rrworker.c`): the request-reply worker.
//!
//! A REP socket connects to `tcp://localhost:5560`, the backend of a broker
//! (`rrbroker` or `msgqueue`), prints `Received request: [<request>]`, works
//! for a second and replies `World`. Run several: the broker's DEALER
//! spreads requests over them.
//!
//! Limits: a request frame may be at most 1 KiB (`MAXMSGSIZE`); the request
//! is printed through `message::show` (its first frame, at most 32 bytes,
//! escaped). LINGER is 1 s: a reply queued for a broker that died does not
//! hold up the exit. A REP send never blocks (libzmq drops a reply nobody
//! can take).
//!
//! Differs from the C: the whole request is read (the C reads one frame, so
//! a two-frame request made its reply fail); Ctrl-C/SIGTERM ends it cleanly
//! (exit code 0).

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to talk to clients.
        let responder = socket::new(&context, zmq::REP)
            .max_message_size(1024)
            .connect("tcp://localhost:5560")?;

        loop {
            // Wait for next request from client.
            let request = Message::recv(&responder)?;
            println!(
                "Received request: [{}]",
                show(request.first().unwrap_or_default())
            );
            interrupt::sleep_ms(1000)?; // Do some 'work'.
            helpers::send_string(&responder, "World")?; // Send reply back to client.
        }
    })
}
