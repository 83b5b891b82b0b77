//! Study part 5, the P2P node (`zguide::zre`, ZRE v2): `p2pchat` and
//! `p2pmon` as real processes, on the simulated LAN of
//! `tests/common/network.rs` (one network namespace per host, a bridge
//! between them, broadcast [`BROADCAST`]) and on one machine's loopback;
//! and raw-wire probes that build ZRE beacons and messages by hand with
//! `zguide::zre::wire`. Every wait is bounded and syncs on printed lines.

mod common;
use common::network::{Network, BROADCAST};
use common::{secs, Pid, Scenario};

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use zguide::zre::wire::{self, Command};

/// Short silence timers for the LAN tests: PING after 1 s, gone after 3 s.
const EVASIVE_MS: &str = "1000";
const EXPIRED_MS: &str = "3000";

/// A running `p2pchat` and what it said about itself when it started.
struct Chat {
    pid: Pid,
    name: String,
    /// 32 uppercase hex digits.
    uuid: String,
    /// `tcp://<ip>:<port>`.
    mailbox: String,
}

/// Waits for the `I: p2pchat: NAME (uuid U) in G, mailbox M, …` line of
/// `pid` (the one after its cursor) and returns the uuid and the mailbox.
fn identity(sc: &mut Scenario, pid: Pid, what: &str) -> (String, String) {
    let line = sc.expect(pid, &format!("I: {what}: "), secs(10));
    let uuid = line
        .split("(uuid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| sc.fail(&format!("no uuid in {line:?}")))
        .to_string();
    let mailbox = line
        .split("mailbox ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .unwrap_or_else(|| sc.fail(&format!("no mailbox in {line:?}")))
        .to_string();
    assert_eq!(uuid.len(), 32, "{line}");
    (uuid, mailbox)
}

/// Starts `p2pchat --name NAME extra…` in `sc` and waits until it is ready.
fn start_chat(sc: &mut Scenario, name: &str, extra: &[&str]) -> Chat {
    let mut args = vec!["--name", name];
    args.extend_from_slice(extra);
    let pid = sc.start(name, bin!("p2pchat"), &args);
    let (uuid, mailbox) = identity(sc, pid, "p2pchat");
    Chat {
        pid,
        name: name.to_string(),
        uuid,
        mailbox,
    }
}

/// The flags of a chat on the simulated LAN.
const LAN: [&str; 6] = [
    "--broadcast",
    BROADCAST,
    "--evasive-ms",
    EVASIVE_MS,
    "--expired-ms",
    EXPIRED_MS,
];

/// Waits until `pid` printed `* NAME entered` and `* NAME joined CHAT` for
/// every name in `names` (in any order, counted from its start).
fn sees_all(sc: &mut Scenario, pid: Pid, names: &[&str], times: usize, timeout: Duration) {
    for name in names {
        sc.expect_count(
            pid,
            &format!("* {name} entered from tcp://"),
            times,
            timeout,
        );
        sc.expect_count(pid, &format!("* {name} joined CHAT"), times, timeout);
    }
}

/// How many lines of `pid`'s output equal `line` exactly.
fn exact(sc: &Scenario, pid: Pid, line: &str) -> usize {
    sc.lines(pid).iter().filter(|l| *l == line).count()
}

/// Waits until `pid` printed the line `line` exactly (at least once).
fn until_line(sc: &Scenario, pid: Pid, line: &str, timeout: Duration) {
    sc.wait_for(pid, timeout, &format!("the line {line:?}"), |text| {
        text.lines().any(|l| l == line)
    });
}

/// The name in the last `* NAME is the mediator of CHAT` line, if any.
fn last_mediator(text: &str) -> Option<&str> {
    text.lines().rev().find_map(|l| {
        l.strip_prefix("* ")?
            .strip_suffix(" is the mediator of CHAT")
    })
}

// ---------------------------------------------------------------------------
// Gossip across two LANs

/// Gossip mode where broadcast does not reach: two LANs joined by a router
/// (`Network::two_lans`). LAN A: ann runs the seed gossip server, bob is its
/// client; LAN B: carl runs a second server and is himself a client of
/// ann's, dave is carl's client, so what dave publishes reaches ann's LAN
/// through two servers. All four see the other three enter and join; a
/// line dave types arrives exactly once everywhere. Beside them, two
/// beacon-mode chats on LAN A (10 beacons a second) find each other while a
/// third on LAN B hears no one: beacons stay in their LAN. bob, SIGKILLed and
/// restarted (a new UUID), is found again through the gossip; dave, stopped
/// with Ctrl-C, says GOODBYE and is seen to exit at once, far below the 60 s
/// expiry these chats are given.
#[test]
fn gossip_mode_meshes_two_lans_that_broadcast_does_not_join() {
    let mut net = Network::two_lans("p2p-gossip", 2, 2);
    let names = ["ann", "bob", "carl", "dave"];
    let server = |h: usize| format!("tcp://{}:5671", net.address(h));
    let (ann_server, carl_server) = (server(0), server(2));
    let mut chats = Vec::new();
    for (h, name) in names.iter().enumerate() {
        let interface = net.address(h);
        let mut args = vec!["--interface", interface.as_str()];
        args.extend(["--evasive-ms", "1000", "--expired-ms", "60000"]);
        match h {
            0 => args.extend(["--gossip-bind", ann_server.as_str()]),
            1 => args.extend(["--gossip-connect", ann_server.as_str()]),
            2 => args.extend([
                "--gossip-bind",
                carl_server.as_str(),
                "--gossip-connect",
                ann_server.as_str(),
            ]),
            _ => args.extend(["--gossip-connect", carl_server.as_str()]),
        }
        let chat = start_chat(net.host(h), name, &args);
        assert!(
            chat.mailbox.starts_with(&format!("tcp://{interface}:")),
            "{name}: mailbox on {interface}: {}",
            chat.mailbox
        );
        chats.push(chat);
    }
    let lines = net.host(0).lines(chats[0].pid);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("gossip (server {ann_server})"))),
        "ann says how it finds peers: {lines:?}"
    );

    // Beacon-mode chats, group BEACON, beaconing ten times a second.
    let beacon_chat = |net: &mut Network, h: usize, name: &str| {
        let broadcast = net.broadcast(h);
        let args = [
            "--group",
            "BEACON",
            "--broadcast",
            broadcast.as_str(),
            "--interval-ms",
            "100",
        ];
        start_chat(net.host(h), name, &args).pid
    };
    let beacon_a0 = beacon_chat(&mut net, 0, "beacon-a0");
    let beacon_a1 = beacon_chat(&mut net, 1, "beacon-a1");
    let beacon_b = beacon_chat(&mut net, 2, "beacon-b");

    for (h, chat) in chats.iter().enumerate() {
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != names[h]).collect();
        sees_all(net.host(h), chat.pid, &others, 1, secs(15));
    }
    // Counted from the start: with ten beacons a second a peer can enter
    // before the chat's own first log line, where `expect` would begin.
    net.host(0)
        .expect_count(beacon_a0, "* beacon-a1 entered from tcp://", 1, secs(10));
    net.host(1)
        .expect_count(beacon_a1, "* beacon-a0 entered from tcp://", 1, secs(10));
    // By now beacon-b would have heard dozens of LAN A beacons had they
    // crossed the router.
    assert_eq!(
        net.host(2).count(beacon_b, "entered from"),
        0,
        "beacons crossed the router\n{}",
        net.report()
    );

    // dave's line reaches LAN A through carl's and ann's servers' tuples and
    // then directly: once on every node.
    net.host(3)
        .write_stdin(chats[3].pid, "hello across\nmarker from dave\n");
    for (to, chat) in chats.iter().enumerate().take(3) {
        let pid = chat.pid;
        until_line(net.host(to), pid, "dave: marker from dave", secs(10));
        assert_eq!(
            exact(net.host(to), pid, "dave: hello across"),
            1,
            "{}",
            net.report()
        );
    }

    // bob killed and restarted: a new UUID, found again by gossip.
    net.host(1).kill(chats[1].pid);
    net.host(1).restart(chats[1].pid);
    let (uuid, _) = identity(net.host(1), chats[1].pid, "p2pchat");
    assert_ne!(uuid, chats[1].uuid);
    for h in [0, 2, 3] {
        net.host(h)
            .expect_count(chats[h].pid, "* bob entered from tcp://", 2, secs(10));
    }
    // Its buffer holds both lives: each peer entered twice.
    sees_all(
        net.host(1),
        chats[1].pid,
        &["ann", "carl", "dave"],
        2,
        secs(10),
    );

    // dave stops on Ctrl-C: GOODBYE, so the others see it go at once.
    net.host(3).interrupt(chats[3].pid);
    let stopped = Instant::now();
    assert_eq!(net.host(3).wait_exit(chats[3].pid, secs(10)), 0);
    for (h, chat) in chats.iter().enumerate().take(3) {
        net.host(h).expect(chat.pid, "* dave exited", secs(10));
    }
    assert!(
        stopped.elapsed() < secs(10),
        "GOODBYE, not the 60 s expiry: {:?}",
        stopped.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Three hosts

/// Three hosts, one `p2pchat` each: every node sees the other two enter and
/// join; a line typed on one arrives exactly once on each other node and is
/// not echoed; a whisper arrives at its target only; all three agree on
/// the mediator (the smallest UUID). SIGKILL one: the others print its exit
/// within the expiry (3 s, plus a reap interval), not before half a second
/// has passed (there is no goodbye, only silence); restarted, it enters again
/// and is heard. Then each stops cleanly (end of input, SIGTERM, SIGINT)
/// with exit 0.
#[test]
fn three_hosts_chat_exactly_once_whisper_to_one_and_a_killed_node_exits_and_comes_back() {
    let mut net = Network::new("p2p-chat3", 3);
    let names = ["ann", "bob", "carl"];
    let started = Instant::now();
    let mut chats: Vec<Chat> = (0..3)
        .map(|h| start_chat(net.host(h), names[h], &LAN))
        .collect();
    let all_up = Instant::now();
    for (h, chat) in chats.iter().enumerate() {
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != names[h]).collect();
        sees_all(net.host(h), chat.pid, &others, 1, secs(10));
        assert_eq!(
            net.host(h)
                .count(chat.pid, &format!("* {} entered", names[h])),
            0
        );
    }
    eprintln!(
        "full mesh of 3: {:?} after the last start ({:?} after the first)",
        all_up.elapsed(),
        started.elapsed()
    );
    for (h, chat) in chats.iter().enumerate() {
        assert!(
            chat.mailbox
                .starts_with(&format!("tcp://{}:", Network::address_of(h))),
            "{}: the mailbox is on eth0: {}",
            chat.name,
            chat.mailbox
        );
    }

    // Every node's line arrives once at each other node. The marker typed
    // after it comes on the same connection, so once the marker is there the
    // line cannot still be on its way: then it is counted.
    for from in 0..3 {
        let pid = chats[from].pid;
        let line = format!("hello from {} #1", names[from]);
        let marker = format!("marker from {}", names[from]);
        net.host(from)
            .write_stdin(pid, &format!("{line}\n{marker}\n"));
        for to in (0..3).filter(|&to| to != from) {
            let to_pid = chats[to].pid;
            until_line(
                net.host(to),
                to_pid,
                &format!("{}: {marker}", names[from]),
                secs(10),
            );
            assert_eq!(
                exact(net.host(to), to_pid, &format!("{}: {line}", names[from])),
                1,
                "{} heard {line:?} not exactly once\n{}",
                names[to],
                net.report()
            );
        }
        assert_eq!(
            net.host(from).count(pid, &line),
            0,
            "no echo of our own line"
        );
    }

    // A whisper reaches bob only; the SHOUT after it tells carl it is over.
    net.host(0)
        .write_stdin(chats[0].pid, "/w bob secret for bob\nafter the whisper\n");
    until_line(
        net.host(1),
        chats[1].pid,
        "ann: after the whisper",
        secs(10),
    );
    until_line(
        net.host(2),
        chats[2].pid,
        "ann: after the whisper",
        secs(10),
    );
    assert_eq!(
        exact(net.host(1), chats[1].pid, "ann (whisper): secret for bob"),
        1,
        "{}",
        net.report()
    );
    assert_eq!(
        net.host(2).count(chats[2].pid, "secret"),
        0,
        "{}",
        net.report()
    );
    assert_eq!(net.host(0).count(chats[0].pid, "secret"), 0);

    // One mediator: the smallest UUID, the same on all three.
    let expected = chats
        .iter()
        .min_by(|a, b| a.uuid.cmp(&b.uuid))
        .map(|c| c.name.clone())
        .unwrap();
    for (h, chat) in chats.iter().enumerate() {
        let want = expected.clone();
        net.host(h).wait_for(
            chat.pid,
            secs(10),
            &format!("{want} as the last mediator"),
            move |text| last_mediator(text) == Some(want.as_str()),
        );
    }

    // SIGKILL carl: no goodbye, so the others notice by silence alone.
    net.host(2).kill(chats[2].pid);
    let killed = Instant::now();
    for (h, chat) in chats.iter().enumerate().take(2) {
        net.host(h).expect(chat.pid, "* carl exited", secs(10));
        let after = killed.elapsed();
        eprintln!("{} saw carl exit {after:?} after the SIGKILL", names[h]);
        // Expiry 3 s after carl's last message, checked every second; a live
        // peer is heard at least every evasive + reap = 2 s (PING/PING-OK),
        // so not before 3 - 2 = 1 s (500 ms asserted, for slow PING-OKs on a
        // loaded machine), and within 3 + 1 s (bound: 10 s). A node that
        // removed a peer on a TCP disconnect would fail the lower bound.
        assert!(
            after >= Duration::from_millis(500),
            "{} saw carl exit only {after:?} after the kill: too early for an expiry\n{}",
            names[h],
            net.report()
        );
    }

    // Carl comes back (a new UUID): entered and joined again, hears and is heard.
    net.host(2).restart(chats[2].pid);
    let (uuid, _) = identity(net.host(2), chats[2].pid, "p2pchat");
    assert_ne!(uuid, chats[2].uuid, "a restarted node has a new UUID");
    chats[2].uuid = uuid;
    for (h, chat) in chats.iter().enumerate().take(2) {
        net.host(h)
            .expect(chat.pid, "* carl entered from tcp://", secs(10));
        net.host(h).expect(chat.pid, "* carl joined CHAT", secs(10));
    }
    let carl = chats[2].pid;
    net.host(2).wait_for(
        carl,
        secs(10),
        "ann and bob joined, since the restart",
        |text| {
            let run = text.rsplit("--- restarted ---").next().unwrap_or_default();
            ["* ann joined CHAT", "* bob joined CHAT"]
                .iter()
                .all(|line| run.lines().any(|l| l == *line))
        },
    );
    net.host(2).write_stdin(carl, "carl is back\n");
    net.host(0).write_stdin(chats[0].pid, "welcome back\n");
    for (h, chat) in chats.iter().enumerate().take(2) {
        until_line(net.host(h), chat.pid, "carl: carl is back", secs(10));
        assert_eq!(exact(net.host(h), chat.pid, "carl: carl is back"), 1);
    }
    until_line(net.host(2), carl, "ann: welcome back", secs(10));

    // Clean ends: end of input, SIGTERM, SIGINT; each exits 0.
    net.host(0).close_stdin(chats[0].pid);
    assert_eq!(
        net.host(0).wait_exit(chats[0].pid, secs(10)),
        0,
        "{}",
        net.report()
    );
    net.host(1)
        .stop_cleanly_with(chats[1].pid, libc::SIGTERM, secs(10));
    net.host(2).stop_cleanly(carl, secs(10));
}

