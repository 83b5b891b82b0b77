//! §9 Handling Interrupt Signals (`interrupt.c`): shutting down cleanly on
//! Ctrl-C with the self-pipe trick.
//!
//! A REP socket bound to `tcp://*:5555`. The signal handler (installed by
//! `interrupt::catch_signals` for SIGINT and SIGTERM) writes a byte into a
//! pipe, and the main loop polls the pipe's read end together with the
//! socket, so a signal wakes the poll at once. Then the program prints
//! `W: interrupt received, killing server...` and `W: cleaning up`, closes
//! the socket and exits with code 0. For each request it prints `W: recv`;
//! like the C it sends no reply (the book leaves that part as `...`), so a
//! REQ client such as `hwclient` waits after its first request. Start it,
//! then press Ctrl-C (or `kill` it).
//!
//! The poll loop is written out by hand here, as in the C, with the pipe's
//! fd from `interrupt::wake_fd()`; other programs get the same effect from
//! `interrupt::poll`. Unlike the C the handler does not have to be
//! async-signal-safe code of our own: the `ctrlc` crate runs it on a thread.

use zguide::{interrupt, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::REP)?;
    socket.bind("tcp://*:5555")?;

    interrupt::catch_signals();
    let signal_pipe = interrupt::wake_fd().expect("catch_signals() made the self-pipe");

    loop {
        let mut items = [
            zmq::PollItem::from_fd(signal_pipe, zmq::POLLIN),
            socket.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, -1) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }

        // Signal pipe: the handler wrote to it.
        if items[0].is_readable() {
            println!("W: interrupt received, killing server...");
            break;
        }

        // Read the socket, without blocking so we keep watching the pipe.
        if items[1].is_readable() {
            match socket.recv_bytes(zmq::DONTWAIT) {
                Ok(_request) => println!("W: recv"),
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // Now send the message back.
            // ...
        }
    }

    println!("W: cleaning up");
    Ok(())
}
