//! `FreelanceClient`: the Freelance client API of §35, Model Three (the
//! guide's `flcliapi`), speaking FLP (RFC 10) to any number of servers
//! without a broker.
//!
//! The API works in two halves, as the C does. The *frontend*
//! ([`FreelanceClient`]) is what the application calls; the *agent* runs on
//! its own thread (an [`Actor`]) and owns one ROUTER socket connected to every
//! server. They talk over the actor's pipe with two commands:
//!
//! * `[CONNECT][endpoint]`: connect to one more server (the frontend then
//!   waits 100 ms, as the C does, so the connection is up before the first
//!   request);
//! * `[REQUEST][body…]`: the agent answers `[OK][reply…]`, or `[FAILED]` when
//!   no server replied within [`GLOBAL_TIMEOUT`].
//!
//! On the wire (FLP) the client's ROUTER addresses a server **by its endpoint
//! string**: `[endpoint][sequence][body…]` for a request, `[endpoint][PING]`
//! every [`PING_INTERVAL`] to each server, which answers `[PONG]`. Any message
//! from a server keeps it alive for [`SERVER_TTL`]; a silent server is
//! skipped until it speaks again. A reply counts only if its sequence frame
//! is the pending request's.
//!
//! **A Freelance server's identity must be, byte for byte, the endpoint string
//! the client connects to**: a server started as `tcp://localhost:5555` is
//! unreachable for a client that connects to `tcp://127.0.0.1:5555`, though
//! the TCP connection itself works. The client cannot see the mismatch (the
//! server never speaks first), so a failed request's warning says so.
//!
//! The agent's logic is [`Agent`]: plain state driven with an explicit `now`,
//! so the unit tests below run it on an injected clock without sockets.
//!
//! Differs from the C `flcliapi.c` (each fix is commented where it is made):
//! * a `[PONG]`, or anything else, is never taken for a reply: the C compares
//!   `atoi` of the second frame with the sequence, so before the first request
//!   (sequence 0) a PONG went up the pipe as a reply and the next request read
//!   it as its answer;
//! * the C re-sends the pending request to the *same* first live server on
//!   every wake-up of its poll (every PONG, every ping timer, every stale
//!   reply). Here a request is sent once; if no reply came within
//!   [`RETRY_INTERVAL`], it is sent again to the *next* live server in turn
//!   (requests in FLP are idempotent), at most
//!   `GLOBAL_TIMEOUT / RETRY_INTERVAL` times;
//! * nothing is sent to a server without a live connection (the ROUTER has
//!   `ROUTER_MANDATORY`, and its monitor, [`socket::Watched`], says
//!   which connections are up): a server that is down (killed, not started
//!   yet) is skipped at once and the request goes to the next live server
//!   instead of waiting in a queue for a peer that is gone;
//! * a server is listed once (the C may add it to its `actives` list twice);
//!   a message from an unknown identity, a bad endpoint or an unknown command
//!   is logged (bounded) and dropped, where the C asserts.

use std::time::{Duration, Instant};

use crate::actor::{self, Actor, Pipe};
use crate::message::show;
use crate::{interrupt, socket, Error, Message};

/// If no server replies within this time, the request fails (ms).
pub const GLOBAL_TIMEOUT: u64 = 3000;
/// PING interval for each server (ms).
pub const PING_INTERVAL: u64 = 2000;
/// A server silent for this long is considered dead (ms).
pub const SERVER_TTL: u64 = 6000;
/// New in this port: a request unanswered for this long is sent once more,
/// to the next live server (ms).
pub const RETRY_INTERVAL: u64 = 1000;
/// How long `connect` waits for the connection to come up (ms), as the C.
pub const CONNECT_DELAY: u64 = 100;
/// Messages queued for one server before sends to it fail (EAGAIN): one
/// request and some PINGs, never minutes of PINGs for a server that is down.
const SERVER_QUEUE: i32 = 10;

