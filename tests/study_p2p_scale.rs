//! Study part 5 at scale: 50 `p2pchat` nodes, two on each of 25 simulated
//! hosts (`tests/common/network.rs`), find each other by UDP broadcast and
//! form a full mesh; the LAN is cut into two halves and healed; every node
//! names the same mediator whenever the network is whole, and each half
//! names its own while it is cut. Then the same with 50 `p2pkv` nodes: the
//! replicated map converges on every node, within each half while it is
//! cut, and on all 50 again once it is healed. Every wait is bounded and
//! syncs on what the nodes print (the pauses between two rounds of `dump`
//! only pace the polling).

mod common;
use common::network::{Network, BROADCAST};
use common::{ms, secs, Pid, Scenario};

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::time::{Duration, Instant};

/// Hosts, and nodes on each (two per host: they share UDP port 5670).
const HOSTS: usize = 25;
const PER_HOST: usize = 2;
const NODES: usize = HOSTS * PER_HOST;

/// Short silence timers: PING after 1 s, gone after 3 s.
const FLAGS: [&str; 6] = [
    "--broadcast",
    BROADCAST,
    "--evasive-ms",
    "1000",
    "--expired-ms",
    "3000",
];

/// Takes the lock that lets one test of this file at a time have its LAN.
/// The kernel's ARP (neighbour) table is one for every network namespace
/// and holds 1,024 entries by default (`gc_thresh3`): a LAN of 25 hosts
/// that talk to each other fills about 600, so two at once overflow it
/// ("neighbor table overflow" in the kernel log) and the hosts past the
/// 23rd or so are never heard. A file lock, so it holds across the
/// processes nextest runs the tests in as well as across the threads of
/// `cargo test`; released when the returned file is dropped (keep it
/// longer than the [`Network`]) or the process ends.
fn one_big_lan_at_a_time() -> File {
    let path = std::env::temp_dir().join("zguide-study-p2p-scale.lock");
    // Another user's file (root's, when an ordinary user runs the suite
    // after it): a lock needs only a file opened for reading.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .or_else(|_| File::open(&path))
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // Bounded: the other big test holds it for well under a minute.
    let deadline = std::time::Instant::now() + secs(180);
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("lock {}: {e}", path.display()),
        }
    }
}

/// One node: where it runs, its process, its name and uuid.
struct Node {
    host: usize,
    pid: Pid,
    name: String,
    uuid: String,
}

/// The uuid in `I: PROGRAM: NAME (uuid U) …` (`ready` is `I: PROGRAM: `),
/// the line `pid` prints first.
fn uuid_of(sc: &mut Scenario, pid: Pid, ready: &str) -> String {
    let line = sc.expect(pid, ready, secs(20));
    let uuid = line
        .split("(uuid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| sc.fail(&format!("no uuid in {line:?}")))
        .to_string();
    assert_eq!(uuid.len(), 32, "{line}");
    uuid
}

/// Lines of `text` that say a peer entered.
fn entered(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("* ") && l.contains(" entered from tcp://"))
        .count()
}

/// Lines of `text` that say a peer exited.
fn exited(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("* ") && l.ends_with(" exited"))
        .count()
}

/// The last mediator `text` named for CHAT.
fn mediator(text: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        l.strip_prefix("* ")?
            .strip_suffix(" is the mediator of CHAT")
            .map(str::to_string)
    })
}

/// Waits until every node in `nodes` printed `count(text) >= want`.
fn wait_all(
    net: &mut Network,
    nodes: &[&Node],
    timeout: Duration,
    what: &str,
    want: usize,
    count: fn(&str) -> usize,
) {
    let deadline = Instant::now() + timeout;
    for node in nodes {
        let left = deadline.saturating_duration_since(Instant::now());
        net.host(node.host).wait_for(
            node.pid,
            left.max(Duration::from_millis(1)),
            &format!("{} to print {want} {what} lines", node.name),
            |text| count(text) >= want,
        );
    }
}

/// Waits until every node in `nodes` names `expected` as CHAT's mediator.
fn wait_mediator(net: &mut Network, nodes: &[&Node], expected: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for node in nodes {
        let left = deadline.saturating_duration_since(Instant::now());
        net.host(node.host).wait_for(
            node.pid,
            left.max(Duration::from_millis(1)),
            &format!("{} to name {expected} the mediator", node.name),
            |text| mediator(text).as_deref() == Some(expected),
        );
    }
}

/// The name of the node with the smallest uuid: the mediator by the rule.
fn smallest<'a>(nodes: &[&'a Node]) -> &'a str {
    nodes
        .iter()
        .min_by(|a, b| a.uuid.cmp(&b.uuid))
        .map(|n| n.name.as_str())
        .expect("nodes")
}

