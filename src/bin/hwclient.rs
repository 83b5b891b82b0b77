//! §1 Ask and Ye Shall Receive (`hwclient.c`): the Hello World client.
//!
//! A REQ socket connects to `tcp://localhost:5555`, sends `Hello` ten times and
//! prints each `World` it gets back, then exits. Start `hwserver` beside it
//! (the order does not matter). Also works against `mtserver` (§10).
//!
//! Differs from the C: the whole reply is read, however many frames it has
//! (reading one frame of a two-frame reply leaves REQ unable to send the next
//! request). Ctrl-C/SIGTERM ends it with exit code 0, also while it waits
//! for a server that is not there; LINGER is 1 s, so an unanswered request
//! does not hold up the exit.

use std::process::ExitCode;

use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to talk to server.
        println!("Connecting to hello world server...");
        let requester = socket::new(&context, zmq::REQ)
            .max_message_size(1024)
            .connect("tcp://localhost:5555")?;

        for request_nbr in 0..10 {
            println!("Sending Hello {request_nbr}...");
            helpers::send_string(&requester, "Hello")?;
            Message::recv(&requester)?;
            println!("Received World {request_nbr}");
        }
        Ok(())
    })
}
