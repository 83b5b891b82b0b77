//! §14 Pub-Sub Message Envelopes (`psenvpub.c`): a publisher that puts the
//! key in its own frame.
//!
//! A PUB socket bound to `tcp://*:5563` sends, every second, two messages of
//! two frames each: `[A][We don't want to see this]` and
//! `[B][We would like to see this]`. Subscriptions match the start of the
//! first frame, so the key frame is the envelope. Run `psenvsub` beside it.
//!
//! Differs from the C: Ctrl-C/SIGTERM ends it cleanly (exit code 0).

use zguide::{interrupt, Error, Message};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let publisher = context.socket(zmq::PUB)?;
    publisher.set_linger(0)?;
    publisher.bind("tcp://*:5563")?;

    loop {
        // Write two messages, each with an envelope and content.
        Message::from_frames(["A", "We don't want to see this"]).send(&publisher)?;
        Message::from_frames(["B", "We would like to see this"]).send(&publisher)?;
        match interrupt::sleep_ms(1000) {
            Ok(()) => {}
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
