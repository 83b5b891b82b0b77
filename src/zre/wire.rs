//! The ZRE v2 wire format (RFC 36, as zyre and pyre speak it): the 22-byte
//! UDP [`Beacon`] and the ZRE [`Message`] (HELLO, WHISPER, SHOUT, JOIN,
//! LEAVE, PING, PING-OK, and zyre's ELECT, LEADER and GOODBYE).
//!
//! **Beacon.** `"ZRE"`, version `0x01`, the 16-byte UUID, the mailbox port
//! (2 bytes, network order); port 0 means "I am leaving". Anything that is
//! not exactly that (other size, other header, other version) is not a ZRE
//! v2 beacon: [`Beacon::decode`] says `None`.
//!
//! **Message.** Frame 0 holds a binary header (signature `AA A1`, command
//! id, protocol version 2, sequence) and the command's fields; WHISPER and
//! SHOUT carry their content as the following frames. [`Message::encode`]
//! gives the frames to send on a DEALER; [`Message::decode`] takes the frames
//! a ROUTER delivered *after* the sender's routing id. The field encodings:
//!
//! | type | encoding |
//! |---|---|
//! | number-1/2/4 | unsigned, network order |
//! | string | 1-byte length + bytes (at most 255) |
//! | longstr | 4-byte length + bytes |
//! | strings | 4-byte count, then each as a longstr (HELLO's groups) |
//! | dictionary | 4-byte count, then name as string and value as longstr |
//!
//! **Decoding hostile input.** A peer controls every length and count. Each
//! is checked against the bytes that are really left *before* anything is
//! allocated (a count claiming 2³² entries fails at once, without a 16 GiB
//! vector), and against the bounds below, so what a decoded message holds is
//! never more than the frame it came from, and never more than
//! [`MAX_GROUPS`] groups, [`MAX_HEADERS`] headers, [`MAX_LONGSTR`] bytes in
//! one longstr or [`MAX_CONTENT_FRAMES`] content frames. Decoding never
//! panics; errors say which field was wrong ([`DecodeError`]).
//!
//! **Text.** Every string field (endpoint, group, name, header names and
//! values, the election ids) must be UTF-8, and is a Rust `String`: a frame
//! with other bytes there is a [`DecodeError::NotUtf8`]. zyre and pyre send
//! UTF-8 (pyre decodes with `utf-8` too); keeping bytes instead would push
//! the question onto every user of the node, and would let two groups whose
//! names differ only in invalid bytes print alike.
//!
//! **Lenient where zyre is.** Bytes after the last field of frame 0 and
//! frames after frame 0 of a command without content are ignored, as the
//! zproto-generated zyre codec does (room for additions by later versions).
//!
//! **Encoding** checks the same limits: a string field longer than 255
//! bytes cannot be sent (its length does not fit in a byte), nor more groups,
//! headers or content frames than a receiver here would accept
//! ([`EncodeError`]). A WHISPER or SHOUT without content is sent with one
//! empty content frame, as zyre does (it cannot send a message without one);
//! such a message decodes with one empty frame of content.

use std::collections::BTreeMap;
use std::fmt;

/// A node's identity: 16 random bytes (zyre shows them as 32 uppercase hex
/// digits, [`crate::interface::hex`]).
pub type Uuid = [u8; 16];

/// A peer's headers (HELLO's dictionary), in name order.
pub type Headers = BTreeMap<String, String>;

/// The start of every ZRE v2 beacon: `"ZRE"` and beacon version 1.
pub const BEACON_PREFIX: [u8; 4] = *b"ZRE\x01";
/// A ZRE v2 beacon is exactly this long.
pub const BEACON_SIZE: usize = 22;
/// The signature at the start of every message: `0xAAA0 | 1` (ZRE).
pub const SIGNATURE: [u8; 2] = [0xAA, 0xA1];
/// The protocol version in every message header.
pub const VERSION: u8 = 2;
/// The header of frame 0: signature, command id, version, sequence.
pub const HEADER_SIZE: usize = 6;

/// The longest *string* field (its length is one byte).
pub const MAX_STRING: usize = 255;
/// The longest *longstr* (a HELLO group name, a header value) we accept.
pub const MAX_LONGSTR: usize = 16 * 1024;
/// The most groups one HELLO may list.
pub const MAX_GROUPS: usize = 256;
/// The most headers one HELLO may carry.
pub const MAX_HEADERS: usize = 64;
/// The most content frames of one WHISPER or SHOUT.
pub const MAX_CONTENT_FRAMES: usize = 256;

