//! Study part 5, replicated state (`zguide::zre::state`, `p2pkv`): real
//! `p2pkv` processes on the simulated LAN of `tests/common/network.rs` (one
//! network namespace per host, a bridge, broadcast [`BROADCAST`]). Nodes
//! are compared by the digest their `dump` prints; every wait is bounded and
//! syncs on printed lines (the pauses between two rounds of `dump` only pace
//! the polling).

mod common;
use common::network::{Network, BROADCAST};
use common::{ms, secs, Pid};

use std::time::{Duration, Instant};

use zguide::zre::state::{KvMessage, Update, Version, KVEND};
use zguide::zre::{Event, Node, NodeConfig};

/// Short timers: beacons every 250 ms, PING after 1 s, gone after 2.5 s; a
/// joiner waits 1 s for a first update before asking for a snapshot.
const TIMERS: [&str; 10] = [
    "--interval-ms",
    "250",
    "--evasive-ms",
    "1000",
    "--expired-ms",
    "2500",
    "--settle-ms",
    "1000",
    "--request-ms",
    "2000",
];

fn start(net: &mut Network, host: usize, name: &str) -> Pid {
    start_with(net, host, name, &TIMERS)
}

fn start_with(net: &mut Network, host: usize, name: &str, timers: &[&str]) -> Pid {
    let mut args = vec!["--name", name, "--broadcast", BROADCAST];
    args.extend(timers);
    net.host(host).start(name, bin!("p2pkv"), &args)
}

/// Types `line` on a node.
fn type_line(net: &mut Network, host: usize, pid: Pid, line: &str) {
    net.host(host).write_stdin(pid, &format!("{line}\n"));
}

/// Asks a node for a `dump` and returns its entries and digest.
fn dump(net: &mut Network, host: usize, pid: Pid) -> (Vec<String>, String) {
    let before = net.host(host).count(pid, "dump: ");
    type_line(net, host, pid, "dump");
    net.host(host)
        .expect_count(pid, "dump: ", before + 1, secs(10));
    let lines = net.host(host).lines(pid);
    let end = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("dump: "))
        .nth(before)
        .map(|(i, _)| i)
        .expect("the dump line");
    // The entries are the lines just before it that look like KEY=VALUE.
    let entries: Vec<String> = lines[..end]
        .iter()
        .rev()
        .take_while(|l| l.starts_with('/') && l.contains('='))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let digest = lines[end]
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    (entries, digest)
}

/// Dumps every node in `nodes` until all show exactly `want` (KEY=VALUE
/// lines, sorted) with one digest; returns the digest and how long it took.
fn until_converged(
    net: &mut Network,
    nodes: &[(usize, Pid)],
    want: &[&str],
    timeout: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let dumps: Vec<(Vec<String>, String)> =
            nodes.iter().map(|&(h, p)| dump(net, h, p)).collect();
        let same = dumps.iter().all(|d| d.1 == dumps[0].1);
        if same && dumps.iter().all(|(entries, _)| entries == want) {
            return (dumps[0].1.clone(), started.elapsed());
        }
        if Instant::now() > deadline {
            panic!(
                "no convergence on {want:?} within {timeout:?}: {dumps:?}\n{}",
                net.report()
            );
        }
        std::thread::sleep(ms(100));
    }
}

/// Dumps every node until all hold `keys` keys with one digest.
fn until_agreed(net: &mut Network, nodes: &[(usize, Pid)], keys: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let dumps: Vec<(Vec<String>, String)> =
            nodes.iter().map(|&(h, p)| dump(net, h, p)).collect();
        if dumps.iter().all(|d| d.1 == dumps[0].1 && d.0.len() == keys) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "no agreement within {timeout:?}: {dumps:?}\n{}",
                net.report()
            );
        }
        std::thread::sleep(ms(100));
    }
}

/// Waits until `pid` on `host` printed a line equal to `line`.
fn until_line(net: &mut Network, host: usize, pid: Pid, line: &str, timeout: Duration) {
    let want = line.to_string();
    net.host(host).wait_for(pid, timeout, line, move |text| {
        text.lines().any(|l| l == want)
    });
}

/// Waits until `pid` on `host` printed a line that starts with `prefix`
/// (an update may come from its writer or in another node's push).
fn until_prefix(net: &mut Network, host: usize, pid: Pid, prefix: &str, timeout: Duration) {
    let want = prefix.to_string();
    net.host(host).wait_for(pid, timeout, prefix, move |text| {
        text.lines().any(|l| l.starts_with(&want))
    });
}

