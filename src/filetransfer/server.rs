//! The SFT/1 server behind `fileserver`: serves the regular files under one
//! directory to any number of clients (`zguide/file-transfer-protocol.md`).
//!
//! **Threads.** One thread owns the ROUTER: it reads requests, checks them,
//! queues them per client, and sends the answers; it never touches the disk.
//! A pool of [`ServerOptions::readers`] reader threads (4 by default) does
//! every file-system call (path resolution, reads, hashing, directory walks)
//! and hands back the finished reply over an `inproc` PUSH/PULL pipe, which
//! moves the chunk's buffer without copying it. Jobs go to the pool **fairly**:
//! the ROUTER thread keeps a queue per client and hands out jobs round-robin
//! between clients, at most [`ServerOptions::readers`]` / 2` (at least one) of
//! one client's jobs in the pool at once, so a client whose file sits on a slow
//! disk holds at most half the readers and the others keep being served.
//!
//! **Paths** ([`resolve`]): a name from the wire is refused (403) if it is
//! empty, absolute, has a `.` or `..` or empty component or a NUL; then it
//! is joined to the served directory and canonicalised (symlinks resolved),
//! and refused if the result is not inside the canonical served directory. A
//! symlink inside the tree to a file inside the tree is served; one that
//! leads out is refused and its target never opened. The file is opened
//! `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot hang a reader) and must be a
//! regular file (404 otherwise). Someone who can write inside the served
//! tree could still swap a directory for a symlink between the check and
//! the open; serve trees only you can write (`openat2(RESOLVE_BENEATH)` would
//! close that gap on Linux 5.6+).
//!
//! **Answers.** STAT hashes the whole file with BLAKE3 on a reader; the hash
//! is cached by (path, device, inode, size, mtime), at most
//! [`STAT_CACHE_ENTRIES`] entries, so a client that resumes does not make the
//! server hash again. A file over [`HASH_NOW`] bytes is answered 202 at once
//! and hashed after that on the same reader (which still counts in its
//! client's share of the pool), so the client, which asks again, never takes
//! a long hash for silence; a failure to hash it is cached too, so the
//! client gets the error rather than 202 for ever. FETCH reads the range (short at the end of the file),
//! hashes the raw bytes, and, if the client accepts zstd and the server
//! allows it, compresses them at level 1 and sends the compressed form only
//! when it is smaller. LIST walks the tree (not following directory
//! symlinks), sorted by name.
//!
//! **Bounds.** A request frame is at most [`protocol::SERVER_MAX_FRAME`]
//! bytes (`MAXMSGSIZE`). A client has at most
//! [`ServerOptions::max_outstanding`] requests queued or being read (64 by
//! default; past it: 429) and the server tracks at most [`MAX_PEERS`]
//! clients with requests outstanding (past it: 429). A chunk is at most
//! [`protocol::MAX_CHUNK`] (4 MiB, past it 413); a listing at most
//! [`protocol::MAX_LIST_ENTRIES`] entries and [`protocol::MAX_LIST_BYTES`]
//! (413). Sends never block (`ROUTER_MANDATORY`, `DONTWAIT`): a reply for a
//! client whose queue is full (HWM [`SEND_HWM`] messages) is dropped and
//! logged (the client asks again after its timeout); one for a client that
//! has gone is dropped quietly. So a client that stops reading costs at most
//! `SEND_HWM` replies in libzmq's queue (64 MiB at the default 1 MiB chunk,
//! 512 MiB if it asks for 4 MiB chunks) plus what its outstanding requests
//! hold while being read (at most one chunk per reader). Messages that are
//! not SFT/1 are dropped and logged, escaped, at most 20 lines a second.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use super::protocol::{self, Encoding, Entry, Parsed, Request, Status, HASH_LEN};
use super::tree::{self, Leaves};
use crate::curve::{Authenticator, Keys};
use crate::log_limit::complain;
use crate::message::show;
use crate::{interrupt, Error};

/// Where `fileserver` binds by default (the guide's fileio port).
pub const DEFAULT_BIND: &str = "tcp://*:6000";
/// The most clients with requests outstanding at once.
pub const MAX_PEERS: usize = 10_000;
/// Bytes of cached leaves (chunk hashes of hashed files, at most 512 KiB
/// per file: [`tree::MAX_LEAVES`]), oldest out first: 64 files of 1 GiB
/// or more, many more smaller ones.
pub const LEAF_CACHE_BYTES: usize = 32 << 20;
/// Entries in the STAT hash cache.
pub const STAT_CACHE_ENTRIES: usize = 1024;
/// Files up to this size are hashed before STAT is answered; larger ones get
/// 202 at once and are hashed in the background (64 MiB: well under a second).
pub const HASH_NOW: u64 = 64 << 20;
/// The ROUTER's send high-water mark, in messages per client: twice the
/// default outstanding bound, so a client within its window is never
/// refused for a stale count (see `zguide::fileio`).
pub const SEND_HWM: i32 = 128;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The directory served.
    pub root: PathBuf,
    /// Endpoints to bind.
    pub binds: Vec<String>,
    /// Reader threads (at least 1).
    pub readers: usize,
    /// Whether chunks may be compressed for clients that accept it.
    pub compress: bool,
    /// Requests a client may have queued or being read at once.
    pub max_outstanding: usize,
    /// CURVE: the server's keys and the directory of allowed clients' public
    /// keys.
    pub curve: Option<(Keys, PathBuf)>,
    /// Log every request.
    pub verbose: bool,
    /// Test knob: FETCHes of names starting with this prefix wait this long
    /// before reading (a slow disk).
    pub slow: Option<(String, Duration)>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            root: PathBuf::from("."),
            binds: vec![DEFAULT_BIND.to_string()],
            readers: 4,
            compress: true,
            max_outstanding: 64,
            curve: None,
            verbose: false,
            slow: None,
        }
    }
}

/// What a server did, printed when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// CHUNK 200 replies sent.
    pub chunks: u64,
    /// Raw bytes in them.
    pub raw_bytes: u64,
    /// Data bytes on the wire (after compression).
    pub wire_bytes: u64,
    /// Chunks sent compressed.
    pub compressed: u64,
    /// Replies with a status other than 200.
    pub refused: u64,
    /// Replies dropped (the client's queue full, or the client gone).
    pub dropped: u64,
}

/// A job for a reader.
struct Job {
    identity: Vec<u8>,
    request: Request,
}

/// Per-client bookkeeping on the ROUTER thread.
#[derive(Default)]
struct Peer {
    queued: VecDeque<Request>,
    in_pool: usize,
}

/// What the readers share.
struct Shared {
    root: PathBuf,
    compress: bool,
    verbose: bool,
    slow: Option<(String, Duration)>,
    cache: Mutex<StatCache>,
}

/// Serves until Ctrl-C/SIGTERM; returns what it did.
pub fn run(options: ServerOptions) -> Result<ServerStats, Error> {
    let context = zmq::Context::new();
    let mut server = Server::new(&context, options)?;
    match server.serve() {
        Ok(()) | Err(Error::Interrupted) => Ok(server.stats.clone()),
        Err(e) => Err(e),
    }
}

/// A bound server; [`Server::serve`] runs it.
pub struct Server {
    router: zmq::Socket,
    results: zmq::Socket,
    jobs: Option<mpsc::Sender<Job>>,
    readers: usize,
    per_client_in_pool: usize,
    max_outstanding: usize,
    verbose: bool,
    peers: HashMap<Vec<u8>, Peer>,
    /// Clients with queued jobs, in turn.
    ring: VecDeque<Vec<u8>>,
    in_pool: usize,
    /// What the server did so far.
    pub stats: ServerStats,
    _authenticator: Option<Authenticator>,
}

