//! §2 Getting the Message Out (`wuclient.c`): the weather update client.
//!
//! A SUB socket connects to `tcp://localhost:5556` (`wuserver`), subscribes to
//! a zipcode prefix, averages the temperature of 100 matching updates and
//! prints `Average temperature for zipcode '<filter>' was <n>F`.
//!
//! Arguments: `wuclient [filter [endpoint]]`. The filter defaults, as in the
//! C, to `"10001 "` *with* the trailing space, so that `10001` matches but
//! `100010…` cannot. SUB filtering is a byte-prefix match: `wuclient 1` takes
//! every zipcode starting with 1. With the default filter only one update in
//! 100,000 matches, so collecting 100 takes about ten million messages.
//!
//! Differs from the C: the optional second argument (an addition) is the
//! endpoint to connect to, default `tcp://localhost:5556`; pass
//! `tcp://localhost:8100` to listen through `wuproxy` (§7). Each update is
//! read whole (a two-frame update counts once, its first frame); one whose
//! temperature does not parse counts as 0 (`sscanf` would leave it unset).
//! An update frame may be at most 1 KiB (`MAXMSGSIZE`). Ctrl-C/SIGTERM ends
//! it with exit code 0.

use std::process::ExitCode;

use zguide::{helpers, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        // Socket to talk to server.
        println!("Collecting updates from weather server...");
        let context = zmq::Context::new();

        // Subscribe to zipcode, default is NYC, 10001.
        let filter = helpers::arg_or(1, "10001 ");
        let subscriber = socket::new(&context, zmq::SUB)
            .max_message_size(1024)
            .subscribe(filter.as_bytes())
            .connect(&helpers::arg_or(2, "tcp://localhost:5556"))?;

        // Process 100 updates.
        let updates = 100;
        let mut total_temp: i64 = 0;
        for _ in 0..updates {
            let update = Message::recv(&subscriber)?;
            let text = String::from_utf8_lossy(update.first().unwrap_or_default());
            // Like sscanf, take what parses; a malformed update counts as 0.
            let temperature: i64 = text
                .split_whitespace()
                .nth(1)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            total_temp += temperature;
        }
        println!(
            "Average temperature for zipcode '{filter}' was {}F",
            total_temp / updates
        );
        Ok(())
    })
}
