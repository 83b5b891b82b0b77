//! §23 Client-Side Reliability, Lazy Pirate (`lpclient.c`): a REQ client that
//! survives a dead or slow server by polling with a timeout and retrying.
//!
//! It sends the decimal sequence numbers `1`, `2`, `3`… to
//! `tcp://localhost:5555` and waits at most 2.5 s for each reply, which must
//! equal the request (`I: server replied OK (n)`, else
//! `E: malformed reply from server: …`). On a timeout the REQ socket is stuck
//! in "waiting for a reply", so the client closes it (LINGER 0, so the unsent
//! request cannot hang the exit, zguide #448), opens a fresh one and sends the
//! same request again: `W: no response from server, retrying...`,
//! `I: reconnecting to server...`. After three attempts in a row fail it prints
//! `E: server seems to be offline, abandoning` and exits. Run it beside
//! `lpserver`, or in front of `spqueue`/`ppqueue` and their workers.
//!
//! Differs from the C file: this is the book's intended Lazy Pirate. The 2019
//! CZMQ-4 rewrite of `lpclient.c` returns after the first reply, prints debug
//! lines (`Entering while loop...`) and capitalises `Server seems`; this port
//! loops until the server is gone, as the text and the older C did. A reply
//! is read whole: it must be exactly one frame equal to the request, and a
//! malformed one is printed through [`zguide::message::show`] (bounded,
//! escaped; several frames as a bounded summary). Ctrl-C/SIGTERM exits
//! cleanly with code 0, also while a request is pending.

use std::process::ExitCode;

use zguide::message::show;
use zguide::{helpers, interrupt, program, socket, Error, Message};

const REQUEST_TIMEOUT: i64 = 2500; // msecs, (> 1000!)
const REQUEST_RETRIES: u32 = 3; // Before we abandon
const SERVER_ENDPOINT: &str = "tcp://localhost:5555";

/// A new REQ socket connected to the server. LINGER 0: when we throw it away
/// with a request still queued, closing must not wait for a dead server.
fn client_socket(context: &zmq::Context) -> Result<zmq::Socket, Error> {
    socket::new(context, zmq::REQ)
        .linger(0)
        .connect(SERVER_ENDPOINT)
}

/// The reply as text if it is the one frame we expect, else a bounded,
/// escaped description of what came instead.
fn reply_text(reply: &Message) -> Result<String, String> {
    match reply.len() {
        1 => {
            let frame = reply.first().unwrap_or_default();
            std::str::from_utf8(frame)
                .map(str::to_string)
                .map_err(|_| show(frame))
        }
        _ => Err(reply.summary()),
    }
}

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        println!("I: connecting to server...");
        let mut client = client_socket(&context)?;

        let mut sequence: u64 = 0;
        let mut retries_left = REQUEST_RETRIES;
        'requests: while retries_left > 0 {
            // We send a request, then we work to get a reply.
            sequence += 1;
            let request = sequence.to_string();
            helpers::send_string(&client, &request)?;

            loop {
                // Poll the socket for a reply, with a timeout.
                if interrupt::wait_readable(&client, REQUEST_TIMEOUT)? {
                    // We got a reply from the server; it must match the sequence.
                    let Some(reply) = Message::try_recv(&client)? else {
                        continue;
                    };
                    match reply_text(&reply) {
                        Ok(text) if text.trim().parse::<u64>().ok() == Some(sequence) => {
                            println!("I: server replied OK ({text})");
                            retries_left = REQUEST_RETRIES;
                            continue 'requests;
                        }
                        // The REQ socket now waits to send, so the next poll
                        // times out and we retry on a fresh socket, like the C.
                        Ok(text) => {
                            println!("E: malformed reply from server: {}", show(text.as_bytes()))
                        }
                        Err(shown) => println!("E: malformed reply from server: {shown}"),
                    }
                } else {
                    retries_left -= 1;
                    if retries_left == 0 {
                        println!("E: server seems to be offline, abandoning");
                        break 'requests;
                    }
                    println!("W: no response from server, retrying...");
                    // The old socket is confused; close it and open a new one.
                    drop(client);
                    println!("I: reconnecting to server...");
                    client = client_socket(&context)?;
                    // Send the request again, on the new socket.
                    helpers::send_string(&client, &request)?;
                }
            }
        }
        Ok(())
    })
}
