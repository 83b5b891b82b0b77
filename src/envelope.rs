//! Checked envelopes for ROUTER traffic: `[identity][""][body…]`.
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

/// Splits `[identity][""][body…]` into the identity and the body (at least one
/// frame). Anything else is an `Error::Protocol` that says what was wrong.
pub fn split(mut msg: Message) -> Result<(Vec<u8>, Message), Error> {
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

/// `body` wrapped for a ROUTER to send to `identity`: `[identity][""][body…]`.
pub fn to(identity: impl Into<Vec<u8>>, mut body: Message) -> Message {
    body.wrap_envelope(identity);
    body
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
    fn to_builds_what_split_takes_apart() {
        let msg = to("W1", Message::from_frames(["C1", "", "OK"]));
        let (worker, body) = split(msg).unwrap();
        assert_eq!(worker, b"W1");
        let (client, reply) = split_exact(body, 1).unwrap();
        assert_eq!((client, reply.last()), (b"C1".to_vec(), Some(&b"OK"[..])));
    }
}
