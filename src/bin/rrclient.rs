//! §5 Shared Queue (`rrclient.c`): the request-reply client.
//!
//! A REQ socket connects to `tcp://localhost:5559`, the frontend of a broker
//! (`rrbroker`, or `msgqueue` from §6), sends `Hello` ten times and prints
//! `Received reply <n> [<reply>]`. Run a broker and one or more `rrworker`
//! beside it; several clients may run at once.
//!
//! Differs from the C: the whole reply is read (a two-frame reply would leave
//! REQ unable to send the next request) and its first frame is printed
//! through `message::show` (at most 32 bytes, escaped); a frame may be at
//! most 1 KiB (`MAXMSGSIZE`). Ctrl-C/SIGTERM ends it with exit code 0, also
//! while it waits for a broker that is not there (LINGER 1 s).

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to talk to server.
        let requester = socket::new(&context, zmq::REQ)
            .max_message_size(1024)
            .connect("tcp://localhost:5559")?;

        for request_nbr in 0..10 {
            helpers::send_string(&requester, "Hello")?;
            let reply = Message::recv(&requester)?;
            let text = show(reply.first().unwrap_or_default());
            println!("Received reply {request_nbr} [{text}]");
        }
        Ok(())
    })
}
