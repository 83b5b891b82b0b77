//! §35 Model Three: Complex and Nasty (`flserver3.c`): a Freelance (FLP)
//! server on a ROUTER socket, for `flclient3` and its `flcliapi` agent.
//!
//! `flserver3 [-v] [endpoint]` sets its ROUTER identity to `endpoint`
//! (default `tcp://localhost:5555`, the C's), binds the same port on every
//! interface (`tcp://*:5555`) and prints `I: service is ready at tcp://*:5555`.
//! A `[PING]` is answered `[PONG]`; any other request `[control][body…]` is
//! answered `[control][OK]`. `-v` dumps every request and reply (frames cut
//! to 32 bytes) on stderr. Run three of them beside `flclient3`:
//!
//! ```text
//! flserver3 &  flserver3 tcp://localhost:5556 &  flserver3 tcp://localhost:5557 &
//! flclient3
//! ```
//!
//! **The endpoint is the server's identity, and a client reaches the server
//! only if it connects with exactly that string**, byte for byte: a server
//! started as `tcp://localhost:5555` cannot be reached by a client that
//! connects to `tcp://127.0.0.1:5555`, although the TCP connection works. The
//! client's agent routes each request by the endpoint string it connected to.
//!
//! Differs from the C: the C hard-codes `tcp://localhost:5555`, so the other
//! two servers `flclient3` connects to cannot be started without editing it;
//! here the endpoint is the argument (a `tcp://host:port` endpoint binds
//! `tcp://*:port`, any other is bound as given). A message with no frame
//! after the client's identity, which made the C crash, is logged and
//! dropped.
//!
//! Limits: frames up to 64 KiB (a bigger one makes libzmq drop that client's
//! connection); replies are sent without blocking (`ROUTER_MANDATORY`), at
//! most 100 queued per client: a reply to a client that stopped reading, or
//! that is gone, is dropped and counted (logged the 1st, 2nd, 4th … time).
//! Ctrl-C/SIGTERM: prints `W: interrupted` and exits 0, as the C.

use std::process::ExitCode;

use zguide::flcliapi::server_socket;
use zguide::log_limit::Sparse;
use zguide::{program, Error, Message};

/// The C's only endpoint, kept as the default.
const DEFAULT_ENDPOINT: &str = "tcp://localhost:5555";

/// Where to bind for a public endpoint: every interface on the same port for
/// TCP (`tcp://localhost:5556` → `tcp://*:5556`), else the endpoint itself.
fn bind_endpoint(endpoint: &str) -> String {
    match endpoint
        .strip_prefix("tcp://")
        .and_then(|a| a.rsplit_once(':'))
    {
        Some((_host, port)) => format!("tcp://*:{port}"),
        None => endpoint.to_string(),
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let program_name = args.remove(0);
    let verbose = args.iter().any(|a| a == "-v");
    args.retain(|a| a != "-v");
    if args.len() > 1 || args.iter().any(|a| a.starts_with('-')) {
        println!("I: syntax: {program_name} [-v] [endpoint]");
        return ExitCode::SUCCESS;
    }
    let endpoint = args.pop().unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    program::run(|| serve(&endpoint, verbose))
}

fn serve(endpoint: &str, verbose: bool) -> Result<(), Error> {
    let context = zmq::Context::new();
    // Prepare the server socket with its predictable identity.
    let bind_endpoint = bind_endpoint(endpoint);
    let server = server_socket(&context, zmq::ROUTER)
        .identity(endpoint)
        .router_mandatory()
        .bind(&bind_endpoint)?;
    println!("I: service is ready at {bind_endpoint}");
    log::info!("clients must connect to exactly {endpoint}: it is this server's identity");

    let mut malformed = Sparse::default();
    let mut dropped = Sparse::default();
    loop {
        let mut request = match Message::recv(&server) {
            Ok(request) => request,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };
        if verbose {
            eprint!("{}", request.dump_short());
        }
        // Frame 0: identity of client
        // Frame 1: PING, or client control frame
        // Frame 2: request body
        if request.len() < 2 {
            if let Some(n) = malformed.note() {
                log::warn!("malformed request ({n} so far): {}", request.summary());
            }
            continue;
        }
        let identity = request.pop().unwrap_or_default();
        let control = request.pop().unwrap_or_default();
        let mut reply = if control == b"PING" {
            Message::from_frames(["PONG"])
        } else {
            Message::from_frames([control, b"OK".to_vec()])
        };
        reply.push(identity);
        if verbose {
            eprint!("{}", reply.dump_short());
        }
        if !reply.send_or_drop(&server)? {
            if let Some(n) = dropped.note() {
                log::warn!("reply dropped ({n} so far): the client is gone or not reading");
            }
        }
    }
    println!("W: interrupted");
    Ok(())
}
