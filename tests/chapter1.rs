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
