//! §23 Client-Side Reliability, Lazy Pirate (`lpserver.c`): an unreliable echo
//! server for `lpclient` to survive.
//!
//! A REP socket bound to `tcp://*:5555` echoes every request after printing
//! `I: normal request (<request>)` and working for one second. After three
//! requests it misbehaves on purpose: with odds 1/3 it prints
//! `I: simulating a crash` and exits, else with odds 1/3 it prints
//! `I: simulating CPU overload` and takes two more seconds. Run `lpclient`
//! beside it, and start `lpserver` again after a crash to see the client carry
//! on.
//!
//! Differs from the C:
//! * it reads and echoes the *whole* request, every frame of it. The C reads
//!   one frame, so a request of two frames left its REP socket unable to
//!   reply ("Operation cannot be accomplished in current state") and an
//!   earlier port exited on the first such request. The request is printed
//!   through [`zguide::message::show`] (≤32 bytes, escaped; a request of
//!   several frames as its bounded summary), so a peer cannot flood or forge
//!   the output;
//! * limits: inbound frames up to 1 MiB (`ZMQ_MAXMSGSIZE`; a larger frame
//!   drops that peer's connection). The reply never blocks: a REP socket
//!   drops the reply of a peer that has gone or does not read, and so does
//!   this server (the client's retry covers it);
//! * `ZGUIDE_SIMULATE` makes the failures deterministic for tests (`none`:
//!   never fail; `crash`: crash on the 4th request; `overload`: always slow
//!   after the 3rd; unset or `random`: the C odds; `random:<seed>`: the C
//!   odds with seeded dice);
//! * Ctrl-C/SIGTERM ends it cleanly with exit code 0, also in the middle of
//!   its "work". The C header comment says it binds a REQ socket; it is a REP
//!   socket.

use std::process::ExitCode;

use zguide::message::show;
use zguide::ppp::{Fault, FaultSimulator};
use zguide::{interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let server = socket::new(&context, zmq::REP)
            .linger(0)
            .bind("tcp://*:5555")?;

        let mut faults = FaultSimulator::from_env(3);
        loop {
            // The whole request, however many frames: REP must read it all
            // before it can reply.
            let request = Message::recv(&server)?;
            // Simulate various problems, after a few cycles.
            match faults.next_request() {
                Fault::Crash => {
                    println!("I: simulating a crash");
                    break;
                }
                Fault::Overload => {
                    println!("I: simulating CPU overload");
                    interrupt::sleep_ms(2000)?;
                }
                Fault::None => {}
            }
            let text = match request.len() {
                1 => show(request.first().unwrap_or_default()),
                _ => request.summary(),
            };
            println!("I: normal request ({text})");
            interrupt::sleep_ms(1000)?; // Do some heavy work
            request.send_or_drop(&server)?;
        }
        Ok(())
    })
}
