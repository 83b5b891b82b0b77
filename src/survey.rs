//! Service discovery by UDP survey (study §2): "who offers service S?",
//! asked once by broadcast, answered by unicast. Behind `survey` and
//! `respond`, and usable by any server ([`Responder::spawn`]).
//!
//! **The wire** (this project's own format, all integers in network order):
//!
//! ```text
//! request  (surveyor → broadcast:5680)   "SVY1" | request id: u32 | service name (0–255 bytes UTF-8; empty = all)
//! answer   (responder → surveyor, unicast) "SVY1" | request id: u32 | TCP port: u16 | service name
//! ```
//!
//! A surveyor sends one request from an ephemeral UDP port to the broadcast
//! address (default [`DEFAULT_BROADCAST`](crate::udp::DEFAULT_BROADCAST),
//! `127.255.255.255`: every program on this machine and nothing else, so
//! services on one host find each other with no configuration), collects
//! answers for a window, and reports each distinct (service, address, port)
//! once; the address is the answer's source address. A responder listens on
//! the survey port with `SO_REUSEADDR` (several responders per host all hear
//! a broadcast) and answers, for each of its services whose name matches
//! (or all of them for an empty name), to the request's source address.
//!
//! **Hostile input.** Datagrams with a wrong header, a truncated body, a name
//! over 255 bytes or not UTF-8, or (at a surveyor) a request id other than
//! ours are ignored and counted in [`Ignored`] (logged at debug level with
//! the sender and an escaped excerpt). A responder answers at most
//! `max_answers_per_second` datagrams a second (default
//! [`DEFAULT_MAX_ANSWERS`]); past that, surveys are dropped and counted, so
//! a flood of requests (possibly with a forged source) cannot turn it into a
//! flood of answers. A surveyor keeps at most [`MAX_ANSWERS`] distinct
//! answers. Reads are done [`READ_BATCH`] at a time, so a flood never starves
//! the timers.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::actor::{self, Actor};
use crate::interrupt::{self, Pollable};
use crate::message::show;
use crate::Error;

/// The UDP port surveys go to.
pub const DEFAULT_PORT: u16 = 5680;
/// Every survey datagram starts with this.
pub const HEADER: &[u8; 4] = b"SVY1";
/// The longest service name, in bytes.
pub const MAX_SERVICE: usize = 255;
/// How long a surveyor collects answers by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(500);
/// Answers a responder sends per second at most, by default.
pub const DEFAULT_MAX_ANSWERS: u32 = 100;
/// Distinct answers a surveyor keeps at most.
pub const MAX_ANSWERS: usize = 10_000;
/// Services one responder answers for at most.
pub const MAX_SERVICES: usize = 64;
/// Datagrams read per wake-up at most.
pub const READ_BATCH: usize = 1000;
/// The largest datagram we ever need to read: an answer with the longest name.
const BUFFER: usize = HEADER.len() + 4 + 2 + MAX_SERVICE;

/// A survey: who offers `service` (empty: any)?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub service: String,
}

/// An answer: `service` is offered on TCP `port` of the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u32,
    pub port: u16,
    pub service: String,
}

/// Why a datagram was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    BadHeader,
    Truncated,
    /// A name over [`MAX_SERVICE`] bytes, or not UTF-8.
    BadName,
    /// An answer to somebody else's survey.
    ForeignId,
    /// A survey past the responder's answer rate.
    RateLimited,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::BadHeader => "bad header",
            Fault::Truncated => "truncated",
            Fault::BadName => "bad service name",
            Fault::ForeignId => "foreign request id",
            Fault::RateLimited => "over the answer rate",
        })
    }
}

/// Counts of ignored datagrams, by [`Fault`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    pub bad_header: u64,
    pub truncated: u64,
    pub bad_name: u64,
    pub foreign_id: u64,
    pub rate_limited: u64,
}

impl Ignored {
    /// Counts one, and logs it at debug level with the running count.
    fn count(&mut self, fault: Fault, from: SocketAddr, datagram: &[u8]) {
        let counter = match fault {
            Fault::BadHeader => &mut self.bad_header,
            Fault::Truncated => &mut self.truncated,
            Fault::BadName => &mut self.bad_name,
            Fault::ForeignId => &mut self.foreign_id,
            Fault::RateLimited => &mut self.rate_limited,
        };
        *counter += 1;
        log::debug!(
            "ignored a datagram of {} bytes from {from} ({fault}, {} so far): {}",
            datagram.len(),
            *counter,
            show(datagram)
        );
    }

