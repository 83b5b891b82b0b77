//! The study's broker across machines (study part 3): brokers on separate
//! simulated hosts (`tests/common/network.rs`), joined by peering, and a
//! Binary Star pair that clients and workers follow. Real processes, each
//! host its own network namespace on one bridge; every wait bounded.

mod common;

use std::time::Instant;

use common::network::Network;
use common::{secs, Pid, Scenario};

fn endpoint(host: usize) -> String {
    format!("tcp://{}:5555", Network::address_of(host))
}

fn start_broker(host: &mut Scenario, args: &[&str]) -> Pid {
    let broker = host.start("broker", bin!("broker"), args);
    host.expect(broker, "broker is active at", secs(30));
    broker
}

/// The `peer …` lines of `brokerctl services` on this host's broker.
fn peer_lines(host: &mut Scenario) -> String {
    let ctl = host.start("brokerctl", bin!("brokerctl"), &["services"]);
    assert_eq!(host.wait_exit(ctl, secs(10)), 0, "{}", host.report());
    host.lines(ctl)
        .into_iter()
        .filter(|line| line.starts_with("peer "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Three brokers on three hosts, each peering with the other two, every
/// service `forward`; the only worker is on host C. A client on host A is
/// served through forwarding; when C's broker dies, a request in flight
/// there is answered 500 within the peer TTL and a new one 503 at once (not
/// a hang); when it comes back, replies resume.
#[test]
fn requests_cross_one_peering_link_and_a_dead_peer_is_an_answer_not_a_hang() {
    let mut net = Network::new("peering", 3);
    let mut brokers = Vec::new();
    for host in 0..3 {
        let peers: Vec<String> = (0..3)
            .filter(|&other| other != host)
            .flat_map(|other| ["--peer".to_string(), endpoint(other)])
            .collect();
        let mut args: Vec<&str> = vec!["--default-policy", "forward"];
        args.extend(peers.iter().map(String::as_str));
        brokers.push(start_broker(net.host(host), &args));
    }
    let (a, c) = (brokers[0], brokers[2]);
    let worker = net
        .host(2)
        .start("worker", bin!("broker-worker"), &["--verbose", "echo"]);
    let slow = net.host(2).start(
        "slow worker",
        bin!("broker-worker"),
        &["--verbose", "--delay-ms", "30000", "slow"],
    );
    let c_serves = format!("peer {} has workers for 2 services", endpoint(2));
    net.host(0).expect(a, &c_serves, secs(20));

    // Forwarded: A has no worker, C has; replies come back through A.
    let client = net.host(0).start(
        "client",
        bin!("broker-client"),
        &["--requests", "5", "echo", "hello"],
    );
    for n in 1..=5 {
        net.host(0)
            .expect(client, &format!("{n} 200 hello"), secs(10));
    }
    assert_eq!(net.host(0).wait_exit(client, secs(10)), 0);
    net.host(2).expect_count(worker, "I: request", 5, secs(5));
    // What each broker says about its links: A forwarded the five to C;
    // B and C forwarded nothing (C served them; a request crosses one link
    // at most).
    let a_links = peer_lines(net.host(0));
    assert!(
        a_links.contains(&format!(
            "peer {} alive services=2 outstanding=0 forwarded=5",
            endpoint(2)
        )),
        "{a_links}"
    );
    assert!(
        a_links.contains(&format!("peer {} alive services=0", endpoint(1))),
        "{a_links}"
    );
    for host in [1, 2] {
        let links = peer_lines(net.host(host));
        assert_eq!(
            links.matches("forwarded=0").count(),
            2,
            "host {host}: {links}"
        );
    }

    // A request in flight at C when C's broker dies: answered 500 after
    // the peer TTL (3 s), not left hanging.
    let waiting = net.host(0).start(
        "waiting client",
        bin!("broker-client"),
        &["--timeout-ms", "60000", "--retries", "1", "slow"],
    );
    net.host(2).expect(slow, "I: request", secs(10));
    net.host(2).kill(c);
    let killed = Instant::now();
    let line = net.host(0).expect(waiting, "1 500", secs(10));
    let waited = killed.elapsed();
    assert!(line.contains("peer broker gone"), "{line}");
    assert!(
        waited < secs(6),
        "answered {waited:?} after the kill (TTL 3 s)"
    );
    println!("in-flight request answered 500 {waited:?} after its peer died");
    // A new request: 503 at once, there is nobody to forward to.
    let refused = net
        .host(0)
        .start("refused client", bin!("broker-client"), &["echo"]);
    let line = net.host(0).expect(refused, "1 503", secs(10));
    assert!(line.contains("no workers here or at any peer"), "{line}");
    assert_eq!(net.host(0).wait_exit(refused, secs(10)), 1);

    // C comes back; its workers register again; A sees it and forwards.
    net.host(2).restart(c);
    net.host(2).expect(c, "broker is active at", secs(30));
    net.host(0).expect(
        a,
        &format!("peer {} has workers for", endpoint(2)),
        secs(30),
    );
    let again = net
        .host(0)
        .start("client again", bin!("broker-client"), &["echo", "again"]);
    net.host(0).expect(again, "1 200 again", secs(10));
    assert_eq!(net.host(0).wait_exit(again, secs(10)), 0);
}

fn pair_endpoint(host: usize) -> String {
    format!("tcp://{}:5556", Network::address_of(host))
}

/// A Binary Star pair on hosts 0 (primary) and 1 (backup), both up and
/// settled: the primary active, the backup passive and in step.
fn start_pair(net: &mut Network) -> (Pid, Pid) {
    let primary_peer = pair_endpoint(1);
    let primary = start_broker(
        net.host(0),
        &["--pair", "primary", "--pair-connect", &primary_peer],
    );
    let backup_peer = pair_endpoint(0);
    let backup = start_broker(
        net.host(1),
        &["--pair", "backup", "--pair-connect", &backup_peer],
    );
    net.host(0).expect(
        primary,
        "connected to backup (passive), ready as active",
        secs(20),
    );
    net.host(1).expect(
        backup,
        "connected to primary (active), ready as passive",
        secs(20),
    );
    net.host(1)
        .expect(backup, "in step with the active peer", secs(20));
    (primary, backup)
}

/// Workers on host 2 that know both brokers.
fn start_pair_workers(net: &mut Network, count: usize) -> Vec<Pid> {
    let (primary, backup) = (endpoint(0), endpoint(1));
    (0..count)
        .map(|n| {
            let worker = net.host(2).start(
                &format!("worker {n}"),
                bin!("broker-worker"),
                &["--connect", &primary, "--connect", &backup, "echo"],
            );
            net.host(2).expect(worker, "I: worker ready", secs(20));
            worker
        })
        .collect()
}

/// Each correlation id 1..=count answered 200 exactly once in the client's
/// output (one line per reply: `<correlation> 200 <body>`).
fn assert_each_answered_once(output: &str, count: usize) {
    let mut seen = vec![0usize; count + 1];
    for line in output.lines() {
        let mut words = line.split_whitespace();
        if let (Some(id), Some("200")) = (words.next(), words.next()) {
            if let Ok(id) = id.parse::<usize>() {
                if (1..=count).contains(&id) {
                    seen[id] += 1;
                }
            }
        }
    }
    let wrong: Vec<(usize, usize)> = seen
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, n)| **n != 1)
        .map(|(id, n)| (id, *n))
        .take(20)
        .collect();
    assert!(
        wrong.is_empty(),
        "(id, times answered): {wrong:?}\n{output}"
    );
}

/// Waits (bounded, by asking the broker) until `service` has `count`
/// requests queued at the broker at `broker`.
fn wait_for_queued(host: &mut Scenario, broker: &str, service: &str, count: usize) {
    let deadline = Instant::now() + secs(20);
    for attempt in 0.. {
        let ctl = host.start(
            &format!("brokerctl {attempt}"),
            bin!("brokerctl"),
            &["--connect", broker, "services"],
        );
        assert_eq!(host.wait_exit(ctl, secs(10)), 0, "{}", host.report());
        let queued = host.lines(ctl).iter().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.get(1) == Some(&service) && words.get(4) == Some(&count.to_string().as_str())
        });
        if queued {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {count} never queued\n{}",
            host.report()
        );
    }
}

