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
//! Differs from the C: `ZGUIDE_SIMULATE` makes the failures deterministic for
//! tests (`none`: never fail; `crash`: crash on the 4th request; `overload`:
//! always slow after the 3rd; unset or `random`: the C odds). Ctrl-C/SIGTERM
//! ends it cleanly with exit code 0. The C header comment says it binds a REQ
//! socket; it is a REP socket.

use zguide::ppp::{Fault, FaultSimulator};
use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let server = context.socket(zmq::REP)?;
    server.set_linger(0)?;
    server.bind("tcp://*:5555")?;

    let mut faults = FaultSimulator::from_env(3);
    loop {
        let request = match helpers::recv_string(&server) {
            Ok(request) => request,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };
        // Simulate various problems, after a few cycles.
        match faults.next_request() {
            Fault::Crash => {
                println!("I: simulating a crash");
                break;
            }
            Fault::Overload => {
                println!("I: simulating CPU overload");
                if interrupt::sleep_ms(2000).is_err() {
                    break;
                }
            }
            Fault::None => {}
        }
        println!("I: normal request ({request})");
        if interrupt::sleep_ms(1000).is_err() {
            break; // Do some heavy work; stop early on Ctrl-C.
        }
        helpers::send_string(&server, &request)?;
    }
    Ok(())
}
