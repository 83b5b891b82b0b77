//! UDP broadcast for discovery (the guide's `udplib.c`, §49–§50).
//!
//! ZeroMQ has no broadcast: to find peers on a LAN without a central server,
//! chapter 8 sends small UDP *beacons* to the LAN's broadcast address and
//! listens for everybody else's on the same port. [`Udp`] is that socket:
//! `SO_BROADCAST` to send beacons, `SO_REUSEADDR` so several programs on one
//! host can listen on the one port, bound to every interface; it is polled
//! like a ZeroMQ socket through its raw file descriptor
//! ([`interrupt::poll_any`](crate::interrupt::poll_any),
//! [`Reactor::reader_fd`](crate::reactor::Reactor::reader_fd)).
//!
//! **Where beacons go.** The C sends to `255.255.255.255`, every host on
//! every attached network. Here the default is [`DEFAULT_BROADCAST`],
//! `127.255.255.255`: the loopback network's broadcast address, which reaches
//! every program on this machine and nothing else. A wider address is used
//! only when the user passes one (an address, or an interface name resolved
//! with [`broadcast_of`]), so a demo never sprays a real LAN by accident.
//!
//! [`interfaces`] lists the IPv4 interfaces. `udplib.c` read `ifa_addr` of
//! every interface without checking it: an interface without an address (a
//! tunnel, a down VPN) has a NULL there, and the C crashed; we skip those.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Where beacons go unless the user says otherwise: loopback only.
pub const DEFAULT_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);

/// A UDP socket for broadcast beacons on one port.
pub struct Udp {
    socket: UdpSocket,
    port: u16,
    broadcast: Ipv4Addr,
}

impl Udp {
    /// `udp_new`: binds `0.0.0.0:port` with `SO_BROADCAST` and
    /// `SO_REUSEADDR` (several listeners per host), sending to `broadcast`.
    pub fn new(port: u16, broadcast: Ipv4Addr) -> io::Result<Udp> {
        Udp::bind(port, broadcast, true)
    }

    /// Like [`new`](Udp::new), and `reuse_address` false gives udpping1's
    /// socket: a second program on the same port fails with "Address already
    /// in use".
    pub fn bind(port: u16, broadcast: Ipv4Addr, reuse_address: bool) -> io::Result<Udp> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_broadcast(true)?;
        if reuse_address {
            socket.set_reuse_address(true)?;
        }
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        socket.bind(&SocketAddr::V4(any).into())?;
        socket.set_nonblocking(true)?;
        Ok(Udp {
            socket: socket.into(),
            port,
            broadcast,
        })
    }

    /// The raw file descriptor, to poll beside ZeroMQ sockets (`udp_handle`).
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The port we listen and send on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where our beacons go.
    pub fn broadcast(&self) -> Ipv4Addr {
        self.broadcast
    }

    /// `udp_send`: one datagram to the broadcast address, our port.
    pub fn send(&self, beacon: &[u8]) -> io::Result<()> {
        self.socket
            .send_to(beacon, SocketAddrV4::new(self.broadcast, self.port))
            .map(|_| ())
    }

    /// `udp_recv`: the next datagram (cut to `buffer`'s size) and who sent
    /// it; `Ok(None)` if none is waiting (the socket never blocks).
    pub fn recv<'b>(&self, buffer: &'b mut [u8]) -> io::Result<Option<(&'b [u8], SocketAddr)>> {
        match self.socket.recv_from(buffer) {
            Ok((size, from)) => Ok(Some((&buffer[..size], from))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// An IPv4 interface: its name, address, and broadcast address if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub address: Ipv4Addr,
    pub broadcast: Option<Ipv4Addr>,
}

/// The machine's IPv4 interfaces (`getifaddrs`), skipping any without an
/// IPv4 address instead of crashing on it as `udplib.c` did.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: a non-null node of the list getifaddrs returned.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let Some(address) = ipv4_of(entry.ifa_addr) else {
            continue; // no address, or not IPv4: the C's NULL crash
        };
        let broadcast = if entry.ifa_flags & libc::IFF_BROADCAST as u32 != 0 {
            ipv4_of(entry.ifa_ifu)
        } else {
            None
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        found.push(Interface {
            name,
            address,
            broadcast,
        });
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// The IPv4 address in a `sockaddr`, if it is one.
fn ipv4_of(address: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: non-null; the family says which struct it really is.
    unsafe {
        if i32::from((*address).sa_family) != libc::AF_INET {
            return None;
        }
        let v4 = &*(address as *const libc::sockaddr_in);
        Some(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)))
    }
}

