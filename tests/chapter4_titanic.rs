//! Chapter 4, Titanic (§30): the disconnected-reliability service on top of
//! Majordomo, run as real processes with `mdbroker` and `mdworker`: late
//! workers, kills and restarts of every role, raw TSP frames, path attacks
//! and random requests.

mod common;
use common::attack::rss_kib;
use common::mdp::*;
use common::wire::{frames, Frames};
use common::{secs, Scenario};

use std::time::{Duration, Instant};

// ---------------------------------------------------------------- §30 Titanic

fn titanic_dir_files(sc: &Scenario) -> Vec<String> {
    match std::fs::read_dir(sc.dir().join(".titanic")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn ticlient_gets_its_reply_when_the_worker_comes_late() {
    let mut sc = Scenario::new("titanic");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &["-v"]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    let client = sc.start("ticlient", bin!("ticlient"), &[]);
    let line = sc.expect(client, "I: request UUID [032] ", secs(30));
    let uuid = line.rsplit(' ').next().unwrap().to_string();
    assert_eq!(uuid.len(), 32, "{line}");
    sc.expect(client, "I: no reply yet, trying again...", secs(30));
    sc.expect(titanic, &format!("I: processing request {uuid}"), secs(30));
    assert!(titanic_dir_files(&sc).contains(&format!("{uuid}.req")));
    start_worker(&mut sc, broker, "mdworker");
    sc.expect(client, "Reply: Hello world", secs(60));
    assert_eq!(sc.wait_exit(client, secs(30)), 0);
    // titanic.close removed both files; the queue line is marked done.
    let files = titanic_dir_files(&sc);
    assert!(!files.iter().any(|f| f.starts_with(&uuid)), "{files:?}");
    let queue = std::fs::read_to_string(sc.dir().join(".titanic/queue")).unwrap();
    assert_eq!(queue, format!("+{uuid}\n"));
    sc.stop_cleanly(titanic, secs(20));
    sc.stop_cleanly(broker, secs(20));
}

#[test]
fn titanic_request_survives_kills_of_titanic_and_broker() {
    let mut sc = Scenario::new("titanic-restarts");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &["-v"]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    let client = sc.start("ticlient", bin!("ticlient"), &[]);
    let line = sc.expect(client, "I: request UUID [032] ", secs(30));
    let uuid = line.rsplit(' ').next().unwrap().to_string();
    sc.expect(titanic, &format!("I: processing request {uuid}"), secs(30));

    // Accepted with 200: now kill everything but the client, restart.
    sc.kill(titanic);
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "is active at", secs(30));
    sc.restart(titanic);
    sc.expect(titanic, &format!("I: processing request {uuid}"), secs(30));
    // And once more with the broker alone, while titanic keeps running.
    sc.kill(broker);
    sc.restart(broker);
    sc.expect(broker, "is active at", secs(30));
    // The late worker; titanic re-registers its services by itself.
    sc.start("mdworker", bin!("mdworker"), &[]);
    sc.expect(client, "Reply: Hello world", secs(90));
    assert_eq!(sc.wait_exit(client, secs(30)), 0);
    assert_eq!(sc.count(client, "Reply:"), 1);
    sc.stop_cleanly(titanic, secs(20));
    sc.stop_cleanly(broker, secs(20));
}

/// A raw TSP call: `[MDPC01][service][body…]` over a REQ socket, retried on
/// a fresh socket like the Lazy Pirate (a request the broker handed to a
/// worker that just died is lost; MDP clients retry).
fn tsp(ctx: &zmq::Context, service: &[u8], body: &[&[u8]]) -> Frames {
    let mut msg: Vec<&[u8]> = vec![b"MDPC01", service];
    msg.extend_from_slice(body);
    for _attempt in 0..10 {
        let client = probe(ctx, zmq::REQ);
        client.set_rcvtimeo(3000).unwrap();
        send(&client, &msg);
        if let Ok(mut reply) = client.recv_multipart(0) {
            assert_eq!(&reply[..2], &frames(&[b"MDPC01", service])[..]);
            reply.drain(..2);
            return reply;
        }
    }
    panic!("no answer from {}", String::from_utf8_lossy(service));
}

#[test]
fn titanic_raw_frames_refuse_paths_and_bad_requests() {
    let mut sc = Scenario::new("titanic-raw");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    // A file outside the store that a path attack would touch.
    let outside = sc.dir().join("victim.rep");
    std::fs::write(&outside, b"precious").unwrap();
    let uuid = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let refused = frames(&[b"400"]);
        for bad in [
            &b"../victim"[..],
            b"../../../../../etc/passwd",
            b"",
            b"0123456789ABCDEF0123456789ABCDE/",
            b"0123456789abcdef0123456789abcdef0",
        ] {
            assert_eq!(tsp(&ctx, b"titanic.reply", &[bad]), refused, "{bad:?}");
            assert_eq!(tsp(&ctx, b"titanic.close", &[bad]), refused, "{bad:?}");
        }
        // Unknown but well-formed (either case): 400 for reply, 200 close.
        let unknown = b"0123456789abcdef0123456789ABCDEF";
        assert_eq!(tsp(&ctx, b"titanic.reply", &[unknown]), refused);
        assert_eq!(tsp(&ctx, b"titanic.close", &[unknown]), frames(&[b"200"]));
        // A request needs a service and a body.
        assert_eq!(tsp(&ctx, b"titanic.request", &[b"echo"]), refused);
        assert_eq!(tsp(&ctx, b"titanic.request", &[b"", b"x"]), refused);
        // A good request: 200 + UUID, then 300 while no worker exists.
        let accepted = tsp(&ctx, b"titanic.request", &[b"echo", b"Hello", b"raw"]);
        assert_eq!(accepted.len(), 2, "{accepted:?}");
        assert_eq!(accepted[0], b"200");
        let uuid = accepted[1].clone();
        assert_eq!(uuid.len(), 32);
        assert_eq!(tsp(&ctx, b"titanic.reply", &[&uuid]), frames(&[b"300"]));
        uuid
    });
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    start_worker(&mut sc, broker, "mdworker");
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = tsp(&ctx, b"titanic.reply", &[&uuid]);
            if reply[0] == b"200" {
                assert_eq!(reply, frames(&[b"200", b"Hello", b"raw"]));
                break;
            }
            assert_eq!(reply, frames(&[b"300"]));
            assert!(Instant::now() < deadline, "never answered");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(tsp(&ctx, b"titanic.close", &[&uuid]), frames(&[b"200"]));
        assert_eq!(tsp(&ctx, b"titanic.reply", &[&uuid]), frames(&[b"400"]));
    });
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn titanic_survives_10000_random_requests_with_bounded_memory() {
    let mut sc = Scenario::new("titanic-fuzz");
    start_quiet_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    sc.start("mdworker", bin!("mdworker"), &[]);
    // Warm up: one full TSP round trip.
    let warmup = sc.start("ticlient-warmup", bin!("ticlient"), &[]);
    sc.expect(warmup, "Reply: Hello world", secs(60));
    let pid = sc.os_pid(titanic);
    let before = rss_kib(pid);

    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let mut rng: u64 = 0x7171_7A1C;
        let mut next = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let dealer = probe(&ctx, zmq::DEALER);
        let mut outstanding = 0usize;
        for n in 0..10_000usize {
            // Mostly reply/close with random ids; 1 in 25 a random request
            // (each stored one stays pending: its service does not exist).
            let service: &[u8] = match next() % 25 {
                0 => b"titanic.request",
                r if r % 2 == 0 => b"titanic.reply",
                _ => b"titanic.close",
            };
            let mut msg: Frames = frames(&[b"", b"MDPC01", service]);
            let count = 1 + next() % 5;
            for _ in 0..count {
                let len = match next() % 4 {
                    0 => 32, // uuid-sized noise
                    _ => (next() % 40) as usize,
                };
                msg.push((0..len).map(|_| next() as u8).collect());
            }
            if n % 2500 == 1234 {
                msg.push(vec![0x5A; (1 + (n / 2500) % 4) << 20]);
            }
            dealer.send_multipart(msg, 0).unwrap();
            outstanding += 1;
            // Keep at most 100 in flight: titanic answers one at a time.
            while outstanding >= 100 {
                dealer.recv_multipart(0).expect("titanic answers");
                outstanding -= 1;
            }
        }
        while outstanding > 0 {
            dealer.recv_multipart(0).expect("titanic answers");
            outstanding -= 1;
        }
    });
    sc.assert_running(titanic);
    // Still serving: a full TSP round trip.
    let after_fuzz = sc.start("ticlient-after", bin!("ticlient"), &[]);
    sc.expect(after_fuzz, "Reply: Hello world", secs(120));
    assert_eq!(sc.wait_exit(after_fuzz, secs(30)), 0);
    let after = rss_kib(pid);
    eprintln!("titanic RSS: {before} KiB before, {after} KiB after the fuzz");
    // Bound: 32 MiB over the warmed-up size (nothing is kept in memory;
    // the store is on disk).
    assert!(
        after < before + 32 * 1024,
        "titanic RSS grew from {before} KiB to {after} KiB"
    );
    sc.stop_cleanly(titanic, secs(20));
}

