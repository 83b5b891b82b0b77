//! MMI echo query example (§29 "Service Discovery"): the port of `mmiecho.c`.
//!
//! Asks the broker at `tcp://localhost:5555`, through the reserved service
//! `mmi.service`, whether the service `echo` has a worker, and prints
//! `Lookup echo service: 200` (yes) or `404` (no). With no broker it gives up
//! after 3 × 2.5 s and prints `E: no response from broker, make sure it's
//! running`. `-v` prints every message.
//!
//! Run beside it: `mdbroker`, with and without an `mdworker`.

use zguide::helpers::init_log;
use zguide::mdp::Client;
use zguide::{interrupt, Message};

fn main() {
    init_log("info");
    interrupt::catch_signals();
    let verbose = std::env::args().nth(1).as_deref() == Some("-v");

    let mut session = match Client::new("tcp://localhost:5555", verbose) {
        Ok(session) => session,
        Err(e) => {
            log::error!("cannot start the client: {e}");
            std::process::exit(1);
        }
    };
    //  This is the service we want to look up
    let request = Message::from_frames(["echo"]);
    //  This is the service we send our request to
    match session.send("mmi.service", request) {
        Ok(reply) => {
            let code = String::from_utf8_lossy(reply.first().unwrap_or_default());
            println!("Lookup echo service: {code}");
        }
        Err(_) => println!("E: no response from broker, make sure it's running"),
    }
}
