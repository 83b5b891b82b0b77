//! §14 Pub-Sub Message Envelopes (`psenvsub.c`): a subscriber that filters
//! on the envelope.
//!
//! A SUB socket connects to `tcp://localhost:5563` (`psenvpub`) and subscribes
//! to `B`; it prints `[B] We would like to see this` once a second and never
//! an `[A]` line, because filtering looks only at the first frame.
//!
//! Differs from the C: the message is received as a whole, and one without
//! a content frame is logged and skipped rather than read across into the
//! next message. Ctrl-C/SIGTERM ends it cleanly (exit code 0).

use zguide::{helpers, interrupt, Error, Message};

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let subscriber = context.socket(zmq::SUB)?;
    subscriber.connect("tcp://localhost:5563")?;
    subscriber.set_subscribe(b"B")?;

    loop {
        let mut msg = match Message::recv(&subscriber) {
            Ok(msg) => msg,
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Read the envelope with the address, then the contents.
        let frames = msg.len();
        match (msg.pop(), msg.pop()) {
            (Some(address), Some(contents)) => println!(
                "[{}] {}",
                String::from_utf8_lossy(&address),
                String::from_utf8_lossy(&contents)
            ),
            _ => log::warn!("dropped a message of {frames} frame(s): no contents"),
        }
    }
}
