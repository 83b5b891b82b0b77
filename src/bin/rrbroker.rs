//! §5 Shared Queue (`rrbroker.c`): a simple request-reply broker.
//!
//! A ROUTER bound to `tcp://*:5559` faces the clients (`rrclient`), a DEALER
//! bound to `tcp://*:5560` faces the workers (`rrworker`). One poll watches
//! both; whatever arrives on one side goes out on the other, all frames of
//! the message, so the ROUTER's envelope (the client's identity) travels to
//! the worker's REP socket and back, and the reply finds its client. Silent,
//! runs until Ctrl-C. `msgqueue` (§6) does the same with `zmq_proxy`.
//!
//! Differs from the C: the message is forwarded as a whole (our `Message`
//! type) instead of frame by frame; the effect on the wire is the same.
//! Ctrl-C/SIGTERM stops it cleanly (exit code 0).

use zguide::{interrupt, Error, Message};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let frontend = context.socket(zmq::ROUTER)?;
    let backend = context.socket(zmq::DEALER)?;
    for socket in [&frontend, &backend] {
        // Undeliverable messages must not keep us from exiting.
        socket.set_linger(0)?;
    }
    frontend.bind("tcp://*:5559")?;
    backend.bind("tcp://*:5560")?;

    // Switch messages between the sockets.
    loop {
        let readable = match interrupt::poll(&[&frontend, &backend], -1) {
            Ok(readable) => readable,
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        };
        if readable[0] {
            Message::recv_now(&frontend)?.send(&backend)?;
        }
        if readable[1] {
            Message::recv_now(&backend)?.send(&frontend)?;
        }
    }
}
