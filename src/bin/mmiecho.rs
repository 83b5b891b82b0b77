//! MMI echo query example (§29 "Service Discovery"): the port of `mmiecho.c`.
//!
//! Asks the broker at `tcp://localhost:5555`, through the reserved service
//! `mmi.service`, whether the service `echo` has a worker, and prints
//! `Lookup echo service: 200` (yes) or `404` (no). With no broker it gives up
//! after 3 × 2.5 s and prints `E: no response from broker, make sure it's
//! running`. `-v` prints every message.
//!
//! Run beside it: `mdbroker`, with and without an `mdworker`.
//! Differs from the C: the answer code is printed through `message::show`
//! (escaped, at most 32 bytes); on Ctrl-C it exits 0 without claiming that
//! the broker did not answer. Socket limits as in `mdclient`.

use std::process::ExitCode;

use zguide::mdp::Client;
use zguide::message::show;
use zguide::{program, Error, Message};

fn main() -> ExitCode {
    program::run(|| {
        let verbose = std::env::args().nth(1).as_deref() == Some("-v");
        let mut session = Client::new("tcp://localhost:5555", verbose)?;

        //  This is the service we want to look up
        let request = Message::from_frames(["echo"]);
        //  This is the service we send our request to
        match session.send("mmi.service", request) {
            Ok(reply) => {
                let code = show(reply.first().unwrap_or_default());
                println!("Lookup echo service: {code}");
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(_) => println!("E: no response from broker, make sure it's running"),
        }
        Ok(())
    })
}