#[test]
fn three_hosts_converge_and_late_joiners_get_the_map_or_their_subtree_by_snapshot() {
    let mut net = Network::new("p2pkv-three", 5);
    let names = ["ann", "bob", "cid"];
    let nodes: Vec<(usize, Pid)> = (0..3).map(|h| (h, start(&mut net, h, names[h]))).collect();
    // Writes at once, before the nodes have found each other: their shouts
    // reach nobody, so only the pushes on JOIN can spread them.
    for &(h, pid) in &nodes {
        type_line(
            &mut net,
            h,
            pid,
            &format!("set /{}/a {} was here", names[h], names[h]),
        );
        type_line(
            &mut net,
            h,
            pid,
            &format!("set /shared/x first-{}", names[h]),
        );
    }
    // Once they all see each other, writes travel by SHOUT.
    for &(h, pid) in &nodes {
        for other in names.iter().filter(|n| **n != names[h]) {
            until_line(&mut net, h, pid, &format!("* {other} joined KV"), secs(10));
        }
    }
    // The three first writes to /shared/x are concurrent (a node that read
    // its stdin after the others' pushes gives its write a higher clock:
    // seen in CI), and whichever wins must have reached cid before it
    // writes again, or its "last" is concurrent too and may lose. The
    // values differ, so one digest everywhere means one version everywhere.
    until_agreed(&mut net, &nodes, 4, secs(20));
    type_line(&mut net, 1, nodes[1].1, "set /bob/b two words");
    type_line(&mut net, 2, nodes[2].1, "set /shared/x last");
    type_line(&mut net, 0, nodes[0].1, "set /ann/gone soon");
    until_prefix(
        &mut net,
        2,
        nodes[2].1,
        "update /ann/gone=soon from ",
        secs(10),
    );
    type_line(&mut net, 2, nodes[2].1, "del /ann/gone");
    let want = [
        "/ann/a=ann was here",
        "/bob/a=bob was here",
        "/bob/b=two words",
        "/cid/a=cid was here",
        "/shared/x=last",
    ];
    let (digest, took) = until_converged(&mut net, &nodes, &want, secs(20));
    eprintln!("three nodes converged {took:?} after the last write");
    for &(h, pid) in &nodes {
        type_line(&mut net, h, pid, "get /shared/x");
        until_line(&mut net, h, pid, "/shared/x=last", secs(5));
    }

    // A late joiner: subscribes, waits, asks the mediator, gets 5 keys (and
    // the tombstone) by snapshot.
    let started = Instant::now();
    // It waits 2 s for a first update (nobody writes): time to have found
    // the others, so that there is somebody to ask.
    let mut timers = TIMERS;
    timers[7] = "2000";
    let dan = start_with(&mut net, 3, "dan", &timers);
    net.host(3).expect(dan, "synced: 5 keys from ", secs(15));
    let mut all = nodes.clone();
    all.push((3, dan));
    let (late, took_late) = until_converged(&mut net, &all, &want, secs(20));
    assert_eq!(late, digest);
    eprintln!(
        "the late joiner converged {:?} after its start (dump polled {took_late:?})",
        started.elapsed()
    );
    let synced = net.host(3).lines(dan);
    let line = synced.iter().find(|l| l.starts_with("synced: ")).unwrap();
    assert!(
        line.contains("(snapshot 6,"),
        "5 keys and one tombstone: {line}"
    );

    // A subtree replica (clonecli's SUBTREE): only /bob/, by snapshot and
    // by the pushes, then by SHOUT; writes outside it are refused.
    let mut args = vec!["--subtree", "/bob/"];
    args.extend(timers);
    let eve = start_with(&mut net, 4, "eve", &args);
    net.host(4).expect(eve, "synced: 2 keys from ", secs(15));
    type_line(&mut net, 1, nodes[1].1, "set /bob/c three");
    type_line(&mut net, 1, nodes[1].1, "set /ann/b not for eve");
    until_prefix(&mut net, 4, eve, "update /bob/c=three from ", secs(10));
    type_line(&mut net, 4, eve, "set /ann/c no");
    net.host(4).expect(
        eve,
        "error: protocol error: key outside our subtree",
        secs(5),
    );
    let (entries, _) = dump(&mut net, 4, eve);
    assert_eq!(
        entries,
        ["/bob/a=bob was here", "/bob/b=two words", "/bob/c=three"]
    );
    all.push((4, eve));

    for (h, pid) in all {
        net.host(h).close_stdin(pid);
        assert_eq!(net.host(h).wait_exit(pid, secs(10)), 0, "end of input");
    }
}

