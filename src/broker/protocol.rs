//! The study broker protocol, SBP/1 (the spec is `zguide/broker-protocol.md`):
//! its commands as Rust values, and the frames they are on the wire.
//!
//! Majordomo with what a production broker needs in every message: a logical
//! address, properties (a MessagePack map: deadline, priority, environment,
//! idempotent, reason, and whatever the application adds), a correlation id
//! the client chooses, and a status code on every reply. [`parse_client`] and
//! [`parse_worker`] check every bound of the spec and say what is wrong;
//! `to_frames` builds the frames. A message may start with the empty frame a
//! REQ socket adds: parsing reports it, so the answer can have it too.
//!
//! Properties travel as the bytes they came in ([`Properties::raw`]), so keys
//! the broker does not know reach the worker and the client unchanged; the
//! known ones are read once, on parsing.
//!
//! [zguide/broker-protocol.md]: https://github.com/ (see zguide/broker-protocol.md in this repository)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Signature of client commands.
pub const CLIENT: &[u8] = b"SBPC01";
/// Signature of worker commands.
pub const WORKER: &[u8] = b"SBPW01";
/// The largest properties frame, in bytes.
pub const MAX_PROPERTIES: usize = 4096;
/// The longest service name, logical address or client token, in bytes.
pub const MAX_NAME: usize = 255;
/// The longest correlation id, in bytes.
pub const MAX_CORRELATION: usize = 64;
/// The longest environment name, in bytes.
pub const MAX_ENVIRONMENT: usize = 64;

/// A frame list, as `recv_multipart` gives it.
pub type Frames = Vec<Vec<u8>>;

/// What a message breaks, and its correlation id if it could be read (then
/// a client's malformed REQUEST is answered 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub what: String,
    pub correlation: Option<Vec<u8>>,
}

fn malformed<T>(what: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed {
        what: what.into(),
        correlation: None,
    })
}

/// A reply's status code (§6 of the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const MALFORMED: Status = Status(400);
    pub const UNKNOWN_SERVICE: Status = Status(404);
    pub const WORKER_FAILED: Status = Status(500);
    pub const NO_WORKERS: Status = Status(503);
    pub const DEADLINE_PASSED: Status = Status(504);

    fn parse(frame: &[u8]) -> Result<Status, Malformed> {
        if frame.len() == 3 && frame.iter().all(u8::is_ascii_digit) {
            let text = std::str::from_utf8(frame).unwrap_or("0");
            Ok(Status(text.parse().unwrap_or(0)))
        } else {
            malformed("a status is three digits")
        }
    }

    fn frame(self) -> Vec<u8> {
        format!("{:03}", self.0.min(999)).into_bytes()
    }
}

/// A message's properties: the known ones, read, and the frame as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    /// Milliseconds since the Unix epoch after which the request is stale.
    pub deadline: Option<u64>,
    /// Higher first within a service's queue.
    pub priority: i8,
    /// Scopes service names; `default` when absent.
    pub environment: String,
    /// May be given to another worker if its worker dies.
    pub idempotent: bool,
    /// Why a reply is not 200, for people.
    pub reason: Option<String>,
    /// Brokers the request has been forwarded through (peering); a broker
    /// never forwards a request whose count is not zero, so a request
    /// crosses at most one peering link and cannot loop.
    pub hops: u8,
    /// The MessagePack map as it travels (unknown keys included).
    pub raw: Vec<u8>,
}

/// The known keys, as they are read from and written to the map.
#[derive(Serialize, Deserialize, Default)]
struct Known {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deadline: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl Default for Properties {
    fn default() -> Properties {
        Properties::build(None, 0, None, false, None)
    }
}

impl Properties {
    /// Properties with these values (absent ones left out of the map); keys in
    /// alphabetical order.
    pub fn build(
        deadline: Option<u64>,
        priority: i8,
        environment: Option<&str>,
        idempotent: bool,
        reason: Option<&str>,
    ) -> Properties {
        let known = Known {
            deadline,
            environment: environment.map(str::to_string),
            hops: None,
            idempotent: idempotent.then_some(true),
            priority: (priority != 0).then_some(i64::from(priority)),
            reason: reason.map(str::to_string),
        };
        let raw = rmp_serde::to_vec_named(&known).unwrap_or_else(|_| vec![0x80]);
        Properties {
            deadline,
            priority,
            environment: environment.unwrap_or("default").to_string(),
            idempotent,
            reason: reason.map(str::to_string),
            hops: 0,
            raw,
        }
    }

