//! §44 Using a Reactor (`clonesrv5.c`): Clone server, model five. The model
//! four server rebuilt as handlers on a [`Reactor`], with `kvmsg` updates
//! and ephemeral values: an update with a `ttl` property disappears that
//! many seconds later.
//!
//! Sockets on port base 5556: snapshots on a ROUTER bound to `tcp://*:5556`
//! (`[ICANHAZ?][subtree]`, logs `I: sending shapshot=N`, sic), updates out
//! on a PUB bound to `tcp://*:5557`, client updates in on a PULL bound to
//! `tcp://*:5558` (logs `I: publishing update=N`). Each update is published
//! as received and stored with its `ttl` (seconds) turned into an absolute
//! expiry (epoch ms). Once a second a timer deletes every expired key: the
//! delete (same key, empty body, next sequence) is published and logged as
//! `I: publishing delete=N`. Log lines carry the `zclock_log` timestamp.
//! Runs until Ctrl-C (exit 0). Run beside it: `clonecli5`.
//!
//! Bounds (see [`zguide::clone`]): inbound frames ≤ 64 KiB, at most 100
//! updates queued per client; the map
//! ≤ 100,000 keys and 32 MiB (an update past that is refused: not
//! published, no sequence number); a snapshot a client does not read is cut;
//! complaints are rate-limited. Differs from the C: a `ttl` that is absent,
//! 0, negative or not a number never expires (the C++ port expires 0 at
//! once); expired keys are collected first and deleted after the scan;
//! malformed updates and bad requests are logged and dropped; with
//! `ZGUIDE_CLONE_DUMP` set, prints its map on exit.

use std::process::ExitCode;

use zguide::clone::{self, KvMap, Warnings};
use zguide::kvmsg::KvMsg;
use zguide::mdp::protocol::clock_log;
use zguide::reactor::Reactor;
use zguide::{program, Error};

// Our server is defined by these properties
struct CloneServer {
    kvmap: KvMap<KvMsg>,    // Key-value store
    sequence: i64,          // How many updates we're at
    snapshot: zmq::Socket,  // Handle snapshot requests
    publisher: zmq::Socket, // Publish updates to clients
    collector: zmq::Socket, // Collect updates from clients
    warnings: Warnings,     // Complaints about peers, rate-limited
}

fn main() -> ExitCode {
    program::run(|| {
        let port = 5556;
        let context = zmq::Context::new();

        // Set up our clone server sockets
        let mut server = CloneServer {
            kvmap: KvMap::new(),
            sequence: 0,
            snapshot: clone::snapshot_socket(&context, &format!("tcp://*:{port}"))?,
            publisher: zguide::socket::new(&context, zmq::PUB)
                .bind(&format!("tcp://*:{}", port + 1))?,
            collector: zguide::socket::new(&context, zmq::PULL)
                .max_message_size(clone::MAX_FRAME)
                .receive_hwm(clone::COLLECTOR_HWM)
                .bind(&format!("tcp://*:{}", port + 2))?,
            warnings: Warnings::default(),
        };

        // Register our handlers with reactor
        let mut reactor = Reactor::new();
        reactor.reader("snapshots", |s: &CloneServer| &s.snapshot, snapshots);
        reactor.reader("collector", |s: &CloneServer| &s.collector, collector);
        reactor.timer(clone::TICK_MS, 0, flush_ttl);

        // Run reactor until process interrupted
        let result = reactor.run(&mut server);
        clone::dump_on_exit(&server.kvmap, server.sequence);
        result
    })
}

// We handle ICANHAZ? requests by sending snapshot data to the client that
// requested it, ending with a KTHXBAI message:
fn snapshots(_: &mut Reactor<CloneServer>, server: &mut CloneServer) -> Result<(), Error> {
    let sent = clone::serve_snapshot(
        &server.snapshot,
        &server.kvmap,
        server.sequence,
        true,
        &mut server.warnings,
    )?;
    if sent.is_some() {
        clock_log(&format!("I: sending shapshot={}", server.sequence));
    }
    Ok(())
}

// We store each update with a new sequence number, and if necessary, a
// time-to-live. We publish updates immediately on our publisher socket:
fn collector(_: &mut Reactor<CloneServer>, server: &mut CloneServer) -> Result<(), Error> {
    let Some(kvmsg) = clone::try_recv::<KvMsg>(&server.collector, &mut server.warnings)? else {
        return Ok(());
    };
    let published = clone::publish_update(
        &mut server.kvmap,
        &mut server.sequence,
        &server.publisher,
        kvmsg,
        &mut server.warnings,
    )?;
    if let Some(sequence) = published {
        clock_log(&format!("I: publishing update={sequence}"));
    }
    Ok(())
}

// At regular intervals, we flush ephemeral values that have expired: each
// one is deleted and the fact published to listening clients.
fn flush_ttl(_: &mut Reactor<CloneServer>, server: &mut CloneServer) -> Result<(), Error> {
    for sequence in
        clone::flush_expired(&mut server.kvmap, &mut server.sequence, &server.publisher)?
    {
        clock_log(&format!("I: publishing delete={sequence}"));
    }
    Ok(())
}