/// A ZRE v2 UDP beacon; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    pub uuid: Uuid,
    /// The sender's mailbox port; 0 means the sender is leaving.
    pub port: u16,
}

impl Beacon {
    /// The 22 bytes to broadcast.
    pub fn encode(&self) -> [u8; BEACON_SIZE] {
        let mut out = [0u8; BEACON_SIZE];
        out[..4].copy_from_slice(&BEACON_PREFIX);
        out[4..20].copy_from_slice(&self.uuid);
        out[20..].copy_from_slice(&self.port.to_be_bytes());
        out
    }

    /// The beacon in `datagram`, or `None` if it is not exactly a ZRE v2
    /// beacon (wrong size, header or version).
    pub fn decode(datagram: &[u8]) -> Option<Beacon> {
        let bytes: &[u8; BEACON_SIZE] = datagram.try_into().ok()?;
        if bytes[..4] != BEACON_PREFIX {
            return None;
        }
        let uuid: Uuid = bytes[4..20].try_into().ok()?;
        Some(Beacon {
            uuid,
            port: u16::from_be_bytes([bytes[20], bytes[21]]),
        })
    }

    /// True for the "I am leaving" beacon (port 0).
    pub fn is_leaving(&self) -> bool {
        self.port == 0
    }
}

/// The start of a secure beacon: `"ZRE"` and beacon version 3 (zyre's
/// CURVE mode).
pub const SECURE_BEACON_PREFIX: [u8; 4] = *b"ZRE\x03";
/// A secure beacon is exactly this long: a v2 beacon and a public key.
pub const SECURE_BEACON_SIZE: usize = 54;

/// zyre's beacon version 3, sent by nodes that use CURVE: a v2 beacon
/// followed by the sender's 32-byte CURVE public key, which is the server
/// key to connect to its mailbox with. zyre's secure nodes ignore v2
/// beacons and its plain nodes v3 beacons; so do ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecureBeacon {
    pub uuid: Uuid,
    /// 0: the sender is leaving.
    pub port: u16,
    pub public_key: [u8; 32],
}

impl SecureBeacon {
    /// The 54 bytes to broadcast.
    pub fn encode(&self) -> [u8; SECURE_BEACON_SIZE] {
        let mut out = [0u8; SECURE_BEACON_SIZE];
        out[..4].copy_from_slice(&SECURE_BEACON_PREFIX);
        out[4..20].copy_from_slice(&self.uuid);
        out[20..22].copy_from_slice(&self.port.to_be_bytes());
        out[22..].copy_from_slice(&self.public_key);
        out
    }

    /// The beacon in `datagram`, or `None` if it is not exactly a v3 beacon.
    pub fn decode(datagram: &[u8]) -> Option<SecureBeacon> {
        let bytes: &[u8; SECURE_BEACON_SIZE] = datagram.try_into().ok()?;
        if bytes[..4] != SECURE_BEACON_PREFIX {
            return None;
        }
        Some(SecureBeacon {
            uuid: bytes[4..20].try_into().ok()?,
            port: u16::from_be_bytes([bytes[20], bytes[21]]),
            public_key: bytes[22..].try_into().ok()?,
        })
    }
}

/// One ZRE command with its fields; see the module docs for the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// The first command on every connection: who the sender is.
    Hello {
        /// Where the sender's mailbox is, `tcp://<ip>:<port>`.
        endpoint: String,
        /// The groups the sender is in.
        groups: Vec<String>,
        /// The sender's count of its JOIN and LEAVE operations, mod 256.
        status: u8,
        name: String,
        headers: Headers,
    },
    /// A message for this node only.
    Whisper { content: Vec<Vec<u8>> },
    /// A message to a group.
    Shout {
        group: String,
        content: Vec<Vec<u8>>,
    },
    /// The sender joined `group`; `status` is its new change count.
    Join { group: String, status: u8 },
    /// The sender left `group`; `status` is its new change count.
    Leave { group: String, status: u8 },
    /// "Are you there?" after a silence.
    Ping,
    /// The answer to a PING.
    PingOk,
    /// zyre's leader election: `challenger` (a UUID in hex) runs for `group`.
    Elect { group: String, challenger: String },
    /// zyre's leader election: `leader` (a UUID in hex) won `group`.
    Leader { group: String, leader: String },
    /// zyre's gossip mode: the sender is leaving.
    Goodbye,
}