impl Server {
    /// Checks the directory, binds, starts the readers.
    pub fn new(context: &zmq::Context, options: ServerOptions) -> Result<Server, Error> {
        let root = options.root.canonicalize().map_err(|e| {
            Error::Protocol(format!("cannot serve {}: {e}", options.root.display()))
        })?;
        if !root.is_dir() {
            return Err(Error::Protocol(format!(
                "cannot serve {}: not a directory",
                root.display()
            )));
        }
        let authenticator = match &options.curve {
            Some((_, allowed_dir)) => {
                let allowed = crate::curve::load_public_keys(allowed_dir).map_err(|e| {
                    Error::Protocol(format!("client keys in {}: {e}", allowed_dir.display()))
                })?;
                log::info!("CURVE on, {} client keys allowed", allowed.len());
                Some(Authenticator::start(context, allowed, options.verbose)?)
            }
            None => None,
        };
        let router = crate::socket::new(context, zmq::ROUTER)
            .max_message_size(protocol::SERVER_MAX_FRAME)
            .send_hwm(SEND_HWM)
            .router_mandatory()
            .build()?;
        if let Some((keys, _)) = &options.curve {
            keys.make_server(&router)?;
        }
        for endpoint in &options.binds {
            router.bind(endpoint).map_err(|source| Error::Endpoint {
                action: "bind",
                endpoint: endpoint.clone(),
                source,
            })?;
        }
        static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let pipe = format!(
            "inproc://fileserver-results-{}",
            SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let results = crate::socket::new(context, zmq::PULL)
            .max_message_size(-1)
            .bind(&pipe)?;
        let readers = options.readers.max(1);
        let shared = Arc::new(Shared {
            root: root.clone(),
            compress: options.compress,
            verbose: options.verbose,
            slow: options.slow.clone(),
            cache: Mutex::new(StatCache::default()),
        });
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..readers {
            let push = crate::socket::new(context, zmq::PUSH)
                .linger(0)
                .connect(&pipe)?;
            let (shared, queue) = (shared.clone(), queue.clone());
            std::thread::spawn(move || reader(&shared, &queue, &push));
        }
        log::info!(
            "fileserver serving {} at {} ({} readers, compression {}, CURVE {})",
            root.display(),
            options.binds.join(" "),
            readers,
            if options.compress { "allowed" } else { "off" },
            if options.curve.is_some() { "on" } else { "off" },
        );
        Ok(Server {
            router,
            results,
            jobs: Some(jobs),
            readers,
            per_client_in_pool: (readers / 2).max(1),
            max_outstanding: options.max_outstanding.max(1),
            verbose: options.verbose,
            peers: HashMap::new(),
            ring: VecDeque::new(),
            in_pool: 0,
            stats: ServerStats::default(),
            _authenticator: authenticator,
        })
    }

    /// The loop: requests in, jobs out to the readers, replies back.
    pub fn serve(&mut self) -> Result<(), Error> {
        loop {
            self.turn(-1)?;
        }
    }

    /// One turn of the loop: waits up to `timeout_ms` (-1: for ever) for
    /// replies from the readers and requests from clients, takes them, and
    /// hands out jobs.
    fn turn(&mut self, timeout_ms: i64) -> Result<(), Error> {
        let ready = interrupt::poll(&[&self.router, &self.results], timeout_ms)?;
        if ready[1] {
            // Replies first: they free pool slots.
            for _ in 0..1000 {
                let Some(frames) = recv_messages(&self.results)? else {
                    break;
                };
                self.forward(frames)?;
            }
        }
        if ready[0] {
            for _ in 0..1000 {
                let Some(mut frames) = recv_bytes(&self.router)? else {
                    break;
                };
                let identity = frames.remove(0);
                self.request(identity, frames)?;
            }
        }
        self.dispatch();
        Ok(())
    }

    fn request(&mut self, identity: Vec<u8>, frames: Vec<Vec<u8>>) -> Result<(), Error> {
        let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let request = match protocol::parse_request(&views) {
            Parsed::Ok(request) => request,
            Parsed::NotOurs => {
                complain(format_args!(
                    "fileserver: dropped a message that is not SFT/1 from {}: {} frames, first {}",
                    show(&identity),
                    frames.len(),
                    show(frames.first().map(Vec::as_slice).unwrap_or_default())
                ));
                return Ok(());
            }
            Parsed::Malformed(why) => {
                complain(format_args!(
                    "fileserver: malformed request from {}: {why}",
                    show(&identity)
                ));
                self.stats.refused += 1;
                return self.reply(&identity, protocol::error(Status::MALFORMED, why));
            }
        };
        if self.verbose {
            log::info!("{} asks {}", show(&identity), describe(&request));
        }
        if let Request::Fetch { length, .. } = &request {
            if *length > protocol::MAX_CHUNK {
                self.stats.refused += 1;
                let why = format!("a chunk is at most {} bytes", protocol::MAX_CHUNK);
                return self.reply(
                    &identity,
                    protocol::refusal(&request, Status::TOO_LARGE, &why),
                );
            }
        }
        let known = self.peers.contains_key(&identity);
        let outstanding = self
            .peers
            .get(&identity)
            .map_or(0, |peer| peer.queued.len() + peer.in_pool);
        if outstanding >= self.max_outstanding || (!known && self.peers.len() >= MAX_PEERS) {
            self.stats.refused += 1;
            let why = format!(
                "{} requests outstanding already: wait for answers",
                self.max_outstanding
            );
            return self.reply(&identity, protocol::refusal(&request, Status::BUSY, &why));
        }
        let peer = self.peers.entry(identity.clone()).or_default();
        if peer.queued.is_empty() {
            self.ring.push_back(identity);
        }
        peer.queued.push_back(request);
        Ok(())
    }

    /// Hands queued jobs to idle readers, in turn between clients.
    fn dispatch(&mut self) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let mut skipped = 0;
        while self.in_pool < self.readers && skipped < self.ring.len() {
            let Some(identity) = self.ring.pop_front() else {
                break;
            };
            let Some(peer) = self.peers.get_mut(&identity) else {
                continue;
            };
            if peer.in_pool >= self.per_client_in_pool {
                // Its share of the pool is busy: next client.
                self.ring.push_back(identity);
                skipped += 1;
                continue;
            }
            let Some(request) = peer.queued.pop_front() else {
                continue;
            };
            peer.in_pool += 1;
            self.in_pool += 1;
            skipped = 0;
            if !peer.queued.is_empty() {
                self.ring.push_back(identity.clone());
            }
            if jobs.send(Job { identity, request }).is_err() {
                log::error!("fileserver: the readers have stopped");
                self.jobs = None;
                return;
            }
        }
    }

    /// A reader's reply: `[identity][accounting][reply frames…]`.
    fn forward(&mut self, mut frames: VecDeque<zmq::Message>) -> Result<(), Error> {
        let (Some(identity), Some(accounting)) = (frames.pop_front(), frames.pop_front()) else {
            return Ok(());
        };
        let identity = identity.to_vec();
        let account = Accounting::from_bytes(&accounting);
        if !account.busy {
            // The reader is free again (a `busy` reply is sent while it
            // still hashes; its accounting-only message frees it later).
            self.in_pool = self.in_pool.saturating_sub(1);
            if let Some(peer) = self.peers.get_mut(&identity) {
                peer.in_pool = peer.in_pool.saturating_sub(1);
                if peer.in_pool == 0 && peer.queued.is_empty() {
                    self.peers.remove(&identity);
                }
            }
        }
        if frames.is_empty() {
            return Ok(());
        }
        match send_reply(&self.router, &identity, frames)? {
            true => {
                if account.status < 400 {
                    if account.chunk {
                        self.stats.chunks += 1;
                        self.stats.raw_bytes += account.raw;
                        self.stats.wire_bytes += account.wire;
                        self.stats.compressed += u64::from(account.compressed);
                    }
                } else {
                    self.stats.refused += 1;
                }
            }
            false => self.dropped(&identity),
        }
        Ok(())
    }

