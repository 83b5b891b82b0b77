//! §3 Divide and Conquer (`tasksink.c`): the task sink.
//!
//! A PULL socket bound to `tcp://*:5558` waits for the ventilator's
//! start-of-batch message, then collects 100 results from the workers,
//! printing `:` for every tenth and `.` for the others, all on one line, and
//! then `Total elapsed time: <n> msec` (right after the dots, as in the C).
//! Run it with `taskvent` and one or more `taskwork`.
//!
//! Limits: a frame may be at most 1 KiB (`MAXMSGSIZE`). Differs from the C:
//! each message is read whole (a two-frame result counts once);
//! Ctrl-C/SIGTERM ends it with exit code 0.

use std::process::ExitCode;

use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and socket.
        let context = zmq::Context::new();
        let receiver = socket::new(&context, zmq::PULL)
            .max_message_size(1024)
            .bind("tcp://*:5558")?;

        // Wait for start of batch.
        Message::recv(&receiver)?;

        // Start our clock now.
        let start_time = helpers::clock_ms();

        // Process 100 confirmations.
        for task_nbr in 0..100 {
            Message::recv(&receiver)?;
            print!("{}", if task_nbr % 10 == 0 { ":" } else { "." });
            helpers::flush_stdout();
        }
        // Calculate and report duration of batch.
        println!(
            "Total elapsed time: {} msec",
            helpers::clock_ms() - start_time
        );
        Ok(())
    })
}
