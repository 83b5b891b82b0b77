//! Presence on a LAN by UDP beacons: the §50 `interface` class, the API
//! behind `udpping3`.
//!
//! An [`Interface`] runs an agent on an [`Actor`] thread. The agent makes a
//! random 16-byte UUID, broadcasts it as a beacon every [`PING_INTERVAL`]
//! (on UDP port [`PING_PORT`], through [`Udp`]), and listens for everybody
//! else's. The application only reads events from the pipe:
//!
//! * `[JOINED][<UUID as 32 uppercase hex digits>]` the first time a peer's
//!   beacon arrives;
//! * `[LEFT][<UUID>]` when a peer has been silent for [`PEER_EXPIRY`].
//!
//! Its own beacons come back to it (broadcast reaches the sender too) and are
//! ignored. Datagrams that are not exactly 16 bytes are ignored.
//!
//! Differs from `interface.c`: the reaper collects the expired peers first
//! and removes them afterwards (the C deleted from the hash while iterating
//! over it); at most [`MAX_PEERS`] peers are tracked, so a flood of made-up
//! UUIDs cannot grow memory without bound (past that, new peers are ignored,
//! with one warning); the beacon goes to [`DEFAULT_BROADCAST`](crate::udp::DEFAULT_BROADCAST)
//! unless the caller passes another address (the C used 255.255.255.255); the
//! UUID comes from the OS-seeded RNG (no libuuid).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::actor::{self, Actor};
use crate::interrupt::{self, Pollable};
use crate::udp::Udp;
use crate::{Error, Message};

/// The UDP port of the beacons (the C's `PING_PORT_NUMBER`).
pub const PING_PORT: u16 = 9999;
/// How often we send our beacon.
pub const PING_INTERVAL: Duration = Duration::from_millis(1000);
/// A peer silent for this long has left.
pub const PEER_EXPIRY: Duration = Duration::from_millis(5000);
/// The most peers the agent tracks at once.
pub const MAX_PEERS: usize = 10_000;
/// Beacons are exactly this long: a UUID.
pub const UUID_SIZE: usize = 16;

/// Where and how often to beacon; [`Settings::new`] gives the C's values.
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    pub broadcast: Ipv4Addr,
    pub ping_interval: Duration,
    pub peer_expiry: Duration,
}

impl Settings {
    /// Port 9999, a beacon a second, peers expire after five seconds.
    pub fn new(broadcast: Ipv4Addr) -> Settings {
        Settings {
            port: PING_PORT,
            broadcast,
            ping_interval: PING_INTERVAL,
            peer_expiry: PEER_EXPIRY,
        }
    }
}

/// The presence API: start it, then [`recv`](Interface::recv) events.
pub struct Interface {
    actor: Actor,
}

impl Interface {
    /// `interface_new`: starts the agent with the C's timing, beaconing to
    /// `broadcast`. Fails if the UDP socket cannot be made.
    pub fn new(context: &zmq::Context, broadcast: Ipv4Addr) -> Result<Interface, Error> {
        Interface::with_settings(context, Settings::new(broadcast))
    }

    /// Starts the agent with other settings (tests use shorter times).
    pub fn with_settings(context: &zmq::Context, settings: Settings) -> Result<Interface, Error> {
        let udp = Udp::new(settings.port, settings.broadcast)
            .map_err(|e| Error::Protocol(format!("cannot open UDP port {}: {e}", settings.port)))?;
        let actor = Actor::new(context, move |pipe| {
            let mut agent = Agent::new(udp, settings);
            if let Err(e) = agent.run(pipe) {
                if !matches!(e, Error::Interrupted) {
                    log::error!("interface agent stopped: {e}");
                }
            }
        })?;
        Ok(Interface { actor })
    }

    /// `interface_recv`: the next `[JOINED|LEFT][uuid]` event (waits; Ctrl-C
    /// gives `Error::Interrupted`).
    pub fn recv(&self) -> Result<Message, Error> {
        self.actor.recv()
    }

    /// The pipe, to poll beside other sockets.
    pub fn socket(&self) -> &zmq::Socket {
        self.actor.socket()
    }
}

/// The agent's state: our UUID, the known peers and when each expires.
struct Agent {
    udp: Udp,
    settings: Settings,
    uuid: [u8; UUID_SIZE],
    peers: Peers,
}

/// Known peers and when each expires, with the join/leave rules; no I/O, so
/// the unit tests drive it on a made-up clock.
#[derive(Default)]
struct Peers {
    expiry: HashMap<[u8; UUID_SIZE], Instant>,
    warned_full: bool,
}

