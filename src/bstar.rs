//! Binary Star: a primary/backup pair where one server is active at a time
//! (§31–§32, the `bstar` class; `clonesrv6` in chapter 5 reuses it).
//!
//! Two pieces, one file:
//!
//! * [`Fsm`], the finite-state machine, **pure**: it owns no socket and reads
//!   no clock. Every call gets the time from the caller, so the unit tests walk
//!   every cell of the transition table on a made-up clock, and a program can
//!   run it from any loop (`bstarsrv` runs it from a hand-written poll loop,
//!   as the §31 proof of concept does).
//! * [`BinaryStar`], the reactor glue of §32 (`bstar.c`): a state publisher
//!   and subscriber, one *voter* socket whose messages are the clients'
//!   votes, a timer that publishes our state every [`HEARTBEAT`], and the
//!   application's handlers for accepted requests and for becoming active or
//!   passive. It runs on [`Reactor`], to which the application may add its
//!   own readers and timers, as `bstar_zloop` allows in C.
//!
//! ## The rules (protocols.md §6)
//!
//! Each server publishes its state as one ASCII digit (`"1"` primary, `"2"`
//! backup, `"3"` active, `"4"` passive) every second. A state message from the
//! peer is an event (`PEER_*`) and proves the peer alive for two heartbeats.
//! A client request is the fifth event, and the *vote*: a passive server (or a
//! primary waiting for its peer) becomes active only when a client asks **and**
//! the peer has been silent for two heartbeats. Neither alone is enough; that
//! is the split-brain guard.
//!
//! ## Where this differs from the C, on purpose
//!
//! * The failback fix of `bstar.c` (zguide PR #172) applies everywhere,
//!   including `bstarsrv`: a primary that (re)starts treats the peer as alive
//!   for one failover window, so it first hears an active backup and goes
//!   passive instead of becoming a second active on the first client request.
//!   The §31 proof of concept served requests in the PRIMARY state at once,
//!   which is exactly the dual-active bug the fix removed.
//! * A state message that is not one of the four digits is logged (bounded)
//!   and ignored, and does **not** count as a sign of life: in C, `atoi` turns
//!   garbage into event 0, which changes nothing but still postpones the
//!   peer's expiry, so a noisy peer could block failover for ever.
//! * A fatal condition (dual actives, dual passives) ends the reactor with an
//!   error, so the program exits non-zero; `bstarsrv2.c` returns 0.

use std::time::{Duration, Instant};

use crate::reactor::Reactor;
use crate::{program, Error, Message};

/// How often each server publishes its state (`BSTAR_HEARTBEAT`).
pub const HEARTBEAT: Duration = Duration::from_millis(1000);

/// The peer counts as dead after two heartbeats of silence.
pub const PEER_TIMEOUT: Duration = Duration::from_millis(2 * 1000);

/// Where a server is in the protocol; also what it publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Primary, waiting for its peer.
    Primary = 1,
    /// Backup, waiting for its peer.
    Backup = 2,
    /// Accepting client requests.
    Active = 3,
    /// Not accepting client requests.
    Passive = 4,
}

impl State {
    /// The one-frame state message: an ASCII digit, no NUL.
    pub fn message(self) -> String {
        (self as u8).to_string()
    }

    /// Parses a peer's state message; `None` for anything but `"1"`–`"4"`.
    pub fn parse(frame: &[u8]) -> Option<State> {
        match frame {
            b"1" => Some(State::Primary),
            b"2" => Some(State::Backup),
            b"3" => Some(State::Active),
            b"4" => Some(State::Passive),
            _ => None,
        }
    }
}

/// Whether this server starts as the primary or the backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// What happened to the FSM: an input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer said it is in this state.
    Peer(State),
    /// A client sent a request (a vote).
    ClientRequest,
}

/// A state change, with the reason the C programs print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// PRIMARY heard a backup waiting: we are active.
    ConnectedToBackupPassive,
    /// PRIMARY heard an active backup (after a failover): we are passive.
    ConnectedToBackupActive,
    /// BACKUP heard an active primary: we are passive.
    ConnectedToPrimaryActive,
    /// PASSIVE heard the primary restarting: we take over.
    PrimaryRestarting,
    /// PASSIVE heard the backup restarting: we take over.
    BackupRestarting,
    /// PRIMARY got a vote after the peer's silence: we are active.
    RequestFromClient,
    /// PASSIVE got a vote after the peer's silence: failover.
    Failover,
}

