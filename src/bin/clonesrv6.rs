//! §45 Adding the Binary Star Pattern for Reliability (`clonesrv6.c`): Clone
//! server, model six. Two servers, a primary and a backup, run as a Binary
//! Star pair ([`zguide::bstar::BinaryStar`]); clients send their updates to
//! both, the active one publishes them, the passive one follows it and takes
//! over when it dies.
//!
//! `clonesrv6 -p` (primary): Binary Star state on `tcp://*:5003` / peer
//! `tcp://localhost:5004`; snapshots (`[ICANHAZ?][subtree]`, which are also
//! the clients' votes) on a ROUTER bound to `tcp://*:5556`; updates and HUGZ
//! out on a PUB bound to `tcp://*:5557`; client updates in on a **SUB** bound
//! to `tcp://*:5558`; the peer's updates in on a SUB connected to
//! `tcp://localhost:5567`. `clonesrv6 -b` (backup): 5004/5003, 5566, 5567,
//! 5568, peer updates from `tcp://localhost:5557`. `-v` after the role
//! traces Binary Star (`I: peer state …` for each state message,
//! `I: rejected a client request: …`). Anything else prints
//! `Usage: clonesrv6 { -p | -b } [-v]` and exits 0.
//!
//! Active: as `clonesrv5` (logs `I: publishing update=N`,
//! `I: publishing delete=N`, `I: sending shapshot=N`), plus
//! `[HUGZ][sequence][""][""][""]` every second. Passive: fetches a snapshot
//! from the peer on its first update (`I: asking for snapshot from: …`,
//! `I: received snapshot=N`), then applies the peer's updates
//! (`I: received update=N`) and keeps a *pending* list of client updates the
//! active has not published yet (and of the active's updates whose client
//! copy has not arrived yet), matched by UUID. On becoming active it
//! publishes the pending list (`I: publishing pending=N`). Log lines carry
//! the `zclock_log` timestamp. Runs until Ctrl-C (exit 0). Run beside it: the
//! other server and `clonecli6`.
//!
//! Bounds (see [`zguide::clone`]): inbound frames ≤ 64 KiB, at most 100
//! updates queued per client; the map
//! ≤ 100,000 keys and 32 MiB; the pending list ≤ 10,000 updates and 32 MiB
//! (past that the oldest is dropped, logged); a snapshot a client does not
//! read is cut; a snapshot from the peer must arrive within 1.5 s, else it is
//! asked again on the next update; complaints are rate-limited.
//!
//! Differs from the C (each fix is commented where it is made):
//! * a client update without a 16-byte UUID is logged and dropped (the C
//!   crashes in `memcmp` on a NULL UUID);
//! * pending updates are published with their `ttl` turned into an expiry,
//!   like any update (the C stores the seconds as if they were epoch ms, so
//!   they expire at once); the passive server also stores the active's
//!   updates with an expiry, and only the active server expires keys (in C
//!   the passive one deletes them too, with sequence numbers of its own);
//! * expiry deletes go out without the client's UUID, so a passive server
//!   never keeps them pending (see [`zguide::clone::Entry::into_delete`]);
//! * a ttl that is absent, 0, negative or not a number never expires;
//! * a dual-active or dual-passive pair exits with code 1 (Binary Star);
//!   Binary Star's tracing is off unless `-v` is given (the C always
//!   traces its reactor);
//! * with `ZGUIDE_CLONE_DUMP` set, prints its map on exit.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::bstar::{BinaryStar, Role};
use zguide::clone::{self, Entry, KvMap, Warnings, HUGZ, ICANHAZ, KTHXBAI};
use zguide::kvmsg::KvMsg;
use zguide::mdp::protocol::clock_log;
use zguide::reactor::Reactor;
use zguide::{interrupt, program, Error, Message};

/// The most updates the pending list holds.
const MAX_PENDING: usize = 10_000;
/// The most bytes the pending list holds: 32 MiB.
const MAX_PENDING_BYTES: usize = 32 << 20;
/// How long a passive server waits for the snapshot from its peer.
const PEER_SNAPSHOT_MS: u64 = 1500;

