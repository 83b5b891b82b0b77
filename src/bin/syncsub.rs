//! §12 Node Coordination (`syncsub.c`): a subscriber that tells the
//! publisher it is ready.
//!
//! A SUB socket connects to `tcp://localhost:5561` and subscribes to
//! everything; after a second (time for the subscription to reach the
//! publisher) a REQ socket connects to `tcp://localhost:5562` and sends an
//! empty synchronisation request. When the reply comes, it counts updates
//! until `END` and prints `Received 1000000 updates`. Run ten of them with
//! `syncpub`.
//!
//! The one-second nap is the C's, and its weak spot: the REQ handshake proves
//! that the REQ socket is connected, not the SUB socket. Start `syncpub`
//! first and the nap is plenty.

use zguide::{helpers, interrupt, Error};

fn main() -> Result<(), Error> {
    let context = zmq::Context::new();

    // First, connect our subscriber socket.
    let subscriber = context.socket(zmq::SUB)?;
    subscriber.connect("tcp://localhost:5561")?;
    subscriber.set_subscribe(b"")?;

    // ZeroMQ is so fast, we need to wait a while...
    interrupt::sleep_ms(1000)?;

    // Second, synchronize with the publisher.
    let syncclient = context.socket(zmq::REQ)?;
    syncclient.connect("tcp://localhost:5562")?;

    // Send a synchronization request and wait for the reply.
    helpers::send_string(&syncclient, "")?;
    helpers::recv_string(&syncclient)?;

    // Third, get our updates and report how many we got. A plain blocking
    // receive: a million polls would cost more than the messages.
    let mut update_nbr = 0;
    loop {
        let update = subscriber.recv_bytes(0)?;
        if update == b"END" {
            break;
        }
        update_nbr += 1;
    }
    println!("Received {update_nbr} updates");
    Ok(())
}