impl Change {
    /// The state this change leads to.
    pub fn to(self) -> State {
        match self {
            Change::ConnectedToBackupActive | Change::ConnectedToPrimaryActive => State::Passive,
            _ => State::Active,
        }
    }

    /// The log line, in the wording of `bstar.c` (`ready as active`) or,
    /// with `as_word` false, of `bstarsrv.c` (`ready active`).
    pub fn log_line(self, as_word: bool) -> String {
        let reason = match self {
            Change::ConnectedToBackupPassive => "connected to backup (passive)",
            Change::ConnectedToBackupActive => "connected to backup (active)",
            Change::ConnectedToPrimaryActive => "connected to primary (active)",
            Change::PrimaryRestarting => "primary (passive) is restarting",
            Change::BackupRestarting => "backup (passive) is restarting",
            Change::RequestFromClient => "request from client",
            Change::Failover => "failover successful",
        };
        let state = if self.to() == State::Active {
            "active"
        } else {
            "passive"
        };
        let ready = if as_word { "ready as" } else { "ready" };
        format!("I: {reason}, {ready} {state}")
    }
}

/// A condition the pair cannot recover from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// Both servers active: split brain.
    DualActives,
    /// Both servers passive: nobody serves.
    DualPassives,
}

impl Fatal {
    /// The C's log line.
    pub fn log_line(self) -> &'static str {
        match self {
            Fatal::DualActives => "E: fatal error - dual actives, aborting",
            Fatal::DualPassives => "E: fatal error - dual passives, aborting",
        }
    }
}

/// The outcome of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// For a client request: serve it (`true`) or drop it unanswered.
    pub accept: bool,
    /// The state change the event caused, if any.
    pub change: Option<Change>,
}

/// The Binary Star state machine. See the module docs.
#[derive(Clone, Debug)]
pub struct Fsm {
    state: State,
    /// When the peer counts as dead, unless it speaks before.
    peer_expiry: Instant,
}

