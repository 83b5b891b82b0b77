//! `kvsimple`: the key-value message of Clone models 1–4 (§39–§42, `kvsimple.c`).
//!
//! One update on the wire is exactly three frames (protocols.md §8.1):
//!
//! ```text
//! [key]        text, at most 255 bytes
//! [sequence]   8 bytes, signed, big-endian (network order)
//! [body]       any bytes; an empty body is stored as an empty value
//! ```
//!
//! Decoding never panics and never trusts the peer: a message with another
//! frame count, a sequence that is not 8 bytes, or a key over
//! [`MAX_KEY_BYTES`] is a [`Malformed`] error the program logs and drops.
//! Messages are received whole (libzmq delivers every frame of a message at
//! once), so a wrong frame count never leaves frames behind to desynchronise
//! the next read, which is what `kvmsg_recv` in C does (it stops reading at
//! the first bad frame and returns NULL, and every C loop then exits).
//!
//! [`Malformed`] and the sequence helpers are shared with [`kvmsg`](crate::kvmsg),
//! the five-frame message of models 5–6.

use std::fmt;

use crate::{Error, Message};

/// The longest key, in bytes (`KVMSG_KEY_MAX` in C).
pub const MAX_KEY_BYTES: usize = 255;

/// What is wrong with a key-value message that came off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not the message's fixed number of frames (`expected`, `got`).
    FrameCount { expected: usize, got: usize },
    /// The sequence frame is not 8 bytes (its size).
    SequenceSize(usize),
    /// The key is longer than [`MAX_KEY_BYTES`] (its size).
    KeyTooLong(usize),
    /// The UUID frame is neither empty nor 16 bytes (its size).
    UuidSize(usize),
    /// The properties frame is not `name=value\n…` (what is wrong).
    Properties(&'static str),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::FrameCount { expected, got } => {
                write!(f, "{got} frame(s), not {expected}")
            }
            Malformed::SequenceSize(n) => write!(f, "a {n}-byte sequence, not 8"),
            Malformed::KeyTooLong(n) => write!(f, "a {n}-byte key, over {MAX_KEY_BYTES}"),
            Malformed::UuidSize(n) => write!(f, "a {n}-byte UUID, not 16 or empty"),
            Malformed::Properties(what) => write!(f, "bad properties: {what}"),
        }
    }
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Error {
        Error::Protocol(format!("malformed key-value message: {m}"))
    }
}

/// The sequence frame: 8 bytes, big-endian.
pub fn encode_sequence(sequence: i64) -> Vec<u8> {
    sequence.to_be_bytes().to_vec()
}

/// Reads a sequence frame; anything but 8 bytes is [`Malformed::SequenceSize`]
/// (the C asserts, which ends the program).
pub fn decode_sequence(frame: &[u8]) -> Result<i64, Malformed> {
    let bytes: [u8; 8] = frame
        .try_into()
        .map_err(|_| Malformed::SequenceSize(frame.len()))?;
    Ok(i64::from_be_bytes(bytes))
}

/// Checks a key frame's size.
pub fn check_key(key: &[u8]) -> Result<(), Malformed> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Malformed::KeyTooLong(key.len()));
    }
    Ok(())
}

/// One key-value update of models 1–4. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvSimple {
    key: Vec<u8>,
    sequence: i64,
    body: Vec<u8>,
}

impl KvSimple {
    /// An update with this sequence number and an empty key and body
    /// (`kvmsg_new`).
    pub fn new(sequence: i64) -> KvSimple {
        KvSimple {
            sequence,
            ..KvSimple::default()
        }
    }

