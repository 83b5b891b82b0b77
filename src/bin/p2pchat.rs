//! p2pchat: a group chat with no server, on ZRE (study part 5, `etude.md`
//! §7; notes in `zguide/study-p2p.md`; the library is [`zguide::zre`]).
//!
//! What it shows: chapter 8's `dechat` grown up. Instead of connecting to
//! every address of a /24, each node announces itself with UDP beacons (ZRE
//! v2, port 5670), the others connect to its mailbox and say HELLO, and from
//! then on they know each other's name, groups and headers, PING each other
//! after a silence, and report a node that goes away (a goodbye beacon on a
//! clean stop; expiry after a crash). Every line typed is SHOUTed to the
//! group (`--group`, default `CHAT`); `/w NAME text` WHISPERs to the peers
//! called NAME only; `/who` lists who is in the group.
//!
//! What it prints, one line each, on stdout:
//!
//! ```text
//! bob: hello everyone              a SHOUT to our group
//! bob (whisper): just for you      a WHISPER to us
//! * bob entered from tcp://10.0.0.2:51234   a peer said HELLO
//! * bob joined CHAT                a peer is in a group (from its HELLO, or a JOIN)
//! * bob left CHAT                  a peer left a group
//! * bob exited                     a peer is gone (goodbye, expiry, a broken rule)
//! * bob is the mediator of CHAT    the group's mediator changed (smallest UUID wins)
//! * in CHAT: bob, carl             the answer to /who
//! * nobody else in CHAT heard that   a SHOUT that reached no peer
//! * no peer named dave             a /w to nobody
//! ```
//!
//! and on stderr `I: p2pchat: ann (uuid …) in CHAT, mailbox tcp://…, beacons
//! to …:5670 every 1000 ms` when it is ready. What peers send (names, groups,
//! text) is printed through [`zguide::zre::printable`]: control and
//! invisible characters escaped, names cut at [`MAX_NAME`] characters and
//! messages at [`MAX_TEXT`], so a peer can neither drive the terminal nor
//! forge a line. Our own lines are not echoed.
//!
//! Run beside it: more `p2pchat --name bob` on this machine (they share UDP
//! port 5670 and find each other on the loopback broadcast address
//! `127.255.255.255`), `p2pmon` to watch, or a zyre/pyre chat in the same
//! group. Across hosts: `p2pchat --broadcast 192.168.1.255` (or an interface
//! name: `--broadcast eth0`) on each. Where broadcast does not reach
//! (another subnet, a WAN), find peers by gossip instead of beacons:
//! `p2pchat --interface 10.0.0.5 --gossip-bind tcp://10.0.0.5:5671` on one
//! host and `--interface <own address> --gossip-connect tcp://10.0.0.5:5671`
//! on the others.
//!
//! Ends at end of input (the node says goodbye, exit 0), or on Ctrl-C or
//! SIGTERM (goodbye too, exit 0). Exit 64 for a bad command line, 1 if the
//! node cannot start (the UDP port cannot be opened …).
//!
//! Where it differs from `dechat` and from zyre's `chat` example: a line is
//! sent in pieces of at most [`MAX_LINE`] bytes (cut on a character
//! boundary), and a line over [`MAX_INPUT_LINE`] bytes is not sent at all
//! (`* a line over … bytes: not sent`); a line typed just before end of
//! input can still be lost by a peer that handles our goodbye beacon before
//! the SHOUT (as with zyre); names are not unique (the default is the first six hex digits of the
//! UUID), so `/w` goes to every peer with that name; `--evasive-ms` and
//! `--expired-ms` (zyre's 5 s and 30 s by default) exist for tests.

use std::fs::File;
use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::interface::hex;
use zguide::interrupt::{self, Pollable};
use zguide::zre::{printable, Event, Node, NodeOptions};
use zguide::{program, Error};

/// Prints one line with a single write, so that it reaches a pipe whole
/// and a log line on stderr cannot land in the middle of it (`println!`
/// writes a long line and its newline separately).
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        // Like `println!`, but a closed stdout is not worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    }};
}

