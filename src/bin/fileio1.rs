//! §47 Transferring Files (`fileio1.c`): model one, the server sends the
//! whole file as fast as it can, with no flow control from the client.
//!
//! One process, two threads. The client thread's DEALER connects to
//! `tcp://127.0.0.1:6000` and sends `fetch`; the server thread's ROUTER on
//! `tcp://*:6000` answers with every 250,000-byte chunk of `./testdata`,
//! each as a message `[chunk]`, and a final empty chunk. The client counts
//! and prints `<chunks> chunks received, <bytes> bytes` (for the 1 GiB file:
//! `4296 chunks received, 1073741824 bytes`, the empty chunk counted), and
//! the program ends. Make the file first: `mktestdata` (1 GiB, as the C's
//! `mktestdata.c`) or `mktestdata 10000000` (10 MB). Nothing to run beside
//! it. `$ZGUIDE_FILEIO_COPY=<path>` makes the client write what it received
//! to `<path>`, to compare with `testdata`.
//!
//! Differs from the C:
//! * **HWM.** The C sets the server's HWM to 0 (no limit), because a ROUTER
//!   silently drops chunks for a full queue and the default HWM of 1000 is
//!   fewer than the file's 4296 chunks. But with no limit the server reads
//!   the whole file into memory as fast as the disk allows whenever the
//!   client is slower: 1 GiB for the test file, any size for a bigger one.
//!   Here the HWM is [`SERVER_HWM`] chunks (2.5 MB) and the ROUTER is
//!   `ROUTER_MANDATORY`, so a full queue makes the server's send *wait*
//!   instead of dropping: TCP's flow control paces the server's reads to the
//!   client's, and memory stays flat whatever the file's size. The client's
//!   DEALER gets the same receive HWM, or a client that falls behind would
//!   hold up to 1000 chunks (250 MB) itself.
//! * A peer that stops reading holds the server at most [`STALL_MS`]; then
//!   its transfer is abandoned with a warning (a gone peer at once). Ctrl-C
//!   and the end of the program are noticed within [`SEND_WAIT_MS`].
//! * Every `fetch` gets the whole file: reads are at an offset (the C read
//!   on from where the previous transfer stopped, so a second client got
//!   only the empty chunk). One chunk buffer at a time, freed after the send
//!   (the C leaked every chunk's buffer). A request other than `fetch` is
//!   logged and ignored (the C asserted); request frames are at most 256
//!   bytes. A missing `testdata` is an error message, not an assert.
//! * Ctrl-C exits 0; the client prints what it had received so far.

use std::fs::File;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::actor::Pipe;
use zguide::fileio::{self, Drops, Tally, CHUNK_SIZE};
use zguide::{helpers, interrupt, program, socket, Error, Message};

/// Chunks queued for one client before the server's send waits.
const SERVER_HWM: i32 = 10;
/// How long a send waits for room in a peer's queue before giving up on it.
const STALL_MS: u64 = 10_000;
/// How long one attempt waits (`SNDTIMEO`), between checks for Ctrl-C.
const SEND_WAIT_MS: i32 = 100;

fn client_thread(dealer: zmq::Socket, mut tally: Tally) -> Result<(), Error> {
    helpers::send_string(&dealer, "fetch")?;
    loop {
        let chunk = match fileio::recv_chunk(&dealer) {
            Ok(chunk) => chunk,
            Err(Error::Interrupted) => break, // Shutting down, quit
            Err(e) => return Err(e),
        };
        tally.add(&chunk)?;
        if chunk.is_empty() {
            break; // Whole file received
        }
    }
    tally.report()
}

// .split File server thread
// The server thread reads the file in chunks and sends each chunk to the
// client as a separate message.

fn server_thread(pipe: &Pipe, router: &zmq::Socket, file: &File) -> Result<(), Error> {
    let mut drops = Drops::default();
    while pipe.poll(&[router], -1)?.is_some() {
        let Some(mut msg) = Message::try_recv(router)? else {
            continue;
        };
        // First frame in each message is the sender identity,
        // the second is the "fetch" command.
        let identity = msg.pop().unwrap_or_default();
        if msg.len() != 1 || msg.first() != Some(&b"fetch"[..]) {
            drops.request(&msg);
            continue;
        }
        send_file(pipe, router, &identity, file)?;
    }
    Ok(())
}

/// Sends the file from its start to `identity`, chunk by chunk, and always
/// ends with a zero-size chunk.
fn send_file(pipe: &Pipe, router: &zmq::Socket, identity: &[u8], file: &File) -> Result<(), Error> {
    let mut offset = 0;
    loop {
        let chunk = fileio::read_chunk(file, offset, CHUNK_SIZE)?;
        let size = chunk.len();
        if !send_waiting(pipe, router, identity, chunk)? {
            log::warn!(
                "transfer to {} abandoned after {offset} bytes: peer gone or not reading",
                zguide::message::show(identity)
            );
            return Ok(());
        }
        if size == 0 {
            return Ok(()); // Always end with a zero-size frame
        }
        offset += size as u64;
    }
}

/// Sends `[identity][chunk]`, waiting while the peer's queue is full (the
/// fix for the C's HWM 0): `Ok(false)` if the peer is gone or has not made
/// room for [`STALL_MS`]; `Err(Interrupted)` on Ctrl-C or when main ends.
fn send_waiting(
    pipe: &Pipe,
    router: &zmq::Socket,
    identity: &[u8],
    chunk: zmq::Message,
) -> Result<bool, Error> {
    let since = Instant::now();
    loop {
        // ROUTER_MANDATORY: a full queue is EAGAIN after SNDTIMEO, not a drop.
        match interrupt::retry_eintr(|| router.send(identity, zmq::SNDMORE)) {
            Ok(()) => break,
            Err(Error::Zmq(zmq::Error::EAGAIN)) => {
                if pipe.poll(&[], 0)?.is_none() {
                    return Err(Error::Interrupted);
                }
                if since.elapsed() >= Duration::from_millis(STALL_MS) {
                    return Ok(false);
                }
            }
            Err(Error::Zmq(zmq::Error::EHOSTUNREACH)) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    // The identity frame went in, so the chunk goes in too: sent as the
    // message it was read into, no copy.
    router.send(chunk, 0)?;
    Ok(true)
}

// .split File main thread
// The main task starts the client and server threads; it's easier to test
// this as a single process with threads than as multiple processes.

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let file = fileio::open_testdata()?;
        let router = socket::new(&context, zmq::ROUTER)
            .linger(0)
            .max_message_size(fileio::MAX_REQUEST_FRAME)
            .send_hwm(SERVER_HWM)
            .router_mandatory()
            .bind(fileio::SERVER_ENDPOINT)?;
        router.set_sndtimeo(SEND_WAIT_MS)?;
        // The client's queue is bounded too: a client that falls behind
        // (writing its copy to a slow disk, say) leaves the rest in TCP's
        // buffers and the server waiting, instead of 1000 chunks in memory.
        let dealer = socket::new(&context, zmq::DEALER)
            .linger(0)
            .receive_hwm(SERVER_HWM)
            .connect(fileio::CLIENT_ENDPOINT)?;
        let tally = Tally::from_env()?;
        fileio::run(
            &context,
            move |pipe| server_thread(pipe, &router, &file),
            move || client_thread(dealer, tally),
        )
    })
}
