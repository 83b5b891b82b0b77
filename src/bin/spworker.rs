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
//! `spworker --cpp` speaks the C++ dialect of the guide's `spworker.cpp`:
//! READY is the text `READY`, so it serves through the C++ `spqueue` (ours
//! accepts both; see [`zguide::ppp::Dialect`]).
//!
//! Differs from the C: `ZGUIDE_SIMULATE` makes the failures deterministic for
//! tests (`none`, `crash` on the 4th request, `overload`, unset/`random` for
//! the C odds, `random:<seed>` for seeded dice). The identity comes from a
//! thread-safe, OS-seeded RNG (the C seeds `random()` with the time, so
//! workers started in the same second share an identity). Inbound frames are
//! limited to 1 MiB (`ZMQ_MAXMSGSIZE`); a REQ socket holds at most one reply,
//! so its sends never pile up. Ctrl-C/SIGTERM exits cleanly with code 0, also
//! during its "work" and with a reply still queued for a queue that died
//! (LINGER 0: nobody is left to read it).

use std::process::ExitCode;

use zguide::ppp::{Dialect, Fault, FaultSimulator};
use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    let dialect = Dialect::from_args(std::env::args().skip(1));
    program::run(|| {
        let context = zmq::Context::new();
        // A random, printable identity makes tracing easier.
        let identity = helpers::random_identity();
        let worker = socket::new(&context, zmq::REQ)
            .linger(0)
            .identity(identity.as_str())
            .connect("tcp://localhost:5556")?;

        // Tell the broker we're ready for work.
        println!("I: ({identity}) worker ready");
        interrupt::retry_eintr(|| worker.send(dialect.ready(), 0))?;

        let mut faults = FaultSimulator::from_env(5);
        loop {
            let msg = Message::recv(&worker)?;
            // Simulate various problems, after a few cycles.
            match faults.next_request() {
                Fault::Crash => {
                    println!("I: ({identity}) simulating a crash");
                    break;
                }
                Fault::Overload => {
                    println!("I: ({identity}) simulating CPU overload");
                    interrupt::sleep_ms(3000)?;
                }
                Fault::None => {}
            }
            println!("I: ({identity}) normal reply");
            interrupt::sleep_ms(1000)?; // Do some heavy work
            msg.send(&worker)?;
        }
        Ok(())
    })
}
