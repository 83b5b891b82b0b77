//! The simulated LANs of `tests/common/network.rs` themselves: hosts on one
//! bridge hear each other's UDP broadcasts and unicasts, and a host that is
//! unplugged stops hearing them; with two LANs behind a router, TCP crosses
//! between them and a broadcast does not. Later chapters (UDP discovery, P2P,
//! broker peering) rely on exactly this.

mod common;
use common::network::{Network, BROADCAST};
use common::{ms, secs};

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
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

/// Bounds `accept` on `listener` (Linux honours `SO_RCVTIMEO` there).
fn set_accept_timeout(listener: &TcpListener, timeout: std::time::Duration) {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt on a socket we own, with a valid timeval and its size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
}

#[test]
fn two_lans_route_tcp_between_them_but_keep_broadcasts_apart() {
    // Hosts 0 and 1 on LAN A, host 2 on LAN B.
    let mut net = Network::two_lans("lans", 2, 1);
    assert_eq!(
        [net.address(0), net.address(1), net.address(2)],
        ["10.99.0.1", "10.99.0.2", "10.99.1.1"]
    );
    assert_eq!(
        [net.broadcast(0), net.broadcast(1), net.broadcast(2)],
        [BROADCAST, BROADCAST, "10.99.1.255"]
    );
    let (a0, a1, b0) = (net.address(0), net.address(1), net.address(2));

    // TCP from host 0 (LAN A) to host 2 (LAN B). The listener is bound in
    // host 2's namespace, and keeps it wherever the socket is used. Host 0
    // connects (the kernel queues the connection for `accept`) and sends a
    // line; host 2 echoes it with the address the connection came from
    // (routed, not translated: host 0's own). Every step has a timeout.
    let listener = net.host(2).in_namespace({
        let b0 = b0.clone();
        move || TcpListener::bind((b0.as_str(), 7000)).expect("bind 7000 on host 2")
    });
    let server: SocketAddr = format!("{b0}:7000").parse().expect("address");
    let client = net.host(0).in_namespace(move || {
        let stream =
            TcpStream::connect_timeout(&server, secs(5)).expect("connect from host 0 to host 2");
        stream.set_read_timeout(Some(secs(5))).expect("timeout");
        writeln!(&stream, "across the router").expect("send");
        stream
    });
    set_accept_timeout(&listener, secs(5));
    let (accepted, peer) = listener.accept().expect("accept on host 2");
    accepted.set_read_timeout(Some(secs(5))).expect("timeout");
    let mut line = String::new();
    BufReader::new(&accepted)
        .read_line(&mut line)
        .expect("read the line on host 2");
    writeln!(&accepted, "{} from {}", line.trim_end(), peer.ip()).expect("echo");
    let mut reply = String::new();
    BufReader::new(&client)
        .read_line(&mut reply)
        .expect("read the echo on host 0");
    assert_eq!(reply, format!("across the router from {a0}\n"));

    // A broadcast on LAN A: the listeners on host 1 (LAN A) and host 2
    // (LAN B) are bound before anything is sent, so none is lost to a race.
    let bind = |net: &mut Network, index: usize| {
        net.host(index).in_namespace(|| {
            let socket = UdpSocket::bind("0.0.0.0:9999").expect("bind 9999");
            socket.set_read_timeout(Some(secs(5))).expect("timeout");
            socket
        })
    };
    let on_a = bind(&mut net, 1);
    let on_b = bind(&mut net, 2);
    net.host(0).in_namespace(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        socket.set_broadcast(true).expect("SO_BROADCAST");
        for _ in 0..5 {
            socket
                .send_to(b"broadcast", (BROADCAST, 9999))
                .expect("broadcast on LAN A");
        }
        // Then one unicast "end" each, to host 1 directly and to host 2
        // through the router, sent after every broadcast: whatever a host
        // hears of those, it hears before its "end" (no sleep needed).
        for address in [a1, b0] {
            socket
                .send_to(b"end", (address.as_str(), 9999))
                .expect("unicast end");
        }
    });
    let heard_until_end = |socket: &UdpSocket, host: &str| {
        let mut heard = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let (n, _) = socket
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{host} heard no \"end\" ({e}), only {heard:?}"));
            let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
            if datagram == "end" {
                return heard;
            }
            heard.push(datagram);
        }
    };
    assert_eq!(
        heard_until_end(&on_a, "host 1 (LAN A)"),
        ["broadcast"; 5],
        "{}",
        net.report()
    );
    assert_eq!(
        heard_until_end(&on_b, "host 2 (LAN B)"),
        Vec::<String>::new(),
        "a broadcast on LAN A crossed the router; {}",
        net.report()
    );
}