/// The most server identities the agent warns about ("unknown server"); more
/// are dropped silently, so a hostile peer cannot flood the log.
const UNKNOWN_WARNINGS: usize = 8;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The application's half of the API (`flcliapi_t`).
pub struct FreelanceClient {
    agent: Actor,
    // Declared after the actor: the agent's sockets close before the context.
    _context: zmq::Context,
}

impl FreelanceClient {
    /// Starts the agent thread (`flcliapi_new`).
    pub fn new() -> Result<FreelanceClient, Error> {
        let context = zmq::Context::new();
        let agent = Actor::new(&context, agent_task)?;
        Ok(FreelanceClient {
            agent,
            _context: context,
        })
    }

    /// Connects to one more server, then waits 100 ms so the connection is
    /// up before the first request, as the C does (`flcliapi_connect`).
    /// Interruptible by Ctrl-C.
    pub fn connect(&mut self, endpoint: &str) -> Result<(), Error> {
        self.agent
            .send(Message::from_frames(["CONNECT", endpoint]))?;
        interrupt::sleep_ms(CONNECT_DELAY)
    }

    /// Sends a request and waits for its reply (`flcliapi_request`):
    /// `Ok(None)` if no server replied in time, `Err(Interrupted)` on Ctrl-C.
    pub fn request(&mut self, mut request: Message) -> Result<Option<Message>, Error> {
        request.push("REQUEST");
        self.agent.send(request)?;
        let mut reply = self.agent.recv()?;
        match reply.pop().as_deref() {
            Some(b"OK") => Ok(Some(reply)),
            Some(b"FAILED") => Ok(None),
            other => Err(Error::Protocol(format!(
                "the agent answered {}",
                show(other.unwrap_or_default())
            ))),
        }
    }
}

/// One server the agent talks to (`server_t`).
#[derive(Debug, Clone)]
pub struct Server {
    /// Its endpoint, which is also its identity on the wire.
    pub endpoint: String,
    /// When the next PING is due.
    pub ping_at: Instant,
    /// When it counts as dead unless it speaks before.
    pub expires: Instant,
}

impl Server {
    /// Alive: heard from (or connected to) less than [`SERVER_TTL`] ago.
    pub fn is_alive(&self, now: Instant) -> bool {
        now < self.expires
    }
}

/// The request in flight.
#[derive(Debug)]
struct Pending {
    sequence: u64,
    body: Message,
    /// Fails at this time.
    expires: Instant,
    /// Sent again (to the next live server) at this time.
    retry_at: Instant,
    /// Index of the server it went to last; the next try starts after it.
    last_server: Option<usize>,
    /// True once one send reached a server's queue.
    sent: bool,
}

/// The agent's state and rules (`agent_t`), without sockets: every call takes
/// the time, and sends go through a callback that says whether the message
/// was queued (`false`: that server has no connection).
#[derive(Debug, Default)]
pub struct Agent {
    servers: Vec<Server>,
    sequence: u64,
    request: Option<Pending>,
    warned: Vec<Vec<u8>>,
}

/// What the agent asks its socket glue to send to a server.
pub type SendFn<'a> = dyn FnMut(Message) -> bool + 'a;

impl Agent {
    /// No servers, no request.
    pub fn new() -> Agent {
        Agent::default()
    }

    /// The servers, in the order they were connected.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// True while a request waits for its reply.
    pub fn is_busy(&self) -> bool {
        self.request.is_some()
    }

    /// Registers a server the socket is now connected to. It counts as alive
    /// for [`SERVER_TTL`], its first PING is due in [`PING_INTERVAL`]. A
    /// second CONNECT to the same endpoint changes nothing (the C would list
    /// the server twice).
    pub fn connect(&mut self, endpoint: &str, now: Instant) {
        if self.servers.iter().any(|s| s.endpoint == endpoint) {
            return;
        }
        self.servers.push(Server {
            endpoint: endpoint.to_string(),
            ping_at: now + ms(PING_INTERVAL),
            expires: now + ms(SERVER_TTL),
        });
    }

