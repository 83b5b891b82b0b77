//! The SFT/1 client behind `fileclient` (`zguide/file-transfer-protocol.md`):
//! lists a server's files and fetches files and whole trees, resumably.
//!
//! * [`Client::list`]: LIST, the regular files under a prefix.
//! * [`Client::get`]: LIST the name; one entry with that very name is a file,
//!   anything else a directory whose files are fetched one after the other
//!   into the destination directory, each under its name relative to the one
//!   asked for (names from the server pass the same check as the server's, so
//!   a hostile listing cannot write outside the destination).
//! * [`Client::fetch_file`]: STAT (size and BLAKE3 of the whole file), then
//!   **credit-based flow**: [`ClientOptions::window`] FETCHes of
//!   [`ClientOptions::chunk_size`] bytes in flight; each chunk that arrives is
//!   decoded (zstd if the server compressed it, into a buffer no larger than
//!   the chunk asked for), its hash checked, and a new FETCH sent. A chunk
//!   whose hash (or length, or encoding) is wrong is **never written**: it is
//!   fetched again, at most [`ClientOptions::chunk_retries`] times (then
//!   [`Failure::Integrity`]). Verified chunks are written in order through a
//!   reorder buffer of at most `window` chunks to `DEST.part` (all-zero
//!   chunks are skipped, so a sparse source stays sparse).
//!
//! **Resume.** Beside `DEST.part` the client keeps `DEST.part.state` (JSON:
//! source name, size, whole-file hash, verified offset). Every
//! [`ClientOptions::sync_every`] bytes it fsyncs the `.part`, then replaces the
//! state file (written to a temporary name, fsynced, renamed, directory
//! fsynced), so the state never claims more than the disk holds. A client
//! started again for the same source (same name, size and hash) truncates
//! `.part` to the verified offset, hashes that prefix again (the whole-file
//! hash goes on from there) and continues; otherwise it starts over. After the
//! last chunk it checks the whole-file hash: equal, it fsyncs and renames
//! `.part` to `DEST` (so a partial file never has the final name) and removes
//! the state; different, it removes both and fails with
//! [`Failure::Integrity`]. A destination that already holds the same bytes
//! (size and hash) is left alone: a tree fetched again after a kill only
//! fetches what is missing.
//!
//! **Silence.** After [`ClientOptions::timeout`] without a word from the
//! server, the client closes its socket (LINGER 0, so requests queued for a
//! dead server do not pile up), opens a new one and sends every outstanding
//! request again; after [`ClientOptions::retries`] silent timeouts in a row
//! it gives up ([`Failure::NoAnswer`]). A server that was restarted is
//! therefore simply reconnected, and the transfer continues from the last
//! verified chunk. Replies that match nothing outstanding (a late answer to a
//! request sent again) are dropped and counted. A 429 (busy) answer is asked
//! again a tenth of the timeout later; a STAT answered 202 (the server is
//! hashing a large file) every quarter timeout, at most every second. Time
//! spent waiting for [`ClientOptions::limit_rate`] (a token bucket of one
//! chunk: no burst after a stall) with nothing outstanding is not silence.
//!
//! **CURVE.** With [`ClientOptions::curve`] the socket is a CURVE client; a
//! server whose ZAP handler refuses our key is reported at once as
//! [`Failure::Refused`] (the socket's monitor sees the handshake fail with
//! the ZAP status), not as a timeout.
//!
//! Bounds: the client holds at most `window` chunks (each at most 4 MiB,
//! [`protocol::MAX_CHUNK`]) plus one being decoded; frames are at most
//! [`protocol::CLIENT_MAX_FRAME`] (`MAXMSGSIZE`); every wait is bounded by
//! the timeout and ends on Ctrl-C ([`Failure::Interrupted`], after saving the
//! state); malformed replies are dropped, counted and logged, escaped, at most
//! 10 lines per 10 s.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::{self, ChunkBody, Encoding, Entry, Parsed, Reply, Request, Status, HASH_LEN};
use super::tree::{self, FileHash};
use crate::curve::Keys;
use crate::log_limit::Window;
use crate::message::show;
use crate::{interrupt, Error};

/// Where `fileclient` connects by default.
pub const DEFAULT_CONNECT: &str = "tcp://localhost:6000";
/// The largest window.
pub const MAX_WINDOW: usize = 64;

/// How a [`Client`] transfers.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's endpoint.
    pub endpoint: String,
    /// FETCHes in flight (1 to [`MAX_WINDOW`]).
    pub window: usize,
    /// Bytes per FETCH (1 to [`protocol::MAX_CHUNK`]).
    pub chunk_size: u32,
    /// Accept zstd-compressed chunks.
    pub compress: bool,
    /// Silence after which outstanding requests are sent again.
    pub timeout: Duration,
    /// Silent timeouts in a row before giving up.
    pub retries: u32,
    /// Bad copies of one chunk before giving up.
    pub chunk_retries: u32,
    /// Verified bytes between fsyncs of the `.part` and its state.
    pub sync_every: u64,
    /// At most this many bytes a second asked for (`None`: no limit).
    pub limit_rate: Option<u64>,
    /// CURVE: our keys (with the secret) and the server's public key.
    pub curve: Option<(Keys, [u8; 32])>,
    /// How progress is shown.
    pub progress: Progress,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            endpoint: DEFAULT_CONNECT.to_string(),
            window: 32,
            chunk_size: 1 << 20,
            compress: true,
            timeout: Duration::from_secs(2),
            retries: 5,
            chunk_retries: 5,
            sync_every: 8 << 20,
            limit_rate: None,
            curve: None,
            progress: Progress::Auto(Duration::from_secs(1)),
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar (bytes, rate, ETA) if stdout is a terminal, else a plain
    /// `I: progress …` line every so often.
    Auto(Duration),
    /// Plain lines every so often.
    Lines(Duration),
    /// Nothing.
    Quiet,
}

/// Why a transfer failed; each has its exit code ([`Failure::exit_code`]).
#[derive(Debug)]
pub enum Failure {
    /// The server refused (403, 404, 413 …, or our CURVE key): exit 1.
    Refused {
        what: String,
        status: Status,
        reason: String,
    },
    /// No answer after every retry: exit 2.
    NoAnswer(String),
    /// A chunk kept arriving corrupt, or the whole file's hash is wrong: exit 3.
    Integrity(String),
    /// Cannot write the destination, or bad settings: exit 4.
    Local(String),
    /// Ctrl-C/SIGTERM (the state was saved first): exit 130.
    Interrupted,
}

impl Failure {
    /// The process exit code that says what happened.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { .. } => 1,
            Failure::NoAnswer(_) => 2,
            Failure::Integrity(_) => 3,
            Failure::Local(_) => 4,
            Failure::Interrupted => 130,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused {
                what,
                status,
                reason,
            } => write!(
                f,
                "the server refused {what}: {} ({reason})",
                status.describe()
            ),
            Failure::NoAnswer(what) => write!(f, "no answer from the server: {what}"),
            Failure::Integrity(what) => write!(f, "integrity failure: {what}"),
            Failure::Local(what) => f.write_str(what),
            Failure::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl From<zmq::Error> for Failure {
    fn from(e: zmq::Error) -> Failure {
        Failure::from(Error::from(e))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::Interrupted => Failure::Interrupted,
            other => Failure::Local(other.to_string()),
        }
    }
}

fn local(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::Local(format!("cannot {what} {}: {e}", path.display()))
}

/// What a client received, over all its transfers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Data bytes received in CHUNKs (decoded), duplicates and bad ones
    /// included.
    pub bytes: u64,
    /// Data bytes on the wire (compressed where the server compressed).
    pub wire_bytes: u64,
    /// CHUNK 200 replies received.
    pub chunks: u64,
    /// Chunks fetched again because they arrived corrupt.
    pub refetched: u64,
    /// Replies that matched nothing outstanding.
    pub duplicates: u64,
    /// Malformed replies dropped.
    pub malformed: u64,
    /// Files completed (fetched, or found up to date).
    pub files: u64,
    /// Times the client reconnected after silence.
    pub reconnects: u64,
}

/// The resume state beside a `.part` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    name: String,
    size: u64,
    hash: String,
    verified: u64,
}

/// A request in flight.
struct Outstanding {
    length: u32,
    /// Bad copies received so far.
    bad: u32,
}

/// An SFT/1 client. See the module docs.
pub struct Client {
    context: zmq::Context,
    socket: zmq::Socket,
    /// CURVE: the monitor PAIR that reports a refused handshake.
    monitor: Option<zmq::Socket>,
    monitor_endpoint: String,
    sockets_made: u64,
    options: ClientOptions,
    decompressor: zstd::bulk::Decompressor<'static>,
    totals: Totals,
    complaints: Window,
    bar: Option<indicatif::ProgressBar>,
}

