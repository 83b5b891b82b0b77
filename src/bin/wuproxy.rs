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
//! Differs from the C, which hard-codes `tcp://192.168.55.210:5556` and
//! `tcp://10.1.1.0:8100` (addresses of the author's network): the endpoints
//! default to loopback and can be given as arguments. Ctrl-C/SIGTERM stops
//! the proxy and the program exits with code 0.

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // This is where the weather server sits.
    let mut frontend = context.socket(zmq::XSUB)?;
    frontend.set_linger(0)?;
    frontend.connect(&helpers::arg_or(1, "tcp://localhost:5556"))?;

    // This is our public endpoint for subscribers.
    let mut backend = context.socket(zmq::XPUB)?;
    backend.set_linger(0)?;
    backend.bind(&helpers::arg_or(2, "tcp://*:8100"))?;

    // Run the proxy until the user interrupts us.
    match interrupt::proxy(&context, &mut frontend, &mut backend) {
        Ok(()) | Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}
