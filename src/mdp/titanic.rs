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
//! we do not stop at the first empty frame). One file the C does not have:
//! `<UUID>.err`, empty, for a request that will never get a reply (see
//! [`Store::fail`]); `titanic.reply` then answers `500`.
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
//! * **Bounded disk use** ([`Limits`], defaults in [`LIMITS`]): at most 1000
//!   stored requests, 16 MiB of requests and 16 MiB of replies, 1 MiB per
//!   message, service names of at most 255 bytes. Past a bound a new request
//!   is refused ([`StoreError`]) and never stored; a reply that does not fit
//!   marks its request failed ([`Store::fail`]) instead of vanishing, so a
//!   request answered `200` is never silently lost. In all the store stays
//!   under about 34 MiB: 32 MiB of messages, a queue of at most 2064 lines
//!   of 34 bytes, and the one or two temporary files being written.
//! * **Expiry** ([`Store::expire`]): a request nobody closed is forgotten,
//!   with its reply, one hour after its last change (accepted, or answered);
//!   `titanic.reply` then says `400`, as for any unknown request.
//! * **Compaction**: the pending entries are kept in memory (the C re-read
//!   the whole queue file every second); once done lines are at least 64 and
//!   at least as many as the pending ones, the queue file is rewritten with
//!   the pending lines only (temporary file, fsync, rename), so it holds
//!   at most `2 × pending + 64` lines. Opening the store compacts it too.
//! * **Leftovers**: opening the store removes `*.tmp-*` files a crash left
//!   behind, replies and markers whose request is gone, and requests that
//!   never reached the queue (a crash before the client heard `200`).
//!
//! Every method takes `&self` and may be called from several threads (the
//! three TSP services and the dispatcher share one store): the queue file
//! and the usage counters are guarded by one mutex.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::Rng;

use crate::Message;

/// The store's directory, relative to the working directory (`TITANIC_DIR`).
pub const DIR: &str = ".titanic";

/// The bounds of a store; see the module docs for the policy past each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests stored at once (pending or answered, until closed/expired).
    pub max_requests: usize,
    /// Bytes of all stored requests together.
    pub max_request_bytes: u64,
    /// Bytes of all stored replies together.
    pub max_reply_bytes: u64,
    /// Bytes of one request or one reply (all frames).
    pub max_message_bytes: usize,
    /// Bytes of a service name.
    pub max_service_name: usize,
    /// How long a request and its reply are kept after their last change.
    pub expiry: Duration,
}

/// Titanic's bounds. A thousand requests is far more than the guide's
/// examples ever hold, and 16 + 16 MiB keeps a demo store small on any
/// disk; one hour is long past any TSP client's patience (`ticlient` asks
/// every 5 s).
pub const LIMITS: Limits = Limits {
    max_requests: 1000,
    max_request_bytes: 16 << 20,
    max_reply_bytes: 16 << 20,
    max_message_bytes: 1 << 20,
    max_service_name: 255,
    expiry: Duration::from_secs(3600),
};

/// Done queue lines tolerated before compaction (see the module docs).
const COMPACT_AFTER: usize = 64;

/// Why a request or reply was not stored.
#[derive(Debug)]
pub enum StoreError {
    /// A quota is reached (which one is said): try again later.
    Full(&'static str),
    /// The message is larger than [`Limits::max_message_bytes`].
    TooLarge(usize),
    /// The disk said no.
    Io(io::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Full(what) => write!(f, "store full ({what})"),
            StoreError::TooLarge(size) => write!(f, "message too large ({size} bytes)"),
            StoreError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> StoreError {
        StoreError::Io(e)
    }
}

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

/// True for services Titanic must never call on a client's behalf: its own
/// (`titanic.request` would store the request again, one frame shorter,
/// and call itself again, filling the disk) and the broker's `mmi.*`.
pub fn is_reserved_service(service: &[u8]) -> bool {
    service.starts_with(b"titanic.") || super::protocol::is_mmi(service)
}

/// A pending request: its id and the service it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub uuid: Uuid,
    pub service: Vec<u8>,
}

/// What the store holds, as counted by [`Store::usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: usize,
    pub request_bytes: u64,
    pub reply_bytes: u64,
    pub pending: usize,
}

/// The on-disk store. Cheap to clone; clones share the same state.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    limits: Limits,
    state: Arc<Mutex<State>>,
}

/// What the mutex guards: the queue file and the usage counters.
#[derive(Debug, Default)]
struct State {
    /// Pending entries in queue order, with the offset of their line.
    pending: Vec<(u64, Pending)>,
    /// Done (`+`) lines in the queue file.
    done_lines: usize,
    requests: usize,
    request_bytes: u64,
    reply_bytes: u64,
}

