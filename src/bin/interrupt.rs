//! §9 Handling Interrupt Signals (`interrupt.c`): shutting down cleanly on
//! Ctrl-C with the self-pipe trick.
//!
//! A REP socket bound to `tcp://*:5555`. The signal handler (installed by
//! `program::run`, through `interrupt::catch_signals`, for SIGINT and
//! SIGTERM) writes a byte into a pipe, and the main loop polls the pipe's
//! read end together with the socket, so a signal wakes the poll at once.
//! Then the program prints `W: interrupt received, killing server...` and
//! `W: cleaning up`, closes the socket and exits with code 0. For each
//! request it prints `W: recv`; like the C it sends no reply (the book leaves
//! that part as `...`), so a REQ client such as `hwclient` waits after its
//! first request. Start it, then press Ctrl-C (or `kill` it).
//!
//! The poll loop is written out by hand here, as in the C, with the pipe's
//! fd from `interrupt::wake_fd()`; other programs get the same effect from
//! `interrupt::poll`. Unlike the C the handler does not have to be
//! async-signal-safe code of our own: the `ctrlc` crate runs it on a thread.
//!
//! Limits: a request frame may be at most 1 KiB (`MAXMSGSIZE`). Differs from
//! the C: the whole request is read, so a two-frame request is one `W: recv`
//! (the C reads one frame per round).

use std::process::ExitCode;

use zguide::{interrupt, program, socket, Error, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let socket = socket::new(&context, zmq::REP)
            .max_message_size(1024)
            .bind("tcp://*:5555")?;

        // program::run has installed the handler and made the self-pipe.
        let signal_pipe =
            interrupt::wake_fd().ok_or_else(|| Error::Protocol("no signal self-pipe".into()))?;

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

            // Read the socket, without blocking so we keep watching the pipe;
            // all of the request, or REP would hand us its next frame.
            if items[1].is_readable() && Message::try_recv(&socket)?.is_some() {
                println!("W: recv");
                // Now send the message back.
                // ...
            }
        }

        println!("W: cleaning up");
        Ok(())
    })
}
