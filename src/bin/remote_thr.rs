//! libzmq `perf/remote_thr`: the sending half of the throughput test.
//!
//! `remote_thr <connect-to> <message-size> <message-count>`: a PUSH socket
//! connects and sends `message-count` messages of `message-size` bytes as fast
//! as it can, then waits until all are delivered (closing the socket lingers).
//! Prints nothing; `local_thr` prints the figures.
//!
//! Limits: LINGER [`perf::SENDER_LINGER_MS`] (30 s) instead of libzmq's
//! infinite one: a PUSH send blocks at the high-water mark, so at the end at
//! most about a thousand messages are still queued, which a live receiver
//! takes in well under a second; a receiver that is gone no longer keeps
//! `remote_thr` waiting for ever.
//!
//! Differs from libzmq's: no CURVE option; a bad size or count is refused
//! instead of read as 0; the bounded LINGER above; Ctrl-C/SIGTERM stops it
//! cleanly (code 0); an error is printed as `E: …` on stderr.

use std::process::ExitCode;

use zguide::perf::{self, Args};
use zguide::{program, socket};

fn main() -> ExitCode {
    let args = Args::from_env_or_exit(
        "remote_thr <connect-to> <message-size> <message-count>",
        true,
    );
    program::run(|| {
        let context = zmq::Context::new();
        let sender = socket::new(&context, zmq::PUSH)
            .linger(perf::SENDER_LINGER_MS)
            .connect(args.endpoint.as_deref().unwrap_or_default())?;
        perf::send_messages(&sender, args.message_size, args.count)?;
        // Dropping the socket, then the context, waits (up to the LINGER)
        // until everything queued has gone out, like zmq_close + zmq_ctx_term.
        Ok(())
    })
}
