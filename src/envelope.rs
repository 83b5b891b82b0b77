//! Checked envelopes for ROUTER traffic: `[identity][""][body…]`, and between
//! peer brokers.
//!
//! A ROUTER socket prepends the sender's identity to each message; a REQ
//! peer (or a DEALER that behaves like one) puts an empty delimiter frame
//! between that envelope and the body. A broker reads the identity to route
//! the reply, and the body to decide what to do.
//!
//! [`Message::unwrap_envelope`] is the forgiving `zmsg_unwrap`. A broker facing the
//! network needs the strict version: anything can connect to a ROUTER and send
//! any frames, and a message without a delimiter, with an empty identity or
//! without a body must be logged and dropped, not half-parsed (the C brokers
//! `assert` here, so one bad peer stops the broker for everybody).

use crate::{Error, Message};

/// Checks that `msg` is `[identity][""][body…]` (a non-empty identity, the
/// delimiter, at least one body frame), without taking it apart.
pub fn check(msg: &Message) -> Result<(), Error> {
    if msg.len() < 3 {
        return Err(Error::Protocol(format!(
            "expected [identity][\"\"][body], got {} frame(s)",
            msg.len()
        )));
    }
    if msg.first().is_some_and(<[u8]>::is_empty) {
        return Err(Error::Protocol("empty identity frame".into()));
    }
    if !msg.get(1).is_some_and(<[u8]>::is_empty) {
        return Err(Error::Protocol(
            "no empty delimiter after the identity".into(),
        ));
    }
    Ok(())
}

/// Splits `[identity][""][body…]` into the identity and the body (at least one
/// frame). Anything else is an `Error::Protocol` that says what was wrong.
pub fn split(mut msg: Message) -> Result<(Vec<u8>, Message), Error> {
    check(&msg)?;
    let identity = msg.unwrap_envelope().unwrap_or_default();
    Ok((identity, msg))
}

/// Like [`split`], and the body must be exactly `frames` frames long.
pub fn split_exact(msg: Message, frames: usize) -> Result<(Vec<u8>, Message), Error> {
    let (identity, body) = split(msg)?;
    if body.len() != frames {
        return Err(Error::Protocol(format!(
            "expected a body of {frames} frame(s), got {}",
            body.len()
        )));
    }
    Ok((identity, body))
}

/// What a load-balanced worker sent to the broker's backend ROUTER, once its
/// envelope `[worker][""]` is checked: the worker's identity, and the reply
/// (the frames after the envelope), or `None` if the message was exactly the
/// `ready` signal. The reply's own envelope is for the caller to check, e.g.
/// with [`check`].
pub fn from_worker(msg: Message, ready: &[u8]) -> Result<(Vec<u8>, Option<Message>), Error> {
    let (worker, body) = split(msg)?;
    if body.len() == 1 && body.first() == Some(ready) {
        return Ok((worker, None));
    }
    Ok((worker, Some(body)))
}

/// `body` wrapped for a ROUTER to send to `identity`: `[identity][""][body…]`.
pub fn to(identity: impl Into<Vec<u8>>, mut body: Message) -> Message {
    body.wrap_envelope(identity);
    body
}

// Between brokers (peering2, peering3): a broker's cloud frontend receives
// requests from its peers' cloud backends, and its cloud backend receives
// the replies. The C examples put the peer's name straight in front of the
// client's envelope; the C++ examples put an empty frame after it, and
// assert on it when they receive.

/// How our requests to a peer broker are framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerShape {
    /// `[peer][client][""][request]`, as the C examples send.
    C,
    /// `[peer][""][client][""][request]`, as the C++ examples send and
    /// expect (they assert on the empty frame).
    Cpp,
}

impl PeerShape {
    /// [`PeerShape::Cpp`] if the environment variable `ZGUIDE_PEER_DELIMITER`
    /// is `1`, else [`PeerShape::C`]: the switch for running our peering
    /// brokers beside the C++ ones.
    pub fn from_env() -> PeerShape {
        match std::env::var("ZGUIDE_PEER_DELIMITER").as_deref() {
            Ok("1") => PeerShape::Cpp,
            _ => PeerShape::C,
        }
    }

