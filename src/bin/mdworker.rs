//! Majordomo Protocol worker example (§27): the port of `mdworker.c`.
//!
//! Registers for the service `echo` with the broker at
//! `tcp://localhost:5555` and sends every request back as its reply, forever.
//! All the protocol (READY, heartbeats, reconnecting after the broker went
//! away) lives in [`zguide::mdp::Worker`]. `-v` prints every message.
//!
//! Run beside it: `mdbroker`, then `mdclient`, `mdclient2` or `mmiecho`.
//! Differs from the C only in that Ctrl-C ends it cleanly with exit code 0
//! (the worker API prints `W: interrupt received, killing worker...`), also
//! while a send waits for a broker that stopped reading. Its DEALER socket
//! (made by the API) has LINGER 0 and accepts frames up to 4 MiB, the
//! broker's own bound; `-v` dumps what the broker sent with frames cut to 32
//! bytes.

use std::process::ExitCode;

use zguide::mdp::Worker;
use zguide::program;

fn main() -> ExitCode {
    program::run(|| {
        let verbose = std::env::args().nth(1).as_deref() == Some("-v");
        let mut session = Worker::new("tcp://localhost:5555", "echo", verbose)?;

        let mut reply = None;
        loop {
            //  Ctrl-C: Err(Interrupted), a clean exit
            let request = session.recv(reply.take())?;
            reply = Some(request); //  Echo is complex... :-)
        }
    })
}
