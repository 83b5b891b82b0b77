//! Simulated LANs of several hosts, for what one loopback cannot show
//! honestly: UDP broadcast discovery, peers on different addresses, a host
//! that drops off the network, peers on different subnets behind a router.
//!
//! Two topologies. [`Network::new`] makes one LAN:
//!
//! ```text
//!   host 0 (10.99.0.1)   host 1 (10.99.0.2)   host 2 (10.99.0.3)
//!        eth0                 eth0                 eth0
//!         │ veth port0         │ veth port1         │ veth port2
//!   ┌─────┴────────────────────┴────────────────────┴─────┐
//!   │ hub namespace: bridge br0 (no address, no routing)  │
//!   │                bridge br1 (empty; used by `split`)  │
//!   └─────────────────────────────────────────────────────┘
//! ```
//!
//! [`Network::two_lans`] makes two LANs joined by a router (the hub itself),
//! so unicast (TCP, UDP) crosses between them but a UDP broadcast stays on
//! its own LAN:
//!
//! ```text
//!   host 0 (10.99.0.1)   host 1 (10.99.0.2)    host 2 (10.99.1.1)
//!        eth0                 eth0                  eth0
//!         │ veth porta0        │ veth porta1         │ veth portb0
//!   ┌─────┴────────────────────┴──────┐      ┌───────┴────────────────────┐
//!   │ LAN A: bridge br0               │      │ LAN B: bridge br1          │
//!   │ 10.99.0.254/24, bcast .255      ├──────┤ 10.99.1.254/24, bcast .255 │
//!   └─────────────────────────────────┘      └────────────────────────────┘
//!   hub namespace: routes between br0 and br1 (ip_forward = 1);
//!   each host's default route is via its LAN's .254
//! ```
//!
//! Each host is a [`Scenario`] of its own (a private network namespace and
//! working directory), so it runs the project's binaries with the same output
//! capture, `expect`, kill and restart; its `eth0` is one end of a veth pair
//! whose other end (its *port*) is plugged into a bridge in a separate hub
//! namespace. On one LAN the hosts share the private subnet [`SUBNET`]`.0/24`
//! (broadcast [`BROADCAST`]), so a UDP broadcast from one host reaches every
//! other host; with two LANs the second one is [`SUBNET_B`]`.0/24` (broadcast
//! [`BROADCAST_B`]), and [`Network::address`] and [`Network::broadcast`] say
//! which host has which. Nothing leaves the test: the hub has no uplink.
//! Everything is made with `ip` inside namespaces owned by the test process
//! (root, or root of its own user namespace as an ordinary user), and
//! disappears with the holder processes when the network is dropped, even
//! after a panic.

use super::{run_in_namespace_of, Scenario};

/// The first three octets of the hosts' addresses (of LAN A with two LANs).
pub const SUBNET: &str = "10.99.0";
/// The subnet's broadcast address.
pub const BROADCAST: &str = "10.99.0.255";
/// The first three octets of LAN B's addresses ([`Network::two_lans`]).
pub const SUBNET_B: &str = "10.99.1";
/// LAN B's broadcast address.
pub const BROADCAST_B: &str = "10.99.1.255";

/// The last octet of the router's address on each LAN ([`Network::two_lans`]).
const ROUTER: u8 = 254;

