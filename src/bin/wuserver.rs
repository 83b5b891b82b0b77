//! §2 Getting the Message Out (`wuserver.c`): the weather update server.
//!
//! A PUB socket bound to `tcp://*:5556` publishes random weather updates,
//! `"%05d %d %d"` = zipcode, temperature, relative humidity, as fast as it
//! can (no sleep: PUB drops what no subscriber wants, so this is cheap for
//! the network but keeps one core busy). Run `wuclient` beside it, or
//! `msreader`/`mspoller` (§4), or `wuproxy` (§7).
//!
//! Limits: subscriptions reach a PUB socket as inbound messages, so
//! `MAXMSGSIZE` 256 bytes bounds each subscription to a 255-byte prefix (a
//! longer one drops that subscriber's connection). Without it one 4 MiB
//! subscription cost 138 MB here, and libzmq frees its subscription tree
//! recursively, one stack frame per byte. The number of subscriptions is not
//! capped by libzmq; each lives only as long as its subscriber's connection.
//! A send never blocks: PUB drops updates for a subscriber that stops
//! reading (high-water mark) and LINGER is 0, since updates are disposable.
//!
//! Differs from the C: the subscription bound above; Ctrl-C/SIGTERM ends the
//! loop and the program exits with code 0.

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and publisher.
        let context = zmq::Context::new();
        let publisher = socket::new(&context, zmq::PUB)
            .max_message_size(256) // bounds each subscription
            .linger(0)
            .bind("tcp://*:5556")?;

        while !interrupt::interrupted() {
            // Get values that will fool the boss.
            let zipcode = helpers::randof(100_000);
            let temperature = helpers::randof(215) as i32 - 80;
            let relhumidity = helpers::randof(50) + 10;

            // Send message to all subscribers.
            let update = format!("{zipcode:05} {temperature} {relhumidity}");
            helpers::send_string(&publisher, &update)?;
        }
        Ok(())
    })
}