impl Client {
    /// A client in a context of its own; checks the options.
    pub fn new(options: ClientOptions) -> Result<Client, Failure> {
        if options.window == 0 || options.window > MAX_WINDOW {
            return Err(Failure::Local(format!(
                "the window is 1 to {MAX_WINDOW} requests"
            )));
        }
        // A power of two from 1 KiB: every chunk is then a subtree of the
        // file's BLAKE3 tree (SFT/1's chunk hashes need it).
        if !options.chunk_size.is_power_of_two()
            || u64::from(options.chunk_size) < tree::SUBTREE_UNIT
            || options.chunk_size > protocol::MAX_CHUNK
        {
            return Err(Failure::Local(format!(
                "the chunk size is a power of two from 1K to {} bytes",
                protocol::MAX_CHUNK
            )));
        }
        let context = zmq::Context::new();
        let (socket, monitor, monitor_endpoint) = open(&context, &options, 0)?;
        Ok(Client {
            context,
            socket,
            monitor,
            monitor_endpoint,
            sockets_made: 1,
            options,
            decompressor: zstd::bulk::Decompressor::new()
                .map_err(|e| Failure::Local(format!("zstd: {e}")))?,
            totals: Totals::default(),
            complaints: Window::new(10, Duration::from_secs(10)),
            bar: None,
        })
    }

    /// What the client received so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The regular files under `prefix` ("" for all), sorted by name.
    pub fn list(&mut self, prefix: &str) -> Result<Vec<Entry>, Failure> {
        let request = Request::List {
            prefix: prefix.to_string(),
        };
        let reply = self.ask(
            &request,
            |reply| matches!(reply, Reply::ListOk { prefix: p, .. } if p == prefix),
        )?;
        match reply {
            Reply::ListOk { result, .. } => result.map_err(|(status, reason)| Failure::Refused {
                what: if prefix.is_empty() {
                    "the listing".to_string()
                } else {
                    show(prefix.as_bytes())
                },
                status,
                reason,
            }),
            _ => unreachable!("ask returns a matching reply"),
        }
    }

    /// The size and whole-file hash of `name`.
    pub fn stat(&mut self, name: &str) -> Result<(u64, [u8; HASH_LEN]), Failure> {
        let request = Request::Stat {
            name: name.to_string(),
        };
        let reply = self.ask(
            &request,
            |reply| matches!(reply, Reply::StatOk { name: n, .. } if n == name),
        )?;
        match reply {
            Reply::StatOk { result, .. } => result.map_err(|(status, reason)| Failure::Refused {
                what: show(name.as_bytes()),
                status,
                reason,
            }),
            _ => unreachable!("ask returns a matching reply"),
        }
    }

