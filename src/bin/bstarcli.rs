//! §31 Binary Star Implementation (`bstarcli.c`): the Binary Star client.
//!
//! A Lazy Pirate client that knows two servers: it sends a sequence number
//! to `tcp://localhost:5001` (the primary), expects the same number back
//! (`I: server replied OK (n)`) and sends one request a second. When no reply
//! comes within 1000 ms it prints `W: no response from server, failing over`,
//! closes its REQ socket, waits 2000 ms for the pair to settle, connects to
//! the other server (`I: connecting to server at …`) and sends the same
//! request again, so the sequence never skips a number. Runs until Ctrl-C.
//! Run beside it: `bstarsrv -p` and `bstarsrv -b` (or `bstarsrv2`).
//!
//! `ZGUIDE_REQUESTS=n` stops after `n` replies (for tests; the C runs for
//! ever, which stays the default).
//!
//! Differs from the C: the reply is compared as a whole number (`atoi`),
//! like the C, but a reply of several frames or none is reported as bad
//! instead of crashing; Ctrl-C exits 0 at once, also during the settle delay;
//! the new socket connects at the start of the settle delay, not at its end,
//! so the failed-over request does not wait for a TCP and ZMTP handshake
//! (the lines and the request's timing are the C's).

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket, Message};

const REQUEST_TIMEOUT: i64 = 1000; //  msecs
const SETTLE_DELAY: u64 = 2000; //  Before failing over

const SERVERS: [&str; 2] = ["tcp://localhost:5001", "tcp://localhost:5002"];

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let requests = helpers::env_count("ZGUIDE_REQUESTS", u64::MAX);
        let mut server_nbr = 0;
        println!("I: connecting to server at {}...", SERVERS[server_nbr]);
        let mut client = socket::new(&context, zmq::REQ)
            .linger(0)
            .connect(SERVERS[server_nbr])?;

        let mut sequence: u64 = 0;
        while sequence < requests {
            // We send a request, then we work to get a reply.
            sequence += 1;
            let request = sequence.to_string();
            helpers::send_string(&client, &request)?;

            loop {
                // Poll socket for a reply, with timeout.
                if interrupt::wait_readable(&client, REQUEST_TIMEOUT)? {
                    // We got a reply from the server, must match sequence.
                    let reply = Message::recv_now(&client)?;
                    let text = reply.first().map(helpers::atoi);
                    if reply.len() == 1 && text == Some(sequence as i64) {
                        println!("I: server replied OK ({sequence})");
                        interrupt::sleep_ms(1000)?; // One request per second
                        break;
                    }
                    println!("E: bad reply from server: {}", reply.summary());
                    continue;
                }
                // The Lazy Pirate strategy: no reply in time, so close the
                // confused socket and try the other server. It is the
                // client's vote that decides which server becomes active.
                println!("W: no response from server, failing over");
                drop(client);
                server_nbr = (server_nbr + 1) % 2;
                // The C connects after the settle delay; we connect before
                // it, so that TCP and ZeroMQ's handshake are done when the
                // delay ends. The request still goes out after the delay,
                // and a connection is not a vote: only requests are.
                client = socket::new(&context, zmq::REQ)
                    .linger(0)
                    .connect(SERVERS[server_nbr])?;
                interrupt::sleep_ms(SETTLE_DELAY)?;
                println!("I: connecting to server at {}...", SERVERS[server_nbr]);
                // Send request again, on new socket.
                helpers::send_string(&client, &request)?;
            }
        }
        Ok(())
    })
}
