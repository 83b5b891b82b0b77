//! One remote ZRE node as this node sees it: the receive-side rules of RFC 36
//! (spec §10.4) and the silence timers (§10.5), as pure logic. No sockets
//! and no clock of its own: the [`Node`](super::node::Node) feeds each
//! decoded message and the time into a [`Peer`] and acts on what it says,
//! so the unit tests drive every rule with made-up messages and instants.
//!
//! **Sequence.** Every message a peer sends on its connection to us carries
//! a sequence number: HELLO is 1, then each message one more, wrapping from
//! 65535 to 0 as zyre's `uint16_t` does. We expect exactly that; a gap or a
//! repeat means messages were lost and the peer is [`Invalid`] (zyre logs
//! "messages lost" and removes it). Messages that did not decode never get
//! here, so the one after them looks like a gap, as in zyre.
//!
//! **Status.** A one-byte count of the peer's own JOINs and LEAVEs. We take
//! it from HELLO, add one for each JOIN or LEAVE, and compare with the value
//! the message carries: a mismatch means we missed a change, and the peer is
//! [`Invalid`]. zyre `assert`s here and aborts; we remove the peer instead
//! (it comes back with a fresh HELLO), and never abort.
//!
//! **Before HELLO** every command is ignored: the first command on a
//! connection must be HELLO, and only it makes a peer *ready*.
//!
//! **Groups** the peer is in come from HELLO, JOIN and LEAVE; at most
//! [`MAX_GROUPS`] (more makes the peer invalid: we could not follow it).
//!
//! **Timers** ([`Timing`], zyre's values by default): any accepted message
//! refreshes the peer. Silent for `evasive` (5 s) it is *evasive*: the node
//! sends a PING and reports EVASIVE; still silent a reap interval later
//! (1 s, zyre's `REAP_INTERVAL`) it is *silent* (zyre's SILENT event); silent
//! for `expired` (30 s) it has *expired*: the node removes it (EXIT). Each
//! alarm is given once per silence; UDP beacons do not refresh a peer (zyre
//! since 2017), only ZRE messages do.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use super::wire::{Command, Headers, Message, Uuid};

/// zyre's evasive timeout: silence before we PING.
pub const EVASIVE_TIMEOUT: Duration = Duration::from_millis(5000);
/// zyre's expired timeout: silence before the peer is removed.
pub const EXPIRED_TIMEOUT: Duration = Duration::from_millis(30_000);
/// zyre's `REAP_INTERVAL`: how often timers are checked, at most.
pub const REAP_INTERVAL: Duration = Duration::from_millis(1000);
/// The most groups we follow for one peer.
pub const MAX_GROUPS: usize = super::wire::MAX_GROUPS;

/// The silence timers; [`Timing::default`] has zyre's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub evasive: Duration,
    pub expired: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            evasive: EVASIVE_TIMEOUT,
            expired: EXPIRED_TIMEOUT,
        }
    }
}

impl Timing {
    /// How often to check the timers: the smallest of the two timeouts and
    /// [`REAP_INTERVAL`], as zyre's `s_reap_interval`. Also the time an
    /// evasive peer has to answer our PING before it is called silent.
    pub fn reap_interval(&self) -> Duration {
        self.evasive.min(self.expired).min(REAP_INTERVAL)
    }
}

/// Why a peer can no longer be followed; the node removes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A sequence number other than the one expected.
    MessagesLost { expected: u16, got: u16 },
    /// A JOIN or LEAVE whose status is not ours plus one.
    StatusMismatch { expected: u8, got: u8 },
    /// More groups than [`MAX_GROUPS`].
    TooManyGroups,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::MessagesLost { expected, got } => {
                write!(f, "messages lost (sequence {got}, expected {expected})")
            }
            Invalid::StatusMismatch { expected, got } => {
                write!(f, "JOIN/LEAVE missed (status {got}, expected {expected})")
            }
            Invalid::TooManyGroups => write!(f, "more than {MAX_GROUPS} groups"),
        }
    }
}

