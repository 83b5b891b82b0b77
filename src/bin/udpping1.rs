//! §49 Cooperative Discovery Using UDP Broadcasts (`udpping1.c`): UDP
//! discovery done inline.
//!
//! Opens a UDP socket with `SO_BROADCAST` bound to port 9999 on every
//! interface, and polls its raw file descriptor with `zmq_poll` (ZeroMQ polls
//! non-ZeroMQ sockets too). Once a second it prints `Pinging peers...` and
//! broadcasts a one-byte beacon `!`; for every beacon that arrives it prints
//! `Found peer <ip>:9999`, its own included. Because the socket does not set
//! `SO_REUSEADDR`, a second `udpping1` on the same host fails with
//! `bind: Address already in use`, as the C does. Run it on several hosts of
//! one LAN (with that LAN's broadcast address) to watch them find each other.
//!
//! Usage: `udpping1 [broadcast-address]`.
//!
//! Differs from the C: beacons go to `127.255.255.255` (this machine only)
//! unless you pass an address such as `192.168.1.255` or `255.255.255.255`
//! (the C always used `255.255.255.255`); a datagram is read whole, whatever
//! its size, so a peer's odd packet is reported, never left half-read; errors
//! print `<call>: <reason>` and exit 1 like the C's `perror`; Ctrl-C exits 0.

use std::net::Ipv4Addr;
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
            eprintln!("udpping1: {e}");
            return ExitCode::FAILURE;
        }
    };
    program::run(|| run(broadcast))
}

fn run(broadcast: Ipv4Addr) -> Result<(), Error> {
    // A UDP socket with broadcast allowed, bound to our port (no reuse).
    let udp = Udp::bind(PING_PORT_NUMBER, broadcast, false).map_err(|e| perror("bind", e))?;

    // We poll the UDP socket for incoming beacons, and send our own once a
    // second. Send the first ping right away.
    let mut ping_at = Instant::now();
    let mut buffer = [0u8; 1500];
    loop {
        let timeout = ping_at.saturating_duration_since(Instant::now());
        let ready = interrupt::poll_any(&[Pollable::Fd(udp.fd())], interrupt::millis(timeout))?;
        // Someone answered our ping.
        if ready[0] {
            while let Some((_beacon, from)) =
                udp.recv(&mut buffer).map_err(|e| perror("recvfrom", e))?
            {
                println!("Found peer {}:{}", from.ip(), from.port());
            }
        }
        if Instant::now() >= ping_at {
            // Broadcast our beacon.
            println!("Pinging peers...");
            udp.send(b"!").map_err(|e| perror("sendto", e))?;
            ping_at = Instant::now() + PING_INTERVAL;
        }
    }
}

/// The C's `perror(call)` then `exit(1)`: the error says which call failed.
fn perror(call: &str, e: std::io::Error) -> Error {
    Error::Protocol(format!("{call}: {e}"))
}
