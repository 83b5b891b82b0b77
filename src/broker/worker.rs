//! The SBP/1 worker API (study part 2, `../shared/spec/etude.md` §4): a
//! DEALER socket that offers one service to the broker
//! (`zguide/broker-protocol.md` §4).
//!
//! * [`Worker::new`] connects and sends READY (service, and the environment
//!   as a property).
//! * [`Worker::recv`] waits for the next REQUEST. Meanwhile it sends
//!   HEARTBEAT every [`WorkerOptions::heartbeat`] in which it sent nothing
//!   else, and counts the broker's silence: any message from the broker
//!   resets it. After [`WorkerOptions::liveness`] silent intervals (7.5 s by
//!   default), or on a DISCONNECT from the broker, it waits a back-off that
//!   starts at [`WorkerOptions::reconnect_initial`] and doubles up to
//!   [`WorkerOptions::reconnect_max`] (1 s … 32 s), then registers again on
//!   a **new** socket, with a new routing id: the broker would take a second
//!   READY from an id it knows as a protocol error. The back-off goes back to
//!   its start once a REQUEST arrives.
//! * **Several brokers.** With [`WorkerOptions::failover`] endpoints (the
//!   other broker of a Binary Star pair), each reconnect goes to the next
//!   endpoint of the ring `[endpoint, failover…]`, after the same back-off.
//!   A *passive* broker answers READY with DISCONNECT, so a worker that lands
//!   on it moves on to the other one after the back-off (which keeps
//!   doubling while no REQUEST comes: no tight loop between two brokers that
//!   both refuse it). Every connect, the first included, is logged as
//!   `worker connecting to <endpoint>` (info); [`Worker::endpoint`] says
//!   which broker the worker is on (or last was, during the back-off). A
//!   failover endpoint libzmq refuses (a malformed address) counts as one
//!   more reconnect: logged, then the next endpoint after the back-off.
//! * [`Worker::reply`] answers the request in hand, echoing the broker's
//!   client token and the correlation id.
//!
//! A worker serves one request at a time: `recv` refuses to wait for the next
//! before the one in hand is answered. Like the guide's `mdwrkapi`, it sends
//! no heartbeat while the application works on a request (there is no
//! background thread); that is why the broker gives a *busy* worker a much
//! longer expiry (`state::Config::busy_expiry`, 60 s) than an idle one.
//! Silence is counted from when the worker last listened, so time spent on a
//! request does not count against the broker either.
//!
//! Malformed or unexpected messages from the broker are dropped and logged
//! (at most 10 lines per 10 s, escaped). Dropping the worker sends DISCONNECT,
//! so the broker forgets it at once instead of after its expiry.

use std::time::{Duration, Instant};

use crate::broker::client::{ceil_ms, check_environment, check_service, dealer, send_frames};
use crate::broker::protocol::WorkerCommand;
use crate::broker::protocol::{parse_worker, Frames, Parsed, Properties, Reply, Request, Status};
use crate::curve::Keys;
use crate::heartbeat::Backoff;
use crate::log_limit::Window;
use crate::message::show;
use crate::{interrupt, Error, Message};

/// How a [`Worker`] connects, heartbeats and reconnects.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The broker's endpoint.
    pub endpoint: String,
    /// Further broker endpoints (the other broker of a Binary Star pair):
    /// each reconnect goes to the next one of the ring `[endpoint,
    /// failover…]`. Empty (the default): always `endpoint`.
    pub failover: Vec<String>,
    /// The service offered (1-255 printable ASCII bytes).
    pub service: String,
    /// The environment the service is offered in (`None`: `default`).
    pub environment: Option<String>,
    /// Heartbeat interval, both ways (spec: 2.5 s).
    pub heartbeat: Duration,
    /// Silent intervals after which the broker is taken as dead (spec: 3).
    pub liveness: u32,
    /// First wait before reconnecting (spec: 1 s).
    pub reconnect_initial: Duration,
    /// Longest wait before reconnecting (spec: 32 s).
    pub reconnect_max: Duration,
    /// CURVE: our keys (with the secret) and the broker's public key.
    pub curve: Option<(Keys, [u8; 32])>,
    /// The largest inbound frame, bytes.
    pub max_message_size: i64,
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            endpoint: crate::broker::DEFAULT_CONNECT.to_string(),
            failover: Vec::new(),
            service: "echo".to_string(),
            environment: None,
            heartbeat: Duration::from_millis(2500),
            liveness: 3,
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(32),
            curve: None,
            max_message_size: crate::socket::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// A request from the broker. `request.service` is the worker's service