impl Fsm {
    /// A server that starts now in `role`. The peer counts as alive for one
    /// [`PEER_TIMEOUT`] from now (the failback fix: `bstar_start` sets the
    /// expiry, so a restarted primary first listens for an active backup).
    pub fn new(role: Role, now: Instant) -> Fsm {
        Fsm {
            state: match role {
                Role::Primary => State::Primary,
                Role::Backup => State::Backup,
            },
            peer_expiry: now + PEER_TIMEOUT,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once the peer has been silent for [`PEER_TIMEOUT`].
    pub fn peer_expired(&self, now: Instant) -> bool {
        now >= self.peer_expiry
    }

    /// Applies one event at time `now`. A peer state message first proves the
    /// peer alive (as `bstar.c` does, before running the FSM).
    pub fn handle(&mut self, event: Event, now: Instant) -> Result<Outcome, Fatal> {
        if let Event::Peer(_) = event {
            self.peer_expiry = now + PEER_TIMEOUT;
        }
        let change = match (self.state, event) {
            (State::Primary, Event::Peer(State::Backup)) => Some(Change::ConnectedToBackupPassive),
            (State::Primary, Event::Peer(State::Active)) => Some(Change::ConnectedToBackupActive),
            (State::Backup, Event::Peer(State::Active)) => Some(Change::ConnectedToPrimaryActive),
            (State::Active, Event::Peer(State::Active)) => return Err(Fatal::DualActives),
            (State::Passive, Event::Peer(State::Primary)) => Some(Change::PrimaryRestarting),
            (State::Passive, Event::Peer(State::Backup)) => Some(Change::BackupRestarting),
            (State::Passive, Event::Peer(State::Passive)) => return Err(Fatal::DualPassives),
            (State::Primary | State::Passive, Event::ClientRequest) => {
                if !self.peer_expired(now) {
                    // The peer may be active (we may be failing back): the
                    // vote does not count yet, and the request goes unanswered.
                    return Ok(Outcome {
                        accept: false,
                        change: None,
                    });
                }
                Some(if self.state == State::Primary {
                    Change::RequestFromClient
                } else {
                    Change::Failover
                })
            }
            (State::Backup, Event::ClientRequest) => {
                return Ok(Outcome {
                    accept: false,
                    change: None,
                })
            }
            _ => None,
        };
        if let Some(change) = change {
            self.state = change.to();
        }
        Ok(Outcome {
            accept: self.state == State::Active,
            change,
        })
    }
}

/// A handler of the glue: gets the reactor and the whole Binary Star (the
/// application's own state is its `app` field).
pub type Handler<T> = fn(&mut Reactor<BinaryStar<T>>, &mut BinaryStar<T>) -> Result<(), Error>;

/// The §32 reactor glue; the reactor's state. See the module docs.
pub struct BinaryStar<T> {
    /// The application's state, for its handlers.
    pub app: T,
    role: Role,
    fsm: Fsm,
    context: zmq::Context,
    statepub: zmq::Socket,
    statesub: zmq::Socket,
    voter: Option<zmq::Socket>,
    voter_handler: Option<Handler<T>>,
    active_handler: Option<Handler<T>>,
    passive_handler: Option<Handler<T>>,
    verbose: bool,
}

impl<T: 'static> BinaryStar<T> {
    /// `bstar_new`: publishes our state on `local` (bound) and subscribes to
    /// the peer's on `remote` (connected).
    pub fn new(
        context: &zmq::Context,
        role: Role,
        local: &str,
        remote: &str,
        app: T,
    ) -> Result<BinaryStar<T>, Error> {
        let statepub = crate::socket::new(context, zmq::PUB)
            .linger(0)
            .max_message_size(STATE_MESSAGE_LIMIT)
            .bind(local)?;
        let statesub = crate::socket::new(context, zmq::SUB)
            .linger(0)
            .max_message_size(STATE_MESSAGE_LIMIT)
            .subscribe("")
            .connect(remote)?;
        Ok(BinaryStar {
            app,
            role,
            fsm: Fsm::new(role, Instant::now()),
            context: context.clone(),
            statepub,
            statesub,
            voter: None,
            voter_handler: None,
            active_handler: None,
            passive_handler: None,
            verbose: false,
        })
    }

    /// `bstar_voter`: binds the one voter socket (of any type) on `endpoint`.
    /// Its messages are the clients' votes: when the FSM accepts one,
    /// `handler` is called and must read the message from
    /// [`voter`](BinaryStar::voter); a rejected message is read and dropped.
    pub fn voter(
        &mut self,
        endpoint: &str,
        kind: zmq::SocketType,
        handler: Handler<T>,
    ) -> Result<(), Error> {
        if self.voter.is_some() {
            return Err(Error::Protocol(
                "Binary Star takes exactly one voter".into(),
            ));
        }
        self.voter = Some(crate::socket::new(&self.context, kind).bind(endpoint)?);
        self.voter_handler = Some(handler);
        Ok(())
    }

    /// The voter socket (for the voter handler to read from and reply on).
    pub fn voter_socket(&self) -> Option<&zmq::Socket> {
        self.voter.as_ref()
    }

    /// `bstar_new_active`: called on becoming active.
    pub fn on_active(&mut self, handler: Handler<T>) {
        self.active_handler = Some(handler);
    }

    /// `bstar_new_passive`: called on becoming passive.
    pub fn on_passive(&mut self, handler: Handler<T>) {
        self.passive_handler = Some(handler);
    }

    /// `bstar_set_verbose`: log every state message and vote.
    pub fn set_verbose(&mut self, verbose: bool) {
        self.verbose = verbose;
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.fsm.state()
    }

    /// `bstar_start`: adds the heartbeat timer, the state reader and the voter
    /// reader to `reactor` (which may already hold the application's own),
    /// starts the failover window now, and runs until Ctrl-C (`Ok`) or a fatal
    /// condition (`Err`, after the C's log line).
    pub fn start(&mut self, reactor: &mut Reactor<BinaryStar<T>>) -> Result<(), Error> {
        if self.voter.is_none() {
            return Err(Error::Protocol("Binary Star needs a voter".into()));
        }
        self.fsm = Fsm::new(self.role, Instant::now());
        reactor.timer(HEARTBEAT.as_millis() as u64, 0, |_, bstar| {
            bstar.publish_state()
        });
        reactor.reader("bstar-state", |b| &b.statesub, BinaryStar::recv_state);
        reactor.reader(
            "bstar-voter",
            |b| b.voter.as_ref().expect("voter set before start"),
            BinaryStar::voter_ready,
        );
        program::interrupted_is_ok(reactor.run(self))
    }

    fn publish_state(&mut self) -> Result<(), Error> {
        // PUB never blocks: with no subscriber the message just goes nowhere.
        Message::from_frames([self.fsm.state().message()]).send_or_drop(&self.statepub)?;
        Ok(())
    }

    fn recv_state(reactor: &mut Reactor<Self>, bstar: &mut Self) -> Result<(), Error> {
        let Some(msg) = Message::try_recv(&bstar.statesub)? else {
            return Ok(());
        };
        let peer = match (msg.len(), msg.first().and_then(State::parse)) {
            (1, Some(peer)) => peer,
            _ => {
                crate::log_limit::complain(format_args!(
                    "ignored a bad state message: {}",
                    msg.summary()
                ));
                return Ok(());
            }
        };
        if bstar.verbose {
            log::info!("peer state {peer:?}");
        }
        bstar.execute(reactor, Event::Peer(peer)).map(|_| ())
    }

    fn voter_ready(reactor: &mut Reactor<Self>, bstar: &mut Self) -> Result<(), Error> {
        if bstar.execute(reactor, Event::ClientRequest)? {
            if let Some(handler) = bstar.voter_handler {
                return handler(reactor, bstar);
            }
        }
        // Rejected: nobody may answer, so read the vote and drop it.
        if let Some(voter) = &bstar.voter {
            if let Some(msg) = Message::try_recv(voter)? {
                if bstar.verbose {
                    log::info!("rejected a client request: {}", msg.summary());
                }
            }
        }
        Ok(())
    }

    /// Runs the FSM; prints the change, calls the state-change handlers, and
    /// turns a fatal condition into the C's line and an error.
    fn execute(&mut self, reactor: &mut Reactor<Self>, event: Event) -> Result<bool, Error> {
        match self.fsm.handle(event, Instant::now()) {
            Ok(outcome) => {
                if let Some(change) = outcome.change {
                    crate::mdp::protocol::clock_log(&change.log_line(true));
                    let handler = match change.to() {
                        State::Active => self.active_handler,
                        _ => self.passive_handler,
                    };
                    if let Some(handler) = handler {
                        handler(reactor, self)?;
                    }
                }
                Ok(outcome.accept)
            }
            Err(fatal) => {
                crate::mdp::protocol::clock_log(fatal.log_line());
                Err(Error::Protocol(
                    fatal.log_line().trim_start_matches("E: ").into(),
                ))
            }
        }
    }
}

/// The largest frame the state sockets take: a state is one digit, but
/// libzmq applies the limit to the ZMTP handshake's READY command too (about
/// 30 bytes), so it cannot be tiny. Anything larger drops the connection.
const STATE_MESSAGE_LIMIT: i64 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    /// An FSM in `state` whose peer was last heard at `start`.
    fn in_state(state: State, start: Instant) -> Fsm {
        Fsm {
            state,
            peer_expiry: start + PEER_TIMEOUT,
        }
    }

