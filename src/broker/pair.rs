//! A failover pair (study part 3): two brokers as a Binary Star
//! ([`crate::bstar`]), the active one serving, the passive one keeping a
//! replica of the active's accepted requests so that it can take over with
//! nothing accepted lost.
//!
//! ```text
//!        clients, workers (know both brokers)
//!          │                          ┆ (after 6 s of silence)
//!          ▼                          ▼
//!   broker (primary) ◄─── STATE ───► broker (backup)
//!     active         ───► ACCEPT/DONE, snapshot ───► passive: replica
//! ```
//!
//! * **Who serves.** The Binary Star rules, unchanged (the pure
//!   [`Fsm`]): each broker sends its state every [`bstar::HEARTBEAT`]; a
//!   client's message is the vote, and a passive broker becomes active only
//!   when a client asks *and* the peer has been silent for
//!   [`bstar::PEER_TIMEOUT`]. A broker that does not serve drops every
//!   client message unanswered (PINGs too, so the client's 6 s TTL runs out
//!   and it fails over) and answers a worker's READY with DISCONNECT, so
//!   workers move on to the other broker with their back-off.
//! * **Replication, the Clone way.** The active broker keeps a log of the
//!   SBP/1 requests it accepted and has not answered, in arrival order,
//!   numbered. Each change goes to the passive one as it happens: `ACCEPT`
//!   (sequence number, client token, the request) and `DONE` (sequence
//!   number, client token, correlation id). A passive broker that is not in
//!   step (it just started, or it saw a gap in the numbers because an update
//!   was dropped) asks for a snapshot, gets every entry of the log and the
//!   number it stands at, and applies the updates that follow it. Updates
//!   and snapshots travel on one connection (the active's ROUTER to the
//!   passive's DEALER), so they arrive in the order they were sent.
//! * **Takeover.** A passive broker that becomes active serves its replica
//!   in arrival order before anything else. Replies to clients that are not
//!   connected to it yet are kept for them (the broker's parked replies) and
//!   sent when they arrive. A request the old active took but did not
//!   replicate before it died is still pending at its client, which sends it
//!   again, with the same correlation id, after it fails over: every request
//!   is answered. A request that was replicated and answered just before the
//!   crash, whose `DONE` was lost, is served again; the client drops the
//!   second reply by its correlation id. So *exactly once at the client,
//!   at least once at the workers*: mark requests `idempotent` where that
//!   matters, as for any retry.
//! * MDP requests are not replicated: an MDP client's routing id is made up
//!   by the broker's socket and means nothing to the other broker; MDP
//!   clients retry by themselves.
//!
//! The pair's own protocol (signature `SBPP01`, then a command byte):
//!
//! | command | frames after it | direction |
//! |---|---|---|
//! | STATE `0x01` | one ASCII digit, as Binary Star's | both, every second, DEALER → peer's ROUTER |
//! | ACCEPT `0x02` | sequence (8 bytes, big-endian), client token, the SBP/1 REQUEST frames | active → passive |
//! | DONE `0x03` | sequence, client token, correlation | active → passive |
//! | SNAPSHOT `0x04` | (none) | passive → active |
//! | ENTRY `0x05` | sequence, client token, REQUEST frames | active → passive, one per log entry |
//! | END `0x06` | sequence the snapshot stands at | active → passive |
//!
//! Bounds: [`MAX_LOG`] entries in the log and the replica (past it the
//! active stops replicating new requests until the log shrinks, and says
//! so; the passive drops out of step and asks again), [`PAIR_HWM`] messages
//! queued to the peer (a dropped update shows as a gap: a new snapshot).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::broker::protocol::{self, ClientCommand, Request};
use crate::bstar::{self, Change, Event, Fatal, Fsm, Role, State};
use crate::message::show;
use crate::{Error, Message};

/// Entries kept in the log (active) or the replica (passive).
pub const MAX_LOG: usize = 200_000;
/// Messages queued to the peer broker.
pub const PAIR_HWM: i32 = 250_000;
/// How often a passive broker out of step asks for a snapshot.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(1000);

const SIGNATURE: &[u8] = b"SBPP01";
const STATE: u8 = 0x01;
const ACCEPT: u8 = 0x02;
const DONE: u8 = 0x03;
const SNAPSHOT: u8 = 0x04;
const ENTRY: u8 = 0x05;
const END: u8 = 0x06;

