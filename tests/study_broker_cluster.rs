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
