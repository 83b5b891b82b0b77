//! §39 Representing State as Key-Value Pairs (`clonecli1.c`): Clone client,
//! model one. Subscribes to every update and stores it.
//!
//! A SUB socket connects to `tcp://localhost:5556` and subscribes to
//! everything; each `kvsimple` update goes into the map. On Ctrl-C it prints
//! ` Interrupted` and `N messages in` and exits 0. Run beside it:
//! `clonesrv1` (start this client first).
//!
//! Differs from the C: a malformed message is logged (rate-limited) and
//! dropped, where the C ends its loop; inbound frames are limited to 64 KiB;
//! with `ZGUIDE_CLONE_DUMP` set, prints its map on exit (see
//! [`zguide::clone`]).

use std::process::ExitCode;

use zguide::clone::{self, KvMap, Warnings};
use zguide::kvsimple::KvSimple;
use zguide::{program, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and updates socket
        let context = zmq::Context::new();
        let updates = zguide::socket::new(&context, zmq::SUB)
            .max_message_size(clone::MAX_FRAME)
            .subscribe("")
            .connect("tcp://localhost:5556")?;

        let mut kvmap = KvMap::new();
        let mut warnings = Warnings::default();
        let mut sequence: i64 = 0;
        let result = loop {
            let msg = match Message::recv(&updates) {
                Ok(msg) => msg,
                Err(e) => break e, // Interrupted
            };
            if let Some(kvmsg) = clone::decode::<KvSimple>(msg, &mut warnings)? {
                kvmap.store(kvmsg);
                sequence += 1;
            }
        };
        println!(" Interrupted\n{sequence} messages in");
        clone::dump_on_exit(&kvmap, sequence);
        Err(result)
    })
}
