//! Transferring files in chunks (§47): what `fileio1`, `fileio2` and
//! `fileio3` share.
//!
//! The three programs are one process each: a server thread with a ROUTER on
//! [`SERVER_ENDPOINT`] that reads `./testdata` ([`TESTDATA`]) and a client
//! thread with a DEALER on [`CLIENT_ENDPOINT`] that fetches it in chunks of
//! [`CHUNK_SIZE`] bytes and prints `<chunks> chunks received, <bytes> bytes`.
//! They differ only in how the client asks: everything at once (model 1),
//! one chunk at a time (model 2), or up to ten chunks ahead on credit (model
//! 3). This module holds the rest:
//!
//! * [`run`]: the C's `main`, a server and a client thread (two
//!   [`Actor`]s) and a wait for the client's `OK`;
//! * [`read_chunk`]: one chunk read at an offset straight into a ZeroMQ
//!   message, so the server holds one chunk at a time whatever the file's
//!   size, and never a buffer it forgets to free (the C `malloc`ed a buffer
//!   per chunk, handed a *copy* to `zframe_new`, and leaked the original:
//!   1 GiB leaked per transfer);
//! * [`Request`] and [`serve_requests`]: the model 2/3 server loop, reading
//!   `[fetch][offset][size]` requests with checked numbers;
//! * [`send_chunk`]: a reply that is never lost silently (see below); a
//!   reply to a peer that has gone is dropped quietly, one whose queue is
//!   full with a warning;
//! * [`Tally`]: the client's count, and optionally a copy of what it
//!   received in the file named by `$ZGUIDE_FILEIO_COPY` ([`COPY_ENV`]), so a
//!   test can compare it with the original byte for byte.
//!
//! ## Why fileio3 in the book arrives 1,000,000 bytes short
//!
//! The book prints `4291 chunks received, 1072741824 bytes` for a 1 GiB
//! file: four 250,000-byte chunks never arrived. A ROUTER *drops* a message
//! for a peer whose queue is at its high-water mark, silently. The book's
//! text sets that HWM to `PIPELINE` (10), the credit: at most ten replies
//! are ever unread, so the queue "cannot" overflow. But the ROUTER does not
//! see the queue as it is: libzmq's I/O thread tells the socket how many
//! messages it has taken off only every HWM/2 messages, by a command the
//! socket processes at most about once a millisecond while it is busy
//! sending. A fast server therefore sees a queue fuller than it is and drops
//! replies the credit had room for. (Measured with libzmq 4.3.4 and this
//! code made to drop like the C: HWM 10 gives exactly the book's
//! `4291 chunks received, 1072741824 bytes`, HWM 15 loses two chunks; the
//! listing's `PIPELINE * 2`, whose comment gives a wrong reason, frames,
//! lost none in our runs, but nothing guaranteed it. The C `fileio3` itself,
//! built by hand with HWM 10, lost five to eight chunks a run.)
//!
//! Our fix, in [`send_chunk`]: the ROUTER is `ROUTER_MANDATORY`, so a full
//! queue is an `EAGAIN` instead of a silent drop; on `EAGAIN` we read
//! `ZMQ_EVENTS`, which makes libzmq process its pending commands and so
//! brings the queue's count up to date, and try once more. With the HWM at
//! twice the credit, a client that keeps to its credit is never refused: at
//! most `PIPELINE - 1` other replies are unread and at most `HWM/2 - 1`
//! reads not yet reported. Only a peer whose queue is really full, because
//! it asks for more than its credit or stops reading, loses the reply, and
//! that is logged (the first [`LOGGED_DROPS`] times).
//!
//! ## Limits, for peers that are not our client
//!
//! The server binds every interface like the C, so anyone may connect. A
//! request frame is at most [`MAX_REQUEST_FRAME`] bytes (`MAXMSGSIZE`); a
//! request for more than [`MAX_CHUNK_SIZE`] bytes gets that many; a negative
//! offset or one past the end gets an empty chunk (the C ignored `fseek`'s
//! failure and sent whatever followed the previous read); a malformed request
//! is logged (escaped, the first [`LOGGED_DROPS`] times) and ignored (the C
//! asserted). A peer's queue holds at most the server's HWM in chunks.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use crate::actor::{Actor, Pipe};
use crate::message::show;
use crate::{helpers, interrupt, program, Error, Message};

