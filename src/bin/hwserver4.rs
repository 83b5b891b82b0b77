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
//! Limits: a frame may be at most 1 KiB (`MAXMSGSIZE`; a bigger one drops
//! that client's connection); frames are printed through `message::show` (at
//! most 32 bytes, escaped), at most the first three of a message. A reply to
//! a client that has gone or stopped reading is dropped by the ROUTER.
//!
//! Differs from the C, which asserts that the second frame is empty (here a
//! malformed request is logged and dropped) and copies the identity into a
//! 10-byte C string: a generated identity starts with a zero byte, so the C
//! replies to an empty identity and the reply is lost (and a long identity
//! overflows the buffer). We keep the identity's bytes, so every client gets
//! its reply; a binary identity is printed as hex. Ctrl-C/SIGTERM ends it
//! cleanly (exit code 0).

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
            // Receive a client's request, print its frames.
            let request = Message::recv(&responder)?;
            for (index, frame) in request.iter().enumerate().take(3) {
                println!("[recv] frame{} = {}", index + 1, show(frame));
            }
            // The identity, the empty delimiter, the data: nothing else.
            let identity = match (request.len(), request.get(0), request.get(1)) {
                (3, Some(identity), Some(b"")) => identity.to_vec(),
                _ => {
                    log::warn!("dropped a malformed request: {}", request.summary());
                    continue;
                }
            };
            interrupt::sleep_ms(1000)?; // Do some work.

            // Send the reply to the client.
            println!("[send] frame1 = {}", show(&identity));
            println!("[send] frame2 = ");
            println!("[send] frame3 = World\n");
            Message::from_frames([identity, Vec::new(), b"World".to_vec()]).send(&responder)?;
        }
    })
}
