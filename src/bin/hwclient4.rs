//! Hello World with a named DEALER client (`hwclient4.c`, in `examples/C/`
//! but not in the book's text).
//!
//! A DEALER socket with identity `ZMQ` connects to `tcp://localhost:5555`,
//! sends `[""][Hello]` and expects `[""][World]` back. Prints
//! `Sending request msg: Hello NO=<n>...` and
//! `Received respond msg: World NO=<n>` (then a blank line), ten times.
//! Made for `hwserver4` (a ROUTER); works against any hello server.
//!
//! Differs from the C, which `assert`s the delimiter: a reply without it ends
//! the program with a protocol error instead of an abort. The reply is
//! printed through `message::show` (bounded, escaped). Ctrl-C/SIGTERM ends
//! it with exit code 0; LINGER is 1 s.

use std::process::ExitCode;

use zguide::message::show;
use zguide::{program, socket, Error, Message};

fn main() -> ExitCode {
    program::run(|| {
        println!("Connecting to hello world server...");
        let context = zmq::Context::new();
        // Set the socket's identity.
        let requester = socket::new(&context, zmq::DEALER)
            .identity("ZMQ")
            .max_message_size(1024)
            .connect("tcp://localhost:5555")?;

        for request_nbr in 1..=10 {
            println!("Sending request msg: Hello NO={request_nbr}...");
            // An empty delimiter frame, then the data frame.
            Message::from_frames(["", "Hello"]).send(&requester)?;

            let mut reply = Message::recv(&requester)?;
            if reply.first() != Some(b"") {
                return Err(Error::Protocol(format!(
                    "reply does not start with an empty delimiter: {}",
                    reply.summary()
                )));
            }
            reply.pop();
            let body = show(reply.first().unwrap_or_default());
            println!("Received respond msg: {body} NO={request_nbr}\n");
        }
        Ok(())
    })
}