/// How a broker is one of a pair.
#[derive(Debug, Clone)]
pub struct PairOptions {
    pub role: Role,
    /// Where this broker listens to its peer (`tcp://*:5556`).
    pub bind: String,
    /// The peer's pair endpoint (`tcp://10.0.0.2:5556`).
    pub connect: String,
}

/// The requests accepted and not answered, numbered in arrival order.
#[derive(Default)]
struct Log {
    entries: BTreeMap<u64, (Vec<u8>, Request)>,
    index: HashMap<(Vec<u8>, Vec<u8>), u64>,
}

impl Log {
    fn insert(&mut self, seq: u64, token: Vec<u8>, request: Request) {
        let key = (token.clone(), request.correlation.clone());
        if self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key, seq);
        self.entries.insert(seq, (token, request));
    }

    fn remove(&mut self, token: &[u8], correlation: &[u8]) -> bool {
        match self.index.remove(&(token.to_vec(), correlation.to_vec())) {
            Some(seq) => self.entries.remove(&seq).is_some(),
            None => false,
        }
    }

    fn contains(&self, token: &[u8], correlation: &[u8]) -> bool {
        self.index
            .contains_key(&(token.to_vec(), correlation.to_vec()))
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }
}

/// What happened on the pair's sockets, for the broker to act on.
#[derive(Debug, Default)]
pub struct PairEvents {
    /// The state changes (log lines are printed here already).
    pub changes: Vec<Change>,
    /// The pair cannot go on (both active, both passive).
    pub fatal: Option<Fatal>,
}

/// One broker's half of a pair. See the module docs.
pub struct Pair {
    fsm: Fsm,
    router: zmq::Socket,
    dealer: zmq::Socket,
    /// The routing id of the peer's DEALER (fixed by role).
    peer_id: Vec<u8>,
    state_at: Instant,
    /// The peer's last stated state.
    peer_state: Option<State>,
    log: Log,
    /// Active: the last sequence number given out. Passive: the last
    /// applied, when in step.
    seq: u64,
    in_step: bool,
    /// A snapshot being received: its entries so far.
    incoming: Option<Vec<(u64, Vec<u8>, Request)>>,
    snapshot_asked: Option<Instant>,
    /// Updates not sent because the log was full or the peer's queue was.
    pub dropped: u64,
    log_full_warned: bool,
}

fn role_id(role: Role) -> Vec<u8> {
    match role {
        Role::Primary => b"pair-primary".to_vec(),
        Role::Backup => b"pair-backup".to_vec(),
    }
}

impl Pair {
    pub fn new(
        context: &zmq::Context,
        options: &PairOptions,
        max_frame: i64,
    ) -> Result<Pair, Error> {
        let router = crate::socket::new(context, zmq::ROUTER)
            .max_message_size(max_frame)
            .send_hwm(PAIR_HWM)
            .receive_hwm(PAIR_HWM)
            .router_mandatory()
            .linger(0)
            .build()?;
        router
            .bind(&options.bind)
            .map_err(|source| Error::Endpoint {
                action: "bind",
                endpoint: options.bind.clone(),
                source,
            })?;
        let dealer = crate::socket::new(context, zmq::DEALER)
            .identity(role_id(options.role))
            .max_message_size(max_frame)
            .send_hwm(PAIR_HWM)
            .receive_hwm(PAIR_HWM)
            .linger(0)
            .build()?;
        // No `ZMQ_IMMEDIATE` (see `crate::socket`: on a socket that reads, as
        // this one reads the active's updates, it can abort libzmq when the
        // peer goes). So states sent while the peer is down wait and arrive
        // together when it comes back, in order, each what this broker was
        // at the time: the peer's table walks through them as it would have
        // live, and the last one is the present.
        dealer.set_heartbeat_ivl(1000)?;
        dealer.set_heartbeat_timeout(3000)?;
        dealer
            .connect(&options.connect)
            .map_err(|source| Error::Endpoint {
                action: "connect",
                endpoint: options.connect.clone(),
                source,
            })?;
        let peer_role = match options.role {
            Role::Primary => Role::Backup,
            Role::Backup => Role::Primary,
        };
        let now = Instant::now();
        log::info!(
            "broker: {} of a pair, listening to its peer at {}, peer at {}",
            match options.role {
                Role::Primary => "primary",
                Role::Backup => "backup",
            },
            options.bind,
            options.connect
        );
        Ok(Pair {
            fsm: Fsm::new(options.role, now),
            router,
            dealer,
            peer_id: role_id(peer_role),
            state_at: now,
            peer_state: None,
            log: Log::default(),
            seq: 0,
            in_step: false,
            incoming: None,
            snapshot_asked: None,
            dropped: 0,
            log_full_warned: false,
        })
    }

