//! The study broker's decisions, without sockets or clocks (study part 2):
//! services scoped by environment, least-recently-used workers, a bounded
//! queue per service ordered by priority then arrival, deadlines, the
//! no-worker policy, and what happens when a worker dies. The `broker`
//! program (to come) feeds it what arrives on its socket and the time, and
//! sends the [`Action`]s it returns; everything here is a pure function of
//! those inputs, so every rule has a unit test.
//!
//! Status codes are SBP/1's (`zguide/broker-protocol.md` §6). Bounds:
//! [`Config::max_queue`] requests per service (503 past it), [`MAX_SERVICES`]
//! services and [`MAX_WORKERS`] workers (a READY past them is refused with
//! DISCONNECT).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::broker::protocol::{Properties, Reply, Request, Status};

/// The most services (environment and name) the broker keeps.
pub const MAX_SERVICES: usize = 10_000;
/// The most workers the broker keeps.
pub const MAX_WORKERS: usize = 10_000;

/// What to do with a request when its service has no worker at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Queue it until a worker comes or its deadline passes.
    Ignore,
    /// Answer at once: 404 if the service never had a worker, else 503.
    Notify,
    /// Hand it to a peer broker that has workers for it (the server picks
    /// the peer: [`Action::Forward`]); a request that came from a peer
    /// already is answered as with `Notify`, so nothing loops.
    Forward,
}

/// The broker's limits and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests queued per service; past it a request is answered 503.
    pub max_queue: usize,
    /// Policy of services not named in `policies`.
    pub default_policy: Policy,
    /// Per service name (any environment).
    pub policies: HashMap<Vec<u8>, Policy>,
    /// An idle worker silent this long is dead (3 heartbeats of 2.5 s).
    pub worker_expiry: Duration,
    /// A busy worker silent this long is dead. Longer than `worker_expiry`:
    /// the guide's `mdwrkapi` sends no heartbeat while it works.
    pub busy_expiry: Duration,
    /// Bytes of queued requests per service (bodies and properties); past it
    /// a request is answered 503.
    pub max_queue_bytes: usize,
    /// Bytes of queued requests in all services; past it, 503.
    pub max_total_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_queue: 100_000,
            default_policy: Policy::Ignore,
            policies: HashMap::new(),
            worker_expiry: Duration::from_millis(7500),
            busy_expiry: Duration::from_secs(60),
            max_queue_bytes: 64 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// What the broker must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A reply to the client whose routing id is `client`.
    ToClient { client: Vec<u8>, reply: Reply },
    /// A request to a worker; `client` is the token the worker echoes.
    ToWorker {
        worker: Vec<u8>,
        client: Vec<u8>,
        /// Shared with the broker's record: the body is not copied.
        request: Rc<Request>,
    },
    /// Tell a worker to go away (protocol error, or over a bound).
    Disconnect { worker: Vec<u8> },
    /// The service has no worker here and its policy is `Forward`: the
    /// server sends the request to a peer broker (or answers 503 when no
    /// peer has a worker for it). The state keeps no record of it.
    Forward { client: Vec<u8>, request: Request },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ServiceKey {
    environment: String,
    name: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    client: Vec<u8>,
    request: Rc<Request>,
}

#[derive(Default, Debug)]
struct Service {
    /// Ordered by priority (highest first), then arrival.
    queue: BTreeMap<(Reverse<i8>, u64), Pending>,
    /// Bytes of the requests in `queue` (see [`cost`]).
    queued_bytes: usize,
    /// Requests in `queue` that have a deadline (a tick looks at the queue
    /// only when there are some).
    with_deadline: usize,
    /// Idle workers, least recently used first.
    idle: VecDeque<Vec<u8>>,
    /// Workers registered for this service, idle or busy.
    workers: usize,
    /// Requests taken, and replies given, since the broker started.
    requests: u64,
    replies: u64,
    /// Replies by status class: 2xx, 4xx, 5xx.
    failures: u64,
    /// Requests per second over the last rate period, and where it started.
    rate: f64,
    rate_mark: (u64, Option<Instant>),
}

/// What one request occupies in a queue: its frames and a fixed overhead.
fn cost(pending: &Pending) -> usize {
    let request = &pending.request;
    let frames: usize = request.body.iter().map(|f| f.len() + 64).sum();
    frames + request.properties.raw.len() + request.correlation.len() + pending.client.len() + 256
}

/// One service as management reports it (`mmi.services`, metrics).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServiceReport {
    pub environment: String,
    pub service: String,
    pub workers: usize,
    pub idle: usize,
    pub queued: usize,
    pub queued_bytes: usize,
    pub requests: u64,
    pub replies: u64,
    pub failures: u64,
    /// Requests per second, measured over the last few seconds.
    pub rate: f64,
}

#[derive(Debug)]
struct Worker {
    service: ServiceKey,
    last_seen: Instant,
    /// The request it is serving, with its queue position (for a retry).
    busy: Option<(u64, Pending)>,
}

/// The state of one broker; see the module docs.
#[derive(Debug, Default)]
pub struct BrokerState {
    config: Config,
    services: HashMap<ServiceKey, Service>,
    workers: HashMap<Vec<u8>, Worker>,
    arrivals: u64,
    /// (client, correlation) of every request queued or with a worker: a
    /// client that retries one of these is not served twice.
    in_flight: HashSet<(Vec<u8>, Vec<u8>)>,
    total_bytes: usize,
}

