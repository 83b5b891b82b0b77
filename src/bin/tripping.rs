//! Round-trip demonstrator (§28 "Asynchronous Majordomo Pattern"): the port
//! of `tripping.c`.
//!
//! One process, three threads standing in for three programs: a client
//! DEALER connected to `tcp://localhost:5555`, a broker that binds DEALERs on
//! `tcp://*:5555` and `tcp://*:5556` and joins them with `zmq_proxy`, and a
//! worker DEALER on 5556 that sends every message straight back. The client
//! first does 10,000 synchronous round trips (send, wait, send…), then
//! 100,000 asynchronous ones (send them all, then read them all), and prints
//! each rate as ` N calls/second`. The gap between the two numbers is the
//! case for the asynchronous Majordomo client.
//!
//! Run it alone. Differs from the C: every socket has high-water marks of 0
//! (no limit). With the defaults the asynchronous phase can deadlock: the
//! proxy blocks sending to the worker while the worker blocks sending back to
//! the proxy (zguide PR #605, libzmq #1653). `ZGUIDE_REQUESTS` (default 10000)
//! sets the synchronous count for tests; the asynchronous count is ten times
//! that, as in the C. Ctrl-C ends it with exit code 0 (sends never block, and
//! every receive wakes on Ctrl-C; the broker and worker threads end with the
//! process). Sockets: LINGER 0, frames up to 1 MiB (every message is
//! `hello`). Only for loopback: with no HWM the queues grow as fast as the
//! client sends, which here is a bounded count.

use std::process::ExitCode;
use std::time::Instant;

use zguide::actor::{Actor, Pipe};
use zguide::helpers::{env_count, send_string};
use zguide::{program, socket, Error, Message};

/// A DEALER with no high-water marks, so nothing in the test ever blocks,
/// and LINGER 0 (the builder's 1 MiB frame bound stays: every message here
/// is `hello`).
fn dealer(context: &zmq::Context) -> socket::Builder<'_> {
    socket::new(context, zmq::DEALER)
        .send_hwm(0)
        .receive_hwm(0)
        .linger(0)
}

fn client_task(pipe: &Pipe, requests: u64) -> Result<(), Error> {
    let client = dealer(pipe.context()).connect("tcp://localhost:5555")?;
    pipe.signal(0)?;
    println!("Setting up test...");
    zguide::interrupt::sleep_ms(100)?;

    println!("Synchronous round-trip test...");
    let start = Instant::now();
    for _ in 0..requests {
        send_string(&client, "hello")?;
        Message::recv(&client)?;
    }
    println!(" {} calls/second", rate(requests, start));

    println!("Asynchronous round-trip test...");
    let start = Instant::now();
    for _ in 0..requests * 10 {
        send_string(&client, "hello")?;
    }
    for _ in 0..requests * 10 {
        Message::recv(&client)?;
    }
    println!(" {} calls/second", rate(requests * 10, start));
    pipe.send(Message::from_frames(["done"]))
}

/// Calls per second, in whole numbers like the C's integer arithmetic.
fn rate(calls: u64, start: Instant) -> u64 {
    let ms = (start.elapsed().as_millis() as u64).max(1);
    1000 * calls / ms
}

// .split worker task
// The worker bounces every message back the way it came.

fn worker_task(context: zmq::Context) -> Result<(), Error> {
    let worker = dealer(&context).connect("tcp://localhost:5556")?;
    loop {
        Message::recv(&worker)?.send(&worker)?;
    }
}

// .split broker task
// The broker is zmq_proxy between two DEALERs: plain pass-through.

fn broker_task(context: zmq::Context) -> Result<(), Error> {
    let frontend = dealer(&context).bind("tcp://*:5555")?;
    let backend = dealer(&context).bind("tcp://*:5556")?;
    zmq::proxy(&frontend, &backend)?;
    Ok(())
}

// .split main task
// Main starts the three threads and waits for the client to say "done".

fn main() -> ExitCode {
    program::run(|| {
        let requests = env_count("ZGUIDE_REQUESTS", 10_000);
        let context = zmq::Context::new();

        let (broker_ctx, worker_ctx) = (context.clone(), context.clone());
        std::thread::spawn(move || {
            if let Err(e) = program::interrupted_is_ok(broker_task(broker_ctx)) {
                log::error!("broker: {e}");
            }
        });
        std::thread::spawn(move || {
            if let Err(e) = program::interrupted_is_ok(worker_task(worker_ctx)) {
                log::error!("worker: {e}");
            }
        });
        let client = Actor::new(&context, move |pipe| {
            if let Err(e) = program::interrupted_is_ok(client_task(pipe, requests)) {
                log::error!("client: {e}");
            }
        })?;
        // "done", or Ctrl-C (Err(Interrupted), a clean exit).
        client.recv()?;
        // The broker and worker threads block for ever, as in the C; leaving
        // main ends them with the process.
        Ok(())
    })
}
