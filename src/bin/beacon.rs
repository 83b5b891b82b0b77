//! beacon: announces a service's TCP port by UDP broadcast (study §3).
//!
//! Sends `FOO1` (the header, `--header`) and PORT (2 bytes, network order)
//! every `--interval-ms` to `--broadcast`:`--port` (default
//! `127.255.255.255:5681`, this machine only), until Ctrl-C. It listens to
//! nothing. Built on the [`zguide::beacon::Beacon`] actor (as `zbeacon`).
//!
//! Run beside it: `presence`, which prints `JOINED 127.0.0.1:PORT`, and
//! `LEFT …` five intervals after this beacon stops.
//!
//! Limits: one datagram per interval, never more often than every 10 ms;
//! the header is at most 253 bytes (a beacon is at most 255).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::beacon::{self, Beacon};
use zguide::{interrupt, program, udp, Error};

/// Announces a service's TCP port by UDP broadcast beacons.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The TCP port of the service to announce.
    service_port: u16,
    /// The beacon's header.
    #[arg(long, default_value = beacon::DEFAULT_HEADER)]
    header: String,
    /// Broadcast address, or an interface name whose broadcast address to use.
    #[arg(long, default_value_t = udp::DEFAULT_BROADCAST.to_string())]
    broadcast: String,
    /// UDP port of the beacons.
    #[arg(long, default_value_t = beacon::DEFAULT_PORT)]
    port: u16,
    /// Milliseconds between beacons (at least 10).
    #[arg(long, default_value_t = beacon::DEFAULT_INTERVAL.as_millis() as u64)]
    interval_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run(|| {
        let broadcast = udp::broadcast_of(&args.broadcast).map_err(Error::Protocol)?;
        let context = zmq::Context::new();
        let beacon = Beacon::new(&context, args.port, broadcast)?;
        let interval = Duration::from_millis(args.interval_ms).max(beacon::MIN_INTERVAL);
        beacon.publish(
            &beacon::presence_beacon(args.header.as_bytes(), args.service_port),
            interval,
        )?;
        println!(
            "beacon: announcing tcp port {} as {} every {} ms to {broadcast}:{}",
            args.service_port,
            args.header,
            interval.as_millis(),
            args.port
        );
        loop {
            interrupt::sleep_ms(1000)?;
        }
    })
}
