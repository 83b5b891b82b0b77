//! Hello World server that shows its messages (`hwserver2.c`, in
//! `examples/C/` but not in the book's text).
//!
//! A REP socket bound to `tcp://*:5555`, like `hwserver`, but it prints
//! `Received request msg: <request>` and `Send respond msg: World` (then a
//! blank line) and replies at once, working for a second *after* the reply.
//! Run `hwclient`, `hwclient2` or `hwclient3` beside it.
//!
//! Limits: a request frame may be at most 1 KiB (`MAXMSGSIZE`; a bigger one
//! drops that client's connection); the request is printed through
//! `message::show` (at most 32 bytes, escaped), so a peer cannot flood or
//! forge the terminal. A REP send never blocks: libzmq drops a reply to a
//! client that has gone or stopped reading.
//!
//! Differs from the C: the whole request is read (the C reads one frame, so
//! a two-frame request made its reply fail); it prints the request's first
//! frame, not cut at 10 bytes but bounded as above; Ctrl-C/SIGTERM ends it
//! cleanly (exit code 0).

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let responder = socket::new(&context, zmq::REP)
            .max_message_size(1024)
            .bind("tcp://*:5555")?;

        loop {
            let request = Message::recv(&responder)?;
            println!(
                "Received request msg: {}",
                show(request.first().unwrap_or_default())
            );
            println!("Send respond msg: World\n");
            helpers::send_string(&responder, "World")?;
            interrupt::sleep_ms(1000)?; // Do some work.
        }
    })
}
