//! The Titanic store (§30, TSP = RFC 9): requests and replies on disk, so a
//! request accepted once is answered even if Titanic, the broker or the
//! worker die in between.
//!
//! Layout, as in `titanic.c`, under `.titanic/` in the working directory:
//! `<UUID>.req` (the request: service name, then the body frames),
//! `<UUID>.rep` (the reply body frames), and `queue`, one line per request,
//! `-<UUID>` while pending and `+<UUID>` once done (the first byte is
//! overwritten in place). Messages are stored like czmq's `zmsg_save`: per
//! frame an 8-byte little-endian length, then the bytes (unlike `zmsg_save`
//! we do not stop at the first empty frame).
//!
//! What this adds to the C:
//! * **UUIDs from the wire are checked** ([`Uuid::parse`]: exactly 32 hex
//!   digits) before they become part of a path, so a request naming
//!   `../something` can read, write or delete nothing outside the store.
//! * **Crash-safe writes**: every file is written to a temporary name,
//!   fsynced, then renamed over the real name (and the directory fsynced),
//!   so after a SIGKILL at any moment a `.req` or `.rep` is either complete
//!   or absent, never half-written. Queue lines are appended and fsynced
//!   before the client hears `200`; a partial last line left by a crash is
//!   cut off when the store is opened.
//! * Loading checks every length against the file size: a damaged file is an
//!   error, never a huge allocation or a panic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::Message;

/// The store's directory, relative to the working directory (`TITANIC_DIR`).
pub const DIR: &str = ".titanic";

/// A request id: 32 uppercase hex digits (the C's libuuid format).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Uuid(String);

impl Uuid {
    /// A fresh random id (122 random bits would do; we use 128).
    pub fn generate() -> Uuid {
        let bytes: [u8; 16] = rand::thread_rng().gen();
        Uuid(bytes.iter().map(|b| format!("{b:02X}")).collect())
    }

    /// Validates an id from the wire: exactly 32 hex digits, either case
    /// (RFC 9); stored in upper case. Anything else is `None`.
    pub fn parse(frame: &[u8]) -> Option<Uuid> {
        (frame.len() == 32 && frame.iter().all(u8::is_ascii_hexdigit))
            .then(|| Uuid(String::from_utf8_lossy(frame).to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One line of the queue file: where it is, and which request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub offset: u64,
    pub uuid: Uuid,
}

/// The on-disk store. Cheap to clone; every thread may have its own.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, and cuts off a partial
    /// last queue line a crash may have left.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Store> {
        let store = Store {
            dir: dir.as_ref().to_path_buf(),
        };
        fs::create_dir_all(&store.dir)?;
        store.repair_queue()?;
        Ok(store)
    }

    fn request_path(&self, uuid: &Uuid) -> PathBuf {
        self.dir.join(format!("{uuid}.req"))
    }

    fn reply_path(&self, uuid: &Uuid) -> PathBuf {
        self.dir.join(format!("{uuid}.rep"))
    }

    fn queue_path(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// Stores a request `[service][body…]` under `uuid`.
    pub fn save_request(&self, uuid: &Uuid, request: &Message) -> io::Result<()> {
        write_atomically(&self.request_path(uuid), &encode(request))
    }

    /// Stores the reply body for `uuid`.
    pub fn save_reply(&self, uuid: &Uuid, reply: &Message) -> io::Result<()> {
        write_atomically(&self.reply_path(uuid), &encode(reply))
    }

    /// The stored request, `Ok(None)` if there is none.
    pub fn load_request(&self, uuid: &Uuid) -> io::Result<Option<Message>> {
        load(&self.request_path(uuid))
    }

    /// The stored reply, `Ok(None)` if there is none yet.
    pub fn load_reply(&self, uuid: &Uuid) -> io::Result<Option<Message>> {
        load(&self.reply_path(uuid))
    }

    pub fn has_request(&self, uuid: &Uuid) -> bool {
        self.request_path(uuid).exists()
    }

    pub fn has_reply(&self, uuid: &Uuid) -> bool {
        self.reply_path(uuid).exists()
    }

    /// Deletes request and reply (`titanic.close`); idempotent.
    pub fn close(&self, uuid: &Uuid) -> io::Result<()> {
        for path in [self.request_path(uuid), self.reply_path(uuid)] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Appends `-<UUID>` to the queue and makes it durable.
    pub fn enqueue(&self, uuid: &Uuid) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.queue_path())?;
        file.write_all(format!("-{uuid}\n").as_bytes())?;
        file.sync_data()
    }

    /// The pending (`-`) entries, oldest first. Lines that are not a valid
    /// entry are skipped (CRLF is tolerated, like the C).
    pub fn pending(&self) -> io::Result<Vec<QueueEntry>> {
        let text = match fs::read(self.queue_path()) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries = Vec::new();
        let mut offset = 0u64;
        for line in text.split_inclusive(|&b| b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if line.ends_with(b"\n") && body.first() == Some(&b'-') {
                if let Some(uuid) = Uuid::parse(&body[1..]) {
                    entries.push(QueueEntry { offset, uuid });
                }
            }
            offset += line.len() as u64;
        }
        Ok(entries)
    }

    /// Marks a queue entry done: its `-` becomes `+`.
    pub fn mark_done(&self, entry: &QueueEntry) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.queue_path())?;
        file.write_all_at(b"+", entry.offset)
    }

    /// Truncates the queue after its last complete line.
    fn repair_queue(&self) -> io::Result<()> {
        let path = self.queue_path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if keep < text.len() {
            log::warn!(
                "titanic: cutting a partial line off the end of {}",
                path.display()
            );
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(keep as u64)?;
            file.sync_all()?;
        }
        Ok(())
    }
}

