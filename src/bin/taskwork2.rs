//! §8 Handling Errors and ETERM (`taskwork2.c`): a task worker that stops
//! when told to.
//!
//! Like `taskwork` (PULL from `tcp://localhost:5557`, PUSH to
//! `tcp://localhost:5558`, prints `<ms>.` per task), plus a SUB socket
//! connected to `tcp://localhost:5559` and subscribed to everything: any
//! message there is the sink's `KILL`, and the worker exits. Run with
//! `taskvent` and `tasksink2`; the workers end on their own after the batch.
//!
//! A task is read like the C's `atoi` (leading blanks, a sign, digits, and
//! nothing from the first other byte on), so the C++ ventilator's
//! NUL-padded tasks work too; no number counts as 0 ms. Like the C's `%s` it
//! prints the text up to the first NUL (through `message::show`: at most 32
//! bytes, escaped).
//!
//! Limits: a task or control frame may be at most 1 KiB (`MAXMSGSIZE`) and a
//! workload at most 10 s. A result the sink cannot take (it stopped reading
//! and 1000 are queued) is dropped with a warning rather than blocking the
//! worker; LINGER is 1 s.
//!
//! Differs from the C: those limits; a task is read whole; Ctrl-C/SIGTERM
//! also ends it cleanly (exit code 0).

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

        // Socket for control input.
        let controller = socket::new(&context, zmq::SUB)
            .max_message_size(1024)
            .subscribe("")
            .connect("tcp://localhost:5559")?;

        // Process messages from either socket.
        loop {
            let readable = interrupt::poll(&[&receiver, &controller], -1)?;
            if readable[0] {
                let task = Message::recv_now(&receiver)?;
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
            // Any waiting controller command acts as 'KILL'.
            if readable[1] {
                return Ok(()); // Exit loop.
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
