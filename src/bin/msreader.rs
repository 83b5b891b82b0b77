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
//! output that shows both sockets being served. What it prints is what the
//! C would see as a string: the first frame up to its first NUL (the C++
//! ventilator and weather server pad their messages with NULs), through
//! `message::show` (at most 32 bytes, escaped), so a peer cannot garble the
//! terminal. Messages are read whole; a frame may be at most 1 KiB
//! (`MAXMSGSIZE`). Ctrl-C/SIGTERM exits cleanly (exit code 0).

use std::process::ExitCode;

use zguide::message::show_c_string;
use zguide::{interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Connect to task ventilator.
        let receiver = socket::new(&context, zmq::PULL)
            .max_message_size(1024)
            .connect("tcp://localhost:5557")?;

        // Connect to weather server.
        let subscriber = socket::new(&context, zmq::SUB)
            .max_message_size(1024)
            .subscribe("10001 ")
            .connect("tcp://localhost:5556")?;

        // Process messages from both sockets.
        // We prioritize traffic from the task ventilator.
        loop {
            while let Some(task) = Message::try_recv(&receiver)? {
                println!("Task: {}", show_c_string(&task)); // Process task.
            }
            while let Some(update) = Message::try_recv(&subscriber)? {
                println!("Weather: {}", show_c_string(&update)); // Process weather update.
            }
            // No activity, so sleep for 1 msec.
            interrupt::sleep_ms(1)?;
        }
    })
}
