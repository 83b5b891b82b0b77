//! The simulated LAN of `tests/common/network.rs` itself: hosts on one
//! bridge hear each other's UDP broadcasts and unicasts, and a host that is
//! unplugged stops hearing them. Later chapters (UDP discovery, P2P, broker
//! peering) rely on exactly this.

mod common;
use common::network::{Network, BROADCAST};
use common::{ms, secs};

use std::net::UdpSocket;
use std::time::Instant;

/// Sends `count` broadcasts from host `from` and returns, per host, whether a
/// socket bound there heard at least one (each host listens on port 9999).
fn broadcast_round(net: &mut Network, from: usize, tag: &str) -> Vec<bool> {
    let count = net.hosts().len();
    let listeners: Vec<_> = (0..count)
        .map(|index| {
            let tag = tag.to_string();
            net.host(index).in_namespace_background(move || {
                let socket = UdpSocket::bind("0.0.0.0:9999").expect("bind 9999");
                socket.set_read_timeout(Some(ms(200))).expect("timeout");
                let deadline = Instant::now() + secs(3);
                let mut buf = [0u8; 64];
                while Instant::now() < deadline {
                    if let Ok((n, _)) = socket.recv_from(&mut buf) {
                        if &buf[..n] == tag.as_bytes() {
                            return true;
                        }
                    }
                }
                false
            })
        })
        .collect();
    let tag = tag.to_string();
    net.host(from).in_namespace(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        socket.set_broadcast(true).expect("SO_BROADCAST");
        // Bounded: 20 datagrams over 2 s, to the simulated LAN only.
        for _ in 0..20 {
            let _ = socket.send_to(tag.as_bytes(), (BROADCAST, 9999));
            std::thread::sleep(ms(100));
        }
    });
    listeners
        .into_iter()
        .map(|l| l.join().expect("listener"))
        .collect()
}

#[test]
fn a_broadcast_reaches_every_host_and_an_unplugged_host_hears_nothing() {
    let mut net = Network::new("lan", 3);
    let heard = broadcast_round(&mut net, 0, "hello-all");
    assert_eq!(heard, [true, true, true], "{}", net.report());

    net.unplug(2);
    let heard = broadcast_round(&mut net, 0, "hello-again");
    assert_eq!(heard, [true, true, false], "{}", net.report());

    net.plug(2);
    let heard = broadcast_round(&mut net, 1, "welcome-back");
    assert_eq!(heard, [true, true, true], "{}", net.report());
}

#[test]
fn hosts_reach_each_other_by_address_with_zeromq() {
    let mut net = Network::new("lan-zmq", 2);
    let server = Network::address_of(0);
    net.host(0).in_namespace_background(move || {
        let context = zmq::Context::new();
        let rep = common::wire::probe(&context, zmq::REP).bind(&format!("tcp://{server}:5555"));
        let request = common::wire::recv(&rep, "server on host 0");
        common::wire::send(&rep, &[&request[0]]);
    });
    let address = Network::address_of(0);
    let reply = net.host(1).in_namespace(move || {
        let context = zmq::Context::new();
        let req = common::wire::probe(&context, zmq::REQ).connect(&format!("tcp://{address}:5555"));
        common::wire::send(&req, &[b"across the bridge"]);
        common::wire::recv(&req, "client on host 1")
    });
    assert_eq!(reply, [b"across the bridge".to_vec()]);
}