/// 50 nodes on 25 hosts: each sees the 49 others enter (full mesh) and all
/// name the smallest uuid as the mediator; cut the LAN into hosts 0–11 and
/// 12–24: each node sees exactly the other half exit, and each half names
/// its own smallest uuid; heal it: every node sees the other half enter
/// again and all name the global smallest once more. Broken on purpose:
/// with the mediator rule taking the largest uuid, the first mediator wait
/// fails; with beacons ignored, no node sees any other enter.
#[test]
fn fifty_nodes_mesh_split_heal_and_one_mediator_per_connected_part() {
    let _lan = one_big_lan_at_a_time();
    let mut net = Network::new("p2p-50", HOSTS);
    let mut nodes = Vec::with_capacity(NODES);
    let started = Instant::now();
    for n in 0..NODES {
        let host = n % HOSTS;
        let name = format!("n{n:02}");
        let mut args = vec!["--name", name.as_str()];
        args.extend_from_slice(&FLAGS);
        let sc = net.host(host);
        let pid = sc.start(&name, env!("CARGO_BIN_EXE_p2pchat"), &args);
        let uuid = uuid_of(sc, pid, "I: p2pchat: ");
        nodes.push(Node {
            host,
            pid,
            name,
            uuid,
        });
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let last_started = Instant::now();

    // Full mesh: 49 peers each.
    wait_all(&mut net, &all, secs(90), "entered", NODES - 1, entered);
    let mesh = last_started.elapsed();
    wait_mediator(&mut net, &all, smallest(&all), secs(30));
    eprintln!(
        "50 nodes: started in {} ms, full mesh {} ms after the last start",
        (last_started - started).as_millis(),
        mesh.as_millis()
    );

    // Cut: hosts 12..25 onto the second bridge.
    let side_b: Vec<usize> = (12..HOSTS).collect();
    let (a, b): (Vec<&Node>, Vec<&Node>) = all.iter().partition(|n| n.host < 12);
    let cut = Instant::now();
    net.split(&side_b);
    wait_all(&mut net, &a, secs(60), "exited", b.len(), exited);
    wait_all(&mut net, &b, secs(60), "exited", a.len(), exited);
    let parted = cut.elapsed();
    wait_mediator(&mut net, &a, smallest(&a), secs(30));
    wait_mediator(&mut net, &b, smallest(&b), secs(30));
    // Nobody saw its own half go: exactly the other half's count.
    for (side, other) in [(&a, b.len()), (&b, a.len())] {
        for node in side.iter() {
            let text = net.host(node.host).output(node.pid);
            assert_eq!(exited(&text), other, "{}: {text}", node.name);
        }
    }

    // Heal: the halves meet again.
    let healed = Instant::now();
    net.heal();
    wait_all(
        &mut net,
        &a,
        secs(90),
        "entered",
        NODES - 1 + b.len(),
        entered,
    );
    wait_all(
        &mut net,
        &b,
        secs(90),
        "entered",
        NODES - 1 + a.len(),
        entered,
    );
    // Each node saw the other half enter a second time (its own half once).
    for node in &all {
        let other = if node.host < 12 { b.len() } else { a.len() };
        let text = net.host(node.host).output(node.pid);
        assert_eq!(entered(&text), NODES - 1 + other, "{}: {text}", node.name);
    }
    wait_mediator(&mut net, &all, smallest(&all), secs(30));
    eprintln!(
        "50 nodes: halves apart {} ms after the cut (expiry 3 s), whole again {} ms after healing",
        parted.as_millis(),
        healed.elapsed().as_millis()
    );
}

/// Lines of `text` that say a peer joined the map's group.
fn joined(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("* ") && l.ends_with(" joined KV"))
        .count()
}

/// The keys a `p2pkv` output shows it holds: its own writes (`ok set KEY
/// (clock N)`) and the peers' updates it applied (`update KEY=VALUE from
/// P`).
fn keys_seen(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("ok set ") {
                rest.split(" (clock ").next()
            } else {
                l.strip_prefix("update ")?.split('=').next()
            }
        })
        .collect()
}

/// Waits until every node in `nodes` printed that it holds each of `keys`.
fn wait_keys(net: &mut Network, nodes: &[&Node], keys: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for node in nodes {
        let left = deadline.saturating_duration_since(Instant::now());
        net.host(node.host).wait_for(
            node.pid,
            left.max(Duration::from_millis(1)),
            &format!("{} to hold the {} keys", node.name, keys.len()),
            |text| {
                let seen = keys_seen(text);
                keys.iter().all(|k| seen.contains(k.as_str()))
            },
        );
    }
}