/// Bytes per chunk, as in the C.
pub const CHUNK_SIZE: usize = 250_000;
/// The file every model serves, in the working directory.
pub const TESTDATA: &str = "testdata";
/// Where the server thread binds.
pub const SERVER_ENDPOINT: &str = "tcp://*:6000";
/// Where the client thread connects.
pub const CLIENT_ENDPOINT: &str = "tcp://127.0.0.1:6000";
/// Environment variable: a path the client writes every chunk it receives
/// to, in order (for tests and for checking a transfer by hand).
pub const COPY_ENV: &str = "ZGUIDE_FILEIO_COPY";
/// The largest request frame the server accepts (`MAXMSGSIZE`).
pub const MAX_REQUEST_FRAME: i64 = 256;
/// The most a single request may ask for; larger requests get this much.
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// How many dropped replies and bad requests the server logs, per kind.
pub const LOGGED_DROPS: u64 = 10;

/// Opens `./testdata`, saying how to make one if it is missing.
pub fn open_testdata() -> Result<File, Error> {
    File::open(TESTDATA).map_err(|e| {
        Error::Protocol(format!(
            "cannot open {TESTDATA}: {e} (make one with `mktestdata [bytes]`)"
        ))
    })
}

/// Reads up to `size` bytes at `offset` into a message of exactly the size
/// read (empty at or past the end of the file). Reads at an offset
/// (`pread`), so the file has no position to go stale between clients.
pub fn read_chunk(file: &File, offset: u64, size: usize) -> Result<zmq::Message, Error> {
    let length = file.metadata().map_err(io_error)?.len();
    read_at_most(file, length, offset, size).map_err(io_error)
}

/// Up to `size` bytes at `offset` from any positional reader whose length
/// was `length` a moment ago, in a message of exactly the size read: what
/// [`read_chunk`] and the file-transfer server's FETCH share. If the file
/// shrank under us, what there is.
pub(crate) fn read_at_most(
    source: &impl FileExt,
    length: u64,
    offset: u64,
    size: usize,
) -> std::io::Result<zmq::Message> {
    let size = size.min(
        length
            .saturating_sub(offset)
            .try_into()
            .unwrap_or(usize::MAX),
    );
    let mut chunk = zmq::Message::with_size(size);
    let mut filled = 0;
    while filled < size {
        match source.read_at(&mut chunk[filled..], offset + filled as u64) {
            Ok(0) => break, // the file shrank under us: send what we have
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if filled < size {
        return Ok(zmq::Message::from(&chunk[..filled]));
    }
    Ok(chunk)
}

fn io_error(e: std::io::Error) -> Error {
    Error::Protocol(format!("{TESTDATA}: {e}"))
}

/// What became of a reply: see [`send_chunk`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the peer.
    Queued,
    /// Dropped: the peer's queue is really full (it asked beyond its credit
    /// or stopped reading).
    Full,
    /// Dropped: the peer has gone (fileio3's client leaves up to nine
    /// requests for chunks past the end unanswered when it is done).
    Gone,
}

/// Sends `[identity][chunk]` from a `ROUTER_MANDATORY` socket without
/// blocking, and says whether it was queued (see the module docs for why a
/// full queue is looked at twice).
pub fn send_chunk(
    router: &zmq::Socket,
    identity: &[u8],
    chunk: zmq::Message,
) -> Result<Sent, Error> {
    let flags = zmq::SNDMORE | zmq::DONTWAIT;
    let mut result = interrupt::retry_eintr(|| router.send(identity, flags));
    if let Err(Error::Zmq(zmq::Error::EAGAIN)) = result {
        // Fix for the book's lost chunks: the "full" verdict may be stale.
        // ZMQ_EVENTS processes libzmq's pending commands, which include
        // the I/O thread's "I have read N messages", then we retry once.
        router.get_events()?;
        result = interrupt::retry_eintr(|| router.send(identity, flags));
    }
    match result {
        Ok(()) => {}
        Err(Error::Zmq(zmq::Error::EAGAIN)) => return Ok(Sent::Full),
        Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => return Ok(Sent::Gone),
        Err(e) => return Err(e),
    }
    // The identity frame went in, so the chunk goes in too: sent as the
    // message it was read into, no copy.
    router.send(chunk, 0)?;
    Ok(Sent::Queued)
}

/// A chunk request `[fetch][offset][size]` as models 2 and 3 send it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub offset: i64,
    pub size: i64,
}

