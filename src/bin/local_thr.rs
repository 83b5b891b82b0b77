//! libzmq `perf/local_thr`: the receiving half of the throughput test.
//!
//! `local_thr <bind-to> <message-size> <message-count>`: a PULL socket binds,
//! receives `message-count` messages of `message-size` bytes, and prints
//! `message size: N [B]`, `message count: N` and the two `mean throughput:`
//! lines. The clock starts at the first message (see [`zguide::perf`]). Run
//! `remote_thr <connect-to> <same size> <same count>` beside it, ours or
//! libzmq's: both speak plain ZeroMQ and print the same lines.
//!
//! Differs from libzmq's: no CURVE option; a bad size or count is refused
//! instead of read as 0; Ctrl-C/SIGTERM exits cleanly (code 0), at once while
//! waiting for a sender, within half a second during a run.

use zguide::perf::{self, Args, Throughput};
use zguide::{interrupt, Error};

fn main() {
    let args = Args::from_env_or_exit("local_thr <bind-to> <message-size> <message-count>", true);
    interrupt::catch_signals();
    match run(&args) {
        Ok(()) | Err(Error::Interrupted) => {}
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::PULL)?;
    socket.bind(args.endpoint.as_deref().unwrap_or_default())?;

    let elapsed = perf::receive_messages(&socket, args.message_size, args.count)?;
    println!(
        "{}",
        Throughput::new(args.message_size, args.count, elapsed)
    );
    Ok(())
}
