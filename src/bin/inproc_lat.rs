//! libzmq `perf/inproc_lat`: the latency test inside one process.
//!
//! `inproc_lat <message-size> <roundtrip-count>`: the main thread binds a REQ
//! socket to `inproc://lat_test`, a second thread connects a REP socket and
//! echoes. Prints `message size: N [B]` and `roundtrip count: N` first, then
//! `average latency: X [us]` (one-way: elapsed / (2 × round trips)). Nothing
//! to run beside it.
//!
//! Limits: no `MAXMSGSIZE` (any size is the point); LINGER 1 s.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0;
//! Ctrl-C/SIGTERM stops it cleanly (code 0); an error is printed as `E: …` on
//! stderr.

use std::process::ExitCode;

use zguide::perf::{self, Args, Latency};
use zguide::{program, socket, Error};

fn main() -> ExitCode {
    let args = Args::from_env_or_exit("inproc_lat <message-size> <roundtrip-count>", false);
    program::run(|| {
        let context = zmq::Context::new();
        let requester = socket::new(&context, zmq::REQ)
            .max_message_size(-1)
            .bind("inproc://lat_test")?;

        let echo = {
            let context = context.clone();
            let (size, count) = (args.message_size, args.count);
            std::thread::spawn(move || -> Result<(), Error> {
                let echo = socket::new(&context, zmq::REP)
                    .max_message_size(-1)
                    .connect("inproc://lat_test")?;
                program::interrupted_is_ok(perf::echo_round_trips(&echo, size, count))
            })
        };

        println!(
            "{}",
            Latency::new(args.message_size, args.count, 1).header()
        );
        let elapsed = perf::time_round_trips(&requester, args.message_size, args.count)?;
        echo.join()
            .map_err(|_| Error::Protocol("the echoing thread panicked".into()))??;
        println!(
            "{}",
            Latency::new(args.message_size, args.count, elapsed).figures()
        );
        Ok(())
    })
}
