//! The `p2p` group: the study's ZRE node (`zguide::zre`, part 5). Each
//! figure comes from a hidden mode of the bench (`bench --internal-zre-…`)
//! that runs N [`Node`]s in one process, in a namespace of its own, on its
//! loopback (beacons to `127.255.255.255`, every node on UDP 5670 through
//! `SO_REUSEADDR`, each with its own mailbox): nothing else shares the
//! port, and the figure is the protocol's and the node's, not process
//! start-up's.
//!
//! * time to full mesh: from the first node's start until every node has
//!   had an ENTER for each of the N − 1 others;
//! * SHOUT fan-out latency: in a group of N, one node SHOUTs messages one
//!   at a time (the next once every other node has the last), each
//!   carrying its send time; p50 and p99 over every receipt;
//! * state convergence: N nodes with a [`Replica`] of one group's map,
//!   synced (empty); then each writes K keys: the time until every replica
//!   holds all N × K with the same digest.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use zguide::interrupt;
use zguide::zre::state::{self, Replica};
use zguide::zre::{Event, Node, NodeConfig, Uuid};

use crate::guide_jobs::{bench_exe, fields};
use crate::jobs::{expect_success, Sample};
use crate::procs::{last_lines, Namespace, Proc};

/// The group the bench's nodes join.
const GROUP: &str = "BENCH";

/// Node counts of the full-mesh rows, and with `--quick`.
pub const MESH_NODES: [usize; 3] = [10, 25, 50];
pub const MESH_NODES_QUICK: [usize; 3] = [5, 10, 20];
/// The SHOUT group's size, and messages per run.
pub const SHOUT_NODES: usize = 25;
pub const SHOUT_MESSAGES: usize = 200;
/// The convergence rows: nodes, keys written by each.
pub const CONVERGE_NODES: usize = 10;
pub const CONVERGE_KEYS: usize = 100;

// ------------------------------------------------------------ the runner side

/// Runs `bench <args>` in a fresh namespace; its `prefix` line's fields.
fn internal(args: &[String], prefix: &str, timeout: Duration) -> Result<Vec<f64>, String> {
    let ns = Namespace::new()?;
    let mut proc = Proc::spawn("zre bench", ns.command(&bench_exe()?, args))?;
    expect_success(&mut proc, timeout)?;
    let output = proc.output().to_string();
    let found = fields(&output, prefix)
        .ok_or_else(|| format!("no {prefix} line: {}", last_lines(&output, 3)))?;
    let mut values: Vec<(&str, f64)> = found
        .iter()
        .filter_map(|(k, v)| Some((*k, v.parse::<f64>().ok()?)))
        .collect();
    values.sort_by(|a, b| a.0.cmp(b.0));
    Ok(values.into_iter().map(|(_, v)| v).collect())
}

/// Time to full mesh of `nodes` nodes, ms.
pub fn mesh(nodes: usize, timeout: Duration) -> Result<Sample, String> {
    let args = vec!["--internal-zre-mesh".to_string(), nodes.to_string()];
    let ms = mesh_line(&internal(&args, "zre-mesh:", timeout)?)?;
    Ok(Sample {
        values: vec![ms],
        secondary: None,
    })
}

fn mesh_line(values: &[f64]) -> Result<f64, String> {
    // Fields sorted by name: ms, nodes.
    values.first().copied().ok_or_else(|| "no ms".to_string())
}

/// SHOUT fan-out latency in a group of `nodes`: p50 and p99, µs.
pub fn shout(nodes: usize, messages: usize, timeout: Duration) -> Result<Sample, String> {
    let args = vec![
        "--internal-zre-shout".to_string(),
        nodes.to_string(),
        messages.to_string(),
    ];
    // Fields sorted by name: nodes, p50, p99, receipts.
    let values = internal(&args, "zre-shout:", timeout)?;
    match values[..] {
        [_, p50, p99, _] => Ok(Sample {
            values: vec![p50, p99],
            secondary: None,
        }),
        _ => Err(format!("zre-shout: fields {values:?}")),
    }
}

