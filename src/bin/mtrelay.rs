//! §11 Signaling Between Threads (PAIR Sockets) (`mtrelay.c`): a relay race
//! of three threads.
//!
//! The main thread binds a PAIR socket to `inproc://step3` and starts step 2;
//! step 2 binds `inproc://step2` and starts step 1; each step connects to the
//! next one's socket and sends `READY`. The output is always these three
//! lines, in this order:
//!
//! ```text
//! Step 1 ready, signaling step 2
//! Step 2 ready, signaling step 3
//! Test successful!
//! ```
//!
//! Each socket is bound before the thread that connects to it starts: with
//! inproc that order matters (on libzmq before 4.0 a connect to an unbound
//! inproc endpoint failed). Needs nothing beside it.
//!
//! Differs from the C: the threads are joined, so a failure in a step is
//! reported instead of lost; Ctrl-C/SIGTERM ends it with exit code 0.

use std::process::ExitCode;
use std::thread;

use zguide::{helpers, program, socket, Error};

fn step1(context: zmq::Context) -> Result<(), Error> {
    // Connect to step2 and tell it we're ready.
    let xmitter = socket::new(&context, zmq::PAIR).connect("inproc://step2")?;
    println!("Step 1 ready, signaling step 2");
    helpers::send_string(&xmitter, "READY")
}

fn step2(context: zmq::Context) -> Result<(), Error> {
    // Bind the inproc socket before starting step1.
    let receiver = socket::new(&context, zmq::PAIR).bind("inproc://step2")?;
    let step1_context = context.clone();
    let step1 = thread::spawn(move || step1(step1_context));

    // Wait for the signal and pass it on.
    helpers::recv_string(&receiver)?;
    join(step1)?;

    // Connect to step3 and tell it we're ready.
    let xmitter = socket::new(&context, zmq::PAIR).connect("inproc://step3")?;
    println!("Step 2 ready, signaling step 3");
    helpers::send_string(&xmitter, "READY")
}

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();

        // Bind inproc socket before starting step2.
        let receiver = socket::new(&context, zmq::PAIR).bind("inproc://step3")?;
        let step2_context = context.clone();
        let step2 = thread::spawn(move || step2(step2_context));

        // Wait for signal.
        helpers::recv_string(&receiver)?;
        join(step2)?;

        println!("Test successful!");
        Ok(())
    })
}

/// Waits for a step's thread and passes on its error (or its panic).
fn join(step: thread::JoinHandle<Result<(), Error>>) -> Result<(), Error> {
    step.join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
