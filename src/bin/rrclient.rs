//! §5 Shared Queue (`rrclient.c`): the request-reply client.
//!
//! A REQ socket connects to `tcp://localhost:5559`, the frontend of a broker
//! (`rrbroker`, or `msgqueue` from §6), sends `Hello` ten times and prints
//! `Received reply <n> [<reply>]`. Run a broker and one or more `rrworker`
//! beside it; several clients may run at once. Same as the C.

use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();

    // Socket to talk to the server.
    let requester = context.socket(zmq::REQ)?;
    requester.connect("tcp://localhost:5559")?;

    for request_nbr in 0..10 {
        helpers::send_string(&requester, "Hello")?;
        let reply = helpers::recv_string(&requester)?;
        println!("Received reply {request_nbr} [{reply}]");
    }
    Ok(())
}
