//! §35 Model Three: Complex and Nasty (`flclient3.c`): the Freelance client
//! on top of the `flcliapi` agent (`zguide::flcliapi::FreelanceClient`).
//!
//! It connects to `tcp://localhost:5555`, `5556` and `5557`
//! (`I: connecting to <endpoint>...`), then sends 10,000 requests
//! (`random name`) one after another. The agent sends each request to the
//! first live server, pings every server every 2 s, forgets a server silent
//! for 6 s, and fails a request after 3 s. At the end the client prints
//! `Average round trip cost: N usec`; if a request fails,
//! `E: name service not available, aborting`. Run it beside `flserver3`s:
//!
//! ```text
//! flserver3 &  flserver3 tcp://localhost:5556 &  flserver3 tcp://localhost:5557 &
//! flclient3
//! ```
//!
//! The endpoints must be spelled exactly as the servers' identities (see
//! `flserver3`). `ZGUIDE_REQUESTS` sets the number of requests (default
//! 10,000, the C's).
//!
//! Differs from the C: endpoints given as arguments replace the three
//! defaults (`flclient3 tcp://localhost:5556`); after
//! `E: name service not available, aborting` the client exits 1 without an
//! average (the C printed an average over requests never made and exited
//! 0); the agent's fixes are listed in `zguide::flcliapi`. Ctrl-C/SIGTERM
//! exits 0.

use std::process::ExitCode;

use zguide::flcliapi::{self, FreelanceClient};
use zguide::{helpers, interrupt, program};

const ENDPOINTS: [&str; 3] = [
    "tcp://localhost:5555",
    "tcp://localhost:5556",
    "tcp://localhost:5557",
];

fn main() -> ExitCode {
    let mut endpoints: Vec<String> = std::env::args().skip(1).collect();
    if endpoints.is_empty() {
        endpoints = ENDPOINTS.iter().map(|e| e.to_string()).collect();
    }
    let mut served = false;
    let code = program::run(|| {
        // Create a new freelance client object, connected to several endpoints.
        let mut client = FreelanceClient::new()?;
        for endpoint in &endpoints {
            client.connect(endpoint)?;
        }
        // Send a bunch of name resolution 'requests', measure time.
        let requests = helpers::env_count("ZGUIDE_REQUESTS", 10_000);
        served = flcliapi::resolve_names(requests, |request| client.request(request))?;
        Ok(())
    });
    // Ctrl-C is a clean exit; a name service that did not answer is not.
    if served || interrupt::interrupted() {
        code
    } else {
        ExitCode::FAILURE
    }
}