    /// The sockets to poll: the ROUTER (the peer's state, its snapshot
    /// requests), then the DEALER (updates and snapshots from the active).
    pub fn sockets(&self) -> [&zmq::Socket; 2] {
        [&self.router, &self.dealer]
    }

    pub fn state(&self) -> State {
        self.fsm.state()
    }

    /// Does this broker serve clients now?
    pub fn serving(&self) -> bool {
        self.fsm.state() == State::Active
    }

    /// Does it take workers? Yes unless it is, or waits to be, passive.
    pub fn takes_workers(&self) -> bool {
        matches!(self.fsm.state(), State::Active | State::Primary)
    }

    /// A client's message: the vote. `Ok(accept)`; a state change is
    /// logged and returned.
    pub fn vote(&mut self, now: Instant) -> (bool, Option<Change>) {
        match self.fsm.handle(Event::ClientRequest, now) {
            Ok(outcome) => {
                if let Some(change) = outcome.change {
                    log::info!("{}", change.log_line(true));
                }
                (outcome.accept, outcome.change)
            }
            // A client request never causes a fatal cell.
            Err(_) => (false, None),
        }
    }

    /// The active broker accepted an SBP/1 request: logged and replicated.
    pub fn accepted(&mut self, token: &[u8], request: &Request) {
        if self.log.contains(token, &request.correlation) {
            return;
        }
        if self.log.entries.len() >= MAX_LOG {
            self.dropped += 1;
            if !self.log_full_warned {
                self.log_full_warned = true;
                log::warn!("broker: the pair's log holds {MAX_LOG} requests: new ones are not replicated until it shrinks");
            }
            return;
        }
        self.log_full_warned = false;
        self.seq += 1;
        self.log.insert(self.seq, token.to_vec(), request.clone());
        let mut frames = vec![
            SIGNATURE.to_vec(),
            vec![ACCEPT],
            self.seq.to_be_bytes().to_vec(),
            token.to_vec(),
        ];
        frames.extend(ClientCommand::Request(request.clone()).to_frames(false));
        self.send_to_passive(&frames);
    }

    /// The active broker answered a request: out of the log, replicated.
    pub fn answered(&mut self, token: &[u8], correlation: &[u8]) {
        if !self.log.remove(token, correlation) {
            return;
        }
        self.seq += 1;
        let frames = vec![
            SIGNATURE.to_vec(),
            vec![DONE],
            self.seq.to_be_bytes().to_vec(),
            token.to_vec(),
            correlation.to_vec(),
        ];
        self.send_to_passive(&frames);
    }

    /// Sends to the passive peer's DEALER through our ROUTER; a drop is
    /// counted (the passive sees the gap and asks for a snapshot).
    fn send_to_passive(&mut self, frames: &[Vec<u8>]) {
        if self.peer_state != Some(State::Passive) && self.peer_state != Some(State::Backup) {
            return; // nobody in step to tell (a snapshot brings it later)
        }
        if !send_all(&self.router, Some(&self.peer_id), frames) {
            self.dropped += 1;
        }
    }

    /// The replica, in arrival order, for a broker that just became active;
    /// it becomes the active's log (the requests are still pending).
    pub fn take_over(&mut self) -> Vec<(Vec<u8>, Request)> {
        self.in_step = false;
        self.incoming = None;
        self.log
            .entries
            .values()
            .map(|(token, request)| (token.clone(), request.clone()))
            .collect()
    }

    /// Requests in the log or replica.
    pub fn logged(&self) -> usize {
        self.log.entries.len()
    }

