//! libzmq `perf/remote_lat`: the measuring half of the latency test.
//!
//! `remote_lat <connect-to> <message-size> <roundtrip-count>`: a REQ socket
//! connects and makes `roundtrip-count` round trips with one message of
//! `message-size` zero bytes; prints `message size: N [B]`,
//! `roundtrip count: N` and `average latency: X [us]`, the one-way latency
//! (elapsed / (2 × round trips)). Run `local_lat` beside it, ours or libzmq's.
//!
//! Limits: no `MAXMSGSIZE` (the echo is as large as the request); LINGER 1 s.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0;
//! Ctrl-C/SIGTERM stops it cleanly (code 0) within half a second; an error is
//! printed as `E: …` on stderr.

use std::process::ExitCode;

use zguide::perf::{self, Args, Latency};
use zguide::{program, socket};

fn main() -> ExitCode {
    let args = Args::from_env_or_exit(
        "remote_lat <connect-to> <message-size> <roundtrip-count>",
        true,
    );
    program::run(|| {
        let context = zmq::Context::new();
        let requester = socket::new(&context, zmq::REQ)
            .max_message_size(-1)
            .connect(args.endpoint.as_deref().unwrap_or_default())?;
        let elapsed = perf::time_round_trips(&requester, args.message_size, args.count)?;
        println!("{}", Latency::new(args.message_size, args.count, elapsed));
        Ok(())
    })
}
