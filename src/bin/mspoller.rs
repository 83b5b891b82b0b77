//! §4 Handling Multiple Sockets (`mspoller.c`): reading two sockets with
//! `zmq_poll`.
//!
//! PULL connects to `tcp://localhost:5557` (tasks from `taskvent`), SUB
//! connects to `tcp://localhost:5556` (updates from `wuserver`, filter
//! `"10001 "`). One poll waits on both, with no timeout, and each readable
//! socket gets one message per round. Compare `msreader`, which naps instead.
//!
//! Differs from the C, which processes messages silently: it prints
//! `Task: <workload>` and `Weather: <update>` for every message, the smallest
//! output that shows both sockets being served. The poll is the library's
//! interruptible one, so Ctrl-C/SIGTERM exits cleanly.

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // Connect to the task ventilator.
    let receiver = context.socket(zmq::PULL)?;
    receiver.connect("tcp://localhost:5557")?;

    // Connect to the weather server.
    let subscriber = context.socket(zmq::SUB)?;
    subscriber.connect("tcp://localhost:5556")?;
    subscriber.set_subscribe(b"10001 ")?;

    // Process messages from both sockets.
    loop {
        let readable = match interrupt::poll(&[&receiver, &subscriber], -1) {
            Ok(readable) => readable,
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        };
        if readable[0] {
            if let Some(task) = helpers::try_recv_string(&receiver)? {
                println!("Task: {task}"); // Process task.
            }
        }
        if readable[1] {
            if let Some(update) = helpers::try_recv_string(&subscriber)? {
                println!("Weather: {update}"); // Process weather update.
            }
        }
    }
}
