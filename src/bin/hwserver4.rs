//! Hello World server on a ROUTER socket, frame by frame (`hwserver4.c`, in
//! `examples/C/` but not in the book's text).
//!
//! A ROUTER bound to `tcp://*:5555` prints the three frames of each request
//! (`[recv] frame1 = <identity>`, `[recv] frame2 = `, `[recv] frame3 = Hello`),
//! works for a second, prints the three frames of its reply
//! (`[send] frame1 = <identity>`, `[send] frame2 = `, `[send] frame3 = World`,
//! then a blank line) and sends them. Made for `hwclient4` (a DEALER with
//! identity `ZMQ`); `hwclient3` and `hwclient2` work too.
//!
//! Differs from the C, which asserts that the second frame is empty (here a
//! malformed request is logged and dropped) and copies the identity into a
//! 10-byte C string: a generated identity starts with a zero byte, so the C
//! replies to an empty identity and the reply is lost (and a long identity
//! overflows the buffer). We keep the identity's bytes, so every client gets
//! its reply; a binary identity is printed as hex. Ctrl-C/SIGTERM ends it
//! cleanly (exit code 0).

use zguide::message::frame_text;
use zguide::{helpers, interrupt, Error, Message};

fn main() -> Result<(), Error> {
    helpers::init_log("info");
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let responder = context.socket(zmq::ROUTER)?;
    responder.set_linger(0)?;
    responder.bind("tcp://*:5555")?;

    let result = (|| -> Result<(), Error> {
        loop {
            // Receive a client's request, print its frames.
            let request = Message::recv(&responder)?;
            for (index, frame) in request.iter().enumerate() {
                println!("[recv] frame{} = {}", index + 1, frame_text(frame));
            }
            // The identity, the empty delimiter, the data: nothing else.
            let identity = match (request.len(), request.get(0), request.get(1)) {
                (3, Some(identity), Some(b"")) => identity.to_vec(),
                _ => {
                    log::warn!("dropped a malformed request: {request:?}");
                    continue;
                }
            };
            interrupt::sleep_ms(1000)?; // Do some work.

            // Send the reply to the client.
            println!("[send] frame1 = {}", frame_text(&identity));
            println!("[send] frame2 = ");
            println!("[send] frame3 = World\n");
            Message::from_frames([identity, Vec::new(), b"World".to_vec()]).send(&responder)?;
        }
    })();
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}
