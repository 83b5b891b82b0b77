//! §6 ZeroMQ's Built-In Proxy Function (`msgqueue.c`): the §5 broker in one
//! call.
//!
//! Same sockets and endpoints as `rrbroker` (ROUTER `tcp://*:5559` for
//! `rrclient`, DEALER `tcp://*:5560` for `rrworker`), but the forwarding loop
//! is libzmq's own `zmq_proxy`. Silent, runs until Ctrl-C; a drop-in
//! replacement for `rrbroker`.
//!
//! Differs from the C: `interrupt::proxy` runs the proxy so that
//! Ctrl-C/SIGTERM stops it (a steerable proxy told `TERMINATE`) and the
//! program exits with code 0.

use zguide::{interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // Socket facing clients.
    let mut frontend = context.socket(zmq::ROUTER)?;
    frontend.set_linger(0)?;
    frontend.bind("tcp://*:5559")?;

    // Socket facing services.
    let mut backend = context.socket(zmq::DEALER)?;
    backend.set_linger(0)?;
    backend.bind("tcp://*:5560")?;

    // Start the proxy; it runs until Ctrl-C.
    match interrupt::proxy(&context, &mut frontend, &mut backend) {
        Ok(()) | Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}