// ---------------------------------------------------------------------------
// The monitor

/// The status blocks of a `p2pmon` output (the lines from `STATUS` to `END`).
fn blocks(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        if line.starts_with("STATUS ") {
            current = Some(vec![line.to_string()]);
        } else if line == "END" {
            if let Some(block) = current.take() {
                out.push(block);
            }
        } else if let Some(block) = current.as_mut() {
            block.push(line.to_string());
        }
    }
    out
}

/// `p2pmon` on a fourth host, in no group: it prints ENTER and JOIN for the
/// three chats, and every status block once it has seen them shows the
/// three peers at their mailboxes, the group CHAT with three members and one
/// mediator, the one with the smallest UUID, the same on every sample. The
/// mediator is SIGKILLed: the monitor prints EXIT and the next blocks name
/// the next smallest UUID, with two members. SIGTERM: exit 0.
#[test]
fn a_monitor_on_a_fourth_host_shows_the_peers_and_one_mediator_on_every_sample() {
    let mut net = Network::new("p2p-mon4", 4);
    let names = ["ann", "bob", "carl"];
    let chats: Vec<Chat> = (0..3)
        .map(|h| start_chat(net.host(h), names[h], &LAN))
        .collect();
    let mon = net.host(3).start(
        "p2pmon",
        bin!("p2pmon"),
        &[
            "--every-ms",
            "300",
            "--broadcast",
            BROADCAST,
            "--evasive-ms",
            EVASIVE_MS,
            "--expired-ms",
            EXPIRED_MS,
        ],
    );
    let (mon_uuid, mon_mailbox) = identity(net.host(3), mon, "p2pmon");
    assert!(mon_mailbox.starts_with("tcp://10.99.0.4:"), "{mon_mailbox}");
    for chat in &chats {
        let host = net.host(3);
        host.expect_count(
            mon,
            &format!("ENTER {} {} {}", chat.uuid, chat.name, chat.mailbox),
            1,
            secs(10),
        );
        host.expect_count(
            mon,
            &format!("JOIN {} {} CHAT", chat.uuid, chat.name),
            1,
            secs(10),
        );
    }
    // The chats see the monitor too (it is a node, in no group).
    for (h, chat) in chats.iter().enumerate() {
        net.host(h)
            .expect_count(chat.pid, "* p2pmon entered", 1, secs(10));
    }
    // Five samples with the whole group.
    net.host(3)
        .wait_for(mon, secs(15), "5 samples of the whole group", |text| {
            blocks(text)
                .iter()
                .filter(|b| b.iter().any(|l| l.starts_with("GROUP CHAT members 3 ")))
                .count()
                >= 5
        });
    let mut sorted: Vec<&Chat> = chats.iter().collect();
    sorted.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let group_line = format!(
        "GROUP CHAT members 3 [ann bob carl] mediator {} {}",
        sorted[0].name, sorted[0].uuid
    );
    let text = net.host(3).output(mon);
    let all = blocks(&text);
    let first_whole = all
        .iter()
        .position(|b| b.iter().any(|l| l.starts_with("GROUP CHAT members 3 ")))
        .unwrap();
    let whole = &all[first_whole..];
    assert!(whole.len() >= 5);
    for block in whole {
        assert!(
            block[0].starts_with("STATUS 3 peers 1 groups | SHOUT 0.0/s WHISPER 0.0/s"),
            "{block:?}"
        );
        let mut peers: Vec<&String> = block.iter().filter(|l| l.starts_with("PEER ")).collect();
        peers.sort();
        let mut want: Vec<String> = sorted
            .iter()
            .map(|c| format!("PEER {} {} {} groups CHAT", c.uuid, c.name, c.mailbox))
            .collect();
        want.sort();
        assert_eq!(peers, want.iter().collect::<Vec<_>>(), "{block:?}");
        let groups: Vec<&String> = block.iter().filter(|l| l.starts_with("GROUP ")).collect();
        assert_eq!(groups, [&group_line], "one group, one mediator: {block:?}");
    }
    assert!(
        !text
            .lines()
            .any(|l| (l.starts_with("ENTER ") || l.starts_with("PEER ")) && l.contains(&mon_uuid)),
        "the monitor never lists itself"
    );

    // The mediator dies: the next smallest UUID takes over.
    let (dead, next) = (sorted[0], sorted[1]);
    let dead_host = chats.iter().position(|c| c.uuid == dead.uuid).unwrap();
    net.host(dead_host).kill(dead.pid);
    net.host(3)
        .expect(mon, &format!("EXIT {} {}", dead.uuid, dead.name), secs(10));
    let mut rest: Vec<&str> = names.iter().copied().filter(|n| *n != dead.name).collect();
    rest.sort();
    let after = format!(
        "GROUP CHAT members 2 [{}] mediator {} {}",
        rest.join(" "),
        next.name,
        next.uuid
    );
    net.host(3).expect(mon, &after, secs(5));
    net.host(3).expect(mon, &after, secs(5)); // and on the next sample
    net.host(3).stop_cleanly_with(mon, libc::SIGTERM, secs(10));
}

