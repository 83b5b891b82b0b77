//! §40 Getting an Out-of-Band Snapshot (`clonesrv2.c`): Clone server, model
//! two. Publishes random updates, and a state-manager thread serves
//! snapshots of the map to clients that join late.
//!
//! The main thread publishes `kvsimple` updates on a PUB socket bound to
//! `tcp://*:5557`, as fast as it can, and passes each one to the state
//! manager over its pipe (an [`Actor`]). The state manager keeps the map and
//! answers `[ICANHAZ?]` on a ROUTER bound to `tcp://*:5556` with every entry
//! and then `[KTHXBAI][sequence][""]`, printing `Sending state shapshot=N`
//! (sic, the C's typo). On Ctrl-C: ` Interrupted`, `N messages out`, exit 0.
//! Run beside it: `clonecli2`, started at any time.
//!
//! Bounds and differences from the C: a bad request is logged
//! (rate-limited) and dropped, where the C prints `E: bad request, aborting`
//! and its state manager stops for good; snapshot frames are limited to
//! 64 KiB, the map to 10,000 keys (the key space); a client that does not
//! read its snapshot gets it cut (see [`zguide::clone`]); with
//! `ZGUIDE_CLONE_DUMP` set, the state manager prints its map on exit.

use std::process::ExitCode;

use zguide::actor::{self, Actor, Pipe};
use zguide::clone::{self, KvMap, Warnings};
use zguide::kvsimple::KvSimple;
use zguide::{helpers, interrupt, program, Error, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Prepare our context and sockets
        let context = zmq::Context::new();
        let publisher = zguide::socket::new(&context, zmq::PUB).bind("tcp://*:5557")?;
        // Bound here, so a busy port is an error of the program, not of a thread.
        let snapshot = clone::snapshot_socket(&context, "tcp://*:5556")?;

        // Start state manager and wait for synchronization signal
        let updates = Actor::new(&context, move |pipe| {
            if let Err(e) = program::interrupted_is_ok(state_manager(pipe, snapshot)) {
                log::error!("state manager: {e}");
            }
        })?;

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
            if let Err(e) = send_to_manager(&updates, kvmsg.to_message()) {
                program::interrupted_is_ok(Err(e))?;
                break;
            }
        }
        println!(" Interrupted\n{sequence} messages out");
        Ok::<(), Error>(())
    })
}

/// Sends an update down the pipe. The pipe is bounded (HWM 1000), so this
/// waits while the state manager is busy with a snapshot, but never past a
/// Ctrl-C (a plain blocking send would hang if the manager had gone).
fn send_to_manager(updates: &Actor, msg: Message) -> Result<(), Error> {
    let pipe = updates.socket();
    loop {
        match msg.clone().send_flags(pipe, zmq::DONTWAIT) {
            Err(Error::Zmq(zmq::Error::EAGAIN)) => {}
            other => return other,
        }
        if interrupt::interrupted() {
            return Err(Error::Interrupted);
        }
        let mut items = [pipe.as_poll_item(zmq::POLLOUT)];
        match zmq::poll(&mut items, 100) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

// The state manager task maintains the state and handles requests from
// clients for snapshots:
fn state_manager(pipe: &Pipe, snapshot: zmq::Socket) -> Result<(), Error> {
    let mut kvmap = KvMap::new();
    let mut sequence: i64 = 0; // Current snapshot version number
    let mut warnings = Warnings::default();
    pipe.signal(0)?;
    let result = loop {
        let ready = match interrupt::poll(&[pipe.socket(), &snapshot], -1) {
            Ok(ready) => ready,
            Err(e) => break Err(e),
        };
        // Apply state update from main thread
        if ready[0] {
            let msg = pipe.recv()?;
            if actor::is_term(&msg) {
                break Ok(());
            }
            if let Some(kvmsg) = clone::decode::<KvSimple>(msg, &mut warnings)? {
                sequence = kvmsg.sequence();
                kvmap.store(kvmsg);
            }
        }
        // Execute state snapshot request
        if ready[1]
            && clone::serve_snapshot(&snapshot, &kvmap, sequence, false, &mut warnings)?.is_some()
        {
            println!("Sending state shapshot={sequence}");
        }
    };
    clone::dump_on_exit(&kvmap, sequence);
    result
}
