//! Heartbeating pieces shared by Paranoid Pirate (§25–§26) and Majordomo (§27).
//!
//! The guide's heartbeat design is one-way heartbeats in both directions on the
//! same socket. Each side needs three small things, kept apart here so that
//! every program uses the same, tested logic:
//!
//! * [`Liveness`]: how many more heartbeat intervals we will wait in silence
//!   before we call the peer dead. Any traffic from the peer resets it.
//! * [`Beat`]: when our own next heartbeat is due.
//! * [`Backoff`]: how long to wait before reconnecting: it doubles from an
//!   initial to a maximum interval (1 s, 2 s … 32 s for the Paranoid Pirate
//!   worker) and goes back to the start once the peer answers again.
//!
//! Brokers track many peers and keep an expiry time per peer instead, see
//! [`expiry_after`], or the whole idle list in a [`ReadyList`].
//!
//! Nothing here reads the clock by itself: every method that needs the time
//! takes `now`, so unit tests can drive them with a fake clock.

use std::time::{Duration, Instant};

/// Missed-interval counter: dead after `max` silent intervals in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness {
    max: u32,
    left: u32,
}

impl Liveness {
    /// A peer that may miss `max` heartbeat intervals (the guide uses 3).
    pub fn new(max: u32) -> Liveness {
        Liveness { max, left: max }
    }

    /// Call on any traffic from the peer: it is alive.
    pub fn reset(&mut self) {
        self.left = self.max;
    }

    /// Call when a heartbeat interval passed in silence. Returns true when this
    /// miss used up the last interval, i.e. the peer is now considered dead.
    pub fn miss(&mut self) -> bool {
        self.left = self.left.saturating_sub(1);
        self.left == 0
    }

    /// True once `max` intervals passed without traffic.
    pub fn is_dead(&self) -> bool {
        self.left == 0
    }

    /// Intervals still left before the peer is dead.
    pub fn remaining(&self) -> u32 {
        self.left
    }
}

/// When our own next heartbeat is due.
#[derive(Clone, Debug)]
pub struct Beat {
    interval: Duration,
    next: Instant,
}

impl Beat {
    /// Heartbeats every `interval`, the first one `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> Beat {
        Beat {
            interval,
            next: now + interval,
        }
    }

    /// True if a heartbeat is due at `now`; if so the next one is scheduled
    /// one interval later.
    pub fn due(&mut self, now: Instant) -> bool {
        if now >= self.next {
            self.next = now + self.interval;
            true
        } else {
            false
        }
    }

    /// Time left until the next heartbeat: a poll timeout that never sleeps
    /// through a beat.
    pub fn time_left(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// The interval between heartbeats.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// Reconnect delay that doubles after every failure, up to a maximum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A back-off starting at `initial` and never exceeding `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay to wait now; the next call returns twice as much (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// Back to the initial delay (call when the peer answered again).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// The moment a peer that was last heard from at `now` expires, given the
/// heartbeat `interval` and the number of intervals it may miss.
pub fn expiry_after(now: Instant, interval: Duration, liveness: u32) -> Instant {
    now + interval * liveness
}

/// Peers that are ready for work, least recently used first, each with the
/// moment it expires (a queue's or broker's idle-worker list).
///
/// Any sign of life from a peer moves it to the tail with a fresh expiry, so
/// the head is always the peer that waited longest. [`ReadyList::purge`]
/// checks *every* entry rather than stopping at the first live one: the C
/// Majordomo broker stopped early although its list was not sorted by expiry,
/// and so kept dead workers forever (zguide #579).
///
/// A list made [`with_limit`](ReadyList::with_limit) never holds more than
/// that many peers: a new peer past the limit makes the list forget the one
/// at the head, which has waited longest and is the likeliest to be dead
/// (a live one comes back with its next sign of life).
#[derive(Clone, Debug)]
pub struct ReadyList<K> {
    interval: Duration,
    liveness: u32,
    limit: usize,
    entries: std::collections::VecDeque<(K, Instant)>,
}

/// What [`ReadyList::ready`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness<K> {
    /// The peer was in the list: moved to the tail, expiry renewed.
    Refreshed,
    /// A new peer, appended at the tail.
    Added,
    /// A new peer, appended; the list was full, so this longest-waiting one
    /// was forgotten.
    AddedEvicting(K),
}

impl<K: PartialEq> ReadyList<K> {
    /// An empty list whose peers expire `liveness` heartbeat `interval`s
    /// after they were last heard from.
    pub fn new(interval: Duration, liveness: u32) -> ReadyList<K> {
        ReadyList {
            interval,
            liveness,
            limit: usize::MAX,
            entries: std::collections::VecDeque::new(),
        }
    }

    /// The same list, holding at most `limit` peers (at least one).
    pub fn with_limit(mut self, limit: usize) -> ReadyList<K> {
        self.limit = limit.max(1);
        self
    }

    /// The peer `id` was heard from at `now`: (re)append it at the tail with a
    /// fresh expiry (an `id` equal to one in the list replaces it). Says
    /// whether it is new, and which peer a full list forgot to make room.
    pub fn ready(&mut self, id: K, now: Instant) -> Readiness<K> {
        let was_there = self.remove(&id);
        let evicted = if !was_there && self.entries.len() >= self.limit {
            self.take_next()
        } else {
            None
        };
        let expiry = expiry_after(now, self.interval, self.liveness);
        self.entries.push_back((id, expiry));
        match (was_there, evicted) {
            (true, _) => Readiness::Refreshed,
            (false, None) => Readiness::Added,
            (false, Some(old)) => Readiness::AddedEvicting(old),
        }
    }

