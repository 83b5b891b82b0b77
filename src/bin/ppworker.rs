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
//! `ppworker --cpp` speaks the C++ dialect of the guide's `ppworker.cpp`:
//! READY and HEARTBEAT are the text `READY` and `HEARTBEAT` both ways, and
//! each new socket takes a printable random identity (`XXXX-XXXX`), because
//! the C++ `ppqueue` keeps worker identities as C strings and cannot route to
//! libzmq's binary ones. So a Rust worker serves through the C++ queue; ours
//! accepts both dialects (see [`zguide::ppp::Dialect`]).
//!
//! Differs from the C: `ZGUIDE_SIMULATE` makes the failures deterministic for
//! tests (`none`, `crash` on the 4th request, `overload`, unset/`random` for
//! the C odds, `random:<seed>` for seeded dice); the liveness, heartbeat and
//! back-off logic is the shared [`zguide::heartbeat`] code; invalid messages
//! are logged with `log`, bounded and escaped (`E: invalid message from
//! queue: <why>: <summary>`) instead of `zmsg_dump`. No send blocks: a reply
//! or heartbeat the queue does not take (its pipe is full: the queue stopped
//! reading) is dropped with a warning, and the liveness count decides when
//! to reconnect; inbound frames are limited to 1 MiB (`ZMQ_MAXMSGSIZE`).
//! Ctrl-C/SIGTERM ends it cleanly with exit code 0, even during the
//! reconnect wait, during its "work", and with a reply still queued for a
//! queue that died (LINGER 0: nobody is left to read it).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use zguide::heartbeat::{Backoff, Beat, Liveness};
use zguide::log_limit::Window;
use zguide::ppp::{self, Dialect, Fault, FaultSimulator, QueueMessage};
use zguide::ppp::{HEARTBEAT_INTERVAL, HEARTBEAT_LIVENESS, INTERVAL_INIT, INTERVAL_MAX};
use zguide::{helpers, interrupt, program, socket, Error, Message};

/// A new DEALER socket connected to the queue, which has been told we're ready.
fn worker_socket(context: &zmq::Context, dialect: Dialect) -> Result<zmq::Socket, Error> {
    // Closing a socket to a dead queue must not wait for undelivered messages.
    let mut worker = socket::new(context, zmq::DEALER).linger(0);
    if dialect == Dialect::Cpp {
        worker = worker.identity(helpers::random_identity());
    }
    let worker = worker.connect("tcp://localhost:5556")?;

    // Tell the queue we're ready for work.
    println!("I: worker ready");
    interrupt::retry_eintr(|| worker.send(dialect.ready(), 0))?;
    Ok(worker)
}

/// Sends to the queue without blocking; a message the queue does not take
/// is dropped and said so, at most once a second.
fn send_to_queue(worker: &zmq::Socket, msg: Message, drops: &mut Window) -> Result<(), Error> {
    if !msg.send_or_drop(worker)? {
        if let Some(more) = drops.allow(Instant::now()) {
            log::warn!(
                "the queue is not reading; message dropped ({more} more since the last report)"
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let dialect = Dialect::from_args(std::env::args().skip(1));
    program::run(|| {
        let context = zmq::Context::new();
        let mut worker = worker_socket(&context, dialect)?;

        // If liveness hits zero, the queue is considered disconnected.
        let mut liveness = Liveness::new(HEARTBEAT_LIVENESS);
        let mut reconnect = Backoff::new(INTERVAL_INIT, INTERVAL_MAX);
        // Send out heartbeats at regular intervals.
        let mut heartbeat = Beat::new(HEARTBEAT_INTERVAL, Instant::now());
        let mut drops = Window::new(1, Duration::from_secs(1));

        let mut faults = FaultSimulator::from_env(5);
        loop {
            if interrupt::wait_readable(&worker, interrupt::millis(HEARTBEAT_INTERVAL))? {
                // Three frames: a request. One frame: a heartbeat.
                let msg = Message::recv_now(&worker)?;
                match ppp::classify_queue_message(msg, dialect) {
                    QueueMessage::Request(request) => {
                        // Simulate typical problems, after a few cycles, to
                        // test the queue's robustness.
                        match faults.next_request() {
                            Fault::Crash => {
                                println!("I: simulating a crash");
                                break;
                            }
                            Fault::Overload => {
                                println!("I: simulating CPU overload");
                                interrupt::sleep_ms(3000)?;
                            }
                            Fault::None => {}
                        }
                        println!("I: normal reply");
                        send_to_queue(&worker, request, &mut drops)?;
                        liveness.reset();
                        interrupt::sleep_ms(1000)?; // Do some heavy work
                    }
                    // The queue was (recently) alive.
                    QueueMessage::Heartbeat => liveness.reset(),
                    QueueMessage::Invalid(why) => log::error!("invalid message from queue: {why}"),
                }
                reconnect.reset();
            } else if liveness.miss() {
                // The queue hasn't talked to us for a while: throw the socket
                // away, with anything we might have sent meanwhile, and start over.
                let delay = reconnect.next_delay();
                println!("W: heartbeat failure, can't reach queue");
                println!("W: reconnecting in {} msec...", delay.as_millis());
                interrupt::sleep_ms(delay.as_millis() as u64)?;
                drop(worker);
                worker = worker_socket(&context, dialect)?;
                liveness.reset();
            }

            // Send a heartbeat to the queue if it's time.
            if heartbeat.due(Instant::now()) {
                println!("I: worker heartbeat");
                let beat = Message::from_frames([dialect.heartbeat()]);
                send_to_queue(&worker, beat, &mut drops)?;
            }
        }
        Ok(())
    })
}
