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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::broker_protocol::{Properties, Reply, Request, Status};

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
    /// A worker silent this long is dead (3 heartbeats of 2.5 s).
    pub worker_expiry: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_queue: 1000,
            default_policy: Policy::Ignore,
            policies: HashMap::new(),
            worker_expiry: Duration::from_millis(7500),
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
        request: Request,
    },
    /// Tell a worker to go away (protocol error, or over a bound).
    Disconnect { worker: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ServiceKey {
    environment: String,
    name: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    client: Vec<u8>,
    request: Request,
}

#[derive(Default, Debug)]
struct Service {
    /// Ordered by priority (highest first), then arrival.
    queue: BTreeMap<(Reverse<i8>, u64), Pending>,
    /// Idle workers, least recently used first.
    idle: VecDeque<Vec<u8>>,
    /// Workers registered for this service, idle or busy.
    workers: usize,
}

#[derive(Debug)]
struct Worker {
    service: ServiceKey,
    expires: Instant,
    /// The request it is serving, with its queue position (for a retry).
    busy: Option<(u64, Pending)>,
}

/// The state of one broker; see the module docs.
#[derive(Debug, Default)]
pub struct BrokerCore {
    config: Config,
    services: HashMap<ServiceKey, Service>,
    workers: HashMap<Vec<u8>, Worker>,
    arrivals: u64,
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

impl BrokerCore {
    pub fn new(config: Config) -> BrokerCore {
        BrokerCore {
            config,
            ..BrokerCore::default()
        }
    }

    fn policy(&self, name: &[u8]) -> Policy {
        *self
            .config
            .policies
            .get(name)
            .unwrap_or(&self.config.default_policy)
    }

    /// A client's request. `now_ms` is the wall clock in ms since the Unix
    /// epoch (deadlines are wall-clock times).
    pub fn request(&mut self, client: &[u8], request: Request, now_ms: u64) -> Vec<Action> {
        let answer = |status, reason: &str| {
            vec![Action::ToClient {
                client: client.to_vec(),
                reply: reply(&request, status, reason),
            }]
        };
        if request.properties.deadline.is_some_and(|d| d <= now_ms) {
            return answer(Status::DEADLINE_PASSED, "deadline passed");
        }
        let key = ServiceKey {
            environment: request.properties.environment.clone(),
            name: request.service.clone(),
        };
        let known = self.services.get(&key);
        let workers = known.map_or(0, |s| s.workers);
        if workers == 0 && self.policy(&key.name) == Policy::Notify {
            return match known {
                None => answer(Status::UNKNOWN_SERVICE, "unknown service"),
                Some(_) => answer(Status::NO_WORKERS, "no workers"),
            };
        }
        if known.is_none() && self.services.len() >= MAX_SERVICES {
            return answer(Status::NO_WORKERS, "too many services");
        }
        let max_queue = self.config.max_queue;
        let service = self.services.entry(key.clone()).or_default();
        if service.queue.len() >= max_queue {
            return answer(Status::NO_WORKERS, "queue full");
        }
        self.arrivals += 1;
        let position = (Reverse(request.properties.priority), self.arrivals);
        service.queue.insert(
            position,
            Pending {
                client: client.to_vec(),
                request,
            },
        );
        self.dispatch(&key)
    }

    /// A worker's READY for `service` (environment from its properties).
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
            // A second READY breaks the protocol; so does one past a bound.
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
                expires: now + self.config.worker_expiry,
                busy: None,
            },
        );
        let service = self.services.entry(key.clone()).or_default();
        service.workers += 1;
        service.idle.push_back(worker.to_vec());
        self.dispatch(&key)
    }

    /// A worker's REPLY: goes to the client it names if the worker was
    /// serving that client's request (anything else is a protocol error).
    pub fn worker_reply(
        &mut self,
        worker: &[u8],
        client: &[u8],
        mut answer: Reply,
        now: Instant,
    ) -> Vec<Action> {
        let serving = self.workers.get(worker).and_then(|w| w.busy.as_ref());
        let matches = serving.is_some_and(|(_, p)| {
            p.client == client && p.request.correlation == answer.correlation
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
        record.expires = now + self.config.worker_expiry;
        let key = record.service.clone();
        let Some((_, pending)) = record.busy.take() else {
            return Vec::new();
        };
        answer.service = pending.request.service.clone();
        let mut actions = vec![Action::ToClient {
            client: pending.client,
            reply: answer,
        }];
        if let Some(service) = self.services.get_mut(&key) {
            service.idle.push_back(worker.to_vec());
        }
        actions.extend(self.dispatch(&key));
        actions
    }

    /// A worker's HEARTBEAT: it lives 7.5 s more. One from a worker that
    /// never said READY (or was forgotten) is told to go (DISCONNECT), so it
    /// reconnects and says READY again.
    pub fn worker_alive(&mut self, worker: &[u8], now: Instant) -> Vec<Action> {
        match self.workers.get_mut(worker) {
            Some(record) => {
                record.expires = now + self.config.worker_expiry;
                Vec::new()
            }
            None => vec![Action::Disconnect {
                worker: worker.to_vec(),
            }],
        }
    }

    /// A worker's DISCONNECT.
    pub fn worker_gone(&mut self, worker: &[u8]) -> Vec<Action> {
        let key = self.workers.get(worker).map(|w| w.service.clone());
        let mut actions = self.forget_worker(worker);
        if let Some(key) = key {
            actions.extend(self.dispatch(&key));
        }
        actions
    }

    /// The periodic work: requests past their deadline are answered 504,
    /// silent workers are forgotten (their request answered 500, or queued
    /// again if idempotent).
    pub fn tick(&mut self, now_ms: u64, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let dead: Vec<Vec<u8>> = self
            .workers
            .iter()
            .filter(|(_, w)| w.expires <= now)
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
            let stale: Vec<(Reverse<i8>, u64)> = service
                .queue
                .iter()
                .filter(|(_, p)| p.request.properties.deadline.is_some_and(|d| d <= now_ms))
                .map(|(k, _)| *k)
                .collect();
            for position in stale {
                if let Some(pending) = service.queue.remove(&position) {
                    actions.push(Action::ToClient {
                        reply: reply(&pending.request, Status::DEADLINE_PASSED, "deadline passed"),
                        client: pending.client,
                    });
                }
            }
        }
        let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        for key in keys {
            actions.extend(self.dispatch(&key));
        }
        actions
    }

    /// How many requests wait for `service` in `environment`.
    pub fn queued(&self, environment: &str, service: &[u8]) -> usize {
        let key = ServiceKey {
            environment: environment.to_string(),
            name: service.to_vec(),
        };
        self.services.get(&key).map_or(0, |s| s.queue.len())
    }

    /// Removes a worker; its request in progress is answered 500, or queued
    /// again in its old place if the request said it is idempotent.
    fn forget_worker(&mut self, worker: &[u8]) -> Vec<Action> {
        let Some(record) = self.workers.remove(worker) else {
            return Vec::new();
        };
        let Some(service) = self.services.get_mut(&record.service) else {
            return Vec::new();
        };
        service.workers = service.workers.saturating_sub(1);
        service.idle.retain(|w| w.as_slice() != worker);
        match record.busy {
            Some((arrival, pending)) if pending.request.properties.idempotent => {
                let position = (Reverse(pending.request.properties.priority), arrival);
                service.queue.insert(position, pending);
                Vec::new()
            }
            Some((_, pending)) => vec![Action::ToClient {
                reply: reply(&pending.request, Status::WORKER_FAILED, "worker failed"),
                client: pending.client,
            }],
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
            let Some(((priority, arrival), pending)) = service.queue.pop_first() else {
                break;
            };
            let Some(record) = self.workers.get_mut(&worker) else {
                // An idle entry for a forgotten worker: an invariant broke.
                log::error!("broker: idle list named an unknown worker; entry dropped");
                service.queue.insert((priority, arrival), pending);
                continue;
            };
            actions.push(Action::ToWorker {
                worker: worker.clone(),
                client: pending.client.clone(),
                request: pending.request.clone(),
            });
            record.busy = Some((arrival, pending));
        }
        actions
    }
}

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
        let mut broker = BrokerCore::new(Config::default());
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
        let mut broker = BrokerCore::new(Config::default());
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
        let mut broker = BrokerCore::new(Config::default());
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
        let mut broker = BrokerCore::new(config);
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
        let mut broker = BrokerCore::new(config);
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

    #[test]
    fn environments_do_not_cross() {
        let now = Instant::now();
        let mut broker = BrokerCore::new(Config::default());
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
        let expiry = Config::default().worker_expiry;
        let mut broker = BrokerCore::new(Config::default());
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
        let mut broker = BrokerCore::new(Config::default());
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
        let mut broker = BrokerCore::new(Config::default());
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
        let mut broker = BrokerCore::new(Config::default());
        for n in 0..MAX_SERVICES {
            let actions = broker.request(b"C", request(&format!("s{n}"), "1", 0, None), NOW_MS);
            assert!(actions.is_empty(), "service {n} refused");
        }
        let refused = broker.request(b"C", request("one-too-many", "1", 0, None), NOW_MS);
        assert_eq!(answered(&refused), [("C".into(), "1".into(), 503)]);
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
}