/// What [`Peer::receive`] made of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not ready yet and not a HELLO: dropped, nothing changed.
    Ignored,
    /// Applied. `changed` is true when a JOIN or LEAVE changed the peer's
    /// groups (a JOIN of a group it is in already does not).
    Accepted { changed: bool },
    /// The peer broke a rule: remove it.
    Invalid(Invalid),
}

/// What a silent peer's timers say; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    /// Silent for the evasive timeout: send a PING.
    Evasive,
    /// No answer to the PING within a reap interval.
    Silent,
    /// Silent for the expired timeout: remove it.
    Expired,
}

/// How quiet the peer has been, so each alarm is given once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quiet {
    Talking,
    Evasive,
    Silent,
}

/// A remote node: what it told us, and what we expect of it next.
#[derive(Clone, Debug)]
pub struct Peer {
    uuid: Uuid,
    /// Where we connect to it (from its beacon or its HELLO).
    endpoint: String,
    ready: bool,
    name: String,
    headers: Headers,
    /// The endpoint its HELLO gave.
    address: String,
    groups: BTreeSet<String>,
    status: u8,
    /// The last sequence number received.
    received: u16,
    /// The last sequence number sent.
    sent: u16,
    timing: Timing,
    evasive_at: Instant,
    silent_at: Instant,
    expired_at: Instant,
    quiet: Quiet,
}

impl Peer {
    /// A peer we are about to connect to at `endpoint`, not ready until
    /// its HELLO; its timers start `now`.
    pub fn new(uuid: Uuid, endpoint: String, now: Instant, timing: Timing) -> Peer {
        let mut peer = Peer {
            uuid,
            endpoint,
            ready: false,
            name: String::new(),
            headers: Headers::new(),
            address: String::new(),
            groups: BTreeSet::new(),
            status: 0,
            received: 0,
            sent: 0,
            timing,
            evasive_at: now,
            silent_at: now,
            expired_at: now,
            quiet: Quiet::Talking,
        };
        peer.refresh(now);
        peer
    }

    pub fn uuid(&self) -> &Uuid {
        &self.uuid
    }

    /// Where we connect to it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// True once its HELLO has arrived.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Its name (empty before HELLO).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The endpoint its HELLO gave (empty before HELLO).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The groups it is in.
    pub fn groups(&self) -> &BTreeSet<String> {
        &self.groups
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// Its change count as we follow it.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// The sequence number for the next message we send it: 1 for the
    /// first (our HELLO), then one more each time, wrapping like zyre.
    pub fn next_sequence(&mut self) -> u16 {
        self.sent = self.sent.wrapping_add(1);
        self.sent
    }

    /// Applies the rules to a message from this peer received at `now`;
    /// see the module docs. An accepted message refreshes the timers.
    pub fn receive(&mut self, message: &Message, now: Instant) -> Outcome {
        let hello = matches!(message.command, Command::Hello { .. });
        if !self.ready && !hello {
            return Outcome::Ignored;
        }
        let expected = if hello {
            1
        } else {
            self.received.wrapping_add(1)
        };
        self.received = expected;
        if message.sequence != expected {
            return Outcome::Invalid(Invalid::MessagesLost {
                expected,
                got: message.sequence,
            });
        }
        let mut changed = false;
        match &message.command {
            Command::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            } => {
                let groups: BTreeSet<String> = groups.iter().cloned().collect();
                if groups.len() > MAX_GROUPS {
                    return Outcome::Invalid(Invalid::TooManyGroups);
                }
                self.ready = true;
                self.address = endpoint.clone();
                self.groups = groups;
                self.status = *status;
                self.name = name.clone();
                self.headers = headers.clone();
            }
            Command::Join { group, status } | Command::Leave { group, status } => {
                self.status = self.status.wrapping_add(1);
                if *status != self.status {
                    return Outcome::Invalid(Invalid::StatusMismatch {
                        expected: self.status,
                        got: *status,
                    });
                }
                if matches!(message.command, Command::Join { .. }) {
                    if !self.groups.contains(group) {
                        if self.groups.len() >= MAX_GROUPS {
                            return Outcome::Invalid(Invalid::TooManyGroups);
                        }
                        self.groups.insert(group.clone());
                        changed = true;
                    }
                } else {
                    changed = self.groups.remove(group);
                }
            }
            _ => {}
        }
        self.refresh(now);
        Outcome::Accepted { changed }
    }

