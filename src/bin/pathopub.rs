//! §37 Last Value Caching (`pathopub.c`): the pathological publisher.
//!
//! Binds a PUB to the first argument, or `tcp://*:5556`, waits a second for
//! subscribers to connect, sends 1000 topics `000`…`999` once each with the
//! value `Save Roger`, then one random topic a second with
//! `Off with his head!`, until Ctrl-C. A subscriber that joins late waits a
//! long time for its topic, unless a last value cache (`lvcache`) sits in
//! between: run `pathopub tcp://*:5557` beside `lvcache` (a bind needs an
//! address or `*`, not a host name: the book's `tcp://localhost:5557` fails).
//!
//! Differs from the C: Ctrl-C exits 0 at once; `ZGUIDE_REQUESTS=n` stops
//! after `n` random updates (for tests; the default runs for ever).

use std::process::ExitCode;

use zguide::{helpers, interrupt, program, socket, Message};

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let endpoint = helpers::arg_or(1, "tcp://*:5556");
        let publisher = socket::new(&context, zmq::PUB).bind(&endpoint)?;
        // Ensure subscriber connection has time to complete.
        interrupt::sleep_ms(1000)?;

        // Send out all 1,000 topic messages.
        for topic_nbr in 0..1000 {
            Message::from_frames([format!("{topic_nbr:03}"), "Save Roger".into()])
                .send(&publisher)?;
        }
        // Send one random update per second.
        for _ in 0..helpers::env_count("ZGUIDE_REQUESTS", u64::MAX) {
            interrupt::sleep_ms(1000)?;
            let topic = format!("{:03}", helpers::randof(1000));
            Message::from_frames([topic, "Off with his head!".into()]).send(&publisher)?;
        }
        Ok(())
    })
}
