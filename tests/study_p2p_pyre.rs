//! Interoperability of the study's ZRE node with pyre, the Python ZRE v2
//! implementation of the ZeroMQ project (`zeromq-pyre` on PyPI), as real
//! processes on two simulated hosts (`tests/common/network.rs`; pyre will not
//! run on loopback alone: it wants an interface with a broadcast address):
//! `p2pchat` on one, `tests/pyre/node.py` (a pyre node that prints its
//! events and obeys commands on stdin) on the other.
//!
//! The Python side runs from the virtual environment `make majortomo-venv`
//! creates (`target/majortomo-venv`, pinned by
//! `tests/majortomo/requirements.txt`, which lists pyre too). Without it
//! this test fails, unless `ZGUIDE_SKIP_MAJORTOMO=1`, which skips it with a
//! printed reason. Every wait is bounded and syncs on printed lines.

mod common;
use common::network::{Network, BROADCAST};
use common::{secs, Pid, Scenario};

use std::path::{Path, PathBuf};

/// The virtual environment's python, or `None` (after saying why) when the
/// test is to be skipped; panics when the venv is missing and skipping was
/// not asked for.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/majortomo-venv/bin/python");
    let skip = std::env::var("ZGUIDE_SKIP_MAJORTOMO").as_deref() == Ok("1");
    let problem = if !python.exists() {
        format!("{} does not exist", python.display())
    } else {
        match std::process::Command::new(&python)
            .args(["-c", "import pyre"])
            .output()
        {
            Ok(out) if out.status.success() => return Some(python),
            Ok(out) => format!(
                "{} cannot import pyre: {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("cannot run {}: {e}", python.display()),
        }
    };
    if skip {
        eprintln!("pyre interoperability test skipped (ZGUIDE_SKIP_MAJORTOMO=1): {problem}");
        return None;
    }
    panic!(
        "{problem}. Run `make majortomo-venv` (it creates target/majortomo-venv from \
         tests/majortomo/requirements.txt), or set ZGUIDE_SKIP_MAJORTOMO=1 to skip this test."
    );
}

/// How many lines of `pid`'s output equal `line`.
fn exact(sc: &Scenario, pid: Pid, line: &str) -> usize {
    sc.lines(pid).iter().filter(|l| *l == line).count()
}

/// Our `p2pchat` and a pyre node on two hosts: each sees the other enter
/// (pyre with our header) and join; SHOUT and WHISPER go both ways, each
/// received once; pyre's stop is seen as an EXIT at once (its goodbye, not
/// the expiry), and ours by pyre. Broken on purpose: with our WHISPER's
/// command id wrong (11 instead of 2), pyre drops it and the test fails
/// waiting for `WHISPER rusty psst`.
#[test]
fn p2pchat_and_a_pyre_node_enter_join_shout_whisper_and_exit() {
    let Some(python) = python() else { return };
    let python = python.display().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/pyre/node.py")
        .display()
        .to_string();
    let mut net = Network::new("p2p-pyre", 2);
    let ours = net.host(0).start(
        "rusty",
        env!("CARGO_BIN_EXE_p2pchat"),
        &[
            "--name",
            "rusty",
            "--broadcast",
            BROADCAST,
            "--header",
            "X-ROLE=rust-test",
        ],
    );
    net.host(0).expect(ours, "I: p2pchat: rusty", secs(10));
    let pyre = net
        .host(1)
        .start("pyro", &python, &["-u", &script, "pyro", "CHAT"]);
    net.host(1).expect(pyre, "ready ", secs(30));

    // Discovery both ways, with our header and the group.
    net.host(1).expect(pyre, "ENTER rusty rust-test", secs(15));
    net.host(1).expect(pyre, "JOIN rusty CHAT", secs(15));
    net.host(0)
        .expect(ours, "* pyro entered from tcp://10.99.0.2:", secs(15));
    net.host(0).expect(ours, "* pyro joined CHAT", secs(15));

    // Ours to pyre: a SHOUT and a WHISPER.
    net.host(0).write_stdin(ours, "hello pyro\n");
    net.host(1)
        .expect(pyre, "SHOUT rusty CHAT hello pyro", secs(10));
    net.host(0).write_stdin(ours, "/w pyro psst\n");
    net.host(1).expect(pyre, "WHISPER rusty psst", secs(10));

    // Pyre to ours.
    net.host(1).write_stdin(pyre, "shout hi from pyre\n");
    net.host(0).expect(ours, "pyro: hi from pyre", secs(10));
    net.host(1).write_stdin(pyre, "whisper rusty secret\n");
    net.host(0).expect(ours, "pyro (whisper): secret", secs(10));
    // Once each (a marker after them proves nothing more is in flight).
    net.host(1).write_stdin(pyre, "shout marker\n");
    net.host(0).expect(ours, "pyro: marker", secs(10));
    assert_eq!(exact(net.host(0), ours, "pyro: hi from pyre"), 1);
    assert_eq!(exact(net.host(0), ours, "pyro (whisper): secret"), 1);
    assert_eq!(exact(net.host(1), pyre, "SHOUT rusty CHAT hello pyro"), 1);
    assert_eq!(exact(net.host(1), pyre, "WHISPER rusty psst"), 1);

    // Pyre stops: its goodbye beacon makes it exit here at once (the expiry
    // would take 30 s).
    net.host(1).write_stdin(pyre, "quit\n");
    net.host(1).expect(pyre, "stopped", secs(15));
    net.host(0).expect(ours, "* pyro exited", secs(8));
    assert_eq!(net.host(1).wait_exit(pyre, secs(15)), 0);

    // A second pyre node sees ours stop (our goodbye) at once.
    let again = net
        .host(1)
        .start("pyro2", &python, &["-u", &script, "pyro2", "CHAT"]);
    net.host(1).expect(again, "JOIN rusty CHAT", secs(30));
    net.host(0).close_stdin(ours);
    net.host(1).expect(again, "EXIT rusty", secs(8));
    assert_eq!(net.host(0).wait_exit(ours, secs(15)), 0);
    net.host(1).write_stdin(again, "quit\n");
    assert_eq!(net.host(1).wait_exit(again, secs(15)), 0);
}