    fn reply(&mut self, identity: &[u8], frames: Vec<Vec<u8>>) -> Result<(), Error> {
        let frames = frames.into_iter().map(zmq::Message::from).collect();
        if !send_reply(&self.router, identity, frames)? {
            self.dropped(identity);
        }
        Ok(())
    }

    fn dropped(&mut self, identity: &[u8]) {
        self.stats.dropped += 1;
        complain(format_args!(
            "fileserver: reply to {} dropped: its queue is full or it has gone",
            show(identity)
        ));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The readers end when the queue closes (after their current job).
        self.jobs = None;
    }
}

fn describe(request: &Request) -> String {
    match request {
        Request::List { prefix } => format!("LIST {}", show(prefix.as_bytes())),
        Request::Stat { name } => format!("STAT {}", show(name.as_bytes())),
        Request::Fetch {
            name,
            offset,
            length,
            zstd,
        } => format!(
            "FETCH {} at {offset} for {length}{}",
            show(name.as_bytes()),
            if *zstd { " (zstd)" } else { "" }
        ),
    }
}

fn recv_bytes(socket: &zmq::Socket) -> Result<Option<Vec<Vec<u8>>>, Error> {
    match interrupt::retry_eintr(|| socket.recv_multipart(zmq::DONTWAIT)) {
        Ok(frames) => Ok(Some(frames)),
        Err(Error::Zmq(zmq::Error::EAGAIN)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn recv_messages(socket: &zmq::Socket) -> Result<Option<VecDeque<zmq::Message>>, Error> {
    let mut frames = VecDeque::new();
    loop {
        let flags = if frames.is_empty() { zmq::DONTWAIT } else { 0 };
        match interrupt::retry_eintr(|| socket.recv_msg(flags)) {
            Ok(frame) => frames.push_back(frame),
            Err(Error::Zmq(zmq::Error::EAGAIN)) if frames.is_empty() => return Ok(None),
            Err(e) => return Err(e),
        }
        if !socket.get_rcvmore()? {
            return Ok(Some(frames));
        }
    }
}

/// Sends `[identity][frames…]` without blocking; false if dropped. A "full"
/// verdict is checked again once libzmq has caught up (see `zguide::fileio`).
fn send_reply(
    router: &zmq::Socket,
    identity: &[u8],
    frames: VecDeque<zmq::Message>,
) -> Result<bool, Error> {
    let flags = zmq::SNDMORE | zmq::DONTWAIT;
    let mut result = interrupt::retry_eintr(|| router.send(identity, flags));
    if let Err(Error::Zmq(zmq::Error::EAGAIN)) = result {
        router.get_events()?;
        result = interrupt::retry_eintr(|| router.send(identity, flags));
    }
    match result {
        Ok(()) => {}
        Err(Error::Zmq(zmq::Error::EAGAIN | zmq::Error::EHOSTUNREACH)) => return Ok(false),
        Err(e) => return Err(e),
    }
    let last = frames.len().saturating_sub(1);
    for (index, frame) in frames.into_iter().enumerate() {
        let more = if index < last { zmq::SNDMORE } else { 0 };
        router.send(frame, more)?;
    }
    Ok(true)
}

/// What a reader tells the ROUTER thread about a reply, for the figures.
#[derive(Clone, Copy, Debug)]
struct Accounting {
    status: u16,
    chunk: bool,
    compressed: bool,
    /// The reader goes on working after this reply (a STAT answered 202
    /// while it hashes).
    busy: bool,
    raw: u64,
    wire: u64,
}

impl Accounting {
    fn to_bytes(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(20);
        bytes.extend_from_slice(&self.status.to_be_bytes());
        bytes
            .push(u8::from(self.chunk) | u8::from(self.compressed) << 1 | u8::from(self.busy) << 2);
        bytes.extend_from_slice(&self.raw.to_be_bytes());
        bytes.extend_from_slice(&self.wire.to_be_bytes());
        bytes
    }

    /// The reader is free; nothing to send.
    fn freed() -> Accounting {
        Accounting {
            status: 0,
            chunk: false,
            compressed: false,
            busy: false,
            raw: 0,
            wire: 0,
        }
    }

    fn from_bytes(bytes: &[u8]) -> Accounting {
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        let flags = bytes.get(2).copied().unwrap_or(0);
        Accounting {
            status: bytes
                .get(..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
            chunk: flags & 1 != 0,
            compressed: flags & 2 != 0,
            busy: flags & 4 != 0,
            raw: word(3),
            wire: word(11),
        }
    }
}

/// A reader thread: takes jobs until the queue closes.
fn reader(shared: &Shared, queue: &Mutex<mpsc::Receiver<Job>>, push: &zmq::Socket) {
    let mut compressor = zstd::bulk::Compressor::new(1).ok();
    let mut buffer = Vec::new();
    loop {
        let job = {
            let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.recv()
        };
        let Ok(Job { identity, request }) = job else {
            return;
        };
        let hand_back = |accounting: Accounting, frames: Vec<zmq::Message>| {
            let mut all = vec![
                zmq::Message::from(identity.as_slice()),
                zmq::Message::from(accounting.to_bytes()),
            ];
            all.extend(frames);
            let last = all.len() - 1;
            for (index, frame) in all.into_iter().enumerate() {
                let more = if index < last { zmq::SNDMORE } else { 0 };
                if push.send(frame, more).is_err() {
                    return false; // the context is ending
                }
            }
            true
        };
        let (accounting, frames) = match &request {
            Request::Stat { name } => {
                // A large file: say 202 at once, then hash (the job stays
                // counted in the pool until the accounting-only message).
                let mut announce = || {
                    let (mut accounting, frames) = refused(
                        &request,
                        (Status::HASHING, "hashing the file: ask again".into()),
                    );
                    accounting.busy = true;
                    hand_back(accounting, frames);
                };
                match stat(shared, name, &mut buffer, &mut announce) {
                    Hashed::Now(Ok((size, hash))) => ok(protocol::stat_ok(name, size, &hash)),
                    Hashed::Now(Err(refusal)) => refused(&request, refusal),
                    Hashed::Announced => (Accounting::freed(), Vec::new()),
                }
            }
            _ => answer(shared, &request, compressor.as_mut()),
        };
        if !hand_back(accounting, frames) {
            return;
        }
    }
}

type Refusal = (Status, String);

fn refused(request: &Request, (status, why): Refusal) -> (Accounting, Vec<zmq::Message>) {
    let frames = protocol::refusal(request, status, &why);
    (
        Accounting {
            status: status.0,
            chunk: false,
            compressed: false,
            busy: false,
            raw: 0,
            wire: 0,
        },
        frames.into_iter().map(zmq::Message::from).collect(),
    )
}

fn ok(frames: Vec<Vec<u8>>) -> (Accounting, Vec<zmq::Message>) {
    (
        Accounting {
            status: 200,
            chunk: false,
            compressed: false,
            busy: false,
            raw: 0,
            wire: 0,
        },
        frames.into_iter().map(zmq::Message::from).collect(),
    )
}

/// The reply to one request (done on a reader thread).
fn answer(
    shared: &Shared,
    request: &Request,
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
) -> (Accounting, Vec<zmq::Message>) {
    let result = match request {
        Request::List { prefix } => {
            list(&shared.root, prefix).map(|entries| ok(protocol::list_ok(prefix, &entries)))
        }
        Request::Stat { .. } => Err((Status::READ_ERROR, "STAT is answered by `stat`".into())),
        Request::Fetch {
            name,
            offset,
            length,
            zstd,
        } => fetch(shared, name, *offset, *length, *zstd, compressor),
    };
    match result {
        Ok(answer) => answer,
        Err(refusal) => {
            if shared.verbose {
                log::info!(
                    "refused {}: {} {}",
                    describe(request),
                    refusal.0.describe(),
                    refusal.1
                );
            }
            refused(request, refusal)
        }
    }
}

/// Opens `name` under `root` (canonical) after every check in the module
/// docs: the open file, its canonical path and its metadata.
pub fn resolve(root: &Path, name: &str) -> Result<(File, PathBuf, Metadata), Refusal> {
    protocol::check_name(name).map_err(|why| (Status::REFUSED, why.to_string()))?;
    let path = inside(root, name)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| io_refusal(&e))?;
    let metadata = file.metadata().map_err(|e| io_refusal(&e))?;
    if !metadata.is_file() {
        return Err((Status::NOT_FOUND, "not a regular file".into()));
    }
    Ok((file, path, metadata))
}

/// `root/name` canonicalised, if it stays inside `root`.
fn inside(root: &Path, name: &str) -> Result<PathBuf, Refusal> {
    let path = root.join(name).canonicalize().map_err(|e| io_refusal(&e))?;
    if !path.starts_with(root) {
        return Err((
            Status::REFUSED,
            "the path leads outside the served directory".into(),
        ));
    }
    Ok(path)
}

fn io_refusal(e: &std::io::Error) -> Refusal {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => (Status::NOT_FOUND, "no such file".into()),
        ErrorKind::PermissionDenied => (Status::REFUSED, "permission denied".into()),
        _ if e.raw_os_error() == Some(libc::ELOOP) => (Status::REFUSED, "too many symlinks".into()),
        _ if e.raw_os_error() == Some(libc::ENOTDIR) => (Status::NOT_FOUND, "no such file".into()),
        _ => (Status::READ_ERROR, format!("cannot read: {e}")),
    }
}

fn fetch(
    shared: &Shared,
    name: &str,
    offset: u64,
    length: u32,
    accepts_zstd: bool,
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
) -> Result<(Accounting, Vec<zmq::Message>), Refusal> {
    if length > protocol::MAX_CHUNK {
        return Err((Status::TOO_LARGE, "chunk too large".into()));
    }
    // Checked before anything is read: BLAKE3 asserts it when hashing.
    if !tree::is_subtree(offset, u64::from(length)) {
        return Err((
            Status::MALFORMED,
            "the chunk is not a BLAKE3 subtree (offset a multiple of 1024, length at most its largest power-of-two divisor)".into(),
        ));
    }
    let (file, path, metadata) = resolve(&shared.root, name)?;
    let leaves = shared
        .cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .leaves(&CacheKey::new(path, &metadata));
    if let Some((prefix, delay)) = &shared.slow {
        if name.starts_with(prefix.as_str()) {
            std::thread::sleep(*delay);
        }
    }
    // (If the file shrank since, what there is.)
    let raw = crate::fileio::read_at_most(&file, metadata.len(), offset, length as usize)
        .map_err(|e| (Status::READ_ERROR, format!("cannot read: {e}")))?;
    let filled = raw.len();
    // The hash of these bytes as the file was when STAT hashed it, merged
    // from the cached leaves when they cover the chunk (no pass over the
    // bytes); else hashed now. A file changed since (same size and mtime)
    // makes the client's check fail, which it should.
    let hash = leaves
        .and_then(|leaves| leaves.chunk_hash(offset, raw.len() as u64))
        .unwrap_or_else(|| tree::chunk_hash(offset, &raw));
    let mut encoding = Encoding::Raw;
    let mut data = raw;
    if accepts_zstd && shared.compress && !data.is_empty() {
        if let Some(compressor) = compressor {
            // Room for one byte less than the raw data: a chunk that does
            // not shrink fails to fit and goes raw.
            let mut packed = Vec::with_capacity(data.len() - 1);
            if compressor
                .compress_to_buffer(&data[..], &mut packed)
                .is_ok()
                && packed.len() < data.len()
            {
                encoding = Encoding::Zstd;
                data = zmq::Message::from(packed);
            }
        }
    }
    let accounting = Accounting {
        status: 200,
        chunk: true,
        compressed: encoding == Encoding::Zstd,
        busy: false,
        raw: filled as u64,
        wire: data.len() as u64,
    };
    let mut frames: Vec<zmq::Message> = protocol::chunk_head(name, offset, encoding, &hash)
        .into_iter()
        .map(zmq::Message::from)
        .collect();
    frames.push(data);
    Ok((accounting, frames))
}

/// What [`stat`] did.
enum Hashed {
    /// The answer (from the cache, or hashed now).
    Now(Result<(u64, [u8; HASH_LEN]), Refusal>),
    /// 202 was announced and the hash is now in the cache (or its error).
    Announced,
}

/// STAT: the size and whole-file hash of `name`. Cached answers come at
/// once; a file up to [`HASH_NOW`] bytes is hashed before answering; a
/// larger one is announced with 202 (`announce`), hashed, and cached (its
/// error too), so the client's next STAT finds it; a STAT while another
/// reader hashes that file gets 202 at once.
fn stat(shared: &Shared, name: &str, buffer: &mut Vec<u8>, announce: &mut dyn FnMut()) -> Hashed {
    let (file, path, metadata) = match resolve(&shared.root, name) {
        Ok(resolved) => resolved,
        Err(refusal) => return Hashed::Now(Err(refusal)),
    };
    let key = CacheKey::new(path, &metadata);
    let size = key.size;
    {
        let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(answer) = cache.get(&key) {
            return Hashed::Now(answer.map(|hash| (size, hash)));
        }
        if size > HASH_NOW && !cache.hashing.insert(key.clone()) {
            return Hashed::Now(Err((Status::HASHING, "hashing the file: ask again".into())));
        }
    }
    let announced = size > HASH_NOW;
    if announced {
        announce();
    }
    let answer = hash_file(&file, size, buffer);
    let mut cache = shared.cache.lock().unwrap_or_else(|e| e.into_inner());
    cache.hashing.remove(&key);
    let answer = answer.map(|(hash, leaves)| {
        if let Some(leaves) = leaves {
            cache.insert_leaves(key.clone(), leaves);
        }
        hash
    });
    // A failure is cached only when the client was told 202 (it will ask
    // again and must get the error, not another 202).
    if answer.is_ok() || announced {
        cache.insert(key, answer.clone());
    }
    if announced {
        Hashed::Announced
    } else {
        Hashed::Now(answer.map(|hash| (size, hash)))
    }
}

/// BLAKE3 of the first `size` bytes of `file`, and its leaves for FETCH
/// ([`Leaves`]), in one pass (a file that shrank while being read is a read
/// error: its size was announced).
fn hash_file(
    file: &File,
    size: u64,
    buffer: &mut Vec<u8>,
) -> Result<([u8; HASH_LEN], Option<Leaves>), Refusal> {
    buffer.resize(1 << 20, 0);
    Leaves::hash_file(size, buffer, |offset, piece| {
        file.read_exact_at(piece, offset)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => (
                    Status::READ_ERROR,
                    "the file shrank while it was hashed".into(),
                ),
                _ => (Status::READ_ERROR, format!("cannot read: {e}")),
            })
    })
}

