//! UDP beacons and service presence (study §3): a [`Beacon`] actor in the
//! spirit of CZMQ's `zbeacon`, and the [`Presence`] table that turns the
//! beacons it hears into `JOINED`/`LEFT`. Behind `beacon` and `presence`;
//! the study's P2P node will use the same actor for ZRE beacons, so the
//! payload (header and body) and the interval are parameters.
//!
//! **The actor.** [`Beacon::new`] opens the UDP port (`SO_REUSEADDR`, so
//! several programs per host share it, see [`Udp`]) and runs an agent
//! thread; the owner drives it with commands over the pipe:
//!
//! * [`publish`](Beacon::publish)`(payload, interval)`: broadcast `payload`
//!   every `interval` (at least [`MIN_INTERVAL`]), the first one at once;
//! * [`silence`](Beacon::silence): stop broadcasting;
//! * [`subscribe`](Beacon::subscribe)`(filter)`: report beacons whose payload
//!   starts with `filter` ("" = all); [`unsubscribe`](Beacon::unsubscribe);
//! * [`echo`](Beacon::echo)`(on)`: also report our own beacons. By default
//!   they are filtered out: a beacon is ours if its payload is the one we
//!   publish and it came from one of this host's addresses (the payload
//!   alone would also hide another host announcing the same port).
//!
//! Each command is acknowledged (a signal), so when a method returns the
//! agent has applied it. Heard beacons come out of [`recv`](Beacon::recv)
//! as [`Heard`] (sender address and payload).
//!
//! **Where beacons go.** To [`DEFAULT_BROADCAST`](crate::udp::DEFAULT_BROADCAST)
//! (`127.255.255.255`, this machine only) unless the caller passes another
//! address; one datagram per interval, never faster than [`MIN_INTERVAL`].
//!
//! **Bounds.** Payloads are at most [`MAX_BEACON`] bytes (longer datagrams
//! are ignored and counted); at most [`READ_BATCH`] datagrams are read per
//! wake-up, so a flood cannot starve the timer; beacons for an owner that
//! does not read are dropped once the pipe is full (counted, logged once).
//! [`Presence`] tracks at most [`MAX_PEERS`] peers (new ones past that are
//! ignored, with one warning).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::actor::{self, Actor, Pipe};
use crate::interrupt::{self, Pollable};
use crate::message::show;
use crate::udp::{self, Udp};
use crate::{Error, Message};

/// The UDP port of presence beacons.
pub const DEFAULT_PORT: u16 = 5681;
/// The header of a presence beacon (the study's `FOO1`).
pub const DEFAULT_HEADER: &str = "FOO1";
/// How often a beacon is sent by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
/// A beacon is never sent more often than this.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The largest beacon payload, in bytes (as `zbeacon`'s `UDP_FRAME_MAX`).
pub const MAX_BEACON: usize = 255;
/// Datagrams read per wake-up at most.
pub const READ_BATCH: usize = 1000;
/// Peers a [`Presence`] table tracks at most.
pub const MAX_PEERS: usize = 10_000;

/// A beacon heard: who sent it and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub from: SocketAddr,
    pub payload: Vec<u8>,
}

/// The beacon actor; see the module docs.
pub struct Beacon {
    actor: Actor,
}

impl Beacon {
    /// Opens UDP `port` and starts the agent, beaconing (once told to) to
    /// `broadcast:port`. Fails if the port cannot be opened.
    pub fn new(context: &zmq::Context, port: u16, broadcast: Ipv4Addr) -> Result<Beacon, Error> {
        let udp = Udp::new(port, broadcast)
            .map_err(|e| Error::Protocol(format!("cannot open UDP port {port}: {e}")))?;
        let actor = Actor::new(context, move |pipe| {
            let mut agent = Agent::new(udp);
            if let Err(e) = agent.run(pipe) {
                if !matches!(e, Error::Interrupted) {
                    log::error!("beacon agent stopped: {e}");
                }
            }
        })?;
        Ok(Beacon { actor })
    }

    /// Broadcasts `payload` every `interval` (at least [`MIN_INTERVAL`]).
    pub fn publish(&self, payload: &[u8], interval: Duration) -> Result<(), Error> {
        if payload.len() > MAX_BEACON {
            return Err(Error::Protocol(format!(
                "a beacon of {} bytes (at most {MAX_BEACON})",
                payload.len()
            )));
        }
        let interval = interval.max(MIN_INTERVAL).as_millis().to_string();
        self.command(["PUBLISH".as_bytes(), payload, interval.as_bytes()])
    }

