//! §33 Model One: Simple Retry and Failover (`flclient1.c`): a REQ client
//! that finds a live echo service among the endpoints it is given.
//!
//! `flclient1 <endpoint>…` sends `Hello world` on a fresh REQ socket per
//! attempt (`I: trying echo service at <endpoint>...`) and waits 1000 ms for
//! the echo. With one endpoint it tries up to three times
//! (`W: no response from <endpoint>, retrying...`); with several it tries
//! each once (`W: no response from <endpoint>`). A reply prints
//! `Service is running OK`. Without arguments it prints
//! `I: syntax: <program> <endpoint> ...`. Run it beside `flserver1`:
//!
//! ```text
//! flserver1 tcp://*:5555 &  flserver1 tcp://*:5556 &
//! flclient1 tcp://localhost:5555 tcp://localhost:5556
//! ```
//!
//! Differs from the C: it exits 1 when no service answered (the C exits 0
//! either way); each socket has LINGER 0, so the unanswered request of a
//! dead server cannot delay the exit. Ctrl-C/SIGTERM exits 0.

use std::process::ExitCode;

use zguide::{interrupt, program, socket, Error, Message};

const REQUEST_TIMEOUT: i64 = 1000; // msecs
const MAX_RETRIES: usize = 3; // Before we abandon

/// One attempt on a new REQ socket, closed afterwards whatever happened.
fn try_request(
    context: &zmq::Context,
    endpoint: &str,
    request: &Message,
) -> Result<Option<Message>, Error> {
    println!("I: trying echo service at {endpoint}...");
    let client = socket::new(context, zmq::REQ).linger(0).connect(endpoint)?;
    // Send the request, wait safely for the reply.
    request.clone().send(&client)?;
    Message::recv_timeout(&client, REQUEST_TIMEOUT)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let endpoints = &args[1..];
    if endpoints.is_empty() {
        println!("I: syntax: {} <endpoint> ...", args[0]);
        return ExitCode::SUCCESS;
    }
    let mut served = false;
    let code = program::run(|| {
        let context = zmq::Context::new();
        let request = Message::from_frames(["Hello world"]);
        let mut reply = None;
        if let [endpoint] = endpoints {
            // For one endpoint, we retry N times.
            for _ in 0..MAX_RETRIES {
                reply = try_request(&context, endpoint, &request)?;
                if reply.is_some() {
                    break; // Successful
                }
                println!("W: no response from {endpoint}, retrying...");
            }
        } else {
            // For multiple endpoints, try each at most once.
            for endpoint in endpoints {
                reply = try_request(&context, endpoint, &request)?;
                if reply.is_some() {
                    break; // Successful
                }
                println!("W: no response from {endpoint}");
            }
        }
        if reply.is_some() {
            println!("Service is running OK");
            served = true;
        }
        Ok(())
    });
    // Ctrl-C is a clean exit; finding no service is not.
    if served || interrupt::interrupted() {
        code
    } else {
        ExitCode::FAILURE
    }
}
