//! A simulated LAN of several hosts, for what one loopback cannot show
//! honestly: UDP broadcast discovery, peers on different addresses, a host
//! that drops off the network.
//!
//! ```text
//!   host 0 (10.99.0.1)   host 1 (10.99.0.2)   host 2 (10.99.0.3)
//!        eth0                 eth0                 eth0
//!         │ veth               │ veth               │ veth
//!   ┌─────┴────────────────────┴────────────────────┴─────┐
//!   │ hub namespace: bridge br0 (no address, no routing)   │
//!   └──────────────────────────────────────────────────────┘
//! ```
//!
//! Each host is a [`Scenario`] of its own (a private network namespace and
//! working directory), so it runs the project's binaries with the same output
//! capture, `expect`, kill and restart; its `eth0` is one end of a veth pair
//! whose other end is plugged into a bridge in a separate hub namespace. The
//! hosts share the private subnet [`SUBNET`]`.0/24` (broadcast
//! [`BROADCAST`]), so a UDP broadcast from one host reaches every other
//! host, and nothing leaves the test: the hub has no uplink. Everything is
//! made with `ip` inside namespaces owned by the test process (root, or root of
//! its own user namespace as an ordinary user), and disappears with the
//! holder processes when the network is dropped, even after a panic.

use super::{run_in_namespace_of, Scenario};

/// The first three octets of the hosts' addresses.
pub const SUBNET: &str = "10.99.0";
/// The subnet's broadcast address.
pub const BROADCAST: &str = "10.99.0.255";

/// Several hosts on one bridge. See the module docs.
pub struct Network {
    hub: Scenario,
    hosts: Vec<Scenario>,
}

impl Network {
    /// `count` hosts named `<name>-host<i>`, addressed `10.99.0.<i + 1>`,
    /// all up and joined by the hub's bridge.
    pub fn new(name: &str, count: usize) -> Network {
        assert!((1..=250).contains(&count), "1 to 250 hosts");
        let hub = Scenario::new(&format!("{name}-hub"));
        hub.run_in_namespace("ip", &["link", "add", "br0", "type", "bridge"]);
        hub.run_in_namespace("ip", &["link", "set", "br0", "up"]);
        // A second, empty bridge: where `split` moves half the hosts.
        hub.run_in_namespace("ip", &["link", "add", "br1", "type", "bridge"]);
        hub.run_in_namespace("ip", &["link", "set", "br1", "up"]);
        let mut hosts = Vec::with_capacity(count);
        for index in 0..count {
            let host = Scenario::new(&format!("{name}-host{index}"));
            let port = format!("port{index}");
            let host_ns = host.namespace_pid().to_string();
            // One veth pair: `port<i>` stays in the hub, `eth0` moves to the host.
            hub.run_in_namespace(
                "ip",
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &host_ns,
                ],
            );
            hub.run_in_namespace("ip", &["link", "set", &port, "master", "br0"]);
            hub.run_in_namespace("ip", &["link", "set", &port, "up"]);
            let address = format!("{}/24", Network::address_of(index));
            host.run_in_namespace(
                "ip",
                &[
                    "addr",
                    "add",
                    &address,
                    "broadcast",
                    BROADCAST,
                    "dev",
                    "eth0",
                ],
            );
            host.run_in_namespace("ip", &["link", "set", "eth0", "up"]);
            hosts.push(host);
        }
        Network { hub, hosts }
    }

    /// The IPv4 address of host `index`.
    pub fn address_of(index: usize) -> String {
        format!("{SUBNET}.{}", index + 1)
    }

    /// Host `index`, to start programs on (`net.host(0).start(…)`).
    pub fn host(&mut self, index: usize) -> &mut Scenario {
        &mut self.hosts[index]
    }

    /// All hosts.
    pub fn hosts(&mut self) -> &mut [Scenario] {
        &mut self.hosts
    }

    /// Unplugs host `index` from the bridge (its link goes down), as if its
    /// cable were pulled: it neither sends to nor hears the others.
    pub fn unplug(&self, index: usize) {
        self.set_port(index, "down");
    }

    /// Plugs host `index` back in.
    pub fn plug(&self, index: usize) {
        self.set_port(index, "up");
    }

    /// Splits the LAN in two: the hosts in `side` move to a second bridge,
    /// so each half still hears itself and nothing of the other (a cut
    /// between two switches, not a pulled cable). [`heal`](Network::heal)
    /// joins them again.
    pub fn split(&self, side: &[usize]) {
        let hub = self.hub.namespace_pid();
        for index in side {
            let port = format!("port{index}");
            run_in_namespace_of(hub, "ip", &["link", "set", &port, "master", "br1"]);
        }
    }

    /// Puts every host back on the one bridge after [`split`](Network::split).
    pub fn heal(&self) {
        let hub = self.hub.namespace_pid();
        for index in 0..self.hosts.len() {
            let port = format!("port{index}");
            run_in_namespace_of(hub, "ip", &["link", "set", &port, "master", "br0"]);
        }
    }

    fn set_port(&self, index: usize, state: &str) {
        let port = format!("port{index}");
        run_in_namespace_of(
            self.hub.namespace_pid(),
            "ip",
            &["link", "set", &port, state],
        );
    }

    /// Every host's report, for failure messages.
    pub fn report(&self) -> String {
        self.hosts.iter().map(Scenario::report).collect()
    }
}