    /// Restarts the timers: the peer was heard `now`.
    pub fn refresh(&mut self, now: Instant) {
        self.evasive_at = now + self.timing.evasive;
        self.silent_at = self.evasive_at + self.timing.reap_interval();
        self.expired_at = now + self.timing.expired;
        self.quiet = Quiet::Talking;
    }

    /// The alarm due at `now`, if any; each is given once per silence
    /// (Expired every time it is asked, the peer should be gone by then).
    pub fn tick(&mut self, now: Instant) -> Option<Alarm> {
        if now >= self.expired_at {
            return Some(Alarm::Expired);
        }
        if now >= self.silent_at && self.quiet != Quiet::Silent {
            // Evasive first, if the reaper came too late to see it.
            if self.quiet == Quiet::Talking {
                self.quiet = Quiet::Evasive;
                return Some(Alarm::Evasive);
            }
            self.quiet = Quiet::Silent;
            return Some(Alarm::Silent);
        }
        if now >= self.evasive_at && self.quiet == Quiet::Talking {
            self.quiet = Quiet::Evasive;
            return Some(Alarm::Evasive);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: Uuid = [7; 16];

    fn msg(sequence: u16, command: Command) -> Message {
        Message { sequence, command }
    }

    fn hello(sequence: u16, groups: &[&str], status: u8) -> Message {
        msg(
            sequence,
            Command::Hello {
                endpoint: "tcp://10.0.0.2:49200".into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                status,
                name: "peer".into(),
                headers: [("X-A".to_string(), "b".to_string())].into_iter().collect(),
            },
        )
    }

    fn join(sequence: u16, group: &str, status: u8) -> Message {
        msg(
            sequence,
            Command::Join {
                group: group.into(),
                status,
            },
        )
    }

    fn leave(sequence: u16, group: &str, status: u8) -> Message {
        msg(
            sequence,
            Command::Leave {
                group: group.into(),
                status,
            },
        )
    }

    fn ready_peer(now: Instant) -> Peer {
        let mut peer = Peer::new(UUID, "tcp://10.0.0.2:49200".into(), now, Timing::default());
        assert_eq!(
            peer.receive(&hello(1, &["A"], 5), now),
            Outcome::Accepted { changed: false }
        );
        peer
    }

    const OK: Outcome = Outcome::Accepted { changed: false };
    const CHANGED: Outcome = Outcome::Accepted { changed: true };

    #[test]
    fn commands_before_hello_are_ignored_and_hello_makes_the_peer_ready() {
        let now = Instant::now();
        let mut peer = Peer::new(UUID, "tcp://10.0.0.2:49200".into(), now, Timing::default());
        assert!(!peer.is_ready());
        assert_eq!(peer.receive(&join(1, "A", 1), now), Outcome::Ignored);
        assert_eq!(peer.receive(&msg(2, Command::Ping), now), Outcome::Ignored);
        assert_eq!(peer.receive(&hello(1, &["A", "B", "A"], 9), now), OK);
        assert!(peer.is_ready());
        assert_eq!(peer.name(), "peer");
        assert_eq!(peer.address(), "tcp://10.0.0.2:49200");
        assert_eq!(peer.endpoint(), "tcp://10.0.0.2:49200");
        assert_eq!(peer.headers().get("X-A").map(String::as_str), Some("b"));
        assert_eq!(peer.groups().iter().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(peer.status(), 9);
    }

    #[test]
    fn sequence_numbers_must_follow_on_exactly() {
        let now = Instant::now();
        let mut peer = ready_peer(now);
        assert_eq!(peer.receive(&msg(2, Command::Ping), now), OK);
        assert_eq!(peer.receive(&msg(3, Command::PingOk), now), OK);
        assert_eq!(
            peer.receive(&msg(5, Command::Ping), now),
            Outcome::Invalid(Invalid::MessagesLost {
                expected: 4,
                got: 5
            })
        );
        let mut peer = ready_peer(now);
        assert_eq!(peer.receive(&msg(2, Command::Ping), now), OK);
        assert_eq!(
            peer.receive(&msg(2, Command::Ping), now),
            Outcome::Invalid(Invalid::MessagesLost {
                expected: 3,
                got: 2
            }),
            "a repeat"
        );
        // A HELLO must be number 1.
        let mut peer = Peer::new(UUID, String::new(), now, Timing::default());
        assert!(matches!(
            peer.receive(&hello(2, &[], 0), now),
            Outcome::Invalid(Invalid::MessagesLost { .. })
        ));
    }

    #[test]
    fn a_new_hello_starts_the_sequence_again() {
        let now = Instant::now();
        let mut peer = ready_peer(now);
        assert_eq!(peer.receive(&msg(2, Command::Ping), now), OK);
        assert_eq!(peer.receive(&hello(1, &["C"], 0), now), OK);
        assert_eq!(peer.groups().iter().collect::<Vec<_>>(), ["C"]);
        assert_eq!(peer.receive(&msg(2, Command::Ping), now), OK);
    }

    #[test]
    fn sequence_numbers_wrap_from_65535_to_0_like_zyre() {
        let now = Instant::now();
        let mut peer = ready_peer(now);
        for sequence in 2..=u16::MAX {
            assert_eq!(peer.receive(&msg(sequence, Command::Ping), now), OK);
        }
        assert_eq!(peer.receive(&msg(0, Command::Ping), now), OK);
        assert_eq!(peer.receive(&msg(1, Command::Ping), now), OK);
        // pyre's `% 65535` goes 65534 → 0 and is caught.
        let mut peer = ready_peer(now);
        for sequence in 2..=65534 {
            peer.receive(&msg(sequence, Command::Ping), now);
        }
        assert!(matches!(
            peer.receive(&msg(0, Command::Ping), now),
            Outcome::Invalid(Invalid::MessagesLost {
                expected: 65535,
                got: 0
            })
        ));
        // And our own numbering wraps the same way.
        let mut peer = Peer::new(UUID, String::new(), now, Timing::default());
        assert_eq!(peer.next_sequence(), 1, "our HELLO");
        for _ in 2..=u16::MAX {
            peer.next_sequence();
        }
        assert_eq!(peer.next_sequence(), 0);
    }

    #[test]
    fn join_and_leave_follow_the_status_and_the_groups() {
        let now = Instant::now();
        let mut peer = ready_peer(now); // status 5, in A
        assert_eq!(peer.receive(&join(2, "B", 6), now), CHANGED);
        assert!(peer.in_group("B"));
        assert_eq!(peer.receive(&join(3, "B", 7), now), OK, "already in B");
        assert_eq!(peer.receive(&leave(4, "A", 8), now), CHANGED);
        assert!(!peer.in_group("A"));
        assert_eq!(peer.receive(&leave(5, "A", 9), now), OK, "not in A");
        assert_eq!(peer.status(), 9);
    }

    #[test]
    fn the_status_rolls_over_at_256() {
        let now = Instant::now();
        let mut peer = Peer::new(UUID, String::new(), now, Timing::default());
        peer.receive(&hello(1, &[], 254), now);
        assert_eq!(peer.receive(&join(2, "A", 255), now), CHANGED);
        assert_eq!(peer.receive(&leave(3, "A", 0), now), CHANGED);
        assert_eq!(peer.receive(&join(4, "A", 1), now), CHANGED);
    }

    #[test]
    fn a_missed_join_or_leave_makes_the_peer_invalid_without_a_panic() {
        let now = Instant::now();
        let mut peer = ready_peer(now); // status 5
        assert_eq!(
            peer.receive(&join(2, "B", 7), now),
            Outcome::Invalid(Invalid::StatusMismatch {
                expected: 6,
                got: 7
            })
        );
        // What the log line that drops such a peer says.
        let texts = [
            Invalid::StatusMismatch {
                expected: 6,
                got: 7,
            }
            .to_string(),
            Invalid::MessagesLost {
                expected: 4,
                got: 5,
            }
            .to_string(),
            Invalid::TooManyGroups.to_string(),
        ];
        assert_eq!(
            texts,
            [
                "JOIN/LEAVE missed (status 7, expected 6)".to_string(),
                "messages lost (sequence 5, expected 4)".to_string(),
                format!("more than {MAX_GROUPS} groups"),
            ]
        );
        let mut peer = ready_peer(now);
        assert!(matches!(
            peer.receive(&leave(2, "A", 5), now),
            Outcome::Invalid(Invalid::StatusMismatch { .. })
        ));
    }

    #[test]
    fn groups_per_peer_are_bounded() {
        let now = Instant::now();
        let mut peer = ready_peer(now); // in A, status 5
        let mut status = 5u8;
        let mut sequence = 1u16;
        for n in 1..MAX_GROUPS {
            status = status.wrapping_add(1);
            sequence += 1;
            assert_eq!(
                peer.receive(&join(sequence, &n.to_string(), status), now),
                CHANGED
            );
        }
        assert_eq!(peer.groups().len(), MAX_GROUPS);
        assert_eq!(
            peer.receive(
                &join(sequence + 1, "one too many", status.wrapping_add(1)),
                now
            ),
            Outcome::Invalid(Invalid::TooManyGroups)
        );
        // A HELLO may list exactly MAX_GROUPS groups (a peer built without
        // our decoder's bound could list more).
        let names: Vec<String> = (0..=MAX_GROUPS).map(|n| n.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut peer = Peer::new(UUID, String::new(), now, Timing::default());
        assert_eq!(peer.receive(&hello(1, &names[..MAX_GROUPS], 0), now), OK);
        assert_eq!(peer.groups().len(), MAX_GROUPS);
        let mut peer = Peer::new(UUID, String::new(), now, Timing::default());
        assert_eq!(
            peer.receive(&hello(1, &names, 0), now),
            Outcome::Invalid(Invalid::TooManyGroups)
        );
    }

    #[test]
    fn silence_gives_evasive_then_silent_then_expired_each_once() {
        let start = Instant::now();
        let timing = Timing::default();
        let mut peer = ready_peer(start);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(peer.tick(at(4999)), None);
        assert_eq!(peer.tick(at(5000)), Some(Alarm::Evasive));
        assert_eq!(peer.tick(at(5500)), None, "once");
        assert_eq!(peer.tick(at(6000)), Some(Alarm::Silent));
        assert_eq!(peer.tick(at(6500)), None, "once");
        assert_eq!(peer.tick(at(29_999)), None);
        assert_eq!(peer.tick(at(30_000)), Some(Alarm::Expired));
        assert_eq!(timing.reap_interval(), REAP_INTERVAL);
    }

    #[test]
    fn any_message_refreshes_the_timers_and_a_late_reaper_still_sees_evasive_first() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut peer = ready_peer(start);
        assert_eq!(peer.tick(at(5000)), Some(Alarm::Evasive));
        // The PING-OK comes back: talking again, the clock starts over.
        assert_eq!(peer.receive(&msg(2, Command::PingOk), at(5100)), OK);
        assert_eq!(peer.tick(at(10_099)), None);
        assert_eq!(peer.tick(at(11_100)), Some(Alarm::Evasive), "late reaper");
        assert_eq!(peer.tick(at(11_100)), Some(Alarm::Silent));
        // Ignored messages refresh nothing.
        let mut unready = Peer::new(UUID, String::new(), start, Timing::default());
        assert_eq!(
            unready.receive(&msg(1, Command::Ping), at(29_000)),
            Outcome::Ignored
        );
        assert_eq!(unready.tick(at(30_000)), Some(Alarm::Expired));
    }

    #[test]
    fn timings_are_configurable_and_the_reap_interval_follows_them() {
        let timing = Timing {
            evasive: Duration::from_millis(200),
            expired: Duration::from_millis(600),
        };
        assert_eq!(timing.reap_interval(), Duration::from_millis(200));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut peer = Peer::new(UUID, String::new(), start, timing);
        assert_eq!(peer.tick(at(200)), Some(Alarm::Evasive));
        assert_eq!(peer.tick(at(400)), Some(Alarm::Silent));
        assert_eq!(peer.tick(at(600)), Some(Alarm::Expired));
    }
}
