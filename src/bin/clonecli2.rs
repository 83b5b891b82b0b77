//! §40 Getting an Out-of-Band Snapshot (`clonecli2.c`): Clone client, model
//! two. Subscribes first, then asks for a snapshot, then applies only the
//! updates newer than the snapshot.
//!
//! A SUB socket connects to `tcp://localhost:5557` (subscribed to
//! everything) before a DEALER on `tcp://localhost:5556` sends `ICANHAZ?`;
//! the entries that come back go into the map until `KTHXBAI`, whose
//! sequence N it prints as `Received snapshot=N`. Then it applies every
//! update with a sequence above the last one, for ever; Ctrl-C exits 0.
//! Run beside it: `clonesrv2`.
//!
//! Differs from the C: a malformed message is logged (rate-limited) and
//! dropped, where the C stops; inbound frames are limited to 64 KiB; with
//! `ZGUIDE_CLONE_DUMP` set, prints its map on exit (see [`zguide::clone`]).

use std::process::ExitCode;

use zguide::clone::{self, KvMap, Warnings};
use zguide::kvsimple::KvSimple;
use zguide::{program, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and subscriber
        let context = zmq::Context::new();
        let snapshot = zguide::socket::new(&context, zmq::DEALER)
            .max_message_size(clone::MAX_FRAME)
            .connect("tcp://localhost:5556")?;
        let subscriber = zguide::socket::new(&context, zmq::SUB)
            .max_message_size(clone::MAX_FRAME)
            .subscribe("")
            .connect("tcp://localhost:5557")?;

        let mut kvmap = KvMap::new();
        let mut warnings = Warnings::default();

        // Get state snapshot
        let mut sequence = 0;
        let result = (|| {
            sequence = clone::get_snapshot::<KvSimple>(&snapshot, None, &mut kvmap, &mut warnings)?;
            println!("Received snapshot={sequence}");
            // Now apply pending updates, discard out-of-sequence messages
            loop {
                let msg = Message::recv(&subscriber)?;
                if let Some(kvmsg) = clone::decode::<KvSimple>(msg, &mut warnings)? {
                    clone::apply_update(&mut kvmap, &mut sequence, kvmsg, &mut warnings);
                }
            }
        })();
        clone::dump_on_exit(&kvmap, sequence);
        result
    })
}
