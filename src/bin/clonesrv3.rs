//! §41 Republishing Updates from Clients (`clonesrv3.c`): Clone server,
//! model three. Clients send their updates to the server, which gives each
//! one the next sequence number and republishes it to everybody.
//!
//! Sockets: snapshots on a ROUTER bound to `tcp://*:5556` (`[ICANHAZ?]` →
//! every entry, then `[KTHXBAI][sequence][""]`, printing
//! `I: sending shapshot=N`, sic), updates out on a PUB bound to
//! `tcp://*:5557`, client updates in on a **PULL** bound to `tcp://*:5558`
//! (printing `I: publishing update     N`, the number right-aligned in five
//! columns). On Ctrl-C: ` Interrupted`, `N messages handled`, exit 0. Run
//! beside it: `clonecli3`, as many as you like.
//!
//! Bounds (see [`zguide::clone`]): inbound frames ≤ 64 KiB, at most 100
//! updates queued per client; the map
//! ≤ 100,000 keys and 32 MiB (an update past that is refused: not
//! published, no sequence number); a snapshot a client does not read is cut;
//! complaints are rate-limited. Differs from the C: malformed updates and
//! bad requests are logged and dropped (the C stops on a bad request, and
//! its `kvmsg_recv` desynchronises on a wrong frame count); with
//! `ZGUIDE_CLONE_DUMP` set, prints its map on exit.

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
                && clone::serve_snapshot(&snapshot, &kvmap, sequence, false, &mut warnings)?
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
