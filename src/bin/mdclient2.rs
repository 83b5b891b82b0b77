//! Majordomo Protocol client example, asynchronous (§28): the port of
//! `mdclient2.c`.
//!
//! Sends 100,000 `Hello world` requests to the `echo` service without
//! waiting, then collects 100,000 replies, and prints `N replies received`.
//! [`zguide::mdp::AsyncClient`] uses a DEALER socket, so requests pipeline
//! and the round trip is paid once, not per request; there are no retries.
//! `-v` prints every message.
//!
//! Run beside it: `mdbroker` and one or more `mdworker` (unchanged from §27).
//! Differs from the C: `ZGUIDE_REQUESTS` (default 100000) lowers the count for
//! tests; the client's queues have no high-water mark (see the API docs), so
//! a send never blocks; LINGER 0, frames up to 4 MiB; `-v` dumps replies with
//! frames cut to 32 bytes. Ctrl-C ends it with exit code 0 (`0 replies
//! received` if it was still waiting). With one worker the broker holds most
//! of the 100,000 requests at once, about 18 MiB of its 32 MiB per-client
//! bound.

use std::process::ExitCode;

use zguide::helpers::env_count;
use zguide::mdp::AsyncClient;
use zguide::{program, Message};

fn main() -> ExitCode {
    program::run(|| {
        let verbose = std::env::args().nth(1).as_deref() == Some("-v");
        let requests = env_count("ZGUIDE_REQUESTS", 100_000);
        let mut session = AsyncClient::new("tcp://localhost:5555", verbose)?;

        for _ in 0..requests {
            let request = Message::from_frames(["Hello world"]);
            if session.send("echo", request).is_err() {
                println!("0 replies received");
                return Ok(());
            }
        }
        let mut count = 0;
        while count < requests {
            match session.recv() {
                Ok(Some(_reply)) => count += 1,
                _ => break, //  Interrupted by Ctrl-C, or timed out
            }
        }
        println!("{count} replies received");
        Ok(())
    })
}
