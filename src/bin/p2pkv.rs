//! p2pkv: a replicated key-value map on ZRE, with no server (study part 5,
//! `etude.md` §7 "Replication"; the library is [`zguide::zre::state`]).
//!
//! What it shows: chapter 5's Clone pattern (snapshot + updates, kvmsg
//! frames, subtrees) on a peer-to-peer group. Every node of the group
//! (`--group`, default `KV`) holds a copy of the map (or of `--subtree`
//! only); a write is SHOUTed as a kvmsg; a node that joins follows the
//! study's order (subscribe, one update or a short wait, queue, ask the
//! mediator for a snapshot, apply it, apply the queue); every node pushes
//! its map to every peer that joins, so two halves of a partitioned network
//! converge once they see each other again. The newest version of each key
//! wins (a Lamport clock, then the writer's UUID), so every node ends up
//! with the same map whatever the order of delivery.
//!
//! Commands on stdin, one per line:
//!
//! ```text
//! set KEY VALUE     KEY a path (/a/b); VALUE the rest of the line (not empty)
//! del KEY           a delete (kept as a tombstone, so it beats older values)
//! get KEY           prints KEY=VALUE, or "KEY: not found"
//! dump              prints KEY=VALUE per live key in key order, then
//!                   "dump: N keys, digest HEX" (FNV-1a of the whole map:
//!                   equal maps, equal digests)
//! ```
//!
//! What it prints on stdout besides the answers:
//!
//! ```text
//! ok set /a/b (clock 7)             our write, applied and shouted
//! update /a/b=value from bob        a peer's update applied here
//! delete /a/b from bob              a peer's delete applied here
//! synced: 12 keys from bob (snapshot 12, queued 3)   the join order is done
//! * bob joined KV                   a peer is in our group (we push it our map)
//! * bob exited                      a peer is gone (goodbye, expiry)
//! error: …                          a command refused (bad key, outside the subtree, full map …)
//! ```
//!
//! and on stderr `I: p2pkv: ann (uuid …) in KV replicating /, mailbox tcp://…,
//! beacons to …:5670` when it is ready. Keys and values from peers are
//! printed through [`zguide::zre::printable`] (escaped, cut at
//! [`MAX_TEXT`] characters), so a peer can neither drive the terminal nor
//! forge a line; the digest is over the full bytes.
//!
//! Run beside it: more `p2pkv --name bob` on this machine (they share UDP
//! port 5670 on the loopback broadcast address `127.255.255.255`), `p2pmon`
//! to watch the group and its mediator. Across hosts: `--broadcast
//! 192.168.1.255` (or an interface name) on each. Where broadcast does not
//! reach (another subnet, a WAN), find peers by gossip instead of beacons:
//! `p2pkv --interface 10.0.0.5 --gossip-bind tcp://10.0.0.5:5671` on one
//! host and `--interface <own address> --gossip-connect tcp://10.0.0.5:5671`
//! on the others.
//!
//! Ends at end of input (goodbye, exit 0) or on Ctrl-C or SIGTERM (goodbye
//! too, exit 0). Exit 64 for a bad command line, 1 if the node cannot start.
//! `--evasive-ms`, `--expired-ms`, `--settle-ms` and `--request-ms` exist so
//! tests run quickly.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::interface::hex;
use zguide::interrupt::{self, Pollable};
use zguide::zre::state::{self, Change, Replica};
use zguide::zre::{printable, Event, Node, NodeOptions};
use zguide::{program, Error};

/// The most characters of a peer's key, value or name we print.
const MAX_TEXT: usize = 256;
/// The longest command line read; the rest of a longer line is dropped.
const MAX_COMMAND: usize = 2 * state::MAX_VALUE_BYTES;

/// A replicated key-value map on ZRE: set/del/get/dump on stdin.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Our name (default: the first 6 hex digits of our UUID).
    #[arg(long)]
    name: Option<String>,
    /// The group that shares the map.
    #[arg(long, default_value = "KV")]
    group: String,
    /// The part of the map to replicate: a prefix that starts and ends
    /// with '/' ("/" for all of it).
    #[arg(long, default_value = "/")]
    subtree: String,
    /// How the node finds and watches its peers.
    #[command(flatten)]
    node: NodeOptions,
    /// How long to wait for a first update before asking for a snapshot.
    #[arg(long, default_value_t = state::Timing::default().settle.as_millis() as u64)]
    settle_ms: u64,
    /// How long to wait for a snapshot before asking again.
    #[arg(long, default_value_t = state::Timing::default().request.as_millis() as u64)]
    request_ms: u64,
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
    let timing = state::Timing {
        settle: Duration::from_millis(args.settle_ms),
        request: Duration::from_millis(args.request_ms),
    };
    // Step 1 of the join order: join the group (subscribe) before starting.
    let replica = Replica::new(&node, &args.group, &args.subtree, timing)?;
    let endpoint = node.start()?;
    log::info!(
        "p2pkv: {} (uuid {}) in {} replicating {}, mailbox {endpoint}, {discovery}",
        printable(node.name().as_bytes(), MAX_TEXT),
        hex(&node.uuid()),
        printable(args.group.as_bytes(), MAX_TEXT),
        replica.map().subtree(),
    );
    let mut kv = Kv {
        node: &node,
        replica,
        names: HashMap::new(),
    };
    match kv.run() {
        Ok(()) => node.stop(),
        // Ctrl-C/SIGTERM: the node's thread has said goodbye by itself.
        Err(Error::Interrupted) => Ok(()),
        Err(e) => Err(e),
    }
}