impl Request {
    /// The request after the ROUTER's identity frame, or `None` if it is not
    /// `fetch` with two numbers. Numbers are read like the C's `atoi`.
    pub fn parse(msg: &Message) -> Option<Request> {
        if msg.len() != 3 || msg.get(0)? != b"fetch" {
            return None;
        }
        Some(Request {
            offset: helpers::atoi(msg.get(1)?),
            size: helpers::atoi(msg.get(2)?),
        })
    }

    /// Where to read and how much: a negative offset reads nothing, a size
    /// is capped at [`MAX_CHUNK_SIZE`].
    pub fn bounded(&self) -> (u64, usize) {
        let size = self.size.clamp(0, MAX_CHUNK_SIZE as i64) as usize;
        match u64::try_from(self.offset) {
            Ok(offset) => (offset, size),
            Err(_) => (u64::MAX, 0),
        }
    }
}

/// Counts what a server loop dropped, and logs the first few of each kind.
#[derive(Default)]
pub struct Drops {
    replies: u64,
    requests: u64,
}

impl Drops {
    /// A reply that could not be queued for `identity`, its queue full.
    /// Says whether it was logged (the first [`LOGGED_DROPS`] are).
    pub fn reply(&mut self, identity: &[u8]) -> bool {
        self.replies += 1;
        let logged = self.replies <= LOGGED_DROPS;
        if logged {
            log::warn!(
                "reply to {} dropped: its queue is full (more requests than its credit?){}",
                show(identity),
                if self.replies == LOGGED_DROPS {
                    "; further drops are not logged"
                } else {
                    ""
                }
            );
        }
        logged
    }

    /// A request that was not `[fetch][offset][size]`. Says whether it was
    /// logged (the first [`LOGGED_DROPS`] are).
    pub fn request(&mut self, msg: &Message) -> bool {
        self.requests += 1;
        let logged = self.requests <= LOGGED_DROPS;
        if logged {
            log::warn!(
                "bad request ignored: {}{}",
                msg.summary(),
                if self.requests == LOGGED_DROPS {
                    "; further bad requests are not logged"
                } else {
                    ""
                }
            );
        }
        logged
    }
}

/// The model 2 and 3 server: answers each `[fetch][offset][size]` with
/// `[chunk]`, until `$TERM` or Ctrl-C. `router` must be `ROUTER_MANDATORY`.
pub fn serve_requests(pipe: &Pipe, router: &zmq::Socket, file: &File) -> Result<(), Error> {
    let mut drops = Drops::default();
    while pipe.poll(&[router], -1)?.is_some() {
        let Some(mut msg) = Message::try_recv(router)? else {
            continue;
        };
        // First frame in each message is the sender identity.
        let identity = msg.pop().unwrap_or_default();
        let Some(request) = Request::parse(&msg) else {
            drops.request(&msg);
            continue;
        };
        let (offset, size) = request.bounded();
        let chunk = read_chunk(file, offset, size)?;
        match send_chunk(router, &identity, chunk)? {
            Sent::Queued => {}
            Sent::Full => {
                drops.reply(&identity);
            }
            Sent::Gone => log::debug!("reply to {} dropped: peer gone", show(&identity)),
        }
    }
    Ok(())
}

/// Receives one chunk on the client's DEALER (interruptible); extra frames,
/// which our servers never send, are read and ignored.
pub fn recv_chunk(dealer: &zmq::Socket) -> Result<zmq::Message, Error> {
    let chunk = interrupt::recv_blocking(dealer, || dealer.recv_msg(0))?;
    while dealer.get_rcvmore()? {
        interrupt::retry_eintr(|| dealer.recv_msg(0))?;
    }
    Ok(chunk)
}