    pub fn total(&self) -> u64 {
        self.bad_header + self.truncated + self.bad_name + self.foreign_id + self.rate_limited
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignored {} bad header, {} truncated, {} bad name, {} foreign id, {} over rate",
            self.bad_header, self.truncated, self.bad_name, self.foreign_id, self.rate_limited
        )
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(self.service.as_bytes());
        bytes
    }

    pub fn decode(datagram: &[u8]) -> Result<Request, Fault> {
        let rest = strip_header(datagram)?;
        let (id, name) = split_u32(rest)?;
        Ok(Request {
            id,
            service: service_name(name)?,
        })
    }
}

impl Answer {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(&self.port.to_be_bytes());
        bytes.extend_from_slice(self.service.as_bytes());
        bytes
    }

    pub fn decode(datagram: &[u8]) -> Result<Answer, Fault> {
        let rest = strip_header(datagram)?;
        let (id, rest) = split_u32(rest)?;
        let Some((port, name)) = rest.split_first_chunk::<2>() else {
            return Err(Fault::Truncated);
        };
        Ok(Answer {
            id,
            port: u16::from_be_bytes(*port),
            service: service_name(name)?,
        })
    }
}

fn strip_header(datagram: &[u8]) -> Result<&[u8], Fault> {
    match datagram.strip_prefix(HEADER) {
        Some(rest) => Ok(rest),
        None if datagram.len() < HEADER.len() && HEADER.starts_with(datagram) => {
            Err(Fault::Truncated)
        }
        None => Err(Fault::BadHeader),
    }
}

fn split_u32(bytes: &[u8]) -> Result<(u32, &[u8]), Fault> {
    let (id, rest) = bytes.split_first_chunk::<4>().ok_or(Fault::Truncated)?;
    Ok((u32::from_be_bytes(*id), rest))
}

fn service_name(bytes: &[u8]) -> Result<String, Fault> {
    if bytes.len() > MAX_SERVICE {
        return Err(Fault::BadName);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| Fault::BadName)
}

/// A UDP socket on `0.0.0.0:port` (0: any port), non-blocking, with
/// `SO_BROADCAST`, and `SO_REUSEADDR` so several programs share the port.
pub fn bind_udp(port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_broadcast(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Reads one datagram without blocking: `Ok(None)` if none is waiting.
fn try_recv<'b>(
    socket: &UdpSocket,
    buffer: &'b mut [u8],
) -> io::Result<Option<(&'b [u8], SocketAddr)>> {
    match socket.recv_from(buffer) {
        Ok((size, from)) => Ok(Some((&buffer[..size], from))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        // An ICMP error from an earlier send (port unreachable): not ours to mind.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------
// Surveyor

/// A service found: `service` at `tcp://<address>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub service: String,
    pub address: SocketAddrV4,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at tcp://{}",
            show(self.service.as_bytes()),
            self.address
        )
    }
}

/// What a survey brought back.
#[derive(Clone, Debug, Default)]
pub struct Survey {
    pub found: Vec<Found>,
    pub ignored: Ignored,
}

/// Surveys for `service` ("" = any): one request from `socket` (see
/// [`bind_udp`]`(0)`) to `target`, then answers for `window`. Each new
/// distinct answer is passed to `on_found` as it comes. Ctrl-C ends the
/// window early (what came so far is returned).
pub fn survey(
    socket: &UdpSocket,
    target: SocketAddrV4,
    service: &str,
    window: Duration,
    mut on_found: impl FnMut(&Found),
) -> Result<Survey, Error> {
    if service.len() > MAX_SERVICE {
        return Err(Error::Protocol(format!(
            "service name of {} bytes (at most {MAX_SERVICE})",
            service.len()
        )));
    }
    let id: u32 = rand::random();
    let request = Request {
        id,
        service: service.to_string(),
    };
    socket
        .send_to(&request.encode(), target)
        .map_err(|e| Error::Protocol(format!("cannot send the survey to {target}: {e}")))?;
    log::debug!("survey {id:#010x} for {:?} sent to {target}", service);
    let deadline = Instant::now() + window;
    let mut result = Survey::default();
    let mut seen = BTreeSet::new();
    let mut buffer = [0u8; BUFFER + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match interrupt::poll_any(&[Pollable::Fd(socket.as_raw_fd())], interrupt::millis(left)) {
            Ok(_) => {}
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        }
        for _ in 0..READ_BATCH {
            let Some((datagram, from)) = try_recv(socket, &mut buffer)
                .map_err(|e| Error::Protocol(format!("UDP receive failed: {e}")))?
            else {
                break;
            };
            let SocketAddr::V4(from_v4) = from else {
                continue;
            };
            let answer = match Answer::decode(datagram) {
                Ok(answer) if answer.id == id => answer,
                Ok(_) => {
                    result.ignored.count(Fault::ForeignId, from, datagram);
                    continue;
                }
                Err(fault) => {
                    result.ignored.count(fault, from, datagram);
                    continue;
                }
            };
            let found = Found {
                service: answer.service,
                address: SocketAddrV4::new(*from_v4.ip(), answer.port),
            };
            if seen.len() < MAX_ANSWERS && seen.insert(found.clone()) {
                on_found(&found);
                result.found.push(found);
            }
        }
    }
    Ok(result)
}

// ---------------------------------------------------------------------------
// Responder

/// A service a responder answers for: its name and TCP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub port: u16,
}