    /// Time passes: our state goes to the peer every heartbeat; a passive
    /// broker out of step asks for a snapshot.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.state_at {
            self.state_at = now + bstar::HEARTBEAT;
            let frames = [
                SIGNATURE.to_vec(),
                vec![STATE],
                self.fsm.state().message().into_bytes(),
            ];
            send_all(&self.dealer, None, &frames);
        }
        let wants_snapshot = self.fsm.state() == State::Passive
            && self.peer_state == Some(State::Active)
            && !self.in_step
            && self
                .snapshot_asked
                .is_none_or(|asked| now.duration_since(asked) >= SNAPSHOT_RETRY);
        if wants_snapshot {
            self.snapshot_asked = Some(now);
            self.incoming = Some(Vec::new());
            send_all(&self.dealer, None, &[SIGNATURE.to_vec(), vec![SNAPSHOT]]);
        }
    }

    /// When [`Pair::tick`] should run next.
    pub fn next_tick(&self) -> Instant {
        self.state_at
    }

    /// Reads the ROUTER: the peer's state, its snapshot requests.
    pub fn read_router(&mut self, now: Instant) -> PairEvents {
        let mut events = PairEvents::default();
        for _ in 0..crate::broker::server::BATCH {
            let Ok(mut frames) = self.router.recv_multipart(zmq::DONTWAIT) else {
                break;
            };
            if frames.len() < 3 || frames[1] != SIGNATURE {
                log::warn!("broker: a message on the pair socket that is not the pair's");
                continue;
            }
            let routing_id = frames.remove(0);
            match frames[1].as_slice() {
                [STATE] => {
                    let Some(state) = frames.get(2).and_then(|f| State::parse(f)) else {
                        log::warn!("broker: a bad state from the peer: {}", show(&frames[2]));
                        continue;
                    };
                    self.peer_state = Some(state);
                    match self.fsm.handle(Event::Peer(state), now) {
                        Ok(outcome) => {
                            if let Some(change) = outcome.change {
                                log::info!("{}", change.log_line(true));
                                events.changes.push(change);
                            }
                        }
                        Err(fatal) => {
                            log::error!("{}", fatal.log_line());
                            events.fatal = Some(fatal);
                            return events;
                        }
                    }
                }
                [SNAPSHOT] if self.fsm.state() == State::Active => {
                    self.send_snapshot(&routing_id);
                }
                _ => log::warn!("broker: an unexpected pair command from the peer"),
            }
        }
        events
    }

    fn send_snapshot(&mut self, routing_id: &[u8]) {
        let count = self.log.entries.len();
        for (seq, (token, request)) in &self.log.entries {
            let mut frames = vec![
                SIGNATURE.to_vec(),
                vec![ENTRY],
                seq.to_be_bytes().to_vec(),
                token.clone(),
            ];
            frames.extend(ClientCommand::Request(request.clone()).to_frames(false));
            if !send_all(&self.router, Some(routing_id), &frames) {
                self.dropped += 1;
                return; // the passive times out and asks again
            }
        }
        let end = [
            SIGNATURE.to_vec(),
            vec![END],
            self.seq.to_be_bytes().to_vec(),
        ];
        if send_all(&self.router, Some(routing_id), &end) {
            log::info!("broker: snapshot of {count} requests sent to the passive peer");
        }
    }

    /// Reads the DEALER: updates and snapshots from the active peer.
    pub fn read_dealer(&mut self) {
        for _ in 0..crate::broker::server::BATCH {
            let Ok(frames) = self.dealer.recv_multipart(zmq::DONTWAIT) else {
                break;
            };
            if self.fsm.state() == State::Active {
                continue; // we are the active one: nothing to mirror
            }
            if let Err(what) = self.apply(&frames) {
                log::warn!("broker: pair update refused ({what}); asking for a snapshot");
                self.in_step = false;
                self.incoming = None;
                self.snapshot_asked = None;
            }
        }
    }

    fn apply(&mut self, frames: &[Vec<u8>]) -> Result<(), String> {
        if frames.len() < 2 || frames[0] != SIGNATURE {
            return Err("not a pair message".into());
        }
        let seq = |frame: Option<&Vec<u8>>| -> Result<u64, String> {
            let bytes: [u8; 8] = frame
                .and_then(|f| f.as_slice().try_into().ok())
                .ok_or("a sequence number is 8 bytes")?;
            Ok(u64::from_be_bytes(bytes))
        };
        match frames[1].as_slice() {
            [ACCEPT] | [DONE] if !self.in_step => Ok(()), // a snapshot is coming
            [ACCEPT] => {
                let number = seq(frames.get(2))?;
                self.in_order(number)?;
                let (token, request) = entry(&frames[3..])?;
                self.insert(number, token, request)
            }
            [DONE] => {
                let number = seq(frames.get(2))?;
                self.in_order(number)?;
                match frames.get(3..5) {
                    Some([token, correlation]) => {
                        self.log.remove(token, correlation);
                        Ok(())
                    }
                    _ => Err("DONE is token and correlation".into()),
                }
            }
            [ENTRY] => {
                let number = seq(frames.get(2))?;
                let (token, request) = entry(&frames[3..])?;
                let Some(incoming) = self.incoming.as_mut() else {
                    return Ok(()); // an old snapshot's rest
                };
                if incoming.len() >= MAX_LOG {
                    return Err(format!("a snapshot over {MAX_LOG} requests"));
                }
                incoming.push((number, token, request));
                Ok(())
            }
            [END] => {
                let number = seq(frames.get(2))?;
                let Some(incoming) = self.incoming.take() else {
                    return Ok(());
                };
                self.log.clear();
                let count = incoming.len();
                for (seq, token, request) in incoming {
                    self.log.insert(seq, token, request);
                }
                self.seq = number;
                self.in_step = true;
                log::info!("broker: in step with the active peer: {count} requests replicated");
                Ok(())
            }
            _ => Err("an unknown pair command".into()),
        }
    }

    fn in_order(&mut self, number: u64) -> Result<(), String> {
        if number != self.seq + 1 {
            return Err(format!("update {number} after {}", self.seq));
        }
        self.seq = number;
        Ok(())
    }

    fn insert(&mut self, seq: u64, token: Vec<u8>, request: Request) -> Result<(), String> {
        if self.log.entries.len() >= MAX_LOG {
            return Err(format!("the replica holds {MAX_LOG} requests"));
        }
        self.log.insert(seq, token, request);
        Ok(())
    }
}

