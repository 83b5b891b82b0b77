//! SFT/1, the study's file-transfer protocol (`zguide/file-transfer-protocol.md`):
//! its commands as Rust values and the frames they are on the wire, every
//! bound checked on the way in.
//!
//! Every message starts with the signature frame [`SIGNATURE`] (`SFT1`) and a
//! one-byte command. A client (DEALER) sends LIST, STAT and FETCH; the server
//! (ROUTER) answers each with LIST-OK, STAT-OK or CHUNK, which carry a status
//! (three ASCII digits) and the request's key (prefix, name, name and offset),
//! so a late answer to a request sent again is recognised and dropped. A
//! request the server cannot read gets ERROR. Numbers are big-endian.
//!
//! | command | frames after `SFT1` and the command byte |
//! |---|---|
//! | LIST C→S | prefix (may be empty: the whole tree) |
//! | LIST-OK S→C | status, prefix, then a MessagePack list of `[name, size]` (200) or a reason |
//! | STAT C→S | name |
//! | STAT-OK S→C | status, name, then size (u64) and BLAKE3 of the file (32 bytes) (200) or a reason (202: still hashing, ask again) |
//! | FETCH C→S | name, offset (u64), length (u32, at most [`MAX_CHUNK`]; offset and length a BLAKE3 subtree, [`is_subtree`](super::tree::is_subtree)), accept (0 raw, 1 zstd too) |
//! | CHUNK S→C | status, name, offset, then encoding (0 raw, 1 zstd), the raw bytes' BLAKE3 chaining value as the subtree at that offset ([`chunk_hash`](super::tree::chunk_hash)), data (200) or a reason |
//! | ERROR S→C | status, reason (a request that could not be read) |
//!
//! Names are UTF-8, relative, `/`-separated, with no empty, `.` or `..`
//! component and no NUL ([`check_name`]): the same check guards the server's
//! directory and the client's destination (a listing from a hostile server
//! cannot make the client write outside it).

use serde::{Deserialize, Serialize};

/// The first frame of every SFT/1 message.
pub const SIGNATURE: &[u8] = b"SFT1";
/// The longest name or prefix, in bytes.
pub const MAX_NAME: usize = 1024;
/// The longest reason text, in bytes (longer ones are cut).
pub const MAX_REASON: usize = 255;
/// The largest chunk a FETCH may ask for (4 MiB).
pub const MAX_CHUNK: u32 = 4 << 20;
/// The most entries in a listing (past it: 413).
pub const MAX_LIST_ENTRIES: usize = 100_000;
/// The largest listing frame, in bytes (past it: 413).
pub const MAX_LIST_BYTES: usize = 16 << 20;
/// The largest frame a client accepts (`MAXMSGSIZE`): a listing or a chunk.
pub const CLIENT_MAX_FRAME: i64 = MAX_LIST_BYTES as i64 + 4096;
/// The largest frame the server accepts (`MAXMSGSIZE`): requests are small.
pub const SERVER_MAX_FRAME: i64 = MAX_NAME as i64 + 64;
/// Length of a BLAKE3 hash.
pub const HASH_LEN: usize = 32;

/// Command bytes.
pub mod command {
    pub const LIST: u8 = 0x01;
    pub const LIST_OK: u8 = 0x02;
    pub const STAT: u8 = 0x03;
    pub const STAT_OK: u8 = 0x04;
    pub const FETCH: u8 = 0x05;
    pub const CHUNK: u8 = 0x06;
    pub const ERROR: u8 = 0x7f;
}

/// A reply's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    /// STAT of a large file: the server is hashing it, ask again shortly.
    pub const HASHING: Status = Status(202);
    /// The request could not be read.
    pub const MALFORMED: Status = Status(400);
    /// The name is not allowed (absolute, `..`, outside the served directory).
    pub const REFUSED: Status = Status(403);
    /// No such regular file (or directory, for LIST).
    pub const NOT_FOUND: Status = Status(404);
    /// A chunk longer than [`MAX_CHUNK`], or a listing past its bounds.
    pub const TOO_LARGE: Status = Status(413);
    /// Too many requests outstanding for this client: ask again later.
    pub const BUSY: Status = Status(429);
    /// The server could not read the file.
    pub const READ_ERROR: Status = Status(500);

    /// The three ASCII digits on the wire.
    pub fn to_frame(self) -> Vec<u8> {
        format!("{:03}", self.0 % 1000).into_bytes()
    }

    /// Three ASCII digits, or `None`.
    pub fn parse(frame: &[u8]) -> Option<Status> {
        if frame.len() != 3 || !frame.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(frame).ok()?.parse().ok().map(Status)
    }

    /// A short name for messages: `403 refused` …
    pub fn describe(self) -> String {
        let what = match self.0 {
            200 => "ok",
            202 => "hashing",
            400 => "malformed request",
            403 => "refused",
            404 => "not found",
            413 => "too large",
            429 => "busy",
            500 => "read error",
            _ => "unknown status",
        };
        format!("{} {what}", self.0)
    }
}