impl Service {
    /// `name:port` (the name may itself contain colons: the last one counts).
    pub fn parse(text: &str) -> Result<Service, String> {
        let (name, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?}: expected NAME:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a TCP port"))?;
        if name.len() > MAX_SERVICE {
            return Err(format!("{text:?}: the name is over {MAX_SERVICE} bytes"));
        }
        Ok(Service {
            name: name.to_string(),
            port,
        })
    }
}

/// Answers surveys for a set of services. [`handle`](Responder::handle) is
/// the pure decision (tests drive it with a made-up clock);
/// [`run`](Responder::run) and [`spawn`](Responder::spawn) do the I/O.
pub struct Responder {
    socket: UdpSocket,
    services: Vec<Service>,
    max_per_second: u32,
    window_start: Instant,
    sent_in_window: u32,
    pub ignored: Ignored,
    pub answered: u64,
}

impl Responder {
    /// A responder on an already bound `socket` (see [`bind_udp`]).
    pub fn new(
        socket: UdpSocket,
        services: Vec<Service>,
        max_per_second: u32,
    ) -> Result<Responder, Error> {
        if services.len() > MAX_SERVICES {
            return Err(Error::Protocol(format!(
                "{} services (at most {MAX_SERVICES})",
                services.len()
            )));
        }
        Ok(Responder {
            socket,
            services,
            max_per_second,
            window_start: Instant::now(),
            sent_in_window: 0,
            ignored: Ignored::default(),
            answered: 0,
        })
    }

