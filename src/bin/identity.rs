//! §15 Identities and Addresses (`identity.c`): what a ROUTER socket sees.
//!
//! A ROUTER socket bound to `inproc://example` receives one message from each
//! of two REQ sockets and dumps it frame by frame. The first REQ has no
//! identity, so libzmq makes one up: 5 bytes starting with a zero byte,
//! printed in hex. The second sets its identity to `PEER2`, and the ROUTER uses
//! that. Both messages show the empty delimiter frame that REQ adds, which is
//! why the peers must be REQ and not DEALER (zguide #644). Runs alone, exits.

use std::process::ExitCode;

use zguide::message::dump_socket;
use zguide::{helpers, program, socket};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let sink = socket::new(&context, zmq::ROUTER).bind("inproc://example")?;

        // First let ZeroMQ choose the identity.
        let anonymous = socket::new(&context, zmq::REQ).connect("inproc://example")?;
        helpers::send_string(&anonymous, "ROUTER uses a generated 5 byte identity")?;
        print!("{}", dump_socket(&sink)?);

        // Then set it ourselves.
        let identified = socket::new(&context, zmq::REQ)
            .identity("PEER2")
            .connect("inproc://example")?;
        helpers::send_string(&identified, "ROUTER socket uses REQ's socket identity")?;
        print!("{}", dump_socket(&sink)?);
        Ok(())
    })
}
