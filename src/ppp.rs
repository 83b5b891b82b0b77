//! The Paranoid Pirate Protocol (§25, RFC 6/PPP) and the Pirates' simulated
//! failures.
//!
//! PPP is the smallest protocol that makes a queue and its workers notice each
//! other's death: a worker says READY (`0x01`) once per connection, both sides
//! send HEARTBEAT (`0x02`) every second, and everything else is a request or a
//! reply wrapped in the client's envelope. The wire is so small that the only
//! way to tell a command from work is the frame count (1 frame: command,
//! 3 frames: `[client][""][body]`), which is why the checks here look at sizes
//! first. Every check returns a value saying what was wrong, never panics: a
//! queue logs it and carries on.
//!
//! The timing constants are the C ones; the timing logic itself lives in
//! [`crate::heartbeat`] so that Majordomo reuses it.
//!
//! [`FaultSimulator`] is the "simulate a crash / CPU overload after a few
//! cycles" code that `lpserver`, `spworker` and `ppworker` share, with a switch
//! (`ZGUIDE_SIMULATE`) that makes it deterministic for tests.

use std::time::Duration;

use crate::message::frame_text;
use crate::{envelope, helpers, Error, Message};

/// READY: the first message a worker sends on a new connection.
pub const READY: &[u8] = b"\x01";
/// HEARTBEAT: "I am still here", sent both ways every [`HEARTBEAT_INTERVAL`].
pub const HEARTBEAT: &[u8] = b"\x02";

/// Silent intervals before a peer counts as dead (C: 3, "3-5 is reasonable").
pub const HEARTBEAT_LIVENESS: u32 = 3;
/// Time between heartbeats, on both sides.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
/// First reconnect delay of a worker that lost its queue.
pub const INTERVAL_INIT: Duration = Duration::from_millis(1000);
/// The reconnect delay stops doubling here.
pub const INTERVAL_MAX: Duration = Duration::from_millis(32000);

/// What a queue received from a worker, once the ROUTER's identity frame is
/// taken off.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkerMessage {
    /// `[0x01]`: the worker is ready for work.
    Ready,
    /// `[0x02]`: the worker is alive.
    Heartbeat,
    /// `[client][""][body…]`: a reply, to forward to the frontend as it is.
    Reply(Message),
    /// Anything else; the text says why.
    Invalid(String),
}

/// Sorts a worker's message into READY, HEARTBEAT, a reply, or invalid.
///
/// The C queue accepts any one-frame message that merely *starts* with 0x01 or
/// 0x02 and forwards every longer message blindly; here a command must be
/// exactly one byte and a reply must carry a client envelope (non-empty
/// address, empty delimiter, a body), checked by [`envelope::split`].
pub fn classify_worker_message(msg: Message) -> WorkerMessage {
    if msg.len() == 1 {
        return match msg.first() {
            Some(READY) => WorkerMessage::Ready,
            Some(HEARTBEAT) => WorkerMessage::Heartbeat,
            Some(other) => WorkerMessage::Invalid(format!(
                "one-frame message is neither READY nor HEARTBEAT: [{:03}] {}",
                other.len(),
                frame_text(other)
            )),
            None => WorkerMessage::Invalid("empty message".into()),
        };
    }
    match envelope::split(msg) {
        Ok((client, body)) => WorkerMessage::Reply(envelope::to(client, body)),
        Err(e) => WorkerMessage::Invalid(format!("not a reply: {}", reason(e))),
    }
}

/// What a worker received from its queue.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueMessage {
    /// `[client][""][body]`: work to do; the reply echoes the envelope.
    Request(Message),
    /// `[0x02]`: the queue is alive.
    Heartbeat,
    /// Anything else; the text says why.
    Invalid(String),
}

/// Sorts a queue's message into a request, a heartbeat, or invalid, by the
/// worker's rules: three frames are a request, one frame must be HEARTBEAT.
pub fn classify_queue_message(msg: Message) -> QueueMessage {
    match msg.len() {
        3 => QueueMessage::Request(msg),
        1 if msg.first() == Some(HEARTBEAT) => QueueMessage::Heartbeat,
        1 => QueueMessage::Invalid("one-frame message is not HEARTBEAT".into()),
        n => QueueMessage::Invalid(format!("{n} frames, expected 1 or 3")),
    }
}

/// Checks a client request as the queue's frontend ROUTER delivers it,
/// `[client][""][body]`, and gives it back for dispatch. The body must be
/// exactly one frame, because the worker tells work from commands by the frame
/// count alone (a four-frame request would reach a C `ppworker` as "invalid"
/// and never be answered). The error says what was wrong.
pub fn check_request(msg: Message) -> Result<Message, String> {
    let (client, body) = envelope::split_exact(msg, 1).map_err(reason)?;
    Ok(envelope::to(client, body))
}

/// The text of a protocol error, without the "protocol error:" prefix.
fn reason(e: Error) -> String {
    match e {
        Error::Protocol(what) => what,
        other => other.to_string(),
    }
}

/// The environment variable that controls [`FaultSimulator`].
pub const SIMULATE_VAR: &str = "ZGUIDE_SIMULATE";

/// What the simulator decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Handle the request normally.
    None,
    /// Exit without replying.
    Crash,
    /// Be very slow before replying.
    Overload,
}

