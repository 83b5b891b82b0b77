//! §12 Node Coordination (`syncpub.c`): a publisher that waits for its
//! subscribers.
//!
//! A PUB socket bound to `tcp://*:5561` and a REP socket bound to
//! `tcp://*:5562`. It prints `Waiting for subscribers`, answers one empty
//! synchronisation request from each of 10 `syncsub`, prints
//! `Broadcasting messages`, publishes 1,000,000 × `Rhubarb` and then `END`,
//! and exits once everything is flushed. Start it, then ten `syncsub` (or
//! the subscribers first: they wait).
//!
//! The send high-water mark is raised to 1,100,000 *before* the bind: the
//! PUB socket must be able to queue the whole broadcast for a slow
//! subscriber instead of dropping, and an option set after the bind does not
//! apply to connections made through it (an earlier Rust port lost messages
//! that way, rust-zmq #192).
//!
//! Limits: a subscription may be at most 255 bytes and a sync request frame
//! 1 KiB (`MAXMSGSIZE` on each socket; subscriptions reach PUB as inbound
//! messages). The PUB drops updates for a subscriber more than 1,100,000
//! behind (a PUB send never blocks), and a REP send never blocks. The
//! broadcast gets at most 60 s (LINGER) to drain at exit; the wait runs on a
//! helper thread, so Ctrl-C/SIGTERM still ends the program at once.
//!
//! Differs from the C: each sync request is read whole (the C reads one
//! frame, so a two-frame request made its reply fail); the limits above;
//! Ctrl-C/SIGTERM exits with code 0 at any point.

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket, Error, Message};

/// We wait for 10 subscribers.
const SUBSCRIBERS_EXPECTED: usize = 10;

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to talk to clients.
        let publisher = socket::new(&context, zmq::PUB)
            .send_hwm(1_100_000)
            .max_message_size(256) // bounds each subscription
            .linger(60_000)
            .bind("tcp://*:5561")?;

        // Socket to receive signals.
        let syncservice = socket::new(&context, zmq::REP)
            .max_message_size(1024)
            .bind("tcp://*:5562")?;

        // Get synchronization from subscribers.
        println!("Waiting for subscribers");
        for _ in 0..SUBSCRIBERS_EXPECTED {
            // - wait for synchronization request
            Message::recv(&syncservice)?;
            // - send synchronization reply
            helpers::send_string(&syncservice, "")?;
        }
        // Now broadcast exactly 1M updates followed by END.
        println!("Broadcasting messages");
        for _ in 0..1_000_000 {
            if interrupt::interrupted() {
                publisher.set_linger(0)?;
                return Err(Error::Interrupted);
            }
            helpers::send_string(&publisher, "Rhubarb")?;
        }
        helpers::send_string(&publisher, "END")?;

        // Closing the context waits for the broadcast to drain (the C's
        // zmq_ctx_destroy). Do that on a helper thread and wait for it here,
        // where Ctrl-C can still end the wait.
        drop(syncservice);
        let closing = std::thread::spawn(move || drop((publisher, context)));
        while !closing.is_finished() {
            interrupt::sleep_ms(10)?;
        }
        Ok(())
    })
}
