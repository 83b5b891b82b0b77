//! Hello World with a named REQ client (`hwclient3.c`, in `examples/C/` but
//! not in the book's text).
//!
//! Like `hwclient`, but the REQ socket sets its identity to `ZMQ` before it
//! connects to `tcp://localhost:5555`, so a ROUTER server (`hwserver3`,
//! `hwserver4`) sees `ZMQ` as the first frame instead of a generated binary
//! id. Prints `Sending request msg: Hello NO=<n>...` and
//! `Received respond msg: World NO=<n>` (then a blank line), ten times.
//!
//! Two clients with the same identity must not be connected to one ROUTER
//! at once: the second is refused (libzmq keeps the first).
//!
//! Differs from the C: the whole reply is read (a two-frame reply would
//! leave REQ unable to send), and its first frame is printed through
//! `message::show` (bounded, escaped). Ctrl-C/SIGTERM ends it with exit
//! code 0; LINGER is 1 s.

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        println!("Connecting to hello world server...");
        let context = zmq::Context::new();
        // Set the REQ socket's identity.
        let requester = socket::new(&context, zmq::REQ)
            .identity("ZMQ")
            .max_message_size(1024)
            .connect("tcp://localhost:5555")?;

        for request_nbr in 1..=10 {
            println!("Sending request msg: Hello NO={request_nbr}...");
            helpers::send_string(&requester, "Hello")?;
            let reply = Message::recv(&requester)?;
            let body = show(reply.first().unwrap_or_default());
            println!("Received respond msg: {body} NO={request_nbr}\n");
        }
        Ok(())
    })
}
