//! §39 Representing State as Key-Value Pairs (`clonesrv1.c`): Clone server,
//! model one. Publishes random updates to every subscriber, as fast as it
//! can.
//!
//! A PUB socket binds `tcp://*:5556`; after 200 ms (time for subscribers to
//! connect) the server sends `kvsimple` updates (key `randof(10000)`, body
//! `randof(1000000)`, sequence 1, 2, 3 …) in a busy loop and keeps them in
//! its own map. On Ctrl-C it prints ` Interrupted` and `N messages out` and
//! exits 0. Run beside it: `clonecli1` (start it first: this model has no
//! snapshot, so a late client misses what was sent before it came).
//!
//! Bounds: the map holds at most 10,000 keys (the key space); PUB drops
//! updates for a subscriber past its send HWM (1000), which is why the
//! client's count can be lower than ours. Differs from the C: with
//! `ZGUIDE_CLONE_DUMP` set, prints its map on exit (see [`zguide::clone`]).

use std::process::ExitCode;

use zguide::clone::{self, KvMap};
use zguide::kvsimple::KvSimple;
use zguide::{helpers, interrupt, program, Error};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and publisher socket
        let context = zmq::Context::new();
        let publisher = zguide::socket::new(&context, zmq::PUB).bind("tcp://*:5556")?;
        interrupt::sleep_ms(200)?;

        let mut kvmap = KvMap::new();
        let mut sequence: i64 = 0;
        while !interrupt::interrupted() {
            // Distribute as key-value message
            sequence += 1;
            let kvmsg = KvSimple::with(
                helpers::randof(10000).to_string(),
                sequence,
                helpers::randof(1_000_000).to_string(),
            );
            kvmsg.to_message().send_or_drop(&publisher)?;
            kvmap.store(kvmsg);
        }
        println!(" Interrupted\n{sequence} messages out");
        clone::dump_on_exit(&kvmap, sequence);
        Ok::<(), Error>(())
    })
}
