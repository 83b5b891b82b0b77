//! MDP/0.1 on the wire: the version headers, the worker commands, and parsing
//! that turns any multipart message into a typed command or an error.
//!
//! This is the guide's `mdp.h` plus the frame checks that `mdbroker.c`,
//! `mdwrkapi.c` and `mdcliapi.c` do with `assert`. Here a bad message is a
//! [`Error::Protocol`] that says what is wrong, never a crash: the broker logs
//! it and disconnects the worker, a worker or client logs it and carries on.
//!
//! Frames (worker DEALER view; the broker's ROUTER adds the worker's identity
//! in front):
//!
//! | command | frames |
//! |---|---|
//! | READY W→B | `[""]["MDPW01"][0x01][service]` |
//! | REQUEST B→W | `[""]["MDPW01"][0x02][client][""][body…]` |
//! | REPLY W→B | `[""]["MDPW01"][0x03][client][""][body…]` |
//! | HEARTBEAT | `[""]["MDPW01"][0x04]` |
//! | DISCONNECT | `[""]["MDPW01"][0x05]` |
//!
//! Client messages have no command byte: `[""]["MDPC01"][service][body…]` in
//! both directions (a REQ socket adds and strips the leading `[""]`).

use crate::{Error, Message};

/// Version header of MDP/Client 0.1 (`MDPC_CLIENT`).
pub const CLIENT: &[u8] = b"MDPC01";
/// Version header of MDP/Worker 0.1 (`MDPW_WORKER`).
pub const WORKER: &[u8] = b"MDPW01";

/// Heartbeat interval agreed by broker and workers, in milliseconds. The book
/// text says five seconds; the C code (and so the wire) uses 2.5 s.
pub const HEARTBEAT_INTERVAL_MS: u64 = 2500;
/// Heartbeat intervals a peer may stay silent before it counts as dead.
pub const HEARTBEAT_LIVENESS: u32 = 3;

/// Service names with this prefix are answered by the broker itself (MMI).
pub const MMI_PREFIX: &[u8] = b"mmi.";

/// The MDP/Worker commands. The byte values are the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Ready = 1,
    Request = 2,
    Reply = 3,
    Heartbeat = 4,
    Disconnect = 5,
}

impl Command {
    /// The command for a command frame, if it is one of the five.
    pub fn from_frame(frame: &[u8]) -> Option<Command> {
        match frame {
            [1] => Some(Command::Ready),
            [2] => Some(Command::Request),
            [3] => Some(Command::Reply),
            [4] => Some(Command::Heartbeat),
            [5] => Some(Command::Disconnect),
            _ => None,
        }
    }

    /// The one-byte command frame.
    pub fn frame(self) -> &'static [u8] {
        match self {
            Command::Ready => b"\x01",
            Command::Request => b"\x02",
            Command::Reply => b"\x03",
            Command::Heartbeat => b"\x04",
            Command::Disconnect => b"\x05",
        }
    }

    /// The name the C prints in verbose logs (`mdps_commands`).
    pub fn name(self) -> &'static str {
        match self {
            Command::Ready => "READY",
            Command::Request => "REQUEST",
            Command::Reply => "REPLY",
            Command::Heartbeat => "HEARTBEAT",
            Command::Disconnect => "DISCONNECT",
        }
    }
}

/// True for reserved `mmi.*` service names.
pub fn is_mmi(service: &[u8]) -> bool {
    service.starts_with(MMI_PREFIX)
}

/// A worker command after its `[""]["MDPW01"][command]` header was checked.
/// The client address and body stay in the message, so nothing is copied.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkerCommand {
    /// Register for a service.
    Ready {
        service: Vec<u8>,
    },
    /// `[client][""][body…]`: a request (to a worker) or a reply (to the
    /// broker); `envelope` is the whole rest, address first.
    Request {
        envelope: Message,
    },
    Reply {
        envelope: Message,
    },
    Heartbeat,
    Disconnect,
}

impl WorkerCommand {
    /// The command's name, as in the C's verbose logs.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerCommand::Ready { .. } => Command::Ready,
            WorkerCommand::Request { .. } => Command::Request,
            WorkerCommand::Reply { .. } => Command::Reply,
            WorkerCommand::Heartbeat => Command::Heartbeat,
            WorkerCommand::Disconnect => Command::Disconnect,
        }
        .name()
    }
}