    /// The answers to send for `datagram` received from `from` at `now`
    /// (counting it if it is ignored).
    pub fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) -> Vec<Answer> {
        let request = match Request::decode(datagram) {
            Ok(request) => request,
            Err(fault) => {
                self.ignored.count(fault, from, datagram);
                return Vec::new();
            }
        };
        let answers: Vec<Answer> = self
            .services
            .iter()
            .filter(|s| request.service.is_empty() || s.name == request.service)
            .map(|s| Answer {
                id: request.id,
                port: s.port,
                service: s.name.clone(),
            })
            .collect();
        if answers.is_empty() {
            log::debug!(
                "survey {:#010x} from {from} for {}: not ours",
                request.id,
                show(request.service.as_bytes())
            );
            return answers;
        }
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.sent_in_window = 0;
        }
        if self.sent_in_window >= self.max_per_second {
            self.ignored.count(Fault::RateLimited, from, datagram);
            return Vec::new();
        }
        self.sent_in_window += answers.len() as u32;
        answers
    }

    /// Replaces the services answered for (a broker's change as workers
    /// come and go); at most [`MAX_SERVICES`] are kept.
    pub fn set_services(&mut self, mut services: Vec<Service>) {
        services.truncate(MAX_SERVICES);
        self.services = services;
    }

    /// The UDP socket, to poll it beside other sockets.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Reads and answers what is waiting ([`READ_BATCH`] at most).
    pub fn serve_batch(&mut self) {
        let mut buffer = [0u8; BUFFER + 1];
        for _ in 0..READ_BATCH {
            let (datagram, from) = match try_recv(&self.socket, &mut buffer) {
                Ok(Some((datagram, from))) => (datagram.to_vec(), from),
                Ok(None) => return,
                Err(e) => {
                    log::warn!("UDP receive failed: {e}");
                    return;
                }
            };
            for answer in self.handle(&datagram, from, Instant::now()) {
                match self.socket.send_to(&answer.encode(), from) {
                    Ok(_) => {
                        self.answered += 1;
                        log::debug!(
                            "answered survey {:#010x} from {from}: {} on port {}",
                            answer.id,
                            show(answer.service.as_bytes()),
                            answer.port
                        );
                    }
                    Err(e) => log::debug!("cannot answer {from}: {e}"),
                }
            }
        }
    }

    /// Answers surveys until Ctrl-C (returns `Ok(())` then).
    pub fn run(&mut self) -> Result<(), Error> {
        self.serve(None)
    }

    /// Runs the responder on an [`Actor`] thread beside a server's own work;
    /// dropping the actor stops it.
    pub fn spawn(self, context: &zmq::Context) -> Result<Actor, Error> {
        let mut responder = self;
        Actor::new(context, move |pipe| {
            if pipe.signal(0).is_err() {
                return;
            }
            if let Err(e) = responder.serve(Some(pipe)) {
                log::warn!("survey responder stopped: {e}");
            }
        })
    }

    /// The one loop of [`run`](Self::run) and [`spawn`](Self::spawn): sleeps
    /// in `poll` until a datagram comes (or, on an actor, its pipe speaks);
    /// `Ok(())` on Ctrl-C or when the actor is told to end.
    fn serve(&mut self, pipe: Option<&actor::Pipe>) -> Result<(), Error> {
        let mut items = vec![Pollable::Fd(self.socket.as_raw_fd())];
        items.extend(pipe.map(|pipe| Pollable::Socket(pipe.socket())));
        loop {
            let ready = match interrupt::poll_any(&items, -1) {
                Ok(ready) => ready,
                Err(Error::Interrupted) => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Some(pipe) = pipe.filter(|_| ready[1]) {
                if pipe.recv().map_or(true, |m| actor::is_term(&m)) {
                    return Ok(());
                }
            }
            if ready[0] {
                self.serve_batch();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn requests_and_answers_round_trip_in_the_documented_layout() {
        let request = Request {
            id: 0x01020304,
            service: "echo".into(),
        };
        assert_eq!(request.encode(), b"SVY1\x01\x02\x03\x04echo");
        assert_eq!(Request::decode(&request.encode()), Ok(request));
        let answer = Answer {
            id: 7,
            port: 5555,
            service: "echo".into(),
        };
        assert_eq!(answer.encode(), b"SVY1\x00\x00\x00\x07\x15\xb3echo");
        assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
    }

    #[test]
    fn malformed_datagrams_are_told_apart() {
        assert_eq!(Request::decode(b"XVY1\0\0\0\0echo"), Err(Fault::BadHeader));
        assert_eq!(Request::decode(b"SV"), Err(Fault::Truncated));
        assert_eq!(Request::decode(b""), Err(Fault::Truncated));
        assert_eq!(Request::decode(b"SVY1\0\0"), Err(Fault::Truncated));
        assert_eq!(Answer::decode(b"SVY1\0\0\0\0\x15"), Err(Fault::Truncated));
        assert_eq!(Request::decode(b"SVY1\0\0\0\0\xff"), Err(Fault::BadName));
        let mut long = b"SVY1\0\0\0\0".to_vec();
        long.extend(vec![b'a'; MAX_SERVICE + 1]);
        assert_eq!(Request::decode(&long), Err(Fault::BadName));
    }

    fn responder(max: u32) -> Responder {
        let services = vec![
            Service::parse("echo:5555").unwrap(),
            Service::parse("weather:5556").unwrap(),
        ];
        Responder::new(bind_udp(0).unwrap(), services, max).unwrap()
    }

    #[test]
    fn a_responder_answers_its_services_and_counts_what_it_ignores() {
        let mut r = responder(100);
        let now = Instant::now();
        let ask = |service: &str| {
            Request {
                id: 9,
                service: service.into(),
            }
            .encode()
        };
        let ports = |answers: Vec<Answer>| answers.iter().map(|a| a.port).collect::<Vec<_>>();
        assert_eq!(ports(r.handle(&ask("echo"), from(), now)), [5555]);
        assert_eq!(ports(r.handle(&ask(""), from(), now)), [5555, 5556]);
        assert!(r.handle(&ask("other"), from(), now).is_empty());
        assert!(r.handle(b"JUNK\0\0\0\0", from(), now).is_empty());
        assert!(r.handle(b"SVY1\0", from(), now).is_empty());
        assert_eq!((r.ignored.bad_header, r.ignored.truncated), (1, 1));
    }

    #[test]
    fn a_responder_answers_at_most_its_rate_per_second() {
        let mut r = responder(10);
        let now = Instant::now();
        let ask = Request {
            id: 1,
            service: "echo".into(),
        }
        .encode();
        let answered = (0..100)
            .filter(|_| !r.handle(&ask, from(), now).is_empty())
            .count();
        assert_eq!(answered, 10);
        assert_eq!(r.ignored.rate_limited, 90);
        assert!(!r
            .handle(&ask, from(), now + Duration::from_secs(1))
            .is_empty());
    }

    #[test]
    fn a_spawned_responder_answers_beside_a_server_until_dropped() {
        // A port nobody else uses, loopback broadcast only.
        let port = crate::udp::free_port();
        let context = zmq::Context::new();
        let socket = bind_udp(port).unwrap();
        let actor = Responder::new(socket, vec![Service::parse("echo:5555").unwrap()], 100)
            .unwrap()
            .spawn(&context)
            .unwrap();
        let target = SocketAddrV4::new(crate::udp::DEFAULT_BROADCAST, port);
        let found = survey(
            &bind_udp(0).unwrap(),
            target,
            "echo",
            Duration::from_secs(2),
            |_| {},
        )
        .unwrap()
        .found;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].address.port(), 5555);
        drop(actor);
        let found = survey(
            &bind_udp(0).unwrap(),
            target,
            "echo",
            Duration::from_millis(300),
            |_| {},
        )
        .unwrap()
        .found;
        assert!(found.is_empty(), "the responder stopped with its actor");
    }

    #[test]
    fn service_specs_parse_name_and_port() {
        assert_eq!(
            Service::parse("a:b:80"),
            Ok(Service {
                name: "a:b".into(),
                port: 80
            })
        );
        assert!(Service::parse("echo").is_err());
        assert!(Service::parse("echo:99999").is_err());
    }

    /// The longest name there is, both ways through real sockets: the
    /// receive buffers hold a whole answer.
    #[test]
    fn a_service_name_of_the_longest_size_is_surveyed_and_answered_whole() {
        let port = crate::udp::free_port();
        let context = zmq::Context::new();
        let longest = "s".repeat(MAX_SERVICE);
        let service = Service::parse(&format!("{longest}:6000")).unwrap();
        let actor = Responder::new(bind_udp(port).unwrap(), vec![service], 100)
            .unwrap()
            .spawn(&context)
            .unwrap();
        let target = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        let surveyed = survey(
            &bind_udp(0).unwrap(),
            target,
            &longest,
            Duration::from_secs(2),
            |_| {},
        )
        .unwrap();
        assert_eq!(surveyed.found.len(), 1, "{:?}", surveyed.ignored);
        assert_eq!(surveyed.found[0].service, longest);
        assert_eq!(surveyed.found[0].address.port(), 6000);
        drop(actor);
    }

    #[test]
    fn faults_and_counts_read_as_words_and_add_up() {
        let ignored = Ignored {
            bad_header: 1,
            truncated: 2,
            bad_name: 4,
            foreign_id: 8,
            rate_limited: 16,
        };
        assert_eq!(ignored.total(), 31);
        assert_eq!(
            ignored.to_string(),
            "ignored 1 bad header, 2 truncated, 4 bad name, 8 foreign id, 16 over rate"
        );
        let words: Vec<String> = [
            Fault::BadHeader,
            Fault::Truncated,
            Fault::BadName,
            Fault::ForeignId,
            Fault::RateLimited,
        ]
        .iter()
        .map(Fault::to_string)
        .collect();
        assert_eq!(
            words,
            [
                "bad header",
                "truncated",
                "bad service name",
                "foreign request id",
                "over the answer rate"
            ]
        );
        // Short garbage that is not the start of the header is a bad
        // header, not a truncated one.
        assert_eq!(Request::decode(b"XY"), Err(Fault::BadHeader));
    }

    /// A surveyor against a responder the test plays by hand: answers to
    /// another survey, duplicates and garbage are not found; each distinct
    /// answer is found once, and printed as where to connect.
    #[test]
    fn a_survey_keeps_its_own_distinct_answers_only() {
        let (fake, port) = fake_responder();
        let answering = std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            let (size, from) = fake.recv_from(&mut buffer).unwrap();
            let id = Request::decode(&buffer[..size]).unwrap().id;
            let answer = |id: u32, port: u16, service: &str| {
                Answer {
                    id,
                    port,
                    service: service.into(),
                }
                .encode()
            };
            for datagram in [
                answer(id ^ 1, 1, "echo"),
                answer(id, 2, "echo"),
                answer(id, 2, "echo"),
                answer(id, 3, "other"),
                b"JUNK".to_vec(),
                // One byte over the longest name: ignored, not cut to fit.
                answer(id, 4, &"n".repeat(MAX_SERVICE + 1)),
            ] {
                fake.send_to(&datagram, from).unwrap();
            }
        });
        let target = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        let mut heard = 0;
        let surveyed = survey(
            &bind_udp(0).unwrap(),
            target,
            "",
            Duration::from_secs(1),
            |_| heard += 1,
        )
        .unwrap();
        answering.join().unwrap();
        let found: Vec<String> = surveyed.found.iter().map(Found::to_string).collect();
        assert_eq!(
            found,
            ["echo at tcp://127.0.0.1:2", "other at tcp://127.0.0.1:3"]
        );
        assert_eq!(heard, 2);
        assert_eq!(
            (
                surveyed.ignored.foreign_id,
                surveyed.ignored.bad_header,
                surveyed.ignored.bad_name
            ),
            (1, 1, 1)
        );
    }

    /// A UDP socket for a test to play a responder by hand: blocking, with
    /// a 10 s read timeout; and its port.
    fn fake_responder() -> (UdpSocket, u16) {
        let fake = bind_udp(0).unwrap();
        fake.set_nonblocking(false).unwrap();
        fake.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let port = fake.local_addr().unwrap().port();
        (fake, port)
    }

    /// [`MAX_ANSWERS`] distinct answers are kept, not one more: a fake
    /// sends five more than that, 50 at a time, each batch once the survey
    /// has heard the one before (so that loopback drops nothing).
    #[test]
    fn a_survey_keeps_at_most_its_bound_of_answers() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let (fake, port) = fake_responder();
        let heard = Arc::new(AtomicUsize::new(0));
        let answering = {
            let heard = heard.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 512];
                let (size, from) = fake.recv_from(&mut buffer).unwrap();
                let id = Request::decode(&buffer[..size]).unwrap().id;
                for port in 1..=MAX_ANSWERS as u16 + 5 {
                    let answer = Answer {
                        id,
                        port,
                        service: "s".into(),
                    };
                    fake.send_to(&answer.encode(), from).unwrap();
                    if port % 50 == 0 {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while heard.load(Ordering::SeqCst) < port as usize {
                            assert!(Instant::now() < deadline, "answer {port} never heard");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            })
        };
        let target = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        let surveyed = survey(
            &bind_udp(0).unwrap(),
            target,
            "s",
            Duration::from_secs(5),
            |_| {
                heard.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        answering.join().unwrap();
        assert_eq!(surveyed.found.len(), MAX_ANSWERS);
        assert_eq!(heard.load(Ordering::SeqCst), MAX_ANSWERS);
    }

    #[test]
    fn a_responder_answers_for_the_services_it_is_given_and_counts_its_answers() {
        let port = crate::udp::free_port();
        let mut r = responder(100);
        let many: Vec<Service> = (0..MAX_SERVICES + 6)
            .map(|n| Service::parse(&format!("s{n}:{}", 7000 + n)).unwrap())
            .collect();
        r.set_services(many);
        assert_eq!(r.services.len(), MAX_SERVICES);
        let ask = |service: &str| {
            Request {
                id: 1,
                service: service.into(),
            }
            .encode()
        };
        assert!(
            r.handle(&ask("echo"), from(), Instant::now()).is_empty(),
            "replaced"
        );
        assert_eq!(r.handle(&ask("s3"), from(), Instant::now())[0].port, 7003);
        // Through its socket: every answer sent is counted.
        let asker = bind_udp(port).unwrap();
        let target = r.socket().local_addr().unwrap();
        asker.send_to(&ask("s1"), target).unwrap();
        asker.send_to(&ask("s2"), target).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.answered < 2 {
            assert!(Instant::now() < deadline, "answered {}", r.answered);
            r.serve_batch();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(r.answered, 2);
    }
}
