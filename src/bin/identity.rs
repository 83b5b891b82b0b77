//! §15 Identities and Addresses (`identity.c`): what a ROUTER socket sees.
//!
//! A ROUTER socket bound to `inproc://example` receives one message from each
//! of two REQ sockets and dumps it frame by frame. The first REQ has no
//! identity, so libzmq makes one up: 5 bytes starting with a zero byte,
//! printed in hex. The second sets its identity to `PEER2`, and the ROUTER uses
//! that. Both messages show the empty delimiter frame that REQ adds, which is
//! why the peers must be REQ and not DEALER (zguide #644). Runs alone, exits.

use zguide::message::dump_socket;
use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();
    let sink = context.socket(zmq::ROUTER)?;
    sink.bind("inproc://example")?;

    // First let ZeroMQ choose the identity.
    let anonymous = context.socket(zmq::REQ)?;
    anonymous.connect("inproc://example")?;
    helpers::send_string(&anonymous, "ROUTER uses a generated 5 byte identity")?;
    print!("{}", dump_socket(&sink)?);

    // Then set it ourselves.
    let identified = context.socket(zmq::REQ)?;
    identified.set_identity(b"PEER2")?;
    identified.connect("inproc://example")?;
    helpers::send_string(&identified, "ROUTER socket uses REQ's socket identity")?;
    print!("{}", dump_socket(&sink)?);
    Ok(())
}
