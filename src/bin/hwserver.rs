//! §1 Ask and Ye Shall Receive (`hwserver.c`): the Hello World server.
//!
//! A REP socket bound to `tcp://*:5555` answers every request with `World`,
//! one second after printing `Received Hello`. Run `hwclient` beside it (in
//! either order: ZeroMQ reconnects for you).
//!
//! Differs from the C: Ctrl-C/SIGTERM ends the loop cleanly (socket closed,
//! exit code 0) instead of killing the process mid-call.

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let responder = context.socket(zmq::REP)?;
    responder.bind("tcp://*:5555")?;

    loop {
        match helpers::recv_string(&responder) {
            Ok(_request) => println!("Received Hello"),
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        }
        if interrupt::sleep_ms(1000).is_err() {
            break; // Do some 'work'; stop early on Ctrl-C.
        }
        helpers::send_string(&responder, "World")?;
    }
    Ok(())
}
