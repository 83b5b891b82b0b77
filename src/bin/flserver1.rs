//! §33 Model One: Simple Retry and Failover (`flserver1.c`): a trivial echo
//! service for `flclient1`.
//!
//! `flserver1 <endpoint>` binds a REP socket to the endpoint, prints
//! `I: echo service is ready at <endpoint>`, and sends every request back
//! unchanged. Without an argument it prints `I: syntax: <program> <endpoint>`.
//! Run two of them beside the client:
//!
//! ```text
//! flserver1 tcp://*:5555 &  flserver1 tcp://*:5556 &
//! flclient1 tcp://localhost:5555 tcp://localhost:5556
//! ```
//!
//! Limits (the C has none): frames up to 64 KiB (a bigger one makes libzmq
//! drop that client's connection); at most 100 unread replies queued per
//! client, after which libzmq's REP drops that client's replies, so a client
//! that stops reading can neither block the server nor grow it. Messages
//! without a REQ envelope are discarded by the REP socket itself.
//!
//! A flaw of libzmq's REP (4.3.4, still in its source today) that the C
//! shares: after such an envelope-less message from a client that has
//! already gone, REP's inner ROUTER stays "in the middle of a reply"
//! (`router_t::rollback` clears that only when it had a pipe to roll back),
//! so the next reply, to whoever asked, is silently dropped as the tail of
//! it; the reply after that goes out. The request was received and answered;
//! nothing here can see the loss. flclient1's retry covers it.
//!
//! Ctrl-C/SIGTERM: prints `W: interrupted` and exits 0, as the C.

use std::process::ExitCode;

use zguide::flcliapi::server_socket;
use zguide::{program, Error, Message};

fn main() -> ExitCode {
    let mut args = std::env::args();
    let program_name = args.next().unwrap_or_else(|| "flserver1".into());
    let Some(endpoint) = args.next() else {
        println!("I: syntax: {program_name} <endpoint>");
        return ExitCode::SUCCESS;
    };
    program::run(|| {
        let context = zmq::Context::new();
        let server = server_socket(&context, zmq::REP).bind(&endpoint)?;
        println!("I: echo service is ready at {endpoint}");
        loop {
            let msg = match Message::recv(&server) {
                Ok(msg) => msg,
                Err(Error::Interrupted) => break,
                Err(e) => return Err(e),
            };
            // Never blocks; a reply to a client with a full queue is dropped.
            msg.send_or_drop(&server)?;
        }
        println!("W: interrupted");
        Ok(())
    })
}