/// Joins the network namespace of a running scenario process, for a probe
/// thread that must run while the test goes on (`in_namespace` blocks).
fn enter_namespace_of(os_pid: i32) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/proc/{os_pid}/ns/net")).unwrap();
    // SAFETY: setns on this thread only, with a valid namespace fd.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn titanic_killed_at_random_moments_answers_every_accepted_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use zguide::mdp::titanic::decode;

    let mut sc = Scenario::new("titanic-crashes");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    start_worker(&mut sc, broker, "mdworker");

    // A client that keeps submitting requests while titanic gets killed;
    // it remembers what was accepted with 200.
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let broker_pid = sc.os_pid(broker);
    let submitter = {
        let stop = stop.clone();
        let progress = progress.clone();
        std::thread::spawn(move || {
            enter_namespace_of(broker_pid);
            let ctx = zmq::Context::new();
            let mut accepted: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut client = probe(&ctx, zmq::REQ);
            client.set_rcvtimeo(2000).unwrap();
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) && n < 2000 {
                n += 1;
                let payload = format!("payload-{n}").into_bytes();
                send(&client, &[b"MDPC01", b"titanic.request", b"echo", &payload]);
                match client.recv_multipart(0) {
                    Ok(reply) if reply.len() == 4 && reply[2] == b"200" => {
                        accepted.push((reply[3].clone(), payload));
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        // No answer (titanic was down): fresh socket, go on.
                        client = probe(&ctx, zmq::REQ);
                        client.set_rcvtimeo(2000).unwrap();
                    }
                }
            }
            accepted
        })
    };
    let mut rng = 0x1234_5678_9ABC_DEF0u64 ^ u64::from(std::process::id());
    for round in 1..=4 {
        // Let some requests through after each restart...
        let deadline = Instant::now() + secs(60);
        while progress.load(Ordering::SeqCst) < round * 5 {
            assert!(Instant::now() < deadline, "no progress\n{}", sc.report());
            std::thread::sleep(Duration::from_millis(20));
        }
        // ...then kill at a random moment (fault injection, not a wait).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 400));
        sc.kill(titanic);
        sc.restart(titanic);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let accepted = submitter.join().unwrap();
    assert!(!accepted.is_empty(), "nothing accepted\n{}", sc.report());

    // Every accepted request is answered, with its own payload.
    let pending = accepted.clone();
    let unanswered = sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut left = pending;
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|(uuid, payload)| {
                let reply = tsp(&ctx, b"titanic.reply", &[uuid]);
                if reply.first().map(Vec::as_slice) == Some(b"200") {
                    assert_eq!(reply, vec![b"200".to_vec(), payload.clone()]);
                    false
                } else {
                    assert_eq!(reply, frames(&[b"300"]), "accepted request lost");
                    true
                }
            });
            std::thread::sleep(Duration::from_millis(200));
        }
        left.len()
    });
    assert_eq!(unanswered, 0, "{}", sc.report());
    // Nothing half-written: every stored file decodes.
    for name in titanic_dir_files(&sc) {
        if name.ends_with(".req") || name.ends_with(".rep") {
            let bytes = std::fs::read(sc.dir().join(".titanic").join(&name)).unwrap();
            decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    eprintln!("{} requests accepted across 4 SIGKILLs", accepted.len());
    sc.stop_cleanly(titanic, secs(20));
}