// Our server is defined by these properties
struct CloneServer {
    context: zmq::Context,
    kvmap: Option<KvMap<KvMsg>>, // Key-value store; none until a passive has its snapshot
    sequence: i64,               // How many updates we're at
    peer: u16,                   // Main port of our peer
    publisher: zmq::Socket,      // Publish updates and hugz
    collector: zmq::Socket,      // Collect updates from clients
    subscriber: zmq::Socket,     // Get updates from peer
    pending: VecDeque<KvMsg>,    // Pending updates from clients
    pending_bytes: usize,        // What the pending list holds
    active: bool,                // true if we're active
    warnings: Warnings,          // Complaints about peers, rate-limited
}

type Bstar = BinaryStar<CloneServer>;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // The C always traces its Binary Star reactor; here `-v` asks for it.
    let verbose = args.len() == 2 && args.pop_if(|flag| flag == "-v").is_some();
    let (role, local, remote, voter, port, peer) = match args.as_slice() {
        [flag] if flag == "-p" => {
            clock_log("I: primary active, waiting for backup (passive)");
            let ends = ("tcp://*:5003", "tcp://localhost:5004", "tcp://*:5556");
            (Role::Primary, ends.0, ends.1, ends.2, 5556, 5566)
        }
        [flag] if flag == "-b" => {
            clock_log("I: backup passive, waiting for primary (active)");
            let ends = ("tcp://*:5004", "tcp://localhost:5003", "tcp://*:5566");
            (Role::Backup, ends.0, ends.1, ends.2, 5566, 5556)
        }
        _ => {
            println!("Usage: clonesrv6 {{ -p | -b }} [-v]");
            return ExitCode::SUCCESS;
        }
    };
    program::run(|| {
        let context = zmq::Context::new();
        // Set up our clone server sockets
        let server = CloneServer {
            context: context.clone(),
            // Primary server will become first active
            kvmap: (role == Role::Primary).then(KvMap::new),
            sequence: 0,
            peer,
            publisher: zguide::socket::new(&context, zmq::PUB)
                .bind(&format!("tcp://*:{}", port + 1))?,
            collector: zguide::socket::new(&context, zmq::SUB)
                .max_message_size(clone::MAX_FRAME)
                .receive_hwm(clone::COLLECTOR_HWM)
                .subscribe("")
                .bind(&format!("tcp://*:{}", port + 2))?,
            // Set up our own clone client interface to peer
            subscriber: zguide::socket::new(&context, zmq::SUB)
                .max_message_size(clone::MAX_FRAME)
                .subscribe("")
                .connect(&format!("tcp://localhost:{}", peer + 1))?,
            pending: VecDeque::new(),
            pending_bytes: 0,
            active: false,
            warnings: Warnings::default(),
        };
        let mut bstar = BinaryStar::new(&context, role, local, remote, server)?;
        bstar.set_verbose(verbose);
        bstar.voter(voter, zmq::ROUTER, snapshots)?;
        if let Some(voter) = bstar.voter_socket() {
            clone::configure_snapshot_socket(voter)?;
        }

        // Register state change handlers
        bstar.on_active(new_active);
        bstar.on_passive(new_passive);

        // Register our other handlers with the bstar reactor
        let mut reactor = Reactor::new();
        reactor.reader("collector", |b: &Bstar| &b.app.collector, collector);
        reactor.timer(clone::TICK_MS, 0, flush_ttl);
        reactor.timer(clone::TICK_MS, 0, send_hugz);

        // Start the bstar reactor
        let result = bstar.start(&mut reactor);
        let server = &bstar.app;
        clone::dump_on_exit(
            server.kvmap.as_ref().unwrap_or(&KvMap::new()),
            server.sequence,
        );
        result
    })
}

// We handle ICANHAZ? requests exactly as in the clonesrv5 example. Binary
// Star calls us only for requests it accepted (we are active).
fn snapshots(_: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    // The voter socket belongs to Binary Star: borrow our warnings meanwhile.
    let mut warnings = std::mem::take(&mut bstar.app.warnings);
    let sent = match bstar.voter_socket() {
        Some(voter) => {
            let server = &bstar.app;
            let empty = KvMap::new();
            let kvmap = server.kvmap.as_ref().unwrap_or(&empty);
            clone::serve_snapshot(voter, kvmap, server.sequence, true, &mut warnings)
        }
        None => Ok(None),
    };
    bstar.app.warnings = warnings;
    if sent?.is_some() {
        clock_log(&format!("I: sending shapshot={}", bstar.app.sequence));
    }
    Ok(())
}

