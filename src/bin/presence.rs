//! presence: tracks who is there by their UDP beacons (study §3).
//!
//! Listens on `--port` (default 5681) for beacons with `--header` (default
//! `FOO1`) and a 2-byte TCP port, and prints `JOINED <ip>:<port>` the first
//! time it hears one and `LEFT <ip>:<port>` when none came for `--expiry-ms`
//! (default five intervals). Beacons with another header are ignored; those
//! with the header but a bad body are ignored and counted (`-v`).
//!
//! `--announce PORT` also beacons our own service (as `beacon` does), so
//! presences on several hosts see each other; we never report ourselves
//! unless `--echo` asks for it.
//!
//! Run beside it: `beacon PORT` (on this host, or with `--broadcast` on a LAN).
//!
//! Limits: at most 10,000 services tracked (new ones past that are ignored,
//! with a warning); datagrams over 255 bytes ignored; beacons at most one per
//! interval (at least 10 ms).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::beacon::{self, Beacon, ListenSettings};
use zguide::{program, udp, Error};

/// Prints JOINED/LEFT as services' beacons come and go.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The beacon header to listen for (and announce with).
    #[arg(long, default_value = beacon::DEFAULT_HEADER)]
    header: String,
    /// UDP port of the beacons.
    #[arg(long, default_value_t = beacon::DEFAULT_PORT)]
    port: u16,
    /// Broadcast address for --announce, or an interface name.
    #[arg(long, default_value_t = udp::DEFAULT_BROADCAST.to_string())]
    broadcast: String,
    /// The beacon interval in ms (of --announce, and the unit of the default expiry).
    #[arg(long, default_value_t = beacon::DEFAULT_INTERVAL.as_millis() as u64)]
    interval_ms: u64,
    /// A service silent this long has LEFT; default 5 × --interval-ms.
    #[arg(long)]
    expiry_ms: Option<u64>,
    /// Also announce this TCP port with our own beacon.
    #[arg(long)]
    announce: Option<u16>,
    /// Report our own beacon too.
    #[arg(long)]
    echo: bool,
    /// Show ignored beacons.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run_logging(if args.verbose { "debug" } else { "info" }, || {
        let context = zmq::Context::new();
        let broadcast = udp::broadcast_of(&args.broadcast).map_err(Error::Protocol)?;
        let beacon = Beacon::new(&context, args.port, broadcast)?;
        let interval = Duration::from_millis(args.interval_ms).max(beacon::MIN_INTERVAL);
        let expiry = args.expiry_ms.map_or(interval * 5, Duration::from_millis);
        beacon.echo(args.echo)?;
        if let Some(port) = args.announce {
            beacon.publish(
                &beacon::presence_beacon(args.header.as_bytes(), port),
                interval,
            )?;
            log::info!("announcing tcp port {port} to {broadcast}:{}", args.port);
        }
        let settings = ListenSettings {
            header: args.header.as_bytes().to_vec(),
            expiry,
            reap_every: (interval / 4).max(Duration::from_millis(10)),
        };
        log::info!(
            "listening for {} beacons on udp port {} (expiry {} ms)",
            args.header,
            args.port,
            expiry.as_millis()
        );
        beacon::listen(&beacon, &settings, &mut std::io::stdout())
    })
}
