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

use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();

    // Socket to receive messages on.
    let receiver = context.socket(zmq::PULL)?;
    receiver.bind("tcp://*:5558")?;

    // Socket for worker control.
    let controller = context.socket(zmq::PUB)?;
    controller.bind("tcp://*:5559")?;

    // Wait for the start of the batch.
    helpers::recv_string(&receiver)?;

    // Start our clock now.
    let start_time = helpers::clock_ms();

    // Process 100 confirmations.
    for task_nbr in 0..100 {
        helpers::recv_string(&receiver)?;
        print!("{}", if task_nbr % 10 == 0 { ":" } else { "." });
        helpers::flush_stdout();
    }
    println!(
        "Total elapsed time: {} msec",
        helpers::clock_ms() - start_time
    );

    // Send the kill signal to the workers.
    helpers::send_string(&controller, "KILL")?;
    Ok(())
}