// ---------------------------------------------------------------------------
// One machine

/// Several nodes on one machine share UDP port 5670 on the loopback
/// broadcast address, with zyre's timings (expiry 30 s). A monitor that
/// joined CHAT sees each SHOUT (size and frames) and counts a rate; a long
/// line goes in 16 KiB pieces, one over 1 MiB not at all; nodes
/// that stop cleanly (end of input, SIGTERM, SIGINT) say goodbye, so the
/// others print their exit within 5 s, far below the 30 s a crash takes.
#[test]
fn on_one_machine_nodes_share_the_port_a_monitor_counts_shouts_and_clean_stops_say_goodbye() {
    let mut sc = Scenario::new("p2p-loopback");
    let ann = start_chat(&mut sc, "ann", &[]);
    let bob = start_chat(&mut sc, "bob", &[]);
    let carl = start_chat(&mut sc, "carl", &[]);
    let mon = sc.start(
        "p2pmon",
        bin!("p2pmon"),
        &["--group", "CHAT", "--every-ms", "500", "--name", "watcher"],
    );
    identity(&mut sc, mon, "p2pmon");
    for chat in [&ann, &bob, &carl] {
        let others: Vec<&str> = ["ann", "bob", "carl", "watcher"]
            .into_iter()
            .filter(|n| *n != chat.name)
            .collect();
        sees_all(&mut sc, chat.pid, &others, 1, secs(10));
        sc.expect_count(
            mon,
            &format!("JOIN {} {} CHAT", chat.uuid, chat.name),
            1,
            secs(10),
        );
    }
    for n in 0..10 {
        sc.write_stdin(ann.pid, &format!("line {n}\n"));
    }
    until_line(&sc, bob.pid, "ann: line 9", secs(10));
    sc.expect_count(
        mon,
        &format!("SHOUT {} ann CHAT 6 bytes 1 frames", ann.uuid),
        10,
        secs(10),
    );
    // A status block counted them (at least one interval has a rate > 0).
    sc.wait_for(mon, secs(5), "a SHOUT rate above 0", |text| {
        text.lines()
            .any(|l| l.starts_with("STATUS ") && !l.contains("SHOUT 0.0/s"))
    });
    // A 40,000-byte line goes in pieces of 16 KiB (each printed cut at
    // 4,096 characters); a line over 1 MiB is not sent at all.
    sc.write_stdin(ann.pid, &format!("{}\n", "y".repeat(40_000)));
    for size in [16_384, 16_384, 7_232] {
        sc.expect(
            mon,
            &format!("SHOUT {} ann CHAT {size} bytes 1 frames", ann.uuid),
            secs(10),
        );
    }
    sc.write_stdin(
        ann.pid,
        &format!("{}\nafter the long lines\n", "z".repeat(1_100_000)),
    );
    sc.expect(ann.pid, "* a line over 1048576 bytes: not sent", secs(10));
    until_line(&sc, bob.pid, "ann: after the long lines", secs(10));
    assert_eq!(sc.count(bob.pid, "ann: yyyy"), 3, "{}", sc.report());
    assert_eq!(sc.count(bob.pid, "zzz"), 0, "{}", sc.report());
    assert_eq!(
        sc.count(bob.pid, "bytes)"),
        3,
        "three cut lines: {}",
        sc.report()
    );

    let t = Instant::now();
    sc.close_stdin(ann.pid);
    assert_eq!(sc.wait_exit(ann.pid, secs(10)), 0, "{}", sc.report());
    for pid in [bob.pid, carl.pid] {
        sc.expect(pid, "* ann exited", secs(5));
    }
    sc.expect(mon, &format!("EXIT {} ann", ann.uuid), secs(5));
    sc.stop_cleanly_with(bob.pid, libc::SIGTERM, secs(10));
    sc.expect(carl.pid, "* bob exited", secs(5));
    sc.expect(mon, &format!("EXIT {} bob", bob.uuid), secs(5));
    sc.stop_cleanly(carl.pid, secs(10));
    sc.expect(mon, &format!("EXIT {} carl", carl.uuid), secs(5));
    eprintln!("three goodbyes seen in {:?}", t.elapsed());
    sc.stop_cleanly(mon, secs(10));
}