    /// Takes the peer that waited longest, to give it work.
    pub fn take_next(&mut self) -> Option<K> {
        self.entries.pop_front().map(|(id, _)| id)
    }

    /// Removes `id`; true if it was there.
    pub fn remove(&mut self, id: &K) -> bool {
        self.take(id).is_some()
    }

    /// Removes the peer equal to `id` and returns it, if it was there.
    pub fn take(&mut self, id: &K) -> Option<K> {
        let index = self.entries.iter().position(|(k, _)| k == id)?;
        self.entries.remove(index).map(|(k, _)| k)
    }

    /// Removes and returns every peer expired at `now`.
    pub fn purge(&mut self, now: Instant) -> Vec<K> {
        let mut expired = Vec::new();
        let mut kept = std::collections::VecDeque::with_capacity(self.entries.len());
        for (id, expiry) in self.entries.drain(..) {
            if now >= expiry {
                expired.push(id);
            } else {
                kept.push_back((id, expiry));
            }
        }
        self.entries = kept;
        expired
    }

    /// True if `id` is in the list.
    pub fn contains(&self, id: &K) -> bool {
        self.entries.iter().any(|(k, _)| k == id)
    }

    /// The peers, longest waiting first (to heartbeat them all).
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(id, _)| id)
    }

    /// Number of ready peers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no peer is ready.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_missed_intervals_mean_dead() {
        let mut liveness = Liveness::new(3);
        assert!(!liveness.miss());
        assert!(!liveness.miss());
        assert!(!liveness.is_dead());
        assert!(liveness.miss());
        assert!(liveness.is_dead());
    }

    #[test]
    fn traffic_resets_liveness() {
        let mut liveness = Liveness::new(3);
        liveness.miss();
        liveness.miss();
        liveness.reset();
        assert_eq!(liveness.remaining(), 3);
        assert!(!liveness.miss());
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(32));
        let seconds: Vec<u64> = (0..7).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 32, 32]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn beat_is_due_once_per_interval_on_a_fake_clock() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut beat = Beat::new(second, start);
        assert_eq!(beat.interval(), second);
        assert!(!beat.due(start + Duration::from_millis(999)));
        assert!(beat.due(start + second));
        assert!(!beat.due(start + Duration::from_millis(1500)));
        assert_eq!(
            beat.time_left(start + Duration::from_millis(1500)),
            Duration::from_millis(500)
        );
        assert!(beat.due(start + 2 * second));
    }

    #[test]
    fn expiry_is_interval_times_liveness() {
        let now = Instant::now();
        let expiry = expiry_after(now, Duration::from_millis(1000), 3);
        assert_eq!(expiry - now, Duration::from_millis(3000));
    }

    #[test]
    fn ready_list_is_lru_without_duplicates() {
        let now = Instant::now();
        let mut list = ReadyList::new(Duration::from_secs(1), 3);
        assert!(list.is_empty());
        assert_eq!(list.ready("a", now), Readiness::Added);
        assert!(!list.is_empty());
        assert_eq!(list.ready("b", now), Readiness::Added);
        assert_eq!(list.ready("c", now), Readiness::Added);
        assert_eq!(list.ready("a", now), Readiness::Refreshed);
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), ["b", "c", "a"]);
        assert_eq!(list.take_next(), Some("b"));
        assert_eq!(list.take_next(), Some("c"));
        assert_eq!(list.len(), 1);
        assert!(list.contains(&"a") && !list.contains(&"b"));
        assert!(list.remove(&"a") && !list.remove(&"a"));
        assert_eq!(list.take_next(), None);
    }

    #[test]
    fn a_full_ready_list_forgets_the_longest_waiting_peer() {
        let now = Instant::now();
        let mut list = ReadyList::new(Duration::from_secs(1), 3).with_limit(2);
        assert_eq!(list.ready("a", now), Readiness::Added);
        assert_eq!(list.ready("b", now), Readiness::Added);
        // Known peers never evict anyone.
        assert_eq!(list.ready("a", now), Readiness::Refreshed);
        assert_eq!(list.ready("c", now), Readiness::AddedEvicting("b"));
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(list.len(), 2);
        let mut one = ReadyList::new(Duration::from_secs(1), 3).with_limit(0);
        assert_eq!(one.ready("a", now), Readiness::Added);
        assert_eq!(one.ready("b", now), Readiness::AddedEvicting("a"));
    }

    #[test]
    fn a_refreshed_peer_gets_a_fresh_expiry() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut list = ReadyList::new(second, 3);
        list.ready("a", start);
        list.ready("a", start + 2 * second);
        assert!(list.purge(start + 4 * second).is_empty());
        assert_eq!(list.purge(start + 5 * second), ["a"]);
    }

    #[test]
    fn ready_list_purges_every_expired_peer_on_a_fake_clock() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut list = ReadyList::new(second, 3);
        list.ready("old", start);
        list.ready("young", start + 2 * second);
        list.ready("older", start);
        assert!(list.purge(start + Duration::from_millis(2999)).is_empty());
        // "older" sits behind a live peer and is still found.
        assert_eq!(list.purge(start + 3 * second), ["old", "older"]);
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), ["young"]);
        assert_eq!(list.purge(start + 5 * second), ["young"]);
        assert!(list.is_empty());
    }
}
