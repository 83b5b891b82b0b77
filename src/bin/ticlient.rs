//! Titanic client example (§30): the client side of TSP (RFC 9), the port
//! of `ticlient.c`.
//!
//! Sends `[echo][Hello world]` to `titanic.request` through the broker at
//! `tcp://localhost:5555` and prints the UUID Titanic gives it
//! (`I: request UUID [032] …`). Then it asks `titanic.reply` for that UUID:
//! after 100 ms, then every 5 s (`I: no reply yet, trying again...`) until
//! the reply is there, prints `Reply: Hello world`, and closes the request
//! with `titanic.close`. A `400` answer means the request is unknown
//! (`E: client fatal error, aborting`, exit 1); `500` is a server error
//! (`E: server fatal error, aborting`, exit 1); if the broker does not
//! answer at all it exits 0 silently, as the C does. `-v` prints every
//! message.
//!
//! Run beside it: `mdbroker`, `titanic`, and, whenever you like, `mdworker`.
//! Differs from the C only where the C would crash: a `titanic.request`
//! answer without a UUID is reported and ends the client with exit code 1.

use zguide::helpers::init_log;
use zguide::mdp::Client;
use zguide::message::format_frame;
use zguide::{interrupt, Message};

/// Calls a TSP service: the reply after its `200`, or `None` for any other
/// non-fatal status. `400`/`500` and MDP failure end the program as in C.
fn service_call(session: &mut Client, service: &str, request: Message) -> Option<Message> {
    let Ok(mut reply) = session.send(service, request) else {
        std::process::exit(0); //  Interrupted or failed
    };
    match reply.pop().as_deref() {
        Some(b"200") => Some(reply),
        Some(b"400") => {
            println!("E: client fatal error, aborting");
            std::process::exit(1);
        }
        Some(b"500") => {
            println!("E: server fatal error, aborting");
            std::process::exit(1);
        }
        _ => None, //  Didn't succeed; don't care why not
    }
}

fn main() {
    init_log("info");
    interrupt::catch_signals();
    let verbose = std::env::args().nth(1).as_deref() == Some("-v");
    let mut session = match Client::new("tcp://localhost:5555", verbose) {
        Ok(session) => session,
        Err(e) => {
            log::error!("cannot start the client: {e}");
            std::process::exit(1);
        }
    };

    //  1. Send 'echo' request to Titanic
    let request = Message::from_frames(["echo", "Hello world"]);
    let uuid = service_call(&mut session, "titanic.request", request).and_then(|mut r| r.pop());
    let Some(uuid) = uuid else {
        println!("E: titanic gave no request UUID, aborting");
        std::process::exit(1);
    };
    println!("{}", format_frame("I: request UUID ", &uuid));

    //  2. Wait until we get a reply
    loop {
        if interrupt::sleep_ms(100).is_err() {
            break;
        }
        let request = Message::from_frames([uuid.clone()]);
        if let Some(reply) = service_call(&mut session, "titanic.reply", request) {
            let text = String::from_utf8_lossy(reply.last().unwrap_or_default()).into_owned();
            println!("Reply: {text}");
            //  3. Close request
            let request = Message::from_frames([uuid.clone()]);
            service_call(&mut session, "titanic.close", request);
            break;
        }
        println!("I: no reply yet, trying again...");
        if interrupt::sleep_ms(5000).is_err() {
            break; //  Try again in 5 seconds
        }
    }
}
