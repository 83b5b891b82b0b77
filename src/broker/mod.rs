//! The study's production broker (study part 2, `../shared/spec/etude.md` §4):
//! one broker for MDP/0.1, MDP/0.2 and the study's own protocol SBP/1
//! (`zguide/broker-protocol.md`), with policies, status codes, deadlines,
//! environments, persistence across restarts, CURVE and management.
//!
//! `mdbroker` stays the guide's lesson; this is what a team would run. The
//! programs are `broker`, `broker-client`, `broker-worker` and `brokerctl`.
//!
//! | module | what it is |
//! |---|---|
//! | [`protocol`] | SBP/1 commands as values, and their frames (every bound checked) |
//! | [`state`] | the broker's decisions, pure: services by environment, LRU workers, priority queues, deadlines, policies, retries |
//! | [`store`] | accepted requests kept in an embedded crash-safe database |
//! | [`server`] | the socket loop: the three dialects on one ROUTER, heartbeats, management, persistence |
//! | [`metrics`] | the management figures as Prometheus text over HTTP |
//! | [`client`] | the client API: async batch send, correlation ids, retries, ping |
//! | [`worker`] | the worker API: READY, heartbeats both ways, reconnect with back-off |
//!
//! ## Management services (answered by the broker, in every dialect)
//!
//! Like MMI (RFC 8), names beginning `mmi.` are answered by the broker itself
//! and no worker may register one. The answer's first body frame is a status
//! as three ASCII digits (RFC 8's convention; an SBP/1 REPLY also carries it
//! as its status). In SBP/1 the request's `environment` scopes the names.
//!
//! | service | request body | answer body |
//! |---|---|---|
//! | `mmi.service` | a service name | `200` if it has a worker, else `404` (RFC 8) |
//! | `mmi.services` | none | `200`, then one JSON document: the broker's figures and every service's workers, idle workers, queue depth, requests, replies, failures and rate |
//! | `mmi.register` | a name, an endpoint | `200`; `400` if either is empty, longer than 255 bytes or not printable; `503` past [`MAX_NAMES`] names |
//! | `mmi.lookup` | a name | `200` and the endpoint, or `404` |
//! | `mmi.unregister` | a name | `200`, or `404` |
//! | any other `mmi.*` | | `501` (RFC 8) |

pub mod client;
pub mod metrics;
pub mod pair;
pub mod peering;
pub mod protocol;
pub mod server;
pub mod state;
pub mod store;
pub mod worker;

/// CPU time the calling thread has used so far: tests check with it that a
/// wait sleeps rather than spins.
#[cfg(test)]
pub(crate) fn thread_cpu() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) },
        0
    );
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The most names the name service (`mmi.register`) keeps.
pub const MAX_NAMES: usize = 10_000;

/// The endpoint the broker binds by default, as `mdbroker` does.
pub const DEFAULT_BIND: &str = "tcp://*:5555";
/// Where clients and workers find it by default.
pub const DEFAULT_CONNECT: &str = "tcp://localhost:5555";
