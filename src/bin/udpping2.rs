//! §49 Cooperative Discovery Using UDP Broadcasts (`udpping2.c`): the same
//! discovery loop as `udpping1`, with the socket work moved into the
//! `udp` module (the C's `udplib`).
//!
//! Once a second it prints `Pinging peers...` and broadcasts a one-byte
//! beacon on port 9999; beacons that arrive are read and not printed (as in
//! the C). The socket sets `SO_REUSEADDR`, so several copies can run on one
//! host. Usage: `udpping2 [broadcast-address]`.
//!
//! Differs from the C: beacons go to `127.255.255.255` unless you pass an
//! address (the C used `255.255.255.255`); Ctrl-C exits 0.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::interrupt::{self, Pollable};
use zguide::udp::{self, Udp};
use zguide::{program, Error};

const PING_PORT_NUMBER: u16 = 9999;
const PING_INTERVAL: Duration = Duration::from_millis(1000); //  Once per second

fn main() -> ExitCode {
    let broadcast = match std::env::args().nth(1).map(|a| udp::broadcast_of(&a)) {
        None => udp::DEFAULT_BROADCAST,
        Some(Ok(address)) => address,
        Some(Err(e)) => {
            eprintln!("udpping2: {e}");
            return ExitCode::FAILURE;
        }
    };
    program::run(|| {
        let udp = Udp::new(PING_PORT_NUMBER, broadcast)
            .map_err(|e| Error::Protocol(format!("(udp) {e}")))?;
        let mut ping_at = Instant::now();
        let mut buffer = [0u8; 1500];
        loop {
            let timeout = ping_at.saturating_duration_since(Instant::now());
            let ready = interrupt::poll_any(&[Pollable::Fd(udp.fd())], interrupt::millis(timeout))?;
            // Someone answered our ping: read it, nothing more.
            if ready[0] {
                while let Ok(Some(_)) = udp.recv(&mut buffer) {}
            }
            if Instant::now() >= ping_at {
                println!("Pinging peers...");
                if let Err(e) = udp.send(b"!") {
                    log::warn!("cannot send beacon: {e}");
                }
                ping_at = Instant::now() + PING_INTERVAL;
            }
        }
    })
}