/// Types `line` on a node's stdin.
fn type_line(net: &mut Network, node: &Node, line: &str) {
    net.host(node.host)
        .write_stdin(node.pid, &format!("{line}\n"));
}

/// Asks a node for a `dump`; returns its KEY=VALUE lines and its digest.
fn dump(net: &mut Network, node: &Node) -> (Vec<String>, String) {
    let sc = net.host(node.host);
    let before = sc.count(node.pid, "dump: ");
    sc.write_stdin(node.pid, "dump\n");
    sc.expect_count(node.pid, "dump: ", before + 1, secs(10));
    let lines = sc.lines(node.pid);
    let end = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("dump: "))
        .nth(before)
        .map(|(i, _)| i)
        .expect("the dump line");
    // The entries are the lines just before it that look like KEY=VALUE.
    let mut entries: Vec<String> = lines[..end]
        .iter()
        .rev()
        .take_while(|l| l.starts_with('/') && l.contains('='))
        .cloned()
        .collect();
    entries.reverse();
    let summary = format!("dump: {} keys, digest ", entries.len());
    assert!(
        lines[end].starts_with(&summary),
        "{}: {} after {} entries",
        node.name,
        lines[end],
        entries.len()
    );
    let digest = lines[end][summary.len()..].to_string();
    (entries, digest)
}

/// Dumps every node in `nodes` until all hold `count` keys with one digest;
/// returns the entries they agree on and the digest.
fn until_converged(
    net: &mut Network,
    nodes: &[&Node],
    count: usize,
    timeout: Duration,
) -> (Vec<String>, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let dumps: Vec<(Vec<String>, String)> = nodes.iter().map(|n| dump(net, n)).collect();
        let (entries, digest) = &dumps[0];
        if entries.len() == count && dumps.iter().all(|d| d.1 == *digest) {
            // Same digest, same map: the dumps show it too.
            assert!(dumps.iter().all(|d| d.0 == *entries), "{dumps:?}");
            return dumps.into_iter().next().expect("one node at least");
        }
        if Instant::now() > deadline {
            let differ: Vec<String> = nodes
                .iter()
                .zip(&dumps)
                .filter(|(_, d)| d.0.len() != count || d.1 != *digest)
                .map(|(n, d)| format!("{}: {} keys, digest {}", n.name, d.0.len(), d.1))
                .collect();
            panic!(
                "no convergence on {count} keys within {timeout:?}; the first node has \
                 digest {digest}, these differ: {differ:?}\n{}",
                net.report()
            );
        }
        std::thread::sleep(ms(100));
    }
}

/// Writes `key` = `value` on `node`; returns the Lamport clock it printed.
fn write(net: &mut Network, node: &Node, key: &str, value: &str) -> u64 {
    type_line(net, node, &format!("set {key} {value}"));
    let sc = net.host(node.host);
    let line = sc.expect(node.pid, &format!("ok set {key} (clock "), secs(10));
    line.rsplit("(clock ")
        .next()
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|clock| clock.parse().ok())
        .unwrap_or_else(|| sc.fail(&format!("no clock in {line:?}")))
}