#[test]
fn two_halves_of_a_partition_converge_after_healing() {
    let mut net = Network::new("p2pkv-split", 3);
    let names = ["ann", "bob", "cid"];
    let nodes: Vec<(usize, Pid)> = (0..3).map(|h| (h, start(&mut net, h, names[h]))).collect();
    for &(h, pid) in &nodes {
        for other in names.iter().filter(|n| **n != names[h]) {
            until_line(&mut net, h, pid, &format!("* {other} joined KV"), secs(10));
        }
    }
    type_line(&mut net, 0, nodes[0].1, "set /before/1 one");
    type_line(&mut net, 0, nodes[0].1, "set /before/2 two");
    let before = ["/before/1=one", "/before/2=two"];
    until_converged(&mut net, &nodes, &before, secs(10));

    // Cut cid off and wait until both sides have declared the other gone,
    // so nothing queued in TCP can carry writes across the cut.
    net.unplug(2);
    for (h, gone) in [(0, "cid"), (1, "cid"), (2, "ann"), (2, "bob")] {
        let pid = nodes[h].1;
        until_line(&mut net, h, pid, &format!("* {gone} exited"), secs(15));
    }
    // Each side writes: its own keys, the same key (a conflict), a delete.
    type_line(&mut net, 0, nodes[0].1, "set /left/a from the left");
    type_line(&mut net, 1, nodes[1].1, "set /conflict bob says");
    type_line(&mut net, 1, nodes[1].1, "set /conflict bob says again");
    type_line(&mut net, 1, nodes[1].1, "set /conflict bob says last");
    type_line(&mut net, 2, nodes[2].1, "set /right/a from the right");
    type_line(&mut net, 2, nodes[2].1, "set /conflict cid says");
    type_line(&mut net, 2, nodes[2].1, "del /before/1");
    let left = [
        "/before/1=one",
        "/before/2=two",
        "/conflict=bob says last",
        "/left/a=from the left",
    ];
    until_converged(&mut net, &nodes[..2], &left, secs(10));
    let (right, _) = dump(&mut net, 2, nodes[2].1);
    assert_eq!(
        right,
        [
            "/before/2=two",
            "/conflict=cid says",
            "/right/a=from the right"
        ]
    );

    let healed_at = Instant::now();
    net.plug(2);
    // Every node's clock was 2 at the cut. Bob wrote /conflict three times
    // (clocks 3 to 5 at least), cid once, after /right/a (clock 4): the
    // higher Lamport clock wins everywhere.
    let want = [
        "/before/2=two",
        "/conflict=bob says last",
        "/left/a=from the left",
        "/right/a=from the right",
    ];
    let (_, polled) = until_converged(&mut net, &nodes, &want, secs(30));
    eprintln!(
        "the halves converged {:?} after the cable went back in (dump polled {polled:?})",
        healed_at.elapsed()
    );
    // The three ways out all exit 0: Ctrl-C, SIGTERM, end of input.
    net.host(0).stop_cleanly(nodes[0].1, secs(10));
    net.host(1)
        .stop_cleanly_with(nodes[1].1, libc::SIGTERM, secs(10));
    net.host(2).close_stdin(nodes[2].1);
    assert_eq!(
        net.host(2).wait_exit(nodes[2].1, secs(10)),
        0,
        "end of input"
    );
}