impl Command {
    /// The command id on the wire.
    pub fn id(&self) -> u8 {
        match self {
            Command::Hello { .. } => 1,
            Command::Whisper { .. } => 2,
            Command::Shout { .. } => 3,
            Command::Join { .. } => 4,
            Command::Leave { .. } => 5,
            Command::Ping => 6,
            Command::PingOk => 7,
            Command::Elect { .. } => 8,
            Command::Leader { .. } => 9,
            Command::Goodbye => 10,
        }
    }

    /// The command's name as RFC 36 spells it, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Hello { .. } => "HELLO",
            Command::Whisper { .. } => "WHISPER",
            Command::Shout { .. } => "SHOUT",
            Command::Join { .. } => "JOIN",
            Command::Leave { .. } => "LEAVE",
            Command::Ping => "PING",
            Command::PingOk => "PING-OK",
            Command::Elect { .. } => "ELECT",
            Command::Leader { .. } => "LEADER",
            Command::Goodbye => "GOODBYE",
        }
    }
}

/// A ZRE message: the sender's sequence number and the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub sequence: u16,
    pub command: Command,
}

/// Why frames are not a ZRE v2 message. `field` names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// No frames at all.
    NoFrames,
    /// Frame 0 is shorter than the 6-byte header.
    ShortHeader(usize),
    /// The first two bytes are not `AA A1`.
    Signature([u8; 2]),
    /// A command id we do not know.
    UnknownCommand(u8),
    /// A protocol version other than 2.
    Version(u8),
    /// Frame 0 ends inside `field`.
    Truncated { field: &'static str },
    /// `field` is longer than we accept.
    TooLong {
        field: &'static str,
        len: u64,
        max: usize,
    },
    /// `field` has more entries than we accept.
    TooMany {
        field: &'static str,
        count: u64,
        max: usize,
    },
    /// `field` is not UTF-8.
    NotUtf8 { field: &'static str },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NoFrames => f.write_str("no frames"),
            DecodeError::ShortHeader(len) => write!(f, "a frame 0 of {len} bytes"),
            DecodeError::Signature(s) => write!(f, "signature {:02X}{:02X}", s[0], s[1]),
            DecodeError::UnknownCommand(id) => write!(f, "unknown command id {id}"),
            DecodeError::Version(v) => write!(f, "protocol version {v}"),
            DecodeError::Truncated { field } => write!(f, "truncated in {field}"),
            DecodeError::TooLong { field, len, max } => {
                write!(f, "{field} of {len} bytes (at most {max})")
            }
            DecodeError::TooMany { field, count, max } => {
                write!(f, "{count} {field} (at most {max})")
            }
            DecodeError::NotUtf8 { field } => write!(f, "{field} is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// `field` is longer than its encoding (or a receiver) allows.
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// `field` has more entries than a receiver accepts.
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLong { field, len, max } => {
                write!(f, "{field} of {len} bytes (at most {max})")
            }
            EncodeError::TooMany { field, count, max } => {
                write!(f, "{count} {field} (at most {max})")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

impl From<EncodeError> for crate::Error {
    fn from(e: EncodeError) -> crate::Error {
        crate::Error::Protocol(format!("cannot encode a ZRE message: {e}"))
    }
}

/// Checks that `text` fits a *string* field.
pub fn check_string(field: &'static str, text: &str) -> Result<(), EncodeError> {
    if text.len() > MAX_STRING {
        return Err(EncodeError::TooLong {
            field,
            len: text.len(),
            max: MAX_STRING,
        });
    }
    Ok(())
}

impl Message {
    /// The frames to send: frame 0 with the header and fields, then the
    /// content of a WHISPER or SHOUT (one empty frame if there is none).
    pub fn encode(&self) -> Result<Vec<Vec<u8>>, EncodeError> {
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(&SIGNATURE);
        head.push(self.command.id());
        head.push(VERSION);
        head.extend_from_slice(&self.sequence.to_be_bytes());
        let mut frames = Vec::new();
        let mut content: &[Vec<u8>] = &[];
        match &self.command {
            Command::Hello {
                endpoint,
                groups,
                status,
                name,
                headers,
            } => {
                put_string(&mut head, "endpoint", endpoint)?;
                if groups.len() > MAX_GROUPS {
                    return Err(EncodeError::TooMany {
                        field: "groups",
                        count: groups.len(),
                        max: MAX_GROUPS,
                    });
                }
                head.extend_from_slice(&(groups.len() as u32).to_be_bytes());
                for group in groups {
                    put_longstr(&mut head, "group", group)?;
                }
                head.push(*status);
                put_string(&mut head, "name", name)?;
                if headers.len() > MAX_HEADERS {
                    return Err(EncodeError::TooMany {
                        field: "headers",
                        count: headers.len(),
                        max: MAX_HEADERS,
                    });
                }
                head.extend_from_slice(&(headers.len() as u32).to_be_bytes());
                for (key, value) in headers {
                    put_string(&mut head, "header name", key)?;
                    put_longstr(&mut head, "header value", value)?;
                }
            }
            Command::Whisper { content: frames } => content = frames,
            Command::Shout {
                group,
                content: frames,
            } => {
                put_string(&mut head, "group", group)?;
                content = frames;
            }
            Command::Join { group, status } | Command::Leave { group, status } => {
                put_string(&mut head, "group", group)?;
                head.push(*status);
            }
            Command::Elect { group, challenger } => {
                put_string(&mut head, "group", group)?;
                put_string(&mut head, "challenger id", challenger)?;
            }
            Command::Leader { group, leader } => {
                put_string(&mut head, "group", group)?;
                put_string(&mut head, "leader id", leader)?;
            }
            Command::Ping | Command::PingOk | Command::Goodbye => {}
        }
        if content.len() > MAX_CONTENT_FRAMES {
            return Err(EncodeError::TooMany {
                field: "content frames",
                count: content.len(),
                max: MAX_CONTENT_FRAMES,
            });
        }
        frames.push(head);
        if matches!(
            self.command,
            Command::Whisper { .. } | Command::Shout { .. }
        ) {
            if content.is_empty() {
                frames.push(Vec::new());
            } else {
                frames.extend(content.iter().cloned());
            }
        }
        Ok(frames)
    }

    /// The message in `frames` (what follows the routing id); see the module
    /// docs for what is checked.
    pub fn decode<F: AsRef<[u8]>>(frames: &[F]) -> Result<Message, DecodeError> {
        let first = frames.first().ok_or(DecodeError::NoFrames)?.as_ref();
        if first.len() < HEADER_SIZE {
            return Err(DecodeError::ShortHeader(first.len()));
        }
        if first[..2] != SIGNATURE {
            return Err(DecodeError::Signature([first[0], first[1]]));
        }
        let id = first[2];
        if !(1..=10).contains(&id) {
            return Err(DecodeError::UnknownCommand(id));
        }
        if first[3] != VERSION {
            return Err(DecodeError::Version(first[3]));
        }
        let sequence = u16::from_be_bytes([first[4], first[5]]);
        let mut r = Reader {
            rest: &first[HEADER_SIZE..],
        };
        let content = || -> Result<Vec<Vec<u8>>, DecodeError> {
            let extra = &frames[1..];
            if extra.len() > MAX_CONTENT_FRAMES {
                return Err(DecodeError::TooMany {
                    field: "content frames",
                    count: extra.len() as u64,
                    max: MAX_CONTENT_FRAMES,
                });
            }
            Ok(extra.iter().map(|f| f.as_ref().to_vec()).collect())
        };
        let command = match id {
            1 => Command::Hello {
                endpoint: r.string("endpoint")?,
                groups: r.strings("groups", MAX_GROUPS)?,
                status: r.u8("status")?,
                name: r.string("name")?,
                headers: r.dictionary("headers", MAX_HEADERS)?,
            },
            2 => Command::Whisper {
                content: content()?,
            },
            3 => Command::Shout {
                group: r.string("group")?,
                content: content()?,
            },
            4 => Command::Join {
                group: r.string("group")?,
                status: r.u8("status")?,
            },
            5 => Command::Leave {
                group: r.string("group")?,
                status: r.u8("status")?,
            },
            6 => Command::Ping,
            7 => Command::PingOk,
            8 => Command::Elect {
                group: r.string("group")?,
                challenger: r.string("challenger id")?,
            },
            9 => Command::Leader {
                group: r.string("group")?,
                leader: r.string("leader id")?,
            },
            _ => Command::Goodbye,
        };
        Ok(Message { sequence, command })
    }
}

fn put_string(out: &mut Vec<u8>, field: &'static str, text: &str) -> Result<(), EncodeError> {
    check_string(field, text)?;
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn put_longstr(out: &mut Vec<u8>, field: &'static str, text: &str) -> Result<(), EncodeError> {
    if text.len() > MAX_LONGSTR {
        return Err(EncodeError::TooLong {
            field,
            len: text.len(),
            max: MAX_LONGSTR,
        });
    }
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Reads fields from frame 0, every length checked before it is used.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated { field });
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn text(bytes: &[u8], field: &'static str) -> Result<String, DecodeError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::NotUtf8 { field })
    }

    /// A *string*: 1-byte length, then the bytes.
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(field)?);
        let bytes = self.take(len, field)?;
        Self::text(bytes, field)
    }

    /// A *longstr*: 4-byte length (at most [`MAX_LONGSTR`]), then the bytes.
    fn longstr(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u32(field)?;
        if len as usize > MAX_LONGSTR {
            return Err(DecodeError::TooLong {
                field,
                len: u64::from(len),
                max: MAX_LONGSTR,
            });
        }
        let bytes = self.take(len as usize, field)?;
        Self::text(bytes, field)
    }

    /// A count of entries each at least `min_entry` bytes long: at most
    /// `max`, and no more than the bytes left could hold.
    fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_entry: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(field)? as usize;
        if count > max {
            return Err(DecodeError::TooMany {
                field,
                count: count as u64,
                max,
            });
        }
        if count.saturating_mul(min_entry) > self.rest.len() {
            return Err(DecodeError::Truncated { field });
        }
        Ok(count)
    }

    /// *strings*: a count, then each as a longstr.
    fn strings(&mut self, field: &'static str, max: usize) -> Result<Vec<String>, DecodeError> {
        let count = self.count(field, max, 4)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.longstr(field)?);
        }
        Ok(out)
    }

    /// A *dictionary*: a count, then name (string) and value (longstr).
    fn dictionary(&mut self, field: &'static str, max: usize) -> Result<Headers, DecodeError> {
        let count = self.count(field, max, 1 + 4)?;
        let mut out = Headers::new();
        for _ in 0..count {
            let key = self.string("header name")?;
            let value = self.longstr("header value")?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secure_beacon_is_a_v2_beacon_with_version_3_and_the_public_key() {
        let beacon = SecureBeacon {
            uuid: [0x11; 16],
            port: 0xC001,
            public_key: [0x22; 32],
        };
        let bytes = beacon.encode();
        assert_eq!(&bytes[..4], b"ZRE\x03");
        assert_eq!(&bytes[4..20], &[0x11; 16]);
        assert_eq!(&bytes[20..22], &[0xC0, 0x01]);
        assert_eq!(&bytes[22..], &[0x22; 32]);
        assert_eq!(SecureBeacon::decode(&bytes), Some(beacon));
        assert_eq!(SecureBeacon::decode(&bytes[..53]), None);
        let plain = Beacon {
            uuid: [0x11; 16],
            port: 0xC001,
        }
        .encode();
        assert_eq!(SecureBeacon::decode(&plain), None);
        let mut mixed = bytes;
        mixed[3] = 1;
        assert_eq!(SecureBeacon::decode(&mixed), None, "version 1 at 54 bytes");
        assert_eq!(Beacon::decode(&bytes), None, "a plain node ignores it");
    }
    use rand::{Rng, RngCore};

    fn decode_one(frame: &[u8]) -> Result<Message, DecodeError> {
        Message::decode(&[frame])
    }

    #[test]
    fn the_hello_example_of_the_spec_encodes_to_its_bytes() {
        let hello = Message {
            sequence: 1,
            command: Command::Hello {
                endpoint: "tcp://127.0.0.1:49152".into(),
                groups: vec![],
                status: 0,
                name: "ABC123".into(),
                headers: Headers::new(),
            },
        };
        let mut expected = vec![0xAA, 0xA1, 0x01, 0x02, 0x00, 0x01, 0x15];
        expected.extend_from_slice(b"tcp://127.0.0.1:49152");
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 6]);
        expected.extend_from_slice(b"ABC123");
        expected.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(hello.encode().unwrap(), vec![expected.clone()]);
        assert_eq!(decode_one(&expected).unwrap(), hello);
    }

    #[test]
    fn the_join_example_of_the_spec_encodes_to_its_bytes() {
        let join = Message {
            sequence: 2,
            command: Command::Join {
                group: "CHAT".into(),
                status: 1,
            },
        };
        let expected = b"\xAA\xA1\x04\x02\x00\x02\x04CHAT\x01".to_vec();
        assert_eq!(join.encode().unwrap(), vec![expected.clone()]);
        assert_eq!(decode_one(&expected).unwrap(), join);
    }

    #[test]
    fn beacons_are_22_bytes_and_nothing_else_decodes() {
        let uuid: Uuid = core::array::from_fn(|i| i as u8 + 1);
        let beacon = Beacon { uuid, port: 49152 };
        let bytes = beacon.encode();
        assert_eq!(&bytes[..4], b"ZRE\x01");
        assert_eq!(&bytes[4..20], &uuid);
        assert_eq!(&bytes[20..], &[0xC0, 0x00]);
        assert_eq!(Beacon::decode(&bytes), Some(beacon));
        assert!(!beacon.is_leaving());
        let leaving = Beacon { uuid, port: 0 };
        assert!(Beacon::decode(&leaving.encode()).unwrap().is_leaving());
        assert_eq!(Beacon::decode(&bytes[..21]), None, "short");
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(Beacon::decode(&long), None, "long");
        let mut v3 = bytes;
        v3[3] = 3;
        assert_eq!(Beacon::decode(&v3), None, "other version");
        let mut other = bytes;
        other[0] = b'X';
        assert_eq!(Beacon::decode(&other), None, "other header");
        assert_eq!(Beacon::decode(b""), None);
    }

    fn every_command() -> Vec<Command> {
        let mut headers = Headers::new();
        headers.insert("X-FILEMQ".into(), "tcp://10.0.0.1:5670".into());
        headers.insert("X-EMPTY".into(), String::new());
        vec![
            Command::Hello {
                endpoint: "tcp://192.168.1.2:50000".into(),
                groups: vec!["CHAT".into(), "GLOBAL".into(), "ünïcode".into()],
                status: 200,
                name: "node-1".into(),
                headers,
            },
            Command::Whisper {
                content: vec![b"one".to_vec(), vec![], vec![0, 1, 2]],
            },
            Command::Shout {
                group: "CHAT".into(),
                content: vec![b"hello".to_vec()],
            },
            Command::Join {
                group: "CHAT".into(),
                status: 255,
            },
            Command::Leave {
                group: "x".repeat(255),
                status: 0,
            },
            Command::Ping,
            Command::PingOk,
            Command::Elect {
                group: "G".into(),
                challenger: "418E98D4B7184844B7D5E0EE5691084C".into(),
            },
            Command::Leader {
                group: "G".into(),
                leader: "418E98D4B7184844B7D5E0EE5691084C".into(),
            },
            Command::Goodbye,
        ]
    }

    /// The ids and names of RFC 36 (and zyre's three extra commands), in
    /// the order of `every_command`: log lines name commands by these.
    #[test]
    fn every_command_has_its_rfc_id_and_name() {
        let table: Vec<(u8, &str)> = every_command()
            .iter()
            .map(|command| (command.id(), command.name()))
            .collect();
        assert_eq!(
            table,
            [
                (1, "HELLO"),
                (2, "WHISPER"),
                (3, "SHOUT"),
                (4, "JOIN"),
                (5, "LEAVE"),
                (6, "PING"),
                (7, "PING-OK"),
                (8, "ELECT"),
                (9, "LEADER"),
                (10, "GOODBYE"),
            ]
        );
    }

    #[test]
    fn every_command_round_trips() {
        for (n, command) in every_command().into_iter().enumerate() {
            let message = Message {
                sequence: 65535 - n as u16,
                command,
            };
            let frames = message.encode().unwrap();
            assert_eq!(frames[0][2], message.command.id());
            assert_eq!(
                Message::decode(&frames).unwrap(),
                message,
                "{}",
                message.command.name()
            );
        }
    }

    #[test]
    fn content_frames_follow_frame_0_and_empty_content_is_one_empty_frame() {
        let whisper = Message {
            sequence: 7,
            command: Command::Whisper { content: vec![] },
        };
        let frames = whisper.encode().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], b"\xAA\xA1\x02\x02\x00\x07");
        assert!(frames[1].is_empty());
        assert_eq!(
            Message::decode(&frames).unwrap().command,
            Command::Whisper {
                content: vec![vec![]]
            }
        );
        let shout = Message {
            sequence: 8,
            command: Command::Shout {
                group: "G".into(),
                content: vec![b"a".to_vec(), b"b".to_vec()],
            },
        };
        let frames = shout.encode().unwrap();
        assert_eq!(
            frames,
            vec![
                b"\xAA\xA1\x03\x02\x00\x08\x01G".to_vec(),
                b"a".to_vec(),
                b"b".to_vec()
            ]
        );
        // A WHISPER that arrives without any content frame is still one.
        assert_eq!(
            decode_one(b"\xAA\xA1\x02\x02\x00\x07").unwrap().command,
            Command::Whisper { content: vec![] }
        );
    }

    #[test]
    fn fields_that_do_not_fit_are_not_encoded() {
        let long = "x".repeat(256);
        let cases = [
            Command::Join {
                group: long.clone(),
                status: 0,
            },
            Command::Shout {
                group: long.clone(),
                content: vec![],
            },
            Command::Hello {
                endpoint: long.clone(),
                groups: vec![],
                status: 0,
                name: String::new(),
                headers: Headers::new(),
            },
            Command::Hello {
                endpoint: String::new(),
                groups: vec![],
                status: 0,
                name: long.clone(),
                headers: Headers::new(),
            },
            Command::Hello {
                endpoint: String::new(),
                groups: vec!["g".into(); MAX_GROUPS + 1],
                status: 0,
                name: String::new(),
                headers: Headers::new(),
            },
            Command::Hello {
                endpoint: String::new(),
                groups: vec![],
                status: 0,
                name: String::new(),
                headers: [(long.clone(), String::new())].into_iter().collect(),
            },
            Command::Whisper {
                content: vec![vec![]; MAX_CONTENT_FRAMES + 1],
            },
        ];
        for command in cases {
            let message = Message {
                sequence: 1,
                command,
            };
            assert!(message.encode().is_err(), "{message:?}");
        }
    }

    /// The longstr bound is exactly 16 KiB, both ways: a header value of
    /// 16,384 bytes goes out and comes back; one byte more is refused by the
    /// encoder, and by the decoder when a peer sends it anyway.
    #[test]
    fn a_longstr_of_16_kib_passes_and_one_byte_more_does_not() {
        let hello = |value: String| Message {
            sequence: 1,
            command: Command::Hello {
                endpoint: String::new(),
                groups: vec![],
                status: 0,
                name: String::new(),
                headers: [("k".to_string(), value)].into_iter().collect(),
            },
        };
        let at_limit = hello("v".repeat(16 * 1024));
        let frames = at_limit.encode().expect("16 KiB is allowed");
        assert_eq!(Message::decode(&frames), Ok(at_limit));

        let over = hello("v".repeat(16 * 1024 + 1));
        let refused = over.encode().expect_err("one byte over 16 KiB");
        // What a log line says about it.
        assert_eq!(
            refused.to_string(),
            "header value of 16385 bytes (at most 16384)"
        );
        // The same bytes as the 16 KiB HELLO with the value one byte longer.
        let mut frame = frames[0].clone();
        let len_at = frame.len() - 16 * 1024 - 4;
        frame[len_at..len_at + 4].copy_from_slice(&(16 * 1024 + 1u32).to_be_bytes());
        frame.push(b'v');
        let refused = decode_one(&frame).expect_err("one byte over 16 KiB");
        assert_eq!(
            refused,
            DecodeError::TooLong {
                field: "header value",
                len: 16 * 1024 + 1,
                max: MAX_LONGSTR,
            }
        );
        assert_eq!(
            refused.to_string(),
            "header value of 16385 bytes (at most 16384)"
        );
        assert_eq!(
            DecodeError::Signature([0xAA, 0xA0]).to_string(),
            "signature AAA0"
        );
    }

    #[test]
    fn bad_headers_are_rejected() {
        assert_eq!(Message::decode::<&[u8]>(&[]), Err(DecodeError::NoFrames));
        assert_eq!(
            decode_one(b"\xAA\xA1\x06\x02\x00"),
            Err(DecodeError::ShortHeader(5))
        );
        assert_eq!(
            decode_one(b"\xAA\xA0\x06\x02\x00\x01"),
            Err(DecodeError::Signature([0xAA, 0xA0]))
        );
        assert_eq!(
            decode_one(b"\xAA\xA1\x0B\x02\x00\x01"),
            Err(DecodeError::UnknownCommand(11))
        );
        assert_eq!(
            decode_one(b"\xAA\xA1\x00\x02\x00\x01"),
            Err(DecodeError::UnknownCommand(0))
        );
        assert_eq!(
            decode_one(b"\xAA\xA1\x06\x03\x00\x01"),
            Err(DecodeError::Version(3))
        );
        assert_eq!(
            decode_one(b"\xAA\xA1\x04\x02\x00\x02\x04CHA"),
            Err(DecodeError::Truncated { field: "group" })
        );
        assert_eq!(
            decode_one(b"\xAA\xA1\x04\x02\x00\x02\x04CHAT"),
            Err(DecodeError::Truncated { field: "status" })
        );
        assert_eq!(
            decode_one(b"\xAA\xA1\x04\x02\x00\x02\x02\xFF\xFE\x01"),
            Err(DecodeError::NotUtf8 { field: "group" })
        );
    }

    #[test]
    fn a_count_of_two_to_the_32_is_rejected_before_anything_is_allocated() {
        // HELLO: endpoint "", then a group count of 0xFFFFFFFF and nothing.
        let hello = b"\xAA\xA1\x01\x02\x00\x01\x00\xFF\xFF\xFF\xFF";
        assert!(matches!(
            decode_one(hello),
            Err(DecodeError::TooMany {
                field: "groups",
                count: 0xFFFF_FFFF,
                ..
            })
        ));
        // A count within the bound, but more than the bytes left could hold.
        let mut hello = b"\xAA\xA1\x01\x02\x00\x01\x00".to_vec();
        hello.extend_from_slice(&(MAX_GROUPS as u32).to_be_bytes());
        hello.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_one(&hello),
            Err(DecodeError::Truncated { field: "groups" })
        );
        // Headers likewise, and a longstr claiming 4 GiB.
        let mut hello = b"\xAA\xA1\x01\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00".to_vec();
        hello.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            decode_one(&hello),
            Err(DecodeError::TooMany {
                field: "headers",
                ..
            })
        ));
        // A header takes at least 5 bytes (a name length and a value
        // length): two headers in 8 bytes cannot be, whatever they hold.
        let mut hello = b"\xAA\xA1\x01\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00".to_vec();
        hello.extend_from_slice(&2u32.to_be_bytes());
        hello.extend_from_slice(&[0; 8]);
        assert_eq!(
            decode_one(&hello),
            Err(DecodeError::Truncated { field: "headers" })
        );
        let mut hello = b"\xAA\xA1\x01\x02\x00\x01\x00\x00\x00\x00\x01".to_vec();
        hello.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            decode_one(&hello),
            Err(DecodeError::TooLong {
                field: "groups",
                ..
            })
        ));
    }

    #[test]
    fn too_many_content_frames_are_rejected() {
        let mut frames = vec![b"\xAA\xA1\x02\x02\x00\x01".to_vec()];
        frames.extend(vec![vec![]; MAX_CONTENT_FRAMES + 1]);
        assert!(matches!(
            Message::decode(&frames),
            Err(DecodeError::TooMany {
                field: "content frames",
                ..
            })
        ));
    }

    /// Every count bound lets exactly its maximum through, both ways, and
    /// refuses one more when encoding.
    #[test]
    fn counts_at_their_limits_pass_and_one_more_does_not() {
        let hello = |groups: usize, headers: usize| Message {
            sequence: 1,
            command: Command::Hello {
                endpoint: String::new(),
                groups: (0..groups).map(|n| format!("g{n}")).collect(),
                status: 0,
                name: String::new(),
                headers: (0..headers)
                    .map(|n| (format!("h{n}"), String::new()))
                    .collect(),
            },
        };
        let whisper = |frames: usize| Message {
            sequence: 1,
            command: Command::Whisper {
                content: vec![b"x".to_vec(); frames],
            },
        };
        for at_limit in [
            hello(MAX_GROUPS, 0),
            hello(0, MAX_HEADERS),
            whisper(MAX_CONTENT_FRAMES),
        ] {
            let frames = at_limit.encode().expect("a count at its limit");
            assert_eq!(Message::decode(&frames), Ok(at_limit));
        }
        for over in [
            hello(MAX_GROUPS + 1, 0),
            hello(0, MAX_HEADERS + 1),
            whisper(MAX_CONTENT_FRAMES + 1),
        ] {
            assert!(matches!(
                over.encode(),
                Err(EncodeError::TooMany { count, max, .. }) if count == max + 1
            ));
        }
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error_not_a_panic() {
        for command in every_command() {
            let frames = Message {
                sequence: 1,
                command,
            }
            .encode()
            .unwrap();
            let fixed_size = matches!(frames[0][2], 2 | 6 | 7 | 10);
            for cut in 0..frames[0].len() {
                let mut cut_frames = frames.clone();
                cut_frames[0].truncate(cut);
                let decoded = Message::decode(&cut_frames);
                if cut < HEADER_SIZE || !fixed_size {
                    assert!(decoded.is_err(), "cut at {cut}: {decoded:?}");
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::thread_rng();
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut frame = vec![0u8; len];
            rng.fill_bytes(&mut frame);
            // Half the time a valid header, so the field decoders get fuzzed.
            if len >= HEADER_SIZE && rng.gen_bool(0.5) {
                frame[..2].copy_from_slice(&SIGNATURE);
                frame[2] = rng.gen_range(1..=10);
                frame[3] = VERSION;
            }
            let extra = rng.gen_range(0..3);
            let mut frames = vec![frame];
            frames.extend((0..extra).map(|_| vec![1u8; 3]));
            if Message::decode(&frames).is_ok() {
                accepted += 1;
            }
            let _ = Beacon::decode(&frames[0]);
        }
        assert!(accepted > 0, "PING, PING-OK and the like decode");
    }
}
