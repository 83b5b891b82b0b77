//! libzmq `perf/remote_lat`: the measuring half of the latency test.
//!
//! `remote_lat <connect-to> <message-size> <roundtrip-count>`: a REQ socket
//! connects and makes `roundtrip-count` round trips with one message of
//! `message-size` zero bytes; prints `message size: N [B]`,
//! `roundtrip count: N` and `average latency: X [us]`, the one-way latency
//! (elapsed / (2 × round trips)). Run `local_lat` beside it, ours or libzmq's.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0.

use zguide::perf::{self, Args, Latency};
use zguide::Error;

fn main() {
    let args = Args::from_env_or_exit(
        "remote_lat <connect-to> <message-size> <roundtrip-count>",
        true,
    );
    if let Err(e) = run(&args) {
        println!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::REQ)?;
    socket.connect(args.endpoint.as_deref().unwrap_or_default())?;
    let elapsed = perf::time_round_trips(&socket, args.message_size, args.count)?;
    println!("{}", Latency::new(args.message_size, args.count, elapsed));
    Ok(())
}
