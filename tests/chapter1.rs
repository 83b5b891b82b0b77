//! Chapter 1 (Basics): every program run as a real process in its own network
//! namespace, asserting on what it prints.

mod common;
use common::{secs, Scenario};

#[test]
fn hello_world_client_gets_ten_replies() {
    let mut sc = Scenario::new("hello-world");
    // Client first: start order must not matter.
    let client = sc.start("hwclient", bin!("hwclient"), &[]);
    let server = sc.start("hwserver", bin!("hwserver"), &[]);
    for n in 0..10 {
        sc.expect(client, &format!("Received World {n}"), secs(30));
    }
    assert_eq!(sc.wait_exit(client, secs(10)), 0);
    assert_eq!(sc.count(server, "Received Hello"), 10);
    sc.interrupt(server);
    assert_eq!(
        sc.wait_exit(server, secs(10)),
        0,
        "hwserver exits cleanly on SIGINT"
    );
}

#[test]
fn version_reports_the_linked_libzmq() {
    let mut sc = Scenario::new("version");
    let version = sc.start("version", bin!("version"), &[]);
    let line = sc.expect(version, "Current 0MQ version is ", secs(10));
    let (major, minor, patch) = zmq::version();
    assert!(
        line.ends_with(&format!("{major}.{minor}.{patch}")),
        "{line}"
    );
    assert_eq!(sc.wait_exit(version, secs(10)), 0);
}

#[test]
fn a_raw_req_socket_in_the_namespace_reaches_hwserver() {
    let mut sc = Scenario::new("hello-raw");
    let server = sc.start("hwserver", bin!("hwserver"), &[]);
    let reply = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::REQ).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_rcvtimeo(20_000).unwrap();
        socket.connect("tcp://localhost:5555").unwrap();
        socket.send("Hello", 0).unwrap();
        socket.recv_bytes(0)
    });
    assert_eq!(reply.as_deref(), Ok(&b"World"[..]), "{}", sc.report());
    sc.expect(server, "Received Hello", secs(10));
}