/// How a chunk's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw = 0,
    Zstd = 1,
}

impl Encoding {
    fn parse(byte: u8) -> Option<Encoding> {
        match byte {
            0 => Some(Encoding::Raw),
            1 => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// A request, as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    List {
        prefix: String,
    },
    Stat {
        name: String,
    },
    Fetch {
        name: String,
        offset: u64,
        length: u32,
        /// The client accepts zstd-compressed chunks.
        zstd: bool,
    },
}

/// What is wrong with a message; `key` is the name (and offset) if they
/// could be read, so the answer can say which request it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not SFT/1 at all (wrong or missing signature): drop it, log it.
    NotOurs,
    /// SFT/1 but malformed: answer ERROR 400 with this reason.
    Malformed(&'static str),
    /// A well-formed message.
    Ok(T),
}

/// The command byte and the frames after it; `Err(None)`: not SFT/1,
/// `Err(Some(why))`: SFT/1 but malformed.
fn head<'a>(frames: &'a [&'a [u8]]) -> Result<(u8, &'a [&'a [u8]]), Option<&'static str>> {
    match frames {
        [] => Err(None),
        [signature, ..] if *signature != SIGNATURE => Err(None),
        [_] => Err(Some("no command frame")),
        [_, command, rest @ ..] => match command {
            [byte] => Ok((*byte, rest)),
            _ => Err(Some("the command frame is not one byte")),
        },
    }
}

fn text(frame: &[u8], allow_empty: bool) -> Result<String, &'static str> {
    if frame.len() > MAX_NAME {
        return Err("name longer than 1024 bytes");
    }
    if frame.is_empty() && !allow_empty {
        return Err("empty name");
    }
    String::from_utf8(frame.to_vec()).map_err(|_| "name is not UTF-8")
}

fn u64_be(frame: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(frame.try_into().ok()?))
}

fn u32_be(frame: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(frame.try_into().ok()?))
}

/// Reads a request (the frames after the ROUTER's identity).
pub fn parse_request(frames: &[&[u8]]) -> Parsed<Request> {
    let (command, rest) = match head(frames) {
        Ok(head) => head,
        Err(None) => return Parsed::NotOurs,
        Err(Some(why)) => return Parsed::Malformed(why),
    };
    let request = match (command, rest) {
        (command::LIST, [prefix]) => text(prefix, true).map(|prefix| Request::List { prefix }),
        (command::STAT, [name]) => text(name, false).map(|name| Request::Stat { name }),
        (command::FETCH, [name, offset, length, accept]) => (|| {
            let name = text(name, false)?;
            let offset = u64_be(offset).ok_or("the offset is not 8 bytes")?;
            let length = u32_be(length).ok_or("the length is not 4 bytes")?;
            let zstd = match accept {
                [0] => false,
                [1] => true,
                _ => return Err("accept is not one byte 0 or 1"),
            };
            Ok(Request::Fetch {
                name,
                offset,
                length,
                zstd,
            })
        })(),
        (command::LIST | command::STAT | command::FETCH, _) => Err("wrong number of frames"),
        _ => Err("unknown command"),
    };
    match request {
        Ok(request) => Parsed::Ok(request),
        Err(why) => Parsed::Malformed(why),
    }
}

impl Request {
    /// The request's frames.
    pub fn to_frames(&self) -> Vec<Vec<u8>> {
        match self {
            Request::List { prefix } => vec![
                SIGNATURE.to_vec(),
                vec![command::LIST],
                prefix.as_bytes().to_vec(),
            ],
            Request::Stat { name } => vec![
                SIGNATURE.to_vec(),
                vec![command::STAT],
                name.as_bytes().to_vec(),
            ],
            Request::Fetch {
                name,
                offset,
                length,
                zstd,
            } => vec![
                SIGNATURE.to_vec(),
                vec![command::FETCH],
                name.as_bytes().to_vec(),
                offset.to_be_bytes().to_vec(),
                length.to_be_bytes().to_vec(),
                vec![u8::from(*zstd)],
            ],
        }
    }
}

