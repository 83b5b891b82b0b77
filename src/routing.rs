//! What a ROUTER broker needs beyond parsing envelopes: the queue of free
//! workers, handing a request to one of them, sends that never block, and a
//! bounded way to complain about what it dropped.
//!
//! The load-balancing brokers of chapter 3 (`lbbroker`, `peering2`,
//! `peering3`) and the queues of chapter 4 share one loop: a worker is *free*
//! once it says READY or returns a reply, a client request goes to the free
//! worker that waited longest, and a reply goes back to the client named in
//! its envelope. Done naively, a peer can break that loop for everybody:
//!
//! * a worker put on the free list *before* its message was checked, or put on
//!   it twice, is handed requests it will never answer; 50 malformed messages
//!   can take every client's request. [`WorkerQueue::ready`] is called only
//!   with a message already checked, and refuses duplicates;
//! * a blocking send to a peer that stopped reading (a client that sends
//!   requests and never reads replies, on a `ROUTER_MANDATORY` socket) stops
//!   the whole broker. [`send_or_log`] and [`dispatch`] never block: a message
//!   the peer cannot take is dropped and logged;
//! * logging each bad message in full turns 16 MiB of garbage into 32 MiB of
//!   hex. [`complain`] logs at most [`COMPLAINTS_PER_SECOND`] lines a second,
//!   each meant to hold only [`show`]n or
//!   [`summary`](crate::Message::summary)-ed wire data, and counts the rest.
//!
//! The policy each broker states in its `//!` doc follows from these: a reply
//! or request that its peer cannot take now is dropped (REQ clients of the
//! guide retry or report a lost task), never queued without bound.

use std::collections::VecDeque;

use crate::log_limit::complain;
use crate::message::show;
use crate::{Error, Message};

/// At most this many free workers are remembered; READY from more is ignored
/// (logged). Far above any guide example, it only bounds a flood of peers
/// that each connect and say READY.
pub const MAX_FREE_WORKERS: usize = 10_000;

/// Free workers, least recently used first, each at most once.
#[derive(Debug, Default)]
pub struct WorkerQueue {
    queue: VecDeque<Vec<u8>>,
}

impl WorkerQueue {
    /// An empty queue.
    pub fn new() -> WorkerQueue {
        WorkerQueue::default()
    }

    /// `worker` is free: it goes to the back of the queue. Call it only after
    /// the worker's message proved well formed. A worker that is already
    /// queued stays where it is (a second READY does not make it free twice),
    /// and past [`MAX_FREE_WORKERS`] a new one is refused. Returns true if the
    /// worker was added.
    pub fn ready(&mut self, worker: Vec<u8>) -> bool {
        if self.queue.contains(&worker) {
            complain(format_args!(
                "worker {} is already free; duplicate ignored",
                show(&worker)
            ));
            return false;
        }
        if self.queue.len() >= MAX_FREE_WORKERS {
            complain(format_args!(
                "{MAX_FREE_WORKERS} workers free already; worker {} ignored",
                show(&worker)
            ));
            return false;
        }
        self.queue.push_back(worker);
        true
    }

    /// Takes the worker that has been free longest.
    pub fn take_next(&mut self) -> Option<Vec<u8>> {
        self.queue.pop_front()
    }

    /// How many workers are free.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no worker is free.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True if `worker` is free.
    pub fn contains(&self, worker: &[u8]) -> bool {
        self.queue.iter().any(|w| w == worker)
    }
}

/// Sends `request` as `[worker][""][request…]` to the free worker that waited
/// longest, without blocking. A worker that is gone or not reading (the
/// backend is `ROUTER_MANDATORY`, so the send fails instead of vanishing or
/// blocking) is forgotten, logged, and the next one tried. Returns the worker
/// that took the request, or `None` if no free worker could: the request is
/// then dropped (logged), and the client's retry or timeout deals with it.
pub fn dispatch(
    backend: &zmq::Socket,
    workers: &mut WorkerQueue,
    request: &Message,
) -> Result<Option<Vec<u8>>, Error> {
    dispatch_to_next(backend, request, true, || workers.take_next(), |w| w)
}

