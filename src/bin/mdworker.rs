//! Majordomo Protocol worker example (§27): the port of `mdworker.c`.
//!
//! Registers for the service `echo` with the broker at
//! `tcp://localhost:5555` and sends every request back as its reply, forever.
//! All the protocol (READY, heartbeats, reconnecting after the broker went
//! away) lives in [`zguide::mdp::Worker`]. `-v` prints every message.
//!
//! Run beside it: `mdbroker`, then `mdclient`, `mdclient2` or `mmiecho`.
//! Differs from the C only in that Ctrl-C ends it cleanly with exit code 0
//! (the worker API prints `W: interrupt received, killing worker...`).

use zguide::helpers::init_log;
use zguide::mdp::Worker;
use zguide::{interrupt, Error};

fn main() {
    init_log("info");
    interrupt::catch_signals();
    let verbose = std::env::args().nth(1).as_deref() == Some("-v");

    let mut session = match Worker::new("tcp://localhost:5555", "echo", verbose) {
        Ok(session) => session,
        Err(e) => {
            log::error!("cannot start the worker: {e}");
            std::process::exit(1);
        }
    };
    let mut reply = None;
    loop {
        match session.recv(reply.take()) {
            Ok(request) => reply = Some(request), //  Echo is complex... :-)
            Err(Error::Interrupted) => break,     //  Worker was interrupted
            Err(e) => {
                log::error!("worker stopped: {e}");
                std::process::exit(1);
            }
        }
    }
}