/// 50 `p2pkv` nodes on 25 hosts, all in the group KV. Once they form the
/// mesh each writes a key of its own (`/nXX`) and all 50 converge to 50
/// keys and one digest. Cut the LAN into hosts 0–11 and 12–24; once each
/// node saw the other half exit, one node of each half writes `/shared`
/// (a conflict) and a key of its half: each half converges to 52 keys.
/// Heal: once every node saw the other half join again, all 50 converge to
/// 53 keys and one digest, and `/shared` holds the newer of the two writes
/// (Lamport clock, then UUID) everywhere. Broken on purpose: with no push
/// of the map to a peer that joins, the halves never learn each other's
/// writes and the last convergence times out.
#[test]
fn fifty_replicas_converge_after_a_split_and_heal() {
    let _lan = one_big_lan_at_a_time();
    let mut net = Network::new("p2pkv-50", HOSTS);
    let mut nodes = Vec::with_capacity(NODES);
    let started = Instant::now();
    for n in 0..NODES {
        let host = n % HOSTS;
        let name = format!("n{n:02}");
        let mut args = vec!["--name", name.as_str()];
        args.extend_from_slice(&FLAGS);
        // A joiner waits 500 ms for an update before it asks for the map,
        // and 2 s for the answer.
        args.extend_from_slice(&["--settle-ms", "500", "--request-ms", "2000"]);
        let sc = net.host(host);
        let pid = sc.start(&name, env!("CARGO_BIN_EXE_p2pkv"), &args);
        let uuid = uuid_of(sc, pid, "I: p2pkv: ");
        nodes.push(Node {
            host,
            pid,
            name,
            uuid,
        });
    }
    let all: Vec<&Node> = nodes.iter().collect();
    // Everyone sees the 49 others join KV, so every write reaches all.
    wait_all(&mut net, &all, secs(90), "joined KV", NODES - 1, joined);
    eprintln!(
        "50 replicas: started and meshed in {} ms",
        started.elapsed().as_millis()
    );

    // 1. One key each; all converge to the 50.
    let mut keys: Vec<String> = Vec::new();
    for node in &all {
        let key = format!("/{}", node.name);
        type_line(&mut net, node, &format!("set {key} v{}", &node.name[1..]));
        keys.push(key);
    }
    let written = Instant::now();
    wait_keys(&mut net, &all, &keys, secs(30));
    let (entries, first) = until_converged(&mut net, &all, NODES, secs(20));
    let initial = written.elapsed();
    assert_eq!(entries[7], "/n07=v07", "{entries:?}");

    // 2. Cut: hosts 12..25 onto the second bridge; wait until each half saw
    // the other exit, so that no write crosses the cut.
    let side_b: Vec<usize> = (12..HOSTS).collect();
    let (a, b): (Vec<&Node>, Vec<&Node>) = all.iter().partition(|n| n.host < 12);
    let cut = Instant::now();
    net.split(&side_b);
    wait_all(&mut net, &a, secs(60), "exited", b.len(), exited);
    wait_all(&mut net, &b, secs(60), "exited", a.len(), exited);
    let parted = cut.elapsed();
    // One writer on each side: the same key, then a key of its own side.
    let (left, right) = (a[2], b[2]);
    let left_clock = write(&mut net, left, "/shared", "left");
    write(&mut net, left, "/side/a", "only the left");
    let right_clock = write(&mut net, right, "/shared", "right");
    write(&mut net, right, "/side/b", "only the right");
    let mut keys_a = keys.clone();
    keys_a.extend(["/shared".to_string(), "/side/a".to_string()]);
    let mut keys_b = keys.clone();
    keys_b.extend(["/shared".to_string(), "/side/b".to_string()]);
    wait_keys(&mut net, &a, &keys_a, secs(20));
    wait_keys(&mut net, &b, &keys_b, secs(20));
    let (entries_a, digest_a) = until_converged(&mut net, &a, NODES + 2, secs(20));
    let (entries_b, digest_b) = until_converged(&mut net, &b, NODES + 2, secs(20));
    assert!(
        entries_a.contains(&"/shared=left".to_string()),
        "{entries_a:?}"
    );
    assert!(entries_a.contains(&"/side/a=only the left".to_string()));
    assert!(
        entries_b.contains(&"/shared=right".to_string()),
        "{entries_b:?}"
    );
    assert!(entries_b.contains(&"/side/b=only the right".to_string()));
    assert!(digest_a != first && digest_b != first && digest_a != digest_b);

    // 3. Heal: every node sees the other half join KV again, and all
    // converge to the 50 keys, the two side keys and one /shared.
    let healed = Instant::now();
    net.heal();
    wait_all(
        &mut net,
        &a,
        secs(60),
        "joined KV",
        NODES - 1 + b.len(),
        joined,
    );
    wait_all(
        &mut net,
        &b,
        secs(60),
        "joined KV",
        NODES - 1 + a.len(),
        joined,
    );
    let rejoined = healed.elapsed();
    let mut keys_all = keys_a.clone();
    keys_all.push("/side/b".to_string());
    wait_keys(&mut net, &all, &keys_all, secs(30));
    let (entries, digest) = until_converged(&mut net, &all, NODES + 3, secs(20));
    let converged = healed.elapsed();
    // The newer version wins: Lamport clock, then UUID (bytes; the hex is
    // fixed-width, so the strings compare the same way).
    let winner = if (left_clock, &left.uuid) > (right_clock, &right.uuid) {
        "left"
    } else {
        "right"
    };
    let shared = format!("/shared={winner}");
    assert!(entries.contains(&shared), "{shared} in {entries:?}");
    assert!(entries.contains(&"/side/a=only the left".to_string()));
    assert!(entries.contains(&"/side/b=only the right".to_string()));
    assert!(digest != digest_a && digest != digest_b);
    eprintln!(
        "50 replicas: 50 keys everywhere {} ms after the writes; halves apart {} ms \
         after the cut; healed: all joined again in {} ms, all 53 keys, one digest \
         and /shared={winner} (clocks {left_clock} left, {right_clock} right) {} ms after healing",
        initial.as_millis(),
        parted.as_millis(),
        rejoined.as_millis(),
        converged.as_millis()
    );
}
