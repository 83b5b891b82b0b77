//! The small helpers every guide example leans on (the C `zhelpers.h`).
//!
//! * strings on the wire carry no trailing NUL: [`send_string`] sends exactly
//!   the bytes of the text, [`recv_string`] reads any bytes as (lossy) text;
//! * [`random_identity`] makes the printable `XXXX-XXXX` identities that
//!   `s_set_id` gives sockets. The C version calls `rand()`, which is not
//!   thread-safe and is seeded the same way in every thread, so identities
//!   collide (zguide #521, #572). Here each call draws from the thread-local,
//!   OS-seeded RNG, so threads and processes do not repeat each other;
//! * [`randof`] and [`clock_ms`] are `randof` and `s_clock`; `s_sleep` is
//!   [`interrupt::sleep_ms`], which also ends early on Ctrl-C.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::interrupt;
use crate::Error;

/// A random whole number in `0..num` (the guide's `randof`). `randof(0)` is 0.
pub fn randof(num: u32) -> u32 {
    if num == 0 {
        return 0;
    }
    rand::thread_rng().gen_range(0..num)
}

/// A printable random identity `"%04X-%04X"`, e.g. `0A3F-91C2`.
pub fn random_identity() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{:04X}-{:04X}",
        rng.gen_range(0..0x10000),
        rng.gen_range(0..0x10000)
    )
}

/// Gives `socket` a printable random identity (`s_set_id`) and returns it.
pub fn set_random_identity(socket: &zmq::Socket) -> Result<String, Error> {
    let identity = random_identity();
    socket.set_identity(identity.as_bytes())?;
    Ok(identity)
}

/// Wall-clock time in milliseconds (`s_clock`).
pub fn clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends `text` as one frame, without a trailing NUL (`s_send`).
pub fn send_string(socket: &zmq::Socket, text: &str) -> Result<(), Error> {
    interrupt::retry_eintr(|| socket.send(text.as_bytes(), 0))
}

/// Sends `text` as a frame with more to follow (`s_sendmore`).
pub fn send_more(socket: &zmq::Socket, text: &str) -> Result<(), Error> {
    interrupt::retry_eintr(|| socket.send(text.as_bytes(), zmq::SNDMORE))
}

