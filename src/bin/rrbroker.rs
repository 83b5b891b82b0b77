//! §5 Shared Queue (`rrbroker.c`): a simple request-reply broker.
//!
//! A ROUTER bound to `tcp://*:5559` faces the clients (`rrclient`), a DEALER
//! bound to `tcp://*:5560` faces the workers (`rrworker`). One poll watches
//! both; whatever arrives on one side goes out on the other, all frames of
//! the message, so the ROUTER's envelope (the client's identity) travels to
//! the worker's REP socket and back, and the reply finds its client. Silent,
//! runs until Ctrl-C. `msgqueue` (§6) does the same with `zmq_proxy`.
//!
//! Limits: a frame may be at most 1 KiB on either side (`MAXMSGSIZE`), so the
//! requests waiting for one client (1000 at most, the high-water mark) stay
//! under 1 MiB. No send blocks: a request is taken from the clients only
//! when the DEALER can pass it to a worker (while no worker can, it waits in
//! the ROUTER's queue and we check again every 100 ms), and a reply for a
//! client that has gone or stopped reading is dropped by the ROUTER. LINGER
//! is 0: nothing queued is worth waiting for at exit.
//!
//! Differs from the C, which blocks in `zmq_send` on the DEALER while no
//! worker is connected (and the earlier port then exited 1 on Ctrl-C): the
//! waiting described above. The message is forwarded as a whole (our
//! `Message` type) instead of frame by frame; the effect on the wire is the
//! same. Ctrl-C/SIGTERM stops it cleanly (exit code 0).

use std::process::ExitCode;

use zguide::{interrupt, program, socket, Message};

/// How often we look again for a worker while requests wait, in msecs.
const WORKER_CHECK_MS: i64 = 100;

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and sockets.
        let context = zmq::Context::new();
        let frontend = socket::new(&context, zmq::ROUTER)
            .max_message_size(1024)
            .linger(0)
            .bind("tcp://*:5559")?;
        let backend = socket::new(&context, zmq::DEALER)
            .max_message_size(1024)
            .linger(0)
            .bind("tcp://*:5560")?;

        // Switch messages between sockets.
        loop {
            // Listen to the clients only while a worker can take a request:
            // the DEALER would block on a send with nowhere to go.
            let worker_ready = backend.get_events()?.contains(zmq::POLLOUT);
            let (from_clients, from_workers) = if worker_ready {
                let readable = interrupt::poll(&[&frontend, &backend], -1)?;
                (readable[0], readable[1])
            } else {
                (false, interrupt::wait_readable(&backend, WORKER_CHECK_MS)?)
            };
            if from_clients {
                let request = Message::recv_now(&frontend)?;
                if !request.send_or_drop(&backend)? {
                    log::warn!("no worker could take a request; dropped it");
                }
            }
            if from_workers {
                // A ROUTER drops what it cannot deliver; this never blocks.
                Message::recv_now(&backend)?.send_or_drop(&frontend)?;
            }
        }
    })
}
