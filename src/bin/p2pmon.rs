//! p2pmon: watches a ZRE network (study part 5, `etude.md` §7; notes in
//! `zguide/study-p2p.md`; the library is [`zguide::zre`]).
//!
//! What it shows: everything a ZRE node learns, as it learns it. It is a
//! node itself (peers see it ENTER, under `--name`, default `p2pmon`), joins
//! no group unless asked (`--group G`, repeatable), and prints every event
//! as one line on stdout:
//!
//! ```text
//! ENTER <uuid> <name> <address> [KEY=VALUE …]   a peer said HELLO (its headers follow)
//! JOIN <uuid> <name> <group>
//! LEAVE <uuid> <name> <group>
//! SHOUT <uuid> <name> <group> <bytes> bytes <frames> frames   (only for groups we joined)
//! WHISPER <uuid> <name> <bytes> bytes <frames> frames         (to us)
//! EVASIVE <uuid> <name>      silent for --evasive-ms: we sent it a PING
//! SILENT <uuid> <name>       and it did not answer within a reap interval
//! EXIT <uuid> <name>         gone: goodbye beacon, expiry, or a broken rule
//! LEADER <group> <name> <uuid>   the mediator of a group we joined changed
//! ```
//!
//! and every `--every-ms` (default 2000) a status block:
//!
//! ```text
//! STATUS <n> peers <g> groups | SHOUT <r>/s WHISPER <r>/s over <s> s
//! PEER <uuid> <name> <address> groups <g1>,<g2>|-
//! GROUP <group> members <n> [<name> …] mediator <name> <uuid>
//! END
//! ```
//!
//! The mediator of a group is the member with the smallest UUID (the
//! node's rule, see [`zguide::zre::node`]): for a group we joined, the
//! node's own answer (we may be it); for a group we only watch, the same
//! rule over the members we see. The rates count the SHOUTs and WHISPERs we
//! *received* over the last interval: SHOUTs reach us only in groups we
//! joined. UUIDs are 32 hex digits; names, groups and addresses from peers
//! are escaped ([`zguide::zre::printable`]: control and invisible
//! characters, a space as `\u{20}` so columns stay columns) and cut at
//! [`MAX_NAME`] characters.
//!
//! Run beside it: `p2pchat` nodes (or zyre/pyre nodes) on this machine, or
//! with `--broadcast` on a LAN. Where broadcast does not reach (another
//! subnet, a WAN), watch a gossip network instead: `p2pmon --interface
//! <own address> --gossip-connect tcp://10.0.0.5:5671`, where 10.0.0.5 is a
//! node started with `--gossip-bind tcp://10.0.0.5:5671`. On stderr,
//! `I: p2pmon: … watching` when ready. Exits 0 on Ctrl-C or SIGTERM (after a
//! goodbye beacon), 64 for a bad command line, 1 if the node cannot start.
//!
//! Where it differs from zyre's `zpinger`/`ztester` style monitors: it prints
//! a table as well as the events, and the mediator of groups it is not in.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use zguide::interface::hex;
use zguide::zre::{printable, Event, Node, NodeOptions, Uuid};
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

/// The most characters of a name, group or address we print.
const MAX_NAME: usize = 64;

/// Prints every ZRE event, and the peers, groups and mediators, live.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Our name, as peers see it.
    #[arg(long, default_value = "p2pmon")]
    name: String,
    /// A group to join (repeat for several): SHOUTs to it are counted.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Milliseconds between two status blocks.
    #[arg(long, default_value_t = 2000)]
    every_ms: u64,
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

/// A name, group or address from a peer as one column.
fn word(text: &str) -> String {
    let shown = printable(text.as_bytes(), MAX_NAME);
    if shown.is_empty() {
        "\"\"".into()
    } else {
        shown.replace(' ', "\\u{20}")
    }
}

