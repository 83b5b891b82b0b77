//! §12 Node Coordination (`syncpub.c`): a publisher that waits for its
//! subscribers.
//!
//! A PUB socket bound to `tcp://*:5561` and a REP socket bound to
//! `tcp://*:5562`. It prints `Waiting for subscribers`, answers one empty
//! synchronisation request from each of 10 `syncsub`, prints
//! `Broadcasting messages`, publishes 1,000,000 × `Rhubarb` and then `END`,
//! and exits once everything is flushed (default LINGER). Start it, then ten
//! `syncsub` (or the subscribers first: they wait).
//!
//! The send high-water mark is raised to 1,100,000 *before* the bind: the
//! PUB socket must be able to queue the whole broadcast for a slow
//! subscriber instead of dropping, and an option set after the bind does not
//! apply to connections made through it (an earlier Rust port lost messages
//! that way, rust-zmq #192).

use zguide::{helpers, Error};

/// We wait for 10 subscribers.
const SUBSCRIBERS_EXPECTED: usize = 10;

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();

    // Socket to talk to clients.
    let publisher = context.socket(zmq::PUB)?;
    publisher.set_sndhwm(1_100_000)?;
    publisher.bind("tcp://*:5561")?;

    // Socket to receive signals.
    let syncservice = context.socket(zmq::REP)?;
    syncservice.bind("tcp://*:5562")?;

    // Get synchronization from the subscribers.
    println!("Waiting for subscribers");
    for _ in 0..SUBSCRIBERS_EXPECTED {
        // Wait for a synchronization request, then reply.
        helpers::recv_string(&syncservice)?;
        helpers::send_string(&syncservice, "")?;
    }

    // Now broadcast exactly 1M updates followed by END.
    println!("Broadcasting messages");
    for _ in 0..1_000_000 {
        helpers::send_string(&publisher, "Rhubarb")?;
    }
    helpers::send_string(&publisher, "END")?;
    Ok(())
}
