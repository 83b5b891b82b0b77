//! Log lines about what peers do, with a limit on how many.
//!
//! A long-running program logs what a peer gets wrong (a malformed message, a
//! reply it could not deliver), but a peer can get things wrong a million
//! times a second, and a million log lines are a second attack (a disk filled,
//! a terminal frozen). Each line shows wire data only through
//! [`show`](crate::message::show) or [`Message::summary`](crate::Message::summary),
//! so a line is short; this module bounds how many lines there are:
//!
//! * [`Window`]: at most `burst` lines per `period`; the events held back are
//!   counted and reported with the next line that gets through (or by
//!   [`Window::take_held_back`] on the program's own schedule);
//! * [`complain`]: a process-wide [`Window`] of [`COMPLAINTS_PER_SECOND`] a
//!   second, for programs that need no finer control;
//! * [`Sparse`]: the 1st, 2nd, 4th, 8th … event, for one kind of event that
//!   may repeat without end (a client retrying a bad request for hours).

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `burst` events per `period`; see the module docs.
#[derive(Clone, Debug)]
pub struct Window {
    burst: u32,
    period: Duration,
    started: Option<Instant>,
    shown: u32,
    held_back: u64,
}

impl Window {
    /// A limit of `burst` lines per `period` (a burst of 0 is taken as 1).
    pub const fn new(burst: u32, period: Duration) -> Window {
        Window {
            burst: if burst == 0 { 1 } else { burst },
            period,
            started: None,
            shown: 0,
            held_back: 0,
        }
    }

    /// One more event at `now`: `Some(n)` if it may be logged, `n` being the
    /// events held back since the last line that got through; `None` to stay
    /// quiet (the event is counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .started
            .is_none_or(|started| now.duration_since(started) >= self.period);
        if fresh {
            self.started = Some(now);
            self.shown = 0;
        }
        if self.shown < self.burst {
            self.shown += 1;
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }

    /// The events held back since the last line, now forgotten: for a program
    /// that reports them itself ("N more … not shown") on a timer.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }

    /// Logs `args` at `level` if the limit allows, with the number of lines
    /// held back before it.
    pub fn log(&mut self, level: log::Level, args: fmt::Arguments) {
        match self.allow(Instant::now()) {
            Some(0) => log::log!(level, "{args}"),
            Some(more) => log::log!(level, "{args} ({more} more not logged before this)"),
            None => {}
        }
    }

    /// [`log`](Window::log) at `W:` level.
    pub fn warn(&mut self, args: fmt::Arguments) {
        self.log(log::Level::Warn, args);
    }
}

/// The most lines [`complain`] writes in one second, per process.
pub const COMPLAINTS_PER_SECOND: u32 = 20;

static COMPLAINTS: Mutex<Window> =
    Mutex::new(Window::new(COMPLAINTS_PER_SECOND, Duration::from_secs(1)));

/// Logs a warning about something a peer did, at most
/// [`COMPLAINTS_PER_SECOND`] lines a second for the whole process; the rest
/// are counted and the count is added to the next line that gets through.
pub fn complain(args: fmt::Arguments) {
    let mut window = COMPLAINTS.lock().unwrap_or_else(|e| e.into_inner());
    window.warn(args);
}

/// Lets through the 1st, 2nd, 4th, 8th … of one kind of event.
#[derive(Clone, Debug, Default)]
pub struct Sparse {
    count: u64,
}

impl Sparse {
    /// Counts one more; `Some(total)` when this one should be logged.
    pub fn note(&mut self) -> Option<u64> {
        self.count += 1;
        self.count.is_power_of_two().then_some(self.count)
    }

    /// How many were counted.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// For unit tests that check what a function logs: a logger that keeps
/// every line in memory (each test runs in its own process under nextest).
#[cfg(test)]
pub(crate) mod captured {
    use std::sync::{Mutex, Once};

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static INSTALL: Once = Once::new();

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
            lines.push(record.args().to_string());
        }
        fn flush(&self) {}
    }

    /// Starts capturing (once per process).
    pub fn install() {
        INSTALL.call_once(|| {
            if log::set_logger(&Capture).is_ok() {
                log::set_max_level(log::LevelFilter::Trace);
            }
        });
    }

    /// The captured lines that contain `text`.
    pub fn lines_with(text: &str) -> Vec<String> {
        let lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().filter(|l| l.contains(text)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_lets_a_burst_through_and_counts_the_rest() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut window = Window::new(2, Duration::from_secs(1));
        assert_eq!(window.allow(at(0)), Some(0));
        assert_eq!(window.allow(at(10)), Some(0));
        assert_eq!(window.allow(at(20)), None);
        assert_eq!(window.allow(at(999)), None);
        // A new period: the first line carries the count.
        assert_eq!(window.allow(at(1000)), Some(2));
        assert_eq!(window.allow(at(1001)), Some(0));
        assert_eq!(window.allow(at(1002)), None);
        assert_eq!(window.take_held_back(), 1);
        assert_eq!(
            window.allow(at(2500)),
            Some(0),
            "taken, so not reported twice"
        );
    }

    #[test]
    fn a_flood_costs_burst_lines_per_period() {
        let start = Instant::now();
        let mut window = Window::new(20, Duration::from_secs(1));
        // 100,000 events over 5 s: 20 lines a second get through.
        let shown = (0..100_000u64)
            .filter(|n| {
                window
                    .allow(start + Duration::from_micros(n * 50))
                    .is_some()
            })
            .count();
        assert_eq!(shown, 100);
    }

    #[test]
    fn warn_and_complain_write_lines_within_their_limits() {
        captured::install();
        // A window of two lines an hour: two of three get through.
        let mut window = Window::new(2, Duration::from_secs(3600));
        for n in 0..3 {
            window.warn(format_args!("window-marker {n}"));
        }
        assert_eq!(
            captured::lines_with("window-marker"),
            ["window-marker 0", "window-marker 1"]
        );
        // The process-wide complaints: some of a burst get through, never
        // more than two periods' worth (the burst may straddle a second).
        for n in 0..3 * COMPLAINTS_PER_SECOND {
            complain(format_args!("complaint-marker {n}"));
        }
        let complaints = captured::lines_with("complaint-marker").len() as u32;
        assert!(
            (1..=2 * COMPLAINTS_PER_SECOND).contains(&complaints),
            "{complaints} complaints logged"
        );
    }

    #[test]
    fn sparse_logs_powers_of_two() {
        let mut sparse = Sparse::default();
        let logged: Vec<u64> = (0..1000).filter_map(|_| sparse.note()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert_eq!(sparse.count(), 1000);
    }
}