/// (the wire leaves it out: a worker knows its service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The broker's token for the client, echoed in the reply.
    pub client: Vec<u8>,
    pub request: Request,
}

/// An SBP/1 worker for one service. See the module docs.
pub struct Worker {
    context: zmq::Context,
    options: WorkerOptions,
    /// The ring `[endpoint, failover…]`.
    endpoints: Vec<String>,
    /// The index in `endpoints` of the broker of the current (or last)
    /// socket.
    current: usize,
    /// `None` while waiting to reconnect.
    socket: Option<zmq::Socket>,
    identity: Vec<u8>,
    last_heard: Instant,
    last_sent: Instant,
    backoff: Backoff,
    reconnect_at: Option<Instant>,
    /// The request in hand: client token and correlation.
    serving: Option<(Vec<u8>, Vec<u8>)>,
    connects: u64,
    complaints: Window,
}

impl Worker {
    /// A worker in a context of its own, connected, READY sent.
    pub fn new(options: WorkerOptions) -> Result<Worker, Error> {
        Worker::with_context(&zmq::Context::new(), options)
    }

    /// A worker whose sockets live in `context` (so it can reach
    /// `inproc://` endpoints of that context), connected, READY sent.
    pub fn with_context(context: &zmq::Context, options: WorkerOptions) -> Result<Worker, Error> {
        check_service(options.service.as_bytes())?;
        if let Some(environment) = &options.environment {
            check_environment(environment)?;
        }
        let mut endpoints = vec![options.endpoint.clone()];
        endpoints.extend(options.failover.iter().cloned());
        let now = Instant::now();
        let mut worker = Worker {
            context: context.clone(),
            backoff: Backoff::new(options.reconnect_initial, options.reconnect_max),
            options,
            endpoints,
            current: 0,
            socket: None,
            identity: Vec::new(),
            last_heard: now,
            last_sent: now,
            reconnect_at: None,
            serving: None,
            connects: 0,
            complaints: Window::new(10, Duration::from_secs(10)),
        };
        worker.connect()?;
        Ok(worker)
    }

    /// The current socket's routing id (a new one after each reconnect).
    pub fn identity(&self) -> &[u8] {
        &self.identity
    }