/// `zmsg_save` format: per frame an 8-byte little-endian length, the bytes.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.content_size() + 8 * msg.len());
    for frame in msg.iter() {
        out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// The inverse of [`encode`]; any inconsistency is an `InvalidData` error.
pub fn decode(mut bytes: &[u8]) -> io::Result<Message> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut msg = Message::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated frame length"))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| bad("frame too long"))?;
        if len > rest.len() {
            return Err(bad("frame longer than the file"));
        }
        let (frame, rest) = rest.split_at(len);
        msg.append(frame);
        bytes = rest;
    }
    Ok(msg)
}

fn load(path: &Path) -> io::Result<Option<Message>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode(&bytes).map(Some)
}

/// Write to `<path>.tmp-<random>`, fsync, rename over `path`, fsync the
/// directory: the file is then either the old one or the complete new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{:08x}", rand::thread_rng().gen::<u32>()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_accepts_32_hex_digits_only() {
        let id = Uuid::generate();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(Uuid::parse(id.as_str().as_bytes()), Some(id.clone()));
        let lower = id.as_str().to_ascii_lowercase();
        assert_eq!(Uuid::parse(lower.as_bytes()), Some(id));
        for bad in [
            &b"../../../../etc/passwd"[..],
            b"",
            b"0123456789ABCDEF0123456789ABCDE",
            b"0123456789ABCDEF0123456789ABCDEF0",
            b"0123456789ABCDEF0123456789ABCDE/",
            b"../3456789ABCDEF0123456789ABCDEF",
            b"0123456789ABCDEF0123456789ABCDEG",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encode_decode_round_trip_and_reject_damage() {
        let msg = Message::from_frames(vec![b"echo".to_vec(), vec![], vec![0u8; 300]]);
        let bytes = encode(&msg);
        assert_eq!(&bytes[..8], &4u64.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), msg);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&bytes[..5]).is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.push(1);
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn store_queue_and_close() {
        let dir = std::env::temp_dir().join(format!("titanic-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let (a, b) = (Uuid::generate(), Uuid::generate());
        store
            .save_request(&a, &Message::from_frames(["echo", "hi"]))
            .unwrap();
        store.enqueue(&a).unwrap();
        store.enqueue(&b).unwrap();
        let pending = store.pending().unwrap();
        assert_eq!(pending.len(), 2);
        store.mark_done(&pending[0]).unwrap();
        assert_eq!(store.pending().unwrap()[0].uuid, b);
        assert!(store.has_request(&a) && !store.has_reply(&a));
        store.save_reply(&a, &Message::from_frames(["hi"])).unwrap();
        assert_eq!(
            store.load_reply(&a).unwrap(),
            Some(Message::from_frames(["hi"]))
        );
        store.close(&a).unwrap();
        store.close(&a).unwrap();
        assert!(!store.has_request(&a) && store.load_reply(&a).unwrap().is_none());
        // A crash mid-append leaves a partial line: cut on open.
        let mut queue = OpenOptions::new()
            .append(true)
            .open(dir.join("queue"))
            .unwrap();
        queue.write_all(b"-0123").unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.pending().unwrap().len(), 1);
        // Leftover temporary files are not entries of anything.
        assert!(fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-")));
        let _ = fs::remove_dir_all(&dir);
    }
}
