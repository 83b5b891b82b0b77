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
//! the program with a protocol error instead of an abort.

use zguide::{Error, Message};

fn main() -> Result<(), Error> {
    println!("Connecting to hello world server...");
    let context = zmq::Context::new();
    let requester = context.socket(zmq::DEALER)?;
    // Set the socket's identity.
    requester.set_identity(b"ZMQ")?;
    requester.connect("tcp://localhost:5555")?;

    for request_nbr in 1..=10 {
        println!("Sending request msg: Hello NO={request_nbr}...");
        // An empty delimiter frame, then the data frame.
        Message::from_frames(["", "Hello"]).send(&requester)?;

        let mut reply = Message::recv(&requester)?;
        let empty = reply.pop().unwrap_or_default();
        if !empty.is_empty() {
            return Err(Error::Protocol(format!(
                "reply does not start with an empty delimiter: {reply:?}"
            )));
        }
        let body = reply.pop_string().unwrap_or_default();
        println!("Received respond msg: {body} NO={request_nbr}\n");
    }
    Ok(())
}