/// Receives one frame as text (`s_recv`), waiting as long as it takes; ends
/// with `Error::Interrupted` on Ctrl-C. Bytes that are not UTF-8 are replaced,
/// never a panic. Unlike `s_recv` the text is not truncated at 255 bytes.
pub fn recv_string(socket: &zmq::Socket) -> Result<String, Error> {
    let bytes = interrupt::recv_blocking(socket, || socket.recv_bytes(0))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Receives one frame as text if one is waiting (`s_recv` with `ZMQ_DONTWAIT`).
pub fn try_recv_string(socket: &zmq::Socket) -> Result<Option<String>, Error> {
    match interrupt::retry_eintr(|| socket.recv_bytes(zmq::DONTWAIT)) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(Error::Zmq(zmq::Error::EAGAIN)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// C's `atoi`: skips leading whitespace, takes an optional sign and the
/// digits that follow, and stops at the first other byte (a NUL padding a
/// C++ peer's string, say). No digits gives 0; the value saturates instead
/// of overflowing. This is how the C examples read numbers off the wire, so
/// it is how ours do, to mix with C and C++ peers.
pub fn atoi(bytes: &[u8]) -> i64 {
    let mut rest = bytes
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .peekable();
    let negative = match rest.peek() {
        Some(b'-') => {
            rest.next();
            true
        }
        Some(b'+') => {
            rest.next();
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    for &b in rest.take_while(|b| b.is_ascii_digit()) {
        let digit = i64::from(b - b'0');
        value = value.saturating_mul(10).saturating_add(digit);
    }
    if negative {
        -value
    } else {
        value
    }
}

/// Flushes stdout; for programs that print progress without a newline.
pub fn flush_stdout() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Reads the `N`th command-line argument, or `default` if it is absent.
pub fn arg_or(index: usize, default: &str) -> String {
    std::env::args()
        .nth(index)
        .unwrap_or_else(|| default.to_string())
}

/// A count from the environment variable `name` (used by tests to shrink a
/// workload), or `default`, the C value. Bad values fall back to the default
/// with a warning.
pub fn env_count(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            log::warn!("{name}={text:?} is not a whole number; using {default}");
            default
        }),
        Err(_) => default,
    }
}

/// Sets up `log` output in the guide's style: one line per record, prefixed
/// with the level's letter like the C programs' `E: …`/`W: …`/`I: …` lines,
/// on stderr. `default_level` (`"info"`, `"debug"`…) applies unless
/// `RUST_LOG` says otherwise. Calling it twice does nothing.
pub fn init_log(default_level: &str) {
    use std::io::Write;
    let _ =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
            .format(|buf, record| {
                let letter = match record.level() {
                    log::Level::Error => 'E',
                    log::Level::Warn => 'W',
                    log::Level::Info => 'I',
                    log::Level::Debug => 'D',
                    log::Level::Trace => 'T',
                };
                writeln!(buf, "{letter}: {}", record.args())
            })
            .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_printable_and_shaped() {
        let id = random_identity();
        assert_eq!(id.len(), 9);
        assert_eq!(&id[4..5], "-");
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }

    #[test]
    fn identities_differ_across_threads() {
        let ids: Vec<String> = (0..16)
            .map(|_| std::thread::spawn(random_identity))
            .map(|h| h.join().expect("thread"))
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
    }

    #[test]
    fn atoi_reads_like_c() {
        assert_eq!(atoi(b"42"), 42);
        assert_eq!(atoi(b"  -17xyz"), -17);
        assert_eq!(atoi(b"+5"), 5);
        assert_eq!(atoi(b"123\0\0\0\0\0\0\0"), 123, "C++ NUL padding");
        assert_eq!(atoi(b""), 0);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b"-"), 0);
        assert_eq!(atoi(b"99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn randof_stays_in_range() {
        assert!((0..1000).all(|_| randof(5) < 5));
        assert_eq!(randof(0), 0);
    }

    #[test]
    fn randof_draws_every_value() {
        let mut seen = [false; 5];
        for _ in 0..1000 {
            seen[randof(5) as usize] = true;
        }
        assert_eq!(seen, [true; 5]);
    }

    #[test]
    fn set_random_identity_gives_the_socket_that_identity() {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::DEALER).unwrap();
        let identity = set_random_identity(&socket).unwrap();
        assert_eq!(socket.get_identity().unwrap(), identity.as_bytes());
        assert_eq!(identity.len(), 9);
    }

    #[test]
    fn clock_ms_is_the_wall_clock() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(clock_ms().abs_diff(now) < 1000);
    }

    #[test]
    fn strings_go_out_without_a_nul_and_come_back_lossy() {
        let context = zmq::Context::new();
        let (tx, rx) = (
            context.socket(zmq::PAIR).unwrap(),
            context.socket(zmq::PAIR).unwrap(),
        );
        rx.bind("inproc://helpers-strings").unwrap();
        tx.connect("inproc://helpers-strings").unwrap();
        // Every receive below waits at most 5 s for its message.
        let arrived = || {
            let mut items = [rx.as_poll_item(zmq::POLLIN)];
            zmq::poll(&mut items, 5000).unwrap();
            assert!(items[0].is_readable(), "nothing came");
        };
        assert_eq!(try_recv_string(&rx).unwrap(), None, "nothing waiting");
        send_more(&tx, "first").unwrap();
        send_string(&tx, "second").unwrap();
        arrived();
        assert_eq!(rx.recv_bytes(0).unwrap(), b"first");
        assert!(rx.get_rcvmore().unwrap());
        assert_eq!(recv_string(&rx).unwrap(), "second");
        assert!(!rx.get_rcvmore().unwrap());
        tx.send(&b"caf\xC3\xA9 \xFF"[..], 0).unwrap();
        arrived();
        assert_eq!(recv_string(&rx).unwrap(), "café \u{FFFD}");
        tx.send("next", 0).unwrap();
        arrived();
        assert_eq!(try_recv_string(&rx).unwrap().as_deref(), Some("next"));
    }

    #[test]
    fn arguments_and_counts_fall_back_to_their_defaults() {
        assert_eq!(arg_or(0, "x"), std::env::args().next().unwrap());
        assert_eq!(arg_or(10_000, "the default"), "the default");
        const NAME: &str = "ZGUIDE_HELPERS_TEST_COUNT";
        std::env::remove_var(NAME);
        assert_eq!(env_count(NAME, 7), 7);
        for (text, count) in [("12", 12), (" 3 ", 3), ("x", 7), ("-1", 7)] {
            std::env::set_var(NAME, text);
            assert_eq!(env_count(NAME, 7), count, "{text:?}");
        }
        std::env::remove_var(NAME);
    }
}
