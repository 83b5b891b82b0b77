//! §3 Divide and Conquer (`taskwork.c`): a task worker.
//!
//! PULL connects to `tcp://localhost:5557` (`taskvent`), PUSH connects to
//! `tcp://localhost:5558` (`tasksink`). For every task it prints the workload
//! followed by a dot (`42.`, no newline), sleeps that many milliseconds and
//! sends an empty result to the sink. Run several beside `taskvent` and
//! `tasksink` and watch the batch time drop.
//!
//! A task is read like the C's `atoi`: leading blanks, a sign, digits, and
//! nothing from the first other byte on, so the C++ ventilator's tasks
//! (`"42"` padded with NULs to 10 bytes) work too; no number counts as 0 ms.
//! Like the C's `%s` it prints the text up to the first NUL (through
//! `message::show`: at most 32 bytes, escaped).
//!
//! Limits: a task frame may be at most 1 KiB (`MAXMSGSIZE`) and a workload at
//! most 10 s. A result the sink cannot take (it stopped reading and 1000 are
//! queued) is dropped with a warning rather than blocking the worker; LINGER
//! is 1 s, so results queued for a sink that died do not hold up the exit.
//!
//! Differs from the C: those limits; a task is read whole (a two-frame task
//! is one task); Ctrl-C/SIGTERM stops it cleanly (exit code 0).

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to receive messages on.
        let receiver = socket::new(&context, zmq::PULL)
            .max_message_size(1024)
            .connect("tcp://localhost:5557")?;

        // Socket to send messages to.
        let sender = socket::new(&context, zmq::PUSH).connect("tcp://localhost:5558")?;

        // Process tasks forever.
        loop {
            let task = Message::recv(&receiver)?;
            let text = task.first().unwrap_or_default();
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            print!("{}.", show(text)); // Show progress.
            helpers::flush_stdout();
            interrupt::sleep_ms(workload_ms(text))?; // Do the work.
                                                     // Send results to sink.
            if !Message::from_frames([""]).send_or_drop(&sender)? {
                log::warn!("the sink is not reading; dropped a result");
            }
        }
    })
}

/// The longest workload we accept, in msecs.
const MAX_WORKLOAD_MS: u64 = 10_000;

/// The task's workload in msecs, read like the C's `atoi` (so the C++
/// ventilator's NUL-padded tasks work too); negative is 0, capped at
/// [`MAX_WORKLOAD_MS`].
fn workload_ms(task: &[u8]) -> u64 {
    helpers::atoi(task).clamp(0, MAX_WORKLOAD_MS as i64) as u64
}