    /// The same properties with `hops` one higher, for a request a broker
    /// forwards to a peer. Every other key travels as it came: the key is
    /// appended to the map and the map's entry count raised, without
    /// decoding the other values. `None` when the map already has a `hops`
    /// key (the request came through a peer, or its client set one: it is
    /// not forwarded) or is too large to grow.
    pub fn forwarded(&self) -> Option<Properties> {
        let map: BTreeMap<String, serde::de::IgnoredAny> = rmp_serde::from_slice(&self.raw).ok()?;
        if map.contains_key("hops") {
            return None;
        }
        let count = map.len() + 1;
        let header = match self.raw.first()? {
            0x80..=0x8f => 1,
            0xde => 3,
            0xdf => 5,
            _ => return None,
        };
        let mut raw = Vec::with_capacity(self.raw.len() + 8);
        if count <= 15 {
            raw.push(0x80 | count as u8);
        } else if let Ok(count) = u16::try_from(count) {
            raw.push(0xde);
            raw.extend_from_slice(&count.to_be_bytes());
        } else {
            raw.push(0xdf);
            raw.extend_from_slice(&u32::try_from(count).ok()?.to_be_bytes());
        }
        raw.extend_from_slice(self.raw.get(header..)?);
        // "hops": 1 (a fixstr key, a positive fixint value).
        raw.extend_from_slice(&[0xa4, b'h', b'o', b'p', b's', 0x01]);
        if raw.len() > MAX_PROPERTIES {
            return None;
        }
        let properties = Properties::parse(&raw).ok()?;
        (properties.hops == 1).then_some(properties)
    }

    /// Reads a properties frame: a MessagePack map with text keys, at most
    /// [`MAX_PROPERTIES`] bytes, whose known keys have the right types.
    pub fn parse(frame: &[u8]) -> Result<Properties, Malformed> {
        if frame.len() > MAX_PROPERTIES {
            return malformed(format!("properties of {} bytes", frame.len()));
        }
        // A map with text keys first (any values), then the known keys.
        let map: BTreeMap<String, serde::de::IgnoredAny> =
            rmp_serde::from_slice(frame).map_err(|_| Malformed {
                what: "properties are not a MessagePack map with text keys".into(),
                correlation: None,
            })?;
        drop(map);
        let known: Known = rmp_serde::from_slice(frame).map_err(|e| Malformed {
            what: format!("a known property has the wrong type: {e}"),
            correlation: None,
        })?;
        let priority = match known.priority.map(i8::try_from) {
            None => 0,
            Some(Ok(priority)) => priority,
            Some(Err(_)) => return malformed("priority outside -128..127"),
        };
        let environment = known.environment.unwrap_or_else(|| "default".into());
        if environment.is_empty() || environment.len() > MAX_ENVIRONMENT {
            return malformed("environment empty or longer than 64 bytes");
        }
        if known.reason.as_ref().is_some_and(|r| r.len() > MAX_NAME) {
            return malformed("reason longer than 255 bytes");
        }
        Ok(Properties {
            deadline: known.deadline,
            priority,
            environment,
            idempotent: known.idempotent.unwrap_or(false),
            reason: known.reason,
            hops: u8::try_from(known.hops.unwrap_or(0)).unwrap_or(u8::MAX),
            raw: frame.to_vec(),
        })
    }
}

/// A client's request, or a broker's request to a worker (then `client` is
/// the broker's token for the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub service: Vec<u8>,
    pub address: Vec<u8>,
    pub properties: Properties,
    pub correlation: Vec<u8>,
    pub body: Frames,
}

/// A reply, to a client or from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub service: Vec<u8>,
    pub correlation: Vec<u8>,
    pub status: Status,
    pub properties: Properties,
    pub body: Frames,
}

/// The client side's commands (signature `SBPC01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Request(Request),
    Reply(Reply),
    Ping,
    Pong,
}

/// The worker side's commands (signature `SBPW01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerCommand {
    Ready {
        service: Vec<u8>,
        properties: Properties,
    },
    /// `request.service` is empty here: a worker knows its service.
    Request {
        client: Vec<u8>,
        request: Request,
    },
    Reply {
        client: Vec<u8>,
        reply: Reply,
    },
    Heartbeat,
    Disconnect,
}