    /// `request` (`[client][""][body…]`) addressed to the peer broker `peer`
    /// through a ROUTER cloud backend.
    pub fn address(self, peer: &str, mut request: Message) -> Message {
        if self == PeerShape::Cpp {
            request.push(Vec::new());
        }
        request.push(peer.as_bytes().to_vec());
        request
    }
}

/// Checks a request that a peer broker sent to our cloud frontend: the peer's
/// identity, an optional empty frame (the C++ shape), then
/// `[client][""][body…]`. The message is forwarded as it came, so the reply
/// goes back in the shape the peer used.
pub fn check_peer_request(msg: &Message) -> Result<(), Error> {
    let mut rest = msg.clone();
    if rest.pop().is_none_or(|peer| peer.is_empty()) {
        return Err(Error::Protocol("no peer identity".into()));
    }
    if rest.first().is_some_and(<[u8]>::is_empty) {
        rest.pop();
    }
    check(&rest)
}

/// A reply that a peer broker sent to our cloud backend, without the peer's
/// identity and the optional empty frame after it: `[client][""][body…]`,
/// ready for the local frontend.
pub fn peer_reply(mut msg: Message) -> Result<Message, Error> {
    if msg.pop().is_none_or(|peer| peer.is_empty()) {
        return Err(Error::Protocol("no peer identity".into()));
    }
    if msg.first().is_some_and(<[u8]>::is_empty) {
        msg.pop();
    }
    check(&msg)?;
    Ok(msg)
}

/// Checks a worker's reply in a peering broker: for a peer broker (its first
/// frame names one of `peers`) it must have a peer request's shape (see
/// [`check_peer_request`]), for our own client `[client][""][body…]`.
pub fn check_reply(reply: &Message, peers: &[String]) -> Result<(), Error> {
    if is_for_peer(reply, peers) {
        check_peer_request(reply)
    } else {
        check(reply)
    }
}

/// One frame as `prefix[NNN] data` like [`format_frame`](crate::message::format_frame),
/// but the data through [`show`](crate::message::show): for a program that
/// prints what a peer sent (a worker printing its request).
pub fn show_frame(prefix: &str, frame: &[u8]) -> String {
    format!(
        "{prefix}[{:03}] {}",
        frame.len(),
        crate::message::show(frame)
    )
}

