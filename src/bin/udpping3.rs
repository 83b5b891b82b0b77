//! §50 Designing the API (`udpping3.c`): discovery behind a small API.
//!
//! All the UDP work lives in the `interface` module's agent thread, which
//! beacons a random 16-byte UUID on port 9999 every second and reports peers
//! as they come and go. This program only prints each event the way
//! `zmsg_dump` does:
//!
//! ```text
//! ----------------------------------------
//! [006] JOINED
//! [032] 418E98D4B7184844B7D5E0EE5691084C
//! ```
//!
//! and, about five seconds after that peer stops, `[004] LEFT` with the same
//! UUID. Run two or more copies (they share the port); kill one to see it
//! leave. Usage: `udpping3 [broadcast-address]`.
//!
//! Differs from the C: beacons go to `127.255.255.255` unless you pass an
//! address (the C used `255.255.255.255`); see the `interface` module for the
//! agent's fixes; Ctrl-C exits 0.

use std::process::ExitCode;

use zguide::interface::Interface;
use zguide::{program, udp};

fn main() -> ExitCode {
    let broadcast = match std::env::args().nth(1).map(|a| udp::broadcast_of(&a)) {
        None => udp::DEFAULT_BROADCAST,
        Some(Ok(address)) => address,
        Some(Err(e)) => {
            eprintln!("udpping3: {e}");
            return ExitCode::FAILURE;
        }
    };
    program::run(|| {
        let context = zmq::Context::new();
        let interface = Interface::new(&context, broadcast)?;
        loop {
            let event = interface.recv()?;
            print!("{}", event.dump());
        }
    })
}
