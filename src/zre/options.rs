//! The command-line flags of a ZRE node, shared by `p2pchat`, `p2pmon` and
//! `p2pkv`: [`NodeOptions`] (flattened into each tool's clap arguments)
//! and [`NodeOptions::config`], which turns them into a [`NodeConfig`].
//!
//! Two ways to find peers: UDP beacons (the default: `--port`,
//! `--broadcast`, `--interval-ms`), or gossip (`--gossip-bind`,
//! `--gossip-connect`) where broadcast does not reach; with either gossip
//! flag the node sends no beacons (zyre's rule).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::curve::{self, Keys};
use crate::udp;
use crate::zre::node::{NodeCurve, DEFAULT_INTERVAL, DEFAULT_PORT};
use crate::zre::peer::{Timing, EVASIVE_TIMEOUT, EXPIRED_TIMEOUT};
use crate::zre::{Headers, NodeConfig};
use crate::Error;

/// The shortest interval and timeouts [`NodeOptions::config`] gives a node.
const FLOOR: Duration = Duration::from_millis(10);

/// How a ZRE node finds and watches its peers, as command-line flags
/// (`#[command(flatten)]` them into a tool's arguments).
#[derive(clap::Args, Debug, Clone)]
pub struct NodeOptions {
    /// The UDP port of the beacons (ZRE's 5670).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Where beacons go: an IPv4 broadcast address or an interface name.
    #[arg(long, default_value_t = udp::DEFAULT_BROADCAST.to_string())]
    pub broadcast: String,
    /// The address to bind our mailbox on (default: the interface whose
    /// broadcast address --broadcast is).
    #[arg(long)]
    pub interface: Option<Ipv4Addr>,
    /// A header for our HELLO, KEY=VALUE (repeat for several).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Milliseconds between two beacons.
    #[arg(long, default_value_t = DEFAULT_INTERVAL.as_millis() as u64)]
    pub interval_ms: u64,
    /// Silence, in ms, after which a peer is PINGed (zyre: 5000).
    #[arg(long, default_value_t = EVASIVE_TIMEOUT.as_millis() as u64)]
    pub evasive_ms: u64,
    /// Silence, in ms, after which a peer is gone (zyre: 30000).
    #[arg(long, default_value_t = EXPIRED_TIMEOUT.as_millis() as u64)]
    pub expired_ms: u64,
    /// Find peers by gossip, not beacons: run a zgossip server here
    /// (tcp://IP:PORT) for other nodes to connect to. With this flag or
    /// --gossip-connect the node sends no beacons (zyre's rule), and
    /// --interface should be an address the other hosts can reach (default
    /// in gossip mode: the address in --gossip-bind if it names one, else
    /// 127.0.0.1).
    #[arg(long, value_name = "ENDPOINT")]
    pub gossip_bind: Option<String>,
    /// Find peers by gossip, not beacons: connect to this zgossip server
    /// (repeat for several). With this flag or --gossip-bind the node sends
    /// no beacons (zyre's rule), and --interface should be an address the
    /// other hosts can reach (default in gossip mode: the address in
    /// --gossip-bind if it names one, else 127.0.0.1).
    #[arg(long, value_name = "ENDPOINT")]
    pub gossip_connect: Vec<String>,
    /// Encrypt and authenticate with CURVE (zyre's secure mode) under a new
    /// key pair: beacons of version 3, only peers that give a key. Plain
    /// ZRE v2 nodes and CURVE nodes do not see each other.
    #[arg(long)]
    pub curve: bool,
    /// CURVE with this key pair (a zcert file: `curvekeys` makes them;
    /// the `_secret` file or the public one beside it). Implies --curve.
    #[arg(long, value_name = "FILE")]
    pub curve_keys: Option<PathBuf>,
    /// CURVE, and only with the peers whose public key files are in DIR
    /// (ours need not be): we connect to no one else and let no one else
    /// in. Implies --curve.
    #[arg(long, value_name = "DIR")]
    pub curve_trust: Option<PathBuf>,
}

/// `KEY=VALUE` as a header.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: a header is KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?}: the header's KEY is empty"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The address of a gossip endpoint, `tcp://IP:PORT`; an error names the
/// flag it came from.
fn gossip_endpoint(flag: &str, endpoint: &str) -> Result<SocketAddr, Error> {
    endpoint
        .strip_prefix("tcp://")
        .and_then(|address| address.parse::<SocketAddr>().ok())
        .ok_or_else(|| {
            Error::Protocol(format!(
                "{flag} {endpoint:?}: a gossip endpoint is tcp://IP:PORT (e.g. tcp://10.99.0.1:5671)"
            ))
        })
}

