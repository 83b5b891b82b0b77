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
//! Differs from the C: Ctrl-C/SIGTERM ends it with exit code 0, and a state
//! message that is not `[name][count]` is logged and dropped.

use zguide::{helpers, interrupt, Error, Message};

fn main() -> Result<(), Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // First argument is this broker's name; other arguments are our peers' names.
    let args: Vec<String> = std::env::args().collect();
    let Some(me) = args.get(1) else {
        println!("syntax: peering1 me {{you}}...");
        return Ok(());
    };
    println!("I: preparing broker at {me}...");
    interrupt::catch_signals();
    let context = zmq::Context::new();

    // Bind state backend to endpoint.
    let statebe = context.socket(zmq::PUB)?;
    statebe.set_linger(0)?;
    statebe.bind(&format!("ipc://{me}-state.ipc"))?;

    // Connect statefe to all peers.
    let statefe = context.socket(zmq::SUB)?;
    statefe.set_linger(0)?;
    statefe.set_subscribe(b"")?;
    for peer in &args[2..] {
        println!("I: connecting to state backend at '{peer}'");
        statefe.connect(&format!("ipc://{peer}-state.ipc"))?;
    }

    // The main loop sends out status messages to peers, and collects status
    // messages back from peers. The poll timeout defines our own heartbeat.
    loop {
        let ready = match interrupt::wait_readable(&statefe, 1000) {
            Ok(ready) => ready,
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        };
        if ready {
            // Handle incoming status messages.
            let msg = Message::recv_now(&statefe)?;
            match (msg.len(), msg.get(0), msg.get(1)) {
                (2, Some(peer_name), Some(available)) => println!(
                    "{} - {} workers free",
                    String::from_utf8_lossy(peer_name),
                    String::from_utf8_lossy(available)
                ),
                _ => log::warn!("statefe: expected [name][count], got {msg:?}"),
            }
        } else {
            // Send random values for worker availability.
            let count = helpers::randof(10).to_string();
            Message::from_frames([me.as_str(), count.as_str()]).send(&statebe)?;
        }
    }
}
