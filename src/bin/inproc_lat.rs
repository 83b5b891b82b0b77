//! libzmq `perf/inproc_lat`: the latency test inside one process.
//!
//! `inproc_lat <message-size> <roundtrip-count>`: the main thread binds a REQ
//! socket to `inproc://lat_test`, a second thread connects a REP socket and
//! echoes. Prints `message size: N [B]` and `roundtrip count: N` first, then
//! `average latency: X [us]` (one-way: elapsed / (2 × round trips)). Nothing
//! to run beside it.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0.

use zguide::perf::{self, Args, Latency};
use zguide::Error;

fn main() {
    let args = Args::from_env_or_exit("inproc_lat <message-size> <roundtrip-count>", false);
    if let Err(e) = run(&args) {
        println!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::REQ)?;
    socket.bind("inproc://lat_test")?;

    let echo = {
        let context = context.clone();
        let (size, count) = (args.message_size, args.count);
        std::thread::spawn(move || -> Result<(), Error> {
            let socket = context.socket(zmq::REP)?;
            socket.connect("inproc://lat_test")?;
            perf::echo_round_trips(&socket, size, count)
        })
    };

    println!(
        "{}",
        Latency::new(args.message_size, args.count, 1).header()
    );
    let elapsed = perf::time_round_trips(&socket, args.message_size, args.count)?;
    echo.join()
        .map_err(|_| Error::Protocol("the echoing thread panicked".into()))??;
    println!(
        "{}",
        Latency::new(args.message_size, args.count, elapsed).figures()
    );
    Ok(())
}
