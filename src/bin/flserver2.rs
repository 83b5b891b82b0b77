//! §34 Model Two: Brutal Shotgun Massacre (`flserver2.c`): a service that
//! does "some work" and answers `OK`, with the client's sequence number.
//!
//! `flserver2 <endpoint>` binds a REP socket to the endpoint and prints
//! `I: service is ready at <endpoint>`. Each request is `[sequence][body]`;
//! the reply is `[sequence][OK]`. Without an argument it prints
//! `I: syntax: <program> <endpoint>`. Run one to three of them beside
//! `flclient2`, which sends every request to all of them:
//!
//! ```text
//! flserver2 tcp://*:5555 &  flserver2 tcp://*:5556 &
//! flclient2 tcp://localhost:5555 tcp://localhost:5556
//! ```
//!
//! Differs from the C: a request that is not exactly two frames made the C
//! `assert` and die ("fail nastily if run against wrong client"). Here it is
//! logged (sparsely, escaped) and answered with one empty frame, which no
//! Freelance client takes for a reply: a REP socket must answer each request
//! before it can read the next one, so "dropping" a request means answering
//! nothing useful.
//!
//! Limits: frames up to 64 KiB (a bigger one makes libzmq drop that client's
//! connection); at most 100 unread replies per client, after which libzmq's
//! REP drops that client's replies, so a client that stops reading neither
//! blocks nor grows the server. libzmq's REP may drop one reply after an
//! envelope-less message from a client that has gone (see `flserver1`);
//! flclient2 asks every server, so another answers. Ctrl-C/SIGTERM: prints
//! `W: interrupted` and exits 0, as the C.

use std::process::ExitCode;

use zguide::flcliapi::server_socket;
use zguide::log_limit::Sparse;
use zguide::{program, Error, Message};

fn main() -> ExitCode {
    let mut args = std::env::args();
    let program_name = args.next().unwrap_or_else(|| "flserver2".into());
    let Some(endpoint) = args.next() else {
        println!("I: syntax: {program_name} <endpoint>");
        return ExitCode::SUCCESS;
    };
    program::run(|| {
        let context = zmq::Context::new();
        let server = server_socket(&context, zmq::REP).bind(&endpoint)?;
        println!("I: service is ready at {endpoint}");
        let mut malformed = Sparse::default();
        loop {
            let mut request = match Message::recv(&server) {
                Ok(request) => request,
                Err(Error::Interrupted) => break,
                Err(e) => return Err(e),
            };
            // Fix: the C asserted here. A wrong client gets an empty answer.
            if request.len() != 2 {
                if let Some(n) = malformed.note() {
                    log::warn!(
                        "malformed request ({n} so far), not [sequence][body]: {}",
                        request.summary()
                    );
                }
                Message::from_frames([""]).send_or_drop(&server)?;
                continue;
            }
            let sequence = request.pop().unwrap_or_default();
            Message::from_frames([sequence, b"OK".to_vec()]).send_or_drop(&server)?;
        }
        println!("W: interrupted");
        Ok(())
    })
}
