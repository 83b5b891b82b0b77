//! §42 Working with Subtrees (`clonesrv4.c`): Clone server, model four.
//! Model three, except that a snapshot request names a subtree and gets
//! only the keys under it.
//!
//! Sockets: snapshots on a ROUTER bound to `tcp://*:5556`
//! (`[ICANHAZ?][subtree]` → every entry whose key starts with the subtree,
//! then `[KTHXBAI][sequence][""]` with an empty last frame, as the C sends
//! it; prints `I: sending shapshot=N`, sic), updates out on a PUB bound to
//! `tcp://*:5557`, client updates in on a PULL bound to `tcp://*:5558`
//! (prints `I: publishing update     N`). On Ctrl-C: ` Interrupted`,
//! `N messages handled`, exit 0. Run beside it: `clonecli4`.
//!
//! Bounds (see [`zguide::clone`]): inbound frames ≤ 64 KiB, at most 100
//! updates queued per client, subtrees ≤ 255 bytes; the map ≤ 100,000 keys and 32 MiB (an update past that is
//! refused: not published, no sequence number); a snapshot a client does
//! not read is cut; complaints are rate-limited. Differs from the C:
//! malformed updates and bad requests are logged and dropped (the C stops on
//! a bad request); a request without a subtree frame (a model-three client)
//! gets the whole map, where the C would read the client's next message as
//! the subtree; with `ZGUIDE_CLONE_DUMP` set, prints its map on exit.

use std::process::ExitCode;

use zguide::clone::{self, KvMap, Warnings};
use zguide::kvsimple::KvSimple;
use zguide::{interrupt, program, Error};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and sockets
        let context = zmq::Context::new();
        let snapshot = clone::snapshot_socket(&context, "tcp://*:5556")?;
        let publisher = zguide::socket::new(&context, zmq::PUB).bind("tcp://*:5557")?;
        let collector = zguide::socket::new(&context, zmq::PULL)
            .max_message_size(clone::MAX_FRAME)
            .receive_hwm(clone::COLLECTOR_HWM)
            .bind("tcp://*:5558")?;

        // The body of the main task collects updates from clients and
        // publishes them back out to clients:
        let mut sequence: i64 = 0;
        let mut kvmap = KvMap::new();
        let mut warnings = Warnings::default();
        let result = loop {
            let ready = match interrupt::poll(&[&collector, &snapshot], 1000) {
                Ok(ready) => ready,
                Err(e) => break e,
            };
            // Apply state update sent from client
            if ready[0] {
                if let Some(kvmsg) = clone::try_recv::<KvSimple>(&collector, &mut warnings)? {
                    let published = clone::publish_update(
                        &mut kvmap,
                        &mut sequence,
                        &publisher,
                        kvmsg,
                        &mut warnings,
                    )?;
                    if let Some(sequence) = published {
                        println!("I: publishing update {sequence:5}");
                    }
                }
            }
            // Execute state snapshot request
            if ready[1]
                && clone::serve_snapshot(&snapshot, &kvmap, sequence, true, &mut warnings)?
                    .is_some()
            {
                println!("I: sending shapshot={sequence}");
            }
        };
        println!(" Interrupted\n{sequence} messages handled");
        clone::dump_on_exit(&kvmap, sequence);
        Err::<(), Error>(result)
    })
}