/// A parsed message and whether it began with a REQ socket's empty frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub command: T,
    pub leading_empty: bool,
}

/// Reads frames in order, each checked against a bound.
struct Reader<'a> {
    frames: std::slice::Iter<'a, Vec<u8>>,
    correlation: Option<Vec<u8>>,
}

impl<'a> Reader<'a> {
    fn next(&mut self, name: &str) -> Result<&'a [u8], Malformed> {
        self.frames
            .next()
            .map(Vec::as_slice)
            .ok_or_else(|| self.fail(format!("no {name} frame")))
    }

    fn fail(&self, what: String) -> Malformed {
        Malformed {
            what,
            correlation: self.correlation.clone(),
        }
    }

    fn check<T>(&self, result: Result<T, Malformed>) -> Result<T, Malformed> {
        result.map_err(|e| self.fail(e.what))
    }

    fn service(&mut self) -> Result<Vec<u8>, Malformed> {
        let service = self.next("service")?;
        let printable = service.iter().all(|b| (0x21..=0x7e).contains(b));
        if service.is_empty() || service.len() > MAX_NAME || !printable {
            return Err(self.fail("a service name is 1-255 printable ASCII bytes".into()));
        }
        Ok(service.to_vec())
    }

    fn name(&mut self, what: &str, allow_empty: bool) -> Result<Vec<u8>, Malformed> {
        let name = self.next(what)?;
        if name.len() > MAX_NAME || (name.is_empty() && !allow_empty) {
            return Err(self.fail(format!("{what} of {} bytes", name.len())));
        }
        Ok(name.to_vec())
    }

    fn correlation(&mut self) -> Result<Vec<u8>, Malformed> {
        let correlation = self.next("correlation")?;
        if correlation.is_empty() || correlation.len() > MAX_CORRELATION {
            return Err(self.fail("a correlation id is 1-64 bytes".into()));
        }
        Ok(correlation.to_vec())
    }

    fn properties(&mut self) -> Result<Properties, Malformed> {
        let frame = self.next("properties")?;
        self.check(Properties::parse(frame))
    }

    fn status(&mut self) -> Result<Status, Malformed> {
        let frame = self.next("status")?;
        self.check(Status::parse(frame))
    }

    fn body(self) -> Frames {
        self.frames.cloned().collect()
    }

    fn end(mut self, command: &str) -> Result<(), Malformed> {
        match self.frames.next() {
            None => Ok(()),
            Some(_) => Err(self.fail(format!("{command} has frames after its last"))),
        }
    }
}

/// Splits off the optional leading empty frame, the signature and the
/// command byte.
fn header<'a>(
    frames: &'a [Vec<u8>],
    signature: &[u8],
) -> Result<(bool, u8, Reader<'a>), Malformed> {
    let leading_empty = frames.first().is_some_and(Vec::is_empty);
    let rest = &frames[usize::from(leading_empty)..];
    if rest.first().map(Vec::as_slice) != Some(signature) {
        return malformed("not this protocol's signature");
    }
    let command = match rest.get(1).map(Vec::as_slice) {
        Some([command]) => *command,
        _ => return malformed("no one-byte command frame"),
    };
    let reader = Reader {
        frames: rest[2..].iter(),
        correlation: None,
    };
    Ok((leading_empty, command, reader))
}

/// Reads a client-side message (`SBPC01`).
pub fn parse_client(frames: &[Vec<u8>]) -> Result<Parsed<ClientCommand>, Malformed> {
    let (leading_empty, command, mut reader) = header(frames, CLIENT)?;
    let command = match command {
        0x01 => {
            let service = reader.service()?;
            let address = reader.name("address", true)?;
            // The correlation frame comes after properties; peek at it so a
            // request with bad properties can still be answered 400.
            reader.correlation = frames
                .get(usize::from(leading_empty) + 5)
                .filter(|c| !c.is_empty() && c.len() <= MAX_CORRELATION)
                .cloned();
            let properties = reader.properties()?;
            let correlation = reader.correlation()?;
            ClientCommand::Request(Request {
                service,
                address,
                properties,
                correlation,
                body: reader.body(),
            })
        }
        0x02 => {
            let service = reader.service()?;
            let correlation = reader.correlation()?;
            reader.correlation = Some(correlation.clone());
            let status = reader.status()?;
            let properties = reader.properties()?;
            ClientCommand::Reply(Reply {
                service,
                correlation,
                status,
                properties,
                body: reader.body(),
            })
        }
        0x03 => reader.end("PING").map(|()| ClientCommand::Ping)?,
        0x04 => reader.end("PONG").map(|()| ClientCommand::Pong)?,
        other => return malformed(format!("unknown client command {other:#04x}")),
    };
    Ok(Parsed {
        command,
        leading_empty,
    })
}