/// The failover pair under a stream of 1,000 requests: SIGKILL the active
/// at a random moment; the backup takes over when the client, silent 6 s,
/// comes to it, and serves the replica it kept; every request is answered
/// exactly once; the failover time stays under the 12 s bound; the old
/// active comes back as passive, never as a second active.
#[test]
fn a_pair_fails_over_under_load_and_the_old_active_returns_passive() {
    let mut net = Network::new("pair", 3);
    let (primary, backup) = start_pair(&mut net);
    start_pair_workers(&mut net, 2);
    let (first, second) = (endpoint(0), endpoint(1));
    // Twenty requests for a service with no worker yet: queued at the
    // active broker, and replicated to the passive one.
    let later = net.host(2).start(
        "later client",
        bin!("broker-client"),
        &[
            "--connect",
            &first,
            "--connect",
            &second,
            "--async",
            "--requests",
            "20",
            "--timeout-ms",
            "5000",
            "--retries",
            "10",
            "later",
        ],
    );
    wait_for_queued(net.host(2), &first, "later", 20);
    let client = net.host(2).start(
        "client",
        bin!("broker-client"),
        &[
            "--connect",
            &first,
            "--connect",
            &second,
            "--requests",
            "1000",
            "--interval-ms",
            "5",
            "--retries",
            "5",
            "echo",
            "hello",
        ],
    );
    let kill_after = 50 + rand::random::<u64>() % 450;
    net.host(2)
        .expect(client, &format!("{kill_after} 200 hello"), secs(60));
    net.host(0).kill(primary);
    println!("primary killed after reply {kill_after}");
    net.host(1)
        .expect(backup, "failover successful, ready as active", secs(30));
    net.host(2)
        .expect(client, &format!("failing over to {second}"), secs(30));
    assert_eq!(
        net.host(2).wait_exit(client, secs(120)),
        0,
        "{}",
        net.report()
    );
    let output = net.host(2).output(client);
    assert_each_answered_once(&output, 1000);
    // The failover time as the client saw it, within the documented bound.
    let line = output
        .lines()
        .find(|l| l.contains("first reply from"))
        .unwrap_or_else(|| panic!("no failover time printed:\n{output}"));
    println!("{line}");
    let ms: u64 = line
        .split_whitespace()
        .nth(5)
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {line:?}"));
    assert!(ms < 12_000, "failover took {ms} ms, over the 12 s bound");
    // The new active served the replica: the twenty queued requests at
    // least (and any request of the stream that was in flight).
    let taken = net.host(1).expect(backup, "replicated requests", secs(5));
    let served: usize = taken
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or(0);
    assert!(served >= 20, "{taken}");
    // Their worker comes now: each of the twenty is answered once.
    net.host(2).start(
        "later worker",
        bin!("broker-worker"),
        &["--connect", &first, "--connect", &second, "later"],
    );
    assert_eq!(
        net.host(2).wait_exit(later, secs(60)),
        0,
        "{}",
        net.report()
    );
    let summary = net.host(2).output(later);
    assert!(summary.contains("replies 20 ok 20"), "{summary}");

    // The old active comes back: it hears an active backup and goes
    // passive, gets in step, and never serves beside it.
    net.host(0).restart(primary);
    net.host(0).expect(
        primary,
        "connected to backup (active), ready as passive",
        secs(20),
    );
    net.host(0)
        .expect(primary, "in step with the active peer", secs(20));
    let again = net.host(2).start(
        "client again",
        bin!("broker-client"),
        &[
            "--connect",
            &first,
            "--connect",
            &second,
            "--requests",
            "3",
            "echo",
            "again",
        ],
    );
    assert_eq!(
        net.host(2).wait_exit(again, secs(60)),
        0,
        "{}",
        net.report()
    );
    let restarted = net.host(0).output(primary);
    let after = restarted.rsplit("--- restarted ---").next().unwrap_or("");
    assert!(!after.contains("ready as active"), "{after}");
    assert!(!after.contains("fatal"), "{after}");
}

