//! Hello World server that shows its messages (`hwserver2.c`, in
//! `examples/C/` but not in the book's text).
//!
//! A REP socket bound to `tcp://*:5555`, like `hwserver`, but it prints
//! `Received request msg: <request>` and `Send respond msg: World` (then a
//! blank line) and replies at once, working for a second *after* the reply.
//! Run `hwclient`, `hwclient2` or `hwclient3` beside it.
//!
//! Differs from the C: the request is not cut at 10 bytes; Ctrl-C/SIGTERM
//! ends it cleanly (exit code 0).

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let responder = context.socket(zmq::REP)?;
    responder.bind("tcp://*:5555")?;

    let result = (|| -> Result<(), Error> {
        loop {
            let request = helpers::recv_string(&responder)?;
            println!("Received request msg: {request}");
            println!("Send respond msg: World\n");
            helpers::send_string(&responder, "World")?;
            interrupt::sleep_ms(1000)?; // Do some work.
        }
    })();
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}
