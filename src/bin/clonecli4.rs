//! §42 Working with Subtrees (`clonecli4.c`): Clone client, model four.
//! Model three, working on the subtree `/client/` only.
//!
//! Sockets: a DEALER to `tcp://localhost:5556` asks `[ICANHAZ?][/client/]`
//! (prints `I: received snapshot=N`), a SUB to `tcp://localhost:5557`
//! subscribed to `/client/` (prints `I: received update=N`), a PUSH to
//! `tcp://localhost:5558` for its own update every second, key
//! `/client/<randof(10000)>`. Runs until Ctrl-C (` Interrupted`,
//! `N messages in`, exit 0). Run beside it: `clonesrv4`.
//!
//! Differs from the C: subscribes to the subtree only (the C also subscribes
//! to `""`, so it receives every update and the subtree filter does
//! nothing); malformed messages are logged (rate-limited) and dropped; an
//! update the server does not take at once is dropped with a warning;
//! `ZGUIDE_UPDATES=N` stops sending after N updates; with
//! `ZGUIDE_CLONE_DUMP` set, prints its map on exit (see [`zguide::clone`]).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::clone::{self, KvMap, Warnings};
use zguide::kvsimple::KvSimple;
use zguide::{helpers, interrupt, program, Error};

// This client is identical to clonecli3 except for where we
// handle subtrees.
const SUBTREE: &str = "/client/";

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and subscriber
        let context = zmq::Context::new();
        let snapshot = zguide::socket::new(&context, zmq::DEALER)
            .max_message_size(clone::MAX_FRAME)
            .connect("tcp://localhost:5556")?;
        let subscriber = zguide::socket::new(&context, zmq::SUB)
            .max_message_size(clone::MAX_FRAME)
            // Fix: the subtree only (the C subscribes to "" as well).
            .subscribe(SUBTREE)
            .connect("tcp://localhost:5557")?;
        let publisher = zguide::socket::new(&context, zmq::PUSH).connect("tcp://localhost:5558")?;

        let mut kvmap = KvMap::new();
        let mut warnings = Warnings::default();
        let mut updates_left = clone::env_limit("ZGUIDE_UPDATES");

        // We first request a state snapshot:
        let mut sequence = 0;
        let result: Result<(), Error> = (|| {
            sequence = clone::get_snapshot::<KvSimple>(
                &snapshot,
                Some(SUBTREE),
                &mut kvmap,
                &mut warnings,
            )?;
            println!("I: received snapshot={sequence}");

            // Now we wait for updates from the server and every so often, we
            // send a random key-value update to the server:
            let mut alarm = Instant::now() + Duration::from_secs(1);
            loop {
                let tickless = alarm.saturating_duration_since(Instant::now());
                if interrupt::wait_readable(&subscriber, interrupt::millis(tickless))? {
                    if let Some(kvmsg) = clone::try_recv::<KvSimple>(&subscriber, &mut warnings)? {
                        // Discard out-of-sequence kvmsgs, incl. heartbeats
                        if clone::apply_update(&mut kvmap, &mut sequence, kvmsg, &mut warnings) {
                            println!("I: received update={sequence}");
                        }
                    }
                }
                // If we timed out, generate a random kvmsg
                if Instant::now() >= alarm {
                    if updates_left != Some(0) {
                        updates_left = updates_left.map(|n| n - 1);
                        let kvmsg = KvSimple::with(
                            format!("{SUBTREE}{}", helpers::randof(10000)),
                            0,
                            helpers::randof(1_000_000).to_string(),
                        );
                        if !kvmsg.to_message().send_or_drop(&publisher)? {
                            warnings.warn(format_args!("server not taking updates: one dropped"));
                        }
                    }
                    alarm = Instant::now() + Duration::from_secs(1);
                }
            }
        })();
        println!(" Interrupted\n{sequence} messages in");
        clone::dump_on_exit(&kvmap, sequence);
        result
    })
}
