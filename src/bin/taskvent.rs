//! §3 Divide and Conquer (`taskvent.c`): the task ventilator.
//!
//! A PUSH socket bound to `tcp://*:5557` hands out 100 tasks (a workload of
//! 1–100 ms each, as decimal text) to the `taskwork` workers; a second PUSH
//! socket connected to `tcp://localhost:5558` tells `tasksink` that the batch
//! starts (`"0"`). Start the sink and the workers first, then press Enter:
//! the prompt is there so that every worker is connected before the first
//! task goes out (otherwise the first worker to connect gets them all).
//!
//! The program exits after the batch; closing waits at most LINGER (1 s) for
//! the tasks still queued to reach the workers.
//!
//! Differs from the C: end of input on stdin counts as Enter, as `getchar()`
//! returning EOF does there. A task waits for a worker without blocking in
//! the send (the C blocks in `zmq_send` while no worker is connected), so
//! Ctrl-C/SIGTERM ends it cleanly (exit code 0) at the prompt, while it waits
//! for workers, and while it closes.

use std::io::BufRead;
use std::process::ExitCode;

use zguide::interrupt::{self, Pollable};
use zguide::{helpers, program, socket, Error};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to send messages on.
        let sender = socket::new(&context, zmq::PUSH).bind("tcp://*:5557")?;

        // Socket to send start of batch message on.
        let sink = socket::new(&context, zmq::PUSH).connect("tcp://localhost:5558")?;

        print!("Press Enter when the workers are ready: ");
        helpers::flush_stdout();
        // Wait for stdin in a poll, so that Ctrl-C is heard; end of input
        // counts as Enter, like getchar() returning EOF.
        interrupt::poll_any(&[Pollable::Fd(0)], -1)?;
        let _ = std::io::stdin().lock().read_line(&mut String::new());
        println!("Sending tasks to workers...");

        // The first message is "0" and signals start of batch.
        helpers::send_string(&sink, "0")?;

        // Send 100 tasks.
        let mut total_msec = 0; // Total expected cost in msecs.
        for _ in 0..100 {
            // Random workload from 1 to 100 msecs.
            let workload = helpers::randof(100) + 1;
            total_msec += workload;
            send_to_a_worker(&sender, &workload.to_string())?;
        }
        println!("Total expected cost: {total_msec} msec");
        Ok(())
    })
}

/// Sends `task` once a worker can take it. PUSH has no one to send to while
/// no worker is connected; instead of blocking in the send (deaf to Ctrl-C)
/// we try without blocking and nap 10 ms between tries.
fn send_to_a_worker(sender: &zmq::Socket, task: &str) -> Result<(), Error> {
    loop {
        match sender.send(task, zmq::DONTWAIT) {
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => interrupt::sleep_ms(10)?,
            other => return other.map_err(Error::from),
        }
    }
}