    /// Takes a new request: it gets the next sequence number, is due to fail
    /// after [`GLOBAL_TIMEOUT`], and goes out at the next [`Agent::tick`].
    /// The frontend sends one request at a time; a request that arrives while
    /// another is pending replaces it (the old one's caller is gone).
    pub fn request(&mut self, body: Message, now: Instant) {
        if self.request.is_some() {
            log::warn!("flcliapi: a new request replaces one still pending");
        }
        self.sequence += 1;
        self.request = Some(Pending {
            sequence: self.sequence,
            body,
            expires: now + ms(GLOBAL_TIMEOUT),
            retry_at: now,
            last_server: None,
            sent: false,
        });
    }

    /// Handles one message from the ROUTER, `[identity][…]`. Any message from
    /// a known server keeps it alive; the reply to the pending request is
    /// returned as `[OK][reply…]` for the pipe.
    pub fn server_message(&mut self, mut msg: Message, now: Instant) -> Option<Message> {
        let identity = msg.pop().unwrap_or_default();
        let Some(server) = self
            .servers
            .iter_mut()
            .find(|s| s.endpoint.as_bytes() == identity.as_slice())
        else {
            self.warn_unknown(&identity, &msg);
            return None;
        };
        server.ping_at = now + ms(PING_INTERVAL);
        server.expires = now + ms(SERVER_TTL);

        // Fix: only a frame equal to the pending request's sequence makes a
        // reply. The C compared atoi(frame) with the last sequence, so a
        // [PONG] (atoi = 0) before the first request went up the pipe as a
        // reply, and the next request took it for its answer.
        let pending = self.request.as_ref()?;
        if msg.first() != Some(pending.sequence.to_string().as_bytes()) {
            // A PONG, a late reply to an earlier request, or junk.
            return None;
        }
        self.request = None;
        msg.pop();
        msg.push("OK");
        Some(msg)
    }

    /// The periodic work, done after every wake-up: fails an expired request
    /// (returns `[FAILED]` for the pipe), sends the pending request if it is
    /// due, and PINGs the servers whose ping time has come.
    pub fn tick(&mut self, now: Instant, send: &mut SendFn) -> Option<Message> {
        let mut failed = None;
        if let Some(pending) = &self.request {
            if now >= pending.expires {
                self.log_failure(now);
                self.request = None;
                failed = Some(Message::from_frames(["FAILED"]));
            }
        }
        self.dispatch(now, send);
        for server in &mut self.servers {
            if now >= server.ping_at {
                // A PING that cannot be queued (no connection) is not an
                // error: the server is down, and its TTL will say so.
                send(Message::from_frames([server.endpoint.as_str(), "PING"]));
                server.ping_at = now + ms(PING_INTERVAL);
            }
        }
        failed
    }

    /// How long the agent may sleep: until the next PING, retry or request
    /// expiry, whichever is first ("tickless"), at most an hour.
    pub fn next_wakeup(&self, now: Instant) -> Duration {
        let mut next = now + Duration::from_secs(3600);
        for server in &self.servers {
            next = next.min(server.ping_at);
        }
        if let Some(pending) = &self.request {
            next = next.min(pending.expires).min(pending.retry_at);
        }
        next.saturating_duration_since(now)
    }

    /// Sends the pending request if it has not reached any server yet, or if
    /// its retry time has come.
    ///
    /// Fix: the C re-sent the request on every wake-up, always to the first
    /// live server. Here it goes to the first live server that takes it (the
    /// C's choice), and each retry to the next live one after the server
    /// tried last, round-robin, once per [`RETRY_INTERVAL`].
    fn dispatch(&mut self, now: Instant, send: &mut SendFn) {
        let Some(pending) = self.request.as_mut() else {
            return;
        };
        if pending.sent && now < pending.retry_at {
            return;
        }
        pending.retry_at = now + ms(RETRY_INTERVAL);
        let count = self.servers.len();
        let start = pending.last_server.map_or(0, |last| last + 1);
        for index in (0..count).map(|n| (start + n) % count) {
            let server = &self.servers[index];
            if !server.is_alive(now) {
                continue;
            }
            let mut request = pending.body.clone();
            request.push(pending.sequence.to_string());
            request.push(server.endpoint.as_str());
            if send(request) {
                if pending.sent {
                    log::debug!(
                        "flcliapi: request {} unanswered, sent again to {}",
                        pending.sequence,
                        server.endpoint
                    );
                }
                pending.last_server = Some(index);
                pending.sent = true;
                return;
            }
        }
    }