fn reply(request: &Request, status: Status, reason: &str) -> Reply {
    Reply {
        service: request.service.clone(),
        correlation: request.correlation.clone(),
        status,
        properties: Properties::build(None, 0, None, false, Some(reason)),
        body: Vec::new(),
    }
}

impl BrokerState {
    pub fn new(config: Config) -> BrokerState {
        BrokerState {
            config,
            ..BrokerState::default()
        }
    }

    fn policy(&self, name: &[u8]) -> Policy {
        if self.config.policies.is_empty() {
            return self.config.default_policy;
        }
        *self
            .config
            .policies
            .get(name)
            .unwrap_or(&self.config.default_policy)
    }

    /// A client's request. `now_ms` is the wall clock in ms since the Unix
    /// epoch (deadlines are wall-clock times). A request whose (client,
    /// correlation) is already queued or with a worker is a retry: it is
    /// dropped, the first one's reply will answer it.
    pub fn request(&mut self, client: &[u8], request: Request, now_ms: u64) -> Vec<Action> {
        let flight = (client.to_vec(), request.correlation.clone());
        if self.in_flight.contains(&flight) {
            return Vec::new();
        }
        let key = ServiceKey {
            environment: request.properties.environment.clone(),
            name: request.service.clone(),
        };
        let answer = |status, reason: &str| {
            vec![Action::ToClient {
                client: client.to_vec(),
                reply: reply(&request, status, reason),
            }]
        };
        if request.properties.deadline.is_some_and(|d| d <= now_ms) {
            return answer(Status::DEADLINE_PASSED, "deadline passed");
        }
        let known = self.services.get(&key);
        let workers = known.map_or(0, |s| s.workers);
        let policy = self.policy(&key.name);
        if workers == 0 && policy == Policy::Forward && request.properties.hops == 0 {
            return vec![Action::Forward {
                client: client.to_vec(),
                request,
            }];
        }
        if workers == 0 && policy != Policy::Ignore {
            return match known {
                None => answer(Status::UNKNOWN_SERVICE, "unknown service"),
                Some(_) => answer(Status::NO_WORKERS, "no workers"),
            };
        }
        if known.is_none() && self.services.len() >= MAX_SERVICES {
            return answer(Status::NO_WORKERS, "too many services");
        }
        let pending = Pending {
            client: client.to_vec(),
            request: Rc::new(request),
        };
        let size = cost(&pending);
        let (max_queue, max_bytes) = (self.config.max_queue, self.config.max_queue_bytes);
        let total_full = self.total_bytes + size > self.config.max_total_bytes;
        if !self.services.contains_key(&key) {
            self.services.insert(key.clone(), Service::default());
        }
        let Some(service) = self.services.get_mut(&key) else {
            return Vec::new();
        };
        if service.queue.len() >= max_queue || service.queued_bytes + size > max_bytes || total_full
        {
            return vec![Action::ToClient {
                client: pending.client,
                reply: reply(&pending.request, Status::NO_WORKERS, "queue full"),
            }];
        }
        service.requests += 1;
        service.queued_bytes += size;
        service.with_deadline += usize::from(pending.request.properties.deadline.is_some());
        self.total_bytes += size;
        self.arrivals += 1;
        let position = (Reverse(pending.request.properties.priority), self.arrivals);
        service.queue.insert(position, pending);
        self.in_flight.insert(flight);
        self.dispatch(&key)
    }

    /// A worker's READY for `service` in the environment of `properties`.
    /// A second READY, or one past a bound, is answered DISCONNECT.
    pub fn worker_ready(
        &mut self,
        worker: &[u8],
        service: Vec<u8>,
        properties: &Properties,
        now: Instant,
    ) -> Vec<Action> {
        let key = ServiceKey {
            environment: properties.environment.clone(),
            name: service,
        };
        let over = self.workers.len() >= MAX_WORKERS
            || (!self.services.contains_key(&key) && self.services.len() >= MAX_SERVICES);
        if self.workers.contains_key(worker) || over {
            let mut actions = self.forget_worker(worker);
            actions.push(Action::Disconnect {
                worker: worker.to_vec(),
            });
            return actions;
        }
        self.workers.insert(
            worker.to_vec(),
            Worker {
                service: key.clone(),
                last_seen: now,
                busy: None,
            },
        );
        let service = self.services.entry(key.clone()).or_default();
        service.workers += 1;
        service.idle.push_back(worker.to_vec());
        self.dispatch(&key)
    }

    /// What a busy worker is serving: the client's token and the request.
    pub fn serving(&self, worker: &[u8]) -> Option<(&[u8], &Request)> {
        let (_, pending) = self.workers.get(worker)?.busy.as_ref()?;
        Some((&pending.client, pending.request.as_ref()))
    }

