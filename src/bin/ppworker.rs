//! §25 Robust Reliable Queuing and §26 Heartbeating, Paranoid Pirate
//! (`ppworker.c`): a DEALER worker that heartbeats its queue and reconnects
//! with exponential back-off when the queue goes quiet.
//!
//! It connects to `tcp://localhost:5556`, prints `I: worker ready` and sends
//! READY (`0x01`). A three-frame message is a request: it answers it after
//! `I: normal reply` (echoing the envelope) and a second of work. A HEARTBEAT
//! from the queue proves the queue is alive. Every second it sends its own
//! heartbeat (`I: worker heartbeat`). When three heartbeat intervals pass in
//! silence it prints `W: heartbeat failure, can't reach queue` and
//! `W: reconnecting in <n> msec...`, waits 1000, 2000, 4000 … 32000 ms
//! (the wait resets once the queue talks again), and starts over with a new
//! socket, so the queue sees a new worker. After three requests it simulates
//! a crash (`I: simulating a crash`, exit) or a 3 s CPU overload
//! (`I: simulating CPU overload`), each with odds 1/5. Run a few beside
//! `ppqueue` and `lpclient`.
//!
//! Differs from the C: `ZGUIDE_SIMULATE` makes the failures deterministic for
//! tests (`none`, `crash` on the 4th request, `overload`, or unset/`random`
//! for the C odds); the liveness, heartbeat and back-off logic is the shared
//! [`zguide::heartbeat`] code; Ctrl-C/SIGTERM ends it cleanly with exit code 0,
//! even during the reconnect wait; invalid messages are logged with `log`
//! (`E: invalid message from queue: …`).

use std::time::Instant;

use zguide::heartbeat::{Backoff, Beat, Liveness};
use zguide::ppp::{self, Fault, FaultSimulator, QueueMessage, HEARTBEAT, READY};
use zguide::ppp::{HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS, INTERVAL_INIT, INTERVAL_MAX};
use zguide::{helpers, interrupt, Error, Message};

/// A new DEALER socket connected to the queue, which has been told we're ready.
fn worker_socket(context: &zmq::Context) -> Result<zmq::Socket, Error> {
    let worker = context.socket(zmq::DEALER)?;
    // Closing a socket to a dead queue must not wait for undelivered messages.
    worker.set_linger(0)?;
    worker.connect("tcp://localhost:5556")?;

    // Tell the queue we're ready for work.
    println!("I: worker ready");
    interrupt::retry_eintr(|| worker.send(READY, 0))?;
    Ok(worker)
}

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let mut worker = worker_socket(&context)?;

    // If liveness hits zero, the queue is considered disconnected.
    let mut liveness = Liveness::new(HEARTBEAT_LIVENESS);
    let mut reconnect = Backoff::new(INTERVAL_INIT, INTERVAL_MAX);
    // Send out heartbeats at regular intervals.
    let mut heartbeat = Beat::new(HEARTBEAT_INTERVAL, Instant::now());

    let mut faults = FaultSimulator::from_env(5);
    loop {
        let readable =
            match interrupt::wait_readable(&worker, HEARTBEAT_INTERVAL.as_millis() as i64) {
                Ok(readable) => readable,
                Err(Error::Interrupted) => break,
                Err(e) => return Err(e),
            };

        if readable {
            // Three frames: a request. One frame: a heartbeat.
            let msg = Message::recv_now(&worker)?;
            match ppp::classify_queue_message(msg) {
                QueueMessage::Request(request) => {
                    // Simulate typical problems, after a few cycles, to test
                    // the queue's robustness.
                    match faults.next_request() {
                        Fault::Crash => {
                            println!("I: simulating a crash");
                            break;
                        }
                        Fault::Overload => {
                            println!("I: simulating CPU overload");
                            if interrupt::sleep_ms(3000).is_err() {
                                break;
                            }
                        }
                        Fault::None => {}
                    }
                    println!("I: normal reply");
                    request.send(&worker)?;
                    liveness.reset();
                    if interrupt::sleep_ms(1000).is_err() {
                        break; // Do some heavy work; stop early on Ctrl-C.
                    }
                }
                // The queue was (recently) alive.
                QueueMessage::Heartbeat => liveness.reset(),
                QueueMessage::Invalid(reason) => {
                    log::error!("invalid message from queue: {reason}")
                }
            }
            reconnect.reset();
        } else if liveness.miss() {
            // The queue hasn't talked to us for a while: throw the socket
            // away, with anything we might have sent meanwhile, and start over.
            let delay = reconnect.next_delay();
            println!("W: heartbeat failure, can't reach queue");
            println!("W: reconnecting in {} msec...", delay.as_millis());
            if interrupt::sleep_ms(delay.as_millis() as u64).is_err() {
                break;
            }
            drop(worker);
            worker = worker_socket(&context)?;
            liveness.reset();
        }

        // Send a heartbeat to the queue if it's time.
        if heartbeat.due(Instant::now()) {
            println!("I: worker heartbeat");
            interrupt::retry_eintr(|| worker.send(HEARTBEAT, 0))?;
        }
    }
    Ok(())
}