    /// Stops broadcasting.
    pub fn silence(&self) -> Result<(), Error> {
        self.command(["SILENCE".as_bytes()])
    }

    /// Reports beacons whose payload starts with `filter` ("" = all).
    pub fn subscribe(&self, filter: &[u8]) -> Result<(), Error> {
        self.command(["SUBSCRIBE".as_bytes(), filter])
    }

    /// Stops reporting beacons.
    pub fn unsubscribe(&self) -> Result<(), Error> {
        self.command(["UNSUBSCRIBE".as_bytes()])
    }

    /// Whether to report our own beacons too (off by default).
    pub fn echo(&self, on: bool) -> Result<(), Error> {
        self.command(["ECHO".as_bytes(), if on { b"1" } else { b"0" }])
    }

    /// The next beacon heard (waits; Ctrl-C gives `Error::Interrupted`).
    pub fn recv(&self) -> Result<Heard, Error> {
        heard_of(self.actor.recv()?)
    }

    /// The next beacon heard within `timeout_ms`, if any.
    pub fn recv_timeout(&self, timeout_ms: i64) -> Result<Option<Heard>, Error> {
        if !interrupt::wait_readable(self.actor.socket(), timeout_ms)? {
            return Ok(None);
        }
        self.recv().map(Some)
    }

    /// The pipe, to poll beside other sockets; read it with [`recv`](Beacon::recv).
    pub fn socket(&self) -> &zmq::Socket {
        self.actor.socket()
    }

    fn command<const N: usize>(&self, frames: [&[u8]; N]) -> Result<(), Error> {
        self.actor.send(Message::from_frames(frames))?;
        // Heard beacons may come first on the pipe; `wait` skips them, which
        // is what a command's caller wants (they were sent before it took
        // effect). `wait` drops them: beacons repeat.
        self.actor.wait().map(|_| ())
    }
}

fn heard_of(msg: Message) -> Result<Heard, Error> {
    let from = msg
        .get(0)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol("beacon agent: bad event".into()))?;
    let payload = msg.get(1).unwrap_or_default().to_vec();
    Ok(Heard { from, payload })
}

/// The agent's state.
struct Agent {
    udp: Udp,
    transmit: Option<Vec<u8>>,
    interval: Duration,
    filter: Option<Vec<u8>>,
    echo: bool,
    local: HashSet<Ipv4Addr>,
    dropped: u64,
    oversized: u64,
}

impl Agent {
    fn new(udp: Udp) -> Agent {
        let local = udp::interfaces()
            .map(|list| list.into_iter().map(|i| i.address).collect())
            .unwrap_or_default();
        Agent {
            udp,
            transmit: None,
            interval: DEFAULT_INTERVAL,
            filter: None,
            echo: false,
            local,
            dropped: 0,
            oversized: 0,
        }
    }

    fn run(&mut self, pipe: &Pipe) -> Result<(), Error> {
        pipe.signal(0)?;
        let mut send_at = Instant::now();
        loop {
            let timeout = match self.transmit {
                Some(_) => interrupt::millis_until(send_at),
                None => -1,
            };
            let items = [Pollable::Socket(pipe.socket()), Pollable::Fd(self.udp.fd())];
            let ready = interrupt::poll_any(&items, timeout)?;
            if ready[0] {
                let command = pipe.recv()?;
                if actor::is_term(&command) {
                    return Ok(());
                }
                if self.obey(&command) {
                    send_at = Instant::now(); // a new beacon goes out at once
                }
                pipe.signal(0)?;
            }
            if ready[1] {
                self.read_beacons(pipe)?;
            }
            if let Some(payload) = &self.transmit {
                let now = Instant::now();
                if now >= send_at {
                    if let Err(e) = self.udp.send(payload) {
                        log::warn!("cannot send beacon to {}: {e}", self.udp.broadcast());
                    }
                    send_at = now + self.interval;
                }
            }
        }
    }

    /// Applies a command; true if it was PUBLISH.
    fn obey(&mut self, command: &Message) -> bool {
        match command.first() {
            Some(b"PUBLISH") => {
                self.transmit = command.get(1).map(<[u8]>::to_vec);
                let ms = command
                    .get(2)
                    .and_then(|f| std::str::from_utf8(f).ok())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(DEFAULT_INTERVAL.as_millis() as u64);
                self.interval = Duration::from_millis(ms).max(MIN_INTERVAL);
                return true;
            }
            Some(b"SILENCE") => self.transmit = None,
            Some(b"SUBSCRIBE") => self.filter = Some(command.get(1).unwrap_or_default().to_vec()),
            Some(b"UNSUBSCRIBE") => self.filter = None,
            Some(b"ECHO") => self.echo = command.get(1) == Some(b"1"),
            _ => log::warn!("beacon agent: unknown command {}", command.summary()),
        }
        false
    }

