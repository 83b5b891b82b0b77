//! §13 Zero-Copy: the guide shows only a fragment (`zmq_msg_init_data` with a
//! free function); this program makes it runnable.
//!
//! `zmq::Message::from(Vec<u8>)` is `zmq_msg_init_data`: the vector's heap
//! buffer is handed to libzmq as it is, no copy, together with a free
//! function that libzmq calls once the last reference to the message is
//! gone (after the send, or after the receiver dropped it). We never free it
//! ourselves, which is the C rule "no `zmq_msg_close` after a send".
//!
//! The program sends a 1 MiB buffer from a PAIR socket to another PAIR
//! socket and checks it, then sends a three-part message whose frames come
//! from three separate buffers (multipart instead of marshalling them into
//! one). It prints:
//!
//! ```text
//! Zero-copy over inproc://zerocopy
//! Sending 1048576 bytes: the message holds our buffer, not a copy
//! Received 1048576 bytes, contents intact
//! The received frame is our buffer: nothing was copied on the way
//! Sending a 3-part message from 3 separate buffers
//! Received 3 frames: header (6 bytes), body (65536 bytes), trailer (7 bytes), contents intact
//! ```
//!
//! Argument: the endpoint, default `inproc://zerocopy` (both sockets in this
//! one process, so nothing else needs to run). Over inproc libzmq passes the
//! message itself, so even the receiver sees our buffer. Give a TCP endpoint,
//! e.g. `zerocopy tcp://127.0.0.1:5580`, and the line reads
//! `The received frame is a new buffer: receiving always copies`, which is
//! the book's point that there is no zero-copy on receive.
//!
//! Limits: the receiving socket takes frames of up to 2 MiB (`MAXMSGSIZE`;
//! the builder's default, 1 MiB, is just the size of our payload).

use std::process::ExitCode;

use zguide::{helpers, program, socket, Error};

const PAYLOAD_SIZE: usize = 1024 * 1024;

fn main() -> ExitCode {
    program::run(zero_copy)
}

fn zero_copy() -> Result<(), Error> {
    let endpoint = helpers::arg_or(1, "inproc://zerocopy");
    println!("Zero-copy over {endpoint}");
    let context = zmq::Context::new();
    // Frames of up to 2 MiB: this program's point is a large message.
    let receiver = socket::new(&context, zmq::PAIR)
        .max_message_size(2 << 20)
        .bind(&endpoint)?;
    let sender = socket::new(&context, zmq::PAIR).connect(&endpoint)?;

    // One large buffer: collected from an exact-size iterator, so capacity
    // equals length and turning it into a boxed slice does not reallocate.
    let buffer: Vec<u8> = (0..PAYLOAD_SIZE).map(pattern).collect();
    let address = buffer.as_ptr();
    let message = zmq::Message::from(buffer); // moved: libzmq owns it now
    println!(
        "Sending {} bytes: the message holds {}",
        message.len(),
        if message.as_ptr() == address {
            "our buffer, not a copy"
        } else {
            "a copy of our buffer"
        }
    );
    sender.send(message, 0)?;

    let received = receiver.recv_msg(0)?;
    let intact = received.len() == PAYLOAD_SIZE
        && received.iter().enumerate().all(|(i, &b)| b == pattern(i));
    println!(
        "Received {} bytes, contents {}",
        received.len(),
        if intact { "intact" } else { "CORRUPTED" }
    );
    println!(
        "The received frame is {}",
        if received.as_ptr() == address {
            "our buffer: nothing was copied on the way"
        } else {
            "a new buffer: receiving always copies"
        }
    );
    // Dropping the last reference makes libzmq call the free function.
    drop(received);

    // A multipart message from separate buffers, each handed over uncopied.
    let parts: [(&str, Vec<u8>); 3] = [
        ("header", b"HEADER".to_vec()),
        ("body", (0..65536).map(pattern).collect()),
        ("trailer", b"TRAILER".to_vec()),
    ];
    println!(
        "Sending a {}-part message from {0} separate buffers",
        parts.len()
    );
    // A copy kept only to check what arrives; the originals are moved.
    let expected: Vec<Vec<u8>> = parts.iter().map(|(_, data)| data.clone()).collect();
    let names: Vec<&str> = parts.iter().map(|(name, _)| *name).collect();
    let last = parts.len() - 1;
    for (index, (_, data)) in parts.into_iter().enumerate() {
        let more = if index < last { zmq::SNDMORE } else { 0 };
        sender.send(zmq::Message::from(data), more)?;
    }
    let frames = receiver.recv_multipart(0)?;
    let sizes: Vec<String> = names
        .iter()
        .zip(&frames)
        .map(|(name, frame)| format!("{name} ({} bytes)", frame.len()))
        .collect();
    println!(
        "Received {} frames: {}, contents {}",
        frames.len(),
        sizes.join(", "),
        if frames == expected {
            "intact"
        } else {
            "CORRUPTED"
        }
    );
    Ok(())
}

/// The byte at `index` of a test payload: 251 is prime, so the pattern does
/// not line up with any power-of-two chunk size.
fn pattern(index: usize) -> u8 {
    (index % 251) as u8
}
