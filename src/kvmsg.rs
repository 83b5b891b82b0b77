//! `kvmsg`: the key-value message of Clone models 5–6 and the Clone
//! protocol (§43, `kvmsg.c`; CHP, protocols.md §8).
//!
//! `kvsimple` grows two frames. One message on the wire is exactly five:
//!
//! ```text
//! [key]         text, at most 255 bytes
//! [sequence]    8 bytes, signed, big-endian
//! [uuid]        16 raw bytes (who made this update), or empty
//! [properties]  "name=value\n" repeated, every entry ending in LF; or empty
//! [body]        any bytes; an EMPTY BODY MEANS "DELETE THE KEY"
//! ```
//!
//! The one property the guide uses is `ttl`: seconds on the wire from a
//! client, absolute epoch milliseconds once a server has stored it (see
//! [`KvMsg::stamp_expiry`]).
//!
//! Decoding returns [`Malformed`] for every shape the protocol does not
//! allow (wrong frame count, a sequence that is not 8 bytes, a UUID that is
//! neither 16 bytes nor empty, a key over 255 bytes, a property without `=`,
//! properties not ending in LF, properties that are not UTF-8) and never
//! panics. The C asserts on some of these and crashes on a missing UUID
//! (protocols.md §8.6).

use rand::RngCore;

pub use crate::kvsimple::Malformed;
use crate::kvsimple::{check_key, decode_sequence, encode_sequence, MAX_KEY_BYTES};
use crate::{helpers, Error, Message};

/// Frames in every kvmsg.
pub const FRAMES: usize = 5;

/// The longest `ttl` honoured, in seconds (ten years); more is cut to this,
/// so `now + ttl` can never overflow.
pub const MAX_TTL_SECS: i64 = 10 * 365 * 24 * 3600;

/// A 16-byte UUID, as `uuid_generate` makes it.
pub type Uuid = [u8; 16];

/// One key-value message of models 5–6. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMsg {
    key: Vec<u8>,
    sequence: i64,
    uuid: Option<Uuid>,
    props: Vec<(String, String)>,
    body: Vec<u8>,
}

impl KvMsg {
    /// An update with this sequence number, nothing else set (`kvmsg_new`).
    pub fn new(sequence: i64) -> KvMsg {
        KvMsg {
            sequence,
            ..KvMsg::default()
        }
    }

    /// An update with a key, a sequence and a body.
    pub fn with(key: impl Into<Vec<u8>>, sequence: i64, body: impl Into<Vec<u8>>) -> KvMsg {
        let mut msg = KvMsg::new(sequence);
        msg.set_key(key);
        msg.body = body.into();
        msg
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Sets the key, cut at [`MAX_KEY_BYTES`] as `kvmsg_fmt_key` cuts it.
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

    /// Sets the body; an empty body makes the update a delete.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = body.into();
    }

    /// The UUID, if the frame held 16 bytes (`kvmsg_uuid`).
    pub fn uuid(&self) -> Option<&Uuid> {
        self.uuid.as_ref()
    }