/// [`dispatch`] for any list of free workers: `next` gives the worker to try
/// next (and removes it from the list), `identity` its routing identity, and
/// `delimiter` says whether an empty frame goes between the identity and the
/// request (REQ workers need it; the Pirate queues' DEALER workers do not).
/// Returns the worker that took the request.
pub fn dispatch_to_next<W>(
    backend: &zmq::Socket,
    request: &Message,
    delimiter: bool,
    mut next: impl FnMut() -> Option<W>,
    identity: impl Fn(&W) -> &[u8],
) -> Result<Option<W>, Error> {
    while let Some(worker) = next() {
        let mut routed = request.clone();
        if delimiter {
            routed.push(Vec::new());
        }
        routed.push(identity(&worker));
        if routed.send_or_drop(backend)? {
            return Ok(Some(worker));
        }
        complain(format_args!(
            "worker {} is gone or not reading; trying the next one",
            show(identity(&worker))
        ));
    }
    complain(format_args!("no worker could take a request; dropped"));
    Ok(None)
}

/// Sends `msg` without blocking; if its peer (the first frame, on a ROUTER)
/// is gone or not reading, the message is dropped and logged as
/// `<socket>: peer <id> is gone or not reading; message dropped`. Returns
/// whether it was sent.
pub fn send_or_log(msg: Message, socket: &zmq::Socket, name: &str) -> Result<bool, Error> {
    let peer = msg.first().map(show).unwrap_or_default();
    let sent = msg.send_or_drop(socket)?;
    if !sent {
        complain(format_args!(
            "{name}: peer {peer} is gone or not reading; message dropped"
        ));
    }
    Ok(sent)
}