/// The kinds of file a request may have.
const EXTENSIONS: [&str; 3] = ["req", "rep", "err"];

impl Store {
    /// Opens (creating if needed) the store in `dir` with Titanic's
    /// [`LIMITS`]; see [`Store::open_with`].
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Store> {
        Store::open_with(dir, LIMITS)
    }

    /// Opens the store with the given bounds: removes what a crash left
    /// behind (see the module docs), counts what is stored, loads and
    /// compacts the queue, and forgets what has expired.
    pub fn open_with(dir: impl AsRef<Path>, limits: Limits) -> io::Result<Store> {
        let store = Store {
            dir: dir.as_ref().to_path_buf(),
            limits,
            state: Arc::default(),
        };
        fs::create_dir_all(&store.dir)?;
        store.remove_temporaries()?;
        let queued = store.read_queue()?;
        store.remove_orphans(&queued)?;
        {
            let mut state = store.lock();
            store.count_usage(&mut state)?;
            for uuid in queued {
                if let Some(service) = store.stored_service(&uuid) {
                    state.pending.push((0, Pending { uuid, service }));
                }
            }
            store.compact(&mut state)?;
        }
        store.expire(SystemTime::now())?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters that are at worst
        // a little off; keep serving rather than poisoning every thread.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, uuid: &Uuid, extension: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.{extension}"))
    }

