//! §1 Ask and Ye Shall Receive (`hwclient.c`): the Hello World client.
//!
//! A REQ socket connects to `tcp://localhost:5555`, sends `Hello` ten times and
//! prints each `World` it gets back, then exits. Start `hwserver` beside it
//! (the order does not matter). Also works against `mtserver` (§10).

use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();

    println!("Connecting to hello world server...");
    let requester = context.socket(zmq::REQ)?;
    requester.connect("tcp://localhost:5555")?;

    for request_nbr in 0..10 {
        println!("Sending Hello {request_nbr}...");
        helpers::send_string(&requester, "Hello")?;
        helpers::recv_string(&requester)?;
        println!("Received World {request_nbr}");
    }
    Ok(())
}
