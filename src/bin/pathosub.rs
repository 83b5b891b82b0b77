//! §37 Last Value Caching (`pathosub.c`): the pathological subscriber.
//!
//! Connects a SUB to the first argument, or `tcp://localhost:5556`,
//! subscribes to one random topic `000`…`999` and prints the value of every
//! message on it (`Save Roger`, `Off with his head!`), until Ctrl-C. Beside
//! `pathopub` alone it waits for its topic's next random update; behind
//! `lvcache` (`pathosub tcp://localhost:5558`) it prints the cached value at
//! once.
//!
//! Differs from the C: an optional second argument chooses the topic (so two
//! subscribers can share one, to see that both get the cached value); a
//! message on another topic or of another shape is logged and skipped (the C
//! asserts); Ctrl-C exits 0.

use std::process::ExitCode;

use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let endpoint = helpers::arg_or(1, "tcp://localhost:5556");
        let subscription = std::env::args()
            .nth(2)
            .unwrap_or_else(|| format!("{:03}", helpers::randof(1000)));
        let subscriber = socket::new(&context, zmq::SUB)
            .linger(0)
            .subscribe(subscription.as_bytes())
            .connect(&endpoint)?;
        loop {
            let msg = Message::recv(&subscriber)?;
            match (msg.get(0), msg.get(1), msg.len()) {
                (Some(topic), Some(data), 2) if topic == subscription.as_bytes() => {
                    println!("{}", String::from_utf8_lossy(data));
                }
                _ => log::warn!("unexpected message: {}", msg.summary()),
            }
        }
    })
}