/// A partition: the backup's host is cut off (its cable pulled) for longer
/// than the peer timeout while clients, on the primary's side, keep asking.
/// The backup hears neither its peer nor any client vote, so it stays
/// passive; plugged back in, it hears the active primary: never two actives,
/// and the clients never notice.
#[test]
fn a_partitioned_backup_without_client_votes_stays_passive() {
    let mut net = Network::new("split", 3);
    let (primary, backup) = start_pair(&mut net);
    start_pair_workers(&mut net, 1);
    let (first, second) = (endpoint(0), endpoint(1));
    let client = net.host(2).start(
        "client",
        bin!("broker-client"),
        &[
            "--connect",
            &first,
            "--connect",
            &second,
            "--requests",
            "600",
            "--interval-ms",
            "10",
            "echo",
            "hello",
        ],
    );
    net.host(2).expect(client, "50 200 hello", secs(60));
    net.unplug(1);
    // 300 replies at 10 ms apart: more than the peer timeout (2 s).
    net.host(2).expect(client, "350 200 hello", secs(60));
    net.plug(1);
    assert_eq!(
        net.host(2).wait_exit(client, secs(60)),
        0,
        "{}",
        net.report()
    );
    assert_each_answered_once(&net.host(2).output(client), 600);
    // Plugged back: the backup hears the primary again and stays passive.
    let backup_output = net.host(1).output(backup);
    assert!(
        !backup_output.contains("ready as active"),
        "{backup_output}"
    );
    assert!(
        !net.host(0).output(primary).contains("fatal"),
        "{}",
        net.report()
    );
    assert!(!backup_output.contains("fatal"), "{backup_output}");
    assert!(net.host(1).is_running(backup) && net.host(0).is_running(primary));
}

/// The two scenario files of part 3, run by the real runner on loopback.
#[test]
fn the_peering_scenario_runs_to_its_end() {
    let (sc, runner) = common::runs::run_to_the_end("broker-peering", &[], 60);
    let output = sc.output(runner);
    assert!(
        output.contains("sent 1000 replies 1000 ok 1000 failed 0 gave-up 0"),
        "{output}"
    );
}

#[test]
fn the_pair_scenario_fails_over_and_runs_to_its_end() {
    let (sc, runner) = common::runs::run_to_the_end("broker-pair", &[], 120);
    let output = sc.output(runner);
    assert!(
        output.contains("failover successful, ready as active"),
        "{output}"
    );
    assert!(
        output.contains("I: first reply from tcp://127.0.0.1:5565"),
        "{output}"
    );
    let answered = common::runs::count(&sc, runner, " 200 hello");
    assert_eq!(answered, 2500, "{output}");
    assert!(!output.contains("gave-up"), "{output}");
}