    /// A worker's reply to the request it holds. A reply for anything else
    /// is a protocol error: DISCONNECT.
    pub fn worker_reply(
        &mut self,
        worker: &[u8],
        client: &[u8],
        mut answer: Reply,
        now: Instant,
    ) -> Vec<Action> {
        let matches = self.serving(worker).is_some_and(|(token, request)| {
            token == client && request.correlation == answer.correlation
        });
        if !matches {
            log::warn!("broker: a reply its worker was not asked for; worker disconnected");
            let mut actions = self.forget_worker(worker);
            actions.push(Action::Disconnect {
                worker: worker.to_vec(),
            });
            return actions;
        }
        let Some(record) = self.workers.get_mut(worker) else {
            return Vec::new();
        };
        record.last_seen = now;
        let key = record.service.clone();
        let Some((_, pending)) = record.busy.take() else {
            return Vec::new();
        };
        answer.service = pending.request.service.clone();
        self.in_flight
            .remove(&(pending.client.clone(), pending.request.correlation.clone()));
        if let Some(service) = self.services.get_mut(&key) {
            service.replies += 1;
            if answer.status.0 >= 400 {
                service.failures += 1;
            }
            service.idle.push_back(worker.to_vec());
        }
        let mut actions = vec![Action::ToClient {
            client: pending.client,
            reply: answer,
        }];
        actions.extend(self.dispatch(&key));
        actions
    }

    /// Any valid message from a worker (a HEARTBEAT, say): it is alive. An
    /// unknown worker is told DISCONNECT.
    pub fn worker_alive(&mut self, worker: &[u8], now: Instant) -> Vec<Action> {
        match self.workers.get_mut(worker) {
            Some(record) => {
                record.last_seen = now;
                Vec::new()
            }
            None => vec![Action::Disconnect {
                worker: worker.to_vec(),
            }],
        }
    }

    /// Is this worker registered?
    pub fn is_worker(&self, worker: &[u8]) -> bool {
        self.workers.contains_key(worker)
    }

    /// A worker said DISCONNECT, or its connection is gone.
    pub fn worker_gone(&mut self, worker: &[u8]) -> Vec<Action> {
        let key = self.workers.get(worker).map(|w| w.service.clone());
        let mut actions = self.forget_worker(worker);
        if let Some(key) = key {
            actions.extend(self.dispatch(&key));
        }
        actions
    }

    /// A REQUEST could not be sent to `worker` (it is gone): the worker is
    /// forgotten and the request, which it never saw, is queued again in its
    /// old place whatever its `idempotent` property says.
    pub fn worker_unreachable(&mut self, worker: &[u8]) -> Vec<Action> {
        let key = self.workers.get(worker).map(|w| w.service.clone());
        let mut actions = self.forget_worker_requeue(worker, true);
        if let Some(key) = key {
            actions.extend(self.dispatch(&key));
        }
        actions
    }

    /// Time passes: silent workers are forgotten (idle ones after
    /// `worker_expiry`, busy ones after `busy_expiry`), stale requests are
    /// answered 504, rates are measured, and queued work is dispatched.
    pub fn tick(&mut self, now_ms: u64, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let (idle_expiry, busy_expiry) = (self.config.worker_expiry, self.config.busy_expiry);
        let dead: Vec<Vec<u8>> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                let expiry = if w.busy.is_some() {
                    busy_expiry
                } else {
                    idle_expiry
                };
                w.last_seen + expiry <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for worker in dead {
            log::warn!(
                "broker: worker {} silent; forgotten",
                crate::message::show(&worker)
            );
            actions.extend(self.forget_worker(&worker));
        }
        for service in self.services.values_mut() {
            // The queue is looked at only if some request in it has a deadline.
            let stale: Vec<(Reverse<i8>, u64)> = match service.with_deadline {
                0 => Vec::new(),
                _ => service
                    .queue
                    .iter()
                    .filter(|(_, p)| p.request.properties.deadline.is_some_and(|d| d <= now_ms))
                    .map(|(k, _)| *k)
                    .collect(),
            };
            for position in stale {
                if let Some(pending) = service.queue.remove(&position) {
                    service.with_deadline = service.with_deadline.saturating_sub(1);
                    let size = cost(&pending);
                    service.queued_bytes = service.queued_bytes.saturating_sub(size);
                    self.total_bytes = self.total_bytes.saturating_sub(size);
                    self.in_flight
                        .remove(&(pending.client.clone(), pending.request.correlation.clone()));
                    service.failures += 1;
                    actions.push(Action::ToClient {
                        reply: reply(&pending.request, Status::DEADLINE_PASSED, "deadline passed"),
                        client: pending.client,
                    });
                }
            }
            match service.rate_mark {
                (count, Some(since)) if now.duration_since(since) >= RATE_PERIOD => {
                    let seconds = now.duration_since(since).as_secs_f64();
                    service.rate = (service.requests - count) as f64 / seconds;
                    service.rate_mark = (service.requests, Some(now));
                }
                (_, None) => service.rate_mark = (service.requests, Some(now)),
                _ => {}
            }
        }
        let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        for key in keys {
            actions.extend(self.dispatch(&key));
        }
        actions
    }

    /// Requests queued for a service (not counting those with a worker).
    pub fn queued(&self, environment: &str, service: &[u8]) -> usize {
        let key = ServiceKey {
            environment: environment.to_string(),
            name: service.to_vec(),
        };
        self.services.get(&key).map_or(0, |s| s.queue.len())
    }

    /// Workers registered for a service, idle or busy (`mmi.service`).
    pub fn workers_of(&self, environment: &str, service: &[u8]) -> usize {
        let key = ServiceKey {
            environment: environment.to_string(),
            name: service.to_vec(),
        };
        self.services.get(&key).map_or(0, |s| s.workers)
    }