#[test]
fn garbage_from_a_raw_zre_peer_is_dropped_and_the_map_goes_on() {
    let mut net = Network::new("p2pkv-hostile", 1);
    let kv = start(&mut net, 0, "kv");
    net.host(0).expect(kv, "p2pkv: kv (uuid ", secs(10));
    // A ZRE node of our own in the same namespace plays the hostile peer:
    // the frames are valid ZRE, the content is not valid replication.
    let probe = net.host(0).in_namespace(move || {
        let context = zmq::Context::new();
        let config = NodeConfig {
            name: Some("evil".into()),
            broadcast: BROADCAST.parse().unwrap(),
            interval: Duration::from_millis(250),
            ..NodeConfig::default()
        };
        let node = Node::new(&context, config).unwrap();
        node.join("KV").unwrap();
        node.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let kv = loop {
            assert!(Instant::now() < deadline, "p2pkv never joined KV");
            if let Some(Event::Join { peer, group, .. }) =
                node.recv_timeout(Duration::from_millis(100)).unwrap()
            {
                if group == "KV" {
                    break peer;
                }
            }
        };
        let f = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
        let seq = 5i64.to_be_bytes();
        let garbage: Vec<Vec<Vec<u8>>> = vec![
            vec![],
            f(&[b"KVPUB"]),
            f(&[b"KVPUB", b"/k", &seq, &[1; 16], b"", b"v", b"extra"]),
            f(&[b"KVPUB", b"/k", &seq[..7], &[1; 16], b"", b"v"]),
            f(&[b"KVPUB", b"no-slash", &seq, &[1; 16], b"", b"v"]),
            f(&[b"KVPUB", b"/k", &(-1i64).to_be_bytes(), &[1; 16], b"", b"v"]),
            f(&[
                b"KVPUB",
                b"/k",
                &i64::MAX.to_be_bytes(),
                &[1; 16],
                b"",
                b"v",
            ]),
            f(&[b"KVPUB", b"/k", &seq, b"", b"", b"v"]),
            f(&[b"KVPUB", b"/k", &seq, &[1; 16], b"no-lf", b"v"]),
            f(&[b"KVPUB", b"/\x1b[2J", &seq, &[1; 16], b"", b"v"]),
            f(&[b"KVGET", b"KV", b"/"]),
            f(&[b"KVSNAP", b"KV", b"/", b"/k"]),
            f(&[b"KVEND", b"KV", b"/", b"lots"]),
            f(&[b"\xff\xfe", b"\x00"]),
        ];
        for content in &garbage {
            node.shout("KV", content.clone()).unwrap();
            node.whisper(&kv, content.clone()).unwrap();
        }
        // Then a good update, and a snapshot request, answered in kvmsgs.
        let update = Update {
            key: "/h/ok".into(),
            version: Version {
                clock: 7,
                origin: node.uuid(),
            },
            value: b"fine".to_vec(),
        };
        node.shout("KV", KvMessage::Pub(update.clone()).encode())
            .unwrap();
        // p2pkv, still joining, asks us (the only member) for a snapshot:
        // we answer with an empty one, and then ask for its /h/ subtree
        // (not within 500 ms of the garbage KVGET, which was answered). If
        // it does not ask (it had finished joining alone), we ask anyway.
        let garbage_at = Instant::now();
        let ask_at = garbage_at + Duration::from_secs(3);
        let get = KvMessage::Get {
            group: "KV".into(),
            subtree: "/h/".into(),
        };
        let mut asked = false;
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        let count = loop {
            assert!(Instant::now() < deadline, "no KVEND: {got:?}");
            if !asked && Instant::now() >= ask_at {
                node.whisper(&kv, get.encode()).unwrap();
                asked = true;
            }
            let Some(Event::Whisper { content, .. }) =
                node.recv_timeout(Duration::from_millis(100)).unwrap()
            else {
                continue;
            };
            match KvMessage::decode(&content).unwrap() {
                KvMessage::Get { group, subtree } => {
                    let end = KvMessage::End {
                        group,
                        subtree,
                        count: 0,
                    };
                    node.whisper(&kv, end.encode()).unwrap();
                    if !asked {
                        let wait = (garbage_at + Duration::from_millis(600))
                            .saturating_duration_since(Instant::now());
                        std::thread::sleep(wait);
                        node.whisper(&kv, get.encode()).unwrap();
                        asked = true;
                    }
                }
                KvMessage::Snap { updates, .. } if asked => got.extend(updates),
                KvMessage::End { subtree, count, .. } if asked && subtree == "/h/" => {
                    assert_eq!(content[0], KVEND);
                    break count;
                }
                // The push when we joined (empty), the answer to the
                // garbage KVGET.
                _ => {}
            }
        };
        (got, count, update)
    });
    let (got, count, update) = probe;
    assert_eq!((got, count), (vec![update], 1));
    net.host(0)
        .expect(kv, "update /h/ok=fine from evil", secs(10));
    net.host(0).assert_running(kv);
    let (entries, _) = dump(&mut net, 0, kv);
    assert_eq!(entries, ["/h/ok=fine"]);
    let output = net.host(0).output(kv);
    assert!(!output.contains('\x1b'), "{output:?}");
    net.host(0).close_stdin(kv);
    assert_eq!(net.host(0).wait_exit(kv, secs(10)), 0, "end of input");
}

#[test]
fn help_lists_the_flags_and_a_bad_command_line_exits_64() {
    let help = std::process::Command::new(bin!("p2pkv"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--name",
        "--group",
        "--subtree",
        "--port",
        "--broadcast",
        "--interface",
        "--evasive-ms",
        "--expired-ms",
        "[default: KV]",
        "[default: 5670]",
        "[default: 127.255.255.255]",
    ] {
        assert!(text.contains(flag), "{flag} in {text}");
    }
    let bad = std::process::Command::new(bin!("p2pkv"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    let bad = std::process::Command::new(bin!("p2pkv"))
        .args(["--subtree", "no-slash", "--port", "1"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "a bad subtree cannot start");
}