/// Reads a worker-side message (`SBPW01`).
pub fn parse_worker(frames: &[Vec<u8>]) -> Result<Parsed<WorkerCommand>, Malformed> {
    let (leading_empty, command, mut reader) = header(frames, WORKER)?;
    let command = match command {
        0x01 => {
            let service = reader.service()?;
            let properties = reader.properties()?;
            reader.end("READY")?;
            WorkerCommand::Ready {
                service,
                properties,
            }
        }
        0x02 => {
            let client = reader.name("client", false)?;
            let address = reader.name("address", true)?;
            let properties = reader.properties()?;
            let correlation = reader.correlation()?;
            WorkerCommand::Request {
                client,
                request: Request {
                    service: Vec::new(),
                    address,
                    properties,
                    correlation,
                    body: reader.body(),
                },
            }
        }
        0x03 => {
            let client = reader.name("client", false)?;
            let correlation = reader.correlation()?;
            let status = reader.status()?;
            let properties = reader.properties()?;
            WorkerCommand::Reply {
                client,
                reply: Reply {
                    service: Vec::new(),
                    correlation,
                    status,
                    properties,
                    body: reader.body(),
                },
            }
        }
        0x04 => reader.end("HEARTBEAT").map(|()| WorkerCommand::Heartbeat)?,
        0x05 => reader
            .end("DISCONNECT")
            .map(|()| WorkerCommand::Disconnect)?,
        other => return malformed(format!("unknown worker command {other:#04x}")),
    };
    Ok(Parsed {
        command,
        leading_empty,
    })
}

fn with_header(signature: &[u8], command: u8, leading_empty: bool) -> Frames {
    let mut frames = Vec::new();
    if leading_empty {
        frames.push(Vec::new());
    }
    frames.push(signature.to_vec());
    frames.push(vec![command]);
    frames
}

/// The frames of a worker REQUEST before its body, borrowed (a broker sends
/// them without copying).
pub fn worker_request_head<'a>(
    client: &'a [u8],
    request: &'a Request,
    leading_empty: bool,
) -> Vec<&'a [u8]> {
    let mut head: Vec<&'a [u8]> = Vec::with_capacity(8);
    if leading_empty {
        head.push(b"");
    }
    head.extend([WORKER, &[0x02], client, &request.address]);
    head.extend([request.properties.raw.as_slice(), &request.correlation]);
    head
}

impl ClientCommand {
    /// The frames of this command, after an empty frame if `leading_empty`.
    pub fn to_frames(&self, leading_empty: bool) -> Frames {
        match self {
            ClientCommand::Request(r) => {
                let mut frames = with_header(CLIENT, 0x01, leading_empty);
                frames.extend([
                    r.service.clone(),
                    r.address.clone(),
                    r.properties.raw.clone(),
                ]);
                frames.push(r.correlation.clone());
                frames.extend(r.body.iter().cloned());
                frames
            }
            ClientCommand::Reply(r) => {
                let mut frames = with_header(CLIENT, 0x02, leading_empty);
                frames.extend([r.service.clone(), r.correlation.clone(), r.status.frame()]);
                frames.push(r.properties.raw.clone());
                frames.extend(r.body.iter().cloned());
                frames
            }
            ClientCommand::Ping => with_header(CLIENT, 0x03, leading_empty),
            ClientCommand::Pong => with_header(CLIENT, 0x04, leading_empty),
        }
    }
}

