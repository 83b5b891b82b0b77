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
//! loops until the server is gone, as the text and the older C did.
//! Ctrl-C/SIGTERM exits cleanly with code 0.

use zguide::{helpers, interrupt, Error};

const REQUEST_TIMEOUT: i64 = 2500; // msecs, (> 1000!)
const REQUEST_RETRIES: u32 = 3; // Before we abandon
const SERVER_ENDPOINT: &str = "tcp://localhost:5555";

/// A new REQ socket connected to the server. LINGER 0: when we throw it away
/// with a request still queued, closing must not wait for a dead server.
fn client_socket(context: &zmq::Context) -> Result<zmq::Socket, Error> {
    let client = context.socket(zmq::REQ)?;
    client.set_linger(0)?;
    client.connect(SERVER_ENDPOINT)?;
    Ok(client)
}

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
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
            let readable = match interrupt::wait_readable(&client, REQUEST_TIMEOUT) {
                Ok(readable) => readable,
                Err(Error::Interrupted) => break 'requests,
                Err(e) => return Err(e),
            };
            if readable {
                // We got a reply from the server; it must match the sequence.
                let reply = match helpers::try_recv_string(&client)? {
                    Some(reply) => reply,
                    None => continue,
                };
                if reply.trim().parse::<u64>().ok() == Some(sequence) {
                    println!("I: server replied OK ({reply})");
                    retries_left = REQUEST_RETRIES;
                    continue 'requests;
                }
                // The REQ socket now waits to send, so the next poll times
                // out and we retry on a fresh socket, like the C.
                println!("E: malformed reply from server: {reply}");
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
}
