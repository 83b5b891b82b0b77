//! Majordomo Protocol client example (§27): the port of `mdclient.c`.
//!
//! Sends 100,000 `Hello world` requests to the `echo` service through the
//! broker at `tcp://localhost:5555`, one at a time, and prints
//! `N requests/replies processed`. Retries and reconnects are hidden in
//! [`zguide::mdp::Client`]; if a request stays unanswered after 3 attempts
//! of 2.5 s the client stops early and prints how many succeeded.
//! `-v` prints every message.
//!
//! Run beside it: `mdbroker` and one or more `mdworker`.
//! Differs from the C: `ZGUIDE_REQUESTS` (default 100000) lowers the count for
//! tests; the exit code is 0 as in the C, whether or not all were answered.
//! Its REQ socket (made by the API) has LINGER 0 and accepts frames up to
//! 4 MiB, the broker's own bound; `-v` dumps replies with frames cut to 32
//! bytes. Ctrl-C ends it with exit code 0, also while it waits for a reply
//! that a dead worker or broker will never send, or while a send waits for a
//! broker that stopped reading.

use std::process::ExitCode;

use zguide::helpers::env_count;
use zguide::mdp::Client;
use zguide::{program, Message};

fn main() -> ExitCode {
    program::run(|| {
        let verbose = std::env::args().nth(1).as_deref() == Some("-v");
        let requests = env_count("ZGUIDE_REQUESTS", 100_000);
        let mut session = Client::new("tcp://localhost:5555", verbose)?;

        let mut count = 0;
        while count < requests {
            let request = Message::from_frames(["Hello world"]);
            if session.send("echo", request).is_err() {
                break; //  Interrupt or failure
            }
            count += 1;
        }
        println!("{count} requests/replies processed");
        Ok(())
    })
}