/// Sends a worker's reply on in a peering broker: to the peer broker it
/// names (its first frame is one of `peers`) through `cloudfe`, else to our
/// client through `localfe`; never blocking (see [`send_or_log`]).
pub fn route_reply(
    reply: Message,
    peers: &[String],
    cloudfe: &zmq::Socket,
    localfe: &zmq::Socket,
) -> Result<bool, Error> {
    if crate::envelope::is_for_peer(&reply, peers) {
        send_or_log(reply, cloudfe, "cloudfe")
    } else {
        send_or_log(reply, localfe, "localfe")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_free_once_and_served_in_lru_order() {
        let mut workers = WorkerQueue::new();
        assert!(workers.is_empty() && !workers.contains(b"W1"));
        assert!(workers.ready(b"W1".to_vec()));
        assert!(!workers.is_empty());
        assert!(workers.ready(b"W2".to_vec()));
        assert!(!workers.ready(b"W1".to_vec()), "duplicate");
        assert_eq!(workers.len(), 2);
        assert!(workers.contains(b"W2") && !workers.contains(b"W3"));
        assert_eq!(workers.take_next(), Some(b"W1".to_vec()));
        assert!(workers.ready(b"W1".to_vec()));
        assert_eq!(workers.take_next(), Some(b"W2".to_vec()));
        assert_eq!(workers.take_next(), Some(b"W1".to_vec()));
        assert!(workers.is_empty() && workers.take_next().is_none());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut workers = WorkerQueue::new();
        for n in 0..MAX_FREE_WORKERS {
            assert!(workers.ready(n.to_string().into_bytes()));
        }
        assert!(!workers.ready(b"one too many".to_vec()));
        assert_eq!(workers.len(), MAX_FREE_WORKERS);
    }

    #[test]
    fn dispatch_skips_gone_workers_and_never_blocks() {
        let context = zmq::Context::new();
        let backend = crate::socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .bind("inproc://routing-dispatch")
            .unwrap();
        let worker = crate::socket::new(&context, zmq::DEALER)
            .identity("LIVE")
            .connect("inproc://routing-dispatch")
            .unwrap();
        // The live worker's connection is known once its first message is in.
        worker.send("READY", 0).unwrap();
        backend.recv_multipart(0).unwrap();

        let mut workers = WorkerQueue::new();
        workers.ready(b"GONE".to_vec());
        workers.ready(b"LIVE".to_vec());
        let request = Message::from_frames(["C", "", "HELLO"]);
        let taken = dispatch(&backend, &mut workers, &request).unwrap();
        assert_eq!(taken, Some(b"LIVE".to_vec()));
        assert_eq!(
            worker.recv_multipart(0).unwrap(),
            [&b""[..], b"C", b"", b"HELLO"]
        );
        // Nobody free: dropped, not blocked.
        assert_eq!(dispatch(&backend, &mut workers, &request).unwrap(), None);
        assert!(!send_or_log(request, &backend, "backend").unwrap());
    }

    /// A ROUTER_MANDATORY socket with one known peer `name`, and that peer.
    fn router_and_peer(
        context: &zmq::Context,
        endpoint: &str,
        name: &str,
    ) -> (zmq::Socket, zmq::Socket) {
        let router = crate::socket::new(context, zmq::ROUTER)
            .router_mandatory()
            .bind(endpoint)
            .unwrap();
        let peer = crate::socket::new(context, zmq::DEALER)
            .identity(name)
            .connect(endpoint)
            .unwrap();
        // Every wait in these tests is bounded: a reply that never comes
        // fails the test in 2 s instead of hanging it.
        peer.set_rcvtimeo(2000).unwrap();
        router.set_rcvtimeo(2000).unwrap();
        peer.send("HELLO", 0).unwrap();
        router.recv_multipart(0).unwrap();
        (router, peer)
    }

    #[test]
    fn send_or_log_says_whether_the_peer_got_it() {
        use crate::log_limit::captured;
        captured::install();
        let context = zmq::Context::new();
        let (router, peer) = router_and_peer(&context, "inproc://routing-send-or-log", "LISTENER");
        assert!(send_or_log(
            Message::from_frames(["LISTENER", "hi"]),
            &router,
            "frontend"
        )
        .unwrap());
        assert_eq!(peer.recv_multipart(0).unwrap(), [b"hi".to_vec()]);
        assert!(!send_or_log(
            Message::from_frames(["NOBODY-HERE", "hi"]),
            &router,
            "frontend"
        )
        .unwrap());
        // Only the message that was dropped is logged, naming its peer.
        assert_eq!(captured::lines_with("peer LISTENER ").len(), 0);
        assert_eq!(
            captured::lines_with(
                "frontend: peer NOBODY-HERE is gone or not reading; message dropped"
            )
            .len(),
            1
        );
    }

    #[test]
    fn route_reply_sends_to_the_peer_broker_or_to_the_local_client() {
        let context = zmq::Context::new();
        let (cloudfe, broker) = router_and_peer(&context, "inproc://routing-cloud", "DC2");
        let (localfe, client) = router_and_peer(&context, "inproc://routing-local", "CLIENT");
        let peers = vec!["DC2".to_string(), "DC3".to_string()];
        let to_broker = Message::from_frames(["DC2", "", "OK"]);
        assert!(route_reply(to_broker, &peers, &cloudfe, &localfe).unwrap());
        assert_eq!(
            broker.recv_multipart(0).unwrap(),
            [b"".to_vec(), b"OK".to_vec()]
        );
        let to_client = Message::from_frames(["CLIENT", "", "OK"]);
        assert!(route_reply(to_client, &peers, &cloudfe, &localfe).unwrap());
        assert_eq!(
            client.recv_multipart(0).unwrap(),
            [b"".to_vec(), b"OK".to_vec()]
        );
        // A peer broker that is not connected: not delivered, and said so.
        let to_gone = Message::from_frames(["DC3", "", "OK"]);
        assert!(!route_reply(to_gone, &peers, &cloudfe, &localfe).unwrap());
        assert!(broker.poll(zmq::POLLIN, 0).unwrap() == 0);
        assert!(client.poll(zmq::POLLIN, 0).unwrap() == 0);
    }
}