// The collector is more complex than in the clonesrv5 example because the
// way it processes updates depends on whether we're active or passive. The
// active applies them immediately to its kvmap, whereas the passive queues
// them as pending:
fn collector(_: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    let server = &mut bstar.app;
    let Some(kvmsg) = clone::try_recv::<KvMsg>(&server.collector, &mut server.warnings)? else {
        return Ok(());
    };
    // Fix: the pending list matches updates by UUID, so an update without
    // one cannot be followed. The C crashes on it (memcmp on NULL).
    if kvmsg.uuid().is_none() {
        server.warnings.warn(format_args!(
            "update of {} without a 16-byte UUID dropped",
            zguide::message::show(kvmsg.key())
        ));
        return Ok(());
    }
    if server.active {
        let kvmap = server.kvmap.get_or_insert_with(KvMap::new);
        let published = clone::publish_update(
            kvmap,
            &mut server.sequence,
            &server.publisher,
            kvmsg,
            &mut server.warnings,
        )?;
        if let Some(sequence) = published {
            clock_log(&format!("I: publishing update={sequence}"));
        }
    } else if !server.was_pending(&kvmsg) {
        // If we already got message from active, drop it, else hold on
        // pending list
        server.hold(kvmsg);
    }
    Ok(())
}

impl CloneServer {
    /// If an update with this UUID is on the pending list, removes it and
    /// returns true.
    fn was_pending(&mut self, kvmsg: &KvMsg) -> bool {
        let Some(uuid) = kvmsg.uuid() else {
            return false;
        };
        match self
            .pending
            .iter()
            .position(|held| held.uuid() == Some(uuid))
        {
            Some(index) => {
                if let Some(held) = self.pending.remove(index) {
                    self.pending_bytes -= held.cost();
                }
                true
            }
            None => false,
        }
    }

    /// Puts an update on the pending list, dropping the oldest past the bounds.
    fn hold(&mut self, kvmsg: KvMsg) {
        self.pending_bytes += kvmsg.cost();
        self.pending.push_back(kvmsg);
        while self.pending.len() > MAX_PENDING || self.pending_bytes > MAX_PENDING_BYTES {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= oldest.cost();
            self.warnings.warn(format_args!(
                "pending list full: oldest update ({}) dropped",
                zguide::message::show(oldest.key())
            ));
        }
    }
}

// We purge ephemeral values using exactly the same code as in the clonesrv5
// example. Fix: only the active server expires keys; the passive one follows
// the active's deletes (in C both delete, each with its own sequence).
fn flush_ttl(_: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    let server = &mut bstar.app;
    if let (true, Some(kvmap)) = (server.active, server.kvmap.as_mut()) {
        for sequence in clone::flush_expired(kvmap, &mut server.sequence, &server.publisher)? {
            clock_log(&format!("I: publishing delete={sequence}"));
        }
    }
    Ok(())
}

// We send a HUGZ message once a second to all subscribers so that they can
// detect if our server dies. They'll then switch over to the backup server,
// which will become active:
fn send_hugz(_: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    let server = &bstar.app;
    let hugz = KvMsg::with(HUGZ, server.sequence, "");
    hugz.to_message().send_or_drop(&server.publisher)?;
    Ok(())
}

// When we switch from passive to active, we apply our pending list so that
// our kvmap is up-to-date. When we switch to passive, we wipe our kvmap and
// grab a new snapshot from the active server:
fn new_active(reactor: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    let server = &mut bstar.app;
    server.active = true;

    // Stop subscribing to updates
    reactor.reader_end("subscriber");

    // Apply pending list to own hash table. Fix: through the collector's
    // rule, so a pending update's ttl (seconds) becomes an expiry.
    let kvmap = server.kvmap.get_or_insert_with(KvMap::new);
    while let Some(kvmsg) = server.pending.pop_front() {
        server.pending_bytes -= kvmsg.cost();
        let published = clone::publish_update(
            kvmap,
            &mut server.sequence,
            &server.publisher,
            kvmsg,
            &mut server.warnings,
        )?;
        if let Some(sequence) = published {
            clock_log(&format!("I: publishing pending={sequence}"));
        }
    }
    Ok(())
}