    /// Gives the message a fresh random UUID (`kvmsg_set_uuid`; version 4).
    pub fn set_uuid(&mut self) {
        let mut uuid = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut uuid);
        uuid[6] = (uuid[6] & 0x0F) | 0x40; // version 4
        uuid[8] = (uuid[8] & 0x3F) | 0x80; // RFC 4122 variant
        self.uuid = Some(uuid);
    }

    /// Removes the UUID (the frame goes out empty).
    pub fn clear_uuid(&mut self) {
        self.uuid = None;
    }

    /// A property's value, or `""` when it is absent (`kvmsg_get_prop`).
    pub fn prop(&self, name: &str) -> &str {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Sets a property, replacing an earlier value (`kvmsg_set_prop`). A
    /// name with `=` or a newline, or a value with a newline, cannot be
    /// encoded: that is an error, where the C asserts.
    pub fn set_prop(&mut self, name: &str, value: &str) -> Result<(), Malformed> {
        if name.is_empty() || name.contains(['=', '\n']) {
            return Err(Malformed::Properties(
                "a name must be non-empty, without '=' or LF",
            ));
        }
        if value.contains('\n') {
            return Err(Malformed::Properties("a value must not hold LF"));
        }
        self.remove_prop(name);
        self.props.push((name.to_string(), value.to_string()));
        Ok(())
    }

    /// Removes a property, if present.
    pub fn remove_prop(&mut self, name: &str) {
        self.props.retain(|(n, _)| n != name);
    }

    /// The properties in order.
    pub fn props(&self) -> &[(String, String)] {
        &self.props
    }

    /// The `ttl` property as a number, like C's `atoi` (0 when absent).
    pub fn ttl(&self) -> i64 {
        helpers::atoi(self.prop("ttl").as_bytes())
    }

    /// What a server does to a client's update before storing it: a `ttl`
    /// of N seconds becomes the absolute expiry `now_ms + N*1000` (epoch
    /// ms), as in `clonesrv5.c`. A `ttl` that is absent, 0, negative or not a
    /// number means "never expires" and is left as it is (the C turns a
    /// negative ttl into a past expiry; the C++ port expires 0 at once).
    pub fn stamp_expiry(&mut self, now_ms: u64) {
        let ttl = self.ttl();
        if ttl > 0 {
            let expiry = now_ms.saturating_add(ttl.min(MAX_TTL_SECS) as u64 * 1000);
            // Digits only: cannot fail.
            let _ = self.set_prop("ttl", &expiry.to_string());
        }
    }

    /// The absolute expiry in epoch ms of a stored update, or `None` when it
    /// never expires.
    pub fn expiry_ms(&self) -> Option<u64> {
        self.prop("ttl").parse::<u64>().ok().filter(|&ms| ms > 0)
    }

    /// The properties frame: `name=value\n` per property, or empty.
    pub fn encode_props(&self) -> Vec<u8> {
        let mut frame = Vec::new();
        for (name, value) in &self.props {
            frame.extend_from_slice(name.as_bytes());
            frame.push(b'=');
            frame.extend_from_slice(value.as_bytes());
            frame.push(b'\n');
        }
        frame
    }

    /// Parses a properties frame; see the module docs for what is refused.
    pub fn decode_props(frame: &[u8]) -> Result<Vec<(String, String)>, Malformed> {
        let Some(body) = frame.strip_suffix(b"\n") else {
            return if frame.is_empty() {
                Ok(Vec::new())
            } else {
                Err(Malformed::Properties(
                    "the last property does not end in LF",
                ))
            };
        };
        let text = std::str::from_utf8(body).map_err(|_| Malformed::Properties("not UTF-8"))?;
        text.split('\n')
            .map(|line| match line.split_once('=') {
                Some(("", _)) => Err(Malformed::Properties("a property without a name")),
                Some((name, value)) => Ok((name.to_string(), value.to_string())),
                None => Err(Malformed::Properties("a property without '='")),
            })
            .collect()
    }

    /// The five frames.
    pub fn to_message(&self) -> Message {
        Message::from_frames([
            self.key.clone(),
            encode_sequence(self.sequence),
            self.uuid.map(|u| u.to_vec()).unwrap_or_default(),
            self.encode_props(),
            self.body.clone(),
        ])
    }

    /// Decodes five frames; see the module docs for what is rejected.
    pub fn from_message(msg: Message) -> Result<KvMsg, Malformed> {
        let got = msg.len();
        let Ok([key, sequence, uuid, props, body]) =
            <[Vec<u8>; FRAMES]>::try_from(msg.into_frames())
        else {
            return Err(Malformed::FrameCount {
                expected: FRAMES,
                got,
            });
        };
        check_key(&key)?;
        let uuid = match uuid.len() {
            0 => None,
            16 => Some(<Uuid>::try_from(uuid.as_slice()).map_err(|_| Malformed::UuidSize(16))?),
            n => return Err(Malformed::UuidSize(n)),
        };
        Ok(KvMsg {
            sequence: decode_sequence(&sequence)?,
            props: KvMsg::decode_props(&props)?,
            key,
            uuid,
            body,
        })
    }

    /// Sends the message (`kvmsg_send`), blocking if the socket does.
    pub fn send(&self, socket: &zmq::Socket) -> Result<(), Error> {
        self.to_message().send(socket)
    }

    /// Receives one message, waiting as long as it takes (Ctrl-C:
    /// `Error::Interrupted`). A malformed message was read whole and is
    /// returned as `Error::Protocol`, for the caller to log and drop.
    pub fn recv(socket: &zmq::Socket) -> Result<KvMsg, Error> {
        let msg = Message::recv(socket)?;
        Ok(KvMsg::from_message(msg)?)
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
        let mut msg = KvMsg::with("/client/7", 1 << 40, vec![1u8, 0, 2]);
        msg.set_uuid();
        msg.set_prop("prop1", "value1").unwrap();
        msg.set_prop("prop2", "value1").unwrap();
        msg.set_prop("prop2", "value2").unwrap();
        msg.set_prop("eq", "a=b=c").unwrap();
        msg.set_prop("empty", "").unwrap();
        let wire = msg.to_message();
        assert_eq!(wire.len(), 5);
        assert_eq!(wire.get(2).map(<[u8]>::len), Some(16));
        assert_eq!(
            wire.get(3),
            Some(&b"prop1=value1\nprop2=value2\neq=a=b=c\nempty=\n"[..])
        );
        let back = KvMsg::from_message(wire).unwrap();
        assert_eq!(back, msg);
        assert_eq!(back.prop("prop2"), "value2");
        assert_eq!(back.prop("eq"), "a=b=c");
        assert_eq!(back.prop("absent"), "");
        assert_eq!(back.uuid(), msg.uuid());
        // No UUID, no properties: both frames go out empty.
        let bare = KvMsg::with("k", -1, "v");
        let wire = bare.to_message();
        assert_eq!((wire.get(2), wire.get(3)), (Some(&b""[..]), Some(&b""[..])));
        assert_eq!(KvMsg::from_message(wire), Ok(bare));
    }

    #[test]
    fn uuids_are_fresh_and_version_4() {
        let (mut a, mut b) = (KvMsg::new(0), KvMsg::new(0));
        a.set_uuid();
        b.set_uuid();
        assert_ne!(a.uuid(), b.uuid());
        assert_eq!(a.uuid().unwrap()[6] >> 4, 4);
    }

    #[test]
    fn property_edge_cases() {
        assert_eq!(KvMsg::decode_props(b""), Ok(vec![]));
        assert_eq!(
            KvMsg::decode_props(b"ttl=5\n"),
            Ok(vec![("ttl".into(), "5".into())])
        );
        // The first of two equal names wins, as in kvmsg_get_prop.
        let mut msg = KvMsg::new(0);
        msg.props = KvMsg::decode_props(b"a=1\na=2\n").unwrap();
        assert_eq!(msg.prop("a"), "1");
        for bad in [
            &b"ttl=5"[..],
            b"ttl\n",
            b"=5\n",
            b"a=1\n\n",
            b"\n",
            b"a=\xFF\n",
        ] {
            assert!(KvMsg::decode_props(bad).is_err(), "{bad:?}");
        }
        let mut msg = KvMsg::new(0);
        assert!(msg.set_prop("a=b", "1").is_err());
        assert!(msg.set_prop("", "1").is_err());
        assert!(msg.set_prop("a", "1\n").is_err());
        assert!(msg.props().is_empty());
    }

    #[test]
    fn every_malformed_shape_is_an_error() {
        let seq = encode_sequence(3);
        let uuid = [7u8; 16];
        for (wire, want) in [
            (
                frames(&[b"k", &seq, b"", b""]),
                Malformed::FrameCount {
                    expected: 5,
                    got: 4,
                },
            ),
            (
                frames(&[b"k", &seq, b"", b"", b"v", b""]),
                Malformed::FrameCount {
                    expected: 5,
                    got: 6,
                },
            ),
            (
                frames(&[b"k", &seq[..7], b"", b"", b"v"]),
                Malformed::SequenceSize(7),
            ),
            (
                frames(&[b"k", &seq, &uuid[..15], b"", b"v"]),
                Malformed::UuidSize(15),
            ),
            (
                frames(&[b"k", &seq, b"", b"ttl\n", b"v"]),
                Malformed::Properties("a property without '='"),
            ),
            (
                frames(&[&[b'k'; 256], &seq, b"", b"", b"v"]),
                Malformed::KeyTooLong(256),
            ),
        ] {
            assert_eq!(KvMsg::from_message(wire), Err(want));
        }
    }

    #[test]
    fn ttl_becomes_an_absolute_expiry_and_zero_never_expires() {
        let mut msg = KvMsg::with("k", 1, "v");
        assert_eq!(msg.ttl(), 0);
        msg.stamp_expiry(1000);
        assert_eq!(msg.expiry_ms(), None, "no ttl: never expires");
        for never in ["0", "-5", "soon"] {
            msg.set_prop("ttl", never).unwrap();
            msg.stamp_expiry(1000);
            assert_eq!(msg.expiry_ms(), None, "ttl={never}");
        }
        msg.set_prop("ttl", "3").unwrap();
        msg.stamp_expiry(1000);
        assert_eq!(msg.prop("ttl"), "4000");
        assert_eq!(msg.expiry_ms(), Some(4000));
        msg.set_prop("ttl", "99999999999999999999999").unwrap();
        msg.stamp_expiry(u64::MAX - 1);
        assert_eq!(msg.expiry_ms(), Some(u64::MAX), "saturates");
        // A ttl past ten years is cut to ten years (365-day years).
        msg.set_prop("ttl", "999999999999").unwrap();
        msg.stamp_expiry(1000);
        assert_eq!(msg.expiry_ms(), Some(1000 + 315_360_000_000));
    }

    /// The five frames carry exactly what the accessors say, in the C's
    /// order: key, sequence (8 bytes, big-endian), UUID, properties, body.
    #[test]
    fn the_frames_are_key_sequence_uuid_properties_body() {
        let msg = KvMsg::with("/client/7", 1 << 40, vec![1u8, 0, 2]);
        assert_eq!(
            (msg.key(), msg.sequence(), msg.body()),
            (&b"/client/7"[..], 1 << 40, &[1u8, 0, 2][..])
        );
        let wire = msg.to_message();
        let expected: Vec<&[u8]> = vec![
            b"/client/7",
            &[0, 0, 1, 0, 0, 0, 0, 0],
            b"",
            b"",
            &[1, 0, 2],
        ];
        assert_eq!(
            (0..5).map(|i| wire.get(i).unwrap()).collect::<Vec<_>>(),
            expected
        );
        let back = KvMsg::from_message(frames(&[b"k", &[0, 0, 0, 0, 0, 0, 1, 2], b"", b"", b"v"]))
            .unwrap();
        assert_eq!(
            (back.key(), back.sequence(), back.body()),
            (&b"k"[..], 258, &b"v"[..])
        );

        let mut msg = msg;
        msg.set_key("k2");
        msg.set_sequence(-7);
        msg.set_body("b");
        assert_eq!(
            (msg.key(), msg.sequence(), msg.body()),
            (&b"k2"[..], -7, &b"b"[..])
        );
        msg.set_key(vec![b'k'; MAX_KEY_BYTES + 10]);
        assert_eq!(msg.key().len(), MAX_KEY_BYTES, "cut like kvmsg_fmt_key");
        msg.set_uuid();
        assert!(msg.uuid().is_some());
        msg.clear_uuid();
        assert_eq!(msg.uuid(), None);
        msg.set_prop("ttl", "5").unwrap();
        assert_eq!(msg.props(), [("ttl".to_string(), "5".to_string())]);
        assert_eq!(msg.to_message().get(2), Some(&b""[..]));
    }

    /// Every fresh UUID says version 4 and the RFC 4122 variant (binary 10 in
    /// the top bits of byte 8), whatever the random bits were.
    #[test]
    fn uuids_carry_version_4_and_the_rfc_4122_variant() {
        let mut msg = KvMsg::new(0);
        for _ in 0..64 {
            msg.set_uuid();
            let uuid = msg.uuid().unwrap();
            assert_eq!(uuid[6] >> 4, 4, "{uuid:02x?}");
            assert_eq!(uuid[8] >> 6, 0b10, "{uuid:02x?}");
        }
    }

    #[test]
    fn a_bad_message_does_not_desynchronise_the_socket() {
        let context = zmq::Context::new();
        let rx = context.socket(zmq::PAIR).unwrap();
        rx.bind("inproc://kvmsg-desync").unwrap();
        let tx = context.socket(zmq::PAIR).unwrap();
        tx.connect("inproc://kvmsg-desync").unwrap();
        frames(&[b"a", b"b", b"c"]).send(&tx).unwrap();
        let good = KvMsg::with("key", 9, "body");
        good.send(&tx).unwrap();
        assert!(matches!(KvMsg::recv(&rx), Err(Error::Protocol(_))));
        assert_eq!(KvMsg::recv(&rx).unwrap(), good);
    }
}
