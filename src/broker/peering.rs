//! Peering (study part 3): brokers joined by configuration, each knowing what
//! the others can serve, so a request for a service with no worker here goes
//! to a peer that has one (the guide's `peering3` idea, with SBP services).
//!
//! ```text
//!   client ──► broker A ──(SBP/1 REQUEST, hops 1)──► broker C ──► worker
//!   client ◄── broker A ◄──(SBP/1 REPLY)──────────── broker C ◄──
//! ```
//!
//! * **Links.** For every peer endpoint a broker has one DEALER socket and
//!   talks to the peer as an ordinary SBP/1 client: nothing new on the wire.
//! * **Capacity.** Every [`POLL_INTERVAL`] it asks each peer `mmi.services`
//!   and keeps, per (environment, service), the peer's *own* workers and
//!   idle workers (a broker reports only its local workers, so capacity is
//!   never passed on second hand).
//! * **Forwarding.** A request for a service whose policy is `forward` and
//!   that has no worker here goes to the live peer with workers for it and
//!   the most idle workers less the requests already forwarded to it (ties:
//!   the first in the configuration). It travels with a correlation id of
//!   this broker's and the property `hops: 1`; the reply comes back on the
//!   same link and goes to the client with the client's own correlation id
//!   and the peer's status. No peer with workers: the client is answered 503
//!   at once.
//! * **No loops.** A broker never forwards a request that has a `hops`
//!   property: a request crosses one link at most.
//! * **A silent peer.** Any message from a peer (a capacity answer, a reply)
//!   proves it alive; after [`PEER_TTL`] of silence (3 polls) it is
//!   forgotten: its capacity is dropped and each request forwarded to it and
//!   not answered is **answered 500**, or, if it is `idempotent`, **handled
//!   again** (forwarded to another peer, served here, or answered 503). The
//!   rule is the one for a worker that dies while busy, for the same reason:
//!   the peer may have given the request to a worker already, and only an
//!   idempotent request may run twice. The link keeps polling, and the peer
//!   is used again as soon as it answers.
//!
//! Bounds: [`MAX_FORWARDED`] requests forwarded and not answered (past it,
//! 503); a capacity answer is read for [`crate::broker::state::MAX_SERVICES`]
//! services at most; sends never block (a full link counts as no capacity).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::broker::protocol::{self, ClientCommand, Properties, Reply, Request, Status};
use crate::broker::state::MAX_SERVICES;
use crate::message::show;
use crate::{Error, Message};

/// How often a broker asks each peer for its capacity.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// Silence after which a peer is forgotten.
pub const PEER_TTL: Duration = Duration::from_millis(3000);
/// Requests forwarded and not yet answered, over all peers.
pub const MAX_FORWARDED: usize = 10_000;
/// Messages queued towards one peer.
const LINK_HWM: i32 = 10_000;

/// A peer's workers for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    pub workers: usize,
    pub idle: usize,
}

struct Link {
    endpoint: String,
    socket: zmq::Socket,
    last_heard: Option<Instant>,
    alive: bool,
    /// (environment, service) → the peer's own workers.
    capacity: HashMap<(String, Vec<u8>), Capacity>,
    poll_at: Instant,
    /// Requests forwarded to this peer and not answered.
    outstanding: usize,
    forwarded_total: u64,
}

/// A request handed to a peer and not answered yet.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// Index of the peer in the configuration.
    pub peer: usize,
    /// The client's token (the broker's).
    pub client: Vec<u8>,
    /// The request as the client sent it (its own correlation id).
    pub request: Request,
}

/// One peer as management reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PeerReport {
    pub endpoint: String,
    pub alive: bool,
    /// Services (in any environment) the peer has workers for.
    pub services: usize,
    pub outstanding: usize,
    pub forwarded: u64,
}

/// The capacity part of a peer's `mmi.services` answer.
#[derive(Deserialize)]
struct ServicesDocument {
    services: Vec<ServiceLine>,
}

#[derive(Deserialize)]
struct ServiceLine {
    environment: String,
    service: String,
    workers: usize,
    idle: usize,
}

/// What [`Peering::tick`] found.
#[derive(Debug, Default)]
pub struct Tick {
    /// Endpoints of the peers just forgotten.
    pub gone: Vec<String>,
    /// Their requests, to answer 500 or handle again.
    pub orphans: Vec<Forwarded>,
}