impl Peers {
    /// A beacon from `uuid` at `now`: true if the peer is new (JOINED).
    fn heard(&mut self, uuid: [u8; UUID_SIZE], now: Instant, expiry: Duration) -> bool {
        if let Some(until) = self.expiry.get_mut(&uuid) {
            *until = now + expiry;
            return false;
        }
        if self.expiry.len() >= MAX_PEERS {
            if !self.warned_full {
                log::warn!("{MAX_PEERS} peers known: ignoring new ones");
                self.warned_full = true;
            }
            return false;
        }
        self.expiry.insert(uuid, now + expiry);
        true
    }

    /// Removes and returns the peers expired at `now` (LEFT), collected
    /// before anything is removed.
    fn reap(&mut self, now: Instant) -> Vec<[u8; UUID_SIZE]> {
        let mut gone: Vec<[u8; UUID_SIZE]> = self
            .expiry
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(uuid, _)| *uuid)
            .collect();
        gone.sort();
        for uuid in &gone {
            self.expiry.remove(uuid);
        }
        gone
    }
}

impl Agent {
    fn new(udp: Udp, settings: Settings) -> Agent {
        let mut uuid = [0u8; UUID_SIZE];
        rand::thread_rng().fill_bytes(&mut uuid);
        Agent {
            udp,
            settings,
            uuid,
            peers: Peers::default(),
        }
    }

    /// The agent loop: beacon on time, read beacons, reap silent peers,
    /// until `$TERM` or Ctrl-C.
    fn run(&mut self, pipe: &actor::Pipe) -> Result<(), Error> {
        pipe.signal(0)?;
        let mut ping_at = Instant::now(); // first beacon right away
        loop {
            let timeout = ping_at.saturating_duration_since(Instant::now());
            let items = [Pollable::Socket(pipe.socket()), Pollable::Fd(self.udp.fd())];
            let ready = interrupt::poll_any(&items, interrupt::millis(timeout))?;
            if ready[0] && actor::is_term(&pipe.recv()?) {
                return Ok(());
            }
            if ready[1] {
                self.read_beacons(pipe)?;
            }
            let now = Instant::now();
            if now >= ping_at {
                if let Err(e) = self.udp.send(&self.uuid) {
                    // A host without a route for the broadcast (no network):
                    // say so and keep trying, as udplib ignores such errors.
                    log::warn!("cannot send beacon to {}: {e}", self.udp.broadcast());
                }
                ping_at = now + self.settings.ping_interval;
            }
            for uuid in self.peers.reap(now) {
                pipe.send(Message::from_frames(["LEFT".into(), hex(&uuid)]))?;
            }
        }
    }

    /// Reads what is waiting (at most 1000 datagrams a pass, so a flood
    /// cannot starve the beacon and the reaper).
    fn read_beacons(&mut self, pipe: &actor::Pipe) -> Result<(), Error> {
        let mut buffer = [0u8; UUID_SIZE + 1];
        for _ in 0..1000 {
            let received = match self.udp.recv(&mut buffer) {
                Ok(Some((data, _from))) => <[u8; UUID_SIZE]>::try_from(data).ok(),
                Ok(None) => return Ok(()),
                Err(e) => {
                    log::warn!("UDP receive failed: {e}");
                    return Ok(());
                }
            };
            let Some(uuid) = received else {
                continue; // not a beacon of ours: wrong size
            };
            if uuid == self.uuid {
                continue; // our own beacon, back from the broadcast
            }
            if self
                .peers
                .heard(uuid, Instant::now(), self.settings.peer_expiry)
            {
                pipe.send(Message::from_frames(["JOINED".into(), hex(&uuid)]))?;
            }
        }
        Ok(())
    }
}

