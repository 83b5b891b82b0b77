//! libzmq `perf/local_thr`: the receiving half of the throughput test.
//!
//! `local_thr <bind-to> <message-size> <message-count>`: a PULL socket binds,
//! receives `message-count` messages of `message-size` bytes, and prints
//! `message size: N [B]`, `message count: N` and the two `mean throughput:`
//! lines. The clock starts at the first message (see [`zguide::perf`]). Run
//! `remote_thr <connect-to> <same size> <same count>` beside it, ours or
//! libzmq's: both speak plain ZeroMQ and print the same lines.
//!
//! Limits: no `MAXMSGSIZE` (any message size is the point of the tool; a
//! message of another size than the one asked for ends the run with an
//! error); LINGER 1 s.
//!
//! Differs from libzmq's: no CURVE option; a bad size or count is refused
//! instead of read as 0; Ctrl-C/SIGTERM exits cleanly (code 0), at once while
//! waiting for a sender, within half a second during a run; an error is
//! printed as `E: …` on stderr.

use std::process::ExitCode;

use zguide::perf::{self, Args, Throughput};
use zguide::{program, socket};

fn main() -> ExitCode {
    let args = Args::from_env_or_exit("local_thr <bind-to> <message-size> <message-count>", true);
    program::run(|| {
        let context = zmq::Context::new();
        let receiver = socket::new(&context, zmq::PULL)
            .max_message_size(-1)
            .bind(args.endpoint.as_deref().unwrap_or_default())?;

        let elapsed = perf::receive_messages(&receiver, args.message_size, args.count)?;
        println!(
            "{}",
            Throughput::new(args.message_size, args.count, elapsed)
        );
        Ok(())
    })
}