/// One file in a listing: its name under the served directory and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub size: u64,
}

/// A chunk's content as the server sends it (after the status, name and
/// offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkBody<D> {
    pub encoding: Encoding,
    /// The [`chunk_hash`](super::tree::chunk_hash) of the raw (decoded) bytes: their BLAKE3 chaining
    /// value as the subtree at the chunk's offset.
    pub hash: [u8; HASH_LEN],
    pub data: D,
}

/// A reply, as the client reads it. `Err` holds the status and reason of a
/// refusal. `D` is a frame: the client keeps a chunk's data in the
/// `zmq::Message` it arrived in (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<D = Vec<u8>> {
    ListOk {
        prefix: String,
        result: Result<Vec<Entry>, (Status, String)>,
    },
    StatOk {
        name: String,
        result: Result<(u64, [u8; HASH_LEN]), (Status, String)>,
    },
    Chunk {
        name: String,
        offset: u64,
        result: Result<ChunkBody<D>, (Status, String)>,
    },
    Error {
        status: Status,
        reason: String,
    },
}

fn reason(frame: &[u8]) -> String {
    let cut = &frame[..frame.len().min(MAX_REASON)];
    String::from_utf8_lossy(cut).into_owned()
}

fn status_and_key<'a>(
    rest: &'a [&'a [u8]],
) -> Result<(Status, String, &'a [&'a [u8]]), &'static str> {
    let [status, key, tail @ ..] = rest else {
        return Err("too few frames");
    };
    let status = Status::parse(status).ok_or("the status is not three digits")?;
    let key = text(key, true)?;
    Ok((status, key, tail))
}

/// Reads a reply (on the client's DEALER). Takes the frames by value so a
/// chunk's data is moved, not copied.
pub fn parse_reply<D: std::ops::Deref<Target = [u8]>>(mut frames: Vec<D>) -> Parsed<Reply<D>> {
    // The data frame of a CHUNK is the large one: take it out before
    // borrowing the rest.
    let is_chunk_ok = frames.len() == 8
        && frames[0][..] == *SIGNATURE
        && frames[1][..] == [command::CHUNK]
        && frames[2][..] == *b"200";
    let data = if is_chunk_ok { frames.pop() } else { None };
    let views: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let (command, rest) = match head(&views) {
        Ok(head) => head,
        Err(None) => return Parsed::NotOurs,
        Err(Some(why)) => return Parsed::Malformed(why),
    };
    let reply = (|| match command {
        command::ERROR => match rest {
            [status, why] => Ok(Reply::Error {
                status: Status::parse(status).ok_or("the status is not three digits")?,
                reason: reason(why),
            }),
            _ => Err("wrong number of frames"),
        },
        command::LIST_OK => {
            let (status, prefix, tail) = status_and_key(rest)?;
            let [body] = tail else {
                return Err("wrong number of frames");
            };
            let result = if status == Status::OK {
                Ok(decode_listing(body)?)
            } else {
                Err((status, reason(body)))
            };
            Ok(Reply::ListOk { prefix, result })
        }
        command::STAT_OK => {
            let (status, name, tail) = status_and_key(rest)?;
            let result = match (status == Status::OK, tail) {
                (true, [size, hash]) => Ok((
                    u64_be(size).ok_or("the size is not 8 bytes")?,
                    (*hash).try_into().map_err(|_| "the hash is not 32 bytes")?,
                )),
                (false, [why]) => Err((status, reason(why))),
                _ => return Err("wrong number of frames"),
            };
            Ok(Reply::StatOk { name, result })
        }
        command::CHUNK => {
            let (status, name, tail) = status_and_key(rest)?;
            let [offset, tail @ ..] = tail else {
                return Err("wrong number of frames");
            };
            let offset = u64_be(offset).ok_or("the offset is not 8 bytes")?;
            let result = match (status == Status::OK, tail) {
                (true, [encoding, hash]) => Ok(ChunkBody {
                    encoding: match encoding {
                        [byte] => Encoding::parse(*byte).ok_or("unknown encoding")?,
                        _ => return Err("the encoding is not one byte"),
                    },
                    hash: (*hash).try_into().map_err(|_| "the hash is not 32 bytes")?,
                    data: (),
                }),
                (false, [why]) => Err((status, reason(why))),
                _ => return Err("wrong number of frames"),
            };
            Ok(Reply::Chunk {
                name,
                offset,
                result,
            })
        }
        _ => Err("unknown command"),
    })();
    // Put the data frame (taken out above) back into the chunk.
    let reply = reply.and_then(|reply| match reply {
        Reply::Chunk {
            name,
            offset,
            result,
        } => {
            let result = match result {
                Ok(body) => Ok(ChunkBody {
                    encoding: body.encoding,
                    hash: body.hash,
                    data: data.ok_or("wrong number of frames")?,
                }),
                Err(refusal) => Err(refusal),
            };
            Ok(Reply::Chunk {
                name,
                offset,
                result,
            })
        }
        Reply::ListOk { prefix, result } => Ok(Reply::ListOk { prefix, result }),
        Reply::StatOk { name, result } => Ok(Reply::StatOk { name, result }),
        Reply::Error { status, reason } => Ok(Reply::Error { status, reason }),
    });
    match reply {
        Ok(reply) => Parsed::Ok(reply),
        Err(why) => Parsed::Malformed(why),
    }
}

