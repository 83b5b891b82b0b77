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

use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    println!("Connecting to hello world server...");
    let context = zmq::Context::new();
    let requester = context.socket(zmq::REQ)?;
    // Set the REQ socket's identity.
    requester.set_identity(b"ZMQ")?;
    requester.connect("tcp://localhost:5555")?;

    for request_nbr in 1..=10 {
        println!("Sending request msg: Hello NO={request_nbr}...");
        helpers::send_string(&requester, "Hello")?;
        let reply = helpers::recv_string(&requester)?;
        println!("Received respond msg: {reply} NO={request_nbr}\n");
    }
    Ok(())
}
