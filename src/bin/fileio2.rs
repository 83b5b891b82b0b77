//! §47 Transferring Files (`fileio2.c`): model two, the client asks for
//! each chunk in turn.
//!
//! One process, two threads. The client thread's DEALER (HWM 1) connects to
//! `tcp://127.0.0.1:6000` and sends `[fetch][<offset>][250000]` for one
//! chunk, waits for it, and asks for the next, until a chunk comes back
//! shorter than 250,000 bytes; then it prints `<chunks> chunks received,
//! <bytes> bytes` (for the 1 GiB file: `4295 chunks received, 1073741824
//! bytes`) and the program ends. The server thread's ROUTER (HWM 1) on
//! `tcp://*:6000` answers each request with the chunk read at that offset.
//! No queue can overflow, but every chunk costs a round trip. Make the file
//! first with `mktestdata [bytes]`; `$ZGUIDE_FILEIO_COPY=<path>` makes the
//! client write what it received to `<path>`.
//!
//! Differs from the C: the server's replies go through
//! `fileio::send_chunk` (`ROUTER_MANDATORY`, never a silent drop; a peer
//! that asks for more than one chunk at a time without reading loses the
//! extra replies, logged); requests are checked (`fileio::Request`: size at
//! most 1 MiB, a negative offset or one past the end gets an empty chunk, a
//! malformed request is logged and ignored, where the C asserted or
//! `malloc`ed whatever size a peer asked for); the chunk is read at its
//! offset straight into the message, and nothing leaks (the C leaked every
//! chunk's buffer); Ctrl-C exits 0 after the client prints its count so far.

use std::process::ExitCode;

use zguide::fileio::{self, Tally, CHUNK_SIZE};
use zguide::{program, socket, Error, Message};

fn client_thread(dealer: zmq::Socket, mut tally: Tally) -> Result<(), Error> {
    loop {
        // Ask for next chunk.
        let request = [
            "fetch".to_string(),
            tally.total.to_string(),
            CHUNK_SIZE.to_string(),
        ];
        Message::from_frames(request).send(&dealer)?;

        let chunk = match fileio::recv_chunk(&dealer) {
            Ok(chunk) => chunk,
            Err(Error::Interrupted) => break, // Shutting down, quit
            Err(e) => return Err(e),
        };
        tally.add(&chunk)?;
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
        // The server thread waits for a chunk request from a client, reads
        // that chunk, and sends it back to the client.
        let router = socket::new(&context, zmq::ROUTER)
            .linger(0)
            .max_message_size(fileio::MAX_REQUEST_FRAME)
            .send_hwm(1)
            .receive_hwm(1)
            .router_mandatory()
            .bind(fileio::SERVER_ENDPOINT)?;
        let dealer = socket::new(&context, zmq::DEALER)
            .linger(0)
            .send_hwm(1)
            .receive_hwm(1)
            .connect(fileio::CLIENT_ENDPOINT)?;
        let tally = Tally::from_env()?;
        fileio::run(
            &context,
            move |pipe| fileio::serve_requests(pipe, &router, &file),
            move || client_thread(dealer, tally),
        )
    })
}