/// How the simulator chooses, from `ZGUIDE_SIMULATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simulation {
    /// Unset or `random`: the C behaviour, after 3 cycles crash with odds
    /// 1/n, else overload with odds 1/n.
    Random,
    /// `none`: never fail.
    Off,
    /// `crash`: crash on the first request after 3 cycles (the 4th).
    Crash,
    /// `overload`: every request after 3 cycles is slow.
    Overload,
}

/// The Pirates' "simulate various problems, after a few cycles".
#[derive(Clone, Debug)]
pub struct FaultSimulator {
    simulation: Simulation,
    odds: u32,
    cycles: u32,
}

impl FaultSimulator {
    /// Failures with odds `1/odds` each (C: 3 in lpserver, 5 in the workers),
    /// in the mode `ZGUIDE_SIMULATE` asks for.
    pub fn from_env(odds: u32) -> FaultSimulator {
        let text = std::env::var(SIMULATE_VAR).unwrap_or_default();
        let simulation = match text.trim() {
            "" | "random" => Simulation::Random,
            "none" | "off" => Simulation::Off,
            "crash" => Simulation::Crash,
            "overload" => Simulation::Overload,
            other => {
                log::warn!(
                    "{SIMULATE_VAR}={other:?} is not random/none/crash/overload; using random"
                );
                Simulation::Random
            }
        };
        FaultSimulator::new(simulation, odds)
    }

    /// A simulator in a given mode.
    pub fn new(simulation: Simulation, odds: u32) -> FaultSimulator {
        FaultSimulator {
            simulation,
            odds,
            cycles: 0,
        }
    }

    /// Counts one request and decides its fate. The first three always pass,
    /// so the architecture can get up and running first.
    pub fn next_request(&mut self) -> Fault {
        self.cycles += 1;
        if self.cycles <= 3 {
            return Fault::None;
        }
        match self.simulation {
            Simulation::Off => Fault::None,
            Simulation::Crash => Fault::Crash,
            Simulation::Overload => Fault::Overload,
            Simulation::Random if helpers::randof(self.odds) == 0 => Fault::Crash,
            Simulation::Random if helpers::randof(self.odds) == 0 => Fault::Overload,
            Simulation::Random => Fault::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    #[test]
    fn worker_commands_are_exactly_one_byte() {
        assert_eq!(
            classify_worker_message(msg(&[b"\x01"])),
            WorkerMessage::Ready
        );
        assert_eq!(
            classify_worker_message(msg(&[b"\x02"])),
            WorkerMessage::Heartbeat
        );
        for bad in [&b"\x01\x02"[..], b"\x03", b"", b"READY"] {
            assert!(
                matches!(
                    classify_worker_message(msg(&[bad])),
                    WorkerMessage::Invalid(_)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn worker_replies_need_an_envelope() {
        let reply = msg(&[b"\x00\x6b\x8b\x45\x67", b"", b"7"]);
        assert_eq!(
            classify_worker_message(reply.clone()),
            WorkerMessage::Reply(reply)
        );
        for bad in [
            msg(&[b"client", b"body"]),
            msg(&[b"client", b"x", b"body"]),
            msg(&[b"", b"", b"body"]),
            msg(&[b"client", b""]),
            Message::new(),
        ] {
            assert!(matches!(
                classify_worker_message(bad),
                WorkerMessage::Invalid(_)
            ));
        }
    }

    #[test]
    fn requests_have_one_body_frame() {
        let request = msg(&[b"c", b"", b"1"]);
        assert_eq!(check_request(request.clone()), Ok(request));
        assert!(check_request(msg(&[b"c", b"1"])).is_err());
        assert!(check_request(msg(&[b"c", b"", b"1", b"2"])).is_err());
        assert!(check_request(msg(&[b"1"])).is_err());
    }

    #[test]
    fn workers_see_requests_by_frame_count() {
        assert!(matches!(
            classify_queue_message(msg(&[b"c", b"", b"1"])),
            QueueMessage::Request(_)
        ));
        assert_eq!(
            classify_queue_message(msg(&[b"\x02"])),
            QueueMessage::Heartbeat
        );
        assert!(matches!(
            classify_queue_message(msg(&[b"\x01"])),
            QueueMessage::Invalid(_)
        ));
        assert!(matches!(
            classify_queue_message(msg(&[b"a", b"b"])),
            QueueMessage::Invalid(_)
        ));
    }

    #[test]
    fn simulated_faults_start_after_three_cycles() {
        let mut crash = FaultSimulator::new(Simulation::Crash, 5);
        let fates: Vec<Fault> = (0..4).map(|_| crash.next_request()).collect();
        assert_eq!(fates, [Fault::None, Fault::None, Fault::None, Fault::Crash]);
        let mut off = FaultSimulator::new(Simulation::Off, 1);
        assert!((0..100).all(|_| off.next_request() == Fault::None));
        // Odds 1: the C logic always crashes after cycle 3.
        let mut random = FaultSimulator::new(Simulation::Random, 1);
        let fates: Vec<Fault> = (0..5).map(|_| random.next_request()).collect();
        assert_eq!(fates[3..], [Fault::Crash, Fault::Crash]);
    }
}
