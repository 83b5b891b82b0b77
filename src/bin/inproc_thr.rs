//! libzmq `perf/inproc_thr`: the throughput test inside one process.
//!
//! `inproc_thr <message-size> <message-count>`: the main thread binds a PULL
//! socket to `inproc://thr_test`, a second thread connects a PUSH socket and
//! sends `message-count` messages of `message-size` bytes. Prints
//! `message size: N [B]` and `message count: N` first, then the two
//! `mean throughput:` lines, timed from the first message like `local_thr`.
//! Nothing to run beside it.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0;
//! the Mb/s figure is computed from the exact rate, not the truncated one.

use zguide::perf::{self, Args, Throughput};
use zguide::Error;

fn main() {
    let args = Args::from_env_or_exit("inproc_thr <message-size> <message-count>", false);
    if let Err(e) = run(&args) {
        println!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::PULL)?;
    socket.bind("inproc://thr_test")?;

    let sender = {
        let context = context.clone();
        let (size, count) = (args.message_size, args.count);
        std::thread::spawn(move || -> Result<(), Error> {
            let socket = context.socket(zmq::PUSH)?;
            socket.connect("inproc://thr_test")?;
            perf::send_messages(&socket, size, count)
        })
    };

    let figures = Throughput::new(args.message_size, args.count, 1);
    println!("{}", figures.header());
    let elapsed = perf::receive_messages(&socket, args.message_size, args.count)?;
    sender
        .join()
        .map_err(|_| Error::Protocol("the sending thread panicked".into()))??;
    println!(
        "{}",
        Throughput::new(args.message_size, args.count, elapsed).figures()
    );
    Ok(())
}