    /// Fetches `name` (a file, or a directory's whole tree; "" is the
    /// served root) to `dest`. Returns the files fetched or found up to date.
    pub fn get(&mut self, name: &str, dest: &Path) -> Result<u64, Failure> {
        let entries = self.list(name)?;
        let single = entries.len() == 1 && entries[0].name == name;
        if single {
            let is_dir = dest.is_dir() || dest.as_os_str().to_string_lossy().ends_with('/');
            let target = if is_dir {
                let base = name.rsplit('/').next().unwrap_or(name);
                dest.join(base)
            } else {
                dest.to_path_buf()
            };
            self.fetch_file(name, &target)?;
            return Ok(1);
        }
        std::fs::create_dir_all(dest).map_err(|e| local("create", dest, e))?;
        log::info!(
            "{}: {} files, {} bytes",
            if name.is_empty() { "/" } else { name },
            entries.len(),
            entries.iter().map(|e| e.size).sum::<u64>()
        );
        let mut done = 0;
        for entry in &entries {
            let relative = if name.is_empty() {
                entry.name.as_str()
            } else {
                match entry
                    .name
                    .strip_prefix(name)
                    .and_then(|r| r.strip_prefix('/'))
                {
                    Some(relative) => relative,
                    None => {
                        return Err(Failure::Local(format!(
                            "the server listed {} under {}",
                            show(entry.name.as_bytes()),
                            show(name.as_bytes())
                        )))
                    }
                }
            };
            // Checked again: the destination path is ours to protect.
            protocol::check_name(relative).map_err(|why| {
                Failure::Local(format!(
                    "unsafe name {} from the server: {why}",
                    show(relative.as_bytes())
                ))
            })?;
            let target = dest.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| local("create", parent, e))?;
            }
            self.fetch_file(&entry.name, &target)?;
            done += 1;
        }
        Ok(done)
    }

    /// Fetches one file `name` to `dest`, resuming from `dest.part` if its
    /// state says it holds a verified prefix of the same source.
    pub fn fetch_file(&mut self, name: &str, dest: &Path) -> Result<(), Failure> {
        protocol::check_name(name)
            .map_err(|why| Failure::Local(format!("{}: {why}", show(name.as_bytes()))))?;
        let (size, hash) = self.stat(name)?;
        let part = suffixed(dest, ".part");
        let state_path = suffixed(dest, ".part.state");
        if up_to_date(dest, size, &hash) {
            log::info!("{name}: {} is up to date", dest.display());
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&state_path);
            self.totals.files += 1;
            return Ok(());
        }
        let wanted = State {
            name: name.to_string(),
            size,
            hash: protocol::hex(&hash),
            verified: 0,
        };
        let mut hasher = FileHash::new(size);
        let resumed = read_state(&state_path)
            .filter(|s| s.name == wanted.name && s.size == wanted.size && s.hash == wanted.hash)
            .filter(|s| s.verified <= size)
            .filter(|s| std::fs::metadata(&part).is_ok_and(|m| m.len() >= s.verified));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| local("open", &part, e))?;
        let start = match resumed {
            Some(state) => {
                // Chunks start on BLAKE3 chunk boundaries (a state file
                // edited by hand may say otherwise).
                let verified = state.verified - state.verified % tree::SUBTREE_UNIT;
                file.set_len(verified)
                    .map_err(|e| local("truncate", &part, e))?;
                hash_pieces(&file, verified, &mut hasher).map_err(|e| local("read", &part, e))?;
                log::info!("{name}: resuming at {verified} of {size} bytes");
                verified
            }
            None => {
                file.set_len(0).map_err(|e| local("truncate", &part, e))?;
                write_state(&state_path, &wanted).map_err(|e| local("write", &state_path, e))?;
                0
            }
        };
        let mut transfer = Transfer {
            name,
            size,
            file: &file,
            part: &part,
            state_path: &state_path,
            state: wanted,
            hasher,
            written: start,
            synced: start,
            sparse_end: start,
        };
        let result = self.transfer(&mut transfer);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match result {
            Ok(()) => {}
            Err(Failure::Interrupted) => {
                // Keep what is verified for the next run.
                let _ = transfer.sync();
                return Err(Failure::Interrupted);
            }
            Err(e) => return Err(e),
        }
        // Derived from the chunk hashes already checked: no byte is hashed
        // twice.
        let actual = transfer.hasher.finalize();
        if actual != hash {
            drop(file);
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&state_path);
            return Err(Failure::Integrity(format!(
                "{name}: the whole file's BLAKE3 is {}, the server's {}; the partial file was removed",
                protocol::hex(&actual),
                protocol::hex(&hash)
            )));
        }
        file.set_len(size).map_err(|e| local("extend", &part, e))?;
        file.sync_all().map_err(|e| local("sync", &part, e))?;
        drop(file);
        std::fs::rename(&part, dest).map_err(|e| local("rename to", dest, e))?;
        sync_dir(dest);
        let _ = std::fs::remove_file(&state_path);
        self.totals.files += 1;
        log::info!("{name}: {size} bytes verified, saved as {}", dest.display());
        Ok(())
    }

    /// The chunk loop of [`Client::fetch_file`].
    fn transfer(&mut self, t: &mut Transfer) -> Result<(), Failure> {
        let window = self.options.window;
        let chunk = u64::from(self.options.chunk_size);
        let mut next = t.written;
        let mut outstanding: BTreeMap<u64, Outstanding> = BTreeMap::new();
        let mut ready: BTreeMap<u64, (zmq::Message, [u8; HASH_LEN])> = BTreeMap::new();
        // Offsets refused with 429, to ask again at the given moment.
        let mut later: VecDeque<(Instant, u64)> = VecDeque::new();
        let started = Instant::now();
        let start_offset = t.written;
        // --limit-rate: a token bucket of at most one chunk, so the rate
        // holds after a stall too (no burst to catch up).
        let mut tokens = chunk as f64;
        let mut refilled = Instant::now();
        let mut deadline = Instant::now() + self.options.timeout;
        let mut silent = 0;
        let mut progress = ProgressState::new(self, t.name, t.size, t.written);
        while t.written < t.size {
            // Fill the window, within the rate limit.
            let mut wake: Option<Instant> = None;
            while outstanding.len() + ready.len() < window && next < t.size {
                // Never past where the subtree starting here must end.
                let most = tree::max_chunk_at(next).unwrap_or(chunk);
                let length = chunk.min(most).min(t.size - next) as u32;
                if let Some(rate) = self.options.limit_rate {
                    let rate = rate.max(1) as f64;
                    let now = Instant::now();
                    tokens = (tokens + rate * now.duration_since(refilled).as_secs_f64())
                        .min(chunk as f64);
                    refilled = now;
                    if tokens < f64::from(length) {
                        let wait = (f64::from(length) - tokens) / rate;
                        wake = Some(now + Duration::from_secs_f64(wait));
                        break;
                    }
                    tokens -= f64::from(length);
                }
                if outstanding.is_empty() {
                    // Silence counts from the first request after an idle
                    // spell (waiting for the rate limit is not silence).
                    deadline = Instant::now() + self.options.timeout;
                }
                self.fetch(t.name, next, length)?;
                outstanding.insert(next, Outstanding { length, bad: 0 });
                next += u64::from(length);
            }
            while let Some(&(at, offset)) = later.front() {
                if at > Instant::now() {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                    break;
                }
                later.pop_front();
                if let Some(request) = outstanding.get(&offset) {
                    self.fetch(t.name, offset, request.length)?;
                }
            }
            let until = wake.map_or(deadline, |w| w.min(deadline));
            let reply = self.recv(until)?;
            let now = Instant::now();
            let Some(reply) = reply else {
                if now >= deadline && outstanding.is_empty() {
                    deadline = now + self.options.timeout;
                } else if now >= deadline {
                    silent += 1;
                    if silent > self.options.retries {
                        return Err(Failure::NoAnswer(format!(
                            "{} silent timeouts of {} ms while fetching {}",
                            silent,
                            self.options.timeout.as_millis(),
                            show(t.name.as_bytes())
                        )));
                    }
                    self.reconnect(silent)?;
                    later.clear();
                    for (offset, request) in &outstanding {
                        self.fetch(t.name, *offset, request.length)?;
                    }
                    deadline = now + self.options.timeout;
                }
                progress.show(self, t.written, now);
                continue;
            };
            silent = 0;
            deadline = now + self.options.timeout;
            let (offset, result) = match reply {
                Reply::Chunk {
                    name,
                    offset,
                    result,
                } if name == t.name && outstanding.contains_key(&offset) => (offset, result),
                Reply::Chunk { result, .. } => {
                    if let Ok(body) = &result {
                        self.count_chunk(body.data.len(), body.data.len());
                    }
                    self.totals.duplicates += 1;
                    continue;
                }
                Reply::Error { status, reason } => {
                    return Err(Failure::Refused {
                        what: format!("a request for {}", show(t.name.as_bytes())),
                        status,
                        reason,
                    })
                }
                _ => {
                    self.totals.duplicates += 1;
                    continue;
                }
            };
            let body = match result {
                Ok(body) => body,
                Err((Status::BUSY, _)) => {
                    later.push_back((now + self.options.timeout / 10, offset));
                    continue;
                }
                Err((status, reason)) => {
                    return Err(Failure::Refused {
                        what: show(t.name.as_bytes()),
                        status,
                        reason,
                    })
                }
            };
            let expected = outstanding[&offset].length;
            match self.verify(body, offset, expected) {
                Ok(checked) => {
                    outstanding.remove(&offset);
                    ready.insert(offset, checked);
                }
                Err(why) => {
                    self.totals.refetched += 1;
                    let request = outstanding.get_mut(&offset).expect("outstanding");
                    request.bad += 1;
                    if request.bad > self.options.chunk_retries {
                        return Err(Failure::Integrity(format!(
                            "{} at {offset}: {} bad copies in a row ({why})",
                            t.name, request.bad
                        )));
                    }
                    self.complaints.warn(format_args!(
                        "{} at {offset}: {why}; fetching it again",
                        show(t.name.as_bytes())
                    ));
                    let length = request.length;
                    self.fetch(t.name, offset, length)?;
                    continue;
                }
            }
            // Write what is now contiguous.
            while let Some((raw, hash)) = ready.remove(&t.written) {
                t.write(&raw, hash)?;
                if t.written - t.synced >= self.options.sync_every {
                    t.sync()?;
                }
            }
            progress.show(self, t.written, now);
        }
        t.sync()?;
        progress.done(self, t.written, start_offset, started);
        Ok(())
    }

    /// Decodes and checks one chunk: the raw bytes and their chunk hash, or
    /// what is wrong. Raw data stays in the frame it arrived in.
    fn verify(
        &mut self,
        body: ChunkBody<zmq::Message>,
        offset: u64,
        expected: u32,
    ) -> Result<(zmq::Message, [u8; HASH_LEN]), String> {
        let wire = body.data.len();
        let raw = match body.encoding {
            Encoding::Raw => body.data,
            Encoding::Zstd => {
                let mut raw = Vec::with_capacity(expected as usize);
                if let Err(e) = self
                    .decompressor
                    .decompress_to_buffer(&body.data[..], &mut raw)
                {
                    self.count_chunk(wire, wire);
                    return Err(format!("cannot decompress: {e}"));
                }
                zmq::Message::from(raw)
            }
        };
        self.count_chunk(raw.len(), wire);
        if raw.len() != expected as usize {
            return Err(format!(
                "{} bytes instead of {expected} (has the file changed?)",
                raw.len()
            ));
        }
        if tree::chunk_hash(offset, &raw) != body.hash {
            return Err("its BLAKE3 does not match".to_string());
        }
        Ok((raw, body.hash))
    }

    fn count_chunk(&mut self, raw: usize, wire: usize) {
        self.totals.chunks += 1;
        self.totals.bytes += raw as u64;
        self.totals.wire_bytes += wire as u64;
    }

    fn fetch(&mut self, name: &str, offset: u64, length: u32) -> Result<(), Failure> {
        let request = Request::Fetch {
            name: name.to_string(),
            offset,
            length,
            zstd: self.options.compress,
        };
        self.send(&request)
    }

    /// Sends without blocking; a full queue (no server) drops the request,
    /// which the silence timeout sends again.
    fn send(&mut self, request: &Request) -> Result<(), Failure> {
        let frames = request.to_frames();
        match self.socket.send_multipart(frames, zmq::DONTWAIT) {
            Ok(()) | Err(zmq::Error::EAGAIN) => Ok(()),
            Err(zmq::Error::EINTR) if interrupt::interrupted() => Err(Failure::Interrupted),
            Err(zmq::Error::EINTR) => Ok(()),
            Err(e) => Err(Failure::Local(format!("cannot send: {e}"))),
        }
    }

    /// One request answered: sends it, resends it on silence, returns the
    /// first reply `matches` accepts (or an ERROR as a refusal).
    fn ask(
        &mut self,
        request: &Request,
        matches: impl Fn(&Reply<zmq::Message>) -> bool,
    ) -> Result<Reply<zmq::Message>, Failure> {
        self.send(request)?;
        let mut deadline = Instant::now() + self.options.timeout;
        let mut silent = 0;
        let mut hashing_said = false;
        loop {
            match self.recv(deadline)? {
                Some(Reply::Error { status, reason }) => {
                    return Err(Failure::Refused {
                        what: "a request".into(),
                        status,
                        reason,
                    })
                }
                Some(reply) if matches(&reply) => {
                    silent = 0;
                    let status = match &reply {
                        Reply::ListOk {
                            result: Err((status, _)),
                            ..
                        }
                        | Reply::StatOk {
                            result: Err((status, _)),
                            ..
                        } => *status,
                        _ => Status::OK,
                    };
                    // Ask again later: 429 (busy) soon, 202 (hashing a
                    // large file) every quarter timeout, at most a second.
                    let pause = match status {
                        Status::BUSY => self.options.timeout / 10,
                        Status::HASHING => (self.options.timeout / 4).min(Duration::from_secs(1)),
                        _ => return Ok(reply),
                    };
                    if status == Status::HASHING && !hashing_said {
                        hashing_said = true;
                        log::info!("the server is hashing the file; asking again until it is done");
                    }
                    interrupt::sleep_ms(pause.as_millis().max(10) as u64)?;
                    self.send(request)?;
                    deadline = Instant::now() + self.options.timeout;
                }
                Some(_) => self.totals.duplicates += 1,
                None => {
                    silent += 1;
                    if silent > self.options.retries {
                        return Err(Failure::NoAnswer(format!(
                            "{silent} silent timeouts of {} ms at {}",
                            self.options.timeout.as_millis(),
                            self.options.endpoint
                        )));
                    }
                    self.reconnect(silent)?;
                    self.send(request)?;
                    deadline = Instant::now() + self.options.timeout;
                }
            }
        }
    }

    /// The next SFT/1 reply before `deadline`, or `None`.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Reply<zmq::Message>>, Failure> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut sockets = vec![&self.socket];
            if let Some(monitor) = &self.monitor {
                sockets.push(monitor);
            }
            let ready = interrupt::poll(&sockets, interrupt::millis(left))?;
            if ready.get(1) == Some(&true) {
                self.check_monitor()?;
            }
            if !ready[0] {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                continue;
            }
            let frames = match recv_frames(&self.socket) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => continue,
                Err(e) => return Err(Failure::Local(format!("cannot receive: {e}"))),
            };
            let count = frames.len();
            let first = frames.first().map(|f| f.to_vec()).unwrap_or_default();
            match protocol::parse_reply(frames) {
                Parsed::Ok(reply) => return Ok(Some(reply)),
                Parsed::NotOurs => {
                    self.totals.malformed += 1;
                    self.complaints.warn(format_args!(
                        "dropped a reply that is not SFT/1: {count} frames, first {}",
                        show(&first)
                    ));
                }
                Parsed::Malformed(why) => {
                    self.totals.malformed += 1;
                    self.complaints
                        .warn(format_args!("dropped a malformed reply: {why}"));
                }
            }
        }
    }

    /// Reads the CURVE monitor: a handshake refused by the server's ZAP
    /// handler is a refusal.
    fn check_monitor(&mut self) -> Result<(), Failure> {
        let Some(monitor) = &self.monitor else {
            return Ok(());
        };
        while let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(head) = frames.first().filter(|h| h.len() >= 6) else {
                continue;
            };
            let event = u16::from_le_bytes([head[0], head[1]]);
            let value = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
            if event == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw() {
                return Err(Failure::Refused {
                    what: "our CURVE key".into(),
                    status: Status(value.min(999) as u16),
                    reason: "the server's authentication does not allow this client's public key"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// A new socket in place of the old one (whose queue is dropped).
    /// After the `silent`th silent timeout in a row: says so (one line per
    /// timeout, so at most `retries` lines per outage).
    fn reconnect(&mut self, silent: u32) -> Result<(), Failure> {
        let (socket, monitor, endpoint) = open(&self.context, &self.options, self.sockets_made)?;
        self.sockets_made += 1;
        self.totals.reconnects += 1;
        let old = std::mem::replace(&mut self.socket, socket);
        retire(&old, self.monitor.take(), &self.monitor_endpoint);
        self.monitor = monitor;
        self.monitor_endpoint = endpoint;
        log::warn!(
            "no answer for {} ms ({silent} of {}): reconnected, asking again",
            self.options.timeout.as_millis(),
            self.options.retries
        );
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        retire(&self.socket, self.monitor.take(), &self.monitor_endpoint);
    }
}

/// Stops a socket's monitor before the socket and its reader go (libzmq
/// sends monitor events with a blocking send).
fn retire(socket: &zmq::Socket, monitor: Option<zmq::Socket>, endpoint: &str) {
    if monitor.is_some() {
        let _ = socket.monitor(&format!("{endpoint}-retired"), 0);
    }
    drop(monitor);
}

/// A DEALER connected to the server, with its CURVE monitor.
fn open(
    context: &zmq::Context,
    options: &ClientOptions,
    serial: u64,
) -> Result<(zmq::Socket, Option<zmq::Socket>, String), Failure> {
    let socket = crate::socket::new(context, zmq::DEALER)
        .linger(0)
        .max_message_size(protocol::CLIENT_MAX_FRAME)
        .build()?;
    let endpoint = format!(
        "inproc://fileclient-monitor-{}-{serial}",
        std::process::id()
    );
    let mut monitor = None;
    if let Some((keys, server)) = &options.curve {
        keys.make_client(&socket, server)?;
        socket.monitor(
            &endpoint,
            i32::from(zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()),
        )?;
        let pair = context.socket(zmq::PAIR)?;
        pair.set_linger(0)?;
        pair.connect(&endpoint)?;
        monitor = Some(pair);
    }
    socket
        .connect(&options.endpoint)
        .map_err(|source| Error::Endpoint {
            action: "connect to",
            endpoint: options.endpoint.clone(),
            source,
        })?;
    Ok((socket, monitor, endpoint))
}

/// One file being written.
struct Transfer<'a> {
    name: &'a str,
    size: u64,
    file: &'a File,
    part: &'a Path,
    state_path: &'a Path,
    state: State,
    hasher: FileHash,
    /// Verified bytes written (or skipped as zeros) from the start.
    written: u64,
    /// `written` at the last state save.
    synced: u64,
    /// Bytes the file really holds (zero chunks are not written).
    sparse_end: u64,
}

impl Transfer<'_> {
    fn write(&mut self, raw: &[u8], hash: [u8; HASH_LEN]) -> Result<(), Failure> {
        if !is_zero(raw) {
            self.file
                .write_all_at(raw, self.written)
                .map_err(|e| local("write", self.part, e))?;
            self.sparse_end = self.written + raw.len() as u64;
        }
        self.hasher.push(raw, hash);
        self.written += raw.len() as u64;
        Ok(())
    }

    /// Makes `.part` hold `written` bytes on disk, then records them.
    fn sync(&mut self) -> Result<(), Failure> {
        if self.sparse_end < self.written {
            self.file
                .set_len(self.written)
                .map_err(|e| local("extend", self.part, e))?;
            self.sparse_end = self.written;
        }
        self.file
            .sync_data()
            .map_err(|e| local("sync", self.part, e))?;
        self.state.verified = self.written;
        write_state(self.state_path, &self.state)
            .map_err(|e| local("write", self.state_path, e))?;
        self.synced = self.written;
        Ok(())
    }
}

fn is_zero(data: &[u8]) -> bool {
    // Slice comparison is a memcmp, fast even in a debug build.
    static ZEROS: [u8; 4096] = [0; 4096];
    data.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// Progress: a bar on a terminal, else plain lines.
struct ProgressState {
    name: String,
    size: u64,
    every: Option<Duration>,
    last: Instant,
    last_bytes: u64,
}

impl ProgressState {
    fn new(client: &mut Client, name: &str, size: u64, position: u64) -> ProgressState {
        let every = match client.options.progress {
            Progress::Auto(every) if std::io::stdout().is_terminal() => {
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(size),
                    indicatif::ProgressDrawTarget::stdout(),
                );
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(name.to_string());
                bar.set_position(position);
                client.bar = Some(bar);
                let _ = every;
                None
            }
            Progress::Auto(every) | Progress::Lines(every) => Some(every),
            Progress::Quiet => None,
        };
        ProgressState {
            name: name.to_string(),
            size,
            every,
            last: Instant::now(),
            last_bytes: position,
        }
    }

    fn show(&mut self, client: &Client, written: u64, now: Instant) {
        if let Some(bar) = &client.bar {
            bar.set_position(written);
            return;
        }
        if let Some(line) = self.line(written, now) {
            log::info!("{line}");
        }
    }

    /// The plain progress line due at `now` (`every` after the last one),
    /// with the rate since the last one.
    fn line(&mut self, written: u64, now: Instant) -> Option<String> {
        let every = self.every?;
        if now.duration_since(self.last) < every {
            return None;
        }
        let seconds = now.duration_since(self.last).as_secs_f64();
        let rate = (written - self.last_bytes) as f64 / seconds / 1e6;
        let line = format!(
            "progress {}: {written} of {} bytes ({:.0}%) {rate:.1} MB/s",
            self.name,
            self.size,
            if self.size == 0 {
                100.0
            } else {
                written as f64 * 100.0 / self.size as f64
            }
        );
        self.last = now;
        self.last_bytes = written;
        Some(line)
    }

    fn done(&mut self, client: &Client, written: u64, start: u64, started: Instant) {
        if let Some(bar) = &client.bar {
            bar.set_position(written);
        }
        log::debug!(
            "{}: {} bytes in {:.3} s",
            self.name,
            written - start,
            started.elapsed().as_secs_f64()
        );
    }
}

/// `path` with `suffix` added to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_state(path: &Path) -> Option<State> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(64 << 10)
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// Replaces the state file atomically and durably.
fn write_state(path: &Path, state: &State) -> std::io::Result<()> {
    let temporary = suffixed(path, ".tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(serde_json::to_string(state).unwrap_or_default().as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_dir(path);
    Ok(())
}

/// fsyncs the directory holding `path`, so a rename in it is durable.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Hashes the first `length` bytes of `file` into `hasher`.
fn hash_prefix(file: &File, length: u64, hasher: &mut blake3::Hasher) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < length {
        let want = (length - offset).min(buffer.len() as u64) as usize;
        let n = file.read_at(&mut buffer[..want], offset)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "shorter than its state says",
            ));
        }
        hasher.update(&buffer[..n]);
        offset += n as u64;
    }
    Ok(())
}

