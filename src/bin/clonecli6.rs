//! §46 Building a Multithreaded Stack and API (`clonecli6.c`): Clone client,
//! model six, on the [`zguide::clone::Client`] API. Sets a random key under
//! `/client/` every second and lets the API's agent thread keep the map in
//! step with a Binary Star pair of `clonesrv6` servers.
//!
//! Subtree `/client/`; servers `tcp://localhost:5556` (primary) and
//! `tcp://localhost:5566` (backup), each with its updates on port+1 and its
//! collector on port+2. Every second `set("/client/<randof(10000)>",
//! "<randof(1000000)>", ttl randof(30))`. The agent logs (with the
//! `zclock_log` timestamp) `I: adding server …`, `I: waiting for server at
//! …`, `I: received from <server> snapshot=N` and `… update=N`, and fails
//! over to the other server after 5 s without a word from the current one
//! (`I: server at <server> didn't give HUGZ`). Runs until Ctrl-C (exit 0).
//! Run beside it: `clonesrv6 -p` and `clonesrv6 -b`.
//!
//! Differs from the C (the agent's differences are in [`zguide::clone`]:
//! an update set before the current server's collector listens is held
//! back instead of vanishing into an unconnected PUB, the agent ends on
//! `$TERM` rather than on Ctrl-C, frames are limited to 64 KiB):
//! `ZGUIDE_UPDATES=N` stops setting after N keys (a second after the last
//! it logs `I: no more updates to send, only listening`);
//! `ZGUIDE_CLONE_TTL=S` sets ttl S instead of a random one (0: never
//! expires); with `ZGUIDE_CLONE_DUMP` set, prints the agent's map on exit
//! (see [`zguide::clone`]).

use std::process::ExitCode;

use zguide::clone::{self, Client};
use zguide::mdp::protocol::clock_log;
use zguide::{helpers, interrupt, program, Error};

const SUBTREE: &str = "/client/";

fn main() -> ExitCode {
    program::run(|| {
        // Create distributed hash instance
        let context = zmq::Context::new();
        let clone = Client::new(&context)?;

        // Specify configuration
        clone.subtree(SUBTREE)?;
        clone.connect("tcp://localhost", "5556")?;
        clone.connect("tcp://localhost", "5566")?;

        // Set random tuples into the distributed hash
        let mut updates_left = clone::env_limit("ZGUIDE_UPDATES");
        let fixed_ttl = clone::env_limit("ZGUIDE_CLONE_TTL");
        let mut announced = false;
        let stopped = loop {
            if updates_left == Some(0) && !announced {
                clock_log("I: no more updates to send, only listening");
                announced = true;
            } else if updates_left != Some(0) {
                updates_left = updates_left.map(|n| n - 1);
                let key = format!("{SUBTREE}{}", helpers::randof(10000));
                let value = helpers::randof(1_000_000).to_string();
                let ttl = fixed_ttl.unwrap_or(u64::from(helpers::randof(30)));
                clone.set(&key, &value, ttl.min(i64::MAX as u64) as i64)?;
            }
            if let Err(e) = interrupt::sleep_ms(1000) {
                break e;
            }
        };
        if std::env::var_os(clone::DUMP_ENV).is_some() {
            print!("{}", clone.dump()?);
        }
        Err::<(), Error>(stopped)
    })
}