impl NodeOptions {
    /// The node's settings from these flags, under `name` (`None`: the
    /// node's default, the first 6 hex digits of its UUID). The interval
    /// and timeouts are at least 10 ms. In gossip mode without
    /// `--interface`, the mailbox is bound on the IPv4 address of
    /// `--gossip-bind` when it names one (not `0.0.0.0`); else the node
    /// decides.
    pub fn config(&self, name: Option<String>) -> Result<NodeConfig, Error> {
        let broadcast = udp::broadcast_of(&self.broadcast).map_err(Error::Protocol)?;
        let bind = match &self.gossip_bind {
            Some(endpoint) => Some(gossip_endpoint("--gossip-bind", endpoint)?),
            None => None,
        };
        for endpoint in &self.gossip_connect {
            gossip_endpoint("--gossip-connect", endpoint)?;
        }
        // A --gossip-bind makes a gossip node: its address, if it names one,
        // is where the mailbox is reached.
        let interface = match (self.interface, bind.map(|b| b.ip())) {
            (Some(interface), _) => Some(interface),
            (None, Some(IpAddr::V4(ip))) if !ip.is_unspecified() => Some(ip),
            (None, _) => None,
        };
        Ok(NodeConfig {
            name,
            headers: self.headers.iter().cloned().collect::<Headers>(),
            port: self.port,
            broadcast,
            interval: Duration::from_millis(self.interval_ms).max(FLOOR),
            timing: Timing {
                evasive: Duration::from_millis(self.evasive_ms).max(FLOOR),
                expired: Duration::from_millis(self.expired_ms).max(FLOOR),
            },
            interface,
            gossip_bind: self.gossip_bind.clone(),
            gossip_connect: self.gossip_connect.clone(),
            curve: self.node_curve()?,
            ..NodeConfig::default()
        })
    }

