//! §48 A Self-Healing P2P Network in 30 Seconds (`dechat.c`): decentralized
//! chat with no server and no discovery, by brute force.
//!
//! `dechat <ipaddress> <interface> <username>`, e.g.
//! `dechat 192.168.55.122 eth0 Joe`. Every node binds a PUB socket to
//! `tcp://<interface>:9000` (libzmq takes an interface name or an address)
//! and connects one SUB socket to port 9000 of *every* address of its /24,
//! `<a.b.c.>1` to `<a.b.c.>254`, the prefix cut from `<ipaddress>` after its
//! last dot. Connects are asynchronous and retried, so it does not matter
//! who starts first, and a node that crashes and comes back is found again
//! without anyone restarting: the network heals itself. Each line typed is
//! published as `<username>: <line>`; every line a node hears (its own
//! included) is printed. Runs until end of input or Ctrl-C (exit 0).
//!
//! To try it on one machine, give each node its own loopback address:
//! `dechat 127.0.0.1 127.0.0.1 ann` and `dechat 127.0.0.2 127.0.0.2 bob`
//! (Linux routes all of 127/8 to `lo`). With wrong arguments it prints the
//! C's two usage lines and exits 0.
//!
//! Limits: a message is at most [`MAX_MESSAGE`] bytes (`MAXMSGSIZE` on the
//! SUB: libzmq treats a bigger one as a protocol error and closes that
//! peer's connection without retrying it, so a node that sends one is not
//! heard again until we restart);
//! a line typed is sent in pieces of at most 1023 bytes, like the C's
//! `fgets`; at most 1000 messages wait per peer (SUB's default HWM; a PUB
//! never blocks, it drops for a subscriber that does not keep up).
//!
//! Differs from the C:
//! * what peers send is printed escaped: control characters (escape
//!   sequences, carriage returns, bells…) show as `\u{1b}`, `\r`…, so a
//!   peer cannot drive the terminal or forge lines; invalid UTF-8 shows as
//!   `�`;
//! * `<ipaddress>` must be an IPv4 address (the C only needed a dot, and
//!   `a.b` would have made it look up 254 host names);
//! * failed connects are retried after 100 ms, doubling up to
//!   [`RECONNECT_IVL_MAX_MS`] (the C retried every address every 100 ms
//!   forever: 2,540 connection attempts a second on a quiet LAN);
//! * the listener stops with the program, so the last line typed before end
//!   of input is delivered (LINGER 1 s) before the exit.

use std::fs::File;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::net::Ipv4Addr;
use std::os::fd::FromRawFd;
use std::process::ExitCode;

use zguide::actor::{Actor, Pipe};
use zguide::interrupt::{self, Pollable};
use zguide::{program, socket, Error, Message};

/// The largest message a node accepts from a peer, in bytes.
const MAX_MESSAGE: i64 = 16 * 1024;
/// The most a line is sent as one message (the C's `fgets` into 1024 bytes).
const MAX_LINE: usize = 1023;
/// The longest wait between two connection attempts to an address.
const RECONNECT_IVL_MAX_MS: i32 = 2000;

fn usage() -> ExitCode {
    println!("Usage: dechat ipaddress interface username");
    println!("Example: dechat 192.168.55.123 eth0 joe");
    ExitCode::SUCCESS
}

/// The listener: prints every message heard, until `$TERM` or Ctrl-C.
fn listener_task(pipe: &Pipe, listener: zmq::Socket) {
    let _ = pipe.signal(0);
    while let Ok(Some(_)) = pipe.poll(&[&listener], -1) {
        match Message::try_recv(&listener) {
            Ok(Some(message)) => println!("{}", printable(message.first().unwrap_or_default())),
            Ok(None) => {}
            Err(e) => {
                log::error!("listener: {e}");
                return;
            }
        }
    }
}

/// A peer's message as one safe line: the trailing newline dropped, control
/// characters escaped (a peer must not be able to drive our terminal).
fn printable(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// Splits what was typed into the messages the C's `fgets` loop would send:
/// each line with its newline, a longer line in pieces of [`MAX_LINE`]
/// bytes. Returns the complete pieces and keeps the rest in `pending`.
fn take_lines(pending: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    loop {
        let end = match pending.iter().position(|&b| b == b'\n') {
            Some(newline) if newline < MAX_LINE => newline + 1,
            _ if pending.len() >= MAX_LINE => MAX_LINE,
            _ => return lines,
        };
        lines.push(pending.drain(..end).collect());
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ipaddress, interface, username] = args.as_slice() else {
        return usage();
    };
    let Ok(address) = ipaddress.parse::<Ipv4Addr>() else {
        return usage();
    };
    let [a, b, c, _] = address.octets();
    let prefix = format!("{a}.{b}.{c}."); // Cut string after dot
    let (interface, username) = (interface.clone(), username.clone());

    program::run(|| {
        let context = zmq::Context::new();
        let listener = socket::new(&context, zmq::SUB)
            .linger(0)
            .max_message_size(MAX_MESSAGE)
            .subscribe("")
            .build()?;
        listener.set_reconnect_ivl_max(RECONNECT_IVL_MAX_MS)?;
        for address in 1..255 {
            let endpoint = format!("tcp://{prefix}{address}:9000");
            listener
                .connect(&endpoint)
                .map_err(|source| Error::Endpoint {
                    action: "connect to",
                    endpoint,
                    source,
                })?;
        }
        let _listener = Actor::new(&context, move |pipe| listener_task(pipe, listener))?;

        let broadcaster =
            socket::new(&context, zmq::PUB).bind(&format!("tcp://{interface}:9000"))?;
        // Standard input, unbuffered, so that polling it tells the truth.
        // SAFETY: fd 0 is open for the life of the process; ManuallyDrop
        // keeps this File from closing it.
        let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        let mut pending = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            interrupt::poll_any(&[Pollable::Fd(0)], -1)?;
            let read = match stdin.read(&mut buffer) {
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Protocol(format!("cannot read input: {e}"))),
            };
            pending.extend_from_slice(&buffer[..read]);
            let mut lines = take_lines(&mut pending);
            if read == 0 && !pending.is_empty() {
                lines.push(std::mem::take(&mut pending)); // last line, no newline
            }
            for line in lines {
                let mut message = format!("{username}: ").into_bytes();
                message.extend_from_slice(&line);
                interrupt::retry_eintr(|| broadcaster.send(&message[..], zmq::DONTWAIT))?;
            }
            if read == 0 {
                return Ok(()); // end of input
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_cannot_send_control_characters_to_the_terminal() {
        assert_eq!(printable(b"joe: hello\n"), "joe: hello");
        assert_eq!(
            printable(b"eve: \x1b[2J\rroot: hi\x07\n\n"),
            "eve: \\u{1b}[2J\\rroot: hi\\u{7}\\n"
        );
        assert_eq!(
            printable("ann: caf\u{e9} \u{9b}31m".as_bytes()),
            "ann: café \\u{9b}31m"
        );
        assert_eq!(printable(b"x\xff"), "x\u{fffd}");
    }

    #[test]
    fn input_is_cut_like_fgets() {
        let mut pending = b"one\ntwo\nthr".to_vec();
        assert_eq!(
            take_lines(&mut pending),
            vec![b"one\n".to_vec(), b"two\n".to_vec()]
        );
        assert_eq!(pending, b"thr");
        let mut long = vec![b'x'; MAX_LINE + 5];
        long.push(b'\n');
        let lines = take_lines(&mut long);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1], b"xxxxx\n");
        assert!(long.is_empty());
    }
}
