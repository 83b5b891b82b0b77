//! What the kernel knows of the TCP connections on a local port, asked through
//! `sock_diag` (the netlink interface `ss` uses): per established connection,
//! how many bytes it has received and how many of them wait unread.
//!
//! The runner uses it to tell "a peer connected" from "a peer is ready": a
//! ZeroMQ peer is only part of a socket's fan-out once its greeting (64 bytes)
//! and READY command have arrived and been read, and a SUB only gets messages
//! once its subscription has. Counting ESTABLISHED connections alone (as
//! `/proc/net/tcp` allows) leaves a window in which a PUB drops what it
//! publishes to a subscriber whose subscription is still on its way; on a
//! busy machine that window is long enough to lose a chat line.

use std::io;

/// One established connection on the port asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Bytes the connection has received (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Bytes received but not yet read by the program (`idiag_rqueue`).
    pub unread: u32,
}

// From <linux/netlink.h>, <linux/sock_diag.h> and <linux/inet_diag.h>.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const INET_DIAG_INFO: u16 = 2;
const TCP_ESTABLISHED: u32 = 1;
const NLMSG_HEADER: usize = 16;
const DIAG_MESSAGE: usize = 72;
/// `tcpi_bytes_received` in `struct tcp_info` (Linux 4.1 and later).
const BYTES_RECEIVED_AT: usize = 128;

/// The established TCP connections (IPv4 and IPv6) whose local port is
/// `port`, in the caller's network namespace.
pub fn established_on(port: u16) -> io::Result<Vec<Connection>> {
    let mut found = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        found.extend(dump(family as u8, port)?);
    }
    Ok(found)
}

fn dump(family: u8, port: u16) -> io::Result<Vec<Connection>> {
    // SAFETY: a plain socket(2) call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    use std::os::fd::AsRawFd;

    // nlmsghdr + inet_diag_req_v2, native byte order except the socket id.
    let mut request = Vec::with_capacity(NLMSG_HEADER + 56);
    request.extend_from_slice(&((NLMSG_HEADER + 56) as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    request.push(family);
    request.push(libc::IPPROTO_TCP as u8);
    request.push(1 << (INET_DIAG_INFO - 1)); // ask for struct tcp_info
    request.push(0);
    request.extend_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    request.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: all sockets
                                           // SAFETY: the buffer is valid for its length.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut found = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: the buffer is valid for its length.
        let got = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buffer[..got as usize];
        if rest.is_empty() {
            return Ok(found);
        }
        while rest.len() >= NLMSG_HEADER {
            let length = u32_at(rest, 0) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if length < NLMSG_HEADER || length > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated sock_diag reply",
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(rest[16..20].try_into().unwrap_or_default());
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(connection) = parse(&rest[NLMSG_HEADER..length], port) {
                        found.push(connection);
                    }
                }
                _ => {}
            }
            rest = &rest[align4(length).min(rest.len())..];
        }
    }
}

/// One `inet_diag_msg` and its attributes; `None` unless its local port is
/// `port` and it carries a `tcp_info` long enough to hold the byte count.
fn parse(message: &[u8], port: u16) -> Option<Connection> {
    if message.len() < DIAG_MESSAGE {
        return None;
    }
    // idiag_family, state, timer, retrans, then the socket id whose first
    // field is the source (local) port in network byte order.
    let local_port = u16::from_be_bytes([message[4], message[5]]);
    if local_port != port {
        return None;
    }
    let unread = u32_at(message, 56);
    let mut attributes = &message[DIAG_MESSAGE..];
    while attributes.len() >= 4 {
        let length = u16::from_ne_bytes([attributes[0], attributes[1]]) as usize;
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if length < 4 || length > attributes.len() {
            return None;
        }
        if kind == INET_DIAG_INFO && length >= 4 + BYTES_RECEIVED_AT + 8 {
            let info = &attributes[4..length];
            let bytes_received = u64::from_ne_bytes(
                info[BYTES_RECEIVED_AT..BYTES_RECEIVED_AT + 8]
                    .try_into()
                    .ok()?,
            );
            return Some(Connection {
                bytes_received,
                unread,
            });
        }
        attributes = &attributes[align4(length).min(attributes.len())..];
    }
    None
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or_default())
}

fn align4(length: usize) -> usize {
    (length + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn bytes_received_and_unread_are_seen_on_the_listening_port() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(&[7u8; 100]).expect("write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let seen = loop {
            let seen = established_on(port).expect("sock_diag");
            if seen.iter().any(|c| c.bytes_received == 100) || std::time::Instant::now() > deadline
            {
                break seen;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(
            seen,
            vec![Connection {
                bytes_received: 100,
                unread: 100
            }]
        );
        let mut buffer = [0u8; 100];
        server.read_exact(&mut buffer).expect("read");
        assert_eq!(
            established_on(port).expect("sock_diag"),
            vec![Connection {
                bytes_received: 100,
                unread: 0
            }]
        );
    }
}