struct Kv<'a> {
    node: &'a Node,
    replica: Replica<'a>,
    /// Names of the peers seen (from their events), so an update applied
    /// after its sender left is still shown with its name; cleared past
    /// [`MAX_NAMES`].
    names: HashMap<[u8; 16], String>,
}

/// Peer names remembered at most.
const MAX_NAMES: usize = 10_000;

impl Kv<'_> {
    /// Reads commands and events until end of input (`Ok`) or a signal.
    fn run(&mut self) -> Result<(), Error> {
        // Standard input, unbuffered, so that polling it tells the truth.
        // SAFETY: fd 0 is open for the life of the process; ManuallyDrop
        // keeps this File from closing it.
        let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        let mut pending = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let timeout = self
                .replica
                .next_timeout()
                .map_or(-1, |t| t.as_millis().min(60_000) as i64);
            let ready = interrupt::poll_any(
                &[Pollable::Fd(0), Pollable::Socket(self.node.socket())],
                timeout,
            )?;
            if ready[1] {
                while let Some(event) = self.node.recv_timeout(Duration::ZERO)? {
                    self.membership(&event);
                    let changes = self.replica.handle(&event)?;
                    self.show(&changes)?;
                }
            }
            let changes = self.replica.tick()?;
            self.show(&changes)?;
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
                self.command(&line[..newline])?;
            }
            if pending.len() > MAX_COMMAND {
                println!("error: a command line over {MAX_COMMAND} bytes: dropped");
                pending.clear();
            }
            if read == 0 {
                if !pending.is_empty() {
                    let line = std::mem::take(&mut pending);
                    self.command(&line)?;
                }
                return Ok(());
            }
        }
    }

    /// One command line.
    fn command(&mut self, line: &[u8]) -> Result<(), Error> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        let text = text.trim_start();
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        let refused = |e: Error| println!("error: {e}");
        match verb {
            "" => {}
            "set" => {
                let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
                match self.replica.set(key, value.as_bytes()) {
                    Ok(update) => println!(
                        "ok set {} (clock {})",
                        printable(key.as_bytes(), MAX_TEXT),
                        update.version.clock
                    ),
                    Err(e) => refused(e),
                }
            }
            "del" => match self.replica.delete(rest.trim()) {
                Ok(update) => println!(
                    "ok del {} (clock {})",
                    printable(rest.trim().as_bytes(), MAX_TEXT),
                    update.version.clock
                ),
                Err(e) => refused(e),
            },
            "get" => {
                let key = rest.trim();
                match self.replica.get(key) {
                    Some(value) => println!(
                        "{}={}",
                        printable(key.as_bytes(), MAX_TEXT),
                        printable(value, MAX_TEXT)
                    ),
                    None => println!("{}: not found", printable(key.as_bytes(), MAX_TEXT)),
                }
            }
            "dump" => {
                let mut out = std::io::stdout().lock();
                for (key, value) in self.replica.entries() {
                    let _ = writeln!(
                        out,
                        "{}={}",
                        printable(key.as_bytes(), MAX_TEXT),
                        printable(value, MAX_TEXT)
                    );
                }
                let map = self.replica.map();
                let _ = writeln!(
                    out,
                    "dump: {} keys, digest {:016x}",
                    map.len(),
                    map.digest()
                );
            }
            _ => println!("error: commands are set KEY VALUE, del KEY, get KEY, dump"),
        }
        Ok(())
    }

    /// Prints what the replica did; see the module docs for the formats.
    fn show(&self, changes: &[Change]) -> Result<(), Error> {
        for change in changes {
            match change {
                Change::Applied { from, update } => {
                    let who = self.name_of(from)?;
                    let key = printable(update.key.as_bytes(), MAX_TEXT);
                    if update.is_delete() {
                        println!("delete {key} from {who}");
                    } else {
                        println!(
                            "update {key}={} from {who}",
                            printable(&update.value, MAX_TEXT)
                        );
                    }
                }
                Change::Synced {
                    source,
                    snapshot,
                    queued,
                } => {
                    let from = match source {
                        Some(peer) => format!(" from {}", self.name_of(peer)?),
                        None => " (nobody to ask)".to_string(),
                    };
                    println!(
                        "synced: {} keys{from} (snapshot {snapshot}, queued {queued})",
                        self.replica.map().len()
                    );
                }
            }
        }
        Ok(())
    }

    /// Prints who joined our group and who is gone (`* bob joined KV`,
    /// `* bob exited`), so a reader (or a test) sees when the halves meet.
    fn membership(&mut self, event: &Event) {
        let show = |text: &str| printable(text.as_bytes(), MAX_TEXT);
        if let Event::Enter { peer, name, .. } | Event::Join { peer, name, .. } = event {
            if self.names.len() >= MAX_NAMES {
                self.names.clear();
            }
            self.names.insert(*peer, show(name));
        }
        match event {
            Event::Join { name, group, .. } if group == self.replica.group() => {
                println!("* {} joined {}", show(name), show(group))
            }
            Event::Exit { name, .. } => println!("* {} exited", show(name)),
            _ => {}
        }
    }

    /// A peer's name, printable (its UUID's first hex digits if gone).
    fn name_of(&self, peer: &[u8; 16]) -> Result<String, Error> {
        if let Some(name) = self.names.get(peer) {
            return Ok(name.clone());
        }
        Ok(match self.node.peer_name(peer)? {
            Some(name) => printable(name.as_bytes(), MAX_TEXT),
            None => hex(peer)[..6].to_string(),
        })
    }
}