    /// The endpoint of the broker the worker is registered with (during a
    /// reconnect's back-off: the one it left).
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current]
    }

    /// How many times the worker connected (1 before any reconnect).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// The environment the service is offered in.
    pub fn environment(&self) -> &str {
        self.options.environment.as_deref().unwrap_or("default")
    }

    /// Waits for the next request, as long as it takes (Ctrl-C:
    /// `Error::Interrupted`). See [`Worker::recv_timeout`].
    pub fn recv(&mut self) -> Result<Incoming, Error> {
        loop {
            if let Some(incoming) = self.recv_timeout(Duration::from_secs(3600))? {
                return Ok(incoming);
            }
        }
    }

    /// Waits at most `timeout` for the next request (`Ok(None)`: none came),
    /// heartbeating and reconnecting meanwhile. Fails with `Error::Protocol`
    /// if the request in hand has not been answered.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Incoming>, Error> {
        if self.serving.is_some() {
            return Err(Error::Protocol(
                "a worker serves one request at a time: reply to the one in hand first".into(),
            ));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(at) = self.reconnect_at {
                if now >= at {
                    self.connect()?;
                } else if now >= deadline {
                    return Ok(None);
                } else {
                    let until = at.min(deadline);
                    interrupt::sleep_ms(ceil_ms(until - now).unsigned_abs())?;
                }
                continue;
            }
            let Some(socket) = &self.socket else {
                self.connect()?;
                continue;
            };
            match socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => {
                    if let Some(incoming) = self.take(frames, now) {
                        return Ok(Some(incoming));
                    }
                    continue;
                }
                Err(zmq::Error::EAGAIN) => {}
                Err(zmq::Error::EINTR) if interrupt::interrupted() => {
                    return Err(Error::Interrupted)
                }
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let dead_after = self.options.heartbeat * self.options.liveness.max(1);
            if now.duration_since(self.last_heard) >= dead_after {
                self.disconnect(
                    now,
                    &format!("silent for {:.1} s", dead_after.as_secs_f64()),
                );
                continue;
            }
            if now.duration_since(self.last_sent) >= self.options.heartbeat {
                // Dropped if the queue is full: that says enough already.
                send_frames(
                    socket,
                    &WorkerCommand::Heartbeat.to_frames(false),
                    Duration::ZERO,
                )?;
                self.last_sent = now;
            }
            if now >= deadline {
                return Ok(None);
            }
            let wake = deadline
                .min(self.last_sent + self.options.heartbeat)
                .min(self.last_heard + dead_after);
            interrupt::poll(&[socket], ceil_ms(wake.saturating_duration_since(now)))?;
        }
    }

    /// Answers the request in hand: REPLY with its client token and
    /// correlation, `status`, `properties` (default: none) and `body`.
    /// `Error::Protocol` if `incoming` is not the request in hand;
    /// `Error::Timeout` if the broker took nothing for `liveness` heartbeats.
    pub fn reply(
        &mut self,
        incoming: &Incoming,
        status: Status,
        body: Vec<Vec<u8>>,
        properties: Option<Properties>,
    ) -> Result<(), Error> {
        let in_hand = (
            incoming.client.clone(),
            incoming.request.correlation.clone(),
        );
        if self.serving.as_ref() != Some(&in_hand) {
            return Err(Error::Protocol(format!(
                "no request {} in hand to answer",
                show(&incoming.request.correlation)
            )));
        }
        self.serving = None;
        let frames = WorkerCommand::Reply {
            client: in_hand.0,
            reply: Reply {
                service: Vec::new(),
                correlation: in_hand.1,
                status,
                properties: properties.unwrap_or_default(),
                body,
            },
        }
        .to_frames(false);
        let Some(socket) = &self.socket else {
            return Err(Error::Protocol("not connected".into()));
        };
        let wait = self.options.heartbeat * self.options.liveness.max(1);
        if !send_frames(socket, &frames, wait)? {
            return Err(Error::Timeout);
        }
        let now = Instant::now();
        self.last_sent = now;
        // Silence counts from when the worker listens again.
        self.last_heard = now;
        Ok(())
    }

    /// A new socket with a new routing id, READY sent; a reconnect goes to
    /// the next endpoint of the ring.
    fn connect(&mut self) -> Result<(), Error> {
        if self.connects > 0 {
            self.current = (self.current + 1) % self.endpoints.len();
        }
        log::info!("worker connecting to {}", self.endpoint());
        let identity = crate::broker::client::random_id("W").into_bytes();
        let socket = match dealer(
            &self.context,
            &self.endpoints[self.current],
            &identity,
            self.options.curve.as_ref(),
            self.options.max_message_size,
        ) {
            Ok(socket) => socket,
            // A failover endpoint libzmq refuses: on to the next one.
            Err(e @ Error::Endpoint { .. }) if self.connects > 0 => {
                self.disconnect(Instant::now(), &format!("is refused ({e})"));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let ready = WorkerCommand::Ready {
            service: self.options.service.as_bytes().to_vec(),
            properties: Properties::build(
                None,
                0,
                self.options.environment.as_deref(),
                false,
                None,
            ),
        };
        // A new socket's queue is empty: this cannot find it full.
        send_frames(&socket, &ready.to_frames(false), self.options.heartbeat)?;
        let now = Instant::now();
        self.socket = Some(socket);
        self.identity = identity;
        self.last_heard = now;
        self.last_sent = now;
        self.reconnect_at = None;
        self.serving = None;
        self.connects += 1;
        log::debug!(
            "worker {}: READY sent to {} as {}",
            show(self.options.service.as_bytes()),
            self.endpoint(),
            show(&self.identity)
        );
        Ok(())
    }

    /// Drops the socket and schedules the next connect after the back-off.
    fn disconnect(&mut self, now: Instant, why: &str) {
        let delay = self.backoff.next_delay();
        let next = &self.endpoints[(self.current + 1) % self.endpoints.len()];
        log::warn!(
            "worker {}: broker at {} {why}; reconnecting to {next} in {:.1} s",
            show(self.options.service.as_bytes()),
            self.endpoint(),
            delay.as_secs_f64()
        );
        self.socket = None;
        self.reconnect_at = Some(now + delay);
    }

    /// One message from the broker: a request to hand out, if it is one.
    fn take(&mut self, frames: Frames, now: Instant) -> Option<Incoming> {
        self.last_heard = now;
        match parse_worker(&frames) {
            Ok(Parsed {
                command:
                    WorkerCommand::Request {
                        client,
                        mut request,
                    },
                ..
            }) => {
                self.backoff.reset();
                request.service = self.options.service.as_bytes().to_vec();
                self.serving = Some((client.clone(), request.correlation.clone()));
                return Some(Incoming { client, request });
            }
            Ok(Parsed {
                command: WorkerCommand::Heartbeat,
                ..
            }) => {}
            Ok(Parsed {
                command: WorkerCommand::Disconnect,
                ..
            }) => self.disconnect(now, "sent DISCONNECT"),
            Ok(Parsed { command, .. }) => {
                let what = match command {
                    WorkerCommand::Ready { .. } => "READY",
                    _ => "REPLY",
                };
                self.complaints.warn(format_args!(
                    "worker: unexpected {what} from the broker: dropped"
                ));
            }
            Err(e) => self.complaints.warn(format_args!(
                "worker: malformed message from the broker ({}): {}",
                e.what,
                Message::from_frames(frames).summary()
            )),
        }
        None
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(socket) = &self.socket {
            // Tell the broker at once; never hold the exit up for long.
            let _ = socket.set_linger(200);
            let _ = send_frames(
                socket,
                &WorkerCommand::Disconnect.to_frames(false),
                Duration::ZERO,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::thread_cpu;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    static ENDPOINTS: AtomicUsize = AtomicUsize::new(0);

    /// A scripted broker: a ROUTER bound to a fresh inproc endpoint.
    fn broker(context: &zmq::Context) -> (zmq::Socket, String) {
        let endpoint = format!(
            "inproc://worker-test-{}",
            ENDPOINTS.fetch_add(1, Ordering::SeqCst)
        );
        let router = context.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind(&endpoint).unwrap();
        (router, endpoint)
    }

    fn options(endpoint: &str) -> WorkerOptions {
        WorkerOptions {
            endpoint: endpoint.to_string(),
            service: "echo".into(),
            environment: Some("test".into()),
            heartbeat: Duration::from_millis(50),
            liveness: 3,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(400),
            ..WorkerOptions::default()
        }
    }

    /// The next message the broker gets within `ms`: (routing id, rest, when).
    fn next_within(router: &zmq::Socket, ms: i64) -> Option<(Vec<u8>, Frames, Instant)> {
        let mut items = [router.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, ms).unwrap();
        if !items[0].is_readable() {
            return None;
        }
        let mut frames = router.recv_multipart(0).unwrap();
        let id = frames.remove(0);
        Some((id, frames, Instant::now()))
    }

    /// The next message other than HEARTBEAT, within 5 s.
    fn next_command(router: &zmq::Socket) -> (Vec<u8>, WorkerCommand, Instant) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = ceil_ms(deadline.saturating_duration_since(Instant::now()));
            let (id, frames, at) = next_within(router, left).expect("no message within 5 s");
            let command = parse_worker(&frames).unwrap().command;
            if command != WorkerCommand::Heartbeat {
                return (id, command, at);
            }
        }
    }

    fn to(router: &zmq::Socket, id: &[u8], command: WorkerCommand) {
        let mut frames = vec![id.to_vec()];
        frames.extend(command.to_frames(false));
        router.send_multipart(frames, 0).unwrap();
    }

    fn request(correlation: &[u8], body: &[u8]) -> WorkerCommand {
        WorkerCommand::Request {
            client: b"client-token".to_vec(),
            request: Request {
                service: Vec::new(),
                address: b"alice".to_vec(),
                properties: Properties::default(),
                correlation: correlation.to_vec(),
                body: vec![body.to_vec()],
            },
        }
    }

    /// Runs `worker` on a thread as an echo worker until `stop` is set.
    fn serve(mut worker: Worker, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(incoming) = worker.recv_timeout(Duration::from_millis(20)).unwrap() {
                    let body = incoming.request.body.clone();
                    worker.reply(&incoming, Status::OK, body, None).unwrap();
                }
            }
            worker.connects()
        })
    }

    #[test]
    fn ready_is_exactly_the_specs_frames() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let worker = Worker::with_context(&context, options(&endpoint)).unwrap();
        let (id, frames, _) = next_within(&router, 5000).expect("READY");
        assert_eq!(id, worker.identity());
        assert!(id.starts_with(b"W-"), "{}", show(&id));
        let environment = Properties::build(None, 0, Some("test"), false, None).raw;
        assert_eq!(
            frames,
            vec![
                b"SBPW01".to_vec(),
                vec![0x01],
                b"echo".to_vec(),
                environment
            ]
        );
        assert!(Worker::with_context(
            &context,
            WorkerOptions {
                service: "no spaces".into(),
                ..options(&endpoint)
            }
        )
        .is_err());
    }

    #[test]
    fn an_idle_worker_heartbeats() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut worker = Worker::with_context(&context, options(&endpoint)).unwrap();
        next_within(&router, 5000).expect("READY");
        // The broker talks (so the worker stays), the worker heartbeats.
        let id = worker.identity().to_vec();
        let mut heartbeats = 0;
        for _ in 0..4 {
            to(&router, &id, WorkerCommand::Heartbeat);
            assert_eq!(
                worker.recv_timeout(Duration::from_millis(60)).unwrap(),
                None
            );
            while let Some((from, frames, _)) = next_within(&router, 0) {
                assert_eq!(from, id);
                assert_eq!(frames, WorkerCommand::Heartbeat.to_frames(false));
                heartbeats += 1;
            }
        }
        assert!((2..=8).contains(&heartbeats), "{heartbeats} in 240 ms");
        assert_eq!(worker.connects(), 1, "never reconnected");
    }

    #[test]
    fn a_reply_echoes_the_client_token_and_correlation() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let mut worker = Worker::with_context(&context, options(&endpoint)).unwrap();
        let (id, _, _) = next_command(&router);
        to(&router, &id, request(b"c-42", b"hello"));
        let incoming = worker
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .expect("the request");
        assert_eq!(incoming.client, b"client-token");
        assert_eq!(incoming.request.service, b"echo");
        assert_eq!(incoming.request.address, b"alice");
        // One request at a time.
        assert!(worker.recv_timeout(Duration::ZERO).is_err());
        let reason = Properties::build(None, 0, None, false, Some("why"));
        worker
            .reply(
                &incoming,
                Status::WORKER_FAILED,
                vec![b"sorry".to_vec()],
                Some(reason.clone()),
            )
            .unwrap();
        let (_, reply, _) = next_command(&router);
        assert_eq!(
            reply,
            WorkerCommand::Reply {
                client: b"client-token".to_vec(),
                reply: Reply {
                    service: Vec::new(),
                    correlation: b"c-42".to_vec(),
                    status: Status::WORKER_FAILED,
                    properties: reason,
                    body: vec![b"sorry".to_vec()],
                },
            }
        );
        // Answered: a second reply is refused, the next recv allowed.
        assert!(worker
            .reply(&incoming, Status::OK, Vec::new(), None)
            .is_err());
        assert_eq!(worker.recv_timeout(Duration::ZERO).unwrap(), None);
    }

    #[test]
    fn disconnect_from_the_broker_means_a_new_ready_from_a_new_id_after_the_back_off() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        // A long liveness (500 ms), so only DISCONNECT explains a quick READY.
        let patient = WorkerOptions {
            liveness: 10,
            ..options(&endpoint)
        };
        let worker = Worker::with_context(&context, patient).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = serve(worker, stop.clone());
        let (first, ready, _) = next_command(&router);
        assert!(matches!(ready, WorkerCommand::Ready { .. }));
        to(&router, &first, WorkerCommand::Disconnect);
        let sent = Instant::now();
        let (second, ready, at) = next_command(&router);
        assert!(matches!(ready, WorkerCommand::Ready { .. }), "{ready:?}");
        assert_ne!(second, first, "a new socket, a new routing id");
        // 100 ms of back-off; not 500 ms of silence and then 100 ms.
        let gap = at - sent;
        assert!(
            gap >= Duration::from_millis(90) && gap < Duration::from_millis(450),
            "{gap:?}"
        );
        // It works on the new socket.
        to(&router, &second, request(b"7", b"again"));
        let (_, reply, _) = next_command(&router);
        assert!(
            matches!(&reply, WorkerCommand::Reply { reply, .. } if reply.body == [b"again"]),
            "{reply:?}"
        );
        stop.store(true, Ordering::SeqCst);
        assert_eq!(thread.join().unwrap(), 2);
    }

    #[test]
    fn a_silent_broker_means_reconnects_with_a_doubling_back_off() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let worker = Worker::with_context(&context, options(&endpoint)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = serve(worker, stop.clone());
        // The broker never speaks: dead after 3 x 50 ms, then 100, 200, 400,
        // 400 ms of back-off: READYs 250, 350, 550, 550 ms apart.
        let mut readies = Vec::new();
        while readies.len() < 5 {
            let (id, command, at) = next_command(&router);
            assert!(
                matches!(command, WorkerCommand::Ready { .. }),
                "{command:?}"
            );
            readies.push((id, at));
        }
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        let mut ids: Vec<_> = readies.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5, "every READY from a new socket");
        let gaps: Vec<u128> = readies
            .windows(2)
            .map(|w| (w[1].1 - w[0].1).as_millis())
            .collect();
        // Lower bounds show the doubling (a busy machine only makes gaps
        // longer); the last gap shows the cap: 550 ms, where an uncapped
        // back-off would wait 150 + 800 ms.
        for (gap, expected) in gaps.iter().zip([250, 350, 550, 550]) {
            assert!(
                *gap + 30 >= expected,
                "gaps {gaps:?}, expected about 250, 350, 550, 550"
            );
        }
        assert!(gaps[3] < 900, "gaps {gaps:?}: the back-off is not capped");
    }

    #[test]
    fn a_request_resets_the_back_off_and_junk_is_ignored() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let options = WorkerOptions {
            reconnect_max: Duration::from_millis(1600),
            ..options(&endpoint)
        };
        let worker = Worker::with_context(&context, options).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = serve(worker, stop.clone());
        next_command(&router);
        // Silence: READY again after 150 + 100 ms, + 150 + 200, + 150 + 400.
        next_command(&router);
        next_command(&router);
        let (id, _, _) = next_command(&router);
        // Junk first (ignored, though it counts as a sign of life), then a
        // request: served, and the back-off is back to 100 ms.
        for junk in [
            vec![id.clone(), b"SBPW01".to_vec(), vec![0x09]],
            vec![id.clone(), b"MDPW01".to_vec(), vec![0x02]],
            vec![id.clone(), b"SBPW01".to_vec(), vec![0x01], b"x".to_vec()],
        ] {
            router.send_multipart(junk, 0).unwrap();
        }
        // A well-formed command only a worker sends: named in the log.
        let ready = WorkerCommand::Ready {
            service: b"echo".to_vec(),
            properties: Properties::build(None, 0, None, false, None),
        };
        to(&router, &id, ready);
        to(&router, &id, request(b"1", b"x"));
        let (_, reply, _) = next_command(&router);
        assert!(matches!(reply, WorkerCommand::Reply { .. }), "{reply:?}");
        let silent_from = Instant::now();
        let (_, ready, at) = next_command(&router);
        assert!(matches!(ready, WorkerCommand::Ready { .. }));
        let gap = (at - silent_from).as_millis();
        // 150 + 100 ms; without the reset it would be 150 + 800 ms.
        assert!((230..800).contains(&gap), "150 + 100 ms, got {gap}");
        stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        assert!(
            !crate::log_limit::captured::lines_with("worker: unexpected READY from the broker")
                .is_empty(),
            "the READY was not named"
        );
    }

    #[test]
    fn dropping_a_worker_says_disconnect() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let worker = Worker::with_context(&context, options(&endpoint)).unwrap();
        next_command(&router);
        drop(worker);
        let (_, command, _) = next_command(&router);
        assert_eq!(command, WorkerCommand::Disconnect);
    }

    /// Runs `worker` on a thread as an echo worker until `stop` is set, and
    /// hands it back.
    fn serve_and_return(
        mut worker: Worker,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<Worker> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(incoming) = worker.recv_timeout(Duration::from_millis(20)).unwrap() {
                    let body = incoming.request.body.clone();
                    worker.reply(&incoming, Status::OK, body, None).unwrap();
                }
            }
            worker
        })
    }

    #[test]
    fn a_disconnect_right_after_ready_sends_the_worker_to_the_next_broker_after_the_back_off() {
        crate::log_limit::captured::install();
        let context = zmq::Context::new();
        // The first broker is passive: it answers READY with DISCONNECT.
        let (passive, first) = broker(&context);
        let (active, second) = broker(&context);
        let patient = WorkerOptions {
            liveness: 10,
            failover: vec![second.clone()],
            ..options(&first)
        };
        let worker = Worker::with_context(&context, patient).unwrap();
        assert_eq!(worker.endpoint(), first);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = serve_and_return(worker, stop.clone());
        let (id, ready, _) = next_command(&passive);
        assert!(matches!(ready, WorkerCommand::Ready { .. }), "{ready:?}");
        to(&passive, &id, WorkerCommand::Disconnect);
        let refused = Instant::now();
        let (id, ready, at) = next_command(&active);
        let warned = format!("broker at {first} sent DISCONNECT; reconnecting to {second} in");
        assert_eq!(
            crate::log_limit::captured::lines_with(&warned).len(),
            1,
            "{warned}"
        );
        assert!(matches!(ready, WorkerCommand::Ready { .. }), "{ready:?}");
        // The back-off (100 ms) applies; not 500 ms of silence either.
        let gap = at - refused;
        assert!(
            gap >= Duration::from_millis(90) && gap < Duration::from_millis(450),
            "{gap:?}"
        );
        to(&active, &id, request(b"9", b"served"));
        let (_, reply, _) = next_command(&active);
        assert!(
            matches!(&reply, WorkerCommand::Reply { reply, .. } if reply.body == [b"served"]),
            "{reply:?}"
        );
        stop.store(true, Ordering::SeqCst);
        let worker = thread.join().unwrap();
        assert_eq!((worker.endpoint(), worker.connects()), (&second[..], 2));
        for endpoint in [&first, &second] {
            let line = format!("worker connecting to {endpoint}");
            assert_eq!(
                crate::log_limit::captured::lines_with(&line),
                std::slice::from_ref(&line),
                "logged once each"
            );
        }
    }

    #[test]
    fn two_brokers_that_both_refuse_the_worker_get_it_in_turn_with_a_doubling_back_off() {
        let context = zmq::Context::new();
        let (first_router, first) = broker(&context);
        let (second_router, second) = broker(&context);
        let options = WorkerOptions {
            liveness: 100,
            failover: vec![second.clone()],
            reconnect_max: Duration::from_millis(800),
            ..options(&first)
        };
        let worker = Worker::with_context(&context, options).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = serve_and_return(worker, stop.clone());
        // READY at the first, the second, the first, the second: each
        // answered DISCONNECT at once, each next READY a back-off later.
        let mut readies = Vec::new();
        for router in [&first_router, &second_router, &first_router, &second_router] {
            let (id, ready, at) = next_command(router);
            assert!(matches!(ready, WorkerCommand::Ready { .. }), "{ready:?}");
            readies.push(at);
            to(router, &id, WorkerCommand::Disconnect);
        }
        stop.store(true, Ordering::SeqCst);
        let worker = thread.join().unwrap();
        assert_eq!((worker.endpoint(), worker.connects()), (&second[..], 4));
        let gaps: Vec<u128> = readies
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        // 100, 200, 400 ms: no tight loop between two refusing brokers.
        for (gap, expected) in gaps.iter().zip([100, 200, 400]) {
            assert!(*gap + 10 >= expected, "gaps {gaps:?}");
        }
    }

    #[test]
    fn the_environment_is_the_one_given_or_default() {
        let context = zmq::Context::new();
        let (_router, endpoint) = broker(&context);
        let worker = Worker::with_context(&context, options(&endpoint)).unwrap();
        assert_eq!(worker.environment(), "test");
        let plain = WorkerOptions {
            environment: None,
            ..options(&endpoint)
        };
        let worker = Worker::with_context(&context, plain).unwrap();
        assert_eq!(worker.environment(), "default");
    }

    #[test]
    fn a_bad_first_endpoint_fails_but_a_bad_failover_is_skipped() {
        let context = zmq::Context::new();
        let bad = "tcp://no port here".to_string();
        let first_bad = WorkerOptions {
            endpoint: bad.clone(),
            ..WorkerOptions::default()
        };
        assert!(matches!(
            Worker::with_context(&context, first_bad),
            Err(Error::Endpoint { .. })
        ));
        // Broker, bad failover, broker: DISCONNECT sends the worker on to
        // the bad one, refused (no connect counted), then after a second
        // back-off back to the broker.
        let (router, endpoint) = broker(&context);
        let ring = WorkerOptions {
            liveness: 100,
            failover: vec![bad],
            ..options(&endpoint)
        };
        let mut worker = Worker::with_context(&context, ring).unwrap();
        let (id, ready, _) = next_command(&router);
        assert!(matches!(ready, WorkerCommand::Ready { .. }), "{ready:?}");
        to(&router, &id, WorkerCommand::Disconnect);
        let deadline = Instant::now() + Duration::from_secs(5);
        while worker.connects() < 2 && Instant::now() < deadline {
            assert_eq!(
                worker.recv_timeout(Duration::from_millis(50)).unwrap(),
                None
            );
        }
        assert_eq!((worker.connects(), worker.endpoint()), (2, &endpoint[..]));
        let (id_again, ready, _) = next_command(&router);
        assert!(matches!(ready, WorkerCommand::Ready { .. }), "{ready:?}");
        assert_ne!(id_again, id);
    }

    #[test]
    fn waiting_through_a_back_off_takes_the_whole_timeout_and_no_cpu() {
        let context = zmq::Context::new();
        let (router, endpoint) = broker(&context);
        let slow = WorkerOptions {
            heartbeat: Duration::from_millis(300),
            reconnect_initial: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(5),
            ..options(&endpoint)
        };
        let mut worker = Worker::with_context(&context, slow).unwrap();
        let (id, _, _) = next_command(&router);
        // Idle and connected: the waits are for the heartbeat, the broker's
        // silence and the caller's limit, not a spin between them.
        let cpu = thread_cpu();
        let started = Instant::now();
        assert_eq!(
            worker.recv_timeout(Duration::from_millis(600)).unwrap(),
            None
        );
        let (waited, spent) = (started.elapsed(), thread_cpu() - cpu);
        assert!(waited >= Duration::from_millis(590), "{waited:?}");
        assert!(
            spent < Duration::from_millis(150),
            "{spent:?} of CPU in {waited:?}"
        );
        // In the back-off after a DISCONNECT: the same, and no reconnect yet.
        to(&router, &id, WorkerCommand::Disconnect);
        let cpu = thread_cpu();
        let started = Instant::now();
        assert_eq!(
            worker.recv_timeout(Duration::from_millis(600)).unwrap(),
            None
        );
        let (waited, spent) = (started.elapsed(), thread_cpu() - cpu);
        assert!(waited >= Duration::from_millis(590), "{waited:?}");
        assert!(
            spent < Duration::from_millis(150),
            "{spent:?} of CPU in {waited:?}"
        );
        assert_eq!(worker.connects(), 1);
    }

    #[test]
    fn a_reply_waits_liveness_heartbeats_for_a_broker_that_does_not_read() {
        let context = zmq::Context::new();
        // The broker's queue takes one message; the worker's holds 1000.
        let router = context.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.set_rcvhwm(1).unwrap();
        let endpoint = format!(
            "inproc://worker-test-{}",
            ENDPOINTS.fetch_add(1, Ordering::SeqCst)
        );
        router.bind(&endpoint).unwrap();
        let patient = WorkerOptions {
            heartbeat: Duration::from_millis(300),
            ..options(&endpoint)
        };
        let mut worker = Worker::with_context(&context, patient).unwrap();
        let (id, _, _) = next_command(&router);
        // Requests keep coming, replies are never read: at some point a
        // reply finds no room, and waits 3 × 300 ms for it.
        for n in 0..5000u32 {
            to(&router, &id, request(&n.to_be_bytes(), b"x"));
            let incoming = worker
                .recv_timeout(Duration::from_secs(5))
                .unwrap()
                .expect("the request");
            let started = Instant::now();
            match worker.reply(&incoming, Status::OK, vec![b"x".to_vec()], None) {
                Ok(()) => continue,
                Err(Error::Timeout) => {
                    let waited = started.elapsed();
                    assert!(waited >= Duration::from_millis(850), "{waited:?} after {n}");
                    assert!(n >= 900, "the queue held only {n} replies");
                    return;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("5000 replies went into a broker that reads nothing");
    }
}