/// The regular files under `root/prefix` (or `prefix` itself if it is a
/// file), names relative to `root`, sorted.
pub fn list(root: &Path, prefix: &str) -> Result<Vec<Entry>, Refusal> {
    list_bounded(
        root,
        prefix,
        protocol::MAX_LIST_ENTRIES,
        protocol::MAX_LIST_BYTES,
    )
}

/// [`list`] with its bounds given: at most `max_entries` entries of at most
/// `max_bytes` on the wire (name and 12 bytes each), after looking at no
/// more than four times `max_entries` directory entries.
fn list_bounded(
    root: &Path,
    prefix: &str,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Vec<Entry>, Refusal> {
    protocol::check_prefix(prefix).map_err(|why| (Status::REFUSED, why.to_string()))?;
    let base = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        inside(root, prefix)?
    };
    let metadata = std::fs::metadata(&base).map_err(|e| io_refusal(&e))?;
    if metadata.is_file() {
        return Ok(vec![Entry {
            name: prefix.to_string(),
            size: metadata.len(),
        }]);
    }
    if !metadata.is_dir() {
        return Err((Status::NOT_FOUND, "not a regular file or directory".into()));
    }
    let too_many = || {
        (
            Status::TOO_LARGE,
            format!("more than {max_entries} entries"),
        )
    };
    let mut entries = Vec::new();
    let mut visited = 0usize;
    let mut bytes = 0usize;
    // (directory on disk, its name relative to the root as the client sees it)
    let mut stack = vec![(base, prefix.to_string())];
    while let Some((dir, relative)) = stack.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in listing.flatten() {
            visited += 1;
            if visited > 4 * max_entries {
                return Err(too_many());
            }
            let Some(file_name) = item.file_name().to_str().map(str::to_string) else {
                continue; // not UTF-8: cannot be named on the wire
            };
            let name = if relative.is_empty() {
                file_name
            } else {
                format!("{relative}/{file_name}")
            };
            if name.len() > protocol::MAX_NAME {
                continue;
            }
            let Ok(kind) = item.file_type() else {
                continue;
            };
            let size = if kind.is_dir() {
                stack.push((item.path(), name));
                continue;
            } else if kind.is_file() {
                item.metadata().map(|m| m.len()).ok()
            } else if kind.is_symlink() {
                // Listed only if it leads to a regular file inside the tree.
                match inside(root, &name) {
                    Ok(target) => std::fs::metadata(target)
                        .ok()
                        .filter(Metadata::is_file)
                        .map(|m| m.len()),
                    Err(_) => None,
                }
            } else {
                None
            };
            if let Some(size) = size {
                bytes += name.len() + 12;
                entries.push(Entry { name, size });
                if entries.len() > max_entries {
                    return Err(too_many());
                }
                if bytes > max_bytes {
                    return Err((
                        Status::TOO_LARGE,
                        format!("listing larger than {} MiB", max_bytes >> 20),
                    ));
                }
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    path: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    mtime_ns: u128,
}

impl CacheKey {
    fn new(path: PathBuf, metadata: &std::fs::Metadata) -> CacheKey {
        CacheKey {
            path,
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            mtime_ns: metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
        }
    }
}

/// Whole-file hashes (or why a file could not be hashed), at most
/// [`STAT_CACHE_ENTRIES`], oldest out first; the files being hashed now;
/// and the leaves of the files hashed last, at most [`LEAF_CACHE_BYTES`] of
/// them, oldest out first (a FETCH without them hashes what it sends).
#[derive(Default)]
struct StatCache {
    hashes: HashMap<CacheKey, Result<[u8; HASH_LEN], Refusal>>,
    order: VecDeque<CacheKey>,
    hashing: std::collections::HashSet<CacheKey>,
    leaves: HashMap<CacheKey, Arc<Leaves>>,
    leaves_order: VecDeque<CacheKey>,
    leaves_bytes: usize,
}

impl StatCache {
    fn get(&self, key: &CacheKey) -> Option<Result<[u8; HASH_LEN], Refusal>> {
        self.hashes.get(key).cloned()
    }

    fn leaves(&self, key: &CacheKey) -> Option<Arc<Leaves>> {
        self.leaves.get(key).cloned()
    }

    fn insert_leaves(&mut self, key: CacheKey, leaves: Leaves) {
        self.leaves_bytes += leaves.bytes();
        if let Some(old) = self.leaves.insert(key.clone(), Arc::new(leaves)) {
            self.leaves_bytes -= old.bytes();
        } else {
            self.leaves_order.push_back(key);
        }
        while self.leaves_bytes > LEAF_CACHE_BYTES {
            let Some(old) = self.leaves_order.pop_front() else {
                break;
            };
            if let Some(gone) = self.leaves.remove(&old) {
                self.leaves_bytes -= gone.bytes();
            }
        }
    }

    fn insert(&mut self, key: CacheKey, hash: Result<[u8; HASH_LEN], Refusal>) {
        if self.hashes.insert(key.clone(), hash).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > STAT_CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.hashes.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> (PathBuf, PathBuf) {
        let base =
            std::env::temp_dir().join(format!("zguide-filetransfer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("served");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.txt"), b"alpha").unwrap();
        std::fs::write(root.join("sub/b.bin"), vec![7u8; 3000]).unwrap();
        std::fs::write(root.join("sub/deeper/c"), b"").unwrap();
        std::fs::write(base.join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("sub/b.bin", root.join("inner-link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        (base, root.canonicalize().unwrap())
    }

    #[test]
    fn names_resolve_inside_the_tree_only() {
        let (base, root) = tree("resolve");
        assert!(resolve(&root, "a.txt").is_ok());
        assert!(
            resolve(&root, "inner-link").is_ok(),
            "a symlink that stays inside is fine"
        );
        let status = |name: &str| resolve(&root, name).err().map(|(status, _)| status);
        assert_eq!(status("escape"), Some(Status::REFUSED));
        assert_eq!(status("etc/passwd"), Some(Status::REFUSED));
        assert_eq!(status("../secret"), Some(Status::REFUSED));
        assert_eq!(status("/etc/passwd"), Some(Status::REFUSED));
        assert_eq!(status("sub/../../secret"), Some(Status::REFUSED));
        assert_eq!(status("missing"), Some(Status::NOT_FOUND));
        assert_eq!(
            status("sub"),
            Some(Status::NOT_FOUND),
            "a directory is not a file"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn listings_are_recursive_sorted_and_stay_inside() {
        let (base, root) = tree("list");
        let names: Vec<(String, u64)> = list(&root, "")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.size))
            .collect();
        assert_eq!(
            names,
            [
                ("a.txt".to_string(), 5),
                ("inner-link".to_string(), 3000),
                ("sub/b.bin".to_string(), 3000),
                ("sub/deeper/c".to_string(), 0),
            ]
        );
        let sub: Vec<String> = list(&root, "sub")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(sub, ["sub/b.bin", "sub/deeper/c"]);
        let one = list(&root, "a.txt").unwrap();
        assert_eq!(
            one,
            [Entry {
                name: "a.txt".into(),
                size: 5
            }]
        );
        assert_eq!(list(&root, "..").unwrap_err().0, Status::REFUSED);
        assert_eq!(list(&root, "etc").unwrap_err().0, Status::REFUSED);
        assert_eq!(list(&root, "nope").unwrap_err().0, Status::NOT_FOUND);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn accounting_survives_its_frame() {
        let a = Accounting {
            status: 429,
            chunk: true,
            compressed: true,
            busy: true,
            raw: 1 << 33,
            wire: 17,
        };
        let b = Accounting::from_bytes(&a.to_bytes());
        assert_eq!(
            (b.status, b.chunk, b.compressed, b.busy, b.raw, b.wire),
            (429, true, true, true, 1 << 33, 17)
        );
        let c = Accounting::from_bytes(&Accounting::freed().to_bytes());
        assert!(!c.busy && !c.chunk && c.status == 0);
    }

    #[test]
    fn a_large_file_is_announced_202_then_answered_from_the_cache() {
        let (base, root) = tree("stat");
        let big = root.join("big.img");
        File::create(&big).unwrap().set_len(HASH_NOW + 1).unwrap();
        let shared = Shared {
            root: root.clone(),
            compress: true,
            verbose: false,
            slow: None,
            cache: Mutex::new(StatCache::default()),
        };
        let mut buffer = Vec::new();
        let mut announced = 0;
        let first = stat(&shared, "big.img", &mut buffer, &mut || announced += 1);
        assert!(matches!(first, Hashed::Announced));
        assert_eq!(announced, 1);
        let zeros = {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&vec![0u8; (HASH_NOW + 1) as usize]);
            *hasher.finalize().as_bytes()
        };
        let again = stat(&shared, "big.img", &mut buffer, &mut || announced += 1);
        assert!(
            matches!(again, Hashed::Now(Ok((size, hash))) if size == HASH_NOW + 1 && hash == zeros)
        );
        assert_eq!(announced, 1, "the cache answers");
        // A small file is hashed before the answer, never announced.
        let small = stat(&shared, "a.txt", &mut buffer, &mut || announced += 1);
        assert!(matches!(small, Hashed::Now(Ok((5, hash))) if hash == protocol::hash(b"alpha")));
        // While another reader hashes it: 202 at once.
        std::fs::write(&big, b"changed").unwrap();
        File::options()
            .write(true)
            .open(&big)
            .unwrap()
            .set_len(HASH_NOW + 2)
            .unwrap();
        let metadata = std::fs::metadata(&big).unwrap();
        shared.cache.lock().unwrap().hashing.insert(CacheKey {
            path: big.canonicalize().unwrap(),
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            mtime_ns: metadata
                .modified()
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        });
        let busy = stat(&shared, "big.img", &mut buffer, &mut || announced += 1);
        assert!(matches!(busy, Hashed::Now(Err((Status::HASHING, _)))));
        assert_eq!(announced, 1);
        let _ = std::fs::remove_dir_all(&base);
    }

    /// FETCH answers a chunk's hash from the leaves STAT kept, not from the
    /// bytes it reads: proven by changing the file under the same size and
    /// mtime (the hash then still describes the file STAT hashed). Without
    /// leaves (a small file, or none cached) it hashes what it sends.
    #[test]
    fn fetch_takes_chunk_hashes_from_the_leaves_stat_kept() {
        let (base, root) = tree("leaves");
        let path = root.join("leafy.bin");
        let original: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let shared = Shared {
            root: root.clone(),
            compress: false,
            verbose: false,
            slow: None,
            cache: Mutex::new(StatCache::default()),
        };
        let chunk_hash_of = |shared: &Shared, offset: u64, length: u32| {
            let (_, frames) = fetch(shared, "leafy.bin", offset, length, false, None).unwrap();
            frames[6].to_vec()
        };
        let mut buffer = Vec::new();
        let stat_answer = stat(&shared, "leafy.bin", &mut buffer, &mut || {});
        assert!(
            matches!(stat_answer, Hashed::Now(Ok((300_000, hash))) if hash == protocol::hash(&original))
        );
        // Change the bytes, keep the size and the mtime.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut changed = original.clone();
        changed[70_000] ^= 0xff;
        std::fs::write(&path, &changed).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        // Whole leaves (64 KiB at 64 KiB; 128 KiB at 128 KiB): from the
        // leaves, i.e. the original bytes.
        let from_leaves = chunk_hash_of(&shared, 65_536, 65_536);
        assert_eq!(
            from_leaves,
            tree::chunk_hash(65_536, &original[65_536..131_072])
        );
        assert_ne!(
            from_leaves,
            tree::chunk_hash(65_536, &changed[65_536..131_072])
        );
        let last = chunk_hash_of(&shared, 262_144, 65_536);
        assert_eq!(last, tree::chunk_hash(262_144, &original[262_144..]));
        // Not whole leaves: hashed from the bytes read now.
        let part = chunk_hash_of(&shared, 65_536, 16_384);
        assert_eq!(part, tree::chunk_hash(65_536, &changed[65_536..81_920]));
        // A file changed with a new mtime is another cache key: no leaves.
        std::fs::write(&path, &changed).unwrap();
        let fresh = chunk_hash_of(&shared, 65_536, 65_536);
        assert_eq!(fresh, tree::chunk_hash(65_536, &changed[65_536..131_072]));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn the_leaf_cache_is_bounded_in_bytes() {
        let mut cache = StatCache::default();
        let mut buffer = Vec::new();
        // A 1 GiB file's leaves without reading a GiB: 16,384 of 64 KiB.
        let size = tree::MAX_LEAVES * tree::MIN_LEAF;
        let (_, leaves) =
            Leaves::hash_file(size, &mut buffer, |_, _: &mut [u8]| Ok::<(), ()>(())).unwrap();
        let leaves = leaves.unwrap();
        let each = leaves.bytes();
        assert_eq!(each, 512 << 10);
        let files = LEAF_CACHE_BYTES / each + 5;
        for i in 0..files as u64 {
            let key = CacheKey {
                path: PathBuf::from("x"),
                device: 0,
                inode: i,
                size,
                mtime_ns: 0,
            };
            cache.insert_leaves(key, leaves.clone());
        }
        assert!(cache.leaves_bytes <= LEAF_CACHE_BYTES);
        assert_eq!(cache.leaves.len(), LEAF_CACHE_BYTES / each);
        assert_eq!(cache.leaves_order.len(), cache.leaves.len());
        // The oldest went first.
        let oldest = CacheKey {
            path: PathBuf::from("x"),
            device: 0,
            inode: 0,
            size,
            mtime_ns: 0,
        };
        assert!(cache.leaves(&oldest).is_none());
        // The same file's leaves again replace the old ones, bytes and all.
        let newest = CacheKey {
            inode: files as u64 - 1,
            ..oldest
        };
        let before = cache.leaves_bytes;
        cache.insert_leaves(newest.clone(), leaves.clone());
        cache.insert_leaves(newest, leaves);
        assert_eq!(cache.leaves_bytes, before);
        assert_eq!(cache.leaves.len(), LEAF_CACHE_BYTES / each);
    }

    #[test]
    fn the_stat_cache_is_bounded() {
        let mut cache = StatCache::default();
        for i in 0..(STAT_CACHE_ENTRIES as u64 + 10) {
            let key = CacheKey {
                path: PathBuf::from("x"),
                device: 0,
                inode: i,
                size: 0,
                mtime_ns: 0,
            };
            cache.insert(key, Ok([0; HASH_LEN]));
        }
        assert_eq!(cache.hashes.len(), STAT_CACHE_ENTRIES);
        assert_eq!(cache.order.len(), STAT_CACHE_ENTRIES);
    }

    /// The ROUTER thread's scheduling, with the test as the readers: jobs
    /// go out in turn between clients, at most half the pool each; a client
    /// past its outstanding bound is refused; a reader's reply frees its
    /// slot and is counted.
    #[test]
    fn the_readers_are_shared_in_turn_between_clients_within_their_bounds() {
        let (base, root) = tree("schedule");
        let context = zmq::Context::new();
        let endpoint = format!("inproc://fileserver-schedule-{}", std::process::id());
        let options = ServerOptions {
            root,
            binds: vec![endpoint.clone()],
            readers: 4,
            max_outstanding: 3,
            ..ServerOptions::default()
        };
        let mut server = Server::new(&context, options).unwrap();
        let (jobs, queue) = mpsc::channel::<Job>();
        server.jobs = Some(jobs); // the real readers end: their queue closed
        let stat = |name: &str| Request::Stat { name: name.into() }.to_frames();
        let handed = |queue: &mpsc::Receiver<Job>| -> Vec<String> {
            queue
                .try_iter()
                .map(|job| match job.request {
                    Request::Stat { name } => {
                        format!("{}:{name}", String::from_utf8_lossy(&job.identity))
                    }
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // Alone, a client still gets half the pool at most.
        for name in ["a0", "a1", "a2"] {
            server.request(b"A".to_vec(), stat(name)).unwrap();
        }
        server.dispatch();
        assert_eq!(handed(&queue), ["A:a0", "A:a1"]);
        server.dispatch();
        assert!(handed(&queue).is_empty(), "past its share");
        // (A fresh start for the next part.)
        server.peers.clear();
        server.ring.clear();
        server.in_pool = 0;
        for (client, count) in [("A", 3), ("B", 3), ("C", 1)] {
            for n in 0..count {
                let name = format!("{}{n}", client.to_lowercase());
                server.request(client.into(), stat(&name)).unwrap();
            }
        }
        server.dispatch();
        // Four readers, two at most per client, clients in turn.
        assert_eq!(handed(&queue), ["A:a0", "B:b0", "C:c0", "A:a1"]);
        server.dispatch();
        assert!(handed(&queue).is_empty(), "the pool is full");
        // A has 3 outstanding (2 in the pool, 1 queued): one more is
        // refused (BUSY; A is not connected, so the refusal is dropped).
        server.request(b"A".to_vec(), stat("a3")).unwrap();
        assert_eq!((server.stats.refused, server.stats.dropped), (1, 1));
        // A reader finishes one of A's jobs: the slot goes to B, whose turn
        // comes before A's.
        let done = |identity: &[u8], account: Accounting, reply: &[&[u8]]| {
            let mut frames: VecDeque<zmq::Message> = [identity, &account.to_bytes()]
                .iter()
                .map(|f| zmq::Message::from(*f))
                .collect();
            frames.extend(reply.iter().map(|f| zmq::Message::from(*f)));
            frames
        };
        let free = Accounting {
            status: 200,
            chunk: false,
            compressed: false,
            busy: false,
            raw: 0,
            wire: 0,
        };
        server.forward(done(b"A", free, &[])).unwrap();
        server.dispatch();
        assert_eq!(handed(&queue), ["B:b1"]);
        // A `busy` reply (a STAT answered while the reader still hashes)
        // does not free the slot.
        let busy = Accounting { busy: true, ..free };
        server.forward(done(b"B", busy, &[])).unwrap();
        server.dispatch();
        assert!(handed(&queue).is_empty(), "a busy reader's slot was given");

        // Replies to a connected client are sent and counted.
        let client = context.socket(zmq::DEALER).unwrap();
        client.set_identity(b"D").unwrap();
        client.set_linger(0).unwrap();
        client.set_rcvtimeo(5000).unwrap();
        client.connect(&endpoint).unwrap();
        // (Once its first message is read, the ROUTER knows its routing id.)
        client.send("hello", 0).unwrap();
        assert_eq!(server.router.recv_multipart(0).unwrap()[0], b"D");
        let before = server.stats.clone();
        let chunk = Accounting {
            chunk: true,
            compressed: true,
            raw: 1000,
            wire: 600,
            ..free
        };
        server.forward(done(b"D", chunk, &[b"one"])).unwrap();
        assert_eq!(client.recv_multipart(0).unwrap(), [b"one".to_vec()]);
        let refused = Accounting {
            status: 400,
            ..free
        };
        server.forward(done(b"D", refused, &[b"two"])).unwrap();
        assert_eq!(client.recv_multipart(0).unwrap(), [b"two".to_vec()]);
        let stats = &server.stats;
        assert_eq!(
            (
                stats.chunks - before.chunks,
                stats.raw_bytes - before.raw_bytes,
                stats.wire_bytes - before.wire_bytes,
                stats.compressed - before.compressed,
                stats.refused - before.refused,
                stats.dropped - before.dropped,
            ),
            (1, 1000, 600, 1, 1, 0)
        );
        // A FETCH of MAX_CHUNK bytes is queued; one byte more is refused.
        let fetch = |length: u32| {
            Request::Fetch {
                name: "a.txt".into(),
                offset: 0,
                length,
                zstd: false,
            }
            .to_frames()
        };
        let refused_before = server.stats.refused;
        server
            .request(b"E".to_vec(), fetch(protocol::MAX_CHUNK))
            .unwrap();
        assert_eq!(server.stats.refused, refused_before);
        server
            .request(b"E".to_vec(), fetch(protocol::MAX_CHUNK + 1))
            .unwrap();
        assert_eq!(server.stats.refused, refused_before + 1);
        assert_eq!(server.peers[&b"E".to_vec()].queued.len(), 1);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn accounting_keeps_each_flag_apart() {
        for bits in 0..8u8 {
            let a = Accounting {
                status: 200,
                chunk: bits & 1 != 0,
                compressed: bits & 2 != 0,
                busy: bits & 4 != 0,
                raw: 1,
                wire: 2,
            };
            let b = Accounting::from_bytes(&a.to_bytes());
            assert_eq!(
                (b.chunk, b.compressed, b.busy),
                (a.chunk, a.compressed, a.busy),
                "flags {bits:03b}"
            );
        }
    }

    #[test]
    fn io_errors_become_the_documented_statuses() {
        use std::io::{Error as IoError, ErrorKind};
        let status = |e: IoError| io_refusal(&e).0;
        assert_eq!(status(ErrorKind::NotFound.into()), Status::NOT_FOUND);
        assert_eq!(status(ErrorKind::PermissionDenied.into()), Status::REFUSED);
        let (code, why) = io_refusal(&IoError::from_raw_os_error(libc::ELOOP));
        assert_eq!((code, why.as_str()), (Status::REFUSED, "too many symlinks"));
        let (code, why) = io_refusal(&IoError::from_raw_os_error(libc::ENOTDIR));
        assert_eq!((code, why.as_str()), (Status::NOT_FOUND, "no such file"));
        let (code, why) = io_refusal(&IoError::from_raw_os_error(libc::EIO));
        assert_eq!(code, Status::READ_ERROR);
        assert!(why.starts_with("cannot read: "), "{why}");
    }

    /// A FIFO in the served tree is refused at once: opened without
    /// O_NONBLOCK, it would wait for a writer for ever.
    #[test]
    fn a_fifo_is_not_a_file_and_does_not_block() {
        let (base, root) = tree("fifo");
        let fifo = root.join("pipe");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let (done_tx, done_rx) = mpsc::channel();
        let served = root.clone();
        std::thread::spawn(move || {
            let _ = done_tx.send(resolve(&served, "pipe").map(|_| ()));
        });
        let result = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("resolve returns without a writer");
        assert_eq!(
            result.unwrap_err(),
            (Status::NOT_FOUND, "not a regular file".to_string())
        );
        let _ = std::fs::remove_dir_all(base);
    }

    /// The whole path through the real readers: requests in, jobs to the
    /// pool, replies back through the results socket, several in a row.
    #[test]
    fn the_readers_answer_list_stat_and_fetches_one_after_another() {
        use protocol::Reply;
        use std::time::Instant;
        let (base, root) = tree("readers");
        let context = zmq::Context::new();
        let endpoint = format!("inproc://fileserver-readers-{}", std::process::id());
        let options = ServerOptions {
            root,
            binds: vec![endpoint.clone()],
            readers: 2,
            compress: false,
            ..ServerOptions::default()
        };
        let mut server = Server::new(&context, options).unwrap();
        let client = context.socket(zmq::DEALER).unwrap();
        client.set_linger(0).unwrap();
        client.connect(&endpoint).unwrap();
        let fetch = |name: &str, offset: u64, length: u32| Request::Fetch {
            name: name.into(),
            offset,
            length,
            zstd: false,
        };
        let requests = [
            Request::List {
                prefix: String::new(),
            },
            Request::Stat {
                name: "a.txt".into(),
            },
            fetch("a.txt", 0, 5),
            fetch("sub/b.bin", 1024, 1024),
            fetch("missing", 0, 10),
        ];
        for request in &requests {
            client.send_multipart(request.to_frames(), 0).unwrap();
        }
        let mut replies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while replies.len() < requests.len() {
            assert!(Instant::now() < deadline, "only {replies:?}");
            server.turn(50).unwrap();
            while let Ok(frames) = client.recv_multipart(zmq::DONTWAIT) {
                match protocol::parse_reply(frames) {
                    protocol::Parsed::Ok(reply) => replies.push(reply),
                    other => panic!("{other:?}"),
                }
            }
        }
        let mut seen = [false; 5];
        for reply in replies {
            match reply {
                Reply::ListOk { result, .. } => {
                    let names: Vec<String> = result.unwrap().into_iter().map(|e| e.name).collect();
                    assert!(names.contains(&"sub/b.bin".to_string()), "{names:?}");
                    seen[0] = true;
                }
                Reply::StatOk { name, result } => {
                    assert_eq!((name.as_str(), result.unwrap().0), ("a.txt", 5));
                    seen[1] = true;
                }
                Reply::Chunk {
                    name,
                    offset,
                    result,
                } => match (name.as_str(), offset) {
                    ("a.txt", 0) => {
                        assert_eq!(result.unwrap().data, b"alpha");
                        seen[2] = true;
                    }
                    ("sub/b.bin", 1024) => {
                        assert_eq!(result.unwrap().data, vec![7u8; 1024]);
                        seen[3] = true;
                    }
                    ("missing", 0) => {
                        assert_eq!(result.unwrap_err().0, Status::NOT_FOUND);
                        seen[4] = true;
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen, [true; 5]);
        drop(server);
        let _ = std::fs::remove_dir_all(base);
    }

    fn shared_for(root: &Path, compress: bool) -> Shared {
        Shared {
            root: root.to_path_buf(),
            compress,
            verbose: false,
            slow: None,
            cache: Mutex::new(StatCache::default()),
        }
    }

    #[test]
    fn fetch_takes_up_to_max_chunk_and_compresses_only_what_shrinks_for_who_accepts_it() {
        let (base, root) = tree("fetch-bounds");
        let mut noise = vec![0u8; 4096];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for byte in &mut noise {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        std::fs::write(root.join("noise"), &noise).unwrap();
        let mut compressor = zstd::bulk::Compressor::new(1).unwrap();
        let on = shared_for(&root, true);
        let off = shared_for(&root, false);
        let fetched = |shared: &Shared,
                       name: &str,
                       length: u32,
                       zstd: bool,
                       compressor: &mut zstd::bulk::Compressor<'static>| {
            fetch(shared, name, 0, length, zstd, Some(compressor))
        };
        assert!(fetched(&on, "a.txt", protocol::MAX_CHUNK, false, &mut compressor).is_ok());
        let refusal = fetched(
            &on,
            "a.txt",
            protocol::MAX_CHUNK + 1,
            false,
            &mut compressor,
        );
        assert_eq!(refusal.unwrap_err().0, Status::TOO_LARGE);
        // 3000 sevens: compressed for a client that accepts zstd on a
        // server that compresses, raw otherwise.
        let (accounting, frames) = fetched(&on, "sub/b.bin", 4096, true, &mut compressor).unwrap();
        assert!(accounting.compressed, "compressible, accepted, allowed");
        assert_eq!(accounting.raw, 3000);
        assert!(accounting.wire < 100, "{}", accounting.wire);
        assert_eq!(frames.last().unwrap().len() as u64, accounting.wire);
        for (shared, accepts) in [(&on, false), (&off, true)] {
            let (accounting, frames) =
                fetched(shared, "sub/b.bin", 4096, accepts, &mut compressor).unwrap();
            assert!(!accounting.compressed);
            assert_eq!((accounting.raw, accounting.wire), (3000, 3000));
            assert_eq!(&frames.last().unwrap()[..], &[7u8; 3000][..]);
        }
        // Noise does not shrink: raw. An empty file: raw, nothing to pack.
        let (accounting, frames) = fetched(&on, "noise", 4096, true, &mut compressor).unwrap();
        assert!(!accounting.compressed);
        assert_eq!(&frames.last().unwrap()[..], &noise[..]);
        for accepts in [false, true] {
            let (accounting, _) =
                fetched(&on, "sub/deeper/c", 4096, accepts, &mut compressor).unwrap();
            assert_eq!((accounting.compressed, accounting.wire), (false, 0));
        }
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_file_of_hash_now_bytes_is_hashed_at_once_and_cached() {
        let (base, root) = tree("stat-bound");
        let path = root.join("edge.img");
        File::create(&path).unwrap().set_len(HASH_NOW).unwrap();
        let shared = shared_for(&root, false);
        let mut announced = false;
        let answer = stat(&shared, "edge.img", &mut Vec::new(), &mut || {
            announced = true
        });
        assert!(matches!(answer, Hashed::Now(Ok((HASH_NOW, _)))));
        assert!(!announced, "HASH_NOW bytes are hashed before answering");
        let key = CacheKey::new(path.clone(), &std::fs::metadata(&path).unwrap());
        assert!(
            shared.cache.lock().unwrap().get(&key).is_some(),
            "the answer is cached"
        );
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_file_that_shrinks_while_hashed_is_a_read_error() {
        let (base, root) = tree("shrunk");
        let file = File::open(root.join("a.txt")).unwrap();
        let error = hash_file(&file, 5 + 100, &mut Vec::new()).unwrap_err();
        assert_eq!(
            error,
            (
                Status::READ_ERROR,
                "the file shrank while it was hashed".to_string()
            )
        );
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn listings_stop_at_their_bounds_and_not_before() {
        let (base, root) = tree("list-bounds");
        // a.txt, inner-link, sub/b.bin, sub/deeper/c: 4 entries, 84 bytes.
        let names =
            |entries: Vec<Entry>| -> Vec<String> { entries.into_iter().map(|e| e.name).collect() };
        assert_eq!(
            names(list_bounded(&root, "", 4, 84).unwrap()),
            ["a.txt", "inner-link", "sub/b.bin", "sub/deeper/c"]
        );
        let too_large = |result: Result<Vec<Entry>, Refusal>| {
            assert_eq!(result.unwrap_err().0, Status::TOO_LARGE);
        };
        too_large(list_bounded(&root, "", 3, 1000));
        too_large(list_bounded(&root, "", 100, 83));
        // Looked at: at most four entries of the directory per entry
        // allowed. Eleven empty directories and a file are twelve.
        let wide = base.join("wide");
        for n in 0..11 {
            std::fs::create_dir_all(wide.join(format!("d{n}"))).unwrap();
        }
        std::fs::write(wide.join("f"), b"x").unwrap();
        let wide = wide.canonicalize().unwrap();
        assert_eq!(names(list_bounded(&wide, "", 3, 1000).unwrap()), ["f"]);
        too_large(list_bounded(&wide, "", 2, 1000));
        // Names: up to MAX_NAME bytes are listed, longer ones skipped.
        let deep = base.join("deep");
        let dirs = ["a", "b", "c", "d"].map(|c| c.repeat(250)).join("/");
        std::fs::create_dir_all(deep.join(&dirs)).unwrap();
        let longest = protocol::MAX_NAME - dirs.len() - 1;
        std::fs::write(deep.join(&dirs).join("x".repeat(longest)), b"").unwrap();
        std::fs::write(deep.join(&dirs).join("y".repeat(longest + 1)), b"").unwrap();
        let listed = names(list_bounded(&deep.canonicalize().unwrap(), "", 10, 1 << 20).unwrap());
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].len(), protocol::MAX_NAME);
        let _ = std::fs::remove_dir_all(base);
    }
}
