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
//! under 1 MiB. `zmq_proxy` takes requests only once the DEALER has a worker
//! (until then they wait in the ROUTER's queue), and a ROUTER drops a reply
//! for a client that has gone or stopped reading. LINGER is 0: nothing
//! queued is worth waiting for at exit.
//!
//! A caveat of libzmq's proxy that `rrbroker` does not share: it forwards up
//! to 1000 requests in one burst with blocking sends, so behind a slow worker
//! whose queue is full, replies wait until the burst is through (a flood of
//! requests can delay everybody's replies by the time the worker needs for
//! the burst). Ctrl-C still ends it at once (`interrupt::proxy` passes the
//! signal on to the proxy's thread, whose blocked send then fails with
//! `EINTR`; `TERMINATE` alone would wait for the burst's end). Write the loop
//! by hand, as `rrbroker` does, when that matters.
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
