//! libzmq `perf/remote_thr`: the sending half of the throughput test.
//!
//! `remote_thr <connect-to> <message-size> <message-count>`: a PUSH socket
//! connects and sends `message-count` messages of `message-size` bytes as fast
//! as it can, then waits until all are delivered (closing a socket with the
//! default linger does). Prints nothing; `local_thr` prints the figures.
//!
//! Differs from libzmq's: no CURVE option; a bad size or count is refused
//! instead of read as 0.

use zguide::perf::{self, Args};
use zguide::Error;

fn main() {
    let args = Args::from_env_or_exit(
        "remote_thr <connect-to> <message-size> <message-count>",
        true,
    );
    if let Err(e) = run(&args) {
        println!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::PUSH)?;
    socket.connect(args.endpoint.as_deref().unwrap_or_default())?;
    perf::send_messages(&socket, args.message_size, args.count)?;
    // Dropping the socket, then the context, blocks until everything queued
    // has gone out (infinite linger), like libzmq's zmq_close + zmq_ctx_term.
    Ok(())
}