    /// The loud half of the identity rule: a request that failed says what
    /// the usual cause is.
    fn log_failure(&self, now: Instant) {
        let alive: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| s.is_alive(now))
            .map(|s| s.endpoint.as_str())
            .collect();
        log::warn!(
            "flcliapi: no reply within {GLOBAL_TIMEOUT} ms (servers not yet expired: {alive:?}); \
             check that each server runs and that its identity is, byte for byte, the endpoint \
             this client connects to (tcp://localhost:5555 is not tcp://127.0.0.1:5555)"
        );
    }

    fn warn_unknown(&mut self, identity: &[u8], msg: &Message) {
        if self.warned.len() >= UNKNOWN_WARNINGS || self.warned.iter().any(|w| w == identity) {
            return;
        }
        self.warned.push(identity.to_vec());
        log::warn!(
            "flcliapi: message from unknown server {} dropped ({}); a Freelance server's \
             identity must equal the endpoint the client connects to, byte for byte{}",
            show(identity),
            msg.summary(),
            if self.warned.len() == UNKNOWN_WARNINGS {
                "; further unknown servers are not logged"
            } else {
                ""
            }
        );
    }
}

/// The agent thread (`flcliapi_agent`): one ROUTER to every server, the pipe
/// to the frontend, and a poll that sleeps until the next thing to do.
fn agent_task(pipe: &Pipe) {
    if let Err(e) = crate::program::interrupted_is_ok(agent_loop(pipe)) {
        log::error!("flcliapi agent: {e}");
    }
}

fn agent_loop(pipe: &Pipe) -> Result<(), Error> {
    // Nothing is sent to a server without a live connection, so requests
    // go straight to the next live server instead of queueing for a dead
    // one until its TTL runs out: ROUTER_MANDATORY refuses a server never
    // reached (EHOSTUNREACH), the socket's monitor tells of one that went
    // (not IMMEDIATE: libzmq 4.3 can abort the reader, see
    // `socket::Watched`). A small send HWM bounds what waits for a server
    // that died in the last milliseconds. LINGER 0: at exit, unsent requests
    // and pings are worthless.
    let router = socket::new(pipe.context(), zmq::ROUTER)
        .router_mandatory()
        .send_hwm(SERVER_QUEUE)
        .linger(0)
        .build()?;
    let router = socket::Watched::new(pipe.context(), router)?;
    pipe.signal(0)?;
    let mut agent = Agent::new();
    let mut send = |msg: Message| {
        let server = String::from_utf8_lossy(msg.first().unwrap_or_default());
        if !router.is_live(&server) {
            return false;
        }
        match msg.send_or_drop(&router) {
            Ok(queued) => queued,
            Err(e) => {
                log::warn!("flcliapi: send failed: {e}");
                false
            }
        }
    };
    loop {
        let timeout = agent.next_wakeup(Instant::now());
        // Round up, so we never wake a millisecond early and spin.
        let timeout_ms = timeout.as_micros().div_ceil(1000) as i64;
        let ready = interrupt::poll(&[pipe.socket(), &router], timeout_ms)?;
        if ready[0] {
            let command = pipe.recv()?;
            if actor::is_term(&command) {
                return Ok(());
            }
            control_message(&mut agent, &router, command);
        }
        if ready[1] {
            let msg = Message::recv_now(&router)?;
            if let Some(reply) = agent.server_message(msg, Instant::now()) {
                pipe.send(reply)?;
            }
        }
        if let Some(failed) = agent.tick(Instant::now(), &mut send) {
            pipe.send(failed)?;
        }
    }
}