/// Hosts on one bridge, or on two bridges joined by a router. See the module
/// docs.
pub struct Network {
    hub: Scenario,
    hosts: Vec<Scenario>,
    /// Per host: the name of its veth end in the hub (what `unplug` downs).
    ports: Vec<String>,
    /// Per host: its IPv4 address.
    addresses: Vec<String>,
    /// Per host: its LAN's broadcast address.
    broadcasts: Vec<String>,
    /// Two LANs and a router ([`Network::two_lans`]): no `split`/`heal`.
    routed: bool,
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
        let mut net = Network::empty(hub, false);
        for index in 0..count {
            net.add_host(
                name,
                index,
                &format!("port{index}"),
                "br0",
                &Network::address_of(index),
                BROADCAST,
                None,
            );
        }
        net
    }

    /// Two LANs joined by a router: hosts `0..first` on LAN A (bridge `br0`,
    /// addresses `10.99.0.1`…, broadcast [`BROADCAST`]) and hosts
    /// `first..first + second` on LAN B (bridge `br1`, addresses `10.99.1.1`…,
    /// broadcast [`BROADCAST_B`]). The hub namespace is the router: `br0` is
    /// `10.99.0.254/24`, `br1` is `10.99.1.254/24`, IPv4 forwarding is on,
    /// and every host's default route goes via its LAN's `.254`. So unicast
    /// crosses between the LANs and broadcasts do not (a router does not
    /// forward them). Hosts are named `<name>-host<i>` with `i` counted over
    /// both LANs; use [`address`](Network::address) and
    /// [`broadcast`](Network::broadcast), not
    /// [`address_of`](Network::address_of), for their addresses.
    /// [`unplug`](Network::unplug)/[`plug`](Network::plug) work;
    /// [`split`](Network::split)/[`heal`](Network::heal) do not (they panic).
    pub fn two_lans(name: &str, first: usize, second: usize) -> Network {
        assert!((1..=250).contains(&first), "1 to 250 hosts on LAN A");
        assert!((1..=250).contains(&second), "1 to 250 hosts on LAN B");
        let hub = Scenario::new(&format!("{name}-hub"));
        for (bridge, subnet) in [("br0", SUBNET), ("br1", SUBNET_B)] {
            let router = format!("{subnet}.{ROUTER}/24");
            hub.run_in_namespace("ip", &["link", "add", bridge, "type", "bridge"]);
            hub.run_in_namespace("ip", &["addr", "add", &router, "dev", bridge]);
            hub.run_in_namespace("ip", &["link", "set", bridge, "up"]);
        }
        // Per network namespace; written through nsenter, so /proc/sys/net is
        // the hub's. Works as root and as root of the test's user namespace
        // (which owns the hub's network namespace).
        hub.run_in_namespace("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        let mut net = Network::empty(hub, true);
        for index in 0..first + second {
            let (lan, local, bridge, subnet, broadcast) = if index < first {
                ("a", index, "br0", SUBNET, BROADCAST)
            } else {
                ("b", index - first, "br1", SUBNET_B, BROADCAST_B)
            };
            net.add_host(
                name,
                index,
                &format!("port{lan}{local}"),
                bridge,
                &format!("{subnet}.{}", local + 1),
                broadcast,
                Some(&format!("{subnet}.{ROUTER}")),
            );
        }
        net
    }

    fn empty(hub: Scenario, routed: bool) -> Network {
        Network {
            hub,
            hosts: Vec::new(),
            ports: Vec::new(),
            addresses: Vec::new(),
            broadcasts: Vec::new(),
            routed,
        }
    }

    /// Makes host `index` with its `eth0` at `address/24` and its other veth
    /// end, `port`, on the hub's `bridge`; with a `gateway`, a default route
    /// via it.
    #[allow(clippy::too_many_arguments)]
    fn add_host(
        &mut self,
        name: &str,
        index: usize,
        port: &str,
        bridge: &str,
        address: &str,
        broadcast: &str,
        gateway: Option<&str>,
    ) {
        let host = Scenario::new(&format!("{name}-host{index}"));
        let host_ns = host.namespace_pid().to_string();
        // One veth pair: `port` stays in the hub, `eth0` moves to the host.
        self.hub.run_in_namespace(
            "ip",
            &[
                "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &host_ns,
            ],
        );
        self.hub
            .run_in_namespace("ip", &["link", "set", port, "master", bridge]);
        self.hub
            .run_in_namespace("ip", &["link", "set", port, "up"]);
        let cidr = format!("{address}/24");
        host.run_in_namespace(
            "ip",
            &["addr", "add", &cidr, "broadcast", broadcast, "dev", "eth0"],
        );
        host.run_in_namespace("ip", &["link", "set", "eth0", "up"]);
        if let Some(gateway) = gateway {
            host.run_in_namespace("ip", &["route", "add", "default", "via", gateway]);
        }
        self.hosts.push(host);
        self.ports.push(port.to_string());
        self.addresses.push(address.to_string());
        self.broadcasts.push(broadcast.to_string());
    }

    /// The IPv4 address of host `index` on a one-LAN network
    /// ([`Network::new`]); [`address`](Network::address) works for both.
    pub fn address_of(index: usize) -> String {
        format!("{SUBNET}.{}", index + 1)
    }

    /// The IPv4 address of host `index`, in either topology.
    pub fn address(&self, index: usize) -> String {
        self.addresses[index].clone()
    }

    /// The broadcast address of host `index`'s LAN, in either topology.
    pub fn broadcast(&self, index: usize) -> String {
        self.broadcasts[index].clone()
    }

    /// Host `index`, to start programs on (`net.host(0).start(…)`).
    pub fn host(&mut self, index: usize) -> &mut Scenario {
        &mut self.hosts[index]
    }

    /// All hosts.
    pub fn hosts(&mut self) -> &mut [Scenario] {
        &mut self.hosts
    }

    /// Unplugs host `index` from its bridge (its link goes down), as if its
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
    /// joins them again. One-LAN networks ([`Network::new`]) only.
    pub fn split(&self, side: &[usize]) {
        self.assert_one_lan("split");
        let hub = self.hub.namespace_pid();
        for &index in side {
            let port = &self.ports[index];
            run_in_namespace_of(hub, "ip", &["link", "set", port, "master", "br1"]);
        }
    }

    /// Puts every host back on the one bridge after [`split`](Network::split).
    /// One-LAN networks ([`Network::new`]) only.
    pub fn heal(&self) {
        self.assert_one_lan("heal");
        let hub = self.hub.namespace_pid();
        for port in &self.ports {
            run_in_namespace_of(hub, "ip", &["link", "set", port, "master", "br0"]);
        }
    }

    fn assert_one_lan(&self, what: &str) {
        assert!(
            !self.routed,
            "Network::{what} is for a one-LAN network (Network::new), not two_lans"
        );
    }

    fn set_port(&self, index: usize, state: &str) {
        run_in_namespace_of(
            self.hub.namespace_pid(),
            "ip",
            &["link", "set", &self.ports[index], state],
        );
    }

    /// Every host's report, for failure messages.
    pub fn report(&self) -> String {
        self.hosts.iter().map(Scenario::report).collect()
    }
}
