//! §8 Handling Errors and ETERM (`tasksink2.c`): the task sink that stops the
//! workers.
//!
//! Like `tasksink` (PULL bound to `tcp://*:5558`, prints `:`/`.` per result
//! on one line, then `Total elapsed time: <n> msec`), plus a PUB socket bound
//! to `tcp://*:5559` on which it sends `KILL` after the batch, so that every
//! `taskwork2` exits. Run with `taskvent` and `taskwork2`.
//!
//! The PUB socket is bound at start, as in the C, so the workers' SUB sockets
//! are connected long before `KILL` goes out (bound just before sending, the
//! message would be lost to the slow joiners; an older Rust port did that).
//!
//! Limits: a result frame may be at most 1 KiB and a subscription 255 bytes
//! (`MAXMSGSIZE` on each socket; subscriptions reach PUB as inbound
//! messages). Differs from the C: each message is read whole;
//! Ctrl-C/SIGTERM ends it with exit code 0; LINGER is 1 s.

use std::process::ExitCode;

use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Socket to receive messages on.
        let receiver = socket::new(&context, zmq::PULL)
            .max_message_size(1024)
            .bind("tcp://*:5558")?;

        // Socket for worker control.
        let controller = socket::new(&context, zmq::PUB)
            .max_message_size(256) // bounds each subscription
            .bind("tcp://*:5559")?;

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
        println!(
            "Total elapsed time: {} msec",
            helpers::clock_ms() - start_time
        );

        // Send kill signal to workers.
        helpers::send_string(&controller, "KILL")?;
        Ok(())
    })
}
