//! Study part 5 at scale: 50 `p2pchat` nodes, two on each of 25 simulated
//! hosts (`tests/common/network.rs`), find each other by UDP broadcast and
//! form a full mesh; the LAN is cut into two halves and healed; every node
//! names the same mediator whenever the network is whole, and each half
//! names its own while it is cut. Every wait is bounded and syncs on what
//! the nodes print.

mod common;
use common::network::{Network, BROADCAST};
use common::{secs, Pid, Scenario};

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

/// One node: where it runs, its process, its name and uuid.
struct Node {
    host: usize,
    pid: Pid,
    name: String,
    uuid: String,
}

/// The uuid in `I: p2pchat: NAME (uuid U) …`, the line `pid` prints first.
fn uuid_of(sc: &mut Scenario, pid: Pid) -> String {
    let line = sc.expect(pid, "I: p2pchat: ", secs(20));
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
        let uuid = uuid_of(sc, pid);
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