/// The listing frame: MessagePack `[[name, size], …]`.
pub fn encode_listing(entries: &[Entry]) -> Vec<u8> {
    let pairs: Vec<(&str, u64)> = entries.iter().map(|e| (e.name.as_str(), e.size)).collect();
    // Serialising strings and integers into a Vec cannot fail.
    rmp_serde::to_vec(&pairs).unwrap_or_default()
}

/// Reads a listing frame, checking its bounds and every name.
pub fn decode_listing(frame: &[u8]) -> Result<Vec<Entry>, &'static str> {
    if frame.len() > MAX_LIST_BYTES {
        return Err("listing larger than 16 MiB");
    }
    let pairs: Vec<(String, u64)> = rmp_serde::from_slice(frame)
        .map_err(|_| "the listing is not a MessagePack list of [name, size]")?;
    if pairs.len() > MAX_LIST_ENTRIES {
        return Err("listing of more than 100,000 entries");
    }
    pairs
        .into_iter()
        .map(|(name, size)| {
            check_name(&name)?;
            Ok(Entry { name, size })
        })
        .collect()
}

/// The frames of a reply to `request`, before any data: `[SFT1][cmd]
/// [status][key…]`.
fn reply_head(command: u8, status: Status, key: &str) -> Vec<Vec<u8>> {
    vec![
        SIGNATURE.to_vec(),
        vec![command],
        status.to_frame(),
        key.as_bytes().to_vec(),
    ]
}

fn cut_reason(why: &str) -> Vec<u8> {
    let mut end = why.len().min(MAX_REASON);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    why.as_bytes()[..end].to_vec()
}

/// LIST-OK 200 with `entries`.
pub fn list_ok(prefix: &str, entries: &[Entry]) -> Vec<Vec<u8>> {
    let mut frames = reply_head(command::LIST_OK, Status::OK, prefix);
    frames.push(encode_listing(entries));
    frames
}

/// STAT-OK 200.
pub fn stat_ok(name: &str, size: u64, hash: &[u8; HASH_LEN]) -> Vec<Vec<u8>> {
    let mut frames = reply_head(command::STAT_OK, Status::OK, name);
    frames.push(size.to_be_bytes().to_vec());
    frames.push(hash.to_vec());
    frames
}

/// The frames of a CHUNK 200 before its data frame.
pub fn chunk_head(
    name: &str,
    offset: u64,
    encoding: Encoding,
    hash: &[u8; HASH_LEN],
) -> Vec<Vec<u8>> {
    let mut frames = reply_head(command::CHUNK, Status::OK, name);
    frames.push(offset.to_be_bytes().to_vec());
    frames.push(vec![encoding as u8]);
    frames.push(hash.to_vec());
    frames
}

/// The refusal of `request` with `status` and `why`.
pub fn refusal(request: &Request, status: Status, why: &str) -> Vec<Vec<u8>> {
    let mut frames = match request {
        Request::List { prefix } => reply_head(command::LIST_OK, status, prefix),
        Request::Stat { name } => reply_head(command::STAT_OK, status, name),
        Request::Fetch { name, offset, .. } => {
            let mut frames = reply_head(command::CHUNK, status, name);
            frames.push(offset.to_be_bytes().to_vec());
            frames
        }
    };
    frames.push(cut_reason(why));
    frames
}