/// A seed that never answers (nothing listens there) is reported once, after
/// 5 s, and the chat still stops cleanly.
#[test]
fn a_gossip_seed_that_never_answers_is_reported() {
    let mut sc = Scenario::new("p2p-gossip-silent");
    let chat = start_chat(
        &mut sc,
        "lonely",
        &[
            "--interface",
            "127.0.0.1",
            "--gossip-connect",
            "tcp://127.0.0.1:5999",
        ],
    );
    let started = Instant::now();
    sc.expect(
        chat.pid,
        "W: gossip: no connection to tcp://127.0.0.1:5999 after 5 s",
        secs(15),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    sc.stop_cleanly(chat.pid, secs(10));
    assert_eq!(sc.count(chat.pid, "no connection to"), 1);
}

// ---------------------------------------------------------------------------
// CURVE

/// `--curve-keys`/`--curve-trust` with key files from `curvekeys`, on
/// loopback: ann and bob trust each other's keys and chat; eve (CURVE, a key
/// they do not trust) is refused by both and meets no one; pat (plain ZRE)
/// and the CURVE nodes never meet. ann's mailbox greets a raw TCP client
/// with the ZMTP mechanism `CURVE`, not `NULL`.
#[test]
fn curve_chats_with_a_trust_list_talk_only_to_each_other() {
    let mut sc = Scenario::new("p2p-curve");
    let dir = sc.dir().to_path_buf();
    for (name, sub) in [("ann", "trusted"), ("bob", "trusted"), ("eve", "other")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let path = dir.join(sub).join(name);
        let pid = sc.start(
            &format!("keys-{name}"),
            bin!("curvekeys"),
            &["--out", path.to_str().unwrap()],
        );
        assert_eq!(sc.wait_exit(pid, secs(10)), 0);
    }
    let key = |sub: &str, file: &str| dir.join(sub).join(file).to_str().unwrap().to_string();
    let trusted = dir.join("trusted").to_str().unwrap().to_string();
    let fast = ["--interval-ms", "100"];
    let pat = start_chat(&mut sc, "pat", &fast);
    let ann_keys = key("trusted", "ann_secret");
    let ann = start_chat(
        &mut sc,
        "ann",
        &[
            "--interval-ms",
            "100",
            "--curve-keys",
            &ann_keys,
            "--curve-trust",
            &trusted,
        ],
    );
    // bob names his public file: the secret one beside it is read.
    let bob_keys = key("trusted", "bob");
    let bob = start_chat(
        &mut sc,
        "bob",
        &[
            "--interval-ms",
            "100",
            "--curve-keys",
            &bob_keys,
            "--curve-trust",
            &trusted,
        ],
    );
    sees_all(&mut sc, ann.pid, &["bob"], 1, secs(10));
    sees_all(&mut sc, bob.pid, &["ann"], 1, secs(10));
    sc.write_stdin(bob.pid, "only for ann\n");
    until_line(&sc, ann.pid, "bob: only for ann", secs(10));

    let eve_keys = key("other", "eve_secret");
    let eve = start_chat(
        &mut sc,
        "eve",
        &["--interval-ms", "100", "--curve-keys", &eve_keys],
    );
    // Both refuse eve's key when they hear her beacon.
    for pid in [ann.pid, bob.pid] {
        sc.expect(pid, "has a CURVE key we do not trust", secs(10));
    }
    sc.write_stdin(bob.pid, "after eve came\n");
    until_line(&sc, ann.pid, "bob: after eve came", secs(10));
    for (who, pid) in [
        ("ann", ann.pid),
        ("bob", bob.pid),
        ("eve", eve.pid),
        ("pat", pat.pid),
    ] {
        let entered = sc.count(pid, "entered from");
        let expected = usize::from(who == "ann" || who == "bob");
        assert_eq!(
            entered,
            expected,
            "{who} met the wrong peers\n{}",
            sc.report()
        );
    }
    assert_eq!(sc.count(eve.pid, "only for ann"), 0);
    // Logged once per stranger, though eve beacons ten times a second.
    for pid in [ann.pid, bob.pid] {
        assert_eq!(sc.count(pid, "has a CURVE key we do not trust"), 1);
    }

    // The mailbox speaks CURVE: its ZMTP greeting names the mechanism.
    let address = ann.mailbox.trim_start_matches("tcp://").to_string();
    let mechanism = sc.in_namespace(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The start of a ZMTP 3.0 greeting (signature and version): the
        // server answers with all of its own (the rest of ours, with a
        // mechanism it would refuse, is never sent).
        stream
            .write_all(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0])
            .unwrap();
        let mut theirs = [0u8; 64];
        stream.read_exact(&mut theirs).unwrap();
        String::from_utf8_lossy(&theirs[12..32])
            .trim_end_matches('\0')
            .to_string()
    });
    assert_eq!(mechanism, "CURVE");
    for pid in [ann.pid, bob.pid, eve.pid, pat.pid] {
        sc.stop_cleanly(pid, secs(10));
    }
}

