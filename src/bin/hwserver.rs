//! §1 Ask and Ye Shall Receive (`hwserver.c`): the Hello World server.
//!
//! A REP socket bound to `tcp://*:5555` answers every request with `World`,
//! one second after printing `Received Hello`. Run `hwclient` beside it (in
//! either order: ZeroMQ reconnects for you).
//!
//! Limits: a request frame may be at most 1 KiB (`MAXMSGSIZE`; a bigger one
//! drops that client's connection), so the requests libzmq queues for one
//! client (1000 by default) stay under 1 MiB. A reply to a client that has
//! gone or stopped reading is dropped by libzmq: a REP send never blocks.
//!
//! Differs from the C: the whole request is read, however many frames it has
//! (the C reads one frame, so a two-frame request made its reply fail);
//! Ctrl-C/SIGTERM ends the loop cleanly (exit code 0).

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let responder = socket::new(&context, zmq::REP)
            .max_message_size(1024)
            .bind("tcp://*:5555")?;

        loop {
            // Wait for the next request: all of it, or REP will not let us reply.
            Message::recv(&responder)?;
            println!("Received Hello");
            interrupt::sleep_ms(1000)?; // Do some 'work'.
            helpers::send_string(&responder, "World")?;
        }
    })
}
