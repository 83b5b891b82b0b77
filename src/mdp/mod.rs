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

/// A new socket of `kind` for talking to a broker: LINGER 0, so a socket
/// dropped with requests still queued never blocks the program's exit, and a
/// printable identity, as the C++ `mdcliapi`/`mdwrkapi` give theirs
/// (`s_set_id`). The C++ broker handles routing ids as C strings and cannot
/// route libzmq's generated ids, which start with a zero byte; our broker and
/// the C one do not care, so this only helps mixing the languages. A fresh
/// random identity per socket keeps a reconnect distinct from the old peer.
pub(crate) fn broker_socket(
    context: &zmq::Context,
    kind: zmq::SocketType,
) -> Result<zmq::Socket, crate::Error> {
    let socket = context.socket(kind)?;
    socket.set_linger(0)?;
    crate::helpers::set_random_identity(&socket)?;
    Ok(socket)
}
