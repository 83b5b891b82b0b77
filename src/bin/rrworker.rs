//! §5 Shared Queue (`rrworker.c`): the request-reply worker.
//!
//! A REP socket connects to `tcp://localhost:5560`, the backend of a broker
//! (`rrbroker` or `msgqueue`), prints `Received request: [<request>]`, works
//! for a second and replies `World`. Run several: the broker's DEALER
//! spreads requests over them.
//!
//! Differs from the C: Ctrl-C/SIGTERM ends it cleanly (exit code 0).

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // Socket to talk to clients.
    let responder = context.socket(zmq::REP)?;
    responder.connect("tcp://localhost:5560")?;

    let result = (|| -> Result<(), Error> {
        loop {
            // Wait for the next request from a client.
            let request = helpers::recv_string(&responder)?;
            println!("Received request: [{request}]");
            interrupt::sleep_ms(1000)?; // Do some 'work'.
            helpers::send_string(&responder, "World")?; // Send the reply back.
        }
    })();
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}