    /// An update with every field set.
    pub fn with(key: impl Into<Vec<u8>>, sequence: i64, body: impl Into<Vec<u8>>) -> KvSimple {
        KvSimple {
            key: key.into(),
            sequence,
            body: body.into(),
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Sets the key; a key over [`MAX_KEY_BYTES`] is cut there, as
    /// `kvmsg_fmt_key` cuts it.
    pub fn set_key(&mut self, key: impl Into<Vec<u8>>) {
        self.key = key.into();
        self.key.truncate(MAX_KEY_BYTES);
    }

    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    pub fn set_sequence(&mut self, sequence: i64) {
        self.sequence = sequence;
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = body.into();
    }

    /// The three frames.
    pub fn to_message(&self) -> Message {
        Message::from_frames([
            self.key.clone(),
            encode_sequence(self.sequence),
            self.body.clone(),
        ])
    }

    /// Decodes three frames; see the module docs for what is rejected.
    pub fn from_message(msg: Message) -> Result<KvSimple, Malformed> {
        let got = msg.len();
        let Ok([key, sequence, body]) = <[Vec<u8>; 3]>::try_from(msg.into_frames()) else {
            return Err(Malformed::FrameCount { expected: 3, got });
        };
        check_key(&key)?;
        Ok(KvSimple {
            sequence: decode_sequence(&sequence)?,
            key,
            body,
        })
    }

    /// Sends the update (`kvmsg_send`), blocking if the socket does.
    pub fn send(&self, socket: &zmq::Socket) -> Result<(), Error> {
        self.to_message().send(socket)
    }

    /// Receives one update, waiting as long as it takes (Ctrl-C:
    /// `Error::Interrupted`). A malformed message was read whole and is
    /// returned as `Error::Protocol`, so the caller can log it and go on.
    pub fn recv(socket: &zmq::Socket) -> Result<KvSimple, Error> {
        let msg = Message::recv(socket)?;
        Ok(KvSimple::from_message(msg)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Message {
        Message::from_frames(parts.iter().map(|p| p.to_vec()))
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let kv = KvSimple::with("/client/42", 0x0102_0304_0506_0708, vec![0u8, 255, 10]);
        let msg = kv.to_message();
        assert_eq!(msg.len(), 3);
        assert_eq!(
            msg.get(1),
            Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]),
            "big-endian"
        );
        assert_eq!(KvSimple::from_message(msg), Ok(kv));
        let negative = KvSimple::with("k", -2, "");
        assert_eq!(KvSimple::from_message(negative.to_message()), Ok(negative));
    }

    #[test]
    fn every_malformed_shape_is_an_error() {
        let seq = encode_sequence(1);
        for (msg, want) in [
            (
                frames(&[b"k", &seq]),
                Malformed::FrameCount {
                    expected: 3,
                    got: 2,
                },
            ),
            (
                frames(&[b"k", &seq, b"v", b"extra"]),
                Malformed::FrameCount {
                    expected: 3,
                    got: 4,
                },
            ),
            (
                Message::new(),
                Malformed::FrameCount {
                    expected: 3,
                    got: 0,
                },
            ),
            (frames(&[b"k", &seq[..7], b"v"]), Malformed::SequenceSize(7)),
            (frames(&[b"k", b"", b"v"]), Malformed::SequenceSize(0)),
            (
                frames(&[&[b'k'; 256], &seq, b"v"]),
                Malformed::KeyTooLong(256),
            ),
        ] {
            assert_eq!(KvSimple::from_message(msg), Err(want));
        }
        assert!(KvSimple::from_message(frames(&[&[b'k'; 255], &seq, b""])).is_ok());
    }

    #[test]
    fn set_key_cuts_at_the_limit() {
        let mut kv = KvSimple::new(0);
        kv.set_key(vec![b'x'; 300]);
        assert_eq!(kv.key().len(), MAX_KEY_BYTES);
    }

    /// A wrong frame count over a real socket is read whole: the next
    /// message still decodes (the C's `kvmsg_recv` would leave frames behind).
    #[test]
    fn a_bad_message_does_not_desynchronise_the_socket() {
        let context = zmq::Context::new();
        let rx = context.socket(zmq::PAIR).unwrap();
        rx.bind("inproc://kvsimple-desync").unwrap();
        let tx = context.socket(zmq::PAIR).unwrap();
        tx.connect("inproc://kvsimple-desync").unwrap();
        frames(&[b"a", b"b", b"c", b"d", b"e"]).send(&tx).unwrap();
        KvSimple::with("key", 7, "body").send(&tx).unwrap();
        assert!(matches!(KvSimple::recv(&rx), Err(Error::Protocol(_))));
        assert_eq!(
            KvSimple::recv(&rx).unwrap(),
            KvSimple::with("key", 7, "body")
        );
    }

    #[test]
    fn accessors_and_setters_reach_the_frames() {
        let mut kv = KvSimple::new(5);
        assert_eq!((kv.sequence(), kv.body()), (5, &b""[..]));
        kv.set_key("k");
        kv.set_sequence(-9);
        kv.set_body(vec![1u8, 2]);
        assert_eq!(
            (kv.key(), kv.sequence(), kv.body()),
            (&b"k"[..], -9, &[1u8, 2][..])
        );
        let frames = kv.to_message().into_frames();
        assert_eq!(
            frames,
            [b"k".to_vec(), (-9i64).to_be_bytes().to_vec(), vec![1, 2]]
        );
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        for (what, text) in [
            (
                Malformed::FrameCount {
                    expected: 3,
                    got: 2,
                },
                "2 frame(s), not 3",
            ),
            (Malformed::SequenceSize(7), "a 7-byte sequence, not 8"),
            (Malformed::KeyTooLong(300), "a 300-byte key, over 255"),
            (Malformed::UuidSize(3), "a 3-byte UUID, not 16 or empty"),
            (Malformed::Properties("no ="), "bad properties: no ="),
        ] {
            assert_eq!(what.to_string(), text);
        }
        assert_eq!(
            Error::from(Malformed::SequenceSize(0)).to_string(),
            "protocol error: malformed key-value message: a 0-byte sequence, not 8"
        );
    }
}