/// Parses what follows the `MDPW01` header, i.e. `[command][…]`, checking
/// the frame count of every command as RFC 7 gives it.
pub fn parse_worker_command(mut msg: Message) -> Result<WorkerCommand, Error> {
    let command_frame = msg
        .pop()
        .ok_or_else(|| Error::Protocol("worker message has no command frame".into()))?;
    let command = Command::from_frame(&command_frame).ok_or_else(|| {
        Error::Protocol(format!(
            "unknown worker command {}",
            crate::message::show(&command_frame)
        ))
    })?;
    let exact = |msg: &Message, n: usize| {
        if msg.len() == n {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "{} needs {n} frame(s) after the command, got {}",
                command.name(),
                msg.len()
            )))
        }
    };
    match command {
        Command::Ready => {
            exact(&msg, 1)?;
            let service = msg.pop().unwrap_or_default();
            if service.is_empty() {
                return Err(Error::Protocol("READY with an empty service name".into()));
            }
            Ok(WorkerCommand::Ready { service })
        }
        Command::Request | Command::Reply => {
            check_envelope(&msg, command)?;
            Ok(if command == Command::Request {
                WorkerCommand::Request { envelope: msg }
            } else {
                WorkerCommand::Reply { envelope: msg }
            })
        }
        Command::Heartbeat => exact(&msg, 0).map(|()| WorkerCommand::Heartbeat),
        Command::Disconnect => exact(&msg, 0).map(|()| WorkerCommand::Disconnect),
    }
}

/// `[client][""][body…]` with a non-empty address and at least one body frame.
fn check_envelope(msg: &Message, command: Command) -> Result<(), Error> {
    let ok = msg.len() >= 3
        && msg.first().is_some_and(|a| !a.is_empty())
        && msg.get(1).is_some_and(<[u8]>::is_empty);
    if ok {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "{} must be [client][\"\"][body…], got {} frame(s)",
            command.name(),
            msg.len()
        )))
    }
}

/// Checks and strips the `[""]["MDPW01"]` header a worker receives, then
/// parses the command.
pub fn parse_to_worker(mut msg: Message) -> Result<WorkerCommand, Error> {
    if msg.len() < 3 {
        return Err(Error::Protocol(format!(
            "message from broker has {} frame(s), needs at least 3",
            msg.len()
        )));
    }
    if msg.pop().is_some_and(|f| !f.is_empty()) {
        return Err(Error::Protocol(
            "first frame from broker is not empty".into(),
        ));
    }
    if msg.pop().as_deref() != Some(WORKER) {
        return Err(Error::Protocol("header from broker is not MDPW01".into()));
    }
    parse_worker_command(msg)
}

/// Builds a worker command as the worker's DEALER sends it:
/// `[""]["MDPW01"][command][option?][body…]`.
pub fn worker_message(command: Command, option: Option<&[u8]>, body: Option<Message>) -> Message {
    let mut msg = body.unwrap_or_default();
    if let Some(option) = option {
        msg.push(option);
    }
    msg.push(command.frame());
    msg.push(WORKER);
    msg.push(Vec::new());
    msg
}

/// Checks a reply a client received, `["MDPC01"][service][body…]` (the REQ
/// socket already removed `[""]`), and returns the body.
pub fn parse_client_reply(mut msg: Message, service: &[u8]) -> Result<Message, Error> {
    if msg.len() < 3 {
        return Err(Error::Protocol(format!(
            "reply has {} frame(s), needs at least 3",
            msg.len()
        )));
    }
    if msg.pop().as_deref() != Some(CLIENT) {
        return Err(Error::Protocol("reply header is not MDPC01".into()));
    }
    if msg.pop().as_deref() != Some(service) {
        return Err(Error::Protocol("reply is for another service".into()));
    }
    Ok(msg)
}

/// `zclock_log`: prints `yy-mm-dd hh:mm:ss text` on stdout (UTC), the format
/// of the C programs' log lines. Used for the lines a learner compares with
/// the C output; faults go through the `log` crate instead.
pub fn clock_log(text: &str) {
    println!("{} {text}", timestamp());
}

