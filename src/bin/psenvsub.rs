//! §14 Pub-Sub Message Envelopes (`psenvsub.c`): a subscriber that filters
//! on the envelope.
//!
//! A SUB socket connects to `tcp://localhost:5563` (`psenvpub`) and subscribes
//! to `B`; it prints `[B] We would like to see this` once a second and never
//! an `[A]` line, because filtering looks only at the first frame.
//!
//! Differs from the C: the message is received as a whole, and one without
//! a content frame is logged and skipped rather than read across into the
//! next message. Both frames are printed through `message::show` (at most 32
//! bytes each, escaped), and a frame may be at most 1 KiB (`MAXMSGSIZE`).
//! Ctrl-C/SIGTERM ends it cleanly (exit code 0).

use std::process::ExitCode;

use zguide::message::show;
use zguide::{program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and subscriber.
        let context = zmq::Context::new();
        let subscriber = socket::new(&context, zmq::SUB)
            .max_message_size(1024)
            .subscribe("B")
            .connect("tcp://localhost:5563")?;

        loop {
            let mut msg = Message::recv(&subscriber)?;
            // Read envelope with address, then message contents.
            let frames = msg.len();
            match (msg.pop(), msg.pop()) {
                (Some(address), Some(contents)) => {
                    println!("[{}] {}", show(&address), show(&contents))
                }
                _ => log::warn!("dropped a message of {frames} frame(s): no contents"),
            }
        }
    })
}