/// A token and the REQUEST frames of an ACCEPT or ENTRY.
fn entry(frames: &[Vec<u8>]) -> Result<(Vec<u8>, Request), String> {
    let (token, rest) = frames.split_first().ok_or("no client token")?;
    if token.is_empty() || token.len() > protocol::MAX_NAME {
        return Err("a client token is 1-255 bytes".into());
    }
    match protocol::parse_client(rest) {
        Ok(parsed) => match parsed.command {
            ClientCommand::Request(request) => Ok((token.clone(), request)),
            _ => Err("not a REQUEST".into()),
        },
        Err(malformed) => Err(malformed.what),
    }
}

/// Sends a message (with a routing id first on a ROUTER) without waiting;
/// `false` if it was dropped (the peer gone or not reading).
fn send_all(socket: &zmq::Socket, routing_id: Option<&[u8]>, frames: &[Vec<u8>]) -> bool {
    let mut message = Message::from_frames(frames.iter().cloned());
    if let Some(id) = routing_id {
        message.push(id.to_vec());
    }
    message.send_or_drop(socket).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::protocol::Properties;

    fn request(correlation: &str) -> Request {
        Request {
            service: b"echo".to_vec(),
            address: Vec::new(),
            properties: Properties::default(),
            correlation: correlation.as_bytes().to_vec(),
            body: vec![correlation.as_bytes().to_vec()],
        }
    }

    fn pair(context: &zmq::Context, role: Role, name: &str) -> Pair {
        let (me, peer) = match role {
            Role::Primary => ("primary", "backup"),
            Role::Backup => ("backup", "primary"),
        };
        let options = PairOptions {
            role,
            bind: format!("inproc://{name}-{me}"),
            connect: format!("inproc://{name}-{peer}"),
        };
        Pair::new(context, &options, 1 << 20).unwrap()
    }

    /// Runs both halves (ticks, reads) until `done` holds; 5 s at most.
    fn run(active: &mut Pair, passive: &mut Pair, done: impl Fn(&Pair, &Pair) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(active, passive) {
            assert!(Instant::now() < deadline, "the pair did not settle");
            let now = Instant::now();
            for half in [&mut *active, &mut *passive] {
                half.tick(now);
                half.read_router(now);
                half.read_dealer();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn replica(pair: &mut Pair) -> Vec<Vec<u8>> {
        pair.take_over()
            .into_iter()
            .map(|(_, request)| request.correlation)
            .collect()
    }

    /// The pair settles (primary active, backup passive and in step by
    /// snapshot), updates keep the replica equal to the log, a lost update
    /// is noticed by its sequence number and mended by a new snapshot, and
    /// the replica comes out in arrival order.
    #[test]
    fn the_passive_half_mirrors_the_active_log_and_mends_gaps() {
        let context = zmq::Context::new();
        let mut primary = pair(&context, Role::Primary, "mirror");
        let mut backup = pair(&context, Role::Backup, "mirror");
        primary.accepted(b"C", &request("before"));
        run(&mut primary, &mut backup, |p, b| {
            p.state() == State::Active && b.state() == State::Passive && b.in_step
        });
        assert_eq!(backup.logged(), 1, "the snapshot brought the request");
        for n in 1..=3 {
            primary.accepted(b"C", &request(&n.to_string()));
        }
        primary.accepted(b"C", &request("2")); // a retry: not logged twice
        primary.answered(b"C", b"before");
        primary.answered(b"C", b"nobody"); // not in the log: nothing sent
        run(&mut primary, &mut backup, |p, b| {
            b.logged() == 3 && b.seq == p.seq
        });
        assert_eq!(primary.seq, 5, "four updates and the first ACCEPT");
        // An update lost on the way (as if the queue had been full).
        primary.seq += 1;
        primary.accepted(b"C", &request("4"));
        run(&mut primary, &mut backup, |_, b| !b.in_step);
        run(&mut primary, &mut backup, |p, b| {
            b.in_step && b.seq == p.seq
        });
        assert_eq!(backup.logged(), 4);
        // A malformed or out-of-order update is refused (the caller then
        // asks for a snapshot) rather than guessed at.
        let next = (backup.seq + 1).to_be_bytes().to_vec();
        assert!(backup
            .apply(&[SIGNATURE.to_vec(), vec![ACCEPT], vec![1]])
            .is_err());
        assert!(backup.apply(&[b"other".to_vec()]).is_err());
        let skipped = (backup.seq + 2).to_be_bytes().to_vec();
        let done = |seq: Vec<u8>| {
            vec![
                SIGNATURE.to_vec(),
                vec![DONE],
                seq,
                b"C".to_vec(),
                b"1".to_vec(),
            ]
        };
        assert!(backup.apply(&done(skipped)).is_err());
        assert_eq!(backup.logged(), 4);
        assert!(backup.apply(&done(next)).is_ok());
        assert_eq!(backup.logged(), 3);
        assert_eq!(
            replica(&mut backup),
            [b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]
        );
    }

    /// A passive broker does not take workers; a primary waiting for its
    /// peer does; a client's vote is refused while the peer may be active.
    #[test]
    fn who_serves_and_who_takes_workers() {
        let context = zmq::Context::new();
        let mut primary = pair(&context, Role::Primary, "roles");
        let mut backup = pair(&context, Role::Backup, "roles");
        assert!(primary.takes_workers() && !primary.serving());
        assert!(!backup.takes_workers());
        assert_eq!(
            primary.vote(Instant::now()),
            (false, None),
            "the peer may be active"
        );
        run(&mut primary, &mut backup, |p, b| {
            p.state() == State::Active && b.state() == State::Passive
        });
        assert!(primary.serving() && primary.takes_workers());
        assert!(!backup.serving() && !backup.takes_workers());
        assert_eq!(
            backup.vote(Instant::now()),
            (false, None),
            "the primary is alive"
        );
        // The primary falls silent: the next vote makes the backup active.
        let later = Instant::now() + bstar::PEER_TIMEOUT;
        assert_eq!(backup.vote(later), (true, Some(Change::Failover)));
        assert!(backup.serving());
    }

    fn accept(seq: u64, token: &[u8], request: &Request) -> Vec<Vec<u8>> {
        let mut frames = vec![
            SIGNATURE.to_vec(),
            vec![ACCEPT],
            seq.to_be_bytes().to_vec(),
            token.to_vec(),
        ];
        frames.extend(ClientCommand::Request(request.clone()).to_frames(false));
        frames
    }

    /// Updates are applied in step only; a snapshot replaces the replica
    /// whole; broken messages and tokens are refused, never a panic.
    #[test]
    fn the_replica_takes_updates_in_step_only_and_snapshots_whole() {
        let context = zmq::Context::new();
        let mut backup = pair(&context, Role::Backup, "apply");
        // Not in step: updates wait for the snapshot.
        assert!(backup.apply(&accept(1, b"C", &request("early"))).is_ok());
        assert_eq!(backup.logged(), 0, "applied out of step");
        // A snapshot (ENTRY…, END) replaces whatever was there.
        backup.log.insert(40, b"C".to_vec(), request("stale"));
        backup.incoming = Some(Vec::new());
        let mut entry_frames = accept(7, b"C", &request("kept"));
        entry_frames[1] = vec![ENTRY];
        assert!(backup.apply(&entry_frames).is_ok());
        let end = vec![SIGNATURE.to_vec(), vec![END], 9u64.to_be_bytes().to_vec()];
        assert!(backup.apply(&end).is_ok());
        assert!(backup.in_step);
        assert_eq!((backup.seq, backup.logged()), (9, 1));
        // In step: the next ACCEPT is applied.
        assert!(backup.apply(&accept(10, b"D", &request("next"))).is_ok());
        assert_eq!(replica(&mut backup), [b"kept".to_vec(), b"next".to_vec()]);
        // Broken messages.
        assert!(backup.apply(&[SIGNATURE.to_vec()]).is_err());
        assert!(backup.apply(&[]).is_err());
        assert!(backup.apply(&[b"SBPP02".to_vec(), vec![STATE]]).is_err());
        // A client token is 1-255 bytes.
        let longest = vec![b't'; protocol::MAX_NAME];
        assert!(entry(&accept(1, &longest, &request("x"))[3..]).is_ok());
        let too_long = vec![b't'; protocol::MAX_NAME + 1];
        assert!(entry(&accept(1, &too_long, &request("x"))[3..]).is_err());
        assert!(entry(&accept(1, b"", &request("x"))[3..]).is_err());
    }

    /// The ROUTER drops what is not the pair's, and a broker that is not
    /// active sends no snapshot; STATE goes out once per heartbeat.
    #[test]
    fn strangers_and_early_snapshot_requests_get_nothing_and_state_goes_once_a_heartbeat() {
        let context = zmq::Context::new();
        let mut primary = pair(&context, Role::Primary, "router");
        let stranger = context.socket(zmq::DEALER).unwrap();
        stranger.set_linger(0).unwrap();
        stranger.connect("inproc://router-primary").unwrap();
        stranger.send(SIGNATURE, 0).unwrap();
        stranger
            .send_multipart([SIGNATURE, &[SNAPSHOT][..]], 0)
            .unwrap();
        stranger
            .send_multipart([SIGNATURE, &[STATE][..], b"9"], 0)
            .unwrap();
        let now = Instant::now();
        // Read all three (inproc: they are there).
        let events = primary.read_router(now);
        assert!(events.fatal.is_none() && events.changes.is_empty());
        let mut items = [stranger.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, 200).unwrap();
        assert!(
            !items[0].is_readable(),
            "a snapshot from a broker not active"
        );

        // STATE: at the first tick, then not again before a heartbeat.
        let backup = pair(&context, Role::Backup, "router");
        primary.tick(now);
        primary.tick(now);
        assert!(primary.next_tick() >= now + bstar::HEARTBEAT);
        let mut states = 0;
        let mut items = [backup.router.as_poll_item(zmq::POLLIN)];
        while zmq::poll(&mut items, 200).unwrap() > 0 {
            backup.router.recv_multipart(0).unwrap();
            states += 1;
        }
        assert_eq!(states, 1);
    }

    /// Past MAX_LOG requests the active stops replicating new ones, counts
    /// them, and says so once.
    #[test]
    fn a_full_log_drops_new_requests_counts_them_and_says_so_once() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let mut primary = pair(&context, Role::Primary, "full");
        let one = request("x");
        for n in 0..MAX_LOG {
            let token = n.to_be_bytes();
            primary.accepted(&token, &one);
        }
        assert_eq!((primary.logged(), primary.dropped), (MAX_LOG, 0));
        primary.accepted(b"late", &one);
        primary.accepted(b"later", &one);
        assert_eq!((primary.logged(), primary.dropped), (MAX_LOG, 2));
        let said = crate::log_limit::captured::lines_with("the pair's log holds");
        assert_eq!(said.len(), 1, "{said:?}");
    }
}
