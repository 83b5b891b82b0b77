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
//! Limits: a frame may be at most 1 KiB (`MAXMSGSIZE`; a bigger one drops
//! that client's connection); frames are printed through `message::show` (at
//! most 32 bytes, escaped). A reply to a client that has gone or stopped
//! reading is dropped by the ROUTER (it never blocks).
//!
//! Differs from the C: a generated identity is binary (it starts with a zero
//! byte), so it is printed as hex where the C's `%s` prints nothing; the
//! message is received whole, so a short message cannot swallow the next
//! one. Ctrl-C/SIGTERM ends it cleanly (exit code 0).

use std::process::ExitCode;

use zguide::message::show;
use zguide::{interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let responder = socket::new(&context, zmq::ROUTER)
            .max_message_size(1024)
            .bind("tcp://*:5555")?;

        loop {
            // Receive a client's request: identity, delimiter, data.
            let request = Message::recv(&responder)?;
            let identity = request.get(0).unwrap_or_default().to_vec();
            println!("[Frame_1] identity = {}", show(&identity));
            let delimiter = request.get(1);
            println!("[Frame_2] string = {}", show(delimiter.unwrap_or_default()));
            // With an empty second frame the third is the data; anything
            // else is not a request we understand, and is dropped whole.
            match (delimiter, request.get(2)) {
                (Some(b""), Some(content)) => {
                    println!("[Frame_3] Received request msg: {}", show(content));
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
    })
}
