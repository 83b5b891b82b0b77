//! Majordomo: service-oriented reliable request-reply (§27–§30).
//!
//! The guide builds Majordomo from a protocol (MDP 0.1, RFC 7; MMI, RFC 8) and
//! three small classes that hide it from applications. Here they are:
//!
//! | item | guide | what it does |
//! |---|---|---|
//! | [`protocol`] | `mdp.h` | headers, commands, frame building and checking |
//! | [`Client`] | `mdcliapi` | one request at a time, retries on a new socket |
//! | [`AsyncClient`] | `mdcliapi2` | many requests in flight over a DEALER |
//! | [`Worker`] | `mdwrkapi` | READY, heartbeats, reconnect, reply-then-receive |
//! | [`titanic`] | `titanic.c` storage | crash-safe request/reply store for TSP (RFC 9) |
//!
//! The broker itself is the program `src/bin/mdbroker.rs`: it is the lesson,
//! so it reads top to bottom like `mdbroker.c`.

pub mod async_client;
pub mod client;
pub mod protocol;
pub mod titanic;
pub mod worker;

pub use async_client::AsyncClient;
pub use client::Client;
pub use worker::Worker;
