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
//! [`expiry_after`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_missed_intervals_mean_dead() {
        let mut liveness = Liveness::new(3);
        assert!(!liveness.miss());
        assert!(!liveness.miss());
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
}
