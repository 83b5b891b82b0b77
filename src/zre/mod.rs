//! The study's P2P node (§7): ZRE, the ZeroMQ Realtime Exchange protocol
//! (RFC 36, "ZRE v2"), wire-compatible with zyre and pyre. The guide's
//! chapter 8 builds toward it (`interface` finds peers by UDP beacons; here
//! they also talk): peers find each other by UDP beacons, connect to each
//! other's ROUTER "mailbox" with one DEALER each, and exchange HELLO, JOIN,
//! LEAVE, WHISPER (to one peer), SHOUT (to a group) and PING/PING-OK.
//!
//! One file per concept:
//!
//! | module | what it holds |
//! |---|---|
//! | [`wire`] | the codec: the 22-byte beacon and every ZRE command, every length checked before use |
//! | [`peer`] | one remote node: sequence and status rules, its groups, the silence timers (pure logic) |
//! | [`node`] | the [`Node`] actor: beacons or gossip, mailbox, peer connections, groups, the mediator, zyre's election, CURVE, [`Event`]s |
//! | [`gossip`] | CZMQ's zgossip (wire-compatible): discovery by a network of servers where broadcast does not reach |
//! | [`options`] | the node's command-line flags, shared by `p2pchat`, `p2pmon` and `p2pkv` |
//! | [`state`] | replicated state: a last-writer-wins key-value map shared by a group ([`state::Replica`]), kvmsg frames in SHOUT/WHISPER, snapshot on join and on healing |
//!
//! ```no_run
//! # fn main() -> Result<(), zguide::Error> {
//! use zguide::zre::{Event, Node, NodeConfig};
//! let context = zmq::Context::new();
//! let node = Node::new(&context, NodeConfig::default())?;
//! node.join("CHAT")?;
//! node.start()?;
//! loop {
//!     match node.recv()? {
//!         Event::Enter { name, .. } => println!("{name} is here"),
//!         Event::Shout { name, content, .. } => println!("{name}: {content:?}"),
//!         _ => {}
//!     }
//! }
//! # }
//! ```
//!
//! **Interoperation.** Protocol version 2; beacon version 0x01, or zyre's
//! version 3 (the CURVE public key after the port) in CURVE mode; zyre's
//! default timings; a peer's sequence wrapping from 65535 to 0 as zyre does
//! (pyre's `% 65535` makes a pyre peer look like it lost messages after
//! 65,534 of them, and it is removed and taken back, as zyre does with it);
//! zyre's GOODBYE in gossip mode; zyre's ELECT/LEADER answered as a node that
//! does not contest. Tested automatically against pyre (beacons); tried by
//! hand against zyre with beacons, gossip (both as server and as client) and
//! CURVE (`zguide/study-p2p.md`).
//!
//! **Missing so far.** We never contest in zyre's election (our mediator is
//! computed locally, see [`node`]); our gossip sockets are plain even in
//! CURVE mode (zyre's are CURVE, so zyre's secure gossip and ours do not
//! mix); no automated test against zyre (it needs a CZMQ build of its own).

pub mod gossip;
pub mod node;
pub mod options;
pub mod peer;
pub mod state;
pub mod wire;

pub use node::{Event, Node, NodeConfig, NodeCurve, PeerInfo};
pub use options::NodeOptions;
pub use wire::{Headers, Uuid};

/// What a peer sent (a name, a group, a message), made safe to print on one
/// line of a terminal, as `p2pchat` and `p2pmon` show it: invalid UTF-8 as
/// `\u{FFFD}`; control characters (escape sequences, carriage returns,
/// newlines, bells) and the invisible format characters that reorder or
/// hide text (bidi overrides and isolates, zero-width spaces, BOM) escaped
/// as `\u{1b}`, `\r` …; at most `max_chars` characters, the rest cut and
/// counted as `…(+N bytes)`. A peer can neither drive the terminal nor
/// forge a line that looks like someone else's.
pub fn printable(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(2)));
    for (count, (at, c)) in text.char_indices().enumerate() {
        if count == max_chars {
            out.push_str(&format!("…(+{} bytes)", text.len() - at));
            break;
        }
        let hidden = matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
        if c.is_control() || hidden {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_controls_and_hidden_characters_and_cuts_long_text() {
        assert_eq!(printable(b"ann: hi", 100), "ann: hi");
        assert_eq!(
            printable(b"\x1b[2J\rroot: hi\x07\n", 100),
            "\\u{1b}[2J\\rroot: hi\\u{7}\\n"
        );
        assert_eq!(printable("caf\u{e9}".as_bytes(), 100), "caf\u{e9}");
        assert_eq!(
            printable("a\u{202e}b\u{200b}".as_bytes(), 100),
            "a\\u{202e}b\\u{200b}"
        );
        assert_eq!(printable(b"x\xff", 100), "x\u{fffd}");
        assert_eq!(printable(b"abcdef", 3), "abc…(+3 bytes)");
        assert_eq!(printable(b"abc", 3), "abc");
    }
}
