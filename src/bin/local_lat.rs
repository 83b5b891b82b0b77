//! libzmq `perf/local_lat`: the echoing half of the latency test.
//!
//! `local_lat <bind-to> <message-size> <roundtrip-count>`: a REP socket binds
//! and sends each of `roundtrip-count` requests straight back. Prints nothing;
//! `remote_lat <connect-to> <same size> <same count>` measures and prints.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0;
//! Ctrl-C/SIGTERM exits cleanly (code 0), at once while waiting for
//! the first request, within half a second during a run.
//! Like libzmq's it lingers one second before closing, so the last reply is
//! on its way before the process goes.

use std::time::Duration;

use zguide::perf::{self, Args};
use zguide::{interrupt, Error};

fn main() {
    let args = Args::from_env_or_exit("local_lat <bind-to> <message-size> <roundtrip-count>", true);
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
    let socket = context.socket(zmq::REP)?;
    socket.bind(args.endpoint.as_deref().unwrap_or_default())?;
    perf::echo_round_trips(&socket, args.message_size, args.count)?;
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}
