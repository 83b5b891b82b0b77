//! §36 Pub-Sub Tracing (`espresso.c`): the Espresso pattern, a pub-sub proxy
//! that also shows everything passing through it.
//!
//! One process, four threads: a publisher (PUB bound to `tcp://*:6000`) that
//! sends `A-12345`-style messages, a letter A–J and five digits, ten times a
//! second; a subscriber (SUB connected to `tcp://localhost:6001`) that
//! subscribes to `A` and `B`, reads five messages and leaves; the main
//! thread's proxy from an XSUB (connected to `tcp://localhost:6000`) to an
//! XPUB (bound to `tcp://*:6001`), with a *capture* socket; and a listener
//! that prints every frame the capture copies, as `zframe_print` does. So you
//! see the subscriptions going upstream (`[002] 0141`, `[002] 0142`: 0x01
//! then the topic), five A/B messages coming down, the unsubscriptions when
//! the subscriber leaves (`[002] 0041`, `[002] 0042`), then nothing: the
//! publisher filters at the source. Ctrl-C prints ` interrupted` and exits 0.
//!
//! Differs from the C: the XPUB takes subscriptions of at most 1 KiB (libzmq
//! drops a peer that sends more), so nobody can make the proxy keep huge
//! subscription trees; the threads stop and are joined on Ctrl-C.

use std::process::ExitCode;

use zguide::actor::{self, Actor};
use zguide::message::format_frame;
use zguide::{helpers, interrupt, program, socket, Message};

/// Subscriptions arrive as messages on the XPUB; the handshake needs ~300 bytes.
const MAX_SUBSCRIPTION: i64 = 1024;

/// The subscriber asks for messages starting with A and B, reads five, and
/// leaves.
fn subscriber_thread(pipe: &actor::Pipe) {
    let _ = pipe.signal(0);
    let subscriber = match socket::new(pipe.context(), zmq::SUB)
        .subscribe("A")
        .subscribe("B")
        .connect("tcp://localhost:6001")
    {
        Ok(socket) => socket,
        Err(e) => return log::error!("subscriber: {e}"),
    };
    let mut count = 0;
    while count < 5 {
        match pipe.poll(&[&subscriber], -1) {
            Ok(Some(ready)) if ready[0] => {
                if Message::try_recv(&subscriber).ok().flatten().is_some() {
                    count += 1;
                }
            }
            Ok(Some(_)) => {}
            _ => break, // $TERM or Ctrl-C
        }
    }
    drop(subscriber); // Leaving is what makes the XPUB unsubscribe.
    let _ = pipe.poll(&[], -1); // Wait for $TERM.
}

/// The publisher sends random messages starting with A–J.
fn publisher_thread(pipe: &actor::Pipe) {
    let publisher = match socket::new(pipe.context(), zmq::PUB).bind("tcp://*:6000") {
        Ok(socket) => socket,
        Err(e) => return log::error!("publisher: {e}"),
    };
    let _ = pipe.signal(0);
    loop {
        let letter = char::from(b'A' + helpers::randof(10) as u8);
        let text = format!("{letter}-{:05}", helpers::randof(100_000));
        if helpers::send_string(&publisher, &text).is_err() {
            break;
        }
        // Wait for 1/10th second, or until $TERM or Ctrl-C.
        if !matches!(pipe.poll(&[], 100), Ok(Some(_))) {
            break;
        }
    }
}

/// The listener prints everything that arrives on its pipe from the proxy.
fn listener_thread(pipe: &actor::Pipe) {
    let capture = match socket::new(pipe.context(), zmq::PAIR).connect("inproc://espresso-capture")
    {
        Ok(socket) => socket,
        Err(e) => return log::error!("listener: {e}"),
    };
    let _ = pipe.signal(0);
    while let Ok(Some(ready)) = pipe.poll(&[&capture], -1) {
        if ready[0] {
            while let Ok(Some(msg)) = Message::try_recv(&capture) {
                for frame in msg.iter() {
                    println!("{}", format_frame("", frame));
                }
            }
        }
    }
}

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        // The capture pipe, bound before the listener connects to it.
        let mut capture = socket::new(&context, zmq::PAIR)
            .linger(0)
            .bind("inproc://espresso-capture")?;
        let publisher = Actor::new(&context, publisher_thread)?;
        let subscriber = Actor::new(&context, subscriber_thread)?;
        let mut xsub = socket::new(&context, zmq::XSUB)
            .linger(0)
            .connect("tcp://localhost:6000")?;
        let mut xpub = socket::new(&context, zmq::XPUB)
            .linger(0)
            .max_message_size(MAX_SUBSCRIPTION)
            .bind("tcp://*:6001")?;
        let listener = Actor::new(&context, listener_thread)?;
        let result =
            interrupt::proxy_with_capture(&context, &mut xsub, &mut xpub, Some(&mut capture));
        println!(" interrupted");
        // Tell attached threads to exit (each Actor's drop sends $TERM).
        drop((publisher, subscriber, listener));
        program::interrupted_is_ok(result)
    })
}