/// What the client received: chunks, bytes, and the optional copy.
pub struct Tally {
    pub chunks: usize,
    pub total: u64,
    copy: Option<BufWriter<File>>,
}

impl Tally {
    /// An empty tally, copying to the file named by [`COPY_ENV`] if set.
    pub fn from_env() -> Result<Tally, Error> {
        let copy = match std::env::var_os(COPY_ENV) {
            None => None,
            Some(path) => {
                let file = File::create(&path).map_err(|e| {
                    Error::Protocol(format!("cannot create {}: {e}", path.to_string_lossy()))
                })?;
                Some(BufWriter::with_capacity(1 << 20, file))
            }
        };
        Ok(Tally {
            chunks: 0,
            total: 0,
            copy,
        })
    }

    /// Counts one chunk (and copies it).
    pub fn add(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.chunks += 1;
        self.total += chunk.len() as u64;
        if let Some(copy) = &mut self.copy {
            copy.write_all(chunk).map_err(copy_error)?;
        }
        Ok(())
    }

    /// Prints the C's last line and finishes the copy.
    pub fn report(mut self) -> Result<(), Error> {
        println!("{} chunks received, {} bytes", self.chunks, self.total);
        if let Some(copy) = &mut self.copy {
            copy.flush().map_err(copy_error)?;
        }
        Ok(())
    }
}

fn copy_error(e: std::io::Error) -> Error {
    Error::Protocol(format!("cannot write ${COPY_ENV}: {e}"))
}

