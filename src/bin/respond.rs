//! respond: answers UDP surveys for the services on its command line
//! (study §2).
//!
//! `respond echo:5555 weather:5556` listens on the survey port (default
//! 5680, shared with other responders on this host) and answers every `SVY1`
//! request for `echo`, `weather`, or every service (an empty name), by
//! unicast to the surveyor: `SVY1`, the request id, the TCP port, the name.
//! Datagrams with a wrong header or a truncated or bad body are ignored and
//! counted (each shown with `-v`; the counts at exit). The same responder
//! runs inside any server as an actor ([`zguide::survey::Responder::spawn`]).
//!
//! Run beside it: `survey [SERVICE]`.
//!
//! Limits: at most `--max-answers-per-s` answers a second (default 100);
//! past that, surveys are dropped and counted, so a flood of requests cannot
//! make it flood the network; at most 64 services; reads in batches of 1000.

use std::process::ExitCode;

use clap::Parser;
use zguide::survey::{self, Responder, Service};
use zguide::{program, Error};

/// Answers service surveys for the services named on the command line.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Services to answer for, as NAME:PORT (the TCP port the service is on).
    #[arg(required = true, value_parser = Service::parse)]
    services: Vec<Service>,
    /// UDP port to listen for surveys on.
    #[arg(long, default_value_t = survey::DEFAULT_PORT)]
    port: u16,
    /// Answers per second at most; more surveys are dropped (and counted).
    #[arg(long, default_value_t = survey::DEFAULT_MAX_ANSWERS)]
    max_answers_per_s: u32,
    /// Show every survey answered and every datagram ignored.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run_logging(if args.verbose { "debug" } else { "info" }, || {
        let socket = survey::bind_udp(args.port).map_err(|e| {
            Error::Protocol(format!("cannot listen on UDP port {}: {e}", args.port))
        })?;
        let names: Vec<String> = args
            .services
            .iter()
            .map(|s| format!("{} (tcp port {})", s.name, s.port))
            .collect();
        let mut responder = Responder::new(socket, args.services.clone(), args.max_answers_per_s)?;
        println!(
            "respond: answering surveys on udp port {} for {}",
            args.port,
            names.join(", ")
        );
        let result = responder.run();
        log::info!("answered {}; {}", responder.answered, responder.ignored);
        result
    })
}
