//! The hostile-peer toolkit: what a careless or malicious peer does to a
//! long-running program, and how a test measures that the program held.
//!
//! Attacks run inside [`Scenario::in_namespace`](super::Scenario::in_namespace)
//! (or `in_namespace_background` when the attacker must keep going while the
//! test checks that legitimate peers are still served). Every attack is
//! bounded in count and in time; all traffic stays in the scenario's private
//! namespace.
//!
//! * [`flood`]: send without ever reading, until a count or a time is reached
//!   or the program stops taking messages;
//! * [`random_messages`]: seeded malformed multipart messages (same seed, same
//!   messages, so a failure reproduces);
//! * [`oversized_frame`]: one frame far larger than any bound;
//! * [`rss_kib`], [`peak_rss_kib`], [`dir_usage`]: what it cost the program.
//!
//! A fake peer of a given protocol (a fake worker, a client that vanishes with
//! a request in flight) is a [`wire::probe`](super::wire::probe) plus the
//! frames of that protocol; dropping the socket (LINGER 0) is a peer killed
//! mid-request, as far as the program can tell.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a [`flood`] managed to send.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flood {
    /// Messages queued (libzmq took them).
    pub sent: usize,
    /// Sends refused because the program's side stopped taking more.
    pub refused: usize,
}

/// Sends the message `parts` up to `count` times for at most `within`,
/// without ever reading, never blocking: a full pipe counts as refused and
/// the flood goes on until the time is up, so a program that reads slowly
/// still gets the whole pressure. Returns what was sent and refused.
pub fn flood(socket: &zmq::Socket, parts: &[&[u8]], count: usize, within: Duration) -> Flood {
    let deadline = Instant::now() + within;
    let mut result = Flood::default();
    while result.sent < count && Instant::now() < deadline {
        match socket.send_multipart(parts.iter().copied(), zmq::DONTWAIT) {
            Ok(()) => result.sent += 1,
            Err(zmq::Error::EAGAIN) => {
                result.refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("flood send failed: {e}"),
        }
    }
    result
}

/// `count` seeded random multipart messages: 1 to `max_frames` frames of 0
/// to `max_frame` random bytes each.
pub fn random_messages(
    seed: u64,
    count: usize,
    max_frames: usize,
    max_frame: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            (0..rng.gen_range(1..=max_frames))
                .map(|_| {
                    (0..rng.gen_range(0..=max_frame))
                        .map(|_| rng.gen())
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Sends `messages` spread over `sockets` in turn, without blocking;
/// returns how many were queued.
pub fn send_all(sockets: &[zmq::Socket], messages: Vec<Vec<Vec<u8>>>) -> usize {
    let mut sent = 0;
    for (n, frames) in messages.into_iter().enumerate() {
        if sockets[n % sockets.len()]
            .send_multipart(frames, zmq::DONTWAIT)
            .is_ok()
        {
            sent += 1;
        }
    }
    sent
}

/// Sends `head` frames followed by one frame of `size` bytes (`b'A'`s): the
/// shape of a request whose body, or name, is absurdly large.
pub fn oversized_frame(socket: &zmq::Socket, head: &[&[u8]], size: usize) {
    let big = vec![b'A'; size];
    let mut parts: Vec<&[u8]> = head.to_vec();
    parts.push(&big);
    socket
        .send_multipart(parts, 0)
        .unwrap_or_else(|e| panic!("cannot send a {size}-byte frame: {e}"));
}

/// A value from `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM` …).
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("no /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of a process now, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// The most resident memory a process ever had, in KiB (`VmHWM`): catches a
/// spike that is freed again before the test looks.
pub fn peak_rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// Bytes and files under `dir`, recursively (symlinks are not followed).
pub fn dir_usage(dir: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    (bytes, files)
}