/// The broadcast address a user means by `text`: an IPv4 address as is, or
/// the broadcast address of the interface of that name.
pub fn broadcast_of(text: &str) -> Result<Ipv4Addr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let list = interfaces().map_err(|e| format!("cannot list interfaces: {e}"))?;
    list.iter()
        .find(|i| i.name == text)
        .and_then(|i| i.broadcast)
        .ok_or_else(|| {
            format!("{text:?} is neither an IPv4 address nor an interface with a broadcast address")
        })
}

/// A UDP port nobody on this machine uses at the moment, for unit tests
/// that must broadcast on loopback outside a namespace: a fixed port would
/// be shared with any other run on the machine (SO_REUSEADDR lets it bind
/// too, and then it answers our surveys).
#[cfg(test)]
pub(crate) fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a free UDP port");
    socket.local_addr().expect("its address").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_include_loopback_and_skip_the_rest() {
        let list = interfaces().unwrap();
        assert!(
            list.iter().any(|i| i.address == Ipv4Addr::LOCALHOST),
            "{list:?}"
        );
        assert_eq!(broadcast_of("10.1.2.255"), Ok(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(broadcast_of("no-such-interface0").is_err());
    }

    /// A broadcast address exactly where the kernel's flags say
    /// IFF_BROADCAST (loopback has none), and an interface's name gives its
    /// own.
    #[test]
    fn broadcast_addresses_follow_the_interface_flags_and_names() {
        for interface in interfaces().unwrap() {
            let path = format!("/sys/class/net/{}/flags", interface.name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // an alias such as eth0:1
            };
            let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap();
            let broadcast = flags & libc::IFF_BROADCAST as u32 != 0;
            assert_eq!(
                interface.broadcast.is_some(),
                broadcast,
                "{interface:?}: {text}"
            );
            match interface.broadcast {
                Some(address) => assert_eq!(broadcast_of(&interface.name), Ok(address)),
                None => assert!(broadcast_of(&interface.name).is_err(), "{interface:?}"),
            }
        }
    }

    #[test]
    fn reuse_address_lets_two_listeners_share_a_port_and_both_hear_a_beacon() {
        // A port nobody else uses, loopback broadcast only.
        let port = free_port();
        let first = Udp::new(port, DEFAULT_BROADCAST).unwrap();
        let second = Udp::new(port, DEFAULT_BROADCAST).unwrap();
        assert_eq!((first.port(), first.broadcast()), (port, DEFAULT_BROADCAST));
        assert!(
            Udp::bind(port, DEFAULT_BROADCAST, false).is_err(),
            "udpping1's socket must clash"
        );
        // Nothing yet: the descriptor is not readable and a read gives None.
        for udp in [&first, &second] {
            let mut items = [zmq::PollItem::from_fd(udp.fd(), zmq::POLLIN)];
            zmq::poll(&mut items, 0).unwrap();
            assert!(!items[0].is_readable(), "readable before any beacon");
            assert!(udp.recv(&mut [0u8; 16]).unwrap().is_none());
        }
        first.send(b"!").unwrap();
        for udp in [&first, &second] {
            let mut buffer = [0u8; 16];
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut got = None;
            while got.is_none() && std::time::Instant::now() < deadline {
                let mut items = [zmq::PollItem::from_fd(udp.fd(), zmq::POLLIN)];
                zmq::poll(&mut items, 5000).unwrap();
                assert!(items[0].is_readable(), "the beacon makes the fd readable");
                got = udp
                    .recv(&mut buffer)
                    .unwrap()
                    .map(|(data, from)| (data.to_vec(), from));
            }
            let (data, from) = got.expect("the beacon");
            assert_eq!(data, b"!");
            assert_eq!(from.port(), port);
        }
    }
}
