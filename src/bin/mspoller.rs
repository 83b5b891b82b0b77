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
//! output that shows both sockets being served. What it prints is what the
//! C would see as a string: the first frame up to its first NUL (the C++
//! ventilator and weather server pad their messages with NULs), through
//! `message::show` (at most 32 bytes, escaped), so a peer cannot garble the
//! terminal. Messages are read whole; a frame may be at most 1 KiB
//! (`MAXMSGSIZE`). The poll is the library's interruptible one, so
//! Ctrl-C/SIGTERM exits cleanly (exit code 0).

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
        loop {
            let readable = interrupt::poll(&[&receiver, &subscriber], -1)?;
            if readable[0] {
                let task = Message::recv_now(&receiver)?;
                println!("Task: {}", show_c_string(&task)); // Process task.
            }
            if readable[1] {
                let update = Message::recv_now(&subscriber)?;
                println!("Weather: {}", show_c_string(&update)); // Process weather update.
            }
        }
    })
}