    /// True if a beacon with `payload` from `from` is one of our own.
    fn is_own(&self, payload: &[u8], from: &SocketAddr) -> bool {
        let local = match from.ip() {
            IpAddr::V4(ip) => ip.is_loopback() || self.local.contains(&ip),
            IpAddr::V6(_) => false,
        };
        local && self.transmit.as_deref() == Some(payload)
    }

    fn read_beacons(&mut self, pipe: &Pipe) -> Result<(), Error> {
        let mut buffer = [0u8; MAX_BEACON + 1];
        for _ in 0..READ_BATCH {
            let (payload, from) = match self.udp.recv(&mut buffer) {
                Ok(Some(received)) => received,
                Ok(None) => return Ok(()),
                Err(e) => {
                    log::warn!("UDP receive failed: {e}");
                    return Ok(());
                }
            };
            if payload.len() > MAX_BEACON {
                self.oversized += 1;
                log::debug!(
                    "ignored an oversized datagram from {from} ({} so far)",
                    self.oversized
                );
                continue;
            }
            let Some(filter) = &self.filter else {
                continue;
            };
            if !payload.starts_with(filter) || (!self.echo && self.is_own(payload, &from)) {
                continue;
            }
            let event = Message::from_frames([from.to_string().into_bytes(), payload.to_vec()]);
            if !event.send_or_drop(pipe.socket())? {
                self.dropped += 1;
                if self.dropped == 1 {
                    log::warn!("the owner is not reading beacons: dropping them");
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Presence: the FOO1 beacon and the JOINED/LEFT table

/// The presence beacon: `header`, then the service's TCP port (2 bytes,
/// network order).
pub fn presence_beacon(header: &[u8], port: u16) -> Vec<u8> {
    let mut beacon = header.to_vec();
    beacon.extend_from_slice(&port.to_be_bytes());
    beacon
}

/// The TCP port in a presence beacon, or `None` if it is not exactly
/// `header` plus two bytes.
pub fn presence_port(header: &[u8], payload: &[u8]) -> Option<u16> {
    let port: [u8; 2] = payload.strip_prefix(header)?.try_into().ok()?;
    Some(u16::from_be_bytes(port))
}

/// Services present and when each expires, with the join/leave rules; no
/// I/O, so tests drive it on a made-up clock.
pub struct Presence {
    expiry: Duration,
    until: HashMap<SocketAddrV4, Instant>,
    warned_full: bool,
}

impl Presence {
    /// An empty table; a service silent for `expiry` has left.
    pub fn new(expiry: Duration) -> Presence {
        Presence {
            expiry,
            until: HashMap::new(),
            warned_full: false,
        }
    }

    /// A beacon for `service` at `now`: true if it has just JOINED.
    pub fn heard(&mut self, service: SocketAddrV4, now: Instant) -> bool {
        if let Some(until) = self.until.get_mut(&service) {
            *until = now + self.expiry;
            return false;
        }
        if self.until.len() >= MAX_PEERS {
            if !self.warned_full {
                log::warn!("{MAX_PEERS} services present: ignoring new ones");
                self.warned_full = true;
            }
            return false;
        }
        self.until.insert(service, now + self.expiry);
        true
    }

    /// Removes and returns the services expired at `now` (LEFT), in order.
    pub fn reap(&mut self, now: Instant) -> Vec<SocketAddrV4> {
        let mut gone: Vec<SocketAddrV4> = self
            .until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(service, _)| *service)
            .collect();
        gone.sort();
        for service in &gone {
            self.until.remove(service);
        }
        gone
    }

    /// How many services are present.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// What a presence listener does; the flags of `presence`.
#[derive(Clone, Debug)]
pub struct ListenSettings {
    pub header: Vec<u8>,
    pub expiry: Duration,
    /// How often to look for expired services.
    pub reap_every: Duration,
}

/// Listens on `beacon` (subscribed to `settings.header`) and prints
/// `JOINED <ip>:<port>` and `LEFT <ip>:<port>` to `out` until Ctrl-C.
/// Beacons with the right header but not exactly two bytes after it are
/// ignored and counted (logged at debug level).
pub fn listen(
    beacon: &Beacon,
    settings: &ListenSettings,
    out: &mut dyn std::io::Write,
) -> Result<(), Error> {
    beacon.subscribe(&settings.header)?;
    let mut presence = Presence::new(settings.expiry);
    let mut malformed: u64 = 0;
    let mut reap_at = Instant::now() + settings.reap_every;
    let mut print = |line: String| -> Result<(), Error> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Error::Protocol(format!("cannot write: {e}")))
    };
    loop {
        let timeout = interrupt::millis_until(reap_at);
        match beacon.recv_timeout(timeout) {
            Ok(Some(heard)) => {
                let (SocketAddr::V4(from), Some(port)) =
                    (heard.from, presence_port(&settings.header, &heard.payload))
                else {
                    malformed += 1;
                    log::debug!(
                        "ignored a beacon from {} ({malformed} so far): {}",
                        heard.from,
                        show(&heard.payload)
                    );
                    continue;
                };
                let service = SocketAddrV4::new(*from.ip(), port);
                if presence.heard(service, Instant::now()) {
                    print(format!("JOINED {service}"))?;
                }
            }
            Ok(None) => {}
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= reap_at {
            for service in presence.reap(now) {
                print(format!("LEFT {service}"))?;
            }
            reap_at = now + settings.reap_every;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_beacons_are_the_header_and_a_port_in_network_order() {
        assert_eq!(presence_beacon(b"FOO1", 5670), b"FOO1\x16\x26");
        assert_eq!(presence_port(b"FOO1", b"FOO1\x16\x26"), Some(5670));
        assert_eq!(presence_port(b"FOO1", b"FOO1\x16"), None);
        assert_eq!(presence_port(b"FOO1", b"FOO1\x16\x26\x00"), None);
        assert_eq!(presence_port(b"FOO1", b"BAR1\x16\x26"), None);
    }

    #[test]
    fn services_join_once_and_leave_after_the_expiry() {
        let start = Instant::now();
        let mut presence = Presence::new(Duration::from_secs(5));
        let a: SocketAddrV4 = "10.0.0.1:5670".parse().unwrap();
        let b: SocketAddrV4 = "10.0.0.2:5670".parse().unwrap();
        assert!(presence.is_empty());
        assert!(presence.heard(a, start));
        assert!(!presence.is_empty());
        assert!(!presence.heard(a, start + Duration::from_secs(1)));
        assert!(presence.heard(b, start + Duration::from_secs(2)));
        assert!(presence
            .reap(start + Duration::from_millis(5999))
            .is_empty());
        assert_eq!(presence.reap(start + Duration::from_secs(6)), vec![a]);
        assert_eq!(presence.reap(start + Duration::from_secs(7)), vec![b]);
        assert!(presence.heard(a, start + Duration::from_secs(8)), "back");
    }

    #[test]
    fn the_presence_table_is_bounded() {
        let now = Instant::now();
        let mut presence = Presence::new(Duration::from_secs(5));
        for n in 0..MAX_PEERS as u32 + 10 {
            presence.heard(SocketAddrV4::new(Ipv4Addr::from(n), 1), now);
        }
        assert_eq!(presence.len(), MAX_PEERS);
    }

    #[test]
    fn the_actor_publishes_hides_its_own_beacons_unless_echo_and_falls_silent() {
        // A port nobody else uses, loopback broadcast only.
        let port = udp::free_port();
        let context = zmq::Context::new();
        let speaker = Beacon::new(&context, port, udp::DEFAULT_BROADCAST).unwrap();
        let listener = Beacon::new(&context, port, udp::DEFAULT_BROADCAST).unwrap();
        listener.subscribe(b"TST").unwrap();
        speaker
            .publish(b"TST\x00\x01", Duration::from_millis(20))
            .unwrap();
        let heard = listener.recv_timeout(5000).unwrap().expect("a beacon");
        assert_eq!(heard.payload, b"TST\x00\x01");
        // The speaker, subscribed too, does not hear itself …
        speaker.subscribe(b"").unwrap();
        assert_eq!(speaker.recv_timeout(200).unwrap(), None);
        // … unless asked.
        speaker.echo(true).unwrap();
        assert!(speaker.recv_timeout(5000).unwrap().is_some());
        // Silence: what was in flight drains, then nothing more comes.
        speaker.silence().unwrap();
        let mut drained = 0;
        while listener.recv_timeout(300).unwrap().is_some() {
            drained += 1;
            assert!(drained < 1000, "beacons keep coming after silence");
        }
    }

    /// A raw sender on a loopback address of its own.
    fn raw_sender(port: u16) -> impl Fn(&[u8]) {
        let socket = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
        socket.set_broadcast(true).unwrap();
        move |payload: &[u8]| {
            socket
                .send_to(payload, (udp::DEFAULT_BROADCAST, port))
                .unwrap();
        }
    }

    /// Datagrams up to MAX_BEACON bytes are beacons, longer ones are not;
    /// a beacon equal to ours from a loopback address is ours; after
    /// UNSUBSCRIBE nothing is reported; PUBLISH takes MAX_BEACON bytes.
    #[test]
    fn bounds_own_beacons_and_unsubscribe() {
        let port = udp::free_port();
        let context = zmq::Context::new();
        let beacon = Beacon::new(&context, port, udp::DEFAULT_BROADCAST).unwrap();
        let send = raw_sender(port);
        assert!(beacon
            .publish(&[b'x'; MAX_BEACON + 1], MIN_INTERVAL)
            .is_err());
        let ours = [b'o'; MAX_BEACON];
        beacon.publish(&ours, Duration::from_secs(60)).unwrap();
        beacon.subscribe(b"").unwrap();
        send(&[b'l'; MAX_BEACON + 1]);
        send(&ours); // from 127.0.0.2: loopback, so one of our own
        send(&[b'm'; MAX_BEACON]);
        let heard = beacon.recv_timeout(5000).unwrap().expect("a beacon");
        assert_eq!(
            heard.payload, [b'm'; MAX_BEACON],
            "the first beacon reported"
        );
        assert_eq!(heard.from.ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        beacon.unsubscribe().unwrap();
        send(b"after");
        assert_eq!(beacon.recv_timeout(300).unwrap(), None, "unsubscribed");
        beacon.subscribe(b"aft").unwrap();
        send(b"after");
        let heard = beacon
            .recv_timeout(5000)
            .unwrap()
            .expect("subscribed again");
        assert_eq!(heard.payload, b"after");
    }

    /// A writer that sends each line on, and fails after `lines` lines (how
    /// the test ends `listen`, which otherwise runs until Ctrl-C).
    struct Lines {
        text: Vec<u8>,
        sent: std::sync::mpsc::Sender<String>,
        left: usize,
    }

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::other("enough"));
            }
            self.text.extend_from_slice(bytes);
            while let Some(end) = self.text.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.text.drain(..=end).collect();
                let _ = self
                    .sent
                    .send(String::from_utf8_lossy(&line).trim_end().to_string());
                self.left -= 1;
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `presence`'s loop: JOINED once for a service's beacons (malformed
    /// ones ignored), LEFT when they stop.
    #[test]
    fn listen_prints_joined_then_left() {
        let port = udp::free_port();
        let context = zmq::Context::new();
        let speaker = Beacon::new(&context, port, udp::DEFAULT_BROADCAST).unwrap();
        let (sent, lines) = std::sync::mpsc::channel();
        let listening = std::thread::spawn(move || {
            let context = zmq::Context::new();
            let listener = Beacon::new(&context, port, udp::DEFAULT_BROADCAST).unwrap();
            let settings = ListenSettings {
                header: b"FOO1".to_vec(),
                expiry: Duration::from_millis(300),
                reap_every: Duration::from_millis(50),
            };
            let mut out = Lines {
                text: Vec::new(),
                sent,
                left: 2,
            };
            let cpu = crate::broker::thread_cpu();
            let result = listen(&listener, &settings, &mut out);
            (result, crate::broker::thread_cpu() - cpu)
        });
        let send = raw_sender(port);
        let line = || lines.recv_timeout(Duration::from_secs(10)).expect("a line");
        // Malformed (one byte of port) and foreign beacons say nothing.
        let deadline = Instant::now() + Duration::from_secs(10);
        let joined = loop {
            assert!(Instant::now() < deadline, "no JOINED");
            send(b"FOO1\x16");
            send(b"BAR1\x16\x26");
            speaker
                .publish(&presence_beacon(b"FOO1", 5670), Duration::from_millis(20))
                .unwrap();
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                break line;
            }
        };
        assert!(
            joined.starts_with("JOINED 127.0.0.") && joined.ends_with(":5670"),
            "{joined}"
        );
        speaker.silence().unwrap();
        assert_eq!(line(), joined.replace("JOINED", "LEFT"));
        // Its writer refused a third line: listen returns the error.
        send(&presence_beacon(b"FOO1", 5671));
        let (result, cpu) = listening.join().unwrap();
        assert!(result.is_err());
        // It waited for beacons and reaps in between: a loop that reaped on
        // every turn would have used the CPU for the whole time.
        assert!(cpu < Duration::from_millis(150), "{cpu:?} of CPU");
    }
}
