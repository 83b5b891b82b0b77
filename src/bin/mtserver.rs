//! §10 Multithreading with ZeroMQ (`mtserver.c`): the multithreaded Hello
//! World server.
//!
//! A ROUTER bound to `tcp://*:5555` faces the clients (`hwclient`), a DEALER
//! bound to `inproc://workers` faces five worker threads, each a REP socket
//! that prints `Received request: [<request>]`, works for a second and
//! replies `World`; `zmq_proxy` joins the two. One context for the whole
//! process, one socket per thread, and the DEALER is bound before the workers
//! connect, as the section's rules say. Run one or more `hwclient` beside it.
//!
//! Differs from the C: Ctrl-C/SIGTERM stops the proxy (`interrupt::proxy`)
//! and the workers (their waits are interruptible), the threads are joined,
//! and the program exits with code 0.

use zguide::{helpers, interrupt, Error};

fn worker_routine(context: zmq::Context) -> Result<(), Error> {
    // Socket to talk to the dispatcher.
    let receiver = context.socket(zmq::REP)?;
    receiver.connect("inproc://workers")?;

    loop {
        let request = helpers::recv_string(&receiver)?;
        println!("Received request: [{request}]");
        interrupt::sleep_ms(1000)?; // Do some 'work'.
        helpers::send_string(&receiver, "World")?; // Send the reply back.
    }
}

fn main() -> Result<(), Error> {
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // Socket to talk to clients.
    let mut clients = context.socket(zmq::ROUTER)?;
    clients.set_linger(0)?;
    clients.bind("tcp://*:5555")?;

    // Socket to talk to workers.
    let mut workers = context.socket(zmq::DEALER)?;
    workers.set_linger(0)?;
    workers.bind("inproc://workers")?;

    // Launch the pool of worker threads.
    let pool: Vec<_> = (0..5)
        .map(|_| {
            let context = context.clone();
            std::thread::spawn(move || worker_routine(context))
        })
        .collect();

    // Connect the worker threads to the clients via a queue proxy.
    let result = interrupt::proxy(&context, &mut clients, &mut workers);
    for worker in pool {
        match worker.join() {
            Ok(Ok(()) | Err(Error::Interrupted)) => {}
            Ok(Err(e)) => eprintln!("E: worker failed: {e}"),
            Err(_) => eprintln!("E: worker panicked"),
        }
    }
    match result {
        Ok(()) | Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}