/// State convergence of `nodes` replicas after each wrote `keys`, ms.
pub fn converge(nodes: usize, keys: usize, timeout: Duration) -> Result<Sample, String> {
    let args = vec![
        "--internal-zre-converge".to_string(),
        nodes.to_string(),
        keys.to_string(),
    ];
    // Fields sorted by name: keys, ms, nodes.
    let values = internal(&args, "zre-converge:", timeout)?;
    match values[..] {
        [_, ms, _] => Ok(Sample {
            values: vec![ms],
            secondary: None,
        }),
        _ => Err(format!("zre-converge: fields {values:?}")),
    }
}

// ----------------------------------------------------------- the hidden modes

/// `count` nodes on loopback, started (joined to [`GROUP`] first when
/// `join`), named `b00`, `b01`, … Each has a ZeroMQ context of its own, as
/// it would in a process of its own (one context allows 1,023 sockets; 50
/// nodes have 2,450 connections), and the process may open as many files
/// as its hard limit allows.
fn start_nodes(count: usize, join: bool) -> Result<Vec<Node>, String> {
    raise_file_limit();
    let mut nodes = Vec::with_capacity(count);
    for n in 0..count {
        let context = zmq::Context::new();
        let config = NodeConfig {
            name: Some(format!("b{n:02}")),
            ..NodeConfig::default()
        };
        let node = Node::new(&context, config).map_err(|e| format!("node {n}: {e}"))?;
        if join {
            node.join(GROUP).map_err(|e| format!("join: {e}"))?;
        }
        node.start().map_err(|e| format!("start node {n}: {e}"))?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Raises the soft limit on open files to the hard one.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Waits up to `limit` for any node's event; `(node index, event)`s.
fn next_events(nodes: &[Node], limit: Duration) -> Result<Vec<(usize, Event)>, String> {
    let sockets: Vec<&zmq::Socket> = nodes.iter().map(Node::socket).collect();
    let ready = interrupt::poll(&sockets, limit.as_millis() as i64).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        if ready[n] {
            while let Some(event) = node
                .recv_timeout(Duration::ZERO)
                .map_err(|e| e.to_string())?
            {
                events.push((n, event));
            }
        }
    }
    Ok(events)
}

/// Feeds every node's events to `step` (`Some((node, event))`) until it
/// says it is done; `step(None)` asks whether it is before each wait. At
/// most until `deadline`.
fn until(
    nodes: &[Node],
    deadline: Instant,
    what: &str,
    mut step: impl FnMut(Option<(usize, Event)>) -> bool,
) -> Result<(), String> {
    while !step(None) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{what}: not within the time limit"));
        }
        for event in next_events(nodes, left.min(Duration::from_millis(100)))? {
            if step(Some(event)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Waits until every node has had an ENTER for every other.
fn wait_mesh(nodes: &[Node], deadline: Instant) -> Result<(), String> {
    let count = nodes.len();
    let mut seen: Vec<HashSet<Uuid>> = vec![HashSet::new(); count];
    let mut full = 0;
    until(nodes, deadline, "full mesh", |event| {
        if let Some((n, Event::Enter { peer, .. })) = event {
            if seen[n].insert(peer) && seen[n].len() == count - 1 {
                full += 1;
            }
        }
        full == count
    })
}

/// `--internal-zre-mesh N`: `zre-mesh: nodes N ms T`.
pub fn run_mesh(count: usize, limit: Duration) -> Result<String, String> {
    if count < 2 {
        return Err("at least 2 nodes".into());
    }
    let started = Instant::now();
    let nodes = start_nodes(count, false)?;
    wait_mesh(&nodes, started + limit)?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(format!("zre-mesh: nodes {count} ms {ms:.1}"))
}

/// `--internal-zre-shout N M`: `zre-shout: nodes N p50 µs p99 µs receipts R`.
pub fn run_shout(count: usize, messages: usize, limit: Duration) -> Result<String, String> {
    if count < 2 || messages == 0 {
        return Err("at least 2 nodes and 1 message".into());
    }
    let deadline = Instant::now() + limit;
    let nodes = start_nodes(count, true)?;
    // Every other node must have node 0 in the group, and node 0 them.
    let mut joined: Vec<HashSet<Uuid>> = vec![HashSet::new(); count];
    let sender = nodes[0].uuid();
    until(&nodes, deadline, "everyone in the group", |event| {
        if let Some((n, Event::Join { peer, group, .. })) = event {
            if group == GROUP {
                joined[n].insert(peer);
            }
        }
        joined[0].len() == count - 1 && joined[1..].iter().all(|j| j.contains(&sender))
    })?;
    let base = Instant::now();
    let mut latencies: Vec<f64> = Vec::with_capacity(messages * (count - 1));
    for k in 0..messages as u64 {
        let sent = base.elapsed().as_nanos() as u64;
        let mut content = k.to_be_bytes().to_vec();
        content.extend_from_slice(&sent.to_be_bytes());
        nodes[0]
            .shout(GROUP, vec![content])
            .map_err(|e| format!("shout: {e}"))?;
        let mut got = 0;
        until(&nodes, deadline, "a SHOUT everywhere", |event| {
            if let Some((_, Event::Shout { content, .. })) = event {
                let frame = content.first().map(Vec::as_slice).unwrap_or_default();
                if frame.len() == 16 && frame[..8] == k.to_be_bytes() {
                    let at = base.elapsed().as_nanos() as u64;
                    let when = u64::from_be_bytes(frame[8..16].try_into().unwrap_or_default());
                    latencies.push(at.saturating_sub(when) as f64 / 1e3);
                    got += 1;
                }
            }
            got == count - 1
        })?;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(format!(
        "zre-shout: nodes {count} p50 {:.1} p99 {:.1} receipts {}",
        at(0.5),
        at(0.99),
        latencies.len()
    ))
}

/// `--internal-zre-converge N K`: `zre-converge: nodes N keys K ms T`.
pub fn run_converge(count: usize, keys: usize, limit: Duration) -> Result<String, String> {
    if count < 2 || keys == 0 {
        return Err("at least 2 nodes and 1 key".into());
    }
    let deadline = Instant::now() + limit;
    let nodes = start_nodes(count, false)?;
    let timing = state::Timing {
        settle: Duration::from_millis(200),
        ..state::Timing::default()
    };
    let mut replicas = Vec::with_capacity(count);
    for node in &nodes {
        replicas.push(Replica::new(node, GROUP, "/", timing).map_err(|e| e.to_string())?);
    }
    let step = |replicas: &mut [Replica], n: usize, event: Event| -> Result<(), String> {
        replicas[n].handle(&event).map_err(|e| e.to_string())?;
        Ok(())
    };
    // Everyone knows everyone and has its (empty) snapshot; every event
    // goes to its replica.
    let mut seen: Vec<HashSet<Uuid>> = vec![HashSet::new(); count];
    while !(seen.iter().all(|s| s.len() == count - 1) && replicas.iter().all(Replica::is_synced)) {
        if Instant::now() >= deadline {
            return Err("no full mesh of synced replicas within the time limit".into());
        }
        for (n, event) in next_events(&nodes, Duration::from_millis(20))? {
            if let Event::Enter { peer, .. } = &event {
                seen[n].insert(*peer);
            }
            step(&mut replicas, n, event)?;
        }
        for replica in &mut replicas {
            replica.tick().map_err(|e| e.to_string())?;
        }
    }
    let started = Instant::now();
    for (n, replica) in replicas.iter_mut().enumerate() {
        for k in 0..keys {
            replica
                .set(&format!("/bench/{n}/{k}"), format!("value {n} {k}"))
                .map_err(|e| e.to_string())?;
        }
    }
    let total = count * keys;
    let converged = |replicas: &[Replica]| {
        let first = replicas[0].map().digest();
        replicas
            .iter()
            .all(|r| r.map().len() == total && r.map().digest() == first)
    };
    while !converged(&replicas) {
        if Instant::now() >= deadline {
            return Err("replicas did not converge within the time limit".into());
        }
        for (n, event) in next_events(&nodes, Duration::from_millis(20))? {
            step(&mut replicas, n, event)?;
        }
        for replica in &mut replicas {
            replica.tick().map_err(|e| e.to_string())?;
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(format!(
        "zre-converge: nodes {count} keys {keys} ms {ms:.1}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_in_name_order() {
        assert_eq!(mesh_line(&[12.5, 10.0]), Ok(12.5));
        assert!(mesh_line(&[]).is_err());
    }
}