/// One whole message as frames, without copying them out of libzmq's
/// buffers (a chunk's data is written straight from its frame).
fn recv_frames(socket: &zmq::Socket) -> Result<Vec<zmq::Message>, zmq::Error> {
    let mut frames = vec![socket.recv_msg(zmq::DONTWAIT)?];
    while socket.get_rcvmore()? {
        // The rest of a message is there once its first frame is.
        frames.push(socket.recv_msg(0)?);
    }
    Ok(frames)
}

/// Pushes the first `length` bytes of `file` (a multiple of 1024) into
/// `hasher` as chunk-hashed pieces, as if they had just been fetched.
fn hash_pieces(file: &File, length: u64, hasher: &mut FileHash) -> std::io::Result<()> {
    const PIECE: u64 = 1 << 20;
    let mut buffer = vec![0u8; PIECE as usize];
    let mut offset = 0;
    while offset < length {
        let most = tree::max_chunk_at(offset).unwrap_or(PIECE);
        let piece = &mut buffer[..PIECE.min(most).min(length - offset) as usize];
        file.read_exact_at(piece, offset)?;
        hasher.push(piece, tree::chunk_hash(offset, piece));
        offset += piece.len() as u64;
    }
    Ok(())
}

/// Whether `dest` already holds `size` bytes hashing to `hash`.
fn up_to_date(dest: &Path, size: u64, hash: &[u8; HASH_LEN]) -> bool {
    let Ok(file) = File::open(dest) else {
        return false;
    };
    if !file
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() == size)
    {
        return false;
    }
    let mut hasher = blake3::Hasher::new();
    hash_prefix(&file, size, &mut hasher).is_ok() && hasher.finalize().as_bytes() == hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_chunks_are_recognised() {
        assert!(is_zero(&[]));
        assert!(is_zero(&vec![0u8; 10_000]));
        let mut data = vec![0u8; 10_000];
        data[9_999] = 1;
        assert!(!is_zero(&data));
    }

    #[test]
    fn state_files_round_trip_and_junk_is_ignored() {
        let dir = std::env::temp_dir().join(format!("zguide-ft-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.part.state");
        let state = State {
            name: "a/b".into(),
            size: 10,
            hash: protocol::hex(&[1; 32]),
            verified: 4,
        };
        write_state(&path, &state).unwrap();
        assert_eq!(read_state(&path), Some(state));
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(read_state(&path), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_codes_say_what_happened() {
        let refused = Failure::Refused {
            what: "x".into(),
            status: Status::REFUSED,
            reason: "no".into(),
        };
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(Failure::NoAnswer(String::new()).exit_code(), 2);
        assert_eq!(Failure::Integrity(String::new()).exit_code(), 3);
        assert_eq!(Failure::Local(String::new()).exit_code(), 4);
        assert!(refused.to_string().contains("403 refused"));
    }

    #[test]
    fn options_are_checked() {
        let bad_window = ClientOptions {
            window: MAX_WINDOW + 1,
            ..ClientOptions::default()
        };
        assert!(matches!(Client::new(bad_window), Err(Failure::Local(_))));
        // Chunks must be subtrees of the file's BLAKE3 tree: powers of two
        // from 1 KiB, at most MAX_CHUNK.
        for chunk_size in [
            0,
            512,
            1000,
            3 << 10,
            protocol::MAX_CHUNK + 1,
            protocol::MAX_CHUNK * 2,
        ] {
            let bad_chunk = ClientOptions {
                chunk_size,
                ..ClientOptions::default()
            };
            assert!(
                matches!(Client::new(bad_chunk), Err(Failure::Local(_))),
                "{chunk_size}"
            );
        }
        for chunk_size in [1 << 10, 64 << 10, protocol::MAX_CHUNK] {
            let good = ClientOptions {
                chunk_size,
                ..ClientOptions::default()
            };
            assert!(Client::new(good).is_ok(), "{chunk_size}");
        }
    }

    // ---- A client against a scripted server -------------------------------

    use std::collections::BTreeSet;
    use std::thread::JoinHandle;

    use crate::test_support::TempDir;

    /// The longest any one expected message may take.
    const WAIT_MS: i32 = 10_000;

    /// `length` bytes, none of its 1 KiB chunks all zero.
    fn content(length: usize) -> Vec<u8> {
        (0..length).map(|i| (i * 7 % 251) as u8 + 1).collect()
    }

    /// An SFT/1 server the test scripts: it reads each request and answers
    /// as the case needs, or not at all.
    struct FakeServer {
        router: zmq::Socket,
        endpoint: String,
        _context: zmq::Context,
    }

    impl FakeServer {
        fn new() -> FakeServer {
            FakeServer::bound(zmq::Context::new(), |_| {})
        }

        /// A CURVE server with `keys`, whose ZAP handler lets in `allowed`.
        fn curve(keys: &Keys, allowed: &[[u8; 32]]) -> (FakeServer, crate::curve::Authenticator) {
            let context = zmq::Context::new();
            let allowed = allowed.iter().copied().collect();
            let zap = crate::curve::Authenticator::start(&context, allowed, false).unwrap();
            let server = FakeServer::bound(context, |router| {
                keys.make_server(router).unwrap();
                router.set_zap_domain("global").unwrap();
            });
            (server, zap)
        }

        fn bound(context: zmq::Context, setup: impl FnOnce(&zmq::Socket)) -> FakeServer {
            let router = context.socket(zmq::ROUTER).unwrap();
            router.set_linger(0).unwrap();
            setup(&router);
            router.bind("tcp://127.0.0.1:*").unwrap();
            let endpoint = router.get_last_endpoint().unwrap().unwrap();
            FakeServer {
                router,
                endpoint,
                _context: context,
            }
        }

        /// The next request within `ms`: the client's routing id and it.
        fn within(&self, ms: i32) -> Option<(Vec<u8>, Request)> {
            self.router.set_rcvtimeo(ms).unwrap();
            let frames = self.router.recv_multipart(0).ok()?;
            let views: Vec<&[u8]> = frames[1..].iter().map(Vec::as_slice).collect();
            match protocol::parse_request(&views) {
                Parsed::Ok(request) => Some((frames[0].clone(), request)),
                _ => panic!("not a request: {frames:?}"),
            }
        }

        fn next(&self) -> (Vec<u8>, Request) {
            self.within(WAIT_MS).expect("a request from the client")
        }

        fn answer(&self, id: &[u8], frames: Vec<Vec<u8>>) {
            let mut message = vec![id.to_vec()];
            message.extend(frames);
            self.router.send_multipart(message, 0).unwrap();
        }

        /// CHUNK 200 with `data`, hashed as the chunk at `offset` of `good`
        /// (so a `data` other than `good`'s bytes there is a bad copy).
        fn chunk(&self, id: &[u8], name: &str, offset: u64, data: &[u8], good: &[u8]) {
            let hash = tree::chunk_hash(offset, good);
            let mut frames = protocol::chunk_head(name, offset, Encoding::Raw, &hash);
            frames.push(data.to_vec());
            self.answer(id, frames);
        }

        fn stat(&self, name: &str, file: &[u8]) {
            match self.next() {
                (id, Request::Stat { name: asked }) if asked == name => self.answer(
                    &id,
                    protocol::stat_ok(name, file.len() as u64, &protocol::hash(file)),
                ),
                other => panic!("wanted STAT {name}, got {other:?}"),
            }
        }
    }

    fn fetch_of(request: &Request) -> (u64, u32) {
        match request {
            Request::Fetch { offset, length, .. } => (*offset, *length),
            other => panic!("wanted a FETCH, got {other:?}"),
        }
    }

    /// Client options for the fake server: 1 KiB chunks, short timeouts.
    fn options(server: &FakeServer) -> ClientOptions {
        ClientOptions {
            endpoint: server.endpoint.clone(),
            window: 3,
            chunk_size: 1024,
            compress: false,
            timeout: Duration::from_millis(300),
            retries: 2,
            chunk_retries: 2,
            progress: Progress::Quiet,
            ..ClientOptions::default()
        }
    }

    type Outcome = (Result<(), Failure>, Totals);

    /// `fetch_file(name, dest)` in a thread of its own.
    fn spawn_fetch(options: ClientOptions, name: &str, dest: &Path) -> JoinHandle<Outcome> {
        let (name, dest) = (name.to_string(), dest.to_path_buf());
        std::thread::spawn(move || {
            let mut client = Client::new(options).unwrap();
            let result = client.fetch_file(&name, &dest);
            (result, client.totals().clone())
        })
    }

    fn join(handle: JoinHandle<Outcome>) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "the client did not end in 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        handle.join().unwrap()
    }

    /// Serves `file` as `name` to the end: every FETCH answered in order.
    fn serve_rest(server: &FakeServer, name: &str, file: &[u8], handle: &JoinHandle<Outcome>) {
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                let (offset, length) = fetch_of(&request);
                let range = offset as usize..offset as usize + length as usize;
                server.chunk(&id, name, offset, &file[range.clone()], &file[range]);
            }
        }
    }

    #[test]
    fn a_file_arrives_through_bad_copies_duplicates_and_busy_answers_within_its_window() {
        let dir = TempDir::new("ftclient-window");
        let dest = dir.path().join("out");
        let file = content(8 << 10);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dest);
        server.stat("f", &file);
        let mut asked: BTreeMap<u64, u32> = BTreeMap::new();
        let mut in_flight: BTreeSet<u64> = BTreeSet::new();
        let mut most_in_flight = 0;
        let mut busy_at = None;
        let mut pending: Vec<(Vec<u8>, u64, u32)> = Vec::new();
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                let (offset, length) = fetch_of(&request);
                assert_eq!(length, 1024);
                *asked.entry(offset).or_default() += 1;
                if offset == 1024 && asked[&offset] == 2 {
                    let waited = busy_at.map(|at: Instant| at.elapsed()).unwrap();
                    assert!(
                        waited >= Duration::from_millis(25),
                        "asked again after {waited:?}"
                    );
                }
                in_flight.insert(offset);
                most_in_flight = most_in_flight.max(in_flight.len());
                pending.push((id, offset, length));
                if pending.len() < 2 {
                    continue;
                }
            }
            // Newest first: chunks arrive out of order.
            while let Some((id, offset, length)) = pending.pop() {
                let range = offset as usize..(offset + u64::from(length)) as usize;
                let good = &file[range];
                match (offset, asked[&offset]) {
                    (1024, 1) => {
                        let request = Request::Fetch {
                            name: "f".into(),
                            offset,
                            length,
                            zstd: false,
                        };
                        server.answer(&id, protocol::refusal(&request, Status::BUSY, "later"));
                        busy_at = Some(Instant::now());
                        continue;
                    }
                    (2048, 1) => {
                        let mut bad = good.to_vec();
                        bad[100] ^= 0xFF;
                        server.chunk(&id, "f", offset, &bad, good);
                        continue;
                    }
                    (3072, 1) => server.chunk(&id, "f", offset, good, good),
                    _ => {}
                }
                server.chunk(&id, "f", offset, good, good);
                in_flight.remove(&offset);
            }
        }
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), file);
        assert!(!suffixed(&dest, ".part").exists());
        assert!(!suffixed(&dest, ".part.state").exists());
        let twice: Vec<u64> = asked
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(o, _)| *o)
            .collect();
        assert_eq!(twice, [1024, 2048], "asked again: {asked:?}");
        assert_eq!(asked.len(), 8, "{asked:?}");
        assert_eq!(most_in_flight, 3, "the window is 3");
        assert_eq!(
            totals,
            Totals {
                bytes: 10 << 10,
                wire_bytes: 10 << 10,
                chunks: 10,
                refetched: 1,
                duplicates: 1,
                malformed: 0,
                files: 1,
                reconnects: 0,
            }
        );
    }

    #[test]
    fn a_chunk_that_keeps_arriving_corrupt_fails_after_its_retries() {
        let dir = TempDir::new("ftclient-corrupt");
        let file = content(2 << 10);
        let server = FakeServer::new();
        let options = ClientOptions {
            window: 1,
            ..options(&server)
        };
        let handle = spawn_fetch(options, "f", &dir.path().join("out"));
        server.stat("f", &file);
        let mut copies = 0;
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                assert_eq!(fetch_of(&request), (0, 1024), "only the first chunk");
                copies += 1;
                let mut bad = file[..1024].to_vec();
                bad[0] ^= 1;
                server.chunk(&id, "f", 0, &bad, &file[..1024]);
            }
        }
        let (result, totals) = join(handle);
        match result {
            Err(Failure::Integrity(why)) => assert!(why.contains("3 bad copies"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(copies, 3, "the first copy and chunk_retries (2) more");
        assert_eq!(totals.refetched, 3);
    }

    #[test]
    fn a_silent_server_is_asked_again_on_new_connections_then_given_up() {
        let server = FakeServer::new();
        let dir = TempDir::new("ftclient-silent");
        let started = Instant::now();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("out"));
        let mut senders = Vec::new();
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                assert_eq!(request, Request::Stat { name: "f".into() });
                senders.push(id);
            }
        }
        let (result, totals) = join(handle);
        assert!(matches!(result, Err(Failure::NoAnswer(_))), "{result:?}");
        assert_eq!(senders.len(), 3, "asked once, then once per retry (2)");
        assert_eq!(
            senders.iter().collect::<BTreeSet<_>>().len(),
            3,
            "each time on a new connection"
        );
        assert_eq!(totals.reconnects, 2);
        // Three silent timeouts of 300 ms before giving up.
        assert!(started.elapsed() >= Duration::from_millis(850));
    }

    #[test]
    fn silence_mid_transfer_sends_every_outstanding_fetch_again() {
        let dir = TempDir::new("ftclient-resend");
        let dest = dir.path().join("out");
        let file = content(4 << 10);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dest);
        server.stat("f", &file);
        let first: Vec<(Vec<u8>, Request)> = (0..3).map(|_| server.next()).collect();
        let offsets: BTreeSet<u64> = first.iter().map(|(_, r)| fetch_of(r).0).collect();
        assert_eq!(offsets, BTreeSet::from([0, 1024, 2048]));
        // Not answered: after the timeout the same three come again, from a
        // new connection.
        let again: Vec<(Vec<u8>, Request)> = (0..3).map(|_| server.next()).collect();
        let offsets_again: BTreeSet<u64> = again.iter().map(|(_, r)| fetch_of(r).0).collect();
        assert_eq!(offsets_again, offsets);
        assert!(again
            .iter()
            .all(|(id, _)| *id != first[0].0 && *id == again[0].0));
        for (id, request) in &again {
            let (offset, length) = fetch_of(request);
            let range = offset as usize..(offset + u64::from(length)) as usize;
            server.chunk(id, "f", offset, &file[range.clone()], &file[range]);
        }
        serve_rest(&server, "f", &file, &handle);
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), file);
        assert_eq!(totals.reconnects, 1);
    }

    #[test]
    fn refusals_and_errors_end_the_transfer_as_refused() {
        let dir = TempDir::new("ftclient-refused");
        let file = content(2 << 10);
        // STAT 404.
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("a"));
        let (id, request) = server.next();
        server.answer(&id, protocol::refusal(&request, Status::NOT_FOUND, "no f"));
        match join(handle).0 {
            Err(Failure::Refused { status, reason, .. }) => {
                assert_eq!((status, reason.as_str()), (Status::NOT_FOUND, "no f"))
            }
            other => panic!("{other:?}"),
        }
        // A FETCH refused 403.
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("b"));
        server.stat("f", &file);
        let (id, request) = server.next();
        server.answer(&id, protocol::refusal(&request, Status::REFUSED, "not now"));
        match join(handle).0 {
            Err(Failure::Refused { status, what, .. }) => {
                assert_eq!((status, what.as_str()), (Status::REFUSED, "f"))
            }
            other => panic!("{other:?}"),
        }
        // ERROR 400 during the transfer.
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("c"));
        server.stat("f", &file);
        let (id, _) = server.next();
        server.answer(&id, protocol::error(Status::MALFORMED, "what?"));
        match join(handle).0 {
            Err(Failure::Refused { status, what, .. }) => {
                assert_eq!(
                    (status, what.as_str()),
                    (Status::MALFORMED, "a request for f")
                )
            }
            other => panic!("{other:?}"),
        }
        // ERROR 400 to a STAT.
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("d"));
        let (id, _) = server.next();
        server.answer(&id, protocol::error(Status::MALFORMED, "what?"));
        match join(handle).0 {
            Err(Failure::Refused { status, what, .. }) => {
                assert_eq!((status, what.as_str()), (Status::MALFORMED, "a request"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_whole_file_hash_removes_the_partial_file() {
        let dir = TempDir::new("ftclient-whole");
        let dest = dir.path().join("out");
        let file = content(2 << 10);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dest);
        let (id, _) = server.next();
        server.answer(&id, protocol::stat_ok("f", 2048, &protocol::hash(b"other")));
        serve_rest(&server, "f", &file, &handle);
        match join(handle).0 {
            Err(Failure::Integrity(why)) => {
                assert!(why.contains("partial file was removed"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!dest.exists());
        assert!(!suffixed(&dest, ".part").exists());
        assert!(!suffixed(&dest, ".part.state").exists());
    }

    /// The offsets fetched for `dest` with `part` (bytes) and `state` beside it.
    fn fetched_after(part: &[u8], state: &State, file: &[u8]) -> (Vec<u64>, Outcome) {
        let dir = TempDir::new("ftclient-resume");
        let dest = dir.path().join("out");
        std::fs::write(suffixed(&dest, ".part"), part).unwrap();
        write_state(&suffixed(&dest, ".part.state"), state).unwrap();
        let server = FakeServer::new();
        let options = ClientOptions {
            window: 1,
            // 1 KiB chunks for small files, 256 KiB for large ones.
            chunk_size: if file.len() > 1 << 20 {
                256 << 10
            } else {
                1024
            },
            ..options(&server)
        };
        let handle = spawn_fetch(options, "f", &dest);
        server.stat("f", file);
        let mut offsets = Vec::new();
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                let (offset, length) = fetch_of(&request);
                offsets.push(offset);
                let range = offset as usize..(offset + u64::from(length)) as usize;
                server.chunk(&id, "f", offset, &file[range.clone()], &file[range]);
            }
        }
        let outcome = join(handle);
        assert_eq!(std::fs::read(&dest).unwrap(), file);
        (offsets, outcome)
    }

    #[test]
    fn a_part_file_with_its_state_is_resumed_and_anything_else_starts_over() {
        let file = content(4 << 10);
        let state = |verified: u64| State {
            name: "f".into(),
            size: file.len() as u64,
            hash: protocol::hex(&protocol::hash(&file)),
            verified,
        };
        let (offsets, (result, _)) = fetched_after(&file[..2048], &state(2048), &file);
        result.unwrap();
        assert_eq!(offsets, [2048, 3072], "resumed at the verified offset");
        // A state edited by hand: back to the chunk boundary below.
        let (offsets, _) = fetched_after(&file[..2100], &state(2100), &file);
        assert_eq!(offsets, [2048, 3072]);
        // Verified as far as the whole file: nothing fetched.
        let (offsets, _) = fetched_after(&file, &state(4096), &file);
        assert_eq!(offsets, Vec::<u64>::new());
        // The .part shorter than its state says, or a state for another
        // source (name, size or hash), or one past the size: from the start.
        let all = [0, 1024, 2048, 3072];
        assert_eq!(fetched_after(&file[..1024], &state(2048), &file).0, all);
        let other_name = State {
            name: "g".into(),
            ..state(2048)
        };
        assert_eq!(fetched_after(&file[..2048], &other_name, &file).0, all);
        let other_size = State {
            size: 8192,
            ..state(2048)
        };
        assert_eq!(fetched_after(&file[..2048], &other_size, &file).0, all);
        let other_hash = State {
            hash: protocol::hex(&[7; 32]),
            ..state(2048)
        };
        assert_eq!(fetched_after(&file[..2048], &other_hash, &file).0, all);
        let mut long_part = file.clone();
        long_part.extend_from_slice(&[1; 1024]);
        assert_eq!(fetched_after(&long_part, &state(5120), &file).0, all);
        // A verified prefix of more than one 1 MiB piece is hashed again
        // piece by piece, the last piece cut at the prefix's end.
        let large = content(3 << 20);
        let large_state = State {
            name: "f".into(),
            size: large.len() as u64,
            hash: protocol::hex(&protocol::hash(&large)),
            verified: 3 << 19,
        };
        let (offsets, (result, _)) = fetched_after(&large[..3 << 19], &large_state, &large);
        result.unwrap();
        assert_eq!(offsets.first(), Some(&(3 << 19)), "resumed at 1.5 MiB");
    }

    #[test]
    fn a_destination_that_holds_the_same_bytes_is_left_alone() {
        let dir = TempDir::new("ftclient-same");
        let dest = dir.path().join("out");
        let file = content(3 << 10);
        std::fs::write(&dest, &file).unwrap();
        std::fs::write(suffixed(&dest, ".part"), b"old").unwrap();
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dest);
        server.stat("f", &file);
        assert!(server.within(200).is_none(), "no FETCH");
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!(totals.files, 1);
        assert!(!suffixed(&dest, ".part").exists());
        // The same bytes and more: fetched (to the right length).
        let mut longer = file.clone();
        longer.extend_from_slice(b"more");
        std::fs::write(&dest, &longer).unwrap();
        let handle = spawn_fetch(options(&server), "f", &dest);
        server.stat("f", &file);
        serve_rest(&server, "f", &file, &handle);
        join(handle).0.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), file);
        // The same size, other bytes: fetched.
        let mut changed = file.clone();
        changed[2000] ^= 1;
        std::fs::write(&dest, &changed).unwrap();
        let handle = spawn_fetch(options(&server), "f", &dest);
        server.stat("f", &file);
        serve_rest(&server, "f", &file, &handle);
        join(handle).0.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), file);
    }

    #[test]
    fn replies_that_are_not_sft_or_malformed_are_dropped_and_counted() {
        let dir = TempDir::new("ftclient-malformed");
        let file = content(1 << 10);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("out"));
        let (id, _) = server.next();
        server.answer(&id, vec![b"junk".to_vec()]);
        server.answer(&id, vec![protocol::SIGNATURE.to_vec(), vec![0x42]]);
        // A STAT-OK for another name: not the answer asked for.
        server.answer(&id, protocol::stat_ok("g", 5, &[0; 32]));
        server.answer(&id, protocol::stat_ok("f", 1024, &protocol::hash(&file)));
        // During the transfer: a STAT-OK and a chunk of another file are
        // not answers either (the chunk's bytes are counted as received).
        let (id, request) = server.next();
        assert_eq!(fetch_of(&request), (0, 1024));
        server.answer(&id, protocol::stat_ok("f", 1024, &protocol::hash(&file)));
        server.chunk(&id, "g", 0, &file, &file);
        server.chunk(&id, "f", 0, &file, &file);
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!((totals.malformed, totals.duplicates), (2, 3));
        assert_eq!((totals.chunks, totals.bytes), (2, 2048));
    }

    #[test]
    fn a_stat_answered_hashing_or_busy_is_asked_again_a_little_later() {
        crate::log_limit::captured::install();
        let dir = TempDir::new("ftclient-hashing");
        let file = content(1 << 10);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("out"));
        let mut answered = Instant::now();
        for status in [Status::HASHING, Status::HASHING, Status::BUSY] {
            let (id, request) = server.next();
            if status == Status::BUSY {
                // A quarter of the 300 ms timeout after the 202.
                let waited = answered.elapsed();
                assert!(waited >= Duration::from_millis(70), "{waited:?}");
                assert!(waited < Duration::from_millis(1500), "{waited:?}");
            }
            server.answer(&id, protocol::refusal(&request, status, "wait"));
            answered = Instant::now();
        }
        let (id, request) = server.next();
        // A tenth of the timeout after the 429 (not ten times it).
        let waited = answered.elapsed();
        assert!(waited >= Duration::from_millis(25), "{waited:?}");
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        assert_eq!(request, Request::Stat { name: "f".into() });
        server.answer(&id, protocol::stat_ok("f", 1024, &protocol::hash(&file)));
        serve_rest(&server, "f", &file, &handle);
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!(totals.reconnects, 0);
        // Said once, not on every 202 or on a 429.
        let said = crate::log_limit::captured::lines_with("the server is hashing");
        assert_eq!(said.len(), 1, "{said:?}");
    }

    #[test]
    fn the_state_is_saved_every_sync_every_bytes_with_the_part_as_long() {
        let dir = TempDir::new("ftclient-sync");
        let dest = dir.path().join("out");
        let mut file = content(8 << 10);
        // A zero chunk just before a save: not written, but the file is
        // extended over it before the state claims it.
        file[5120..6144].fill(0);
        let server = FakeServer::new();
        let options = ClientOptions {
            window: 1,
            sync_every: 2048,
            ..options(&server)
        };
        let handle = spawn_fetch(options, "f", &dest);
        server.stat("f", &file);
        let state_path = suffixed(&dest, ".part.state");
        let mut saved = Vec::new();
        loop {
            let (id, request) = server.next();
            let (offset, length) = fetch_of(&request);
            if let Some(state) = read_state(&state_path) {
                if saved.last() != Some(&state.verified) {
                    let part = std::fs::metadata(suffixed(&dest, ".part")).unwrap().len();
                    assert!(part >= state.verified, "{part} < {}", state.verified);
                    saved.push(state.verified);
                }
            }
            let range = offset as usize..(offset + u64::from(length)) as usize;
            server.chunk(&id, "f", offset, &file[range.clone()], &file[range]);
            if offset == 7168 {
                break;
            }
        }
        join(handle).0.unwrap();
        // Saved at the start (0), then at every 2 KiB verified.
        assert_eq!(saved, [0, 2048, 4096, 6144]);
        assert_eq!(std::fs::read(&dest).unwrap(), file);
    }

    #[test]
    fn a_rate_limit_holds_from_the_first_chunk_on() {
        // Waits for the rate (250 ms a chunk) longer than the timeout, then
        // shorter.
        for timeout in [Duration::from_millis(100), Duration::from_secs(2)] {
            let dir = TempDir::new("ftclient-rate");
            let file = content(4 << 10);
            let server = FakeServer::new();
            let options = ClientOptions {
                limit_rate: Some(4 << 10),
                timeout,
                ..options(&server)
            };
            let dest = dir.path().join("out");
            let started = Instant::now();
            let handle = std::thread::spawn(move || {
                let mut client = Client::new(options).unwrap();
                let cpu = crate::broker::thread_cpu();
                let result = client.fetch_file("f", &dest);
                let cpu = crate::broker::thread_cpu() - cpu;
                (result, client.totals().clone(), cpu)
            });
            server.stat("f", &file);
            while !handle.is_finished() {
                if let Some((id, request)) = server.within(50) {
                    let (offset, length) = fetch_of(&request);
                    let range = offset as usize..(offset + u64::from(length)) as usize;
                    server.chunk(&id, "f", offset, &file[range.clone()], &file[range]);
                }
            }
            let (result, totals, cpu) = handle.join().unwrap();
            let took = started.elapsed();
            result.unwrap();
            // One chunk at once, three more at 4 KiB/s: 750 ms, not seconds
            // (a client that woke only at its timeout would take 6 s).
            assert!(took >= Duration::from_millis(720), "{timeout:?}: {took:?}");
            assert!(took < Duration::from_secs(3), "{timeout:?}: {took:?}");
            assert_eq!(totals.reconnects, 0, "waiting for the rate is not silence");
            // It sleeps while it waits: a loop that polled without waiting
            // would take the whole 750 ms.
            assert!(cpu < Duration::from_millis(150), "{cpu:?} of CPU");
        }
    }

    #[test]
    fn silence_mid_transfer_is_given_up_after_the_retries() {
        let dir = TempDir::new("ftclient-silent-transfer");
        let file = content(4 << 10);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dir.path().join("out"));
        server.stat("f", &file);
        let mut rounds: BTreeMap<Vec<u8>, BTreeSet<u64>> = BTreeMap::new();
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                rounds.entry(id).or_default().insert(fetch_of(&request).0);
            }
        }
        let (result, totals) = join(handle);
        assert!(matches!(result, Err(Failure::NoAnswer(_))), "{result:?}");
        // The first round and one per retry (2), each on a new connection,
        // each with the whole window.
        assert_eq!(rounds.len(), 3, "{rounds:?}");
        for offsets in rounds.values() {
            assert_eq!(offsets, &BTreeSet::from([0, 1024, 2048]));
        }
        assert_eq!(totals.reconnects, 2);
    }

    #[test]
    fn the_last_chunk_is_as_long_as_what_is_left() {
        let dir = TempDir::new("ftclient-odd");
        let dest = dir.path().join("out");
        let file = content(2500);
        let server = FakeServer::new();
        let handle = spawn_fetch(options(&server), "f", &dest);
        server.stat("f", &file);
        let mut asked = Vec::new();
        while !handle.is_finished() {
            if let Some((id, request)) = server.within(50) {
                let (offset, length) = fetch_of(&request);
                asked.push((offset, length));
                let range = offset as usize..(offset as usize + length as usize).min(file.len());
                server.chunk(&id, "f", offset, &file[range.clone()], &file[range]);
            }
        }
        join(handle).0.unwrap();
        asked.sort();
        assert_eq!(asked, [(0, 1024), (1024, 1024), (2048, 452)]);
        assert_eq!(std::fs::read(&dest).unwrap(), file);
    }

    #[test]
    fn a_tree_is_fetched_under_the_destination_and_hostile_listings_are_refused() {
        let dir = TempDir::new("ftclient-tree");
        let a = content(1 << 10);
        let b = content(2 << 10);
        let server = FakeServer::new();
        let listing = |entries: &[(&str, u64)]| {
            let entries: Vec<Entry> = entries
                .iter()
                .map(|(name, size)| Entry {
                    name: name.to_string(),
                    size: *size,
                })
                .collect();
            protocol::list_ok("d", &entries)
        };
        let get = |name: &str, dest: PathBuf, files: u64| {
            let options = options(&server);
            let name = name.to_string();
            std::thread::spawn(move || -> Outcome {
                let mut client = Client::new(options).unwrap();
                let result = client.get(&name, &dest).map(|got| assert_eq!(got, files));
                (result, client.totals().clone())
            })
        };
        // A directory of one file is a directory.
        let handle = get("d", dir.path().join("one"), 1);
        let (id, _) = server.next();
        server.answer(&id, listing(&[("d/only", 1024)]));
        server.stat("d/only", &a);
        let (id, request) = server.next();
        let (offset, _) = fetch_of(&request);
        server.chunk(&id, "d/only", offset, &a, &a);
        join(handle).0.unwrap();
        assert_eq!(std::fs::read(dir.path().join("one/only")).unwrap(), a);

        let handle = get("d", dir.path().join("copy"), 2);
        let (id, request) = server.next();
        assert_eq!(request, Request::List { prefix: "d".into() });
        server.answer(&id, listing(&[("d/a", 1024), ("d/sub/b", 2048)]));
        for (name, file) in [("d/a", &a), ("d/sub/b", &b)] {
            server.stat(name, file);
            for _ in 0..file.len() / 1024 {
                let (id, request) = server.next();
                let (offset, length) = fetch_of(&request);
                let range = offset as usize..(offset + u64::from(length)) as usize;
                server.chunk(&id, name, offset, &file[range.clone()], &file[range]);
            }
        }
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!(totals.files, 2);
        assert_eq!(std::fs::read(dir.path().join("copy/a")).unwrap(), a);
        assert_eq!(std::fs::read(dir.path().join("copy/sub/b")).unwrap(), b);

        // (A name with `..` does not get this far: the listing is dropped
        // as malformed.)
        for hostile in ["e/x", "dx/y"] {
            let handle = get("d", dir.path().join(hostile.replace('/', "-")), 2);
            let (id, _) = server.next();
            server.answer(&id, listing(&[("d/a", 1024), (hostile, 1)]));
            server.stat("d/a", &a);
            let (id, request) = server.next();
            let (offset, _) = fetch_of(&request);
            server.chunk(&id, "d/a", offset, &a, &a);
            match join(handle).0 {
                Err(Failure::Local(message)) => {
                    assert!(message.contains("the server listed"), "{message}")
                }
                other => panic!("{hostile:?}: {other:?}"),
            }
        }

        // One file asked for, into a directory: under its own name there.
        let single = std::thread::spawn({
            let options = options(&server);
            let dest = dir.path().join("copy");
            move || {
                let mut client = Client::new(options).unwrap();
                client.get("d/sub/b", &dest)
            }
        });
        let (id, _) = server.next();
        server.answer(
            &id,
            protocol::list_ok(
                "d/sub/b",
                &[Entry {
                    name: "d/sub/b".into(),
                    size: 2048,
                }],
            ),
        );
        server.stat("d/sub/b", &b);
        for _ in 0..2 {
            let (id, request) = server.next();
            let (offset, length) = fetch_of(&request);
            let range = offset as usize..(offset + u64::from(length)) as usize;
            server.chunk(&id, "d/sub/b", offset, &b[range.clone()], &b[range]);
        }
        assert_eq!(single.join().unwrap().unwrap(), 1);
        assert_eq!(std::fs::read(dir.path().join("copy/b")).unwrap(), b);
    }

    /// With CURVE: a key the server's ZAP handler lets in is served; one it
    /// refuses is reported as refused at once (the socket's monitor sees
    /// the handshake fail), not after the silent timeouts.
    #[test]
    fn curve_keys_are_let_in_or_refused_at_once() {
        let server_keys = Keys::generate().unwrap();
        let ours = Keys::generate().unwrap();
        let file = content(1 << 10);
        let dir = TempDir::new("ftclient-curve");

        let (server, _zap) = FakeServer::curve(&server_keys, &[ours.public]);
        let allowed = ClientOptions {
            curve: Some((ours.clone(), server_keys.public)),
            ..options(&server)
        };
        let handle = spawn_fetch(allowed, "f", &dir.path().join("in"));
        // Two STATs go unanswered: each time the client reconnects, with a
        // new socket and a new monitor, and asks again.
        let senders: Vec<Vec<u8>> = (0..3).map(|_| server.next().0).collect();
        assert_eq!(senders.iter().collect::<BTreeSet<_>>().len(), 3);
        server.answer(
            &senders[2],
            protocol::stat_ok("f", 1024, &protocol::hash(&file)),
        );
        serve_rest(&server, "f", &file, &handle);
        let (result, totals) = join(handle);
        result.unwrap();
        assert_eq!(totals.reconnects, 2);

        let (server, _zap) = FakeServer::curve(&server_keys, &[server_keys.public]);
        let refused = ClientOptions {
            curve: Some((ours, server_keys.public)),
            timeout: Duration::from_secs(2),
            ..options(&server)
        };
        let started = Instant::now();
        let (result, _) = join(spawn_fetch(refused, "f", &dir.path().join("out")));
        match result {
            Err(Failure::Refused { what, status, .. }) => {
                assert_eq!((what.as_str(), status), ("our CURVE key", Status(400)))
            }
            other => panic!("{other:?}"),
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "{took:?}: not after a timeout"
        );
        assert!(server.within(100).is_none(), "nothing got through");
    }

    #[test]
    fn progress_lines_come_every_interval_with_the_rate_since_the_last() {
        let start = Instant::now();
        let mut progress = ProgressState {
            name: "f".into(),
            size: 4_000_000,
            every: Some(Duration::from_secs(1)),
            last: start,
            last_bytes: 1_000_000,
        };
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(progress.line(1_500_000, at(999)), None, "not yet");
        assert_eq!(
            progress.line(2_000_000, at(1000)).as_deref(),
            Some("progress f: 2000000 of 4000000 bytes (50%) 1.0 MB/s")
        );
        assert_eq!(progress.line(2_100_000, at(1500)), None);
        assert_eq!(
            progress.line(3_000_000, at(3000)).as_deref(),
            Some("progress f: 3000000 of 4000000 bytes (75%) 0.5 MB/s")
        );
        let mut empty = ProgressState {
            size: 0,
            every: Some(Duration::ZERO),
            last_bytes: 0,
            ..progress
        };
        assert_eq!(
            empty.line(0, at(4000)).as_deref(),
            Some("progress f: 0 of 0 bytes (100%) 0.0 MB/s")
        );
        let mut quiet = ProgressState {
            every: None,
            ..empty
        };
        assert_eq!(quiet.line(0, at(9000)), None);
    }
}