    fn queue_path(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// The store's bounds.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What is stored now.
    pub fn usage(&self) -> Usage {
        let state = self.lock();
        Usage {
            requests: state.requests,
            request_bytes: state.request_bytes,
            reply_bytes: state.reply_bytes,
            pending: state.pending.len(),
        }
    }

    // .split accepting a request

    /// Stores a request `[service][body…]` under a fresh UUID and queues
    /// it, durably, before returning the UUID (the caller then answers
    /// `200`). Refused, with nothing stored, when it breaks a bound.
    pub fn store_request(&self, request: &Message) -> Result<Uuid, StoreError> {
        let service = request.first().unwrap_or_default().to_vec();
        let bytes = encode(request);
        let size = bytes.len() as u64;
        if bytes.len() > self.limits.max_message_bytes {
            return Err(StoreError::TooLarge(bytes.len()));
        }
        {
            let mut state = self.lock();
            if state.requests >= self.limits.max_requests {
                return Err(StoreError::Full("too many requests"));
            }
            if state.request_bytes + size > self.limits.max_request_bytes {
                return Err(StoreError::Full("too many request bytes"));
            }
            // Reserve before writing, so two writers cannot both fit.
            state.requests += 1;
            state.request_bytes += size;
        }
        let uuid = Uuid::generate();
        let written = write_atomically(&self.path(&uuid, "req"), &bytes);
        let mut state = self.lock();
        let queued = written.and_then(|()| self.append_line(&mut state, &uuid));
        match queued {
            Ok(offset) => {
                state.pending.push((
                    offset,
                    Pending {
                        uuid: uuid.clone(),
                        service,
                    },
                ));
                Ok(uuid)
            }
            Err(e) => {
                state.requests -= 1;
                state.request_bytes -= size;
                let _ = fs::remove_file(self.path(&uuid, "req"));
                Err(e.into())
            }
        }
    }

    /// Appends `-<UUID>` to the queue, durably; returns the line's offset.
    fn append_line(&self, _state: &mut State, uuid: &Uuid) -> io::Result<u64> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.queue_path())?;
        let offset = file.metadata()?.len();
        file.write_all(format!("-{uuid}\n").as_bytes())?;
        file.sync_data()?;
        Ok(offset)
    }

    // .split reading and closing

    /// The stored request `[service][body…]`, `Ok(None)` if there is none.
    pub fn load_request(&self, uuid: &Uuid) -> io::Result<Option<Message>> {
        load(&self.path(uuid, "req"))
    }

    /// The stored reply, `Ok(None)` if there is none (yet).
    pub fn load_reply(&self, uuid: &Uuid) -> io::Result<Option<Message>> {
        load(&self.path(uuid, "rep"))
    }

    pub fn has_request(&self, uuid: &Uuid) -> bool {
        self.path(uuid, "req").exists()
    }

    pub fn has_reply(&self, uuid: &Uuid) -> bool {
        self.path(uuid, "rep").exists()
    }

    /// True when the request was marked failed: it will get no reply.
    pub fn has_failed(&self, uuid: &Uuid) -> bool {
        self.path(uuid, "err").exists()
    }

    /// Deletes request, reply and marker (`titanic.close`); idempotent.
    pub fn close(&self, uuid: &Uuid) -> io::Result<()> {
        let mut state = self.lock();
        self.forget(&mut state, uuid)
    }

    /// Removes every file of `uuid`, keeps the counters right, and finishes
    /// its queue entry if it was pending.
    fn forget(&self, state: &mut State, uuid: &Uuid) -> io::Result<()> {
        for extension in EXTENSIONS {
            let path = self.path(uuid, extension);
            let size = match fs::metadata(&path) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match fs::remove_file(&path) {
                Ok(()) => match extension {
                    "req" => {
                        state.requests = state.requests.saturating_sub(1);
                        state.request_bytes = state.request_bytes.saturating_sub(size);
                    }
                    "rep" => state.reply_bytes = state.reply_bytes.saturating_sub(size),
                    _ => {}
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.finish(state, uuid)
    }

    // .split the dispatcher's side

    /// The pending requests, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        self.lock().pending.iter().map(|(_, p)| p.clone()).collect()
    }

    /// Stores the reply body for `uuid` and marks its queue entry done. A
    /// reply for a request closed meanwhile is dropped (`Ok`). A reply that
    /// breaks a bound is not stored: the caller should [`fail`](Store::fail)
    /// the request.
    pub fn save_reply(&self, uuid: &Uuid, reply: &Message) -> Result<(), StoreError> {
        let bytes = encode(reply);
        let size = bytes.len() as u64;
        if bytes.len() > self.limits.max_message_bytes {
            return Err(StoreError::TooLarge(bytes.len()));
        }
        {
            let mut state = self.lock();
            if state.reply_bytes + size > self.limits.max_reply_bytes {
                return Err(StoreError::Full("too many reply bytes"));
            }
            state.reply_bytes += size;
        }
        // Written outside the lock (fsync is slow), published under it, so
        // a close in between cannot leave a reply without its request.
        let path = self.path(uuid, "rep");
        let tmp = match write_temporary(&path, &bytes) {
            Ok(tmp) => tmp,
            Err(e) => {
                self.lock().reply_bytes -= size;
                return Err(e.into());
            }
        };
        let mut state = self.lock();
        if self.has_request(uuid) && !path.exists() {
            if let Err(e) = publish(&tmp, &path) {
                state.reply_bytes -= size;
                return Err(e.into());
            }
        } else {
            let _ = fs::remove_file(&tmp);
            state.reply_bytes -= size;
        }
        Ok(self.finish(&mut state, uuid)?)
    }

    /// Marks a request that will never get a reply (unreadable, refused
    /// service, reply too large or over quota): `titanic.reply` answers
    /// `500` for it until it is closed or expires. Finishes its entry.
    pub fn fail(&self, uuid: &Uuid) -> io::Result<()> {
        let mut state = self.lock();
        if self.has_request(uuid) {
            write_atomically(&self.path(uuid, "err"), b"")?;
        }
        self.finish(&mut state, uuid)
    }

    /// Marks `uuid`'s queue entry done (its `-` becomes `+`), if pending,
    /// e.g. when its request is gone. Compacts the queue when due.
    pub fn mark_done(&self, uuid: &Uuid) -> io::Result<()> {
        let mut state = self.lock();
        self.finish(&mut state, uuid)
    }

    fn finish(&self, state: &mut State, uuid: &Uuid) -> io::Result<()> {
        let Some(index) = state.pending.iter().position(|(_, p)| p.uuid == *uuid) else {
            return Ok(());
        };
        let (offset, _) = state.pending.remove(index);
        let file = OpenOptions::new().write(true).open(self.queue_path())?;
        file.write_all_at(b"+", offset)?;
        state.done_lines += 1;
        if state.done_lines >= COMPACT_AFTER && state.done_lines >= state.pending.len() {
            self.compact(state)?;
        }
        Ok(())
    }

    /// Rewrites the queue with the pending lines only: temporary file,
    /// fsync, rename. A crash leaves the old queue or the new one.
    fn compact(&self, state: &mut State) -> io::Result<()> {
        let mut text = Vec::with_capacity(state.pending.len() * 34);
        for (offset, pending) in &mut state.pending {
            *offset = text.len() as u64;
            text.extend_from_slice(format!("-{}\n", pending.uuid).as_bytes());
        }
        write_atomically(&self.queue_path(), &text)?;
        state.done_lines = 0;
        Ok(())
    }

    // .split expiry

    /// Forgets every request whose files were all last changed more than
    /// [`Limits::expiry`] before `now`, and any reply or marker whose
    /// request is gone. Returns how many requests were forgotten.
    pub fn expire(&self, now: SystemTime) -> io::Result<usize> {
        let mut newest: HashMap<Uuid, SystemTime> = HashMap::new();
        for (uuid, _, path) in self.files()? {
            let Ok(changed) = fs::metadata(&path).and_then(|m| m.modified()) else {
                continue;
            };
            let entry = newest.entry(uuid).or_insert(changed);
            *entry = (*entry).max(changed);
        }
        let mut expired = 0;
        for (uuid, changed) in newest {
            let age = now.duration_since(changed).unwrap_or_default();
            if age > self.limits.expiry {
                let mut state = self.lock();
                if self.has_request(&uuid) {
                    expired += 1;
                }
                self.forget(&mut state, &uuid)?;
            }
        }
        if expired > 0 {
            log::warn!("titanic: {expired} request(s) expired unclosed, forgotten");
        }
        Ok(expired)
    }

    // .split opening: leftovers, counters, queue

    /// `(uuid, extension, path)` of every request file in the store.
    fn files(&self) -> io::Result<Vec<(Uuid, &'static str, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((stem, extension)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            let (Some(uuid), Some(extension)) = (
                Uuid::parse(stem.as_bytes()),
                EXTENSIONS.iter().find(|e| **e == extension),
            ) else {
                continue;
            };
            files.push((uuid, *extension, entry.path()));
        }
        Ok(files)
    }

    /// Removes `*.tmp-*` files: writes a crash interrupted.
    fn remove_temporaries(&self) -> io::Result<()> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().contains(".tmp-") {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if removed > 0 {
            log::warn!("titanic: removed {removed} temporary file(s) left by a crash");
        }
        Ok(())
    }

    /// Removes replies and markers without a request (a crash during
    /// close), and requests that are neither queued nor finished (a crash
    /// before the queue line was written: nobody was told `200`).
    fn remove_orphans(&self, queued: &[Uuid]) -> io::Result<()> {
        let files = self.files()?;
        let has = |uuid: &Uuid, extension: &str| {
            files.iter().any(|(u, e, _)| u == uuid && *e == extension)
        };
        let queued: HashSet<&Uuid> = queued.iter().collect();
        for (uuid, extension, path) in &files {
            let orphan = match *extension {
                "req" => !queued.contains(uuid) && !has(uuid, "rep") && !has(uuid, "err"),
                _ => !has(uuid, "req"),
            };
            if orphan {
                log::warn!("titanic: removing leftover {}", path.display());
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// Counts the stored requests and their bytes.
    fn count_usage(&self, state: &mut State) -> io::Result<()> {
        for (_, extension, path) in self.files()? {
            let size = fs::metadata(&path)?.len();
            match extension {
                "req" => {
                    state.requests += 1;
                    state.request_bytes += size;
                }
                "rep" => state.reply_bytes += size,
                _ => {}
            }
        }
        Ok(())
    }

    /// The pending UUIDs in the queue file, oldest first, after cutting off
    /// a partial last line a crash may have left. Lines that are not a
    /// valid entry are skipped (CRLF is tolerated, like the C).
    fn read_queue(&self) -> io::Result<Vec<Uuid>> {
        let path = self.queue_path();
        let mut text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
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
            text.truncate(keep);
        }
        Ok(parse_queue(&text))
    }

    /// The service of a stored request, `None` if it is gone or unreadable
    /// (the dispatcher then has nothing to do for it).
    fn stored_service(&self, uuid: &Uuid) -> Option<Vec<u8>> {
        if self.has_reply(uuid) || self.has_failed(uuid) {
            return None; // answered before a crash, not yet marked
        }
        match self.load_request(uuid) {
            Ok(Some(request)) => Some(request.first().unwrap_or_default().to_vec()),
            Ok(None) => None,
            Err(e) => {
                log::error!("titanic: request {uuid} is unreadable: {e}");
                let _ = write_atomically(&self.path(uuid, "err"), b"");
                None
            }
        }
    }
}

/// The `-` entries of a queue file's text, in order.
fn parse_queue(text: &[u8]) -> Vec<Uuid> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match line.split_first() {
                Some((b'-', uuid)) => Uuid::parse(uuid),
                _ => None,
            }
        })
        .collect()
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
    let tmp = write_temporary(path, bytes)?;
    publish(&tmp, path)
}

