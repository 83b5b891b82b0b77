//! §14 Pub-Sub Message Envelopes (`psenvpub.c`): a publisher that puts the
//! key in its own frame.
//!
//! A PUB socket bound to `tcp://*:5563` sends, every second, two messages of
//! two frames each: `[A][We don't want to see this]` and
//! `[B][We would like to see this]`. Subscriptions match the start of the
//! first frame, so the key frame is the envelope. Run `psenvsub` beside it.
//!
//! Limits: subscriptions reach a PUB socket as inbound messages, so
//! `MAXMSGSIZE` 256 bytes bounds each to a 255-byte prefix (a longer one
//! drops that subscriber's connection); their number is not capped by
//! libzmq, and each lives as long as its subscriber's connection. A PUB send
//! never blocks (a subscriber that stops reading loses messages); LINGER is
//! 0.
//!
//! Differs from the C: the subscription bound; Ctrl-C/SIGTERM ends it
//! cleanly (exit code 0).

use std::process::ExitCode;

use zguide::{interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and publisher.
        let context = zmq::Context::new();
        let publisher = socket::new(&context, zmq::PUB)
            .max_message_size(256) // bounds each subscription
            .linger(0)
            .bind("tcp://*:5563")?;

        loop {
            // Write two messages, each with an envelope and content.
            Message::from_frames(["A", "We don't want to see this"]).send(&publisher)?;
            Message::from_frames(["B", "We would like to see this"]).send(&publisher)?;
            interrupt::sleep_ms(1000)?;
        }
    })
}