// ---------------------------------------------------------------------------
// The command line

/// `--help` lists every flag and exits 0; a bad flag, a bad value or a
/// header without `=` exits 64 (as `fileclient`), with the error on stderr.
#[test]
fn help_lists_the_flags_and_a_bad_command_line_exits_64() {
    let mut sc = Scenario::new("p2p-usage");
    let mut run = |label: &str, program: &str, args: &[&str]| {
        let pid = sc.start(label, program, args);
        let code = sc.wait_exit(pid, secs(10));
        (code, sc.output(pid))
    };
    let (code, out) = run("chat-help", bin!("p2pchat"), &["--help"]);
    assert_eq!(code, 0, "{out}");
    for flag in [
        "--name",
        "--group",
        "--port",
        "--broadcast",
        "--interface",
        "--header",
        "--interval-ms",
        "--evasive-ms",
        "--expired-ms",
        "--gossip-bind",
        "--gossip-connect",
        "--curve",
        "--curve-keys",
        "--curve-trust",
    ] {
        assert!(out.contains(flag), "p2pchat --help lacks {flag}: {out}");
    }
    let (code, out) = run("mon-help", bin!("p2pmon"), &["--help"]);
    assert_eq!(code, 0, "{out}");
    for flag in [
        "--name",
        "--group",
        "--every-ms",
        "--port",
        "--broadcast",
        "--interface",
        "--header",
        "--evasive-ms",
        "--expired-ms",
    ] {
        assert!(out.contains(flag), "p2pmon --help lacks {flag}: {out}");
    }
    for (label, program, args) in [
        ("chat-bogus", bin!("p2pchat"), &["--bogus"][..]),
        ("chat-port", bin!("p2pchat"), &["--port", "99999"][..]),
        ("chat-header", bin!("p2pchat"), &["--header", "novalue"][..]),
        ("mon-every", bin!("p2pmon"), &["--every-ms", "soon"][..]),
        ("mon-bogus", bin!("p2pmon"), &["extra"][..]),
    ] {
        let (code, out) = run(label, program, args);
        assert_eq!(code, 64, "{label}: {out}");
        assert!(out.contains("error:"), "{label}: {out}");
    }
}

