//! libzmq `perf/local_lat`: the echoing half of the latency test.
//!
//! `local_lat <bind-to> <message-size> <roundtrip-count>`: a REP socket binds
//! and sends each of `roundtrip-count` requests straight back. Prints nothing;
//! `remote_lat <connect-to> <same size> <same count>` measures and prints.
//! Like libzmq's it waits one second before closing, so the last reply is on
//! its way before the process goes.
//!
//! Limits: no `MAXMSGSIZE` (any message size is the point of the tool; a
//! message of another size ends the run with an error); LINGER 1 s.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0;
//! Ctrl-C/SIGTERM exits cleanly (code 0), at once while waiting for the first
//! request, within half a second during a run; an error is printed as `E: …`
//! on stderr.

use std::process::ExitCode;

use zguide::perf::{self, Args};
use zguide::{interrupt, program, socket};

fn main() -> ExitCode {
    let args = Args::from_env_or_exit("local_lat <bind-to> <message-size> <roundtrip-count>", true);
    program::run(|| {
        let context = zmq::Context::new();
        let echo = socket::new(&context, zmq::REP)
            .max_message_size(-1)
            .bind(args.endpoint.as_deref().unwrap_or_default())?;
        perf::echo_round_trips(&echo, args.message_size, args.count)?;
        interrupt::sleep_ms(1000)
    })
}
