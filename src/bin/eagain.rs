//! §51 Dealing with Blocked Peers (`eagain.c`): what a full send queue looks
//! like when sends may not block.
//!
//! A DEALER with `SNDHWM` 4 and `SNDTIMEO` 0 connects to
//! `tcp://localhost:9876`, where nobody listens, and tries to send ten
//! messages, printing `Sending message 0` … before each. The connection never
//! completes, so the messages queue; the fifth send finds the queue full and,
//! instead of blocking, fails with `EAGAIN`, which the program prints
//! (`Resource temporarily unavailable`) before it stops. This is how a
//! server with one sending thread must treat a peer that stops reading: see
//! the error, drop or disconnect that peer, never block. Exits 0.
//!
//! Differs from the C: nothing on purpose; LINGER 0 so the queued messages
//! do not hold up the exit.

use std::process::ExitCode;

use zguide::{program, socket, Error};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let mailbox = socket::new(&context, zmq::DEALER)
            .linger(0)
            .send_hwm(4)
            .build()?;
        mailbox.set_sndtimeo(0)?;
        mailbox.connect("tcp://localhost:9876")?;
        for count in 0..10 {
            println!("Sending message {count}");
            match mailbox.send(format!("message {count}").as_bytes(), 0) {
                Ok(()) => {}
                Err(e) => {
                    println!("{e}");
                    break;
                }
            }
        }
        Ok::<(), Error>(())
    })
}
