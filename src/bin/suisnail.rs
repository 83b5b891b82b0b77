//! §38 Slow Subscriber Detection (`suisnail.c`): the Suicidal Snail.
//!
//! One process, two threads. The publisher (PUB bound to `tcp://*:5556`)
//! sends the current time in milliseconds, as decimal text, every
//! millisecond. The subscriber (SUB connected to `tcp://localhost:5556`)
//! prints each timestamp and "works" 1–2 ms per message, so it slowly falls
//! behind; as soon as a message is more than one second old when it arrives
//! (`MAX_ALLOWED_DELAY`), it prints `E: subscriber cannot keep up, aborting`
//! on stderr and kills itself; the main thread then stops the publisher and
//! the program ends (exit code 0, as in the C). A subscriber that knows it is
//! too slow is better than one that silently loses data.
//!
//! Differs from the C: an optional argument sets the work per message in
//! milliseconds (e.g. `suisnail 5`, a snail that is surely too slow: tests use
//! it); without it, the C's `1 + randof(2)`. A message that is not a number is
//! logged and skipped (the C asserts). Ctrl-C exits 0.

use std::process::ExitCode;

use zguide::actor::{self, Actor};
use zguide::{helpers, interrupt, program, socket, Error, Message};

const MAX_ALLOWED_DELAY: u64 = 1000; //  msecs

/// The subscriber: connects, subscribes to everything, and croaks when a
/// message is more than a second late.
fn subscriber(pipe: &actor::Pipe, work_ms: Option<u64>) -> Result<(), Error> {
    let subscriber = socket::new(pipe.context(), zmq::SUB)
        .linger(0)
        .subscribe("")
        .connect("tcp://localhost:5556")?;
    pipe.signal(0)?;
    // Get and process messages.
    loop {
        let Some(ready) = pipe.poll(&[&subscriber], -1)? else {
            return Ok(()); // $TERM or Ctrl-C
        };
        if !ready[0] {
            continue;
        }
        let Some(msg) = Message::try_recv(&subscriber)? else {
            continue;
        };
        let text = msg.first().map(String::from_utf8_lossy).unwrap_or_default();
        println!("{text}");
        let Ok(clock) = text.trim().parse::<u64>() else {
            log::warn!("not a timestamp: {}", msg.summary());
            continue;
        };
        // Suicide snail logic.
        if helpers::clock_ms().saturating_sub(clock) > MAX_ALLOWED_DELAY {
            eprintln!("E: subscriber cannot keep up, aborting");
            return pipe.send(Message::from_frames(["gone and died"]));
        }
        // Work for 1 msec plus some random additional time.
        let work = work_ms.unwrap_or_else(|| 1 + u64::from(helpers::randof(2)));
        interrupt::sleep_ms(work)?;
    }
}

/// The publisher: a timestamped message every millisecond, until main tells
/// it to stop (the C sends `break` on the pipe; we send the actor's `$TERM`).
fn publisher(pipe: &actor::Pipe) -> Result<(), Error> {
    let publisher = socket::new(pipe.context(), zmq::PUB)
        .linger(0)
        .bind("tcp://*:5556")?;
    pipe.signal(0)?;
    loop {
        // Send current clock (msecs) to subscribers.
        helpers::send_string(&publisher, &helpers::clock_ms().to_string())?;
        // 1 msec wait; main's $TERM (or Ctrl-C) ends it.
        if pipe.poll(&[], 1)?.is_none() {
            return Ok(());
        }
    }
}

fn main() -> ExitCode {
    let work_ms = std::env::args()
        .nth(1)
        .map(|a| helpers::atoi(a.as_bytes()).max(0) as u64);
    program::run(|| {
        let context = zmq::Context::new();
        let publisher = Actor::new(&context, |pipe| {
            if let Err(e) = publisher(pipe) {
                program::interrupted_is_ok(Err(e))
                    .unwrap_or_else(|e| log::error!("publisher: {e}"));
            }
        })?;
        let subscriber = Actor::new(&context, move |pipe| {
            if let Err(e) = subscriber(pipe, work_ms) {
                program::interrupted_is_ok(Err(e))
                    .unwrap_or_else(|e| log::error!("subscriber: {e}"));
            }
        })?;
        // Wait for the subscriber to say it has died, then stop the publisher.
        subscriber.recv()?;
        drop(publisher);
        Ok(())
    })
}