/// All of a broker's peer links. See the module docs.
pub struct Peering {
    links: Vec<Link>,
    context: zmq::Context,
    identity: Vec<u8>,
    max_frame: i64,
    /// This broker's correlation id → the forwarded request.
    forwarded: HashMap<Vec<u8>, Forwarded>,
    /// (client token, client correlation) of every forwarded request, so a
    /// client's retry is not forwarded twice.
    origins: HashSet<(Vec<u8>, Vec<u8>)>,
    next: u64,
    interval: Duration,
    ttl: Duration,
    /// Replies from peers that matched nothing (late, or after the peer was
    /// forgotten), and malformed messages.
    pub strays: u64,
}

impl Peering {
    /// One link per endpoint, connected now (libzmq connects in the
    /// background and reconnects by itself).
    pub fn new(
        context: &zmq::Context,
        endpoints: &[String],
        interval: Duration,
        ttl: Duration,
        max_frame: i64,
    ) -> Result<Peering, Error> {
        let identity = format!("P-{:016x}", rand::random::<u64>()).into_bytes();
        let now = Instant::now();
        let mut links = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            links.push(Link {
                endpoint: endpoint.clone(),
                socket: link_socket(context, endpoint, &identity, max_frame)?,
                last_heard: None,
                alive: false,
                capacity: HashMap::new(),
                poll_at: now,
                outstanding: 0,
                forwarded_total: 0,
            });
        }
        Ok(Peering {
            links,
            context: context.clone(),
            identity,
            max_frame,
            forwarded: HashMap::new(),
            origins: HashSet::new(),
            next: 0,
            interval,
            ttl,
            strays: 0,
        })
    }

    /// The links' sockets, in configuration order (to poll).
    pub fn sockets(&self) -> impl Iterator<Item = &zmq::Socket> {
        self.links.iter().map(|link| &link.socket)
    }

    /// Is this client request forwarded already (a retry)?
    pub fn is_forwarded(&self, client: &[u8], correlation: &[u8]) -> bool {
        !self.origins.is_empty()
            && self
                .origins
                .contains(&(client.to_vec(), correlation.to_vec()))
    }

    /// What peer `index` has for a service.
    pub fn capacity(&self, index: usize, environment: &str, service: &[u8]) -> Capacity {
        self.links
            .get(index)
            .and_then(|link| {
                link.capacity
                    .get(&(environment.to_string(), service.to_vec()))
            })
            .copied()
            .unwrap_or_default()
    }

    /// The peer to forward to: alive, with workers for the service, the most
    /// idle workers less what is forwarded to it already.
    fn choose(&self, environment: &str, service: &[u8]) -> Option<usize> {
        let key = (environment.to_string(), service.to_vec());
        self.links
            .iter()
            .enumerate()
            .filter(|(_, link)| link.alive)
            .filter_map(|(index, link)| {
                let capacity = link.capacity.get(&key)?;
                (capacity.workers > 0)
                    .then(|| (capacity.idle as i64 - link.outstanding as i64, index))
            })
            // Highest score; the first in the configuration on a tie.
            .max_by_key(|&(score, index)| (score, std::cmp::Reverse(index)))
            .map(|(_, index)| index)
    }

    /// Forwards a client's request to a peer with workers for it. Returns
    /// the peer's endpoint, or gives the request back when no peer can take
    /// it (none has workers, the link is full, [`MAX_FORWARDED`] reached, or
    /// the request may not be forwarded).
    pub fn forward(&mut self, client: Vec<u8>, request: Request) -> Result<&str, Box<Request>> {
        if self.forwarded.len() >= MAX_FORWARDED {
            return Err(Box::new(request));
        }
        let Some(properties) = request.properties.forwarded() else {
            return Err(Box::new(request));
        };
        let Some(index) = self.choose(&request.properties.environment, &request.service) else {
            return Err(Box::new(request));
        };
        self.next += 1;
        let correlation = format!("fwd-{}", self.next).into_bytes();
        let frames = ClientCommand::Request(Request {
            service: request.service.clone(),
            address: request.address.clone(),
            properties,
            correlation: correlation.clone(),
            body: request.body.clone(),
        })
        .to_frames(false);
        let link = &mut self.links[index];
        if !send_now(&link.socket, frames) {
            return Err(Box::new(request));
        }
        link.outstanding += 1;
        link.forwarded_total += 1;
        self.origins
            .insert((client.clone(), request.correlation.clone()));
        self.forwarded.insert(
            correlation,
            Forwarded {
                peer: index,
                client,
                request,
            },
        );
        Ok(&self.links[index].endpoint)
    }

    /// Reads what peer `index` sent (a bounded batch); returns the replies
    /// to pass on to clients: (client token, reply with the client's own
    /// correlation id).
    pub fn receive(&mut self, index: usize, now: Instant) -> Vec<(Vec<u8>, Reply)> {
        let mut replies = Vec::new();
        for _ in 0..crate::broker::server::BATCH {
            let Some(link) = self.links.get(index) else {
                break;
            };
            let frames = match link.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(_) => break,
            };
            self.heard(index, now);
            let reply = match protocol::parse_client(&frames) {
                Ok(parsed) => match parsed.command {
                    ClientCommand::Reply(reply) => reply,
                    ClientCommand::Pong => continue,
                    _ => {
                        self.strays += 1;
                        continue;
                    }
                },
                Err(malformed) => {
                    self.strays += 1;
                    log::warn!(
                        "broker: malformed message from peer {}: {}",
                        self.links[index].endpoint,
                        malformed.what
                    );
                    continue;
                }
            };
            if reply.correlation.starts_with(b"cap-") {
                self.take_capacity(index, &reply);
                continue;
            }
            let Some(forwarded) = self.forwarded.remove(&reply.correlation) else {
                self.strays += 1;
                log::debug!(
                    "broker: a reply from peer {} for nothing forwarded: {}",
                    self.links[index].endpoint,
                    show(&reply.correlation)
                );
                continue;
            };
            if let Some(link) = self.links.get_mut(forwarded.peer) {
                link.outstanding = link.outstanding.saturating_sub(1);
            }
            self.origins.remove(&(
                forwarded.client.clone(),
                forwarded.request.correlation.clone(),
            ));
            replies.push((
                forwarded.client,
                Reply {
                    service: forwarded.request.service,
                    correlation: forwarded.request.correlation,
                    ..reply
                },
            ));
        }
        replies
    }

    fn heard(&mut self, index: usize, now: Instant) {
        let link = &mut self.links[index];
        link.last_heard = Some(now);
        if !link.alive {
            link.alive = true;
            log::info!("broker: peer {} is up", link.endpoint);
        }
    }

    /// A peer's `mmi.services` answer: its own workers per service.
    fn take_capacity(&mut self, index: usize, reply: &Reply) {
        let document = match (reply.status, reply.body.get(1)) {
            (Status::OK, Some(json)) => serde_json::from_slice::<ServicesDocument>(json).ok(),
            _ => None,
        };
        let Some(document) = document else {
            self.strays += 1;
            log::warn!(
                "broker: peer {} sent a capacity answer that is not one",
                self.links[index].endpoint
            );
            return;
        };
        let link = &mut self.links[index];
        let capacity: HashMap<(String, Vec<u8>), Capacity> = document
            .services
            .into_iter()
            .take(MAX_SERVICES)
            .filter(|line| line.workers > 0)
            .map(|line| {
                (
                    (line.environment, line.service.into_bytes()),
                    Capacity {
                        workers: line.workers,
                        idle: line.idle,
                    },
                )
            })
            .collect();
        let mut names: Vec<String> = capacity
            .keys()
            .map(|(environment, service)| match environment.as_str() {
                "default" => show(service),
                _ => format!("{}/{}", show(environment.as_bytes()), show(service)),
            })
            .collect();
        let mut before: Vec<&(String, Vec<u8>)> = link.capacity.keys().collect();
        let mut after: Vec<&(String, Vec<u8>)> = capacity.keys().collect();
        before.sort();
        after.sort();
        if before != after {
            names.sort();
            let shown = names.len().min(5);
            let more = match names.len() - shown {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            log::info!(
                "broker: peer {} has workers for {} services: {}{more}",
                link.endpoint,
                names.len(),
                names[..shown].join(" ")
            );
        }
        link.capacity = capacity;
    }

    /// Time passes: capacity polls go out when due, silent peers are
    /// forgotten (their requests returned for the caller to answer).
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick::default();
        for index in 0..self.links.len() {
            let link = &mut self.links[index];
            if now >= link.poll_at {
                link.poll_at = now + self.interval;
                self.next += 1;
                let frames = ClientCommand::Request(Request {
                    service: b"mmi.services".to_vec(),
                    address: Vec::new(),
                    properties: Properties::default(),
                    correlation: format!("cap-{}", self.next).into_bytes(),
                    body: Vec::new(),
                })
                .to_frames(false);
                send_now(&link.socket, frames);
            }
            let silent = link
                .last_heard
                .is_some_and(|heard| now.duration_since(heard) >= self.ttl);
            if link.alive && silent {
                link.alive = false;
                link.capacity.clear();
                link.outstanding = 0;
                // A new socket, so that nothing queued for the dead peer
                // (requests, polls) is delivered when it comes back.
                match link_socket(
                    &self.context,
                    &link.endpoint,
                    &self.identity,
                    self.max_frame,
                ) {
                    Ok(socket) => link.socket = socket,
                    Err(e) => {
                        log::error!("broker: cannot reconnect to peer {}: {e}", link.endpoint)
                    }
                }
                tick.gone.push(link.endpoint.clone());
                let mine: Vec<Vec<u8>> = self
                    .forwarded
                    .iter()
                    .filter(|(_, f)| f.peer == index)
                    .map(|(correlation, _)| correlation.clone())
                    .collect();
                for correlation in mine {
                    if let Some(forwarded) = self.forwarded.remove(&correlation) {
                        self.origins.remove(&(
                            forwarded.client.clone(),
                            forwarded.request.correlation.clone(),
                        ));
                        tick.orphans.push(forwarded);
                    }
                }
            }
        }
        tick
    }

    /// Every peer, for management.
    pub fn report(&self) -> Vec<PeerReport> {
        self.links
            .iter()
            .map(|link| PeerReport {
                endpoint: link.endpoint.clone(),
                alive: link.alive,
                services: link.capacity.len(),
                outstanding: link.outstanding,
                forwarded: link.forwarded_total,
            })
            .collect()
    }
}