/// ERROR with `status` and `why`, for a request that could not be read.
pub fn error(status: Status, why: &str) -> Vec<Vec<u8>> {
    vec![
        SIGNATURE.to_vec(),
        vec![command::ERROR],
        status.to_frame(),
        cut_reason(why),
    ]
}

/// Checks a name from the wire: 1 to [`MAX_NAME`] bytes, relative, no empty,
/// `.` or `..` component, no NUL. Says what is wrong.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_NAME {
        return Err("name longer than 1024 bytes");
    }
    if name.contains('\0') {
        return Err("NUL in name");
    }
    if name.starts_with('/') {
        return Err("absolute path");
    }
    for component in name.split('/') {
        match component {
            "" => return Err("empty path component (// or a trailing /)"),
            "." => return Err("`.` component"),
            ".." => return Err("`..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a LIST prefix: empty (the whole tree) or a name.
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        Ok(())
    } else {
        check_name(prefix)
    }
}

/// BLAKE3 of `data`.
pub fn hash(data: &[u8]) -> [u8; HASH_LEN] {
    *blake3::hash(data).as_bytes()
}

/// A hash as 64 lowercase hex digits.
pub fn hex(hash: &[u8; HASH_LEN]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits back to a hash.
pub fn from_hex(text: &str) -> Option<[u8; HASH_LEN]> {
    if text.len() != HASH_LEN * 2 {
        return None;
    }
    let mut hash = [0u8; HASH_LEN];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(frames: &[Vec<u8>]) -> Vec<&[u8]> {
        frames.iter().map(Vec::as_slice).collect()
    }

    fn parse(frames: &[&[u8]]) -> Parsed<Request> {
        parse_request(frames)
    }

    #[test]
    fn requests_round_trip() {
        let requests = [
            Request::List {
                prefix: String::new(),
            },
            Request::List {
                prefix: "a/b".into(),
            },
            Request::Stat {
                name: "dir/file.bin".into(),
            },
            Request::Fetch {
                name: "x".into(),
                offset: u64::MAX - 1,
                length: MAX_CHUNK,
                zstd: true,
            },
            Request::Fetch {
                name: "y".into(),
                offset: 0,
                length: 0,
                zstd: false,
            },
        ];
        for request in requests {
            let frames = request.to_frames();
            assert_eq!(parse(&views(&frames)), Parsed::Ok(request));
        }
    }

    #[test]
    fn malformed_requests_say_why_and_strangers_are_not_ours() {
        let long = vec![b'a'; MAX_NAME + 1];
        let eight = 7u64.to_be_bytes();
        let four = 9u32.to_be_bytes();
        let cases: Vec<(Vec<&[u8]>, Parsed<Request>)> = vec![
            (vec![], Parsed::NotOurs),
            (vec![b"SFT2", &[1], b""], Parsed::NotOurs),
            (vec![b"sft1"], Parsed::NotOurs),
            (vec![b"SFT1"], Parsed::Malformed("no command frame")),
            (
                vec![b"SFT1", &[1, 1], b""],
                Parsed::Malformed("the command frame is not one byte"),
            ),
            (
                vec![b"SFT1", &[9], b""],
                Parsed::Malformed("unknown command"),
            ),
            (
                vec![b"SFT1", &[1]],
                Parsed::Malformed("wrong number of frames"),
            ),
            (vec![b"SFT1", &[3], b""], Parsed::Malformed("empty name")),
            (
                vec![b"SFT1", &[3], &long],
                Parsed::Malformed("name longer than 1024 bytes"),
            ),
            (
                vec![b"SFT1", &[3], &[0xff, 0xfe]],
                Parsed::Malformed("name is not UTF-8"),
            ),
            (
                vec![b"SFT1", &[5], b"n", &[1, 2], &four, &[0]],
                Parsed::Malformed("the offset is not 8 bytes"),
            ),
            (
                vec![b"SFT1", &[5], b"n", &eight, &eight, &[0]],
                Parsed::Malformed("the length is not 4 bytes"),
            ),
            (
                vec![b"SFT1", &[5], b"n", &eight, &four, &[2]],
                Parsed::Malformed("accept is not one byte 0 or 1"),
            ),
            (
                vec![b"SFT1", &[5], b"n", &eight, &four],
                Parsed::Malformed("wrong number of frames"),
            ),
        ];
        for (frames, expected) in cases {
            assert_eq!(parse(&frames), expected, "{frames:?}");
        }
    }

    #[test]
    fn replies_round_trip() {
        let entries = vec![
            Entry {
                name: "a".into(),
                size: 0,
            },
            Entry {
                name: "d/é".into(),
                size: u64::MAX,
            },
        ];
        let hash = hash(b"hello");
        let fetch = Request::Fetch {
            name: "f".into(),
            offset: 1 << 40,
            length: 10,
            zstd: false,
        };
        let parse = |frames: Vec<Vec<u8>>| match parse_reply(frames) {
            Parsed::Ok(reply) => reply,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            parse(list_ok("d", &entries)),
            Reply::ListOk {
                prefix: "d".into(),
                result: Ok(entries)
            }
        );
        assert_eq!(
            parse(stat_ok("f", 5, &hash)),
            Reply::StatOk {
                name: "f".into(),
                result: Ok((5, hash))
            }
        );
        let mut chunk = chunk_head("f", 1 << 40, Encoding::Zstd, &hash);
        chunk.push(b"data".to_vec());
        assert_eq!(
            parse(chunk),
            Reply::Chunk {
                name: "f".into(),
                offset: 1 << 40,
                result: Ok(ChunkBody {
                    encoding: Encoding::Zstd,
                    hash,
                    data: b"data".to_vec()
                })
            }
        );
        assert_eq!(
            parse(refusal(&fetch, Status::BUSY, "later")),
            Reply::Chunk {
                name: "f".into(),
                offset: 1 << 40,
                result: Err((Status::BUSY, "later".into()))
            }
        );
        assert_eq!(
            parse(refusal(
                &Request::Stat { name: "s".into() },
                Status::NOT_FOUND,
                "no"
            )),
            Reply::StatOk {
                name: "s".into(),
                result: Err((Status::NOT_FOUND, "no".into()))
            }
        );
        let long_reason = "é".repeat(200);
        let Reply::Error { status, reason } = parse(error(Status::MALFORMED, &long_reason)) else {
            panic!()
        };
        assert_eq!(status, Status::MALFORMED);
        assert!(reason.len() <= MAX_REASON && reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn malformed_replies_are_refused() {
        let hash = hash(b"");
        let mut bad_hash = chunk_head("f", 0, Encoding::Raw, &hash);
        bad_hash[6] = vec![1, 2, 3];
        bad_hash.push(b"x".to_vec());
        assert_eq!(
            parse_reply(bad_hash),
            Parsed::Malformed("the hash is not 32 bytes")
        );
        let mut bad_encoding = chunk_head("f", 0, Encoding::Raw, &hash);
        bad_encoding[5] = vec![7];
        bad_encoding.push(Vec::new());
        assert_eq!(
            parse_reply(bad_encoding),
            Parsed::Malformed("unknown encoding")
        );
        let mut bad_status = stat_ok("f", 1, &hash);
        bad_status[2] = b"20x".to_vec();
        assert_eq!(
            parse_reply(bad_status),
            Parsed::Malformed("the status is not three digits")
        );
        let mut short = stat_ok("f", 1, &hash);
        short.pop();
        assert_eq!(
            parse_reply(short),
            Parsed::Malformed("wrong number of frames")
        );
        let mut junk_listing = list_ok("", &[]);
        junk_listing[4] = b"\xc1junk".to_vec();
        assert_eq!(
            parse_reply(junk_listing),
            Parsed::Malformed("the listing is not a MessagePack list of [name, size]")
        );
        // A hostile server's listing cannot name a path outside the destination.
        let evil = list_ok(
            "",
            &[Entry {
                name: "../../.profile".into(),
                size: 1,
            }],
        );
        assert_eq!(parse_reply(evil), Parsed::Malformed("`..` component"));
        assert_eq!(parse_reply(vec![b"XXXX".to_vec()]), Parsed::NotOurs);
    }

    /// A listing may hold exactly MAX_LIST_ENTRIES entries and be exactly
    /// MAX_LIST_BYTES long (the size is checked before anything is decoded,
    /// so the error says which bound was hit).
    #[test]
    fn listings_are_bounded_at_exactly_their_limits() {
        let entries = |n: usize| {
            let entry = Entry {
                name: "a".into(),
                size: 1,
            };
            encode_listing(&vec![entry; n])
        };
        assert_eq!(
            decode_listing(&entries(MAX_LIST_ENTRIES)).map(|e| e.len()),
            Ok(MAX_LIST_ENTRIES)
        );
        assert_eq!(
            decode_listing(&entries(MAX_LIST_ENTRIES + 1)),
            Err("listing of more than 100,000 entries")
        );
        assert_eq!(
            decode_listing(&vec![0xc1; MAX_LIST_BYTES]),
            Err("the listing is not a MessagePack list of [name, size]")
        );
        assert_eq!(
            decode_listing(&vec![0xc1; MAX_LIST_BYTES + 1]),
            Err("listing larger than 16 MiB")
        );
    }

    #[test]
    fn names_are_relative_and_plain() {
        for good in ["a", "a/b", "a.b/.c/..d", "dir/file name", "é"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty name"),
            ("/etc/passwd", "absolute path"),
            ("../x", "`..` component"),
            ("a/../../x", "`..` component"),
            ("a/..", "`..` component"),
            ("./a", "`.` component"),
            ("a//b", "empty path component (// or a trailing /)"),
            ("a/", "empty path component (// or a trailing /)"),
            ("a\0b", "NUL in name"),
        ] {
            assert_eq!(check_name(bad), Err(why), "{bad:?}");
        }
        assert_eq!(check_prefix(""), Ok(()));
        assert_eq!(check_prefix(".."), Err("`..` component"));
        assert_eq!(check_name(&"n".repeat(MAX_NAME)), Ok(()));
        assert_eq!(
            check_name(&"n".repeat(MAX_NAME + 1)),
            Err("name longer than 1024 bytes")
        );
    }

    /// The largest message each side may legally send fits the other's
    /// `MAXMSGSIZE`, and neither limit is looser than that plus a little:
    /// a request with a name of MAX_NAME bytes, a listing frame of
    /// MAX_LIST_BYTES, a chunk of MAX_CHUNK.
    #[test]
    fn the_largest_legal_frames_fit_the_socket_limits_and_little_more() {
        let name = "n".repeat(MAX_NAME);
        for request in [
            Request::Fetch {
                name: name.clone(),
                offset: u64::MAX,
                length: MAX_CHUNK,
                zstd: true,
            },
            Request::Stat { name: name.clone() },
            Request::List {
                prefix: name.clone(),
            },
        ] {
            let frames = request.to_frames();
            let largest = frames.iter().map(Vec::len).max().unwrap();
            assert_eq!(largest, MAX_NAME);
            assert!(largest as i64 <= SERVER_MAX_FRAME, "{request:?}");
            // A name of exactly MAX_NAME bytes is legal.
            assert_eq!(parse(&views(&frames)), Parsed::Ok(request));
        }
        assert!(SERVER_MAX_FRAME <= MAX_NAME as i64 + 4096);
        assert!(MAX_LIST_BYTES as i64 <= CLIENT_MAX_FRAME);
        assert!(i64::from(MAX_CHUNK) <= CLIENT_MAX_FRAME);
        assert!(CLIENT_MAX_FRAME <= MAX_LIST_BYTES as i64 + 4096);
    }

    #[test]
    fn statuses_and_hex() {
        assert_eq!(Status::parse(b"429"), Some(Status::BUSY));
        assert_eq!(Status::parse(b"42"), None);
        assert_eq!(Status::parse(b"+42"), None);
        assert_eq!(Status::REFUSED.to_frame(), b"403");
        // What the client prints for each status.
        let described: Vec<String> = [
            Status::OK,
            Status::HASHING,
            Status::MALFORMED,
            Status::REFUSED,
            Status::NOT_FOUND,
            Status::TOO_LARGE,
            Status::BUSY,
            Status::READ_ERROR,
            Status(299),
        ]
        .into_iter()
        .map(Status::describe)
        .collect();
        assert_eq!(
            described,
            [
                "200 ok",
                "202 hashing",
                "400 malformed request",
                "403 refused",
                "404 not found",
                "413 too large",
                "429 busy",
                "500 read error",
                "299 unknown status",
            ]
        );
        let h = hash(b"abc");
        assert_eq!(from_hex(&hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
