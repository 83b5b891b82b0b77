//! Hello World server on a ROUTER socket (`hwserver3.c`, in `examples/C/`
//! but not in the book's text).
//!
//! A ROUTER bound to `tcp://*:5555` receives `[identity][""][Hello]` from a
//! REQ client (or a DEALER client that adds the delimiter itself), prints
//! each frame (`[Frame_1] identity = …`, `[Frame_2] string = `,
//! `[Frame_3] Received request msg: Hello`), works for a second, prints
//! `Send respond msg: World` (then a blank line) and sends
//! `[identity][""][World]`: the ROUTER routes by the first frame. A message
//! whose second frame is not empty is dropped with
//! `Discard the ZMQ message!`. Run `hwclient3` (identity `ZMQ`), `hwclient`
//! or `hwclient2` beside it.
//!
//! Differs from the C: a generated identity is binary (it starts with a zero
//! byte), so it is printed as hex where the C's `%s` prints nothing; the
//! message is received whole, so a short message cannot swallow the next
//! one. Ctrl-C/SIGTERM ends it cleanly (exit code 0).

use zguide::message::frame_text;
use zguide::{interrupt, Error, Message};

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();
    let responder = context.socket(zmq::ROUTER)?;
    responder.set_linger(0)?;
    responder.bind("tcp://*:5555")?;

    let result = (|| -> Result<(), Error> {
        loop {
            // Receive a client's request: identity, delimiter, data.
            let request = Message::recv(&responder)?;
            let identity = request.get(0).unwrap_or_default().to_vec();
            println!("[Frame_1] identity = {}", frame_text(&identity));
            let delimiter = request.get(1);
            println!(
                "[Frame_2] string = {}",
                frame_text(delimiter.unwrap_or_default())
            );
            // With an empty second frame the third is the data; anything
            // else is not a request we understand, and is dropped whole.
            match (delimiter, request.get(2)) {
                (Some(b""), Some(content)) => {
                    println!("[Frame_3] Received request msg: {}", frame_text(content));
                }
                _ => {
                    println!("Discard the ZMQ message!");
                    continue;
                }
            }
            interrupt::sleep_ms(1000)?; // Do some work.

            // Send the reply to the client.
            println!("Send respond msg: World\n");
            let mut reply = Message::from_frames(["World"]);
            reply.wrap_envelope(identity);
            reply.send(&responder)?;
        }
    })();
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}
