//! libzmq `perf/inproc_thr`: the throughput test inside one process.
//!
//! `inproc_thr <message-size> <message-count>`: the main thread binds a PULL
//! socket to `inproc://thr_test`, a second thread connects a PUSH socket and
//! sends `message-count` messages of `message-size` bytes. Prints
//! `message size: N [B]` and `message count: N` first, then the two
//! `mean throughput:` lines, timed from the first message like `local_thr`.
//! Nothing to run beside it.
//!
//! Limits: no `MAXMSGSIZE` on the receiver (any size is the point); the
//! sender's LINGER is [`perf::SENDER_LINGER_MS`], as in `remote_thr`.
//!
//! Differs from libzmq's: a bad size or count is refused instead of read as 0;
//! the Mb/s figure is computed from the exact rate, not the truncated one;
//! Ctrl-C/SIGTERM stops it cleanly (code 0); an error is printed as `E: …` on
//! stderr.

use std::process::ExitCode;

use zguide::perf::{self, Args, Throughput};
use zguide::{program, socket, Error};

fn main() -> ExitCode {
    let args = Args::from_env_or_exit("inproc_thr <message-size> <message-count>", false);
    program::run(|| {
        let context = zmq::Context::new();
        let receiver = socket::new(&context, zmq::PULL)
            .max_message_size(-1)
            .bind("inproc://thr_test")?;

        let sender = {
            let context = context.clone();
            let (size, count) = (args.message_size, args.count);
            std::thread::spawn(move || -> Result<(), Error> {
                let sender = socket::new(&context, zmq::PUSH)
                    .linger(perf::SENDER_LINGER_MS)
                    .connect("inproc://thr_test")?;
                perf::send_messages(&sender, size, count)
            })
        };

        let figures = Throughput::new(args.message_size, args.count, 1);
        println!("{}", figures.header());
        let elapsed = perf::receive_messages(&receiver, args.message_size, args.count)?;
        sender
            .join()
            .map_err(|_| Error::Protocol("the sending thread panicked".into()))??;
        println!(
            "{}",
            Throughput::new(args.message_size, args.count, elapsed).figures()
        );
        Ok(())
    })
}
