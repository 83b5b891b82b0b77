//! Hello World with a DEALER client (`hwclient2.c`, in `examples/C/` but not
//! in the book's text).
//!
//! A DEALER socket connects to `tcp://localhost:5555` and does by hand what
//! REQ does for you: it sends an empty delimiter frame before `Hello`, and
//! expects the reply to start with one. Prints `Sending request msg: Hello
//! NO=<n>...` and `Received respond msg: World NO=<n>` (then a blank line)
//! for ten requests; a reply without the delimiter is reported with
//! `Discard the ZMQ message!`. Works against `hwserver`, `hwserver2`,
//! `hwserver3` and `hwserver4`.
//!
//! Differs from the C: the reply is received as a whole message, so a
//! discarded reply cannot leave frames behind to be misread as the next one,
//! and a failed receive is an error exit instead of `exit(-1)`. The reply is
//! printed through `message::show` (bounded, escaped). Ctrl-C/SIGTERM ends
//! it with exit code 0; LINGER is 1 s.

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        println!("Connecting to hello world server...");
        let context = zmq::Context::new();
        let requester = socket::new(&context, zmq::DEALER)
            .max_message_size(1024)
            .connect("tcp://localhost:5555")?;

        let mut reply_nbr = 0; // Number of replies received.
        for request_nbr in 1..=10 {
            println!("Sending request msg: Hello NO={request_nbr}...");
            // The first part is the empty delimiter, the second our request.
            helpers::send_more(&requester, "")?;
            helpers::send_string(&requester, "Hello")?;

            let mut reply = Message::recv(&requester)?;
            // A reply that starts with the delimiter is for us; anything else
            // is discarded whole.
            match (reply.pop(), reply.pop()) {
                (Some(delimiter), Some(body)) if delimiter.is_empty() => {
                    reply_nbr += 1;
                    println!("Received respond msg: {} NO={reply_nbr}\n", show(&body));
                }
                _ => println!("Discard the ZMQ message!"),
            }
        }
        Ok(())
    })
}