/// The most characters of a peer's name we print.
const MAX_NAME: usize = 64;
/// The most characters of a message we print.
const MAX_TEXT: usize = 4096;
/// The most bytes sent as one message; a longer line goes in pieces.
const MAX_LINE: usize = 16 * 1024;
/// The longest line typed we keep (and send, in pieces); a longer one is
/// not sent, with a note.
const MAX_INPUT_LINE: usize = 1 << 20;

/// A group chat on ZRE: lines typed are SHOUTed, `/w NAME text` whispers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Our name (default: the first 6 hex digits of our UUID).
    #[arg(long)]
    name: Option<String>,
    /// The group to chat in.
    #[arg(long, default_value = "CHAT")]
    group: String,
    /// How the node finds and watches its peers.
    #[command(flatten)]
    node: NodeOptions,
    /// Log what the node does (debug level).
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    program::run_logging(if args.verbose { "debug" } else { "info" }, || run(&args))
}

fn run(args: &Args) -> Result<(), Error> {
    let config = args.node.config(args.name.clone())?;
    let discovery = config.discovery();
    let context = zmq::Context::new();
    let node = Node::new(&context, config)?;
    node.join(&args.group)?;
    let endpoint = node.start()?;
    log::info!(
        "p2pchat: {} (uuid {}) in {}, mailbox {endpoint}, {discovery}",
        printable(node.name().as_bytes(), MAX_NAME),
        hex(&node.uuid()),
        printable(args.group.as_bytes(), MAX_NAME),
    );
    let mut chat = Chat {
        node: &node,
        group: args.group.clone(),
    };
    let result = chat.run();
    match result {
        // End of input: say goodbye while we still can.
        Ok(()) => node.stop(),
        // Ctrl-C/SIGTERM: the node's thread has stopped by itself and said
        // goodbye; dropping it joins the thread.
        Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}

struct Chat<'a> {
    node: &'a Node,
    group: String,
}

