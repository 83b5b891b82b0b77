//! §3 Divide and Conquer (`taskwork.c`): a task worker.
//!
//! PULL connects to `tcp://localhost:5557` (`taskvent`), PUSH connects to
//! `tcp://localhost:5558` (`tasksink`). For every task it prints the workload
//! followed by a dot (`42.`, no newline), sleeps that many milliseconds and
//! sends an empty result to the sink. Run several beside `taskvent` and
//! `tasksink` and watch the batch time drop.
//!
//! Differs from the C: Ctrl-C/SIGTERM stops it cleanly (exit code 0); a task
//! that is not a number counts as 0 ms, like `atoi`, and is logged.

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // Socket to receive messages on.
    let receiver = context.socket(zmq::PULL)?;
    receiver.connect("tcp://localhost:5557")?;

    // Socket to send messages to.
    let sender = context.socket(zmq::PUSH)?;
    // On Ctrl-C a result still queued has nobody waiting for it.
    sender.set_linger(0)?;
    sender.connect("tcp://localhost:5558")?;

    // Process tasks until interrupted.
    let result = (|| -> Result<(), Error> {
        loop {
            let task = helpers::recv_string(&receiver)?;
            print!("{task}."); // Show progress.
            helpers::flush_stdout();
            interrupt::sleep_ms(workload_ms(&task))?; // Do the work.
            helpers::send_string(&sender, "")?; // Send results to sink.
        }
    })();
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}

/// The task's workload in milliseconds; anything else counts as 0.
fn workload_ms(task: &str) -> u64 {
    task.trim().parse().unwrap_or_else(|_| {
        log::warn!("task {task:?} is not a workload in msec; doing nothing");
        0
    })
}
