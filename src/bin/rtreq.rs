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
//! C's `rand()` in threads could make them (the broker then hung: zguide #521).

use std::thread;

use zguide::{helpers, interrupt, Error, Message};

const NBR_WORKERS: usize = 10;

fn worker_task() -> Result<(), Error> {
    let context = zmq::Context::new();
    let worker = context.socket(zmq::REQ)?;
    helpers::set_random_identity(&worker)?;
    worker.connect("tcp://localhost:5671")?;

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

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();
    let broker = context.socket(zmq::ROUTER)?;
    broker.bind("tcp://*:5671")?;

    let workers: Vec<_> = (0..NBR_WORKERS)
        .map(|_| thread::spawn(worker_task))
        .collect();

    // Run for five seconds and then tell workers to end.
    let end_time = helpers::clock_ms() + 5000;
    let mut workers_fired = 0;
    while workers_fired < NBR_WORKERS {
        // Next message gives us least recently used worker: [identity][""][Hi Boss].
        let mut request = Message::recv(&broker)?;
        let Some(identity) = request.unwrap_envelope() else {
            continue;
        };
        let workload = if helpers::clock_ms() < end_time {
            "Work harder"
        } else {
            workers_fired += 1;
            "Fired!"
        };
        let mut reply = Message::from_frames([workload]);
        reply.wrap_envelope(identity);
        reply.send(&broker)?;
    }
    for worker in workers {
        if let Ok(Err(e)) = worker.join() {
            eprintln!("E: worker failed: {e}");
        }
    }
    Ok(())
}