    const PEERS: [State; 4] = [State::Primary, State::Backup, State::Active, State::Passive];

    /// Every state × every peer event: the whole table of protocols.md §6.
    #[test]
    fn every_peer_event_in_every_state() {
        use Change::*;
        use State::*;
        type Row = [Result<Option<Change>, Fatal>; 4];
        let expected: [(State, Row); 4] = [
            (
                Primary,
                [
                    Ok(None),
                    Ok(Some(ConnectedToBackupPassive)),
                    Ok(Some(ConnectedToBackupActive)),
                    Ok(None),
                ],
            ),
            (
                Backup,
                [
                    Ok(None),
                    Ok(None),
                    Ok(Some(ConnectedToPrimaryActive)),
                    Ok(None),
                ],
            ),
            (
                Active,
                [Ok(None), Ok(None), Err(Fatal::DualActives), Ok(None)],
            ),
            (
                Passive,
                [
                    Ok(Some(PrimaryRestarting)),
                    Ok(Some(BackupRestarting)),
                    Ok(None),
                    Err(Fatal::DualPassives),
                ],
            ),
        ];
        let start = Instant::now();
        for (state, row) in expected {
            for (peer, want) in PEERS.into_iter().zip(row) {
                let mut fsm = in_state(state, start);
                let got = fsm
                    .handle(Event::Peer(peer), at(start, 10))
                    .map(|o| o.change);
                assert_eq!(got, want, "{state:?} + peer {peer:?}");
                let after = match want {
                    Ok(Some(change)) => change.to(),
                    _ => state,
                };
                if want.is_ok() {
                    assert_eq!(fsm.state(), after, "{state:?} + peer {peer:?}");
                }
            }
        }
    }