impl Chat<'_> {
    /// Reads lines and events until end of input (`Ok`) or a signal.
    fn run(&mut self) -> Result<(), Error> {
        // Standard input, unbuffered, so that polling it tells the truth.
        // SAFETY: fd 0 is open for the life of the process; ManuallyDrop
        // keeps this File from closing it.
        let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        let mut pending = Vec::new();
        // True while the rest of a line too long to keep is thrown away.
        let mut skipping = false;
        let mut buffer = [0u8; 4096];
        loop {
            let ready =
                interrupt::poll_any(&[Pollable::Fd(0), Pollable::Socket(self.node.socket())], -1)?;
            if ready[1] {
                while let Some(event) = self.node.recv_timeout(Duration::ZERO)? {
                    self.show(event);
                }
            }
            if !ready[0] {
                continue;
            }
            let read = match stdin.read(&mut buffer) {
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Protocol(format!("cannot read input: {e}"))),
            };
            pending.extend_from_slice(&buffer[..read]);
            while let Some(newline) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=newline).collect();
                if std::mem::take(&mut skipping) {
                    continue; // the end of a line too long to keep
                }
                self.typed(&line[..newline])?;
            }
            if pending.len() > MAX_INPUT_LINE {
                if !skipping {
                    say!("* a line over {MAX_INPUT_LINE} bytes: not sent");
                }
                skipping = true;
                pending.clear();
            }
            if read == 0 {
                if !pending.is_empty() && !skipping {
                    let line = std::mem::take(&mut pending); // last line, no newline
                    self.typed(&line)?;
                }
                return Ok(());
            }
        }
    }

    /// One line typed: a command, or text to SHOUT.
    fn typed(&mut self, line: &[u8]) -> Result<(), Error> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        if let Some(rest) = text.strip_prefix("/w ") {
            let rest = rest.trim_start();
            let (name, message) = rest.split_once(' ').unwrap_or((rest, ""));
            if name.is_empty() || message.is_empty() {
                say!("* usage: /w NAME text");
                return Ok(());
            }
            return self.whisper(name, message.as_bytes());
        }
        if text.trim_end() == "/who" {
            return self.who();
        }
        if text.starts_with('/') && !text.starts_with("//") {
            say!("* commands: /w NAME text (whisper), /who; //text sends /text");
            return Ok(());
        }
        let line = if line.starts_with(b"//") {
            &line[1..]
        } else {
            line
        };
        let mut heard = 0;
        for piece in pieces(line) {
            heard = self.node.shout(&self.group, vec![piece.to_vec()])?;
        }
        if heard == 0 {
            say!(
                "* nobody else in {} heard that",
                printable(self.group.as_bytes(), MAX_NAME)
            );
        }
        Ok(())
    }

    fn whisper(&mut self, name: &str, message: &[u8]) -> Result<(), Error> {
        let mut sent = 0;
        for peer in self.node.peers()? {
            if self.node.peer_name(&peer)?.as_deref() == Some(name) {
                for piece in pieces(message) {
                    if self.node.whisper(&peer, vec![piece.to_vec()])? {
                        sent += 1;
                    }
                }
            }
        }
        if sent == 0 {
            say!("* no peer named {}", printable(name.as_bytes(), MAX_NAME));
        }
        Ok(())
    }

    fn who(&mut self) -> Result<(), Error> {
        let mut names = Vec::new();
        for peer in self.node.peers_by_group(&self.group)? {
            if let Some(name) = self.node.peer_name(&peer)? {
                names.push(printable(name.as_bytes(), MAX_NAME));
            }
        }
        names.sort();
        let group = printable(self.group.as_bytes(), MAX_NAME);
        if names.is_empty() {
            say!("* nobody else in {group}");
        } else {
            say!("* in {group}: {}", names.join(", "));
        }
        Ok(())
    }

    /// Prints one event; see the module docs for the formats.
    fn show(&self, event: Event) {
        let name = |name: &str| printable(name.as_bytes(), MAX_NAME);
        match event {
            Event::Enter {
                name: n, address, ..
            } => {
                say!("* {} entered from {}", name(&n), name(&address))
            }
            Event::Join { name: n, group, .. } => {
                say!("* {} joined {}", name(&n), name(&group))
            }
            Event::Leave { name: n, group, .. } => {
                say!("* {} left {}", name(&n), name(&group))
            }
            Event::Exit { name: n, .. } => say!("* {} exited", name(&n)),
            Event::Shout {
                name: n,
                group,
                content,
                ..
            } => {
                let to = if group == self.group {
                    String::new()
                } else {
                    format!(" [{}]", name(&group))
                };
                say!("{}{to}: {}", name(&n), text_of(&content));
            }
            Event::Whisper {
                name: n, content, ..
            } => {
                say!("{} (whisper): {}", name(&n), text_of(&content))
            }
            Event::Leader { group, name: n, .. } => {
                say!("* {} is the mediator of {}", name(&n), name(&group))
            }
            // The silence alarms are p2pmon's business; Stop ends nothing
            // here (we stop the node ourselves).
            Event::Evasive { .. } | Event::Silent { .. } | Event::Stop => {}
        }
    }
}

/// A message's content as one printable line: its first frame, and how many
/// frames follow if there are more (our chat sends one).
fn text_of(content: &[Vec<u8>]) -> String {
    let first = content.first().map(Vec::as_slice).unwrap_or_default();
    let mut text = printable(first, MAX_TEXT);
    if content.len() > 1 {
        text.push_str(&format!(" [+{} frames]", content.len() - 1));
    }
    text
}

/// `line` in pieces of at most [`MAX_LINE`] bytes, each cut on a UTF-8
/// character boundary when the line is UTF-8.
fn pieces(mut line: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        // Back up over continuation bytes (10xxxxxx), at most 3.
        while cut > MAX_LINE - 3 && line[cut] & 0xC0 == 0x80 {
            cut -= 1;
        }
        let (head, tail) = line.split_at(cut);
        out.push(head);
        line = tail;
    }
    out.push(line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_go_in_pieces_cut_between_characters() {
        assert_eq!(pieces(b"hello"), vec![&b"hello"[..]]);
        let long = "é".repeat(MAX_LINE); // two bytes each
        let parts = pieces(long.as_bytes());
        assert!(parts.iter().all(|p| p.len() <= MAX_LINE));
        assert!(parts.iter().all(|p| std::str::from_utf8(p).is_ok()));
        assert_eq!(parts.concat(), long.as_bytes());
    }
}
