//! CURVE security (study part 2, the seam the broker and the file server
//! share): `curvekeys`, key files, and `zguide::curve::Authenticator` in front
//! of a real CURVE server: known keys served, unknown keys and plain text
//! refused, and nothing readable on the wire.
//!
//! Sockets here are on 127.0.0.1 with ports the kernel picks, so the tests
//! need no namespace; every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::relay::{contains, relay};
use zguide::curve::{self, Authenticator, Keys};

fn curvekeys(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_curvekeys"))
        .args(args)
        .output()
        .expect("run curvekeys");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("zguide-study-curve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The key in a `name = "<key>"` line of `text`.
fn key_in(text: &str, name: &str) -> Vec<u8> {
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line in {text:?}"));
    let value = line
        .split_once('=')
        .expect("name = value")
        .1
        .trim()
        .trim_matches('"');
    zmq::z85_decode(value).unwrap_or_else(|e| panic!("{value:?} is not Z85: {e:?}"))
}

#[test]
fn curvekeys_makes_pairs_saves_them_privately_and_shows_only_public_keys() {
    let (ok, out, _) = curvekeys(&[]);
    assert!(ok);
    let (public, secret) = (key_in(&out, "public-key"), key_in(&out, "secret-key"));
    assert_eq!((public.len(), secret.len()), (32, 32));
    assert_ne!(public, secret);
    let (_, again, _) = curvekeys(&[]);
    assert_ne!(key_in(&again, "public-key"), public, "every pair is new");

    let dir = temp_dir("tool");
    let path = dir.join("server");
    let (ok, out, err) = curvekeys(&["--out", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("secret-key"),
        "the secret is not printed: {out}"
    );
    let saved = Keys::load(&curve::secret_path(&path)).expect("the secret file loads");
    assert_eq!(saved.public.to_vec(), key_in(&out, "public-key"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(curve::secret_path(&path))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "secret file mode {mode:o}");

    let (ok, shown, _) = curvekeys(&["--show", curve::secret_path(&path).to_str().unwrap()]);
    assert!(ok);
    assert_eq!(key_in(&shown, "public-key"), saved.public.to_vec());
    assert!(
        !shown.contains("secret"),
        "--show never prints a secret: {shown}"
    );

    let (ok, _, err) = curvekeys(&["--show", dir.join("missing").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("missing"), "the error names the file: {err}");
    let (ok, help, _) = curvekeys(&["--help"]);
    assert!(
        ok && help.contains("--out") && help.contains("--show"),
        "{help}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CURVE echo server (REP) on 127.0.0.1 with the server's secret file and
/// an authenticator for the public files in `allowed_dir`; its monitor.
struct Server {
    endpoint: String,
    monitor: zmq::Socket,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _authenticator: Authenticator,
    _context: zmq::Context,
}

impl Server {
    fn start(keys: &Keys, allowed_dir: &Path) -> Server {
        let context = zmq::Context::new();
        let allowed = curve::load_public_keys(allowed_dir).expect("allowed keys");
        let authenticator = Authenticator::start(&context, allowed, true).expect("ZAP handler");
        let socket = context.socket(zmq::REP).unwrap();
        socket.set_linger(0).unwrap();
        keys.make_server(&socket).expect("server keys");
        socket.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = socket.get_last_endpoint().unwrap().unwrap();
        let monitor_endpoint = format!("inproc://server-monitor-{}", endpoint.len());
        socket
            .monitor(&monitor_endpoint, zmq::SocketEvent::ALL as i32)
            .unwrap();
        let monitor = context.socket(zmq::PAIR).unwrap();
        monitor.connect(&monitor_endpoint).unwrap();
        socket.set_rcvtimeo(100).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            // Echo until told to stop.
            while !stopped.load(Ordering::Relaxed) {
                match socket.recv_multipart(0) {
                    Ok(msg) => {
                        if socket.send_multipart(msg, 0).is_err() {
                            break;
                        }
                    }
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(_) => break,
                }
            }
        });
        Server {
            endpoint,
            monitor,
            stop,
            thread: Some(thread),
            _authenticator: authenticator,
            _context: context,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.monitor.set_linger(0);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits up to 10 s for one of `events` on `monitor`; returns which.
fn wait_event(monitor: &zmq::Socket, events: &[zmq::SocketEvent], what: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if monitor.poll(zmq::POLLIN, 100).unwrap_or(0) == 0 {
            continue;
        }
        let frames = monitor.recv_multipart(0).expect("monitor event");
        let id = u16::from_le_bytes([frames[0][0], frames[0][1]]);
        if events.iter().any(|e| e.to_raw() == id) {
            return id;
        }
        seen.push(id);
    }
    panic!("no {what} event within 10 s (saw {seen:?})");
}

fn client(context: &zmq::Context, endpoint: &str, keys: Option<(&Keys, &Keys)>) -> zmq::Socket {
    let socket = context.socket(zmq::REQ).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(10_000).unwrap();
    if let Some((ours, server)) = keys {
        ours.make_client(&socket, &server.public).unwrap();
    }
    socket.connect(endpoint).unwrap();
    socket
}

#[test]
fn a_curve_server_serves_known_keys_and_refuses_strangers_and_plain_text() {
    let dir = temp_dir("server");
    let allowed_dir = dir.join("allowed");
    std::fs::create_dir_all(&allowed_dir).unwrap();
    let server_keys = Keys::generate().unwrap();
    server_keys.save(&dir.join("server")).unwrap();
    let server_keys = Keys::load(&curve::secret_path(&dir.join("server"))).unwrap();
    let friend = Keys::generate().unwrap();
    friend.save(&allowed_dir.join("friend")).unwrap();
    // The friend's secret file sits in the directory too: never a key to allow.
    let stranger = Keys::generate().unwrap();
    let server = Server::start(&server_keys, &allowed_dir);
    let context = zmq::Context::new();

    let known = client(&context, &server.endpoint, Some((&friend, &server_keys)));
    known.send("hello, server", 0).unwrap();
    assert_eq!(known.recv_bytes(0).expect("an answer"), b"hello, server");

    // A stranger's handshake is refused by the ZAP handler (400).
    let refused = client(&context, &server.endpoint, Some((&stranger, &server_keys)));
    refused.send("let me in", 0).unwrap();
    wait_event(
        &server.monitor,
        &[zmq::SocketEvent::HANDSHAKE_FAILED_AUTH],
        "authentication failure",
    );
    // A plain-text client fails the handshake itself (mechanism mismatch).
    let plain = client(&context, &server.endpoint, None);
    plain.send("plain text", 0).unwrap();
    wait_event(
        &server.monitor,
        &[
            zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL,
            zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL,
        ],
        "protocol failure",
    );
    // Neither got an answer; the friend still does.
    refused.set_rcvtimeo(200).unwrap();
    plain.set_rcvtimeo(200).unwrap();
    assert!(refused.recv_bytes(0).is_err());
    assert!(plain.recv_bytes(0).is_err());
    known.send("still there?", 0).unwrap();
    assert_eq!(known.recv_bytes(0).expect("an answer"), b"still there?");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nothing_readable_crosses_the_wire_under_curve() {
    const MARKER: &[u8] = b"a-plain-text-marker-for-the-wire";
    let dir = temp_dir("wire");
    let server_keys = Keys::generate().unwrap();
    let friend = Keys::generate().unwrap();
    friend.save(&dir.join("friend")).unwrap();
    let context = zmq::Context::new();

    // Control: without CURVE the relay does see the marker, so it records.
    let plain_server = context.socket(zmq::REP).unwrap();
    plain_server.set_linger(0).unwrap();
    plain_server.set_rcvtimeo(10_000).unwrap();
    plain_server.bind("tcp://127.0.0.1:*").unwrap();
    let (endpoint, seen) = relay(&plain_server.get_last_endpoint().unwrap().unwrap());
    let plain = client(&context, &endpoint, None);
    plain.send(MARKER, 0).unwrap();
    plain_server.recv_bytes(0).expect("the plain request");
    assert!(contains(&seen.lock().unwrap(), MARKER), "the relay records");

    let server = Server::start(&server_keys, &dir);
    let (endpoint, seen) = relay(&server.endpoint);
    let known = client(&context, &endpoint, Some((&friend, &server_keys)));
    known.send(MARKER, 0).unwrap();
    assert_eq!(known.recv_bytes(0).expect("the echo"), MARKER);
    let wire = seen.lock().unwrap().clone();
    assert!(
        wire.len() > 2 * MARKER.len(),
        "both ways recorded: {} bytes",
        wire.len()
    );
    assert!(
        !contains(&wire, MARKER),
        "the marker crossed the wire in plain text"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty directory of allowed keys refuses every client.
#[test]
fn an_authenticator_with_no_keys_refuses_everyone() {
    let server_keys = Keys::generate().unwrap();
    let dir = temp_dir("empty");
    let server = Server::start(&server_keys, &dir);
    let context = zmq::Context::new();
    let anyone = Keys::generate().unwrap();
    let socket = client(&context, &server.endpoint, Some((&anyone, &server_keys)));
    socket.send("hello", 0).unwrap();
    wait_event(
        &server.monitor,
        &[zmq::SocketEvent::HANDSHAKE_FAILED_AUTH],
        "authentication failure",
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