/// One command from the frontend: CONNECT or REQUEST
/// (`agent_control_message`).
fn control_message(agent: &mut Agent, router: &zmq::Socket, mut command: Message) {
    match command.pop().as_deref() {
        Some(b"CONNECT") => {
            let endpoint = command.pop_string().unwrap_or_default();
            println!("I: connecting to {endpoint}...");
            // The C asserts that the connect worked; a bad endpoint is logged.
            match router.connect(&endpoint) {
                Ok(()) => agent.connect(&endpoint, Instant::now()),
                Err(e) => log::error!("cannot connect to {endpoint}: {e}"),
            }
        }
        Some(b"REQUEST") => agent.request(command, Instant::now()),
        other => log::warn!(
            "flcliapi: unknown command {} dropped",
            show(other.unwrap_or_default())
        ),
    }
}

/// The largest frame a Freelance server accepts (64 KiB): a request is a
/// sequence number and a name to resolve. A bigger frame makes libzmq drop
/// that client's connection.
pub const SERVER_MAX_FRAME: i64 = 64 << 10;
/// Replies a Freelance server queues for one client (100): past that, a
/// client that stopped reading loses its replies, and the server's memory for
/// it stays bounded (100 × a few frames of at most 64 KiB).
pub const SERVER_SEND_HWM: i32 = 100;

/// Requests a Freelance server lets libzmq queue from one client (100)
/// before it stops reading that connection, so a client sending faster than
/// the server works holds at most 100 × 64 KiB of the server's memory.
pub const SERVER_RECEIVE_HWM: i32 = 100;

/// A Freelance server's socket of `kind`, with the limits above and the
/// builder's LINGER.
pub fn server_socket(context: &zmq::Context, kind: zmq::SocketType) -> socket::Builder<'_> {
    socket::new(context, kind)
        .max_message_size(SERVER_MAX_FRAME)
        .send_hwm(SERVER_SEND_HWM)
        .receive_hwm(SERVER_RECEIVE_HWM)
}

/// The request loop flclient2 and flclient3 share: sends `requests` name
/// resolution requests (`random name`) one after another through `request`,
/// then prints `Average round trip cost: N usec`. If one gets no reply it
/// prints `E: name service not available, aborting` and returns `Ok(false)`
/// (the C then printed an average over requests it never made, and exited
/// 0; the programs here exit 1).
pub fn resolve_names(
    requests: u64,
    mut request: impl FnMut(Message) -> Result<Option<Message>, Error>,
) -> Result<bool, Error> {
    let start = Instant::now();
    for _ in 0..requests {
        if request(Message::from_frames(["random name"]))?.is_none() {
            println!("E: name service not available, aborting");
            return Ok(false);
        }
    }
    println!(
        "Average round trip cost: {} usec",
        average_usec(start.elapsed(), requests)
    );
    Ok(true)
}