// ---------------------------------------------------------------------------
// Raw wire

/// Routing id of a DEALER that speaks for `uuid`: `01` and the 16 bytes.
fn routing_id(uuid: &[u8; 16]) -> Vec<u8> {
    let mut id = vec![1u8];
    id.extend_from_slice(uuid);
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn frames(sequence: u16, command: Command) -> Vec<Vec<u8>> {
    wire::Message { sequence, command }
        .encode()
        .expect("encode")
}

fn hello(endpoint: &str, name: &str) -> Command {
    Command::Hello {
        endpoint: endpoint.into(),
        groups: vec!["CHAT".into()],
        status: 0,
        name: name.into(),
        headers: Default::default(),
    }
}

fn shout(text: &str) -> Command {
    Command::Shout {
        group: "CHAT".into(),
        content: vec![text.as_bytes().to_vec()],
    }
}

/// Two chats on loopback, then by hand: garbage and wrong-size beacons on
/// UDP 5670 (ignored, and logged with `-v`); a fake beacon that makes both chats connect to a
/// probe ROUTER, where their HELLOs decode as RFC 36 says (sequence 1, their
/// mailbox, group CHAT, status 1, their name); then fake peers at ann's
/// mailbox: `mallory` says HELLO (entered, joined), SHOUTs (printed), sends
/// a JOIN with a wrong status (removed: exited) and SHOUTs again (ignored);
/// `trudy` sends undecodable frames and a message with a sequence gap
/// (removed); `eve` has terminal controls and forged lines in its name and
/// SHOUTs (printed escaped, one line each) and a 10,000-byte SHOUT (cut at
/// 4,096 characters); a DEALER with a short routing id is dropped. Ann and bob still
/// talk to each other, exactly once, after all of it.
#[test]
fn raw_wire_garbage_beacons_and_rule_breaking_peers_are_handled_and_the_chat_goes_on() {
    let mut sc = Scenario::new("p2p-wire");
    let ann = start_chat(&mut sc, "ann", &["-v"]);
    let bob = start_chat(&mut sc, "bob", &[]);
    sees_all(&mut sc, ann.pid, &["bob"], 1, secs(10));
    sees_all(&mut sc, bob.pid, &["ann"], 1, secs(10));

    // Garbage on the beacon port, broadcast so that both listeners get it.
    sc.in_namespace(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_broadcast(true).unwrap();
        let target = "127.255.255.255:5670";
        let beacon = wire::Beacon {
            uuid: [7; 16],
            port: 40000,
        }
        .encode();
        let mut wrong_version = beacon;
        wrong_version[3] = 2;
        let mut long = beacon.to_vec();
        long.push(0);
        let junk: Vec<Vec<u8>> = vec![
            vec![],
            b"ZRE".to_vec(),
            beacon[..21].to_vec(),
            long,
            wrong_version.to_vec(),
            vec![0xFF; 22],
            vec![0; 65_507],
        ];
        for datagram in &junk {
            socket.send_to(datagram, target).unwrap();
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x2E);
        for _ in 0..2000 {
            let size = rng.gen_range(0..=255);
            let bytes: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
            socket.send_to(&bytes, target).unwrap();
        }
    });

    // Ann (`-v`) saw them: the two with the ZRE prefix but the wrong size
    // reach the node and are logged, the oversized one the beacon agent.
    sc.expect_count(
        ann.pid,
        "D: ZRE node: not a ZRE beacon from 127.0.0.1:",
        2,
        secs(10),
    );
    sc.expect_count(ann.pid, "ignored an oversized datagram", 1, secs(10));

    // A fake node's beacon: both chats connect to our ROUTER and say HELLO.
    let (ann_uuid, bob_uuid) = (ann.uuid.clone(), bob.uuid.clone());
    let (ann_mailbox, bob_mailbox) = (ann.mailbox.clone(), bob.mailbox.clone());
    sc.in_namespace(move || {
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_broadcast(true).unwrap();
        let beacon = wire::Beacon {
            uuid: [0xFA; 16],
            port,
        }
        .encode();
        // Beacon like a node does (every 200 ms here) until both chats have
        // said HELLO: one datagram can be lost in a listener's buffer still
        // full of the junk above. Only each chat's first message is judged;
        // a PING can follow it once the chat finds us silent for 5 s.
        let deadline = Instant::now() + secs(10);
        let mut seen = Vec::new();
        let mut senders = std::collections::BTreeSet::new();
        while seen.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "HELLOs from both chats: got {seen:?}");
            socket.send_to(&beacon, "127.255.255.255:5670").unwrap();
            if router
                .poll(
                    zmq::POLLIN,
                    left.min(Duration::from_millis(200)).as_millis() as i64,
                )
                .unwrap()
                == 0
            {
                continue;
            }
            let message = router.recv_multipart(0).unwrap();
            let from = hex(&message[0][1..]);
            if !senders.insert(from.clone()) {
                continue;
            }
            let decoded = wire::Message::decode(&message[1..]).expect("a ZRE message");
            assert_eq!(decoded.sequence, 1, "HELLO is message 1");
            let Command::Hello {
                endpoint,
                groups,
                status,
                name,
                ..
            } = decoded.command
            else {
                panic!("the first message is HELLO: {decoded:?}");
            };
            let (want_endpoint, want_name) = if from == ann_uuid {
                (&ann_mailbox, "ann")
            } else {
                assert_eq!(from, bob_uuid);
                (&bob_mailbox, "bob")
            };
            assert_eq!(&endpoint, want_endpoint);
            assert_eq!(name, want_name);
            assert_eq!(groups, ["CHAT"]);
            assert_eq!(status, 1, "one JOIN so far");
            assert_eq!(message[0][0], 1, "routing id 01 + uuid");
            seen.push(name);
        }
    });

    // Fake peers at ann's mailbox.
    let mailbox = ann.mailbox.clone();
    sc.in_namespace(move || {
        let context = zmq::Context::new();
        // Each fake peer gives a mailbox of its own in its HELLO: a node
        // that says HELLO from an endpoint another node had replaces it.
        let sink = || {
            let socket = context.socket(zmq::ROUTER).unwrap();
            socket.set_linger(0).unwrap();
            socket.bind("tcp://127.0.0.1:*").unwrap();
            let endpoint = socket.get_last_endpoint().unwrap().unwrap();
            (socket, endpoint)
        };
        let sinks = [sink(), sink(), sink(), sink()];
        let dealer = |uuid: Option<[u8; 16]>| {
            let socket = context.socket(zmq::DEALER).unwrap();
            socket.set_linger(1000).unwrap();
            socket
                .set_identity(&uuid.map_or(b"abc".to_vec(), |u| routing_id(&u)))
                .unwrap();
            socket.connect(&mailbox).unwrap();
            socket
        };
        let send = |socket: &zmq::Socket, frames: Vec<Vec<u8>>| {
            socket.send_multipart(frames, 0).unwrap();
        };
        // A routing id that is not 17 bytes: dropped.
        let short = dealer(None);
        send(&short, frames(1, hello(&sinks[0].1, "shorty")));
        // mallory: HELLO, SHOUT, a JOIN with status 5 (1 expected), SHOUT.
        let mallory = dealer(Some([0x11; 16]));
        send(&mallory, frames(1, hello(&sinks[1].1, "mallory")));
        send(&mallory, frames(2, shout("hi from mallory")));
        send(
            &mallory,
            frames(
                3,
                Command::Join {
                    group: "MORE".into(),
                    status: 5,
                },
            ),
        );
        send(&mallory, frames(4, shout("after the bad join")));
        // trudy: HELLO, frames that do not decode, a sequence gap.
        let trudy = dealer(Some([0x22; 16]));
        send(&trudy, frames(1, hello(&sinks[2].1, "trudy")));
        send(&trudy, vec![b"\xAA\xA1\x03".to_vec()]);
        send(&trudy, vec![vec![0u8; 300], b"x".to_vec()]);
        send(&trudy, frames(2, shout("trudy in order")));
        send(&trudy, frames(9, shout("trudy out of order")));
        // eve: a name and a message with terminal controls and forged lines.
        let eve = dealer(Some([0x33; 16]));
        send(
            &eve,
            frames(1, hello(&sinks[3].1, "eve\x1b[2J\r\nbob: forged")),
        );
        send(&eve, frames(2, shout("hi\x07\r\nbob: forged too")));
        send(&eve, frames(3, shout(&"x".repeat(10_000))));
        // Let the DEALERs deliver (LINGER) before the context ends.
        drop((short, mallory, trudy, eve, sinks));
    });
    sc.expect_count(
        ann.pid,
        "* mallory entered from tcp://127.0.0.1:",
        1,
        secs(10),
    );
    until_line(&sc, ann.pid, "mallory: hi from mallory", secs(10));
    sc.expect_count(ann.pid, "* mallory exited", 1, secs(10));
    sc.expect_count(ann.pid, "* trudy entered", 1, secs(10));
    until_line(&sc, ann.pid, "trudy: trudy in order", secs(10));
    sc.expect_count(ann.pid, "* trudy exited", 1, secs(10));
    // What eve sent is printed escaped, on one line each, long text cut.
    let eve = "eve\\u{1b}[2J\\r\\nbob: forged";
    until_line(
        &sc,
        ann.pid,
        &format!("{eve}: hi\\u{{7}}\\r\\nbob: forged too"),
        secs(10),
    );
    until_line(
        &sc,
        ann.pid,
        &format!("{eve}: {}…(+5904 bytes)", "x".repeat(4096)),
        secs(10),
    );
    assert!(
        !sc.lines(ann.pid)
            .iter()
            .any(|l| l.starts_with("bob: forged")),
        "{}",
        sc.report()
    );

    // Ann and bob go on, exactly once each way.
    sc.write_stdin(bob.pid, "still here\nmarker\n");
    sc.write_stdin(ann.pid, "me too\nmarker\n");
    until_line(&sc, ann.pid, "bob: marker", secs(10));
    until_line(&sc, bob.pid, "ann: marker", secs(10));
    assert_eq!(exact(&sc, ann.pid, "bob: still here"), 1);
    assert_eq!(exact(&sc, bob.pid, "ann: me too"), 1);
    for never in ["after the bad join", "out of order", "shorty"] {
        assert_eq!(sc.count(ann.pid, never), 0, "{never}: {}", sc.report());
    }
    assert_eq!(sc.count(ann.pid, "* bob exited"), 0, "{}", sc.report());
    assert_eq!(sc.count(bob.pid, "* ann exited"), 0, "{}", sc.report());
    sc.stop_cleanly(ann.pid, secs(10));
    sc.stop_cleanly(bob.pid, secs(10));
}
