//! §20 Prototyping the State Flow (`peering1.c`): brokers tell each other
//! how many workers they have free.
//!
//! `peering1 me {you}...`: this broker publishes its state on a PUB bound to
//! `ipc://<me>-state.ipc` and subscribes to each peer's `ipc://<you>-state.ipc`.
//! Each state message is `[name][count]`; a received one prints
//! `<peer> - <count> workers free`. With no message for a second, it publishes
//! a random count (there are no real workers yet). Run three in one directory:
//! `peering1 DC1 DC2 DC3`, `peering1 DC2 DC1 DC3`, `peering1 DC3 DC1 DC2`.
//! Runs until Ctrl-C.
//!
//! Differs from the C: Ctrl-C/SIGTERM ends it with exit code 0; a state
//! message that is not `[name][count]` is logged (bounded: at most 20
//! warnings a second, each with a cut-short, escaped summary) and dropped; a
//! peer's name and count are printed through `show`, so a hostile peer cannot
//! print megabytes or control characters (the guide's values print as they
//! are); sockets take frames of at most 1 MiB; publishing never blocks (PUB
//! drops what a slow subscriber cannot take).

use std::process::ExitCode;

use zguide::log_limit::complain;
use zguide::message::show;
use zguide::{helpers, interrupt, program, socket, Error, Message};

fn main() -> ExitCode {
    program::run(broker)
}

fn broker() -> Result<(), Error> {
    // First argument is this broker's name; other arguments are our peers' names.
    let args: Vec<String> = std::env::args().collect();
    let Some(me) = args.get(1) else {
        println!("syntax: peering1 me {{you}}...");
        return Ok(());
    };
    println!("I: preparing broker at {me}...");
    let context = zmq::Context::new();

    // Bind state backend to endpoint.
    let statebe = socket::new(&context, zmq::PUB)
        .linger(0)
        .bind(&format!("ipc://{me}-state.ipc"))?;

    // Connect statefe to all peers.
    let statefe = socket::new(&context, zmq::SUB)
        .linger(0)
        .subscribe("")
        .build()?;
    for peer in &args[2..] {
        println!("I: connecting to state backend at '{peer}'");
        statefe.connect(&format!("ipc://{peer}-state.ipc"))?;
    }

    // The main loop sends out status messages to peers, and collects status
    // messages back from peers. The poll timeout defines our own heartbeat.
    loop {
        if interrupt::wait_readable(&statefe, 1000)? {
            // Handle incoming status messages.
            let msg = Message::recv_now(&statefe)?;
            match (msg.len(), msg.get(0), msg.get(1)) {
                (2, Some(peer_name), Some(available)) => {
                    println!("{} - {} workers free", show(peer_name), show(available))
                }
                _ => complain(format_args!(
                    "statefe: expected [name][count], got {}",
                    msg.summary()
                )),
            }
        } else {
            // Send random values for worker availability.
            let count = helpers::randof(10).to_string();
            Message::from_frames([me.as_str(), count.as_str()]).send(&statebe)?;
        }
    }
}