    /// Every service, ordered by environment then name.
    pub fn report(&self) -> Vec<ServiceReport> {
        let mut reports: Vec<ServiceReport> = self
            .services
            .iter()
            .map(|(key, service)| ServiceReport {
                environment: key.environment.clone(),
                service: String::from_utf8_lossy(&key.name).into_owned(),
                workers: service.workers,
                idle: service.idle.len(),
                queued: service.queue.len(),
                queued_bytes: service.queued_bytes,
                requests: service.requests,
                replies: service.replies,
                failures: service.failures,
                rate: service.rate,
            })
            .collect();
        reports.sort_by(|a, b| (&a.environment, &a.service).cmp(&(&b.environment, &b.service)));
        reports
    }

    /// Removes a worker; its request in progress is answered 500, or queued
    /// again in its old place if the request said it is idempotent.
    fn forget_worker(&mut self, worker: &[u8]) -> Vec<Action> {
        self.forget_worker_requeue(worker, false)
    }

    /// [`forget_worker`](Self::forget_worker); with `requeue`, its request
    /// goes back to the queue even if it is not idempotent.
    fn forget_worker_requeue(&mut self, worker: &[u8], requeue: bool) -> Vec<Action> {
        let Some(record) = self.workers.remove(worker) else {
            return Vec::new();
        };
        let Some(service) = self.services.get_mut(&record.service) else {
            log::error!("broker: a worker's service is missing; worker dropped");
            return Vec::new();
        };
        service.workers = service.workers.saturating_sub(1);
        service.idle.retain(|w| w.as_slice() != worker);
        match record.busy {
            Some((arrival, pending)) if requeue || pending.request.properties.idempotent => {
                let position = (Reverse(pending.request.properties.priority), arrival);
                let size = cost(&pending);
                service.queued_bytes += size;
                service.with_deadline += usize::from(pending.request.properties.deadline.is_some());
                self.total_bytes += size;
                service.queue.insert(position, pending);
                Vec::new()
            }
            Some((_, pending)) => {
                service.replies += 1;
                service.failures += 1;
                self.in_flight
                    .remove(&(pending.client.clone(), pending.request.correlation.clone()));
                vec![Action::ToClient {
                    reply: reply(&pending.request, Status::WORKER_FAILED, "worker failed"),
                    client: pending.client,
                }]
            }
            None => Vec::new(),
        }
    }

    /// Gives queued requests of `key` to its idle workers, LRU first.
    fn dispatch(&mut self, key: &ServiceKey) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(service) = self.services.get_mut(key) else {
            return actions;
        };
        while !service.queue.is_empty() {
            let Some(worker) = service.idle.pop_front() else {
                break;
            };
            let Some(record) = self.workers.get_mut(&worker) else {
                // An idle entry for a forgotten worker: an invariant broke.
                log::error!("broker: idle list named an unknown worker; entry dropped");
                continue;
            };
            let Some(((_, arrival), pending)) = service.queue.pop_first() else {
                service.idle.push_front(worker);
                break;
            };
            let size = cost(&pending);
            service.queued_bytes = service.queued_bytes.saturating_sub(size);
            service.with_deadline = service
                .with_deadline
                .saturating_sub(usize::from(pending.request.properties.deadline.is_some()));
            self.total_bytes = self.total_bytes.saturating_sub(size);
            actions.push(Action::ToWorker {
                worker: worker.clone(),
                client: pending.client.clone(),
                request: Rc::clone(&pending.request),
            });
            record.busy = Some((arrival, pending));
        }
        actions
    }
}

