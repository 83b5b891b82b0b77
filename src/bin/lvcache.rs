//! §37 Last Value Caching (`lvcache.c`): a proxy that remembers the last
//! message of every topic and gives it to each new subscriber at once.
//!
//! A SUB socket connected to the publisher at `tcp://localhost:5557`
//! (subscribed to everything) and an XPUB bound to `tcp://*:5558` for the
//! subscribers. Every update `[topic][value]` is cached and forwarded; every
//! subscription the XPUB reports (`0x01` + topic) prints
//! `Sending cached topic <topic>` and sends the cached `[topic][value]`, if
//! any. Run: `lvcache`, then `pathopub tcp://*:5557` (it binds
//! there), then `pathosub tcp://localhost:5558`: the subscriber prints
//! `Save Roger` at once instead of waiting up to 1000 seconds for its topic.
//!
//! Differs from the C (the fixes the text asks for, and bounds):
//! * the frontend *connects* to `tcp://localhost:5557`; the C connects to the
//!   wildcard `tcp://*:5557`, which only works by accident on Linux;
//! * `XPUB_VERBOSE` is set, so every subscription reaches us, not only the
//!   first one per topic: a second subscriber to a topic gets the cached
//!   value too (the C's XPUB swallows duplicate subscriptions);
//! * bounds for a publisher or subscriber that misbehaves: at most
//!   [`MAX_TOPICS`] cached topics (past that, new topics are forwarded but not
//!   cached, logged once), updates of at most 64 KiB per frame, subscriptions of
//!   at most 1 KiB; updates that are not two frames are logged (bounded) and
//!   dropped; topics are printed escaped and cut short;
//! * sends never block: the XPUB drops for a subscriber that stopped reading.
//! * Ctrl-C exits 0 (the C runs until killed).

use std::collections::HashMap;
use std::process::ExitCode;

use zguide::message::show;
use zguide::{interrupt, program, socket, Message};

/// The most topics we remember.
const MAX_TOPICS: usize = 100_000;

fn main() -> ExitCode {
    program::run(|| {
        let context = zmq::Context::new();
        let frontend = socket::new(&context, zmq::SUB)
            .linger(0)
            .max_message_size(64 * 1024)
            .subscribe("") // Subscribe to every single topic from publisher
            .connect("tcp://localhost:5557")?;
        let backend = socket::new(&context, zmq::XPUB)
            .linger(0)
            .max_message_size(1024)
            .build()?;
        backend.set_xpub_verbose(true)?;
        backend.bind("tcp://*:5558")?;

        // Store last instance of each topic in a cache.
        let mut cache: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut warned_full = false;

        // We route topic updates from frontend to backend, and we handle
        // subscriptions by sending whatever we cached, if anything.
        loop {
            let ready = interrupt::poll(&[&frontend, &backend], 1000)?;
            // Any new topic data we cache and then forward.
            if ready[0] {
                while let Some(update) = Message::try_recv(&frontend)? {
                    let (Some(topic), Some(current), 2) =
                        (update.get(0), update.get(1), update.len())
                    else {
                        log::warn!("update dropped, not [topic][value]: {}", update.summary());
                        continue;
                    };
                    if cache.len() < MAX_TOPICS || cache.contains_key(topic) {
                        cache.insert(topic.to_vec(), current.to_vec());
                    } else if !warned_full {
                        log::warn!("cache full ({MAX_TOPICS} topics): new topics are not cached");
                        warned_full = true;
                    }
                    update.send_or_drop(&backend)?;
                }
            }
            // When we get a new subscription, we pull data from the cache.
            if ready[1] {
                while let Some(event) = Message::try_recv(&backend)? {
                    // Event is one byte 0=unsub or 1=sub, followed by topic.
                    let Some((&1, topic)) = event.first().and_then(|f| f.split_first()) else {
                        continue;
                    };
                    println!("Sending cached topic {}", show(topic));
                    if let Some(previous) = cache.get(topic) {
                        Message::from_frames([topic, previous.as_slice()])
                            .send_or_drop(&backend)?;
                    }
                }
            }
        }
    })
}
