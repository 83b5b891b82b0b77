//! §16 ROUTER Broker and REQ Workers (`rtreq.c`): a ROUTER hands out work.
//!
//! The broker binds a ROUTER to `tcp://*:5671` and starts 10 worker threads.
//! Each worker has its own context (as if it were a separate process), a REQ
//! socket with a printable identity, and asks `Hi Boss` for work; it gets
//! `Work harder` for five seconds and then `Fired!`, when it prints
//! `Completed: N tasks` and ends. The broker exits once all 10 are fired.
//! The counts come out roughly equal: the ROUTER answers whoever asked, so
//! the work goes to the least recently used worker. Runs alone.
//!
//! Differs from the C: identities come from a thread-safe, OS-seeded random
//! generator (32 random bits each), so workers do not share one the way the
//! C's `rand()` in threads could make them (the broker then hung: zguide #521);
//! a message on the broker's port that is not `[identity][""][text]` is
//! logged (bounded) and dropped, and replies never block (a ROUTER drops
//! what a peer that does not read cannot take); Ctrl-C ends it with exit
//! code 0.

use std::process::ExitCode;
use std::thread;

use zguide::log_limit::complain;
use zguide::{envelope, helpers, interrupt, program, socket, Error, Message};

const NBR_WORKERS: usize = 10;

fn worker_task() -> Result<(), Error> {
    let context = zmq::Context::new();
    let worker = socket::new(&context, zmq::REQ)
        .identity(helpers::random_identity())
        .connect("tcp://localhost:5671")?;

    let mut total = 0;
    loop {
        // Tell the broker we're ready for work.
        helpers::send_string(&worker, "Hi Boss")?;

        // Get workload from broker, until finished.
        let workload = helpers::recv_string(&worker)?;
        if workload == "Fired!" {
            println!("Completed: {total} tasks");
            return Ok(());
        }
        total += 1;

        // Do some random work.
        interrupt::sleep_ms(u64::from(helpers::randof(500)) + 1)?;
    }
}

fn main() -> ExitCode {
    program::run(broker)
}

fn broker() -> Result<(), Error> {
    let context = zmq::Context::new();
    let broker = socket::new(&context, zmq::ROUTER).bind("tcp://*:5671")?;

    let workers: Vec<_> = (0..NBR_WORKERS)
        .map(|_| thread::spawn(worker_task))
        .collect();

    // Run for five seconds and then tell workers to end.
    let end_time = helpers::clock_ms() + 5000;
    let mut workers_fired = 0;
    while workers_fired < NBR_WORKERS {
        // Next message gives us least recently used worker: [identity][""][Hi Boss].
        let identity = match envelope::split(Message::recv(&broker)?) {
            Ok((identity, _request)) => identity,
            Err(e) => {
                complain(format_args!("malformed message dropped: {e}"));
                continue;
            }
        };
        let workload = if helpers::clock_ms() < end_time {
            "Work harder"
        } else {
            workers_fired += 1;
            "Fired!"
        };
        envelope::to(identity, Message::from_frames([workload])).send(&broker)?;
    }
    for worker in workers {
        if let Ok(Err(e)) = worker.join().map(program::interrupted_is_ok) {
            log::error!("worker failed: {e}");
        }
    }
    Ok(())
}
