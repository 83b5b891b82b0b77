//! survey: "who offers service S?" by one UDP broadcast (study §2).
//!
//! Sends one `SVY1` request for SERVICE (none: every service) to the
//! broadcast address and port, prints one line per distinct answer,
//! `<service> at tcp://<ip>:<port>`, as the answers come, and exits after
//! the window: 0 if at least one answer came, 1 otherwise. With `-v` it also
//! says what it ignored (wrong header, truncated, foreign request id).
//!
//! Run beside it: `respond NAME:PORT …` on this host (the default broadcast
//! address `127.255.255.255` reaches this machine only: local discovery with
//! no configuration) or, with `--broadcast <address or interface>`, on a LAN.
//!
//! Limits: one datagram out; at most 10,000 distinct answers kept; replies
//! read in batches of 1000; names printed escaped (`message::show`).

use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::{program, survey, udp, Error};

/// Asks the network who offers a service, and lists the answers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The service to look for; empty or absent: every service.
    #[arg(default_value = "")]
    service: String,
    /// Broadcast address, or an interface name whose broadcast address to use.
    #[arg(long, default_value_t = udp::DEFAULT_BROADCAST.to_string())]
    broadcast: String,
    /// UDP port the responders listen on.
    #[arg(long, default_value_t = survey::DEFAULT_PORT)]
    port: u16,
    /// Milliseconds to collect answers.
    #[arg(long, default_value_t = survey::DEFAULT_WINDOW.as_millis() as u64)]
    window_ms: u64,
    /// Say what was ignored (debug logging).
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut found_any = false;
    let code = program::run_logging(if args.verbose { "debug" } else { "info" }, || {
        let broadcast = udp::broadcast_of(&args.broadcast).map_err(Error::Protocol)?;
        let socket = survey::bind_udp(0)
            .map_err(|e| Error::Protocol(format!("cannot open a UDP socket: {e}")))?;
        let result = survey::survey(
            &socket,
            SocketAddrV4::new(broadcast, args.port),
            &args.service,
            Duration::from_millis(args.window_ms),
            |found| println!("{found}"),
        )?;
        log::debug!("{}", result.ignored);
        found_any = !result.found.is_empty();
        Ok(())
    });
    if code == ExitCode::SUCCESS && !found_any {
        ExitCode::FAILURE
    } else {
        code
    }
}
