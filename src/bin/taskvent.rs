//! §3 Divide and Conquer (`taskvent.c`): the task ventilator.
//!
//! A PUSH socket bound to `tcp://*:5557` hands out 100 tasks (a workload of
//! 1–100 ms each, as decimal text) to the `taskwork` workers; a second PUSH
//! socket connected to `tcp://localhost:5558` tells `tasksink` that the batch
//! starts (`"0"`). Start the sink and the workers first, then press Enter:
//! the prompt is there so that every worker is connected before the first
//! task goes out (otherwise the first worker to connect gets them all).
//!
//! The program exits after the batch; closing the context waits until every
//! task has been delivered (default LINGER).
//!
//! Same as the C; end of input on stdin counts as Enter, as `getchar()`
//! returning EOF does there.

use std::io::BufRead;

use zguide::{helpers, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();

    // Socket to send tasks on.
    let sender = context.socket(zmq::PUSH)?;
    sender.bind("tcp://*:5557")?;

    // Socket to send the start-of-batch message on.
    let sink = context.socket(zmq::PUSH)?;
    sink.connect("tcp://localhost:5558")?;

    print!("Press Enter when the workers are ready: ");
    helpers::flush_stdout();
    let mut line = String::new();
    // End of input counts as Enter, like getchar() returning EOF.
    let _ = std::io::stdin().lock().read_line(&mut line);
    println!("Sending tasks to workers...");

    // The first message is "0" and signals the start of the batch.
    helpers::send_string(&sink, "0")?;

    let mut total_msec = 0;
    for _ in 0..100 {
        // Random workload from 1 to 100 msecs.
        let workload = helpers::randof(100) + 1;
        total_msec += workload;
        helpers::send_string(&sender, &workload.to_string())?;
    }
    println!("Total expected cost: {total_msec} msec");
    Ok(())
}
