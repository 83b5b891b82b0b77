//! §7 Transport Bridging (`wuproxy.c`): the weather proxy.
//!
//! An XSUB socket connects to the weather server, an XPUB socket binds a
//! public endpoint for subscribers, and `zmq_proxy` joins them. XPUB/XSUB
//! (unlike PUB/SUB) pass subscriptions upstream, so a subscriber of the
//! proxy gets exactly what it asked for from the server.
//!
//! Arguments: `wuproxy [frontend [backend]]`: the endpoint to connect to
//! (default `tcp://localhost:5556`, i.e. `wuserver`) and the one to bind
//! (default `tcp://*:8100`). Run `wuserver`, this, and
//! `wuclient 1 tcp://localhost:8100`.
//!
//! Limits: `MAXMSGSIZE` 256 bytes on both sockets. Subscriptions reach the
//! XPUB as inbound messages, so each is at most a 255-byte prefix (a longer
//! one drops that subscriber's connection); without the bound one 4 MiB
//! subscription cost 273 MB here, and a 256 KiB one crashed the proxy at
//! Ctrl-C (libzmq frees its subscription tree recursively, one stack frame
//! per byte). Weather updates, the XSUB's inbound messages, are under 32
//! bytes. The number of subscriptions is not capped by libzmq; each lives
//! only as long as its subscriber's connection. No send blocks: XPUB drops
//! updates for a subscriber that stops reading, XSUB never blocks on a
//! subscription. LINGER is 0: updates are disposable.
//!
//! Differs from the C, which hard-codes `tcp://192.168.55.210:5556` and
//! `tcp://10.1.1.0:8100` (addresses of the author's network): the endpoints
//! default to loopback and can be given as arguments; the limits above.
//! Ctrl-C/SIGTERM stops the proxy and the program exits with code 0.

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket};

/// The largest message either side accepts: a subscription or an update.
const MAX_MESSAGE_SIZE: i64 = 256;

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // This is where the weather server sits.
        let mut frontend = socket::new(&context, zmq::XSUB)
            .max_message_size(MAX_MESSAGE_SIZE)
            .linger(0)
            .connect(&helpers::arg_or(1, "tcp://localhost:5556"))?;

        // This is our public endpoint for subscribers.
        let mut backend = socket::new(&context, zmq::XPUB)
            .max_message_size(MAX_MESSAGE_SIZE)
            .linger(0)
            .bind(&helpers::arg_or(2, "tcp://*:8100"))?;

        // Run the proxy until the user interrupts us.
        interrupt::proxy(&context, &mut frontend, &mut backend)
    })
}
