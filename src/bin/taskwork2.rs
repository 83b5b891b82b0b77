//! §8 Handling Errors and ETERM (`taskwork2.c`): a task worker that stops
//! when told to.
//!
//! Like `taskwork` (PULL from `tcp://localhost:5557`, PUSH to
//! `tcp://localhost:5558`, prints `<ms>.` per task), plus a SUB socket
//! connected to `tcp://localhost:5559` and subscribed to everything: any
//! message there is the sink's `KILL`, and the worker exits. Run with
//! `taskvent` and `tasksink2`; the workers end on their own after the batch.
//!
//! Differs from the C: Ctrl-C/SIGTERM also ends it cleanly (exit code 0); a
//! task that is not a number counts as 0 ms, like `atoi`, and is logged.

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

    // Socket for control input.
    let controller = context.socket(zmq::SUB)?;
    controller.connect("tcp://localhost:5559")?;
    controller.set_subscribe(b"")?;

    // Process messages from either socket.
    let result = (|| -> Result<(), Error> {
        loop {
            let readable = interrupt::poll(&[&receiver, &controller], -1)?;
            if readable[0] {
                let task = helpers::recv_string(&receiver)?;
                print!("{task}."); // Show progress.
                helpers::flush_stdout();
                interrupt::sleep_ms(workload_ms(&task))?; // Do the work.
                helpers::send_string(&sender, "")?; // Send results to sink.
            }
            // Any waiting controller command acts as 'KILL'.
            if readable[1] {
                return Ok(());
            }
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