fn run(args: &Args) -> Result<(), Error> {
    let config = args.node.config(Some(args.name.clone()))?;
    let discovery = config.discovery();
    let context = zmq::Context::new();
    let node = Node::new(&context, config)?;
    for group in &args.groups {
        node.join(group)?;
    }
    let endpoint = node.start()?;
    log::info!(
        "p2pmon: {} (uuid {}) watching, in groups [{}], mailbox {endpoint}, {discovery}",
        word(node.name()),
        hex(&node.uuid()),
        args.groups
            .iter()
            .map(|g| word(g))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let every = Duration::from_millis(args.every_ms).max(Duration::from_millis(10));
    let mut monitor = Monitor {
        node: &node,
        shouts: 0,
        whispers: 0,
        since: Instant::now(),
    };
    let mut status_at = Instant::now() + every;
    loop {
        let wait = status_at.saturating_duration_since(Instant::now());
        match node.recv_timeout(wait) {
            Ok(Some(Event::Stop)) => return Ok(()),
            Ok(Some(event)) => monitor.show(event),
            Ok(None) => {}
            // Ctrl-C/SIGTERM: the node's thread has stopped by itself and
            // said goodbye.
            Err(Error::Interrupted) => return Ok(()),
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        if now >= status_at {
            match monitor.status(now) {
                Err(Error::Interrupted) => return Ok(()),
                other => other?,
            }
            status_at = now + every;
        }
    }
}

struct Monitor<'a> {
    node: &'a Node,
    /// SHOUTs and WHISPERs received since `since`.
    shouts: u64,
    whispers: u64,
    since: Instant,
}

impl Monitor<'_> {
    /// One event as one line; see the module docs.
    fn show(&mut self, event: Event) {
        let size = |content: &[Vec<u8>]| content.iter().map(Vec::len).sum::<usize>();
        match event {
            Event::Enter {
                peer,
                name,
                headers,
                address,
            } => {
                let mut line = format!("ENTER {} {} {}", hex(&peer), word(&name), word(&address));
                for (key, value) in headers.iter().take(16) {
                    line.push_str(&format!(" {}={}", word(key), word(value)));
                }
                if headers.len() > 16 {
                    line.push_str(&format!(" (+{} headers)", headers.len() - 16));
                }
                say!("{line}");
            }
            Event::Join { peer, name, group } => {
                say!("JOIN {} {} {}", hex(&peer), word(&name), word(&group))
            }
            Event::Leave { peer, name, group } => {
                say!("LEAVE {} {} {}", hex(&peer), word(&name), word(&group))
            }
            Event::Shout {
                peer,
                name,
                group,
                content,
            } => {
                self.shouts += 1;
                say!(
                    "SHOUT {} {} {} {} bytes {} frames",
                    hex(&peer),
                    word(&name),
                    word(&group),
                    size(&content),
                    content.len()
                );
            }
            Event::Whisper {
                peer,
                name,
                content,
            } => {
                self.whispers += 1;
                say!(
                    "WHISPER {} {} {} bytes {} frames",
                    hex(&peer),
                    word(&name),
                    size(&content),
                    content.len()
                );
            }
            Event::Evasive { peer, name } => say!("EVASIVE {} {}", hex(&peer), word(&name)),
            Event::Silent { peer, name } => say!("SILENT {} {}", hex(&peer), word(&name)),
            Event::Exit { peer, name } => say!("EXIT {} {}", hex(&peer), word(&name)),
            Event::Leader { group, peer, name } => {
                say!("LEADER {} {} {}", word(&group), word(&name), hex(&peer))
            }
            Event::Stop => {}
        }
    }

    /// The status block; see the module docs.
    fn status(&mut self, now: Instant) -> Result<(), Error> {
        let node = self.node;
        // Every peer that entered, with what it told us.
        let mut peers = Vec::new();
        for uuid in node.peers()? {
            if let Some(info) = node.peer_info(&uuid)? {
                peers.push((uuid, info));
            }
        }
        // Members of each group, ours included.
        let own = node.own_groups()?;
        let mut groups: BTreeMap<String, Vec<(Uuid, String)>> = BTreeMap::new();
        for (uuid, info) in &peers {
            for group in &info.groups {
                groups
                    .entry(group.clone())
                    .or_default()
                    .push((*uuid, info.name.clone()));
            }
        }
        for group in &own {
            groups
                .entry(group.clone())
                .or_default()
                .push((node.uuid(), node.name().to_string()));
        }
        let seconds = now.duration_since(self.since).as_secs_f64().max(1e-3);
        let mut block = format!(
            "STATUS {} peers {} groups | SHOUT {:.1}/s WHISPER {:.1}/s over {seconds:.1} s\n",
            peers.len(),
            groups.len(),
            self.shouts as f64 / seconds,
            self.whispers as f64 / seconds
        );
        for (uuid, info) in &peers {
            let list: Vec<String> = info.groups.iter().map(|g| word(g)).collect();
            block.push_str(&format!(
                "PEER {} {} {} groups {}\n",
                hex(uuid),
                word(&info.name),
                word(&info.address),
                if list.is_empty() {
                    "-".to_string()
                } else {
                    list.join(",")
                }
            ));
        }
        for (group, mut members) in groups {
            members.sort();
            // Ours if we are in it; else the same rule over what we see.
            let leader = if own.contains(&group) {
                node.leader(&group)?
            } else {
                members.first().map(|(uuid, _)| *uuid)
            };
            let mediator = leader
                .and_then(|l| members.iter().find(|(uuid, _)| *uuid == l))
                .map_or("- -".to_string(), |(uuid, name)| {
                    format!("{} {}", word(name), hex(uuid))
                });
            let mut names: Vec<String> = members.iter().map(|(_, n)| word(n)).collect();
            names.sort();
            block.push_str(&format!(
                "GROUP {} members {} [{}] mediator {mediator}\n",
                word(&group),
                members.len(),
                names.join(" ")
            ));
        }
        block.push_str("END");
        say!("{block}");
        self.shouts = 0;
        self.whispers = 0;
        self.since = now;
        Ok(())
    }
}
