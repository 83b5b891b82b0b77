//! §6 ZeroMQ's Built-In Proxy Function (`msgqueue.c`): the §5 broker in one
//! call.
//!
//! Same sockets and endpoints as `rrbroker` (ROUTER `tcp://*:5559` for
//! `rrclient`, DEALER `tcp://*:5560` for `rrworker`), but the forwarding loop
//! is libzmq's own `zmq_proxy`. Silent, runs until Ctrl-C; a drop-in
//! replacement for `rrbroker`.
//!
//! Limits: a frame may be at most 1 KiB on either side (`MAXMSGSIZE`), so the
//! requests queued for one client (1000 at most, the high-water mark) stay
//! under 1 MiB. No send blocks: `zmq_proxy` takes a request only when the
//! DEALER can pass it to a worker (until then it waits in the ROUTER's
//! queue), and a ROUTER drops a reply for a client that has gone or stopped
//! reading. LINGER is 0: nothing queued is worth waiting for at exit.
//!
//! Differs from the C: `interrupt::proxy` runs the proxy so that
//! Ctrl-C/SIGTERM stops it (a steerable proxy told `TERMINATE`) and the
//! program exits with code 0.

use std::process::ExitCode;

use zguide::{interrupt, program, socket};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket facing clients.
        let mut frontend = socket::new(&context, zmq::ROUTER)
            .max_message_size(1024)
            .linger(0)
            .bind("tcp://*:5559")?;

        // Socket facing services.
        let mut backend = socket::new(&context, zmq::DEALER)
            .max_message_size(1024)
            .linger(0)
            .bind("tcp://*:5560")?;

        // Start the proxy; it runs until Ctrl-C.
        interrupt::proxy(&context, &mut frontend, &mut backend)
    })
}
