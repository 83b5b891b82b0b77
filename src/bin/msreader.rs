//! §4 Handling Multiple Sockets (`msreader.c`): reading two sockets the
//! simple way, with non-blocking reads and a 1 ms nap.
//!
//! PULL connects to `tcp://localhost:5557` (tasks from `taskvent`), SUB
//! connects to `tcp://localhost:5556` (updates from `wuserver`, filter
//! `"10001 "`). Each round drains the task socket first (tasks have
//! priority), then the weather socket, then sleeps 1 ms. Compare `mspoller`,
//! which waits in `zmq_poll` instead of napping.
//!
//! Differs from the C, which processes messages silently: it prints
//! `Task: <workload>` and `Weather: <update>` for every message, the smallest
//! output that shows both sockets being served. Ctrl-C/SIGTERM exits cleanly.

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

    // Process messages from both sockets, tasks first.
    let result = (|| -> Result<(), Error> {
        loop {
            while let Some(task) = helpers::try_recv_string(&receiver)? {
                println!("Task: {task}"); // Process task.
            }
            while let Some(update) = helpers::try_recv_string(&subscriber)? {
                println!("Weather: {update}"); // Process weather update.
            }
            // No activity, so sleep for 1 msec.
            interrupt::sleep_ms(1)?;
        }
    })();
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}
