//! §3 Divide and Conquer (`tasksink.c`): the task sink.
//!
//! A PULL socket bound to `tcp://*:5558` waits for the ventilator's
//! start-of-batch message, then collects 100 results from the workers,
//! printing `:` for every tenth and `.` for the others, all on one line, and
//! then `Total elapsed time: <n> msec` (right after the dots, as in the C).
//! Run it with `taskvent` and one or more `taskwork`. Same as the C.

use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();
    let receiver = context.socket(zmq::PULL)?;
    receiver.bind("tcp://*:5558")?;

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
    // Calculate and report the duration of the batch.
    println!(
        "Total elapsed time: {} msec",
        helpers::clock_ms() - start_time
    );
    Ok(())
}
