//! §12 Node Coordination (`syncsub.c`): a subscriber that tells the
//! publisher it is ready.
//!
//! A SUB socket connects to `tcp://localhost:5561` and subscribes to
//! everything; after a second (time for the subscription to reach the
//! publisher) a REQ socket connects to `tcp://localhost:5562` and sends an
//! empty synchronisation request. When the reply comes, it counts updates
//! until `END` and prints `Received 1000000 updates`. Run ten of them with
//! `syncpub`.
//!
//! The one-second nap is the C's, and its weak spot: the REQ handshake proves
//! that the REQ socket is connected, not the SUB socket. Start `syncpub`
//! first and the nap is plenty.
//!
//! Differs from the C: messages are read whole (a two-frame update counts
//! once, and a two-frame sync reply cannot leave REQ stuck); a frame may be
//! at most 1 KiB (`MAXMSGSIZE`). Ctrl-C/SIGTERM ends it with exit code 0.

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // First, connect our subscriber socket.
        let subscriber = socket::new(&context, zmq::SUB)
            .max_message_size(1024)
            .subscribe("")
            .connect("tcp://localhost:5561")?;

        // 0MQ is so fast, we need to wait a while...
        interrupt::sleep_ms(1000)?;

        // Second, synchronize with publisher.
        let syncclient = socket::new(&context, zmq::REQ)
            .max_message_size(1024)
            .connect("tcp://localhost:5562")?;

        // - send a synchronization request
        helpers::send_string(&syncclient, "")?;

        // - wait for synchronization reply
        Message::recv(&syncclient)?;

        // Third, get our updates and report how many we got. Take what is
        // queued without a poll (a million polls would cost more than the
        // messages); wait, so that Ctrl-C is heard, only when nothing is.
        let mut update_nbr = 0;
        loop {
            let update = match Message::try_recv(&subscriber)? {
                Some(update) => update,
                None => Message::recv(&subscriber)?,
            };
            if update.first() == Some(b"END") {
                break;
            }
            update_nbr += 1;
        }
        println!("Received {update_nbr} updates");
        Ok(())
    })
}