/// A UUID as 32 uppercase hex digits, as the C prints it.
pub fn hex(uuid: &[u8]) -> String {
    uuid.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_join_once_and_leave_after_their_expiry() {
        let start = Instant::now();
        let expiry = Duration::from_millis(5000);
        let mut peers = Peers::default();
        let a = [1u8; UUID_SIZE];
        let b = [2u8; UUID_SIZE];
        assert!(peers.heard(a, start, expiry), "first beacon: JOINED");
        assert!(
            !peers.heard(a, start + Duration::from_millis(1000), expiry),
            "again: nothing"
        );
        assert!(peers.heard(b, start + Duration::from_millis(2000), expiry));
        assert!(
            peers.reap(start + Duration::from_millis(5999)).is_empty(),
            "a heard at 1 s"
        );
        assert_eq!(peers.reap(start + Duration::from_millis(6000)), vec![a]);
        assert_eq!(peers.reap(start + Duration::from_millis(7000)), vec![b]);
        assert!(
            peers.heard(a, start + Duration::from_millis(8000), expiry),
            "back: JOINED again"
        );
    }

    #[test]
    fn the_peer_table_is_bounded() {
        let now = Instant::now();
        let mut peers = Peers::default();
        for n in 0..MAX_PEERS as u32 + 10 {
            let mut uuid = [0u8; UUID_SIZE];
            uuid[..4].copy_from_slice(&n.to_be_bytes());
            peers.heard(uuid, now, PEER_EXPIRY);
        }
        assert_eq!(peers.expiry.len(), MAX_PEERS);
    }

    #[test]
    fn uuids_print_as_32_uppercase_hex_digits() {
        let uuid = [
            0x41, 0x8E, 0x98, 0xD4, 0xB7, 0x18, 0x48, 0x44, 0xB7, 0xD5, 0xE0, 0xEE, 0x56, 0x91,
            0x08, 0x4C,
        ];
        assert_eq!(hex(&uuid), "418E98D4B7184844B7D5E0EE5691084C");
    }

    /// The next event within `ms`, as text frames.
    fn event(interface: &Interface, ms: i64) -> Option<Vec<String>> {
        let mut items = [interface.socket().as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, ms).unwrap();
        if !items[0].is_readable() {
            return None;
        }
        let message = interface.recv().unwrap();
        Some(
            message
                .into_frames()
                .into_iter()
                .map(|f| String::from_utf8(f).unwrap())
                .collect(),
        )
    }

    /// Two agents on one port see each other (never themselves), a peer of
    /// raw datagrams joins once and leaves when silent, datagrams of other
    /// sizes are nobody, and beacons go out at their interval.
    #[test]
    fn agents_see_each_other_and_a_raw_peer_join_and_leave() {
        let context = zmq::Context::new();
        let settings = Settings {
            port: crate::udp::free_port(),
            broadcast: crate::udp::DEFAULT_BROADCAST,
            ping_interval: Duration::from_millis(50),
            peer_expiry: Duration::from_millis(400),
        };
        let raw = Udp::new(settings.port, settings.broadcast).unwrap();
        let a = Interface::with_settings(&context, settings.clone()).unwrap();
        let b = Interface::with_settings(&context, settings.clone()).unwrap();
        let joined = |interface: &Interface| match event(interface, 5000) {
            Some(frames) if frames.len() == 2 && frames[0] == "JOINED" => frames[1].clone(),
            other => panic!("wanted JOINED, got {other:?}"),
        };
        let (b_seen_by_a, a_seen_by_b) = (joined(&a), joined(&b));
        assert_ne!(b_seen_by_a, a_seen_by_b);

        // Beacons every 50 ms from each agent: about 10 each in 250 ms.
        let mut heard: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut buffer = [0u8; 64];
        let until = Instant::now() + Duration::from_millis(250);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let items = [Pollable::Fd(raw.fd())];
            if interrupt::poll_any(&items, left.as_millis() as i64).unwrap()[0] {
                while let Some((data, _)) = raw.recv(&mut buffer).unwrap() {
                    *heard.entry(data.to_vec()).or_default() += 1;
                }
            }
        }
        let mut senders: Vec<String> = heard.keys().map(|uuid| hex(uuid)).collect();
        senders.sort();
        let mut both = vec![b_seen_by_a.clone(), a_seen_by_b.clone()];
        both.sort();
        assert_eq!(senders, both, "each agent's UUID is its beacon");
        for count in heard.values() {
            assert!(
                (2..=25).contains(count),
                "{count} beacons in 250 ms: {heard:?}"
            );
        }

        // A raw peer: a 17-byte datagram (its first 16 bytes another UUID)
        // and a 15-byte one are nobody; its 16-byte beacon joins once.
        let stranger = [0x5A_u8; UUID_SIZE];
        let mut long = vec![0x6B_u8; UUID_SIZE];
        long.push(0);
        raw.send(&long).unwrap();
        raw.send(&stranger[..15]).unwrap();
        for _ in 0..3 {
            raw.send(&stranger).unwrap();
        }
        for interface in [&a, &b] {
            assert_eq!(joined(interface), hex(&stranger));
            // Silent now: it leaves, once, and nothing else happens.
            assert_eq!(
                event(interface, 5000),
                Some(vec!["LEFT".to_string(), hex(&stranger)])
            );
        }
        assert_eq!(event(&a, 300), None, "b is still there");
        drop(b);
        assert_eq!(event(&a, 5000), Some(vec!["LEFT".to_string(), b_seen_by_a]));
    }
}