impl WorkerCommand {
    /// The frames of this command, after an empty frame if `leading_empty`.
    pub fn to_frames(&self, leading_empty: bool) -> Frames {
        match self {
            WorkerCommand::Ready {
                service,
                properties,
            } => {
                let mut frames = with_header(WORKER, 0x01, leading_empty);
                frames.extend([service.clone(), properties.raw.clone()]);
                frames
            }
            WorkerCommand::Request { client, request } => {
                let mut frames: Frames = worker_request_head(client, request, leading_empty)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                frames.extend(request.body.iter().cloned());
                frames
            }
            WorkerCommand::Reply { client, reply } => {
                let mut frames = with_header(WORKER, 0x03, leading_empty);
                frames.extend([
                    client.clone(),
                    reply.correlation.clone(),
                    reply.status.frame(),
                ]);
                frames.push(reply.properties.raw.clone());
                frames.extend(reply.body.iter().cloned());
                frames
            }
            WorkerCommand::Heartbeat => with_header(WORKER, 0x04, leading_empty),
            WorkerCommand::Disconnect => with_header(WORKER, 0x05, leading_empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn request() -> Request {
        Request {
            service: b"echo".to_vec(),
            address: Vec::new(),
            properties: Properties::build(Some(1_800_000_000_000), 0, Some("test"), false, None),
            correlation: b"42".to_vec(),
            body: vec![b"hello".to_vec()],
        }
    }

    /// Forwarding adds `hops: 1` and keeps every other key, known or not,
    /// byte for byte; a map that has `hops` already is not forwarded.
    #[test]
    fn forwarded_properties_count_one_hop_and_keep_the_rest() {
        let original = Properties::build(Some(1_800_000_000_000), 3, Some("test"), true, None);
        let forwarded = original.forwarded().unwrap();
        assert_eq!(forwarded.hops, 1);
        assert_eq!(forwarded.deadline, original.deadline);
        assert_eq!(forwarded.priority, 3);
        assert_eq!(forwarded.environment, "test");
        assert!(forwarded.idempotent);
        assert_eq!(forwarded.raw[0], 0x80 | 5);
        assert_eq!(&forwarded.raw[1..original.raw.len()], &original.raw[1..]);
        assert_eq!(forwarded.forwarded(), None, "a second hop is refused");
        // An unknown key travels unchanged; an empty map becomes one entry.
        let with_unknown = Properties::parse(&hex("81 a1 78 c4 02 01 02")).unwrap();
        let forwarded = with_unknown.forwarded().unwrap();
        assert_eq!(forwarded.raw, hex("82 a1 78 c4 02 01 02 a4 68 6f 70 73 01"));
        assert_eq!(
            Properties::default().forwarded().unwrap().raw,
            hex("81 a4 68 6f 70 73 01")
        );
        // A client that set hops itself (even 0) is not forwarded.
        let zero = Properties::parse(&hex("81 a4 68 6f 70 73 00")).unwrap();
        assert_eq!(zero.hops, 0);
        assert_eq!(zero.forwarded(), None);
        // A map16 grows as a map16.
        let mut big = vec![0xde, 0x00, 0x10];
        for key in 0..16u8 {
            big.extend_from_slice(&[0xa2, b'k', b'a' + key, 0x00]);
        }
        let forwarded = Properties::parse(&big).unwrap().forwarded().unwrap();
        assert_eq!(&forwarded.raw[..3], &[0xde, 0x00, 0x11]);
        assert_eq!(forwarded.hops, 1);
        // A small map a client wrote with a longer header than it needed
        // (map16, map32: valid MessagePack) is forwarded too, re-headed as the
        // fixmap it fits in.
        for header in [&[0xde, 0x00, 0x01][..], &[0xdf, 0x00, 0x00, 0x00, 0x01]] {
            let mut raw = header.to_vec();
            raw.extend_from_slice(&hex("a1 78 c4 02 01 02"));
            let forwarded = Properties::parse(&raw).unwrap().forwarded();
            assert_eq!(
                forwarded.map(|p| p.raw),
                Some(hex("82 a1 78 c4 02 01 02 a4 68 6f 70 73 01")),
                "header {header:02x?}"
            );
        }
        // The grown map must still fit the bound: `hops` adds 6 bytes, so a
        // map of MAX_PROPERTIES - 6 bytes is forwarded and one byte longer
        // is not. The map: {"x": <bin16 of n bytes>}, 6 + n bytes.
        let map_of = |len: usize| {
            let n = (len - 6) as u16;
            let mut raw = hex("81 a1 78 c5");
            raw.extend_from_slice(&n.to_be_bytes());
            raw.resize(len, 0x55);
            Properties::parse(&raw).unwrap()
        };
        let fits = map_of(MAX_PROPERTIES - 6)
            .forwarded()
            .expect("grows to the bound");
        assert_eq!(fits.raw.len(), MAX_PROPERTIES);
        assert_eq!(map_of(MAX_PROPERTIES - 5).forwarded(), None);
    }

    /// The two examples of §7 of the spec, byte for byte.
    #[test]
    fn the_spec_examples_are_what_the_codec_writes_and_reads() {
        let frames = ClientCommand::Request(request()).to_frames(false);
        let expected = vec![
            b"SBPC01".to_vec(),
            vec![0x01],
            b"echo".to_vec(),
            Vec::new(),
            hex("82 a8 64 65 61 64 6c 69 6e 65 cf 00 00 01 a3 18 5c 50 00 ab 65 6e 76 69 72 6f 6e 6d 65 6e 74 a4 74 65 73 74"),
            b"42".to_vec(),
            b"hello".to_vec(),
        ];
        assert_eq!(frames, expected);
        let parsed = parse_client(&expected).unwrap();
        assert_eq!(parsed.command, ClientCommand::Request(request()));
        assert_eq!(parsed.command_properties().environment, "test");

        let reply = ClientCommand::Reply(Reply {
            service: b"echo".to_vec(),
            correlation: b"42".to_vec(),
            status: Status::DEADLINE_PASSED,
            properties: Properties::build(None, 0, None, false, Some("deadline passed")),
            body: Vec::new(),
        });
        let expected = vec![
            b"SBPC01".to_vec(),
            vec![0x02],
            b"echo".to_vec(),
            b"42".to_vec(),
            b"504".to_vec(),
            hex("81 a6 72 65 61 73 6f 6e af 64 65 61 64 6c 69 6e 65 20 70 61 73 73 65 64"),
        ];
        assert_eq!(reply.to_frames(false), expected);
        assert_eq!(parse_client(&expected).unwrap().command, reply);
    }

    impl Parsed<ClientCommand> {
        fn command_properties(&self) -> &Properties {
            match &self.command {
                ClientCommand::Request(r) => &r.properties,
                ClientCommand::Reply(r) => &r.properties,
                _ => panic!("no properties"),
            }
        }
    }

    #[test]
    fn every_command_survives_a_round_trip_in_both_shapes() {
        let properties = Properties::build(Some(5), -3, Some("prod"), true, None);
        let clients = [
            ClientCommand::Request(request()),
            ClientCommand::Ping,
            ClientCommand::Pong,
        ];
        let workers = [
            WorkerCommand::Ready {
                service: b"echo".to_vec(),
                properties: properties.clone(),
            },
            WorkerCommand::Request {
                client: b"C1".to_vec(),
                request: Request {
                    service: Vec::new(),
                    address: b"alice".to_vec(),
                    properties: properties.clone(),
                    correlation: b"7".to_vec(),
                    body: vec![b"a".to_vec(), Vec::new()],
                },
            },
            WorkerCommand::Reply {
                client: b"C1".to_vec(),
                reply: Reply {
                    service: Vec::new(),
                    correlation: b"7".to_vec(),
                    status: Status::OK,
                    properties,
                    body: vec![b"b".to_vec()],
                },
            },
            WorkerCommand::Heartbeat,
            WorkerCommand::Disconnect,
        ];
        for leading_empty in [false, true] {
            for command in &clients {
                let parsed = parse_client(&command.to_frames(leading_empty)).unwrap();
                assert_eq!(
                    (&parsed.command, parsed.leading_empty),
                    (command, leading_empty)
                );
            }
            for command in &workers {
                let parsed = parse_worker(&command.to_frames(leading_empty)).unwrap();
                assert_eq!(
                    (&parsed.command, parsed.leading_empty),
                    (command, leading_empty)
                );
            }
        }
    }

    #[test]
    fn properties_keep_unknown_keys_and_check_known_ones() {
        // {"color": "blue", "priority": 5}: the unknown key travels as it came.
        let raw = hex("82 a5 63 6f 6c 6f 72 a4 62 6c 75 65 a8 70 72 69 6f 72 69 74 79 05");
        let properties = Properties::parse(&raw).unwrap();
        assert_eq!((properties.priority, properties.raw.clone()), (5, raw));
        assert_eq!(properties.environment, "default");
        // {"priority": 300}, {"deadline": "soon"}, a list, {1: 2}, and too big.
        for bad in [
            "81 a8 70 72 69 6f 72 69 74 79 cd 01 2c",
            "81 a8 64 65 61 64 6c 69 6e 65 a4 73 6f 6f 6e",
            "92 01 02",
            "81 01 02",
        ] {
            assert!(Properties::parse(&hex(bad)).is_err(), "{bad} accepted");
        }
        assert!(Properties::parse(&vec![0x80; MAX_PROPERTIES + 1]).is_err());
        let long_environment = "e".repeat(MAX_ENVIRONMENT + 1);
        let raw = Properties::build(None, 0, Some(&long_environment), false, None).raw;
        assert!(Properties::parse(&raw).is_err());
        // Each text bound lets exactly its maximum through.
        let environment = "e".repeat(MAX_ENVIRONMENT);
        let raw = Properties::build(None, 0, Some(&environment), false, None).raw;
        assert_eq!(Properties::parse(&raw).unwrap().environment, environment);
        let empty = Properties::build(None, 0, Some(""), false, None).raw;
        assert!(Properties::parse(&empty).is_err());
        let reason = "r".repeat(MAX_NAME);
        let raw = Properties::build(None, 0, None, false, Some(&reason)).raw;
        assert_eq!(Properties::parse(&raw).unwrap().reason, Some(reason));
        let long_reason = "r".repeat(MAX_NAME + 1);
        let raw = Properties::build(None, 0, None, false, Some(&long_reason)).raw;
        assert!(Properties::parse(&raw).is_err());
    }

    #[test]
    fn malformed_messages_say_what_is_wrong_and_keep_the_correlation_when_they_can() {
        let good = ClientCommand::Request(request()).to_frames(false);
        let with = |index: usize, frame: &[u8]| {
            let mut frames = good.clone();
            frames[index] = frame.to_vec();
            frames
        };
        let cases: Vec<(Frames, &str)> = vec![
            (with(0, b"MDPC01"), "signature"),
            (with(1, &[0x09]), "unknown client command"),
            (with(1, &[0x01, 0x01]), "command frame"),
            (with(2, b""), "service"),
            (with(2, b"bad name"), "service"),
            (with(2, &[b'x'; 256]), "service"),
            (with(3, &[b'a'; 256]), "address"),
            (with(5, b""), "correlation"),
            (with(5, &[b'c'; 65]), "correlation"),
            (good[..5].to_vec(), "no correlation frame"),
        ];
        for (frames, what) in cases {
            let error = parse_client(&frames).expect_err(what);
            assert!(
                error.what.contains(what),
                "{:?} does not say {what}",
                error.what
            );
        }
        // Exactly at their bounds, a service, an address and a correlation
        // id pass.
        let at_limits = with(2, &[b'x'; MAX_NAME]);
        let mut at_limits_frames = at_limits.clone();
        at_limits_frames[3] = vec![b'a'; MAX_NAME];
        at_limits_frames[5] = vec![b'c'; MAX_CORRELATION];
        for frames in [at_limits, at_limits_frames] {
            assert!(parse_client(&frames).is_ok(), "{frames:?}");
        }
        // Bad properties: still answerable, the correlation is known.
        let error = parse_client(&with(4, &hex("92 01 02"))).unwrap_err();
        assert_eq!(error.correlation.as_deref(), Some(&b"42"[..]));
        // ... unless the correlation id is itself invalid: no answer then.
        for correlation in [&b""[..], &[b'c'; MAX_CORRELATION + 1]] {
            let mut frames = with(4, &hex("92 01 02"));
            frames[5] = correlation.to_vec();
            assert_eq!(parse_client(&frames).unwrap_err().correlation, None);
        }
        // Trailing frames after PING, and a worker READY with extra frames.
        let mut ping = ClientCommand::Ping.to_frames(false);
        ping.push(b"x".to_vec());
        assert!(parse_client(&ping).is_err());
        let mut ready = WorkerCommand::Ready {
            service: b"echo".to_vec(),
            properties: Properties::default(),
        }
        .to_frames(true);
        ready.push(b"x".to_vec());
        assert!(parse_worker(&ready).is_err());
        assert!(parse_worker(&[]).is_err());
        assert!(parse_worker(&[Vec::new()]).is_err());
        // A status that is not three digits.
        let mut reply = WorkerCommand::Reply {
            client: b"C".to_vec(),
            reply: Reply {
                service: Vec::new(),
                correlation: b"1".to_vec(),
                status: Status::OK,
                properties: Properties::default(),
                body: Vec::new(),
            },
        }
        .to_frames(false);
        reply[4] = b"2x0".to_vec();
        assert!(parse_worker(&reply)
            .unwrap_err()
            .what
            .contains("three digits"));
    }
}