/// True if a reply's first frame names one of `peers`: it answers a request
/// that peer lent us, and goes back through the cloud frontend.
pub fn is_for_peer(reply: &Message, peers: &[String]) -> bool {
    reply
        .first()
        .is_some_and(|first| peers.iter().any(|p| p.as_bytes() == first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_req_envelope() {
        let msg = Message::from_frames(vec![vec![0u8, 1, 2, 3, 4], vec![], b"HELLO".to_vec()]);
        let (identity, body) = split(msg).unwrap();
        assert_eq!(identity, [0u8, 1, 2, 3, 4]);
        assert_eq!(body.into_frames(), [b"HELLO".to_vec()]);
    }

    #[test]
    fn rejects_what_a_broker_must_not_parse() {
        let bad = [
            Message::from_frames(["id", "HELLO"]), // no delimiter, too short
            Message::from_frames(["id", "x", "HELLO"]), // no delimiter
            Message::from_frames(["", "", "HELLO"]), // empty identity
            Message::from_frames(["id"]),
        ];
        for msg in bad {
            assert!(matches!(split(msg), Err(Error::Protocol(_))));
        }
        let long = Message::from_frames(["id", "", "a", "b"]);
        assert!(matches!(split_exact(long, 1), Err(Error::Protocol(_))));
    }

    #[test]
    fn from_worker_tells_ready_from_replies() {
        let ready = from_worker(Message::from_frames(["W", "", "\x01"]), b"\x01").unwrap();
        assert_eq!(ready, (b"W".to_vec(), None));
        let (worker, reply) =
            from_worker(Message::from_frames(["W", "", "C", "", "OK"]), b"\x01").unwrap();
        assert_eq!(worker, b"W");
        assert!(check(&reply.unwrap()).is_ok());
        assert!(from_worker(Message::from_frames(["W", "\x01"]), b"\x01").is_err());
        // One frame that is not the signal is a reply (a C++ worker's text
        // reply, say), and the signal with more after it is not the signal.
        let (_, one) = from_worker(Message::from_frames(["W", "", "OK"]), b"\x01").unwrap();
        assert_eq!(one, Some(Message::from_frames(["OK"])));
        let (_, more) = from_worker(Message::from_frames(["W", "", "\x01", "x"]), b"\x01").unwrap();
        assert_eq!(more, Some(Message::from_frames(["\x01", "x"])));
    }

    #[test]
    fn to_builds_what_split_takes_apart() {
        let msg = to("W1", Message::from_frames(["C1", "", "OK"]));
        let (worker, body) = split(msg).unwrap();
        assert_eq!(worker, b"W1");
        let (client, reply) = split_exact(body, 1).unwrap();
        assert_eq!((client, reply.last()), (b"C1".to_vec(), Some(&b"OK"[..])));
    }

    #[test]
    fn peer_requests_in_the_c_and_the_cpp_shape() {
        let c = Message::from_frames(["DC2", "C1", "", "HELLO"]);
        let cpp = Message::from_frames(["DC2", "", "C1", "", "HELLO"]);
        assert!(check_peer_request(&c).is_ok());
        assert!(check_peer_request(&cpp).is_ok());
        for bad in [
            Message::from_frames(["DC2", "HELLO"]),
            Message::from_frames(["DC2", "", "HELLO"]),
            Message::from_frames(["", "C1", "", "HELLO"]),
        ] {
            assert!(check_peer_request(&bad).is_err(), "{bad:?}");
        }
        let request = Message::from_frames(["C1", "", "HELLO"]);
        assert_eq!(
            PeerShape::C.address("DC2", request.clone()).into_frames(),
            Message::from_frames(["DC2", "C1", "", "HELLO"]).into_frames()
        );
        assert_eq!(
            PeerShape::Cpp.address("DC2", request).into_frames(),
            Message::from_frames(["DC2", "", "C1", "", "HELLO"]).into_frames()
        );
        for reply in [
            Message::from_frames(["DC2", "C1", "", "OK"]),
            Message::from_frames(["DC2", "", "C1", "", "OK"]),
        ] {
            let local = peer_reply(reply).unwrap();
            assert_eq!(
                local.into_frames(),
                Message::from_frames(["C1", "", "OK"]).into_frames()
            );
        }
        assert!(peer_reply(Message::from_frames(["DC2", "OK"])).is_err());
        let peers = ["DC2".to_string()];
        assert!(is_for_peer(
            &Message::from_frames(["DC2", "C1", "", "OK"]),
            &peers
        ));
        assert!(!is_for_peer(
            &Message::from_frames(["C1", "", "OK"]),
            &peers
        ));
        // A worker's reply: to a peer it must be a peer request's shape, to
        // our own client an envelope.
        assert!(check_reply(&Message::from_frames(["DC2", "C1", "", "OK"]), &peers).is_ok());
        assert!(check_reply(&Message::from_frames(["C1", "", "OK"]), &peers).is_ok());
        assert!(check_reply(&Message::from_frames(["DC2", "OK"]), &peers).is_err());
        assert!(check_reply(&Message::from_frames(["C1", "OK"]), &peers).is_err());
    }

    #[test]
    fn show_frame_prints_the_length_and_the_escaped_data() {
        assert_eq!(show_frame("Worker: ", b"OK"), "Worker: [002] OK");
        let shown = show_frame("W: ", b"\x1b[31m");
        assert!(shown.starts_with("W: [005] "), "{shown}");
        assert!(!shown.contains('\x1b'), "{shown}");
    }

    #[test]
    fn the_cpp_peer_shape_is_chosen_by_the_environment() {
        // No other unit test reads this variable, so setting it here cannot
        // change another test's result.
        std::env::set_var("ZGUIDE_PEER_DELIMITER", "1");
        assert_eq!(PeerShape::from_env(), PeerShape::Cpp);
        std::env::set_var("ZGUIDE_PEER_DELIMITER", "0");
        assert_eq!(PeerShape::from_env(), PeerShape::C);
        std::env::remove_var("ZGUIDE_PEER_DELIMITER");
        assert_eq!(PeerShape::from_env(), PeerShape::C);
    }
}