/// The first half of [`write_atomically`]: the bytes, durable, under a
/// temporary name next to `path`, which is returned.
fn write_temporary(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{:08x}", rand::thread_rng().gen::<u32>()));
    let tmp = PathBuf::from(tmp_name);
    let result = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The second half: rename the temporary file over `path`, fsync the
/// directory so the rename itself survives a crash.
fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    let result = fs::rename(tmp, path).and_then(|()| match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("titanic-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn store_errors_say_what_went_wrong() {
        // These lines reach the log ("reply … not stored (…)").
        assert_eq!(
            StoreError::Full("too many requests").to_string(),
            "store full (too many requests)"
        );
        assert_eq!(
            StoreError::TooLarge(2_000_000).to_string(),
            "message too large (2000000 bytes)"
        );
        let io = io::Error::other("disk on fire");
        assert_eq!(StoreError::from(io).to_string(), "disk on fire");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn uuid_accepts_32_hex_digits_only() {
        let id = Uuid::generate();
        assert_eq!(id.as_str().len(), 32);
        assert!(id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        assert_ne!(id, Uuid::generate());
        assert_eq!(Uuid::parse(id.as_str().as_bytes()), Some(id.clone()));
        let lower = id.as_str().to_ascii_lowercase();
        assert_eq!(Uuid::parse(lower.as_bytes()), Some(id.clone()));
        assert_eq!(id.to_string(), id.as_str());
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
    fn reserved_services_are_titanic_and_mmi() {
        for name in [
            &b"titanic.request"[..],
            b"titanic.reply",
            b"titanic.x",
            b"mmi.service",
        ] {
            assert!(is_reserved_service(name), "{name:?}");
        }
        for name in [&b"echo"[..], b"titanic", b"mmi", b"xtitanic.request", b""] {
            assert!(!is_reserved_service(name), "{name:?}");
        }
    }

    #[test]
    fn encode_decode_round_trip_and_reject_damage() {
        let msg = Message::from_frames(vec![b"echo".to_vec(), vec![], vec![0u8; 300]]);
        let bytes = encode(&msg);
        assert_eq!(bytes.len(), 3 * 8 + 4 + 300);
        assert_eq!(&bytes[..8], &4u64.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), msg);
        assert_eq!(decode(&[]).unwrap(), Message::new());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&bytes[..5]).is_err());
        // A length exactly one past the end is damage; exactly the end is not.
        let mut exact = 3u64.to_le_bytes().to_vec();
        exact.extend_from_slice(b"abc");
        assert_eq!(decode(&exact).unwrap(), Message::from_frames(["abc"]));
        exact[0] = 4;
        assert!(decode(&exact).is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.push(1);
        assert!(decode(&huge).is_err());
    }

    #[test]
    fn queue_parsing_keeps_pending_lines_only() {
        let a = Uuid::generate();
        let b = Uuid::generate();
        let text = format!("-{a}\r\n+{b}\n-short\nrubbish\n\n-{b}\n");
        assert_eq!(parse_queue(text.as_bytes()), vec![a, b]);
    }

    #[test]
    fn store_queue_reply_and_close() {
        let dir = fresh_dir("queue");
        let store = Store::open(&dir).unwrap();
        let a = store
            .store_request(&Message::from_frames(["echo", "hi"]))
            .unwrap();
        let b = store
            .store_request(&Message::from_frames(["other", "x"]))
            .unwrap();
        let pending = store.pending();
        assert_eq!(pending.len(), 2);
        assert_eq!(
            pending[0],
            Pending {
                uuid: a.clone(),
                service: b"echo".to_vec()
            }
        );
        assert_eq!(pending[1].uuid, b);
        let queue = fs::read_to_string(dir.join("queue")).unwrap();
        assert_eq!(queue, format!("-{a}\n-{b}\n"));
        assert_eq!(store.usage().requests, 2);

        store.save_reply(&a, &Message::from_frames(["hi"])).unwrap();
        assert_eq!(store.pending().len(), 1);
        assert_eq!(store.pending()[0].uuid, b);
        let queue = fs::read_to_string(dir.join("queue")).unwrap();
        assert_eq!(queue, format!("+{a}\n-{b}\n"));
        assert_eq!(
            store.load_reply(&a).unwrap(),
            Some(Message::from_frames(["hi"]))
        );
        assert_eq!(store.usage().reply_bytes, 8 + 2);
        store.close(&a).unwrap();
        store.close(&a).unwrap();
        assert!(!store.has_request(&a) && store.load_reply(&a).unwrap().is_none());
        assert_eq!(store.usage().requests, 1);
        assert_eq!(store.usage().reply_bytes, 0);

        // A reply for a request closed meanwhile is not kept.
        store.close(&b).unwrap();
        assert!(store.pending().is_empty());
        store
            .save_reply(&b, &Message::from_frames(["late"]))
            .unwrap();
        assert!(!store.has_reply(&b));
        assert_eq!(store.usage(), Usage::default());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopening_repairs_and_cleans_up() {
        let dir = fresh_dir("reopen");
        let store = Store::open(&dir).unwrap();
        let a = store
            .store_request(&Message::from_frames(["echo", "a"]))
            .unwrap();
        let answered = store
            .store_request(&Message::from_frames(["echo", "b"]))
            .unwrap();
        store
            .save_reply(&answered, &Message::from_frames(["b"]))
            .unwrap();
        drop(store);
        // What crashes leave: a partial queue line, temporary files, a
        // reply without request, a request that never reached the queue.
        let mut queue = OpenOptions::new()
            .append(true)
            .open(dir.join("queue"))
            .unwrap();
        queue.write_all(b"-0123").unwrap();
        fs::write(dir.join(format!("{a}.rep.tmp-0badf00d")), b"half").unwrap();
        fs::write(dir.join("queue.tmp-12345678"), b"-").unwrap();
        let lost = Uuid::generate();
        fs::write(
            dir.join(format!("{lost}.rep")),
            encode(&Message::from_frames(["x"])),
        )
        .unwrap();
        let unqueued = Uuid::generate();
        fs::write(
            dir.join(format!("{unqueued}.req")),
            encode(&Message::from_frames(["e", "x"])),
        )
        .unwrap();
        fs::write(dir.join("README"), b"not ours").unwrap();

        let store = Store::open(&dir).unwrap();
        assert_eq!(store.pending().len(), 1);
        assert_eq!(store.pending()[0].uuid, a);
        let mut expected = vec![
            format!("{a}.req"),
            format!("{answered}.rep"),
            format!("{answered}.req"),
            "README".to_string(),
            "queue".to_string(),
        ];
        expected.sort();
        assert_eq!(names(&dir), expected);
        // Compacted on open: the done line and the partial one are gone.
        assert_eq!(
            fs::read_to_string(dir.join("queue")).unwrap(),
            format!("-{a}\n")
        );
        let usage = store.usage();
        assert_eq!(usage.requests, 2);
        assert_eq!(usage.request_bytes, 2 * (8 + 4 + 8 + 1));
        assert_eq!(usage.reply_bytes, 8 + 1);
        assert_eq!(usage.pending, 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn quotas_refuse_new_requests_and_fail_big_replies() {
        let dir = fresh_dir("quota");
        let limits = Limits {
            max_requests: 3,
            max_request_bytes: 100,
            max_reply_bytes: 40,
            max_message_bytes: 50,
            ..LIMITS
        };
        let store = Store::open_with(&dir, limits).unwrap();
        // 2 frames: 16 + 4 + 20 = 40 bytes each.
        let request = Message::from_frames(["echo", "12345678901234567890"]);
        let a = store.store_request(&request).unwrap();
        let b = store.store_request(&request).unwrap();
        assert!(matches!(
            store.store_request(&request),
            Err(StoreError::Full(_))
        ));
        assert_eq!(store.usage().request_bytes, 80);
        // 20 bytes fit exactly.
        let small = Message::from_frames(["e", "123"]);
        let c = store.store_request(&small).unwrap();
        assert_eq!(store.usage().request_bytes, 100);
        assert!(matches!(
            store.store_request(&small),
            Err(StoreError::Full(_))
        ));
        store.close(&c).unwrap();
        let big = Message::from_frames([vec![b'x'; 43]]);
        assert!(matches!(
            store.store_request(&big),
            Err(StoreError::TooLarge(51))
        ));
        assert_eq!(store.usage().requests, 2);
        assert_eq!(names(&dir).len(), 3, "nothing stored for refusals");

        // Replies: 40 bytes in all; one of 24 fits, the next does not.
        let reply = Message::from_frames(["0123456789abcdef"]);
        store.save_reply(&a, &reply).unwrap();
        assert!(matches!(
            store.save_reply(&b, &reply),
            Err(StoreError::Full(_))
        ));
        assert!(!store.has_reply(&b));
        store.fail(&b).unwrap();
        assert!(store.has_failed(&b) && store.pending().is_empty());
        assert!(matches!(
            store.save_reply(&b, &Message::from_frames([vec![0; 60]])),
            Err(StoreError::TooLarge(68))
        ));
        store.close(&b).unwrap();
        assert!(!store.has_failed(&b));
        assert_eq!(store.usage().requests, 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_the_queue_short_and_the_offsets_right() {
        let dir = fresh_dir("compact");
        let store = Store::open(&dir).unwrap();
        let request = Message::from_frames(["echo", "x"]);
        let keep = store.store_request(&request).unwrap();
        // Not rewritten for every done line: compaction is amortised.
        let first = store.store_request(&request).unwrap();
        store.mark_done(&first).unwrap();
        let queue = fs::read_to_string(dir.join("queue")).unwrap();
        assert_eq!(queue, format!("-{keep}\n+{first}\n"));
        let mut max_lines = 0;
        for _ in 0..300 {
            let uuid = store.store_request(&request).unwrap();
            store.mark_done(&uuid).unwrap();
            store.close(&uuid).unwrap();
            let lines = fs::read_to_string(dir.join("queue"))
                .unwrap()
                .lines()
                .count();
            max_lines = max_lines.max(lines);
        }
        assert!(max_lines <= COMPACT_AFTER + 1, "{max_lines} lines");
        // The survivor's line moved; marking it done still hits it.
        let queue = fs::read_to_string(dir.join("queue")).unwrap();
        assert!(queue.starts_with(&format!("-{keep}\n")), "{queue}");
        store.mark_done(&keep).unwrap();
        let queue = fs::read_to_string(dir.join("queue")).unwrap();
        assert!(queue.contains(&format!("+{keep}\n")), "{queue}");
        assert!(!queue.contains('-'), "{queue}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn expiry_forgets_old_requests_only() {
        use crate::log_limit::captured;
        captured::install();
        let expired_lines = || captured::lines_with("expired unclosed");
        let dir = fresh_dir("expiry");
        let store = Store::open(&dir).unwrap();
        let old = store
            .store_request(&Message::from_frames(["echo", "old"]))
            .unwrap();
        let young = store
            .store_request(&Message::from_frames(["echo", "young"]))
            .unwrap();
        store
            .save_reply(&old, &Message::from_frames(["r"]))
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(store.expire(now).unwrap(), 0);
        assert!(expired_lines().is_empty(), "{:?}", expired_lines());
        // Age the old request's files past the expiry.
        let past = now - LIMITS.expiry - Duration::from_secs(5);
        for extension in ["req", "rep"] {
            let file = File::options()
                .write(true)
                .open(dir.join(format!("{old}.{extension}")))
                .unwrap();
            file.set_modified(past).unwrap();
        }
        assert_eq!(store.expire(now).unwrap(), 1);
        assert_eq!(
            expired_lines(),
            ["titanic: 1 request(s) expired unclosed, forgotten"]
        );
        assert!(!store.has_request(&old) && !store.has_reply(&old));
        assert!(store.has_request(&young));
        assert_eq!(store.pending().len(), 1);
        assert_eq!(store.usage().requests, 1);
        assert_eq!(store.usage().reply_bytes, 0);
        // Just inside the expiry is kept.
        let file = File::options()
            .write(true)
            .open(dir.join(format!("{young}.req")))
            .unwrap();
        file.set_modified(now - LIMITS.expiry + Duration::from_secs(5))
            .unwrap();
        assert_eq!(store.expire(now).unwrap(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bounds_are_inclusive() {
        // The count alone.
        let dir = fresh_dir("bounds-count");
        let store = Store::open_with(
            &dir,
            Limits {
                max_requests: 2,
                ..LIMITS
            },
        )
        .unwrap();
        let tiny = Message::from_frames(["e", "x"]);
        store.store_request(&tiny).unwrap();
        store.store_request(&tiny).unwrap();
        assert!(matches!(
            store.store_request(&tiny),
            Err(StoreError::Full(_))
        ));
        let _ = fs::remove_dir_all(&dir);
        // The sizes: every bound may be reached exactly, never passed.
        let dir = fresh_dir("bounds-bytes");
        let limits = Limits {
            max_request_bytes: 100,
            max_reply_bytes: 66,
            max_message_bytes: 50,
            ..LIMITS
        };
        let store = Store::open_with(&dir, limits).unwrap();
        let fifty = Message::from_frames([vec![b'x'; 42]]);
        let a = store.store_request(&fifty).unwrap();
        let b = store.store_request(&fifty).unwrap();
        assert_eq!(store.usage().request_bytes, 100);
        assert!(matches!(
            store.store_request(&Message::from_frames(["e"])),
            Err(StoreError::Full(_))
        ));
        store.save_reply(&a, &fifty).unwrap();
        store
            .save_reply(&b, &Message::from_frames(["01234567"]))
            .unwrap();
        assert_eq!(store.usage().reply_bytes, 66);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stored_request_loads_back_as_it_was() {
        let dir = fresh_dir("load-back");
        let store = Store::open(&dir).unwrap();
        let request = Message::from_frames(["echo", "hello", "", "world"]);
        let uuid = store.store_request(&request).unwrap();
        assert_eq!(store.load_request(&uuid).unwrap(), Some(request));
        assert_eq!(store.load_reply(&uuid).unwrap(), None);
        // What cannot be read is an error, not "no reply yet".
        std::os::unix::fs::symlink(format!("{uuid}.rep"), store.path(&uuid, "rep")).unwrap();
        assert!(store.load_reply(&uuid).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_request_answered_just_before_a_crash_is_not_pending_again() {
        let dir = fresh_dir("answered-crash");
        let uuid = {
            let store = Store::open(&dir).unwrap();
            let uuid = store
                .store_request(&Message::from_frames(["echo", "x"]))
                .unwrap();
            // The reply reached the disk, the queue's `+` did not.
            let reply = encode(&Message::from_frames(["y"]));
            write_atomically(&store.path(&uuid, "rep"), &reply).unwrap();
            uuid
        };
        let store = Store::open(&dir).unwrap();
        assert!(store.pending().is_empty(), "{:?}", store.pending());
        assert!(store.has_reply(&uuid));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn close_reports_what_it_could_not_remove() {
        let dir = fresh_dir("close-errors");
        let store = Store::open(&dir).unwrap();
        let uuid = store
            .store_request(&Message::from_frames(["echo", "x"]))
            .unwrap();
        // A directory where the reply would be: it cannot be removed.
        fs::create_dir(store.path(&uuid, "rep")).unwrap();
        assert!(store.close(&uuid).is_err());
        fs::remove_dir(store.path(&uuid, "rep")).unwrap();
        // A link to itself where the marker would be: it cannot be read.
        std::os::unix::fs::symlink(format!("{uuid}.err"), store.path(&uuid, "err")).unwrap();
        assert!(store.close(&uuid).is_err());
        fs::remove_file(store.path(&uuid, "err")).unwrap();
        store.close(&uuid).unwrap();
        assert_eq!(store.usage(), Usage::default());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reply_that_cannot_be_written_counts_nothing() {
        let dir = fresh_dir("reply-write");
        let store = Store::open(&dir).unwrap();
        let uuid = store
            .store_request(&Message::from_frames(["echo", "x"]))
            .unwrap();
        // The store's directory replaced by a file: no file can be made.
        let aside = dir.with_extension("aside");
        fs::rename(&dir, &aside).unwrap();
        fs::write(&dir, b"").unwrap();
        let reply = Message::from_frames(["answer"]);
        assert!(matches!(
            store.save_reply(&uuid, &reply),
            Err(StoreError::Io(_))
        ));
        assert_eq!(store.usage().reply_bytes, 0);
        fs::remove_file(&dir).unwrap();
        fs::rename(&aside, &dir).unwrap();
        store.save_reply(&uuid, &reply).unwrap();
        assert_eq!(store.usage().reply_bytes, encode(&reply).len() as u64);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn opening_cuts_a_partial_queue_line_and_removes_temporaries() {
        use crate::log_limit::captured;
        captured::install();
        let dir = fresh_dir("crash-leftovers");
        let uuid = {
            let store = Store::open(&dir).unwrap();
            store
                .store_request(&Message::from_frames(["echo", "x"]))
                .unwrap()
        };
        // A crash mid-append, and two writes a crash interrupted.
        let mut queue = OpenOptions::new()
            .append(true)
            .open(dir.join("queue"))
            .unwrap();
        queue.write_all(b"-0123456789").unwrap();
        fs::write(dir.join(format!("{uuid}.rep.tmp-00000001")), b"half").unwrap();
        fs::write(dir.join("0123.req.tmp-00000002"), b"half").unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("queue")).unwrap(),
            format!("-{uuid}\n")
        );
        assert_eq!(store.pending().len(), 1);
        assert_eq!(store.pending()[0].service, b"echo");
        assert_eq!(
            names(&dir),
            vec![format!("{uuid}.req"), "queue".to_string()]
        );
        let cut = || captured::lines_with("cutting a partial line").len();
        let removed = || captured::lines_with("temporary file(s) left by a crash");
        assert_eq!(cut(), 1);
        assert_eq!(
            removed(),
            ["titanic: removed 2 temporary file(s) left by a crash"]
        );
        // Opening a clean store again says nothing.
        drop(store);
        Store::open(&dir).unwrap();
        assert_eq!((cut(), removed().len()), (1, 1));
        // What cannot be removed or read is an error, not an empty store.
        fs::create_dir(dir.join("x.tmp-00000003")).unwrap();
        assert!(Store::open(&dir).is_err());
        fs::remove_dir(dir.join("x.tmp-00000003")).unwrap();
        fs::rename(dir.join("queue"), dir.join("queue-aside")).unwrap();
        fs::create_dir(dir.join("queue")).unwrap();
        assert!(Store::open(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_stores_and_counts_nothing() {
        let dir = fresh_dir("failed-write");
        let store = Store::open(&dir).unwrap();
        // A directory where the queue file should be: the append fails.
        fs::remove_file(dir.join("queue")).unwrap();
        fs::create_dir(dir.join("queue")).unwrap();
        let request = Message::from_frames(["echo", "x"]);
        assert!(matches!(
            store.store_request(&request),
            Err(StoreError::Io(_))
        ));
        assert_eq!(store.usage(), Usage::default());
        assert_eq!(names(&dir), vec!["queue".to_string()]);
        fs::remove_dir(dir.join("queue")).unwrap();
        store.store_request(&request).unwrap();
        assert_eq!(store.usage().requests, 1);
        assert_eq!(store.usage().request_bytes, 8 + 4 + 8 + 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