/// `elapsed` over `requests` (at least one), in whole microseconds.
fn average_usec(elapsed: Duration, requests: u64) -> u128 {
    elapsed.as_micros() / u128::from(requests.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "tcp://localhost:5555";
    const B: &str = "tcp://localhost:5556";
    const C: &str = "tcp://localhost:5557";

    /// Records what the agent sends; `down` lists servers with no connection.
    #[derive(Default)]
    struct Wire {
        sent: Vec<Vec<Vec<u8>>>,
        down: Vec<&'static str>,
    }

    impl Wire {
        fn tick(&mut self, agent: &mut Agent, now: Instant) -> Option<Message> {
            let down = self.down.clone();
            let sent = &mut self.sent;
            agent.tick(now, &mut |msg: Message| {
                let to = String::from_utf8(msg.first().unwrap().to_vec()).unwrap();
                if down.contains(&to.as_str()) {
                    return false;
                }
                sent.push(msg.into_frames());
                true
            })
        }

        /// The requests sent (not PINGs), as (server, sequence).
        fn requests(&self) -> Vec<(String, String)> {
            self.sent
                .iter()
                .filter(|m| m[1] != b"PING")
                .map(|m| (text(&m[0]), text(&m[1])))
                .collect()
        }

        fn pings(&self) -> Vec<String> {
            self.sent
                .iter()
                .filter(|m| m[1] == b"PING")
                .map(|m| text(&m[0]))
                .collect()
        }
    }

    fn text(frame: &[u8]) -> String {
        String::from_utf8(frame.to_vec()).unwrap()
    }

    fn agent_with(servers: &[&str], t0: Instant) -> Agent {
        let mut agent = Agent::new();
        for s in servers {
            agent.connect(s, t0);
        }
        agent
    }

    fn from(server: &str, frames: &[&str]) -> Message {
        let mut msg = Message::from_frames(frames.iter().copied());
        msg.push(server);
        msg
    }

    fn body() -> Message {
        Message::from_frames(["random name"])
    }

    #[test]
    fn a_request_goes_to_the_first_live_server_and_its_reply_comes_back() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, B], t0);
        let mut wire = Wire::default();
        agent.request(body(), t0);
        assert_eq!(wire.tick(&mut agent, t0), None);
        assert_eq!(wire.requests(), [(A.to_string(), "1".to_string())]);
        assert_eq!(wire.sent[0][2], b"random name");
        let reply = agent.server_message(from(A, &["1", "OK"]), t0 + ms(1));
        assert_eq!(
            reply.map(Message::into_frames),
            Some(vec![b"OK".to_vec(), b"OK".to_vec()])
        );
        assert!(!agent.is_busy());
    }

    #[test]
    fn a_pong_is_never_a_reply() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A], t0);
        // Before any request: the C passed this up the pipe (sequence 0).
        assert_eq!(agent.server_message(from(A, &["PONG"]), t0), None);
        agent.request(body(), t0);
        assert_eq!(agent.server_message(from(A, &["PONG"]), t0), None);
        assert_eq!(agent.server_message(from(A, &["0", "OK"]), t0), None);
        assert!(agent.is_busy(), "still waiting for reply 1");
        assert!(agent.server_message(from(A, &["1", "OK"]), t0).is_some());
    }

    #[test]
    fn a_late_reply_to_an_earlier_request_is_dropped() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A], t0);
        let mut wire = Wire::default();
        agent.request(body(), t0);
        wire.tick(&mut agent, t0);
        assert!(wire.tick(&mut agent, t0 + ms(GLOBAL_TIMEOUT)).is_some());
        agent.request(body(), t0 + ms(GLOBAL_TIMEOUT));
        assert_eq!(
            agent.server_message(from(A, &["1", "OK"]), t0 + ms(GLOBAL_TIMEOUT + 1)),
            None
        );
        assert!(agent.server_message(from(A, &["2", "OK"]), t0).is_some());
    }

    #[test]
    fn a_request_is_not_resent_on_every_wake_up() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, B], t0);
        let mut wire = Wire::default();
        agent.request(body(), t0);
        wire.tick(&mut agent, t0);
        // Wake-ups before the retry time: PONGs, stale replies, pings.
        for n in 1..10 {
            let now = t0 + ms(n * (RETRY_INTERVAL / 10) - 1);
            agent.server_message(from(B, &["PONG"]), now);
            wire.tick(&mut agent, now);
        }
        assert_eq!(wire.requests().len(), 1, "{:?}", wire.requests());
    }

    #[test]
    fn an_unanswered_request_is_retried_round_robin_over_live_servers() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, B, C], t0);
        let mut wire = Wire::default();
        agent.request(body(), t0);
        for n in 0..3 {
            assert_eq!(wire.tick(&mut agent, t0 + ms(n * RETRY_INTERVAL)), None);
        }
        let to: Vec<String> = wire.requests().into_iter().map(|r| r.0).collect();
        assert_eq!(to, [A, B, C]);
        assert!(wire.requests().iter().all(|(_, sequence)| sequence == "1"));
        // B answers the retry: that is the reply.
        assert!(agent
            .server_message(from(B, &["1", "OK"]), t0 + ms(2 * RETRY_INTERVAL + 1))
            .is_some());
    }

    #[test]
    fn retries_skip_servers_without_a_connection() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, B, C], t0);
        let mut wire = Wire {
            down: vec![A, B],
            ..Wire::default()
        };
        agent.request(body(), t0);
        wire.tick(&mut agent, t0);
        assert_eq!(wire.requests(), [(C.to_string(), "1".to_string())]);
        // C vanishes before it replies; B comes back: the retry goes to B.
        wire.down = vec![A, C];
        wire.tick(&mut agent, t0 + ms(RETRY_INTERVAL));
        assert_eq!(wire.requests()[1].0, B);
    }

    #[test]
    fn a_request_nobody_can_take_waits_for_a_server_then_fails_in_time() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A], t0);
        let mut wire = Wire {
            down: vec![A],
            ..Wire::default()
        };
        agent.request(body(), t0);
        assert_eq!(wire.tick(&mut agent, t0), None);
        assert!(wire.requests().is_empty());
        assert!(wire.tick(&mut agent, t0 + ms(GLOBAL_TIMEOUT - 1)).is_none());
        let failed = wire.tick(&mut agent, t0 + ms(GLOBAL_TIMEOUT));
        assert_eq!(
            failed.map(Message::into_frames),
            Some(vec![b"FAILED".to_vec()])
        );
        assert!(!agent.is_busy());
    }

    #[test]
    fn a_silent_server_expires_after_its_ttl_and_revives_when_it_speaks() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, B], t0);
        let mut wire = Wire::default();
        agent.server_message(from(B, &["PONG"]), t0 + ms(SERVER_TTL - 10));
        let late = t0 + ms(SERVER_TTL);
        assert!(!agent.servers()[0].is_alive(late), "A never spoke");
        assert!(agent.servers()[1].is_alive(late));
        agent.request(body(), late);
        wire.tick(&mut agent, late);
        assert_eq!(wire.requests()[0].0, B, "the expired A is skipped");
        agent.server_message(from(B, &["1", "OK"]), late);
        // A speaks again: it is first in line once more.
        agent.server_message(from(A, &["PONG"]), late + ms(1));
        agent.request(body(), late + ms(2));
        wire.tick(&mut agent, late + ms(2));
        assert_eq!(wire.requests()[1], (A.to_string(), "2".to_string()));
    }

    #[test]
    fn every_server_is_pinged_each_interval_and_the_poll_sleeps_until_then() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, B], t0);
        let mut wire = Wire::default();
        assert_eq!(agent.next_wakeup(t0), ms(PING_INTERVAL));
        wire.tick(&mut agent, t0 + ms(PING_INTERVAL - 1));
        assert!(wire.pings().is_empty());
        wire.tick(&mut agent, t0 + ms(PING_INTERVAL));
        assert_eq!(wire.pings(), [A, B]);
        // A message from A pushes its ping out; B's stays.
        agent.server_message(from(A, &["PONG"]), t0 + ms(PING_INTERVAL + 500));
        assert_eq!(agent.next_wakeup(t0 + ms(PING_INTERVAL)), ms(PING_INTERVAL));
        // A pending request wakes the agent for its retry and its expiry.
        agent.request(body(), t0 + ms(PING_INTERVAL));
        wire.tick(&mut agent, t0 + ms(PING_INTERVAL));
        assert_eq!(
            agent.next_wakeup(t0 + ms(PING_INTERVAL)),
            ms(RETRY_INTERVAL)
        );
    }

    #[test]
    fn unknown_servers_and_duplicate_connects_change_nothing() {
        let t0 = Instant::now();
        let mut agent = agent_with(&[A, A], t0);
        assert_eq!(agent.servers().len(), 1);
        agent.request(body(), t0);
        // 127.0.0.1 is not localhost: the identity rule is byte for byte.
        for n in 0..100 {
            let id = format!("tcp://127.0.0.1:{n}");
            assert_eq!(agent.server_message(from(&id, &["1", "OK"]), t0), None);
        }
        assert_eq!(agent.warned.len(), UNKNOWN_WARNINGS);
        assert!(agent.is_busy());
        assert_eq!(agent.server_message(Message::new(), t0), None);
    }

    #[test]
    fn resolve_names_stops_at_the_first_unanswered_request() {
        let mut calls = 0;
        let all = resolve_names(5, |_| {
            calls += 1;
            Ok(Some(Message::from_frames(["OK"])))
        });
        assert!(all.unwrap());
        assert_eq!(calls, 5);
        let mut calls = 0;
        let none = resolve_names(5, |request| {
            assert_eq!(request.first(), Some(&b"random name"[..]));
            calls += 1;
            Ok((calls < 3).then(Message::new))
        });
        assert!(!none.unwrap());
        assert_eq!(calls, 3, "stopped at the first failure");
        assert!(resolve_names(3, |_| Err(Error::Interrupted)).is_err());
        assert_eq!(average_usec(Duration::from_millis(10), 4), 2500);
        assert_eq!(average_usec(Duration::from_micros(7), 0), 7);
    }

    /// A Freelance server on `endpoint` (ipc), its identity the endpoint, in
    /// a thread: PING gets PONG, a request `[sequence][body]` gets
    /// `[sequence][served by <endpoint>]`; it ends when `stop` is set.
    fn fake_server(
        context: &zmq::Context,
        endpoint: String,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<usize> {
        let socket = server_socket(context, zmq::ROUTER)
            .linger(0)
            .build()
            .unwrap();
        socket.set_identity(endpoint.as_bytes()).unwrap();
        socket.set_rcvtimeo(50).unwrap();
        socket.bind(&endpoint).unwrap();
        std::thread::spawn(move || {
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut frames) = socket.recv_multipart(0) else {
                    continue;
                };
                if frames.len() == 2 && frames[1] == b"PING" {
                    frames[1] = b"PONG".to_vec();
                } else if frames.len() >= 3 {
                    frames.truncate(2);
                    frames.push(format!("served by {endpoint}").into_bytes());
                    served += 1;
                } else {
                    continue;
                }
                socket.send_multipart(frames, 0).unwrap();
            }
            served
        })
    }

    /// The frontend and the agent thread over real sockets: requests are
    /// answered by the one live server, each reply is the request's own, and
    /// a server that does not exist is skipped.
    #[test]
    fn the_client_gets_each_request_answered_through_its_agent() {
        let context = zmq::Context::new();
        let dir = crate::test_support::TempDir::new("flcliapi-agent");
        let endpoint = |name: &str| format!("ipc://{}/{name}", dir.path().display());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live = endpoint("live");
        let server = fake_server(&context, live.clone(), stop.clone());
        let mut client = FreelanceClient::new().unwrap();
        client.connect(&endpoint("absent")).unwrap();
        client.connect(&live).unwrap();
        for _ in 0..3 {
            let reply = client
                .request(Message::from_frames(["random name"]))
                .unwrap()
                .expect("a reply");
            assert_eq!(
                reply.into_frames(),
                [format!("served by {live}").into_bytes()]
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(server.join().unwrap(), 3, "each request served once");
    }

    #[test]
    fn a_server_socket_takes_frames_up_to_64_kib() {
        let context = zmq::Context::new();
        let dir = crate::test_support::TempDir::new("flcliapi-frames");
        let endpoint = format!("ipc://{}/server", dir.path().display());
        let server = server_socket(&context, zmq::ROUTER)
            .linger(0)
            .build()
            .unwrap();
        server.set_rcvtimeo(5000).unwrap();
        server.bind(&endpoint).unwrap();
        let client = context.socket(zmq::DEALER).unwrap();
        client.set_linger(0).unwrap();
        client.connect(&endpoint).unwrap();
        client.send(vec![7u8; 64 << 10], 0).unwrap();
        let frames = server.recv_multipart(0).expect("a 64 KiB frame");
        assert_eq!(frames[1].len(), 64 << 10);
    }
}
