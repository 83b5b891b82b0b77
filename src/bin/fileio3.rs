//! §47 Transferring Files (`fileio3.c`): model three, the client asks ahead
//! on credit.
//!
//! One process, two threads. The client thread's DEALER connects to
//! `tcp://127.0.0.1:6000` and keeps up to [`PIPELINE`] (10) requests
//! `[fetch][<offset>][250000]` in flight: it starts with ten credits, spends
//! one per request and earns one back per chunk received, so the pipe stays
//! full without the server ever getting ahead of the client. It stops at the
//! first chunk shorter than 250,000 bytes and prints `<chunks> chunks
//! received, <bytes> bytes`: for the 1 GiB file `4295 chunks received,
//! 1073741824 bytes`. The server thread's ROUTER on `tcp://*:6000` (HWM
//! `PIPELINE * 2`) answers each request with the chunk at that offset. Make
//! the file first with `mktestdata [bytes]`; `$ZGUIDE_FILEIO_COPY=<path>`
//! makes the client write what it received to `<path>`.
//!
//! Differs from the C:
//! * **Every byte arrives.** The book's run printed `4291 chunks received,
//!   1072741824 bytes`: the ROUTER silently dropped four chunks, because it
//!   judged the client's queue full from a stale count (the `fileio` module
//!   explains the mechanism). Replies go through `fileio::send_chunk`:
//!   `ROUTER_MANDATORY`, and a "full" verdict is re-checked once libzmq has
//!   caught up, so a client within its credit never loses a chunk. A peer
//!   that asks beyond its credit or stops reading loses replies, logged;
//!   its queue holds at most `PIPELINE * 2` chunks (5 MB).
//! * Requests are checked (`fileio::Request`: at most 1 MiB per chunk, a
//!   negative offset or one past the end gets an empty chunk, malformed
//!   requests are logged and ignored; the C asserted, or `malloc`ed what a
//!   peer asked for); chunks are read at their offset straight into the
//!   message and nothing leaks (the C leaked every chunk's buffer); the
//!   process holds about `PIPELINE` chunks whatever the file's size.
//! * Ctrl-C exits 0 after the client prints its count so far.

use std::process::ExitCode;

use zguide::fileio::{self, Tally, CHUNK_SIZE};
use zguide::{program, socket, Error, Message};

/// Up to this many chunks in transit.
const PIPELINE: usize = 10;

fn client_thread(dealer: zmq::Socket, mut tally: Tally) -> Result<(), Error> {
    // Up to this many chunks in transit.
    let mut credit = PIPELINE;
    let mut offset = 0; // Offset of next chunk request

    loop {
        while credit > 0 {
            // Ask for next chunk.
            let request = [
                "fetch".to_string(),
                offset.to_string(),
                CHUNK_SIZE.to_string(),
            ];
            Message::from_frames(request).send(&dealer)?;
            offset += CHUNK_SIZE;
            credit -= 1;
        }
        let chunk = match fileio::recv_chunk(&dealer) {
            Ok(chunk) => chunk,
            Err(Error::Interrupted) => break, // Shutting down, quit
            Err(e) => return Err(e),
        };
        tally.add(&chunk)?;
        credit += 1;
        if chunk.len() < CHUNK_SIZE {
            break; // Last chunk received; exit
        }
    }
    tally.report()
}

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let file = fileio::open_testdata()?;
        // The server is model two's, with the HWM set to twice the credit:
        // room for every reply in flight plus libzmq's reporting lag.
        let hwm = (PIPELINE * 2) as i32;
        let router = socket::new(&context, zmq::ROUTER)
            .linger(0)
            .max_message_size(fileio::MAX_REQUEST_FRAME)
            .send_hwm(hwm)
            .receive_hwm(hwm)
            .router_mandatory()
            .bind(fileio::SERVER_ENDPOINT)?;
        let dealer = socket::new(&context, zmq::DEALER)
            .linger(0)
            .connect(fileio::CLIENT_ENDPOINT)?;
        let tally = Tally::from_env()?;
        fileio::run(
            &context,
            move |pipe| fileio::serve_requests(pipe, &router, &file),
            move || client_thread(dealer, tally),
        )
    })
}
