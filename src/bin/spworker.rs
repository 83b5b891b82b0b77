//! §24 Basic Reliable Queuing, Simple Pirate (`spworker.c`): a REQ worker for
//! `spqueue` that crashes and stalls on purpose.
//!
//! It takes a printable random identity (`XXXX-XXXX`), connects to
//! `tcp://localhost:5556`, prints `I: (<id>) worker ready` and sends READY
//! (`0x01`). Then it echoes each request, envelope and all, after
//! `I: (<id>) normal reply` and a second of work. After three requests, with
//! odds 1/5 it prints `I: (<id>) simulating a crash` and exits, else with odds
//! 1/5 `I: (<id>) simulating CPU overload` and takes three more seconds. Run a
//! few beside `spqueue` and `lpclient`.
//!
//! Differs from the C: `ZGUIDE_SIMULATE` makes the failures deterministic for
//! tests (`none`, `crash` on the 4th request, `overload`, or unset/`random`
//! for the C odds). The identity comes from a thread-safe, OS-seeded RNG (the
//! C seeds `random()` with the time, so workers started in the same second
//! share an identity). Ctrl-C/SIGTERM exits cleanly with code 0.

use zguide::ppp::{Fault, FaultSimulator, READY};
use zguide::{helpers, interrupt, Error, Message};

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let worker = context.socket(zmq::REQ)?;
    worker.set_linger(0)?;

    // A random, printable identity makes tracing easier.
    let identity = helpers::set_random_identity(&worker)?;
    worker.connect("tcp://localhost:5556")?;

    // Tell the broker we're ready for work.
    println!("I: ({identity}) worker ready");
    interrupt::retry_eintr(|| worker.send(READY, 0))?;

    let mut faults = FaultSimulator::from_env(5);
    loop {
        let msg = match Message::recv(&worker) {
            Ok(msg) => msg,
            Err(Error::Interrupted) => break,
            Err(e) => return Err(e),
        };
        // Simulate various problems, after a few cycles.
        match faults.next_request() {
            Fault::Crash => {
                println!("I: ({identity}) simulating a crash");
                break;
            }
            Fault::Overload => {
                println!("I: ({identity}) simulating CPU overload");
                if interrupt::sleep_ms(3000).is_err() {
                    break;
                }
            }
            Fault::None => {}
        }
        println!("I: ({identity}) normal reply");
        if interrupt::sleep_ms(1000).is_err() {
            break; // Do some heavy work; stop early on Ctrl-C.
        }
        msg.send(&worker)?;
    }
    Ok(())
}