    /// The CURVE settings of `--curve`, `--curve-keys`, `--curve-trust`.
    fn node_curve(&self) -> Result<Option<NodeCurve>, Error> {
        if !self.curve && self.curve_keys.is_none() && self.curve_trust.is_none() {
            return Ok(None);
        }
        let io = |what: &str, e: std::io::Error| Error::Protocol(format!("{what}: {e}"));
        let keys = match &self.curve_keys {
            Some(path) => {
                let mut keys = Keys::load(path).map_err(|e| io("--curve-keys", e))?;
                if keys.secret.is_none() {
                    keys = Keys::load(&curve::secret_path(path))
                        .map_err(|e| io("--curve-keys (its _secret file)", e))?;
                }
                keys
            }
            None => Keys::generate()?,
        };
        let trusted = match &self.curve_trust {
            Some(dir) => {
                let keys = curve::load_public_keys(dir).map_err(|e| io("--curve-trust", e))?;
                if keys.is_empty() {
                    return Err(Error::Protocol(format!(
                        "--curve-trust {}: no public key files there",
                        dir.display()
                    )));
                }
                Some(keys)
            }
            None => None,
        };
        Ok(Some(NodeCurve { keys, trusted }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        node: NodeOptions,
    }

    fn parse(args: &[&str]) -> Result<T, clap::Error> {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    fn config_from(args: &[&str]) -> Result<NodeConfig, Error> {
        parse(args).expect("flags parse").node.config(None)
    }

    #[test]
    fn defaults_give_a_beacon_node() {
        let config = config_from(&[]).unwrap();
        assert!(!config.gossip());
        assert_eq!(config.port, 5670);
        assert_eq!(config.broadcast, udp::DEFAULT_BROADCAST);
        assert_eq!(config.interval, DEFAULT_INTERVAL);
        assert_eq!(config.timing.evasive, EVASIVE_TIMEOUT);
        assert_eq!(config.timing.expired, EXPIRED_TIMEOUT);
        assert_eq!(config.interface, None);
        assert!(config.headers.is_empty());
        assert_eq!(config.name, None);
    }

    #[test]
    fn flags_set_the_beacon_settings_with_a_floor_on_durations() {
        let config = parse(&[
            "--port",
            "5999",
            "--broadcast",
            "10.1.2.255",
            "--interface",
            "10.1.2.3",
            "--header",
            "X-A=1",
            "--header",
            "X-B=tcp://h:2",
            "--interval-ms",
            "1",
            "--evasive-ms",
            "200",
            "--expired-ms",
            "0",
        ])
        .unwrap()
        .node
        .config(Some("ann".into()))
        .unwrap();
        assert_eq!(config.name.as_deref(), Some("ann"));
        assert_eq!(config.port, 5999);
        assert_eq!(config.broadcast, Ipv4Addr::new(10, 1, 2, 255));
        assert_eq!(config.interface, Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(config.headers["X-A"], "1");
        assert_eq!(config.headers["X-B"], "tcp://h:2");
        assert_eq!(config.interval, FLOOR);
        assert_eq!(config.timing.evasive, Duration::from_millis(200));
        assert_eq!(config.timing.expired, FLOOR);
        assert!(!config.gossip());
    }

    #[test]
    fn gossip_flags_give_a_gossip_node_bound_on_the_gossip_address() {
        let config = config_from(&[
            "--gossip-bind",
            "tcp://10.99.0.1:5671",
            "--gossip-connect",
            "tcp://10.99.0.2:5671",
            "--gossip-connect",
            "tcp://10.99.0.3:5672",
        ])
        .unwrap();
        assert!(config.gossip());
        assert_eq!(config.gossip_bind.as_deref(), Some("tcp://10.99.0.1:5671"));
        assert_eq!(
            config.gossip_connect,
            vec!["tcp://10.99.0.2:5671", "tcp://10.99.0.3:5672"]
        );
        assert_eq!(config.interface, Some(Ipv4Addr::new(10, 99, 0, 1)));
    }

    #[test]
    fn gossip_interface_is_left_to_the_node_or_to_the_flag() {
        // Connect only: nothing names an address.
        let config = config_from(&["--gossip-connect", "tcp://10.99.0.2:5671"]).unwrap();
        assert!(config.gossip());
        assert_eq!(config.gossip_bind, None);
        assert_eq!(config.interface, None);
        // Bound on every interface: not an address to be reached at.
        let config = config_from(&["--gossip-bind", "tcp://0.0.0.0:5671"]).unwrap();
        assert_eq!(config.interface, None);
        // --interface wins.
        let config = config_from(&[
            "--gossip-bind",
            "tcp://10.99.0.1:5671",
            "--interface",
            "10.99.0.7",
        ])
        .unwrap();
        assert_eq!(config.interface, Some(Ipv4Addr::new(10, 99, 0, 7)));
    }

    #[test]
    fn bad_gossip_endpoints_are_refused_naming_the_flag() {
        for bad in [
            "10.0.0.1:5",
            "tcp://host:5",
            "tcp://1.2.3.4",
            "udp://1.2.3.4:5",
            "",
        ] {
            for flag in ["--gossip-bind", "--gossip-connect"] {
                match config_from(&[flag, bad]) {
                    Err(Error::Protocol(text)) => {
                        assert!(text.contains(flag), "{text}");
                        assert!(text.contains(&format!("{bad:?}")), "{text}");
                    }
                    other => panic!("{flag} {bad:?}: {other:?}"),
                }
            }
        }
        // One bad seed among good ones is enough.
        let refused = config_from(&[
            "--gossip-connect",
            "tcp://10.0.0.1:5",
            "--gossip-connect",
            "tcp://nowhere:5",
        ]);
        assert!(matches!(refused, Err(Error::Protocol(t)) if t.contains("tcp://nowhere:5")));
    }

    #[test]
    fn headers_are_key_equals_value() {
        assert_eq!(
            parse_header("X-FILEMQ=tcp://1.2.3.4:5"),
            Ok(("X-FILEMQ".into(), "tcp://1.2.3.4:5".into()))
        );
        assert_eq!(parse_header("K="), Ok(("K".into(), String::new())));
        assert!(parse_header("nokey").is_err());
        assert!(parse_header("=v").is_err());
        let refused = parse(&["--header", "nokey"]).unwrap_err();
        assert!(refused.to_string().contains("KEY=VALUE"), "{refused}");
    }

    #[test]
    fn a_gossip_bind_alone_makes_a_gossip_node_bound_on_its_address() {
        let config = config_from(&["--gossip-bind", "tcp://10.99.0.1:5671"]).unwrap();
        assert!(config.gossip());
        assert_eq!(config.interface, Some(Ipv4Addr::new(10, 99, 0, 1)));
    }

    #[test]
    fn curve_flags_give_keys_and_a_trust_list() {
        use std::collections::HashSet;
        let dir = std::env::temp_dir().join(format!("zguide-zre-options-{}", std::process::id()));
        let trust = dir.join("trust");
        std::fs::create_dir_all(&trust).unwrap();
        let ours = Keys::generate().unwrap();
        let ours_path = dir.join("node.key");
        ours.save(&ours_path).unwrap();
        let friend = Keys::generate().unwrap();
        friend.save(&trust.join("friend.key")).unwrap();

        assert!(
            config_from(&[]).unwrap().curve.is_none(),
            "plain by default"
        );
        let fresh = config_from(&["--curve"]).unwrap().curve.expect("--curve");
        assert!(fresh.keys.secret.is_some() && fresh.trusted.is_none());
        // The public file names the pair: the secret comes from beside it.
        for path in [&ours_path, &curve::secret_path(&ours_path)] {
            let path = path.to_str().unwrap();
            let loaded = config_from(&["--curve-keys", path])
                .unwrap()
                .curve
                .expect("keys");
            assert_eq!(loaded.keys, ours);
        }
        let trusted = config_from(&["--curve-trust", trust.to_str().unwrap()])
            .unwrap()
            .curve
            .expect("--curve-trust implies --curve");
        assert_eq!(trusted.trusted, Some(HashSet::from([friend.public])));
        assert_ne!(trusted.keys.public, friend.public, "a key pair of our own");
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let refused = config_from(&["--curve-trust", empty.to_str().unwrap()]);
        assert!(matches!(refused, Err(Error::Protocol(why)) if why.contains("no public key")));
        let missing = config_from(&["--curve-keys", dir.join("none").to_str().unwrap()]);
        assert!(matches!(missing, Err(Error::Protocol(why)) if why.starts_with("--curve-keys")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
