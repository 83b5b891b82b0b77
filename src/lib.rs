//! # zguide-rs: the ZeroMQ guide's patterns, in Rust
//!
//! This crate is the small library behind the guide's example programs in
//! `src/bin/`. The C examples lean on `zhelpers.h` and on czmq's classes
//! (`zmsg`, `zloop`, `zactor`) and on the guide's own protocol classes
//! (`mdcliapi`, `mdwrkapi`, …). Where the guide has a class, this crate has a
//! module; where it has a program, `src/bin/` has a binary of the same name
//! that reads like it, top to bottom.
//!
//! ## Module map
//!
//! | module | what it teaches | guide / C original |
//! |---|---|---|
//! | [`program`] | a program's start and end: logging, Ctrl-C, exit code | `s_catch_signals`, `main` |
//! | [`socket`] | sockets built with LINGER and size limits set | `zsock_new_*` |
//! | [`message`] | multipart messages, envelopes, `s_dump`, bounded log summaries | `zmsg`, `s_dump` |
//! | [`envelope`] | checked `[identity][""][body]` envelopes for ROUTER brokers | `zmsg_unwrap`, §15–§18 |
//! | [`helpers`] | identities, `randof`, clock, strings on the wire | `zhelpers.h` |
//! | [`interrupt`] | Ctrl-C/SIGTERM that wakes a blocked poll | §9, `s_catch_signals` |
//! | [`heartbeat`] | liveness, heartbeat timing, reconnect back-off, idle lists with expiry | §25–§27 |
//! | [`reactor`] | readers and timers in one poll loop | `zloop` |
//! | [`actor`] | a thread with a pipe, ready/`$TERM` handshake | `zactor` |
//! | [`bstar`] | Binary Star: the primary/backup FSM (pure, clock injected) and its reactor glue | `bstar`, §31–§32 |
//! | [`kvsimple`] | the three-frame key-value message of Clone models 1–4 | `kvsimple`, §39–§42 |
//! | [`kvmsg`] | the five-frame key-value message (UUID, properties, delete) of Clone models 5–6 | `kvmsg`, §43 |
//! | [`clone`] | the Clone map with bounds, snapshots, server update rules, and the multithreaded client API | `clone`, §39–§46, CHP |
//! | [`ppp`] | Paranoid Pirate protocol constants and checks; the Pirates' simulated failures | §23–§25, PPP |
//! | [`mdp`] | Majordomo protocol, client and worker APIs | §27–§29, MDP/MMI |
//! | [`flcliapi`] | Freelance client API: an agent thread pinging servers, failing over between them | §35, `flcliapi`, FLP |
//! | [`fileio`] | file transfer in chunks: credit, reads at an offset, replies never lost silently | §47, `fileio1`–`fileio3` |
//! | [`filetransfer`] | study §4: SFT/1, a file-transfer tool: listing, trees, credit window, zstd, BLAKE3 per chunk and file, resume, CURVE | `fileio3`, FILEMQ |
//! | [`udp`] | UDP broadcast beacons polled beside ZeroMQ sockets; IPv4 interfaces | `udplib`, §49 |
//! | [`interface`] | presence by UDP beacons: JOINED/LEFT events from an agent | `interface`, §50 |
//! | [`log_limit`] | log lines about peers, limited in number (a window per period, or powers of two) | — |
//! | [`routing`] | free-worker queue (each worker once, only after its message is checked), dispatch that skips gone workers, sends that never block, rate-limited warnings | the brokers' worker lists, §18–§22 |
//! | [`pubsub_stats`] | study §1: timestamped pub-sub, latency percentiles, sequence gaps, abort threshold | `suisnail`, §14, §30 |
//! | [`hwm_study`] | study §1: what the high-water mark does to a slow subscriber (table and SVG) | §30 |
//! | [`survey`] | study §2: "who offers service S?" by one UDP broadcast, answers by unicast | — |
//! | [`beacon`] | study §3: a beacon actor (publish, subscribe, silence) and JOINED/LEFT presence | `zbeacon`, §50 |
//! | [`perf`] | shared pieces of libzmq's perf tools | `perf/` |
//!
//! ## Errors
//!
//! Library calls return [`Error`]. `Error::Interrupted` is not a failure: it is
//! how a blocked call reports that the user pressed Ctrl-C, so a program can
//! close its sockets and exit cleanly, like the guide's `s_interrupted` checks.

pub mod actor;
pub mod beacon;
pub mod broker;
pub mod bstar;
pub mod clone;
pub mod curve;
pub mod envelope;
pub mod fileio;
pub mod filetransfer;
pub mod flcliapi;
pub mod heartbeat;
pub mod helpers;
pub mod hwm_study;
pub mod interface;
pub mod interrupt;
pub mod kvmsg;
pub mod kvsimple;
pub mod log_limit;
pub mod mdp;
pub mod message;
pub mod perf;
pub mod ppp;
pub mod program;
pub mod pubsub_stats;
pub mod reactor;
pub mod routing;
pub mod socket;
pub mod survey;
pub mod udp;
pub mod zre;

#[cfg(test)]
mod test_support;

pub use message::Message;

use std::fmt;

/// What can go wrong in a library call.
#[derive(Debug)]
pub enum Error {
    /// Ctrl-C or SIGTERM arrived while the call was waiting.
    Interrupted,
    /// libzmq reported an error (`ETERM` after the context was shut down, …).
    Zmq(zmq::Error),
    /// A peer sent something the protocol does not allow; the text says what.
    Protocol(String),
    /// A peer did not answer in time.
    Timeout,
    /// A command or signal for an [`Actor`](actor::Actor) whose task has
    /// already ended (a send on its pipe would wait for ever).
    ActorEnded,
    /// A bind or connect failed; says which endpoint.
    Endpoint {
        /// `"bind"` or `"connect to"`.
        action: &'static str,
        endpoint: String,
        source: zmq::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Interrupted => f.write_str("interrupted"),
            Error::Zmq(e) => write!(f, "zmq: {e}"),
            Error::Protocol(what) => write!(f, "protocol error: {what}"),
            Error::Timeout => f.write_str("timed out"),
            Error::ActorEnded => f.write_str("the actor's task has ended"),
            Error::Endpoint {
                action,
                endpoint,
                source,
            } => write!(f, "cannot {action} {endpoint}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<zmq::Error> for Error {
    fn from(e: zmq::Error) -> Error {
        Error::Zmq(e)
    }
}