/// The time as `yy-mm-dd hh:mm:ss` (UTC).
pub fn timestamp() -> String {
    let secs = crate::helpers::clock_ms() / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{:02}-{:02}-{:02} {:02}:{:02}:{:02}",
        year % 100,
        month,
        day,
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(frames: &[&[u8]]) -> Message {
        Message::from_frames(frames.iter().map(|f| f.to_vec()))
    }

    #[test]
    fn ready_round_trips() {
        let built = worker_message(Command::Ready, Some(b"echo"), None);
        assert_eq!(
            built.clone().into_frames(),
            vec![b"".to_vec(), b"MDPW01".to_vec(), vec![1], b"echo".to_vec()]
        );
        assert_eq!(
            parse_to_worker(built).unwrap(),
            WorkerCommand::Ready {
                service: b"echo".to_vec()
            }
        );
    }

    #[test]
    fn bad_worker_messages_are_errors() {
        for bad in [
            msg(&[]),
            msg(&[b"", b"MDPW01"]),
            msg(&[b"x", b"MDPW01", b"\x04"]),
            msg(&[b"", b"MDPW02", b"\x04"]),
            msg(&[b"", b"MDPW01", b"\x09"]),
            msg(&[b"", b"MDPW01", b"\x04", b"extra"]),
            msg(&[b"", b"MDPW01", b"\x01"]),
            msg(&[b"", b"MDPW01", b"\x01", b""]),
            msg(&[b"", b"MDPW01", b"\x02", b"client", b"body"]),
            msg(&[b"", b"MDPW01", b"\x03", b"", b"", b"body"]),
            msg(&[b"", b"MDPW01", b"\x03", b"client", b""]),
            msg(&[b"", b"MDPW01", b"\x03", b"client", b"x", b"body"]),
            msg(&[b"", b"MDPW01", b"\x02", b"", b"", b"body"]),
            msg(&[b"", b"MDPW01", b"\x05", b"x"]),
        ] {
            assert!(parse_to_worker(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_keeps_envelope() {
        let parsed = parse_to_worker(msg(&[b"", b"MDPW01", b"\x02", b"c1", b"", b"hi"])).unwrap();
        assert_eq!(
            parsed,
            WorkerCommand::Request {
                envelope: msg(&[b"c1", b"", b"hi"])
            }
        );
    }

    #[test]
    fn client_reply_checks_header_and_service() {
        let ok = parse_client_reply(msg(&[b"MDPC01", b"echo", b"hi"]), b"echo").unwrap();
        assert_eq!(ok, msg(&[b"hi"]));
        assert!(parse_client_reply(msg(&[b"MDPC01", b"other", b"hi"]), b"echo").is_err());
        assert!(parse_client_reply(msg(&[b"MDPC02", b"echo", b"hi"]), b"echo").is_err());
        assert!(parse_client_reply(msg(&[b"MDPC01", b"echo"]), b"echo").is_err());
        assert!(parse_client_reply(msg(&[b"MDPC01"]), b"echo").is_err());
        // The smallest valid reply: three frames.
        assert_eq!(
            parse_client_reply(msg(&[b"MDPC01", b"echo", b""]), b"echo").unwrap(),
            msg(&[b""])
        );
        // The smallest valid worker message: three frames.
        assert_eq!(
            parse_to_worker(msg(&[b"", b"MDPW01", b"\x04"])).unwrap(),
            WorkerCommand::Heartbeat
        );
    }

    const ALL: [Command; 5] = [
        Command::Ready,
        Command::Request,
        Command::Reply,
        Command::Heartbeat,
        Command::Disconnect,
    ];

    #[test]
    fn commands_have_their_wire_bytes_and_c_names() {
        let names = ["READY", "REQUEST", "REPLY", "HEARTBEAT", "DISCONNECT"];
        for (n, command) in ALL.into_iter().enumerate() {
            let byte = n as u8 + 1;
            assert_eq!(command.frame(), [byte]);
            assert_eq!(command as u8, byte);
            assert_eq!(Command::from_frame(&[byte]), Some(command));
            assert_eq!(command.name(), names[n]);
        }
        for bad in [&b""[..], b"\x00", b"\x06", b"1", b"\x01\x01"] {
            assert_eq!(Command::from_frame(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_command_round_trips_with_its_name() {
        let cases = [
            (Command::Ready, Some(&b"echo"[..]), None),
            (Command::Request, None, Some(msg(&[b"c1", b"", b"hi"]))),
            (
                Command::Reply,
                None,
                Some(msg(&[b"c1", b"", b"hi", b"there"])),
            ),
            (Command::Heartbeat, None, None),
            (Command::Disconnect, None, None),
        ];
        for (command, option, body) in cases {
            let built = worker_message(command, option, body.clone());
            let mut expected = vec![b"".to_vec(), b"MDPW01".to_vec(), command.frame().to_vec()];
            expected.extend(option.map(<[u8]>::to_vec));
            expected.extend(body.clone().map(Message::into_frames).unwrap_or_default());
            assert_eq!(built.clone().into_frames(), expected);
            let parsed = parse_to_worker(built).unwrap();
            assert_eq!(parsed.name(), command.name());
            let wanted = match command {
                Command::Ready => WorkerCommand::Ready {
                    service: b"echo".to_vec(),
                },
                Command::Request => WorkerCommand::Request {
                    envelope: body.unwrap(),
                },
                Command::Reply => WorkerCommand::Reply {
                    envelope: body.unwrap(),
                },
                Command::Heartbeat => WorkerCommand::Heartbeat,
                Command::Disconnect => WorkerCommand::Disconnect,
            };
            assert_eq!(parsed, wanted);
        }
    }

    #[test]
    fn only_the_mmi_prefix_is_reserved() {
        assert!(is_mmi(b"mmi.service"));
        assert!(is_mmi(b"mmi."));
        assert!(!is_mmi(b"mmi"));
        assert!(!is_mmi(b"echo"));
        assert!(!is_mmi(b"xmmi.service"));
    }

    #[test]
    fn timestamp_has_the_zclock_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 17, "{t}");
        assert_eq!(&t[2..3], "-");
        assert_eq!(&t[8..9], " ");
    }
}
