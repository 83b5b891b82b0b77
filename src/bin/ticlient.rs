//! Titanic client example (§30): the client side of TSP (RFC 9), the port
//! of `ticlient.c`.
//!
//! Sends `[echo][Hello world]` to `titanic.request` through the broker at
//! `tcp://localhost:5555` and prints the UUID Titanic gives it
//! (`I: request UUID [032] …`). Then it asks `titanic.reply` for that UUID:
//! after 100 ms, then every 5 s (`I: no reply yet, trying again...`) until
//! the reply is there, prints `Reply: Hello world`, and closes the request
//! with `titanic.close`. A `400` answer means the request is unknown or
//! refused (`E: client fatal error, aborting`, exit 1); `500` is a server
//! error, e.g. Titanic's store is full (`E: server fatal error, aborting`,
//! exit 1); if the broker does not answer at all it exits 0 silently, as
//! the C does. Ctrl-C or SIGTERM ends it at once with exit 0, also while it
//! waits for a reply. `-v` prints every message.
//!
//! Run beside it: `mdbroker`, `titanic`, and, whenever you like, `mdworker`.
//! Differs from the C only where the C would crash: a `titanic.request`
//! answer without a UUID is reported and ends the client with exit code 1.

use std::process::ExitCode;

use zguide::mdp::Client;
use zguide::message::format_frame;
use zguide::{interrupt, program, Error, Message};

/// What a TSP call came to, when it did not end the program.
enum Answer {
    /// `200`: the frames after the status.
    Ok(Message),
    /// `300` or anything else non-fatal: try again later.
    NotYet,
    /// `400`/`500`: the C's fatal errors; the line was printed.
    Fatal,
}

/// Calls a TSP service. `Err` for Ctrl-C and for an MDP failure (the broker
/// never answered), which end the program quietly as in the C.
fn service_call(session: &mut Client, service: &str, request: Message) -> Result<Answer, Error> {
    let mut reply = session.send(service, request)?;
    Ok(match reply.pop().as_deref() {
        Some(b"200") => Answer::Ok(reply),
        Some(b"400") => {
            println!("E: client fatal error, aborting");
            Answer::Fatal
        }
        Some(b"500") => {
            println!("E: server fatal error, aborting");
            Answer::Fatal
        }
        _ => Answer::NotYet, //  Didn't succeed; don't care why not
    })
}

fn main() -> ExitCode {
    let mut fatal = false;
    let code = program::run(|| match run(&mut fatal) {
        Err(Error::Timeout) => Ok(()), //  MDP failure: exit 0 silently, as the C
        other => other,
    });
    if fatal {
        ExitCode::FAILURE
    } else {
        code
    }
}

fn run(fatal: &mut bool) -> Result<(), Error> {
    let verbose = std::env::args().nth(1).as_deref() == Some("-v");
    let mut session = Client::new("tcp://localhost:5555", verbose)?;

    //  1. Send 'echo' request to Titanic
    let request = Message::from_frames(["echo", "Hello world"]);
    let uuid = match service_call(&mut session, "titanic.request", request)? {
        Answer::Ok(mut reply) => reply.pop(),
        Answer::NotYet => None,
        Answer::Fatal => {
            *fatal = true;
            return Ok(());
        }
    };
    let Some(uuid) = uuid else {
        println!("E: titanic gave no request UUID, aborting");
        *fatal = true;
        return Ok(());
    };
    println!("{}", format_frame("I: request UUID ", &uuid));

    //  2. Wait until we get a reply
    loop {
        interrupt::sleep_ms(100)?;
        let request = Message::from_frames([uuid.clone()]);
        match service_call(&mut session, "titanic.reply", request)? {
            Answer::Ok(reply) => {
                let text = String::from_utf8_lossy(reply.last().unwrap_or_default()).into_owned();
                println!("Reply: {text}");
                //  3. Close request
                let request = Message::from_frames([uuid.clone()]);
                if let Answer::Fatal = service_call(&mut session, "titanic.close", request)? {
                    *fatal = true;
                }
                return Ok(());
            }
            Answer::Fatal => {
                *fatal = true;
                return Ok(());
            }
            Answer::NotYet => {}
        }
        println!("I: no reply yet, trying again...");
        interrupt::sleep_ms(5000)?; //  Try again in 5 seconds
    }
}