/// The C's `main`: starts `server` and `client` as threads, waits until the
/// client says it is done (or Ctrl-C), then stops the server. The client's
/// error, if any, is the program's.
pub fn run<S, C>(context: &zmq::Context, server: S, client: C) -> Result<(), Error>
where
    S: FnOnce(&Pipe) -> Result<(), Error> + Send + 'static,
    C: FnOnce() -> Result<(), Error> + Send + 'static,
{
    let server = Actor::new(context, move |pipe| {
        let _ = pipe.signal(0);
        if let Err(e) = program::interrupted_is_ok(server(pipe)) {
            log::error!("server: {e}");
        }
    })?;
    let (result_tx, result_rx) = mpsc::channel();
    let client = Actor::new(context, move |pipe| {
        let _ = pipe.signal(0);
        let _ = result_tx.send(program::interrupted_is_ok(client()));
        // Tell main we are done, as the C's `zstr_send (pipe, "OK")`.
        let _ = pipe.send(Message::from_frames(["OK"]));
    })?;
    // Loop until client tells us it's done.
    let _done = client.recv()?;
    drop(client);
    // Kill the server thread.
    drop(server);
    result_rx
        .recv()
        .unwrap_or_else(|_| Err(Error::Protocol("the client thread failed".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_like_atoi_and_bounded() {
        let req = |frames: &[&str]| Request::parse(&Message::from_frames(frames.iter().copied()));
        assert_eq!(
            req(&["fetch", "500000", "250000"]),
            Some(Request {
                offset: 500_000,
                size: 250_000
            })
        );
        assert_eq!(req(&["fetch", "1"]), None);
        assert_eq!(req(&["get", "1", "2"]), None);
        assert_eq!(req(&["fetch", "x", "2"]).unwrap().bounded(), (0, 2));
        assert_eq!(
            req(&["fetch", "-5", "10"]).unwrap().bounded(),
            (u64::MAX, 0)
        );
        assert_eq!(
            req(&["fetch", "0", "99999999999"]).unwrap().bounded(),
            (0, MAX_CHUNK_SIZE)
        );
        assert_eq!(req(&["fetch", "0", "-1"]).unwrap().bounded(), (0, 0));
    }

    #[test]
    fn chunks_are_exact_and_empty_past_the_end() {
        let path = std::env::temp_dir().join(format!("fileio-unit-{}", std::process::id()));
        std::fs::write(&path, (0..=255u8).cycle().take(1000).collect::<Vec<u8>>()).unwrap();
        let file = File::open(&path).unwrap();
        let chunk = read_chunk(&file, 990, 100).unwrap();
        assert_eq!(
            &chunk[..],
            &(0..=255u8).cycle().skip(990).take(10).collect::<Vec<u8>>()[..]
        );
        assert_eq!(read_chunk(&file, 1000, 100).unwrap().len(), 0);
        assert_eq!(read_chunk(&file, u64::MAX, 100).unwrap().len(), 0);
        assert_eq!(read_chunk(&file, 0, 0).unwrap().len(), 0);
        let _ = std::fs::remove_file(path);
    }

    /// A positional reader that hands out at most three bytes a call, fails
    /// first with the errors it is given, and may have shrunk to `end` bytes.
    struct Stingy {
        data: Vec<u8>,
        end: usize,
        errors: std::cell::RefCell<Vec<std::io::ErrorKind>>,
    }

    impl Stingy {
        fn new(errors: &[std::io::ErrorKind], end: usize) -> Stingy {
            Stingy {
                data: (0..100).collect(),
                end,
                errors: std::cell::RefCell::new(errors.to_vec()),
            }
        }
    }

    impl FileExt for Stingy {
        fn read_at(&self, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
            if let Some(kind) = self.errors.borrow_mut().pop() {
                return Err(kind.into());
            }
            let offset = offset as usize;
            let n = buffer.len().min(3).min(self.end.saturating_sub(offset));
            buffer[..n].copy_from_slice(&self.data[offset..offset + n]);
            Ok(n)
        }

        fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<usize> {
            unreachable!("chunks are only read")
        }
    }

    #[test]
    fn chunks_are_read_through_short_and_interrupted_reads_and_errors_are_reported() {
        use std::io::ErrorKind::{Interrupted, PermissionDenied};
        let data: Vec<u8> = (0..100).collect();
        // Seventeen short reads at the right offsets, after two EINTRs.
        let reader = Stingy::new(&[Interrupted, Interrupted], 100);
        let chunk = read_at_most(&reader, 100, 10, 50).unwrap();
        assert_eq!(&chunk[..], &data[10..60]);
        // The file shrank to 30 bytes after its length was read: what was
        // there, not 50 bytes padded with zeros.
        let reader = Stingy::new(&[], 30);
        let chunk = read_at_most(&reader, 100, 10, 50).unwrap();
        assert_eq!(&chunk[..], &data[10..30]);
        // Any other error is the caller's (and is not retried).
        let reader = Stingy::new(&[PermissionDenied], 100);
        let error = read_at_most(&reader, 100, 0, 10).unwrap_err();
        assert!(error.to_string().contains("denied"), "{error}");
    }

    #[test]
    fn drops_log_only_the_first_few_of_each_kind() {
        let mut drops = Drops::default();
        let replies: Vec<bool> = (0..LOGGED_DROPS + 5)
            .map(|_| drops.reply(b"peer"))
            .collect();
        let logged = LOGGED_DROPS as usize;
        assert!(replies[..logged].iter().all(|&l| l), "{replies:?}");
        assert!(replies[logged..].iter().all(|&l| !l), "{replies:?}");
        // Requests are counted apart from replies.
        let junk = Message::from_frames(["junk"]);
        let requests: Vec<bool> = (0..LOGGED_DROPS + 5)
            .map(|_| drops.request(&junk))
            .collect();
        assert!(requests[..logged].iter().all(|&l| l), "{requests:?}");
        assert!(requests[logged..].iter().all(|&l| !l), "{requests:?}");
    }

    fn recv_within(socket: &zmq::Socket, ms: i64) -> Option<Vec<u8>> {
        let ready = socket.poll(zmq::POLLIN, ms).unwrap() > 0;
        ready.then(|| socket.recv_bytes(0).unwrap())
    }

    #[test]
    fn send_chunk_queues_then_reports_full_and_gone_without_blocking() {
        let context = zmq::Context::new();
        let router = crate::socket::new(&context, zmq::ROUTER)
            .send_hwm(2)
            .router_mandatory()
            .bind("inproc://fileio-send-chunk")
            .unwrap();
        let dealer = crate::socket::new(&context, zmq::DEALER)
            .identity("client")
            .receive_hwm(2)
            .connect("inproc://fileio-send-chunk")
            .unwrap();
        let chunk = |text: &str| zmq::Message::from(text.as_bytes());
        assert_eq!(
            send_chunk(&router, b"client", chunk("first")).unwrap(),
            Sent::Queued
        );
        assert_eq!(recv_within(&dealer, 2000).as_deref(), Some(&b"first"[..]));
        assert_eq!(
            send_chunk(&router, b"nobody", chunk("lost")).unwrap(),
            Sent::Gone
        );
        // The dealer stops reading: its queue fills, and then every reply
        // is refused at once (a blocking send would hang this test).
        let mut queued = 0;
        while send_chunk(&router, b"client", chunk("more")).unwrap() == Sent::Queued {
            queued += 1;
            assert!(queued < 100, "a queue of HWM 2 + 2 took {queued} replies");
        }
        assert_eq!(
            send_chunk(&router, b"client", chunk("more")).unwrap(),
            Sent::Full
        );
        assert!(queued >= 2, "only {queued} replies queued");
    }

    #[test]
    fn serve_requests_answers_fetches_ignores_garbage_idles_and_stops_when_told() {
        let dir = crate::test_support::TempDir::new("fileio-serve");
        let path = dir.path().join("testdata");
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let context = zmq::Context::new();
        let (done_tx, done_rx) = mpsc::channel();
        let router = crate::socket::new(&context, zmq::ROUTER)
            .router_mandatory()
            .bind("inproc://fileio-serve")
            .unwrap();
        let server = Actor::new(&context, move |pipe| {
            let _ = pipe.signal(0);
            let cpu = crate::broker::thread_cpu();
            let result = serve_requests(pipe, &router, &file);
            let _ = done_tx.send((result, crate::broker::thread_cpu() - cpu));
        })
        .unwrap();
        let dealer = crate::socket::new(&context, zmq::DEALER)
            .connect("inproc://fileio-serve")
            .unwrap();
        let fetch = |offset: &str, size: &str| {
            Message::from_frames(["fetch", offset, size])
                .send(&dealer)
                .unwrap()
        };
        fetch("990", "100");
        assert_eq!(recv_within(&dealer, 2000).unwrap(), &data[990..]);
        Message::from_frames(["junk"]).send(&dealer).unwrap();
        fetch("0", "5");
        assert_eq!(recv_within(&dealer, 2000).unwrap(), &data[..5]);
        // Idle, the server sleeps in poll: a loop that woke every
        // millisecond would spend several ms of CPU in this second.
        std::thread::sleep(std::time::Duration::from_secs(1));
        drop(server);
        let (result, cpu) = done_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the server stops when its actor is dropped");
        result.unwrap();
        assert!(cpu < std::time::Duration::from_millis(3), "{cpu:?} of CPU");
    }

    #[test]
    fn the_tally_counts_and_copies_every_chunk_in_order() {
        let dir = crate::test_support::TempDir::new("fileio-tally");
        let path = dir.path().join("copy");
        let mut tally = Tally {
            chunks: 0,
            total: 0,
            copy: Some(BufWriter::new(File::create(&path).unwrap())),
        };
        tally.add(b"hello, ").unwrap();
        tally.add(b"").unwrap();
        tally.add(b"world").unwrap();
        assert_eq!((tally.chunks, tally.total), (3, 12));
        tally.report().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello, world");
    }

    #[test]
    fn run_waits_for_the_client_stops_the_server_and_returns_the_clients_error() {
        let context = zmq::Context::new();
        let (stopped_tx, stopped_rx) = mpsc::channel();
        let server = move |pipe: &Pipe| {
            while pipe.poll(&[], -1)?.is_some() {}
            let _ = stopped_tx.send(());
            Ok(())
        };
        let error = run(&context, server, || {
            Err(Error::Protocol("the client failed".into()))
        })
        .unwrap_err();
        assert!(error.to_string().contains("the client failed"), "{error}");
        stopped_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the server was stopped");
        run(&context, |_: &Pipe| Ok(()), || Ok(())).unwrap();
    }
}