fn new_passive(reactor: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    let server = &mut bstar.app;
    server.kvmap = None;
    server.active = false;

    // Start subscribing to updates
    reactor.reader("subscriber", |b: &Bstar| &b.app.subscriber, subscriber);
    Ok(())
}

// When we get an update, we create a new kvmap if necessary, and then add
// our update to our kvmap. We're always passive in this case:
fn subscriber(_: &mut Reactor<Bstar>, bstar: &mut Bstar) -> Result<(), Error> {
    let server = &mut bstar.app;
    // Get state snapshot if necessary
    if server.kvmap.is_none() {
        server.kvmap = server.snapshot_from_peer()?;
    }
    let Some(kvmsg) = clone::try_recv::<KvMsg>(&server.subscriber, &mut server.warnings)? else {
        return Ok(());
    };
    if server.kvmap.is_none() || kvmsg.key() == HUGZ.as_bytes() {
        return Ok(()); // No snapshot yet: the next one holds this update
    }
    // Find and remove update off pending list. If active update came before
    // client update, flip it around: store active update on pending list and
    // use it to clear client update when it comes later. (Fix: only updates
    // that carry a client's UUID; the active's expiry deletes carry none.)
    if kvmsg.uuid().is_some() && !server.was_pending(&kvmsg) {
        server.hold(kvmsg.clone());
    }
    server.apply(kvmsg);
    Ok(())
}

impl CloneServer {
    /// The passive server's rule for an update from the active one: apply
    /// it if it is more recent than our map. Fix: with its `ttl` turned into
    /// an expiry, as the active stored it, so that after a failover the keys
    /// expire when they would have on the active.
    fn apply(&mut self, mut kvmsg: KvMsg) {
        let Some(kvmap) = self.kvmap.as_mut() else {
            return;
        };
        if kvmsg.sequence() > self.sequence {
            self.sequence = kvmsg.sequence();
            kvmsg.stamp_expiry(zguide::helpers::clock_ms());
            if !kvmap.store(kvmsg) {
                self.warnings.warn(format_args!(
                    "map full: an update of the active server not stored"
                ));
            }
            clock_log(&format!("I: received update={}", self.sequence));
        }
    }
}

impl CloneServer {
    /// Asks the peer (the active server) for all its state: `[ICANHAZ?][""]`
    /// on a DEALER to its snapshot port, then entries until `KTHXBAI`.
    /// `None` if the whole snapshot did not come within [`PEER_SNAPSHOT_MS`]
    /// (we ask again on the next update; the C waits for ever, which would
    /// also stop its Binary Star heartbeats).
    fn snapshot_from_peer(&mut self) -> Result<Option<KvMap<KvMsg>>, Error> {
        let endpoint = format!("tcp://localhost:{}", self.peer);
        let snapshot = zguide::socket::new(&self.context, zmq::DEALER)
            .linger(0)
            .max_message_size(clone::MAX_FRAME)
            .connect(&endpoint)?;
        clock_log(&format!("I: asking for snapshot from: {endpoint}"));
        Message::from_frames([ICANHAZ, ""]).send_or_drop(&snapshot)?;
        let deadline = Instant::now() + Duration::from_millis(PEER_SNAPSHOT_MS);
        let mut kvmap = KvMap::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = Message::recv_timeout(&snapshot, interrupt::millis(left))? else {
                self.warnings.warn(format_args!(
                    "no snapshot from {endpoint} in time; will ask again"
                ));
                return Ok(None);
            };
            let Some(kvmsg) = clone::decode::<KvMsg>(msg, &mut self.warnings)? else {
                continue;
            };
            if kvmsg.key() == KTHXBAI.as_bytes() {
                self.sequence = kvmsg.sequence();
                break;
            }
            kvmap.store(kvmsg);
        }
        clock_log(&format!("I: received snapshot={}", self.sequence));
        Ok(Some(kvmap))
    }
}
