//! Accepted requests kept in an embedded, crash-safe database, so that a
//! broker killed at any moment (SIGKILL, a panic, the OOM killer) and started
//! again loses no request it had accepted.
//!
//! The broker calls [`Store::accept`] with the requests it has just read,
//! before it queues them; [`Store::forget`] once they are answered; and
//! [`Store::load`] at start, to queue again what was accepted and never
//! answered.
//!
//! ## Why redb
//!
//! [redb](https://www.redb.org) is an embedded key-value store written in
//! Rust only (no C toolchain, no server). Its B-trees are copy-on-write: a
//! commit writes new pages beside the old ones and then flips a checksummed
//! header, so a crash in the middle of a commit leaves the previous commit
//! intact, and a torn write is detected by its checksum and rolled back when
//! the file is opened again. The file is locked: a second broker cannot open
//! the same store.
//!
//! ## What is durable when
//!
//! * [`Store::accept`] commits its whole batch in one transaction with
//!   `Durability::Immediate`: when it returns `Ok`, the batch is on disk
//!   (fsync'd) and survives a power loss, not only a process crash. Batching
//!   is what makes it fast: one fsync per batch, not per request.
//! * [`Store::forget`] commits with `Durability::None` (no fsync), unless the
//!   last durable commit is older than [`FORGET_SYNC_INTERVAL`]. A forget
//!   lost in a crash only means the request is queued again after the
//!   restart and answered twice; clients drop the second answer by its
//!   correlation id. Any later durable commit (the next accept, the periodic
//!   one, [`Store::sync`], or dropping the store) makes earlier forgets
//!   durable too.
//! * [`Store::load`] deletes the records it cannot use durably.
//!
//! ## Bounds
//!
//! A record is the client token and the request, each field length-prefixed
//! (a version byte, then little-endian `u32` lengths). Every field is checked
//! against the protocol's bounds both when a request is accepted (the whole
//! batch is refused, nothing stored) and when it is loaded: service and
//! address at most [`MAX_NAME`] bytes, correlation 1–[`MAX_CORRELATION`]
//! bytes, properties at most [`MAX_PROPERTIES`] bytes and parsed again with
//! [`Properties::parse`], client token 1–[`MAX_CLIENT`] bytes, at most
//! [`MAX_BODY_FRAMES`] body frames of at most [`MAX_BODY_FRAME`] bytes each.
//! A stored record that breaks one (a bug, a file from elsewhere, a disk that
//! lies) is logged, bounded and escaped, and deleted; it never stops the
//! broker.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::broker::protocol::{Properties, Request, MAX_CORRELATION, MAX_NAME, MAX_PROPERTIES};
use crate::message::show;
use crate::Error;

/// The longest client token, in bytes.
pub const MAX_CLIENT: usize = 256;
/// The largest body frame, in bytes (the broker's `MAXMSGSIZE`).
pub const MAX_BODY_FRAME: usize = 4 << 20;
/// The most body frames in one request.
pub const MAX_BODY_FRAMES: usize = 1000;
/// A forget commits durably if the last durable commit is older than this.
pub const FORGET_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Requests by id: the id is the order of acceptance.
const REQUESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("requests");
/// The next id, so ids are never used twice, even after every request was
/// forgotten and the broker restarted.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";
/// The first byte of every record: the encoding's version.
const VERSION: u8 = 1;
/// How many bad records [`Store::load`] describes one by one.
const LOGGED_BAD_RECORDS: usize = 10;

/// A request as stored: the broker's client token and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: u64,
    pub client: Vec<u8>,
    pub request: Request,
}

/// The request store; see the module docs. Its errors are
/// [`Error::Protocol`] with a text that begins `request store:` (the crate's
/// error has no storage variant).
pub struct Store {
    db: Database,
    path: PathBuf,
    next_id: u64,
    /// When the last durable commit returned.
    last_durable: Instant,
    /// Whether a non-durable commit came after it.
    unsynced: bool,
}

/// Turns a redb (or other) error into the crate's error, saying where.
trait OrStore<T> {
    fn or_store(self, what: &str) -> Result<T, Error>;
}