    /// The vote rule: a request before the peer's expiry is rejected and
    /// changes nothing; after it, PRIMARY and PASSIVE become active and serve.
    #[test]
    fn a_client_vote_counts_only_after_the_peer_has_been_silent() {
        let start = Instant::now();
        for (state, change) in [
            (State::Primary, Change::RequestFromClient),
            (State::Passive, Change::Failover),
        ] {
            let mut fsm = in_state(state, start);
            let early = fsm.handle(Event::ClientRequest, at(start, 1999)).unwrap();
            assert_eq!(
                early,
                Outcome {
                    accept: false,
                    change: None
                },
                "{state:?}"
            );
            assert_eq!(fsm.state(), state);
            let late = fsm.handle(Event::ClientRequest, at(start, 2000)).unwrap();
            assert_eq!(
                late,
                Outcome {
                    accept: true,
                    change: Some(change)
                },
                "{state:?}"
            );
            assert_eq!(fsm.state(), State::Active);
        }
    }

    #[test]
    fn backup_never_serves_and_active_always_does() {
        let start = Instant::now();
        let mut backup = in_state(State::Backup, start);
        for ms in [0, 5000, 60_000] {
            let outcome = backup.handle(Event::ClientRequest, at(start, ms)).unwrap();
            assert!(!outcome.accept && outcome.change.is_none());
        }
        let mut active = in_state(State::Active, start);
        for ms in [0, 5000] {
            let outcome = active.handle(Event::ClientRequest, at(start, ms)).unwrap();
            assert!(outcome.accept && outcome.change.is_none());
        }
    }

    /// Each peer state message postpones the expiry by two heartbeats.
    #[test]
    fn peer_messages_keep_the_peer_alive() {
        let start = Instant::now();
        let mut fsm = in_state(State::Passive, start);
        fsm.handle(Event::Peer(State::Active), at(start, 1900))
            .unwrap();
        assert!(!fsm.peer_expired(at(start, 3899)));
        let outcome = fsm.handle(Event::ClientRequest, at(start, 3000)).unwrap();
        assert!(!outcome.accept, "peer spoke at 1.9 s: alive until 3.9 s");
        assert!(fsm.peer_expired(at(start, 3900)));
        let outcome = fsm.handle(Event::ClientRequest, at(start, 3900)).unwrap();
        assert_eq!(outcome.change, Some(Change::Failover));
    }

    /// The failback fix: a primary that starts while the backup is active
    /// does not become active on an early vote, then hears the backup and
    /// goes passive.
    #[test]
    fn a_restarted_primary_never_becomes_a_second_active() {
        let start = Instant::now();
        let mut primary = Fsm::new(Role::Primary, start);
        let vote = primary
            .handle(Event::ClientRequest, at(start, 100))
            .unwrap();
        assert!(!vote.accept, "a vote inside the first failover window");
        let heard = primary
            .handle(Event::Peer(State::Active), at(start, 900))
            .unwrap();
        assert_eq!(heard.change, Some(Change::ConnectedToBackupActive));
        assert_eq!(primary.state(), State::Passive);
    }

    #[test]
    fn state_messages_are_one_ascii_digit() {
        for state in PEERS {
            assert_eq!(State::parse(state.message().as_bytes()), Some(state));
        }
        for bad in [&b""[..], b"0", b"5", b"3\0", b"33", b" 3", b"\x03"] {
            assert_eq!(State::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn log_lines_match_both_c_programs() {
        assert_eq!(
            Change::ConnectedToBackupPassive.log_line(false),
            "I: connected to backup (passive), ready active"
        );
        assert_eq!(
            Change::ConnectedToPrimaryActive.log_line(true),
            "I: connected to primary (active), ready as passive"
        );
        assert_eq!(
            Change::Failover.log_line(false),
            "I: failover successful, ready active"
        );
        assert_eq!(
            Change::RequestFromClient.log_line(true),
            "I: request from client, ready as active"
        );
        assert_eq!(
            Fatal::DualActives.log_line(),
            "E: fatal error - dual actives, aborting"
        );
        assert_eq!(
            Fatal::DualPassives.log_line(),
            "E: fatal error - dual passives, aborting"
        );
    }
}