/// One peer link: a DEALER connected to the peer. No `ZMQ_IMMEDIATE` (see
/// [`crate::socket`]: on a socket that reads, it throws away what a peer
/// delivered when the peer goes, and can abort libzmq mid-message), so
/// while the peer is down what is sent waits in the socket's queue, bounded
/// by its HWM; a peer found silent gets a new socket (see [`Peering::tick`]).
fn link_socket(
    context: &zmq::Context,
    endpoint: &str,
    identity: &[u8],
    max_frame: i64,
) -> Result<zmq::Socket, Error> {
    let socket = crate::socket::new(context, zmq::DEALER)
        .identity(identity)
        .max_message_size(max_frame)
        .send_hwm(LINK_HWM)
        .receive_hwm(LINK_HWM)
        .linger(0)
        .build()?;
    // libzmq's own heartbeats notice a peer host that vanished (no RST), so
    // the link reconnects instead of waiting on TCP.
    socket.set_heartbeat_ivl(1000)?;
    socket.set_heartbeat_timeout(3000)?;
    socket.connect(endpoint).map_err(|source| Error::Endpoint {
        action: "connect",
        endpoint: endpoint.to_string(),
        source,
    })?;
    Ok(socket)
}

/// Sends without waiting; `false` if the link is down or full.
fn send_now(socket: &zmq::Socket, frames: Vec<Vec<u8>>) -> bool {
    Message::from_frames(frames)
        .send_or_drop(socket)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake peer: a ROUTER the links connect to, answering by hand.
    fn fake_peer(context: &zmq::Context, name: &str) -> (zmq::Socket, String) {
        let socket = context.socket(zmq::ROUTER).unwrap();
        let endpoint = format!("inproc://peering-{name}");
        socket.bind(&endpoint).unwrap();
        (socket, endpoint)
    }

    fn recv_request(peer: &zmq::Socket) -> (Vec<u8>, Request) {
        peer.set_rcvtimeo(5000).unwrap();
        let mut frames = peer.recv_multipart(0).unwrap();
        let routing_id = frames.remove(0);
        match protocol::parse_client(&frames).unwrap().command {
            ClientCommand::Request(request) => (routing_id, request),
            other => panic!("not a request: {other:?}"),
        }
    }

    fn answer(
        peer: &zmq::Socket,
        routing_id: &[u8],
        correlation: &[u8],
        status: u16,
        body: Vec<Vec<u8>>,
    ) {
        let mut frames = vec![routing_id.to_vec()];
        frames.extend(
            ClientCommand::Reply(Reply {
                service: b"x".to_vec(),
                correlation: correlation.to_vec(),
                status: Status(status),
                properties: Properties::default(),
                body,
            })
            .to_frames(false),
        );
        peer.send_multipart(frames, 0).unwrap();
    }

    fn capacity_json(services: &[(&str, usize, usize)]) -> Vec<u8> {
        let lines: Vec<serde_json::Value> = services
            .iter()
            .map(|(name, workers, idle)| {
                serde_json::json!({"environment": "default", "service": name,
                    "workers": workers, "idle": idle, "queued": 0})
            })
            .collect();
        serde_json::json!({"broker": {}, "services": lines})
            .to_string()
            .into_bytes()
    }

    /// Reads from link `index` until `done` holds (5 s at most).
    fn pump(
        peering: &mut Peering,
        index: usize,
        done: impl Fn(&Peering, &[(Vec<u8>, Reply)]) -> bool,
    ) -> Vec<(Vec<u8>, Reply)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut replies = Vec::new();
        while !done(peering, &replies) {
            assert!(Instant::now() < deadline, "nothing from the peer");
            replies.extend(peering.receive(index, Instant::now()));
            std::thread::sleep(Duration::from_millis(2));
        }
        replies
    }

    fn has_capacity(index: usize) -> impl Fn(&Peering, &[(Vec<u8>, Reply)]) -> bool {
        move |peering, _| !peering.links[index].capacity.is_empty()
    }

    /// One link to a fake peer named `name`, polled every `interval`; the
    /// first capacity poll sent and read: the peer's socket, the link set,
    /// the poll's routing id and correlation, and when it was sent.
    fn one_link(
        context: &zmq::Context,
        name: &str,
        interval: Duration,
    ) -> (zmq::Socket, Peering, Vec<u8>, Vec<u8>, Instant) {
        let (peer, endpoint) = fake_peer(context, name);
        let mut peering = Peering::new(context, &[endpoint], interval, PEER_TTL, 1 << 20).unwrap();
        let start = Instant::now();
        peering.tick(start);
        let (id, poll) = recv_request(&peer);
        (peer, peering, id, poll.correlation, start)
    }

    fn request(correlation: &str, idempotent: bool) -> Request {
        Request {
            service: b"echo".to_vec(),
            address: Vec::new(),
            properties: Properties::build(None, 0, None, idempotent, None),
            correlation: correlation.as_bytes().to_vec(),
            body: vec![b"hello".to_vec()],
        }
    }

    /// Polls capacity, forwards to the peer with idle workers, passes the
    /// reply back with the client's correlation, and forgets a silent peer
    /// with its requests.
    #[test]
    fn forwards_by_capacity_and_forgets_silent_peers() {
        let context = zmq::Context::new();
        let (busy, busy_endpoint) = fake_peer(&context, "busy");
        let (idle, idle_endpoint) = fake_peer(&context, "idle");
        let mut peering = Peering::new(
            &context,
            &[busy_endpoint, idle_endpoint.clone()],
            Duration::from_millis(50),
            Duration::from_millis(300),
            1 << 20,
        )
        .unwrap();
        // Nothing known yet: nothing forwarded.
        assert!(peering.forward(b"C".to_vec(), request("1", false)).is_err());
        let start = Instant::now();
        assert!(peering.tick(start).gone.is_empty());
        let (busy_id, poll) = recv_request(&busy);
        assert_eq!(poll.service, b"mmi.services");
        answer(
            &busy,
            &busy_id,
            &poll.correlation,
            200,
            vec![b"200".to_vec(), capacity_json(&[("echo", 3, 0)])],
        );
        let (idle_id, poll) = recv_request(&idle);
        answer(
            &idle,
            &idle_id,
            &poll.correlation,
            200,
            vec![
                b"200".to_vec(),
                capacity_json(&[("echo", 1, 1), ("none", 0, 0)]),
            ],
        );
        pump(&mut peering, 0, has_capacity(0));
        pump(&mut peering, 1, has_capacity(1));
        assert_eq!(
            peering.capacity(1, "default", b"echo"),
            Capacity {
                workers: 1,
                idle: 1
            }
        );
        assert_eq!(peering.capacity(1, "default", b"none"), Capacity::default());
        assert_eq!(peering.sockets().count(), 2);
        // A service a peer knows but has no worker for is not forwarded.
        let none = Request {
            service: b"none".to_vec(),
            ..request("0", false)
        };
        assert!(peering.forward(b"C".to_vec(), none).is_err());
        // The idle one scores 1, the busy one 0.
        assert_eq!(
            peering.forward(b"C".to_vec(), request("1", false)).unwrap(),
            idle_endpoint
        );
        assert!(peering.is_forwarded(b"C", b"1"));
        let (_, forwarded) = recv_request(&idle);
        assert_eq!(forwarded.properties.hops, 1);
        assert_eq!(forwarded.body, [b"hello".to_vec()]);
        assert_ne!(forwarded.correlation, b"1");
        // Now both score 0: the first in the configuration.
        peering.forward(b"C".to_vec(), request("2", true)).unwrap();
        let (_, second) = recv_request(&busy);
        assert!(second.correlation.starts_with(b"fwd-"));
        // The idle peer answers: the reply goes back with the client's id.
        answer(
            &idle,
            &idle_id,
            &forwarded.correlation,
            200,
            vec![b"world".to_vec()],
        );
        let replies = pump(&mut peering, 1, |_, replies| !replies.is_empty());
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].0, b"C");
        assert_eq!(replies[0].1.correlation, b"1");
        assert_eq!(replies[0].1.service, b"echo");
        assert_eq!(replies[0].1.body, [b"world".to_vec()]);
        assert!(!peering.is_forwarded(b"C", b"1"));
        // A second answer for the same id matches nothing.
        answer(&idle, &idle_id, &forwarded.correlation, 200, vec![]);
        pump(&mut peering, 1, |peering, _| peering.strays > 0);
        assert_eq!(peering.strays, 1);
        // The busy peer goes silent: forgotten after the TTL with its request.
        let heard = peering.links[0].last_heard.unwrap();
        assert!(peering
            .tick(heard + Duration::from_millis(299))
            .gone
            .is_empty());
        let tick = peering.tick(heard + Duration::from_millis(300));
        assert_eq!(tick.gone.len(), 1);
        assert_eq!(tick.orphans.len(), 1);
        assert_eq!(tick.orphans[0].request.correlation, b"2");
        assert_eq!(tick.orphans[0].client, b"C");
        assert!(!peering.is_forwarded(b"C", b"2"));
        assert_eq!(peering.capacity(0, "default", b"echo"), Capacity::default());
        let report = peering.report();
        assert!(!report[0].alive && report[1].alive);
        assert_eq!(report[0].forwarded, 1);
    }

    /// A request that came through a peer is never forwarded again.
    #[test]
    fn a_forwarded_request_is_not_forwarded_again() {
        let context = zmq::Context::new();
        let (peer, mut peering, id, correlation, _) =
            one_link(&context, "hop", Duration::from_millis(50));
        answer(
            &peer,
            &id,
            &correlation,
            200,
            vec![b"200".to_vec(), capacity_json(&[("echo", 1, 1)])],
        );
        pump(&mut peering, 0, has_capacity(0));
        let mut hopped = request("1", false);
        hopped.properties = hopped.properties.forwarded().unwrap();
        assert!(peering.forward(b"C".to_vec(), hopped).is_err());
        assert!(peering.forward(b"C".to_vec(), request("1", false)).is_ok());
    }

    /// Every request forwarded gets a correlation of its own, whatever
    /// capacity polls come between: a reused one would hand one client's
    /// reply to another.
    #[test]
    fn forwarded_correlations_are_never_reused() {
        let context = zmq::Context::new();
        let interval = Duration::from_millis(50);
        let (peer, mut peering, id, correlation, start) = one_link(&context, "unique", interval);
        answer(
            &peer,
            &id,
            &correlation,
            200,
            vec![b"200".to_vec(), capacity_json(&[("echo", 9, 9)])],
        );
        pump(&mut peering, 0, has_capacity(0));
        let mut seen = std::collections::HashSet::new();
        for (n, client) in ["A", "B", "C", "D"].iter().enumerate() {
            peering
                .forward(client.as_bytes().to_vec(), request("1", false))
                .unwrap();
            // A capacity poll between forwards.
            peering.tick(start + interval * (n as u32 + 2));
            loop {
                let (_, received) = recv_request(&peer);
                if received.service == b"echo" {
                    assert!(
                        seen.insert(received.correlation.clone()),
                        "{} reused",
                        show(&received.correlation)
                    );
                    break;
                }
            }
        }
    }

    /// A PONG proves a peer alive; a request or garbage from it is counted
    /// as a stray and otherwise ignored.
    #[test]
    fn pongs_are_heard_and_anything_else_but_replies_is_a_stray() {
        let context = zmq::Context::new();
        let (peer, mut peering, id, _, _) = one_link(&context, "strays", Duration::from_millis(50));
        let send = |frames: Vec<Vec<u8>>| {
            let mut all = vec![id.clone()];
            all.extend(frames);
            peer.send_multipart(all, 0).unwrap();
        };
        send(ClientCommand::Pong.to_frames(false));
        pump(&mut peering, 0, |peering, _| {
            peering.links[0].last_heard.is_some()
        });
        assert_eq!(peering.strays, 0, "a PONG is not a stray");
        send(ClientCommand::Request(request("r", false)).to_frames(false));
        send(vec![b"garbage".to_vec()]);
        pump(&mut peering, 0, |peering, _| peering.strays >= 2);
        // (A PONG sent last and read: nothing more was counted.)
        send(ClientCommand::Pong.to_frames(false));
        let heard = peering.links[0].last_heard.unwrap();
        pump(&mut peering, 0, |peering, _| {
            peering.links[0].last_heard != Some(heard)
        });
        assert_eq!(peering.strays, 2);
    }

    /// Capacity polls go out once an interval, each with its own
    /// correlation; a capacity answer that is not one is a stray; a change
    /// of the services a peer has workers for is logged once.
    #[test]
    fn capacity_polls_keep_their_interval_and_answers_are_checked() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let (peer, endpoint) = fake_peer(&context, "polls");
        let interval = Duration::from_millis(1000);
        let mut peering = Peering::new(
            &context,
            std::slice::from_ref(&endpoint),
            interval,
            PEER_TTL,
            1 << 20,
        )
        .unwrap();
        let start = Instant::now();
        let mut polls = Vec::new();
        for at in [0, 500, 999, 1000, 1500, 2000] {
            peering.tick(start + Duration::from_millis(at));
            peer.set_rcvtimeo(200).unwrap();
            while let Ok(mut frames) = peer.recv_multipart(0) {
                let id = frames.remove(0);
                let ClientCommand::Request(poll) = protocol::parse_client(&frames).unwrap().command
                else {
                    panic!("not a poll")
                };
                polls.push((at, id, poll.correlation));
            }
        }
        let times: Vec<u64> = polls.iter().map(|(at, _, _)| *at).collect();
        assert_eq!(times, [0, 1000, 2000], "a poll per interval");
        let correlations: std::collections::HashSet<_> =
            polls.iter().map(|(_, _, c)| c.clone()).collect();
        assert_eq!(correlations.len(), 3, "{polls:?}");
        // Not a capacity document: a stray, nothing learnt.
        let (_, id, correlation) = &polls[0];
        answer(
            &peer,
            id,
            correlation,
            200,
            vec![b"200".to_vec(), b"not json".to_vec()],
        );
        pump(&mut peering, 0, |peering, _| peering.strays == 1);
        assert!(peering.links[0].capacity.is_empty());
        // Seven services (one in another environment): one line, five
        // names and a count; the same again: no new line.
        let services: Vec<(&str, usize, usize)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|s| (*s, 1, 1))
            .collect();
        let mut document: serde_json::Value =
            serde_json::from_slice(&capacity_json(&services)).unwrap();
        document["services"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(
            {"environment": "prod", "service": "x", "workers": 1, "idle": 0, "queued": 0}));
        let body = document.to_string().into_bytes();
        let (_, id, correlation) = &polls[1];
        answer(
            &peer,
            id,
            correlation,
            200,
            vec![b"200".to_vec(), body.clone()],
        );
        pump(&mut peering, 0, |peering, _| {
            peering.capacity(0, "prod", b"x").workers == 1
        });
        let heard = peering.links[0].last_heard;
        let (_, id, correlation) = &polls[2];
        answer(&peer, id, correlation, 200, vec![b"200".to_vec(), body]);
        pump(&mut peering, 0, |peering, _| {
            peering.links[0].last_heard != heard
        });
        let lines: Vec<String> = crate::log_limit::captured::lines_with(&endpoint)
            .into_iter()
            .filter(|l| l.contains("has workers"))
            .collect();
        assert_eq!(
            lines,
            [format!(
                "broker: peer {endpoint} has workers for 7 services: a b c d e and 2 more"
            )]
        );
        assert_eq!(peering.strays, 1);
    }
}