impl<T, E: Display> OrStore<T> for Result<T, E> {
    fn or_store(self, what: &str) -> Result<T, Error> {
        // `Error` has no storage variant; `Protocol` is the one with a text.
        self.map_err(|e| Error::Protocol(format!("request store: {what}: {e}")))
    }
}

impl Store {
    /// Opens or creates the database file (parent directories must exist).
    /// A file left by a crash is checked and repaired by redb here.
    pub fn open(path: &Path) -> Result<Store, Error> {
        let at = |what: &str| format!("{what} {}", path.display());
        let db = Database::create(path).or_store(&at("open"))?;
        let mut txn = db.begin_write().or_store(&at("begin"))?;
        txn.set_durability(Durability::Immediate);
        let next_id = {
            let requests = txn.open_table(REQUESTS).or_store(&at("open table"))?;
            let meta = txn.open_table(META).or_store(&at("open table"))?;
            let counted = meta.get(NEXT_ID).or_store(&at("read"))?.map(|v| v.value());
            let last = requests
                .last()
                .or_store(&at("read"))?
                .map(|(k, _)| k.value());
            let after_last = last.map_or(0, |id| id.saturating_add(1));
            counted.unwrap_or(0).max(after_last)
        };
        txn.commit().or_store(&at("commit"))?;
        Ok(Store {
            db,
            path: path.to_path_buf(),
            next_id,
            last_durable: Instant::now(),
            unsynced: false,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Persists a batch durably in ONE transaction (fsync'd on return) and
    /// returns the new ids, in order. A request past a bound (see the module
    /// docs) refuses the whole batch: nothing is stored.
    pub fn accept(&mut self, batch: &[(&[u8], &Request)]) -> Result<Vec<u64>, Error> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let records = batch
            .iter()
            .enumerate()
            .map(|(index, (client, request))| {
                check(client, request).map_err(|what| {
                    Error::Protocol(format!(
                        "request store: request {index} of the batch not stored: {what}"
                    ))
                })?;
                Ok(encode(client, request))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let first = self.next_id;
        let end = u64::try_from(records.len())
            .ok()
            .and_then(|n| first.checked_add(n))
            .ok_or_else(|| Error::Protocol("request store: ids exhausted".into()))?;
        let mut txn = self.db.begin_write().or_store("begin")?;
        txn.set_durability(Durability::Immediate);
        {
            let mut requests = txn.open_table(REQUESTS).or_store("open table")?;
            for (id, record) in (first..end).zip(&records) {
                requests.insert(id, record.as_slice()).or_store("insert")?;
            }
            let mut meta = txn.open_table(META).or_store("open table")?;
            meta.insert(NEXT_ID, end).or_store("insert")?;
        }
        txn.commit().or_store("commit")?;
        self.next_id = end;
        self.durable_now();
        Ok((first..end).collect())
    }

    /// Forgets answered requests (unknown ids are ignored). The commit is not
    /// fsync'd, unless the last durable one is older than
    /// [`FORGET_SYNC_INTERVAL`]: a forget lost in a crash only means a
    /// duplicate answer after the restart, which clients drop by correlation
    /// id. The next durable commit (an accept, a later forget, [`Store::sync`]
    /// or dropping the store) makes it durable.
    pub fn forget(&mut self, ids: &[u64]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let durable = self.last_durable.elapsed() >= FORGET_SYNC_INTERVAL;
        let mut txn = self.db.begin_write().or_store("begin")?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        {
            let mut requests = txn.open_table(REQUESTS).or_store("open table")?;
            for &id in ids {
                requests.remove(id).or_store("remove")?;
            }
        }
        txn.commit().or_store("commit")?;
        if durable {
            self.durable_now();
        } else {
            self.unsynced = true;
        }
        Ok(())
    }

    /// Makes every earlier commit durable (an empty fsync'd commit), if any
    /// was not. For a clean shutdown; dropping the store does it too.
    pub fn sync(&mut self) -> Result<(), Error> {
        if !self.unsynced {
            return Ok(());
        }
        let mut txn = self.db.begin_write().or_store("begin")?;
        txn.set_durability(Durability::Immediate);
        txn.commit().or_store("commit")?;
        self.durable_now();
        Ok(())
    }

    /// Everything accepted and not forgotten, oldest first. A record that
    /// does not decode or breaks a bound is logged (escaped, short) and
    /// deleted, durably.
    pub fn load(&mut self) -> Result<Vec<Stored>, Error> {
        let mut txn = self.db.begin_write().or_store("begin")?;
        txn.set_durability(Durability::Immediate);
        let mut stored = Vec::new();
        let mut bad = Vec::new();
        {
            let mut requests = txn.open_table(REQUESTS).or_store("open table")?;
            for entry in requests.iter().or_store("read")? {
                let (id, record) = entry.or_store("read")?;
                let (id, record) = (id.value(), record.value());
                match decode(record) {
                    Ok((client, request)) => stored.push(Stored {
                        id,
                        client,
                        request,
                    }),
                    Err(what) => {
                        if bad.len() < LOGGED_BAD_RECORDS {
                            log::warn!(
                                "request store {}: record {id} deleted: {what} ({} bytes: {})",
                                self.path.display(),
                                record.len(),
                                show(record)
                            );
                        }
                        bad.push(id);
                    }
                }
            }
            for &id in &bad {
                requests.remove(id).or_store("remove")?;
            }
        }
        if bad.len() > LOGGED_BAD_RECORDS {
            log::warn!(
                "request store {}: {} more bad records deleted",
                self.path.display(),
                bad.len() - LOGGED_BAD_RECORDS
            );
        }
        txn.commit().or_store("commit")?;
        self.durable_now();
        Ok(stored)
    }

    /// How many requests are stored.
    pub fn len(&self) -> Result<usize, Error> {
        let txn = self.db.begin_read().or_store("begin")?;
        let requests = txn.open_table(REQUESTS).or_store("open table")?;
        let len = requests.len().or_store("read")?;
        usize::try_from(len).or_store("count")
    }

    /// Whether no request is stored.
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    fn durable_now(&mut self) {
        self.last_durable = Instant::now();
        self.unsynced = false;
    }
}

impl Drop for Store {
    /// Makes the last forgets durable, best effort: a failure is logged, and
    /// costs at most duplicate answers after the restart.
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            log::warn!("{e}");
        }
    }
}

/// Checks a request against the bounds of the module docs.
fn check(client: &[u8], request: &Request) -> Result<(), String> {
    let lengths = [
        ("client token", client.len(), 1, MAX_CLIENT),
        ("service", request.service.len(), 0, MAX_NAME),
        ("address", request.address.len(), 0, MAX_NAME),
        ("correlation", request.correlation.len(), 1, MAX_CORRELATION),
        (
            "properties",
            request.properties.raw.len(),
            0,
            MAX_PROPERTIES,
        ),
        ("body", request.body.len(), 0, MAX_BODY_FRAMES),
    ];
    for (what, len, min, max) in lengths {
        if len < min || len > max {
            return Err(format!("{what} of {len}, not {min}-{max}"));
        }
    }
    if let Some(frame) = request.body.iter().find(|f| f.len() > MAX_BODY_FRAME) {
        return Err(format!("a body frame of {} bytes", frame.len()));
    }
    Properties::parse(&request.properties.raw).map_err(|e| e.what)?;
    Ok(())
}

/// A record: the version byte, then client, service, address, properties and
/// correlation, each a little-endian `u32` length and the bytes, then the
/// number of body frames as a `u32` and each frame the same way. Called only
/// on requests that passed [`check`], so every length fits a `u32`.
fn encode(client: &[u8], request: &Request) -> Vec<u8> {
    let body: usize = request.body.iter().map(|f| f.len() + 4).sum();
    let mut record = Vec::with_capacity(
        1 + 24
            + client.len()
            + request.service.len()
            + request.address.len()
            + request.properties.raw.len()
            + request.correlation.len()
            + body,
    );
    record.push(VERSION);
    let mut put = |bytes: &[u8]| {
        record.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        record.extend_from_slice(bytes);
    };
    put(client);
    put(&request.service);
    put(&request.address);
    put(&request.properties.raw);
    put(&request.correlation);
    record.extend_from_slice(&(request.body.len() as u32).to_le_bytes());
    for frame in &request.body {
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(frame);
    }
    record
}

/// Reads a record, every length checked before it is used.
fn decode(record: &[u8]) -> Result<(Vec<u8>, Request), String> {
    let mut reader = Reader { rest: record };
    match reader.take(1, "version")? {
        [VERSION] => {}
        other => return Err(format!("unknown version {other:?}")),
    }
    let client = reader.field("client token", MAX_CLIENT)?;
    let service = reader.field("service", MAX_NAME)?;
    let address = reader.field("address", MAX_NAME)?;
    let properties = reader.field("properties", MAX_PROPERTIES)?;
    let correlation = reader.field("correlation", MAX_CORRELATION)?;
    let count = reader.length("body frame count", MAX_BODY_FRAMES)?;
    let body = (0..count)
        .map(|_| reader.field("body frame", MAX_BODY_FRAME))
        .collect::<Result<Vec<_>, _>>()?;
    if !reader.rest.is_empty() {
        return Err(format!("{} bytes after the last field", reader.rest.len()));
    }
    let request = Request {
        service,
        address,
        properties: Properties::parse(&properties).map_err(|e| e.what)?,
        correlation,
        body,
    };
    check(&client, &request)?;
    Ok((client, request))
}

/// The unread part of a record.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if len > self.rest.len() {
            return Err(format!("{what} cut short"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn length(&mut self, what: &str, max: usize) -> Result<usize, String> {
        let bytes: [u8; 4] = self
            .take(4, what)?
            .try_into()
            .map_err(|_| format!("{what} cut short"))?;
        let len = u32::from_le_bytes(bytes) as usize;
        if len > max {
            return Err(format!("{what} of {len}, more than {max}"));
        }
        Ok(len)
    }

    fn field(&mut self, what: &str, max: usize) -> Result<Vec<u8>, String> {
        let len = self.length(what, max)?;
        Ok(self.take(len, what)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    use crate::test_support::TempDir;

    /// The store's file in `dir`.
    fn db(dir: &TempDir) -> PathBuf {
        dir.path().join("requests.redb")
    }

    fn request(n: u64) -> Request {
        Request {
            service: b"echo".to_vec(),
            address: b"alice".to_vec(),
            properties: Properties::build(Some(1_800_000_000_000), 3, Some("test"), true, None),
            correlation: n.to_string().into_bytes(),
            body: vec![
                format!("hello {n}").into_bytes(),
                Vec::new(),
                vec![0xff; 10],
            ],
        }
    }

    fn accept(store: &mut Store, from: u64, to: u64) -> Vec<u64> {
        let requests: Vec<Request> = (from..to).map(request).collect();
        let batch: Vec<(&[u8], &Request)> = requests.iter().map(|r| (&b"C1"[..], r)).collect();
        store.accept(&batch).unwrap()
    }

    fn correlations(stored: &[Stored]) -> Vec<u64> {
        stored
            .iter()
            .map(|s| {
                String::from_utf8(s.request.correlation.clone())
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn accept_forget_and_load_keep_requests_in_order() {
        let dir = TempDir::new("store-round-trip");
        let mut store = Store::open(&db(&dir)).unwrap();
        assert!(store.is_empty().unwrap());
        let ids = accept(&mut store, 0, 5);
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert!(!store.is_empty().unwrap());
        assert_eq!(accept(&mut store, 5, 7), vec![5, 6]);
        store.forget(&[1, 3, 99]).unwrap();
        assert_eq!(store.len().unwrap(), 5);
        let stored = store.load().unwrap();
        assert_eq!(
            stored.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![0, 2, 4, 5, 6]
        );
        assert_eq!(correlations(&stored), vec![0, 2, 4, 5, 6]);
        assert_eq!(stored[1].client, b"C1");
        assert_eq!(stored[1].request, request(2));
        drop(store);
        // Forgets are durable after a clean close.
        let mut store = Store::open(&db(&dir)).unwrap();
        assert_eq!(correlations(&store.load().unwrap()), vec![0, 2, 4, 5, 6]);
    }

    #[test]
    fn ids_continue_after_a_reopen_even_when_everything_was_forgotten() {
        let dir = TempDir::new("store-ids");
        let mut store = Store::open(&db(&dir)).unwrap();
        assert_eq!(accept(&mut store, 0, 3), vec![0, 1, 2]);
        drop(store);
        let mut store = Store::open(&db(&dir)).unwrap();
        assert_eq!(accept(&mut store, 3, 4), vec![3]);
        store.forget(&[0, 1, 2, 3]).unwrap();
        drop(store);
        let mut store = Store::open(&db(&dir)).unwrap();
        assert!(store.load().unwrap().is_empty());
        assert_eq!(accept(&mut store, 4, 6), vec![4, 5]);
    }

    #[test]
    fn a_batch_past_a_bound_is_refused_whole() {
        let dir = TempDir::new("store-bounds");
        let mut store = Store::open(&db(&dir)).unwrap();
        let good = request(1);
        let mut long_correlation = request(2);
        long_correlation.correlation = vec![b'c'; MAX_CORRELATION + 1];
        let mut bad_properties = request(3);
        bad_properties.properties.raw = vec![0x92, 0x01, 0x02];
        let mut many_frames = request(4);
        many_frames.body = vec![Vec::new(); MAX_BODY_FRAMES + 1];
        let long_client = vec![b'k'; MAX_CLIENT + 1];
        let batches: Vec<Vec<(&[u8], &Request)>> = vec![
            vec![(b"C", &good), (b"C", &long_correlation)],
            vec![(b"C", &good), (b"C", &bad_properties)],
            vec![(b"C", &many_frames)],
            vec![(b"", &good)],
            vec![(&long_client, &good)],
        ];
        for batch in batches {
            assert!(store.accept(&batch).is_err());
        }
        assert_eq!(store.len().unwrap(), 0);
        assert_eq!(store.accept(&[(b"C", &good)]).unwrap(), vec![0]);
    }

    #[test]
    fn a_request_at_every_bound_is_kept_and_one_byte_more_is_refused() {
        let dir = TempDir::new("store-at-bounds");
        let mut store = Store::open(&db(&dir)).unwrap();
        let mut largest = request(1);
        largest.service = vec![b's'; MAX_NAME];
        largest.address = vec![b'a'; MAX_NAME];
        largest.correlation = vec![b'7'; MAX_CORRELATION];
        largest.body = vec![vec![b'b'; 1]; MAX_BODY_FRAMES];
        largest.body[0] = vec![b'B'; MAX_BODY_FRAME];
        let client = vec![b'k'; MAX_CLIENT];
        assert_eq!(store.accept(&[(&client, &largest)]).unwrap(), vec![0]);
        let stored = store.load().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].client, client);
        assert_eq!(stored[0].request, largest);

        let mut frame_too_big = request(2);
        frame_too_big.body[0] = vec![b'B'; MAX_BODY_FRAME + 1];
        assert!(store.accept(&[(b"C", &frame_too_big)]).is_err());
        let mut service_too_long = request(3);
        service_too_long.service = vec![b's'; MAX_NAME + 1];
        assert!(store.accept(&[(b"C", &service_too_long)]).is_err());
        assert_eq!(store.len().unwrap(), 1);
    }

    #[test]
    fn records_that_do_not_decode_or_break_a_bound_are_deleted_by_load() {
        let dir = TempDir::new("store-garbage");
        let mut store = Store::open(&db(&dir)).unwrap();
        accept(&mut store, 0, 2);
        let mut long_correlation = request(9);
        long_correlation.correlation = vec![b'c'; MAX_CORRELATION + 1];
        let mut bad_properties = request(9);
        bad_properties.properties.raw = vec![0x92, 0x01, 0x02];
        let mut trailing = encode(b"C1", &request(9));
        trailing.push(0);
        let mut huge_length = encode(b"C1", &request(9));
        huge_length[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let garbage: Vec<Vec<u8>> = vec![
            b"\x00garbage\n\x1b[31m".to_vec(),
            Vec::new(),
            encode(b"C1", &long_correlation),
            encode(b"C1", &bad_properties),
            encode(b"", &request(9)),
            trailing,
            huge_length,
            encode(b"C1", &request(9))[..20].to_vec(),
        ];
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut table = txn.open_table(REQUESTS).unwrap();
                for (key, bytes) in (10..).zip(&garbage) {
                    table.insert(key, bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        accept(&mut store, 2, 3);
        assert_eq!(store.len().unwrap(), 3 + garbage.len());
        let stored = store.load().unwrap();
        assert_eq!(correlations(&stored), vec![0, 1, 2]);
        assert_eq!(store.len().unwrap(), 3);
        drop(store);
        let mut store = Store::open(&db(&dir)).unwrap();
        assert_eq!(store.len().unwrap(), 3);
        assert_eq!(correlations(&store.load().unwrap()), vec![0, 1, 2]);
    }

    #[test]
    fn a_batch_of_a_thousand_survives_a_reopen() {
        let dir = TempDir::new("store-thousand");
        let mut store = Store::open(&db(&dir)).unwrap();
        let ids = accept(&mut store, 0, 1000);
        assert_eq!(ids, (0..1000).collect::<Vec<_>>());
        drop(store);
        let mut store = Store::open(&db(&dir)).unwrap();
        let stored = store.load().unwrap();
        assert_eq!(correlations(&stored), (0..1000).collect::<Vec<_>>());
        assert!(stored.iter().all(|s| s.request == request(s.id)));
    }

    const CHILD: &str = "ZGUIDE_STORE_CHILD";
    const CRASH_TEST: &str = "broker::store::tests::every_reported_request_survives_a_sigkill";

    /// The child's loop: a batch of 50 accepted, its first 20 forgotten (a
    /// non-durable commit, mostly), and the 30 kept reported as `kept FIRST
    /// LAST`. Runs until it is killed, or 60 s have passed (should the
    /// parent have died first).
    fn writer(path: &Path) -> ! {
        use std::io::Write;
        let start = Instant::now();
        let mut store = Store::open(path).unwrap();
        let mut out = std::io::stdout();
        // libtest has printed "test NAME ... " without a newline.
        writeln!(out).unwrap();
        let mut next = 0;
        loop {
            if start.elapsed() > Duration::from_secs(60) {
                std::process::exit(1);
            }
            let ids = accept(&mut store, next, next + 50);
            store.forget(&ids[..20]).unwrap();
            writeln!(out, "kept {} {}", ids[20], ids[49]).unwrap();
            out.flush().unwrap();
            next += 50;
        }
    }

    /// SIGKILL tests a process crash: what a commit wrote is in the OS page
    /// cache, which survives the process. That an accept's commit also
    /// survives a power loss rests on redb's fsync'd `Durability::Immediate`
    /// commit, which this test cannot see; it does fail if `accept` commits
    /// non-durably, since redb then keeps the commit in the process' memory.
    #[test]
    fn every_reported_request_survives_a_sigkill() {
        if let Some(path) = std::env::var_os(CHILD) {
            writer(Path::new(&path));
        }
        let dir = TempDir::new("store-crash");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, db(&dir))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });

        let deadline = Instant::now() + Duration::from_secs(30);
        let mut output = Vec::new();
        let mut kept = std::collections::BTreeSet::new();
        let mut failure = None;
        while kept.len() < 2000 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match received.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    failure = Some(format!("no 2,000 ids reported in 30 s: {e}"));
                    break;
                }
            };
            if let ["kept", first, last] = line.split_whitespace().collect::<Vec<_>>()[..] {
                kept.extend(first.parse::<u64>().unwrap()..=last.parse::<u64>().unwrap());
            }
            output.push(line);
        }
        // SIGKILL, as `kill -9` would: no destructor, no flush, no close.
        // SAFETY: kill(2) on our own child, not reaped yet (its pid is ours).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let status = child.wait().unwrap();
        let _ = reader.join();
        let errors = errors.join().unwrap_or_default();
        let shown = || {
            let tail = &output[output.len().saturating_sub(20)..];
            format!(
                "child {status}\nstdout (last lines):\n{}\nstderr:\n{errors}",
                tail.join("\n")
            )
        };
        if let Some(failure) = failure {
            panic!("{failure}\n{}", shown());
        }
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", shown());
        }

        let mut store = Store::open(&db(&dir)).unwrap();
        let stored = store.load().unwrap();
        let present: std::collections::BTreeSet<u64> = stored.iter().map(|s| s.id).collect();
        let missing: Vec<&u64> = kept.iter().filter(|id| !present.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{} reported ids missing after SIGKILL, first {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            shown()
        );
        assert!(stored.iter().all(|s| s.request == request(s.id)));
        // Ids go on after the highest one stored.
        let highest = present.iter().next_back().copied().unwrap_or(0);
        let next = accept(&mut store, 0, 1)[0];
        assert!(next > highest, "id {next} after {highest}");
    }

    const EXIT_CHILD: &str = "ZGUIDE_STORE_EXIT_CHILD";
    const EXIT_TEST: &str = "broker::store::tests::a_forget_is_durable_only_once_synced";

    /// The child of [`a_forget_is_durable_only_once_synced`]: three requests
    /// accepted (durably), the first forgotten at once (so not durably),
    /// `sync` called or not, then the process ends without the store's
    /// destructor, as a crash would.
    fn forget_then_exit(path: &Path, sync: bool) -> ! {
        let mut store = Store::open(path).unwrap();
        if !sync {
            // Past the interval since the store was opened: what counts is
            // the accept's durable commit, not the open.
            std::thread::sleep(FORGET_SYNC_INTERVAL + Duration::from_millis(100));
        }
        accept(&mut store, 0, 3);
        store.forget(&[0]).unwrap();
        if sync {
            store.sync().unwrap();
        }
        std::process::exit(0);
    }

    /// What survives the child's end, by whether it synced.
    fn after_exit(sync: bool) -> Vec<u64> {
        let dir = TempDir::new(if sync {
            "store-synced"
        } else {
            "store-unsynced"
        });
        let status = Command::new(std::env::current_exe().unwrap())
            .args([EXIT_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(EXIT_CHILD, format!("{}:{}", sync, db(&dir).display()))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "child {status}");
        let mut store = Store::open(&db(&dir)).unwrap();
        correlations(&store.load().unwrap())
    }

    #[test]
    fn a_forget_is_durable_only_once_synced() {
        if let Ok(spec) = std::env::var(EXIT_CHILD) {
            let (sync, path) = spec.split_once(':').unwrap();
            forget_then_exit(Path::new(path), sync == "true");
        }
        // A forget within FORGET_SYNC_INTERVAL of the last durable commit
        // is not fsync'd: a crash brings the request back (answered twice,
        // dropped by the client by correlation id), as documented.
        assert_eq!(after_exit(false), vec![0, 1, 2]);
        // `sync` makes it durable.
        assert_eq!(after_exit(true), vec![1, 2]);
    }

    #[test]
    fn load_logs_ten_bad_records_and_counts_the_rest() {
        crate::log_limit::captured::install();
        let dir = TempDir::new("store-many-bad");
        let mut store = Store::open(&db(&dir)).unwrap();
        accept(&mut store, 0, 1);
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut table = txn.open_table(REQUESTS).unwrap();
                for key in 100..100 + LOGGED_BAD_RECORDS as u64 + 3 {
                    table.insert(key, &b"garbage"[..]).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        assert_eq!(correlations(&store.load().unwrap()), vec![0]);
        let about_this_store =
            crate::log_limit::captured::lines_with(&db(&dir).display().to_string());
        let deleted = about_this_store
            .iter()
            .filter(|line| line.contains(": record "))
            .count();
        assert_eq!(deleted, LOGGED_BAD_RECORDS, "{about_this_store:#?}");
        let summary: Vec<&String> = about_this_store
            .iter()
            .filter(|line| line.contains("more bad records deleted"))
            .collect();
        assert_eq!(summary.len(), 1, "{about_this_store:#?}");
        assert!(summary[0].contains(": 3 more bad"), "{summary:?}");
        assert_eq!(store.len().unwrap(), 1);
    }
}