/// How often a service's request rate is measured.
const RATE_PERIOD: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn request(service: &str, correlation: &str, priority: i8, deadline: Option<u64>) -> Request {
        request_in(service, correlation, priority, deadline, None, false)
    }

    fn request_in(
        service: &str,
        correlation: &str,
        priority: i8,
        deadline: Option<u64>,
        environment: Option<&str>,
        idempotent: bool,
    ) -> Request {
        Request {
            service: service.as_bytes().to_vec(),
            address: Vec::new(),
            properties: Properties::build(deadline, priority, environment, idempotent, None),
            correlation: correlation.as_bytes().to_vec(),
            body: vec![b"body".to_vec()],
        }
    }

    fn ok(correlation: &str) -> Reply {
        Reply {
            service: Vec::new(),
            correlation: correlation.as_bytes().to_vec(),
            status: Status::OK,
            properties: Properties::default(),
            body: vec![b"done".to_vec()],
        }
    }

    /// (worker, correlation) of each request handed out.
    fn handed(actions: &[Action]) -> Vec<(String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ToWorker {
                    worker, request, ..
                } => Some((
                    String::from_utf8_lossy(worker).into_owned(),
                    String::from_utf8_lossy(&request.correlation).into_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    /// (client, correlation, status) of each reply to a client.
    fn answered(actions: &[Action]) -> Vec<(String, String, u16)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ToClient { client, reply } => Some((
                    String::from_utf8_lossy(client).into_owned(),
                    String::from_utf8_lossy(&reply.correlation).into_owned(),
                    reply.status.0,
                )),
                _ => None,
            })
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn requests_go_to_the_least_recently_used_worker_and_replies_to_their_client() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        let defaults = Properties::default();
        assert!(broker
            .worker_ready(b"W1", b"echo".to_vec(), &defaults, now)
            .is_empty());
        assert!(broker
            .worker_ready(b"W2", b"echo".to_vec(), &defaults, now)
            .is_empty());
        let first = broker.request(b"C1", request("echo", "1", 0, None), NOW_MS);
        assert_eq!(handed(&first), [pair("W1", "1")]);
        let second = broker.request(b"C2", request("echo", "2", 0, None), NOW_MS);
        assert_eq!(handed(&second), [pair("W2", "2")]);
        let third = broker.request(b"C1", request("echo", "3", 0, None), NOW_MS);
        assert!(handed(&third).is_empty(), "both busy: queued");
        // W2 answers first, so it gets the queued request; the reply goes to C2.
        let actions = broker.worker_reply(b"W2", b"C2", ok("2"), now);
        assert_eq!(answered(&actions), [("C2".into(), "2".into(), 200)]);
        assert_eq!(handed(&actions), [pair("W2", "3")]);
        let actions = broker.worker_reply(b"W1", b"C1", ok("1"), now);
        assert_eq!(answered(&actions), [("C1".into(), "1".into(), 200)]);
        assert_eq!(
            reply_service(&actions),
            b"echo",
            "the reply names its service"
        );
        // Now W1 is least recently used.
        let actions = broker.request(b"C3", request("echo", "4", 0, None), NOW_MS);
        assert_eq!(handed(&actions), [pair("W1", "4")]);
    }

    /// The service named by the first reply to a client.
    fn reply_service(actions: &[Action]) -> Vec<u8> {
        actions
            .iter()
            .find_map(|a| match a {
                Action::ToClient { reply, .. } => Some(reply.service.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reply in {actions:?}"))
    }

    #[test]
    fn the_queue_is_served_by_priority_then_arrival() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        for (correlation, priority) in [("low", -5), ("a", 0), ("high", 9), ("b", 0)] {
            broker.request(b"C", request("svc", correlation, priority, None), NOW_MS);
        }
        assert_eq!(broker.queued("default", b"svc"), 4);
        let mut order = Vec::new();
        let mut actions = broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        for _ in 0..4 {
            let (_, correlation) = handed(&actions).pop().expect("a request handed out");
            actions = broker.worker_reply(b"W", b"C", ok(&correlation), now);
            order.push(correlation);
        }
        assert_eq!(order, ["high", "a", "b", "low"]);
    }

    #[test]
    fn deadlines_are_answered_504_on_arrival_and_while_queued() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        let late = broker.request(b"C", request("svc", "late", 0, Some(NOW_MS - 1)), NOW_MS);
        assert_eq!(answered(&late), [("C".into(), "late".into(), 504)]);
        // At its deadline a request is already late.
        let due = broker.request(b"C", request("svc", "due", 0, Some(NOW_MS)), NOW_MS);
        assert_eq!(answered(&due), [("C".into(), "due".into(), 504)]);
        assert!(broker
            .request(b"C", request("svc", "soon", 0, Some(NOW_MS + 100)), NOW_MS)
            .is_empty());
        assert!(broker
            .request(
                b"C",
                request("svc", "later", 0, Some(NOW_MS + 10_000)),
                NOW_MS
            )
            .is_empty());
        assert!(answered(&broker.tick(NOW_MS + 99, now)).is_empty());
        let actions = broker.tick(NOW_MS + 100, now);
        assert_eq!(answered(&actions), [("C".into(), "soon".into(), 504)]);
        assert_eq!(broker.queued("default", b"svc"), 1);
    }

    #[test]
    fn each_service_queue_is_bounded() {
        let config = Config {
            max_queue: 3,
            ..Config::default()
        };
        let mut broker = BrokerState::new(config);
        for n in 0..3 {
            assert!(broker
                .request(b"C", request("svc", &n.to_string(), 0, None), NOW_MS)
                .is_empty());
        }
        let refused = broker.request(b"C", request("svc", "4", 0, None), NOW_MS);
        assert_eq!(answered(&refused), [("C".into(), "4".into(), 503)]);
        assert_eq!(broker.queued("default", b"svc"), 3);
    }

    #[test]
    fn notify_answers_404_for_unknown_and_503_for_workerless_services() {
        let now = Instant::now();
        let mut config = Config::default();
        config.policies.insert(b"svc".to_vec(), Policy::Notify);
        let mut broker = BrokerState::new(config);
        let actions = broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        assert_eq!(answered(&actions), [("C".into(), "1".into(), 404)]);
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        broker.worker_gone(b"W");
        let actions = broker.request(b"C", request("svc", "2", 0, None), NOW_MS);
        assert_eq!(answered(&actions), [("C".into(), "2".into(), 503)]);
        // Another service keeps the default policy (ignore): queued.
        assert!(broker
            .request(b"C", request("other", "3", 0, None), NOW_MS)
            .is_empty());
        assert_eq!(broker.queued("default", b"other"), 1);
    }

    /// `Forward`: a workerless service's request goes to the server to hand
    /// to a peer; with a local worker it is served here; a request that came
    /// through a peer (hops > 0) is answered like `Notify`, never forwarded.
    #[test]
    fn forward_hands_workerless_requests_out_once() {
        let now = Instant::now();
        let mut config = Config::default();
        config.policies.insert(b"svc".to_vec(), Policy::Forward);
        let mut broker = BrokerState::new(config);
        let actions = broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        assert!(
            matches!(&actions[..], [Action::Forward { client, request }]
                if client == b"C" && request.correlation == b"1"),
            "{actions:?}"
        );
        assert_eq!(broker.queued("default", b"svc"), 0);
        let mut from_peer = request("svc", "2", 0, None);
        from_peer.properties = from_peer.properties.forwarded().unwrap();
        let actions = broker.request(b"P", from_peer.clone(), NOW_MS);
        assert_eq!(answered(&actions), [("P".into(), "2".into(), 404)]);
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        let actions = broker.request(b"C", request("svc", "3", 0, None), NOW_MS);
        assert_eq!(handed(&actions), [pair("W", "3")]);
        let actions = broker.request(b"P", from_peer, NOW_MS);
        assert!(
            actions.is_empty(),
            "queued behind the busy worker: {actions:?}"
        );
        broker.worker_gone(b"W");
        from_peer = request("svc", "4", 0, None);
        from_peer.properties = from_peer.properties.forwarded().unwrap();
        let actions = broker.request(b"P", from_peer, NOW_MS);
        assert_eq!(answered(&actions), [("P".into(), "4".into(), 503)]);
    }

    #[test]
    fn environments_do_not_cross() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        let prod = Properties::build(None, 0, Some("prod"), false, None);
        broker.worker_ready(b"WP", b"echo".to_vec(), &prod, now);
        let test = request_in("echo", "t", 0, None, Some("test"), false);
        assert!(handed(&broker.request(b"C", test, NOW_MS)).is_empty());
        assert_eq!(broker.queued("test", b"echo"), 1);
        let prod_request = request_in("echo", "p", 0, None, Some("prod"), false);
        let actions = broker.request(b"C", prod_request, NOW_MS);
        assert_eq!(handed(&actions), [pair("WP", "p")]);
    }

    #[test]
    fn a_dead_worker_costs_its_client_a_500_or_a_retry_if_idempotent() {
        let now = Instant::now();
        // The worker is busy, so the busy expiry applies.
        let expiry = Config::default().busy_expiry;
        let mut broker = BrokerState::new(Config::default());
        broker.worker_ready(b"W1", b"svc".to_vec(), &Properties::default(), now);
        broker.request(b"C", request("svc", "plain", 0, None), NOW_MS);
        // Silent until just before its expiry: still alive.
        assert!(broker
            .tick(NOW_MS, now + expiry - Duration::from_millis(1))
            .is_empty());
        let actions = broker.tick(NOW_MS, now + expiry);
        assert_eq!(answered(&actions), [("C".into(), "plain".into(), 500)]);

        let later = now + expiry;
        broker.worker_ready(b"W2", b"svc".to_vec(), &Properties::default(), later);
        let retry = request_in("svc", "again", 0, None, None, true);
        assert_eq!(
            handed(&broker.request(b"C", retry, NOW_MS)),
            [pair("W2", "again")]
        );
        let actions = broker.worker_gone(b"W2");
        assert!(answered(&actions).is_empty(), "idempotent: queued again");
        assert_eq!(broker.queued("default", b"svc"), 1);
        let actions = broker.worker_ready(b"W3", b"svc".to_vec(), &Properties::default(), later);
        assert_eq!(handed(&actions), [pair("W3", "again")]);
    }

    #[test]
    fn heartbeats_keep_a_worker_alive() {
        let now = Instant::now();
        let expiry = Config::default().worker_expiry;
        let mut broker = BrokerState::new(Config::default());
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        assert!(broker.worker_alive(b"W", now + expiry / 2).is_empty());
        // A heartbeat from a worker the broker does not know sends it away.
        let stranger = broker.worker_alive(b"STRANGER", now);
        assert_eq!(
            stranger,
            [Action::Disconnect {
                worker: b"STRANGER".to_vec()
            }]
        );
        broker.tick(NOW_MS, now + expiry);
        let actions = broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        assert_eq!(handed(&actions), [pair("W", "1")]);
    }

    #[test]
    fn protocol_errors_disconnect_the_worker() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        // A reply nobody asked for.
        let actions = broker.worker_reply(b"W", b"C", ok("1"), now);
        assert_eq!(
            actions,
            [Action::Disconnect {
                worker: b"W".to_vec()
            }]
        );
        // A second READY from the same worker.
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        let actions = broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        assert_eq!(
            actions,
            [Action::Disconnect {
                worker: b"W".to_vec()
            }]
        );
        // A reply for another client than the one served: refused, and the
        // real client is told its worker failed.
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        let actions = broker.worker_reply(b"W", b"OTHER", ok("1"), now);
        assert_eq!(answered(&actions), [("C".into(), "1".into(), 500)]);
        assert!(actions.contains(&Action::Disconnect {
            worker: b"W".to_vec()
        }));
    }

    #[test]
    fn services_and_workers_are_bounded() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        for n in 0..MAX_SERVICES {
            let correlation = n.to_string();
            let actions = broker.request(
                b"C",
                request(&format!("s{n}"), &correlation, 0, None),
                NOW_MS,
            );
            assert!(actions.is_empty(), "service {n} refused");
        }
        let refused = broker.request(b"C", request("one-too-many", "x", 0, None), NOW_MS);
        assert_eq!(answered(&refused), [("C".into(), "x".into(), 503)]);
        // Workers for existing services, up to the bound; the next is sent away.
        for n in 0..MAX_WORKERS {
            let worker = format!("W{n}").into_bytes();
            let service = format!("s{}", n % 10).into_bytes();
            broker.worker_ready(&worker, service, &Properties::default(), now);
        }
        let actions = broker.worker_ready(b"extra", b"s0".to_vec(), &Properties::default(), now);
        assert_eq!(
            actions,
            [Action::Disconnect {
                worker: b"extra".to_vec()
            }]
        );
    }

    #[test]
    fn a_retry_of_a_request_in_flight_is_not_served_twice() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        // The same correlation again, queued: dropped.
        assert!(broker
            .request(b"C", request("svc", "1", 0, None), NOW_MS)
            .is_empty());
        assert_eq!(broker.queued("default", b"svc"), 1);
        // With a worker: still one.
        let actions = broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        assert_eq!(handed(&actions), [pair("W", "1")]);
        assert!(broker
            .request(b"C", request("svc", "1", 0, None), NOW_MS)
            .is_empty());
        // Another client may use the same correlation id.
        broker.request(b"D", request("svc", "1", 0, None), NOW_MS);
        assert_eq!(broker.queued("default", b"svc"), 1);
        // Once answered, the id may be used again.
        let actions = broker.worker_reply(b"W", b"C", ok("1"), now);
        assert_eq!(answered(&actions), [("C".into(), "1".into(), 200)]);
        assert_eq!(handed(&actions), [pair("W", "1")]);
        let actions = broker.worker_reply(b"W", b"D", ok("1"), now);
        assert_eq!(answered(&actions), [("D".into(), "1".into(), 200)]);
        let actions = broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        assert_eq!(handed(&actions), [pair("W", "1")]);
    }

    #[test]
    fn idle_workers_expire_sooner_than_busy_ones() {
        let now = Instant::now();
        let config = Config::default();
        let (idle_expiry, busy_expiry) = (config.worker_expiry, config.busy_expiry);
        assert!(busy_expiry > idle_expiry * 2);
        let mut broker = BrokerState::new(config);
        broker.worker_ready(b"IDLE", b"a".to_vec(), &Properties::default(), now);
        broker.worker_ready(b"BUSY", b"b".to_vec(), &Properties::default(), now);
        broker.request(b"C", request("b", "1", 0, None), NOW_MS);
        broker.tick(NOW_MS, now + idle_expiry - Duration::from_millis(1));
        assert!(broker.is_worker(b"IDLE"));
        broker.tick(NOW_MS, now + idle_expiry);
        assert!(!broker.is_worker(b"IDLE"));
        assert!(broker.is_worker(b"BUSY"));
        assert_eq!(broker.workers_of("default", b"a"), 0);
        // A heartbeat moves the busy worker's expiry on.
        let later = now + busy_expiry - Duration::from_millis(1);
        assert!(broker.worker_alive(b"BUSY", later).is_empty());
        broker.tick(NOW_MS, now + busy_expiry);
        assert!(broker.is_worker(b"BUSY"));
        let actions = broker.tick(NOW_MS, later + busy_expiry);
        assert!(!broker.is_worker(b"BUSY"));
        assert_eq!(answered(&actions), [("C".into(), "1".into(), 500)]);
    }

    #[test]
    fn queued_bytes_are_bounded_per_service_and_in_all() {
        let big = |service: &str, correlation: &str| {
            let mut r = request(service, correlation, 0, None);
            r.body = vec![vec![0u8; 4000]];
            r
        };
        // The bounds hold exactly two requests a service and four in all.
        let one = cost(&Pending {
            client: b"C".to_vec(),
            request: Rc::new(big("a", "1")),
        });
        let config = Config {
            max_queue_bytes: 2 * one,
            max_total_bytes: 4 * one,
            ..Config::default()
        };
        let mut broker = BrokerState::new(config);
        assert!(broker.request(b"C", big("a", "1"), NOW_MS).is_empty());
        assert!(broker.request(b"C", big("a", "2"), NOW_MS).is_empty());
        let refused = broker.request(b"C", big("a", "3"), NOW_MS);
        assert_eq!(answered(&refused), [("C".into(), "3".into(), 503)]);
        // Another service has room of its own, until the total is reached.
        assert!(broker.request(b"C", big("b", "4"), NOW_MS).is_empty());
        assert!(broker.request(b"C", big("b", "5"), NOW_MS).is_empty());
        let refused = broker.request(b"C", big("c", "6"), NOW_MS);
        assert_eq!(answered(&refused), [("C".into(), "6".into(), 503)]);
        // Handing one out frees its bytes.
        let now = Instant::now();
        broker.worker_ready(b"W", b"a".to_vec(), &Properties::default(), now);
        assert!(broker.request(b"C", big("a", "7"), NOW_MS).is_empty());
        assert_eq!(broker.queued("default", b"a"), 2);
    }

    #[test]
    fn a_request_queued_again_counts_its_bytes_and_deadline_again() {
        let one = cost(&Pending {
            client: b"C".to_vec(),
            request: Rc::new(request("svc", "1", 0, Some(NOW_MS + 1000))),
        });
        // Once with the service's bound at two requests, once with the
        // broker's: each must see the request that came back.
        for (max_queue_bytes, max_total_bytes) in [(2 * one, 1 << 30), (1 << 30, 2 * one)] {
            let config = Config {
                max_queue_bytes,
                max_total_bytes,
                ..Config::default()
            };
            let mut broker = BrokerState::new(config);
            let now = Instant::now();
            broker.worker_ready(b"GONE", b"svc".to_vec(), &Properties::default(), now);
            let deadline = Some(NOW_MS + 1000);
            let actions = broker.request(b"C", request("svc", "1", 0, deadline), NOW_MS);
            assert_eq!(handed(&actions), [pair("GONE", "1")]);
            assert!(broker.worker_unreachable(b"GONE").is_empty());
            // The others have no deadline (and cost a little less).
            assert!(broker
                .request(b"C", request("svc", "2", 0, None), NOW_MS)
                .is_empty());
            let refused = broker.request(b"C", request("svc", "3", 0, None), NOW_MS);
            assert_eq!(answered(&refused), [("C".into(), "3".into(), 503)]);
            // The requeued request's deadline still holds.
            let expired = broker.tick(NOW_MS + 1000, now);
            assert_eq!(answered(&expired), [("C".into(), "1".into(), 504)]);
            let report = broker.report();
            assert_eq!((report[0].queued, report[0].failures), (1, 1));
        }
    }

    #[test]
    fn a_worker_that_dies_holding_a_request_counts_a_failed_reply() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        let actions = broker.worker_gone(b"W");
        assert_eq!(answered(&actions), [("C".into(), "1".into(), 500)]);
        let report = broker.report();
        assert_eq!((report[0].replies, report[0].failures), (1, 1));
    }

    #[test]
    fn the_report_counts_requests_replies_failures_and_rate() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        broker.worker_ready(b"W", b"svc".to_vec(), &Properties::default(), now);
        // Two requests before the rate's period starts do not count in it.
        for correlation in ["early-1", "early-2"] {
            broker.request(b"C", request("svc", correlation, 0, None), NOW_MS);
            broker.worker_reply(b"W", b"C", ok(correlation), now);
        }
        broker.tick(NOW_MS, now);
        for n in 0..10 {
            let correlation = n.to_string();
            broker.request(b"C", request("svc", &correlation, 0, None), NOW_MS);
            let mut answer = ok(&correlation);
            if n == 9 {
                answer.status = Status::WORKER_FAILED;
            }
            broker.worker_reply(b"W", b"C", answer, now);
        }
        broker.request(b"C", request("svc", "queued", 0, None), NOW_MS);
        // A tick within the period measures nothing yet.
        broker.tick(NOW_MS, now + RATE_PERIOD / 2);
        broker.tick(NOW_MS, now + RATE_PERIOD);
        let report = broker.report();
        assert_eq!(report.len(), 1);
        let svc = &report[0];
        assert_eq!(
            (svc.environment.as_str(), svc.service.as_str()),
            ("default", "svc")
        );
        assert_eq!((svc.workers, svc.idle, svc.queued), (1, 0, 0));
        assert_eq!((svc.requests, svc.replies, svc.failures), (13, 12, 1));
        let expected = 11.0 / RATE_PERIOD.as_secs_f64();
        assert!((svc.rate - expected).abs() < 1e-9, "rate {}", svc.rate);
    }

    #[test]
    fn a_request_that_never_reached_its_worker_is_queued_again() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        broker.worker_ready(b"GONE", b"svc".to_vec(), &Properties::default(), now);
        let actions = broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        assert_eq!(handed(&actions), [pair("GONE", "1")]);
        // Not idempotent, but the worker never got it: no 500, queued again.
        assert!(broker.worker_unreachable(b"GONE").is_empty());
        assert_eq!(broker.queued("default", b"svc"), 1);
        let actions = broker.worker_ready(b"NEXT", b"svc".to_vec(), &Properties::default(), now);
        assert_eq!(handed(&actions), [pair("NEXT", "1")]);
        // A worker that dies holding it: 500, as before.
        assert_eq!(
            answered(&broker.worker_gone(b"NEXT")),
            [("C".into(), "1".into(), 500)]
        );
    }

    #[test]
    fn a_requests_cost_counts_every_frame_and_a_fixed_overhead() {
        let mut r = request("svc", "corr", 0, None);
        r.body = vec![vec![0; 1000], vec![0; 10]];
        let properties = r.properties.raw.len();
        let pending = Pending {
            client: b"client".to_vec(),
            request: Rc::new(r),
        };
        // Frames with 64 bytes each of overhead, properties, correlation
        // (4), client token (6), and 256 for the record itself.
        assert_eq!(cost(&pending), 1064 + 74 + properties + 4 + 6 + 256);
    }

    #[test]
    fn when_one_idle_worker_goes_the_others_still_serve() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        for worker in [&b"W1"[..], b"W2", b"W3"] {
            broker.worker_ready(worker, b"svc".to_vec(), &Properties::default(), now);
        }
        assert!(broker.worker_gone(b"W2").is_empty());
        let first = broker.request(b"C", request("svc", "1", 0, None), NOW_MS);
        let second = broker.request(b"C", request("svc", "2", 0, None), NOW_MS);
        assert_eq!(handed(&first), [pair("W1", "1")]);
        assert_eq!(handed(&second), [pair("W3", "2")]);
        assert_eq!(broker.workers_of("default", b"svc"), 2);
    }

    #[test]
    fn at_the_service_bound_workers_join_known_services_only() {
        let now = Instant::now();
        let mut broker = BrokerState::new(Config::default());
        for n in 0..MAX_SERVICES {
            broker.request(
                b"C",
                request(&format!("s{n}"), &n.to_string(), 0, None),
                NOW_MS,
            );
        }
        // A known service takes a worker (and hands it its request) ...
        let actions = broker.worker_ready(b"W", b"s7".to_vec(), &Properties::default(), now);
        assert_eq!(handed(&actions), [pair("W", "7")]);
        // ... a new one does not.
        let actions = broker.worker_ready(b"X", b"new".to_vec(), &Properties::default(), now);
        assert_eq!(
            actions,
            [Action::Disconnect {
                worker: b"X".to_vec()
            }]
        );
    }
}
