//! Chapter 4, Titanic (§30): the disconnected-reliability service on top of
//! Majordomo, run as real processes with `mdbroker` and `mdworker`: late
//! workers, kills and restarts of every role, raw TSP frames, path attacks
//! and random requests, and the attacks of issue 10: self-calls, silent
//! workers in front of a legitimate request, request floods against the
//! store's quota, crash leftovers and the queue file's growth.

mod common;
use common::attack::{dir_usage, peak_rss_kib, rss_kib};
use common::mdp::*;
use common::wire::{self, frames, Frames};
use common::{ms, secs, Pid, Scenario};

use std::time::Instant;

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

/// A REQ socket to the broker that waits `timeout` ms (stretched) per reply.
fn tsp_socket(ctx: &zmq::Context, timeout: u64) -> zmq::Socket {
    wire::probe(ctx, zmq::REQ)
        .receive_timeout(timeout)
        .connect("tcp://localhost:5555")
}

/// A raw TSP call: `[MDPC01][service][body…]` over a REQ socket, retried on
/// a fresh socket like the Lazy Pirate (a request the broker handed to a
/// worker that just died is lost; MDP clients retry).
fn tsp(ctx: &zmq::Context, service: &[u8], body: &[&[u8]]) -> Frames {
    let mut msg: Vec<&[u8]> = vec![b"MDPC01", service];
    msg.extend_from_slice(body);
    for _attempt in 0..10 {
        let client = tsp_socket(ctx, 3000);
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
        // Service names up to 255 bytes, exactly (MDP's own bound).
        let longest = vec![b's'; 255];
        assert_eq!(tsp(&ctx, b"titanic.request", &[&longest, b"x"])[0], b"200");
        let too_long = vec![b's'; 256];
        assert_eq!(tsp(&ctx, b"titanic.request", &[&too_long, b"x"]), refused);
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
        let deadline = Instant::now() + secs(60);
        loop {
            let reply = tsp(&ctx, b"titanic.reply", &[&uuid]);
            if reply[0] == b"200" {
                assert_eq!(reply, frames(&[b"200", b"Hello", b"raw"]));
                break;
            }
            assert_eq!(reply, frames(&[b"300"]));
            assert!(Instant::now() < deadline, "never answered");
            std::thread::sleep(ms(200));
        }
        assert_eq!(tsp(&ctx, b"titanic.close", &[&uuid]), frames(&[b"200"]));
        assert_eq!(tsp(&ctx, b"titanic.reply", &[&uuid]), frames(&[b"400"]));
    });
    sc.stop_cleanly(titanic, secs(20));
}

/// 1 MiB: what the store (and the socket builder) take per message.
const MIB: u64 = 1 << 20;

#[test]
fn titanic_survives_random_and_large_requests_with_bounded_memory() {
    let mut sc = Scenario::new("titanic-fuzz");
    start_quiet_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    sc.start("mdworker", bin!("mdworker"), &[]);
    // Warm up: one full TSP round trip.
    let warmup = sc.start("ticlient-warmup", bin!("ticlient"), &[]);
    sc.expect(warmup, "Reply: Hello world", secs(60));
    let pid = sc.os_pid(titanic);
    let (before, peak_before) = (rss_kib(pid), peak_rss_kib(pid));

    // 10,000 small random TSP requests, and every 25th message a large one
    // (a 512 KiB frame, under the 1 MiB frame limit): 400 × 512 KiB =
    // 200 MiB in all, 10× what Titanic could keep within its bound below.
    let (sent_bytes, codes, accepted) = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let mut rng: u64 = 0x7171_7A1C;
        let mut next = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let dealer = probe(&ctx, zmq::DEALER);
        let mut sent_bytes = 0u64;
        let mut codes = std::collections::BTreeMap::<Vec<u8>, usize>::new();
        let mut accepted: Vec<Vec<u8>> = Vec::new();
        let mut tally = |reply: Frames| {
            // [""][MDPC01][service][code][uuid?]
            let code = reply.get(3).cloned().unwrap_or_default();
            if code == b"200" && reply.len() == 5 && reply[2] == b"titanic.request" {
                accepted.push(reply[4].clone());
            }
            *codes.entry(code).or_default() += 1;
        };
        let mut outstanding = 0usize;
        for n in 0..10_400usize {
            // Mostly reply/close with random ids; 1 in 25 a random request
            // (each stored one stays pending: its service does not exist).
            let mut service: &[u8] = match next() % 25 {
                0 => b"titanic.request",
                r if r % 2 == 0 => b"titanic.reply",
                _ => b"titanic.close",
            };
            if n % 26 == 25 {
                // The large ones go to each service in turn.
                service =
                    [&b"titanic.request"[..], b"titanic.reply", b"titanic.close"][(n / 26) % 3];
            }
            let mut msg: Frames = frames(&[b"", b"MDPC01", service]);
            if n % 26 == 25 {
                if service == b"titanic.request" {
                    msg.push(format!("big-{n}").into_bytes());
                }
                msg.push(vec![0x5A; 512 << 10]);
            } else {
                let count = 1 + next() % 5;
                for _ in 0..count {
                    let len = match next() % 4 {
                        0 => 32, // uuid-sized noise
                        _ => (next() % 40) as usize,
                    };
                    msg.push((0..len).map(|_| next() as u8).collect());
                }
            }
            sent_bytes += msg.iter().map(|f| f.len() as u64).sum::<u64>();
            dealer.send_multipart(msg, 0).unwrap();
            outstanding += 1;
            // Keep at most 32 in flight: titanic answers one at a time.
            while outstanding >= 32 {
                tally(recv(&dealer));
                outstanding -= 1;
            }
        }
        while outstanding > 0 {
            tally(recv(&dealer));
            outstanding -= 1;
        }
        (sent_bytes, codes, accepted)
    });
    sc.assert_running(titanic);
    let (after, peak_after) = (rss_kib(pid), peak_rss_kib(pid));
    let (disk_bytes, disk_files) = dir_usage(&sc.dir().join(".titanic"));
    let codes: Vec<String> = codes
        .iter()
        .map(|(code, n)| format!("{}: {n}", String::from_utf8_lossy(code)))
        .collect();
    eprintln!(
        "titanic fuzz: {} MiB sent, answers {codes:?}; RSS {before} -> {after} KiB, \
         peak {peak_before} -> {peak_after} KiB; store {disk_bytes} bytes in {disk_files} files",
        sent_bytes >> 20
    );
    assert!(sent_bytes > 200 * MIB, "{sent_bytes}");
    // The store holds at most 16 MiB of requests (+ the queue file).
    assert!(disk_bytes < 17 * MIB, "store grew to {disk_bytes} bytes");
    // Nothing is kept in memory: the peak stays within 16 MiB of the
    // warmed-up one, though 200 MiB went through.
    assert!(
        peak_after < peak_before + 16 * 1024,
        "titanic peak RSS grew from {peak_before} KiB to {peak_after} KiB"
    );
    assert!(
        after < before + 16 * 1024,
        "titanic RSS {before} -> {after} KiB"
    );

    // Closing what was accepted frees the quota: still serving, and a full
    // TSP round trip works.
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        for uuid in accepted {
            assert_eq!(tsp(&ctx, b"titanic.close", &[&uuid]), frames(&[b"200"]));
        }
    });
    let after_fuzz = sc.start("ticlient-after", bin!("ticlient"), &[]);
    sc.expect(after_fuzz, "Reply: Hello world", secs(120));
    assert_eq!(sc.wait_exit(after_fuzz, secs(30)), 0);
    sc.stop_cleanly(titanic, secs(20));
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
    let submitter = {
        let stop = stop.clone();
        let progress = progress.clone();
        sc.in_namespace_background(move || {
            let ctx = zmq::Context::new();
            let mut accepted: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut client = tsp_socket(&ctx, 2000);
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
                        client = tsp_socket(&ctx, 2000);
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
            std::thread::sleep(ms(20));
        }
        // ...then kill at a random moment (fault injection, not a wait).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(ms(rng % 400));
        sc.kill(titanic);
        sc.restart(titanic);
    }
    std::thread::sleep(ms(500));
    stop.store(true, Ordering::SeqCst);
    let accepted = submitter.join().unwrap();
    assert!(!accepted.is_empty(), "nothing accepted\n{}", sc.report());

    // Every accepted request is answered, with its own payload.
    let pending = accepted.clone();
    let unanswered = sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let deadline = Instant::now() + secs(90);
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
            std::thread::sleep(ms(200));
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

// ------------------------------------------------- issue 10: hostile clients

/// Starts the quiet broker and titanic, and waits until all three TSP
/// services answer.
fn start_titanic(sc: &mut Scenario, args: &[&str]) -> (Pid, Pid) {
    let broker = start_quiet_broker(sc);
    let titanic = sc.start("titanic", bin!("titanic"), args);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let unknown = b"0123456789ABCDEF0123456789ABCDEF";
        assert_eq!(tsp(&ctx, b"titanic.close", &[unknown]), frames(&[b"200"]));
        assert_eq!(tsp(&ctx, b"titanic.reply", &[unknown]), frames(&[b"400"]));
        assert_eq!(tsp(&ctx, b"titanic.request", &[b"x"]), frames(&[b"400"]));
    });
    (broker, titanic)
}

/// Submits `[service][body…]` and returns the UUID; panics unless `200`.
fn submit(ctx: &zmq::Context, service: &[u8], body: &[&[u8]]) -> Vec<u8> {
    let mut request = vec![service];
    request.extend_from_slice(body);
    let reply = tsp(ctx, b"titanic.request", &request);
    assert!(reply.len() == 2 && reply[0] == b"200", "{reply:?}");
    reply[1].clone()
}

/// Asks `titanic.reply` every 50 ms until it says something else than
/// `300`, for at most `within`.
fn await_reply(ctx: &zmq::Context, uuid: &[u8], within: std::time::Duration) -> Frames {
    let deadline = Instant::now() + within;
    loop {
        let reply = tsp(ctx, b"titanic.reply", &[uuid]);
        if reply != frames(&[b"300"]) {
            return reply;
        }
        assert!(Instant::now() < deadline, "no reply within {within:?}");
        std::thread::sleep(ms(50));
    }
}

fn store_usage(sc: &Scenario) -> (u64, usize) {
    dir_usage(&sc.dir().join(".titanic"))
}

#[test]
fn titanic_refuses_to_call_itself_and_its_store_stays_small() {
    let mut sc = Scenario::new("titanic-self-call");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    sc.start("mdworker", bin!("mdworker"), &[]);
    let pid = sc.os_pid(titanic);
    let rss_before = rss_kib(pid);
    let answers = sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        // The chain: a request for titanic.request whose body is another
        // such request, 2000 deep (≈ 46 KB). The C stores it, calls
        // itself with the body, stores that (one frame shorter)...
        let mut chain: Vec<&[u8]> = vec![b"titanic.request"; 2000];
        chain.push(b"echo");
        chain.push(b"payload");
        let mut answers = vec![tsp(&ctx, b"titanic.request", &chain)];
        for service in [
            &b"titanic.reply"[..],
            b"titanic.close",
            b"titanic.anything",
            b"mmi.service",
            b"mmi.echo",
        ] {
            answers.push(tsp(
                &ctx,
                b"titanic.request",
                &[service, b"0123456789ABCDEF0123456789ABCDEF"],
            ));
        }
        // A legitimate request behind them is served.
        let uuid = submit(&ctx, b"echo", &[b"legit"]);
        assert_eq!(
            await_reply(&ctx, &uuid, secs(30)),
            frames(&[b"200", b"legit"])
        );
        answers
    });
    let (bytes, files) = store_usage(&sc);
    let rss_after = rss_kib(pid);
    eprintln!(
        "self-call attack: store {bytes} bytes in {files} files, titanic RSS {rss_before} -> {rss_after} KiB"
    );
    // Left in the store: the legitimate request, its reply, the queue.
    assert!(
        files <= 3 && bytes < 4096,
        "store grew: {bytes} bytes in {files} files"
    );
    for answer in answers {
        assert_eq!(answer, frames(&[b"400"]), "a self-call was accepted");
    }
    sc.stop_cleanly(titanic, secs(20));
}

/// A fake worker for `service` that takes requests and never answers, but
/// heartbeats, so the broker keeps it; runs until `stop` or `within`.
fn silent_worker(
    ctx: &zmq::Context,
    service: &[u8],
    stop: &std::sync::atomic::AtomicBool,
    within: std::time::Duration,
) -> usize {
    let worker = wire::probe(ctx, zmq::DEALER)
        .receive_timeout(500)
        .connect("tcp://localhost:5555");
    send(&worker, &[b"", b"MDPW01", b"\x01", service]);
    let deadline = Instant::now() + within;
    let mut taken = 0;
    let mut next_beat = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        if Instant::now() >= next_beat {
            send(&worker, &[b"", b"MDPW01", b"\x04"]);
            next_beat = Instant::now() + ms(1000);
        }
        if let Ok(msg) = worker.recv_multipart(0) {
            if msg.get(2).map(Vec::as_slice) == Some(b"\x02") {
                taken += 1;
            }
        }
    }
    taken
}

#[test]
fn silent_workers_do_not_delay_other_requests() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut sc = Scenario::new("titanic-silent");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    sc.start("mdworker", bin!("mdworker"), &[]);

    // 12 services, each with a worker that never answers.
    let stop = Arc::new(AtomicBool::new(false));
    let services: Vec<Vec<u8>> = (0..12)
        .map(|n| format!("silent-{n}").into_bytes())
        .collect();
    let workers: Vec<_> = services
        .iter()
        .map(|service| {
            let (stop, service) = (stop.clone(), service.clone());
            sc.in_namespace_background(move || {
                silent_worker(&zmq::Context::new(), &service, &stop, secs(120))
            })
        })
        .collect();
    let queued = services.clone();
    let latency = sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        for service in &queued {
            let deadline = Instant::now() + secs(30);
            while mmi(&ctx, b"mmi.service", service) != frames(&[b"MDPC01", b"mmi.service", b"200"])
            {
                assert!(Instant::now() < deadline, "silent worker never registered");
                std::thread::sleep(ms(20));
            }
        }
        // 60 requests for silent services in front of a legitimate one.
        let mut silent = Vec::new();
        for n in 0..60 {
            silent.push(submit(&ctx, &queued[n % queued.len()], &[b"hello?"]));
        }
        let started = Instant::now();
        let uuid = submit(&ctx, b"echo", &[b"not stuck"]);
        assert_eq!(
            await_reply(&ctx, &uuid, secs(120)),
            frames(&[b"200", b"not stuck"])
        );
        let latency = started.elapsed();
        // The silent ones are still pending, not lost.
        for uuid in &silent {
            assert_eq!(tsp(&ctx, b"titanic.reply", &[uuid]), frames(&[b"300"]));
        }
        latency
    });
    eprintln!("legitimate request behind 60 silent ones answered in {latency:?}");
    // Head-of-line blocking costs ≥ 1 s per silent request (60 s here).
    assert!(latency < secs(3), "answered only after {latency:?}");
    // Titanic ends promptly on SIGTERM with calls in flight.
    sc.signal(titanic, libc::SIGTERM);
    assert_eq!(sc.wait_exit(titanic, secs(5)), 0, "{}", sc.report());
    stop.store(true, Ordering::SeqCst);
    let taken: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(
        taken >= services.len(),
        "the silent workers got {taken} requests"
    );
}

#[test]
fn titanic_store_stays_within_its_quota_under_a_request_flood() {
    let mut sc = Scenario::new("titanic-quota");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    let pid = sc.os_pid(titanic);
    let rss_before = rss_kib(pid);
    let (bytes_before, files_before) = store_usage(&sc);

    // A legitimate request first; its service has no worker yet.
    let early = sc.in_namespace(|| submit(&zmq::Context::new(), b"echo", &[b"before the flood"]));

    // The byte flood: 160 requests of ~1 MiB (10× the 16 MiB quota).
    let flood = |count: usize, size: usize| {
        move || {
            let ctx = zmq::Context::new();
            let dealer = probe(&ctx, zmq::DEALER);
            let body = vec![b'A'; size];
            let (mut accepted, mut refused) = (Vec::new(), 0usize);
            let mut outstanding = 0;
            for n in 0..count + 8 {
                if n < count {
                    send(
                        &dealer,
                        &[b"", b"MDPC01", b"titanic.request", b"nobody", &body],
                    );
                    outstanding += 1;
                }
                if outstanding == 8 || (n >= count && outstanding > 0) {
                    let reply = recv(&dealer);
                    match reply.get(3).map(Vec::as_slice) {
                        Some(b"200") => accepted.push(reply[4].clone()),
                        Some(b"500") => refused += 1,
                        _ => panic!("unexpected answer {reply:?}"),
                    }
                    outstanding -= 1;
                }
            }
            assert_eq!(outstanding, 0);
            (accepted, refused)
        }
    };
    let (big, big_refused) = sc.in_namespace(flood(160, (1 << 20) - 64));
    let (bytes_big, files_big) = store_usage(&sc);
    // Closing frees the bytes again.
    let closing = big.clone();
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        for uuid in closing {
            assert_eq!(tsp(&ctx, b"titanic.close", &[&uuid]), frames(&[b"200"]));
        }
    });
    // The count flood: 10,000 small requests (10× the 1000-request quota).
    let (small, small_refused) = sc.in_namespace(flood(10_000, 16));
    let (bytes_small, files_small) = store_usage(&sc);
    let rss_after = rss_kib(pid);
    eprintln!(
        "quota: store {bytes_before} B/{files_before} files; after 160 MiB: {bytes_big} B/{files_big} \
         files ({} accepted, {big_refused} refused); after 10,000 requests: {bytes_small} B/{files_small} \
         files ({} accepted, {small_refused} refused); RSS {rss_before} -> {rss_after} KiB",
        big.len(),
        small.len()
    );
    // Bound: 16 MiB of requests (+ the queue file, 34 bytes a line).
    assert!(bytes_big <= 16 * MIB + 64 * 1024, "{bytes_big} bytes");
    assert!(
        big.len() <= 16 && big_refused >= 144,
        "{} accepted",
        big.len()
    );
    // Bound: 1000 requests in all.
    assert!(files_small <= 1000 + 1, "{files_small} files");
    assert_eq!(1 + small.len(), 1000);
    assert!(bytes_small <= 16 * MIB + 64 * 1024, "{bytes_small} bytes");

    // What was accepted before the flood is still served; a new request is
    // refused (500) while the store is full, accepted once space is freed.
    sc.start("mdworker", bin!("mdworker"), &[]);
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let full = tsp(&ctx, b"titanic.request", &[b"echo", b"full?"]);
        assert_eq!(full, frames(&[b"500"]), "accepted past the quota");
        let reply = await_reply(&ctx, &early, secs(30));
        assert_eq!(reply, frames(&[b"200", b"before the flood"]));
        assert_eq!(tsp(&ctx, b"titanic.close", &[&early]), frames(&[b"200"]));
        for uuid in &small {
            assert_eq!(tsp(&ctx, b"titanic.close", &[uuid]), frames(&[b"200"]));
        }
        let uuid = submit(&ctx, b"echo", &[b"after the flood"]);
        let reply = await_reply(&ctx, &uuid, secs(30));
        assert_eq!(reply, frames(&[b"200", b"after the flood"]));
    });
    let (bytes_end, files_end) = store_usage(&sc);
    eprintln!("quota: after closing: {bytes_end} B/{files_end} files");
    assert!(files_end <= 3, "{files_end} files left");
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn titanic_removes_crash_leftovers_on_start() {
    use zguide::mdp::titanic::encode;
    use zguide::Message;
    let mut sc = Scenario::new("titanic-leftovers");
    // A store as crashes leave it: temporary files (one large), a reply
    // whose request was closed, and one pending request that must survive.
    let store = sc.dir().join(".titanic");
    std::fs::create_dir_all(&store).unwrap();
    let pending = "5EA1ED0000000000000000000000B0A7";
    let request = Message::from_frames(["echo", "survivor"]);
    std::fs::write(store.join(format!("{pending}.req")), encode(&request)).unwrap();
    std::fs::write(
        store.join("queue"),
        format!("+FEDCBA9876543210FEDCBA9876543210\n-{pending}\n"),
    )
    .unwrap();
    std::fs::write(
        store.join(format!("{pending}.rep.tmp-0badf00d")),
        vec![7u8; 1 << 20],
    )
    .unwrap();
    std::fs::write(store.join("queue.tmp-12345678"), b"-").unwrap();
    std::fs::write(
        store.join("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.req.tmp-00000001"),
        b"",
    )
    .unwrap();
    let orphan = Message::from_frames(["closed"]);
    std::fs::write(
        store.join("FEDCBA9876543210FEDCBA9876543210.rep"),
        encode(&orphan),
    )
    .unwrap();
    let (before, files_before) = store_usage(&sc);

    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    let (after_start, files_after_start) = store_usage(&sc);
    let mut names = titanic_dir_files(&sc);
    names.sort();
    assert_eq!(names, vec![format!("{pending}.req"), "queue".to_string()]);
    eprintln!(
        "leftovers: {before} bytes in {files_before} files before start, \
         {after_start} in {files_after_start} after"
    );
    // The pending request is still served.
    sc.start("mdworker", bin!("mdworker"), &[]);
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let reply = await_reply(&ctx, pending.as_bytes(), secs(30));
        assert_eq!(reply, frames(&[b"200", b"survivor"]));
    });
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn titanic_compacts_its_queue() {
    let mut sc = Scenario::new("titanic-compact");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    sc.start("mdworker", bin!("mdworker"), &[]);
    let queue = sc.dir().join(".titanic/queue");
    let lines = move || {
        std::fs::read_to_string(&queue)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let count = lines.clone();
    let most = sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let mut most = 0;
        for batch in 0..10 {
            let bodies: Vec<String> = (0..30).map(|n| format!("request {batch}.{n}")).collect();
            let uuids: Vec<Vec<u8>> = bodies
                .iter()
                .map(|body| submit(&ctx, b"echo", &[body.as_bytes()]))
                .collect();
            for (uuid, body) in uuids.iter().zip(&bodies) {
                let reply = await_reply(&ctx, uuid, secs(30));
                assert_eq!(reply, frames(&[b"200", body.as_bytes()]));
                assert_eq!(tsp(&ctx, b"titanic.close", &[uuid]), frames(&[b"200"]));
                most = most.max(count());
            }
        }
        most
    });
    eprintln!(
        "queue: at most {most} lines over 300 requests, {} at the end",
        lines()
    );
    // Compaction: done lines are dropped once they are 64 or more.
    assert!(most <= 65, "the queue grew to {most} lines");
    // A restart compacts it completely.
    sc.kill(titanic);
    sc.restart(titanic);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        assert_eq!(
            tsp(
                &ctx,
                b"titanic.reply",
                &[b"0123456789ABCDEF0123456789ABCDEF"]
            ),
            frames(&[b"400"])
        );
    });
    assert_eq!(lines(), 0);
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn ticlient_and_titanic_exit_cleanly_on_signals_while_a_request_is_pending() {
    let mut sc = Scenario::new("titanic-signals");
    let (_broker, titanic) = start_titanic(&mut sc, &["-v"]);
    // No worker: the request stays pending and the client keeps asking.
    let client = sc.start("ticlient", bin!("ticlient"), &[]);
    sc.expect(client, "I: no reply yet, trying again...", secs(30));
    sc.expect(titanic, "I: processing request", secs(30));
    let started = Instant::now();
    sc.stop_cleanly(client, secs(5));
    sc.signal(titanic, libc::SIGTERM);
    assert_eq!(sc.wait_exit(titanic, secs(5)), 0, "{}", sc.report());
    eprintln!("both stopped in {:?}", started.elapsed());
}

#[test]
fn a_reply_too_large_to_store_fails_its_request_with_500() {
    let mut sc = Scenario::new("titanic-reply-too-large");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let uuid = submit(&ctx, b"big", &[b"small request"]);
        // A worker whose answer fits every socket (two 700 KiB frames) but
        // not the store (1 MiB a message): the request can never be
        // answered, and says so (500) instead of waiting (300) forever.
        let worker = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        send(&worker, &[b"", b"MDPW01", b"\x01", b"big"]);
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(
            request.get(2).map(Vec::as_slice),
            Some(&b"\x02"[..]),
            "{request:?}"
        );
        let frame = vec![b'R'; 700 << 10];
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &request[3], b"", &frame, &frame],
        );
        assert_eq!(await_reply(&ctx, &uuid, secs(30)), frames(&[b"500"]));
        assert_eq!(tsp(&ctx, b"titanic.close", &[&uuid]), frames(&[b"200"]));
        assert_eq!(tsp(&ctx, b"titanic.reply", &[&uuid]), frames(&[b"400"]));
    });
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn titanic_asks_about_a_service_without_workers_once_a_second() {
    let mut sc = Scenario::new("titanic-retry");
    let broker = start_broker(&mut sc);
    let titanic = sc.start("titanic", bin!("titanic"), &[]);
    for _ in 0..3 {
        sc.expect(broker, "I: registering new worker", secs(30));
    }
    let uuid = sc.in_namespace(|| submit(&zmq::Context::new(), b"nobody", &[b"waits"]));
    // Each lookup (`mmi.service` for "nobody") shows in the verbose
    // broker's dump as a frame line of its own.
    let lookups = |sc: &Scenario| sc.count(broker, "[006] nobody");
    sc.wait_for(broker, secs(10), "a first lookup", |output| {
        output.matches("[006] nobody").count() >= 2
    });
    let (before, (woke, ticks)) = (lookups(&sc), sc.idle_cost(titanic));
    // A window to measure in, not a synchronisation.
    std::thread::sleep(secs(3));
    let (after, (woke_after, ticks_after)) = (lookups(&sc), sc.idle_cost(titanic));
    let (asked, woke, cpu) = (after - before, woke_after - woke, ticks_after - ticks);
    eprintln!("in 3 s: {asked} lookups, titanic woke {woke} times, used {cpu} ticks");
    // One lookup a second (the retry delay); a dispatcher that forgot the
    // delay asks hundreds of times and spins.
    assert!(
        asked <= 8,
        "{asked} lookups for a service without workers in 3 s"
    );
    assert!(
        woke <= 60 && cpu <= 50,
        "titanic woke {woke} times, used {cpu} ticks in 3 s"
    );
    // Only asked: the request itself went to the broker twice (in from
    // the client, out to titanic.request), never to the missing service.
    assert_eq!(sc.count(broker, "[005] waits"), 2, "{}", sc.output(broker));
    // And it keeps asking: a worker that comes later gets the request.
    sc.in_namespace(move || {
        let ctx = zmq::Context::new();
        let worker = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        send(&worker, &[b"", b"MDPW01", b"\x01", b"nobody"]);
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(request.last().map(Vec::as_slice), Some(&b"waits"[..]));
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &request[3], b"", b"found"],
        );
        assert_eq!(
            await_reply(&ctx, &uuid, secs(30)),
            frames(&[b"200", b"found"])
        );
    });
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn a_request_whose_worker_vanished_is_sent_again() {
    let mut sc = Scenario::new("titanic-vanished-worker");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        let uuid = submit(&ctx, b"fragile", &[b"again"]);
        // A worker takes the request and vanishes without a word.
        let first = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        send(&first, &[b"", b"MDPW01", b"\x01", b"fragile"]);
        let request = recv_skip_heartbeats(&first);
        assert_eq!(request.last().map(Vec::as_slice), Some(&b"again"[..]));
        drop(first);
        // Another comes: once the call's deadline passed, Titanic sends
        // the request again, and this time it is answered.
        let second = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        send(&second, &[b"", b"MDPW01", b"\x01", b"fragile"]);
        let request = recv_skip_heartbeats(&second);
        assert_eq!(request.last().map(Vec::as_slice), Some(&b"again"[..]));
        send(
            &second,
            &[b"", b"MDPW01", b"\x03", &request[3], b"", b"again!"],
        );
        assert_eq!(
            await_reply(&ctx, &uuid, secs(30)),
            frames(&[b"200", b"again!"])
        );
    });
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn titanic_logs_a_burst_of_refusals_once_with_a_count() {
    let mut sc = Scenario::new("titanic-refusal-log");
    let (_broker, titanic) = start_titanic(&mut sc, &[]);
    let refused = "titanic.request: refused";
    let before = sc.count(titanic, refused);
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        for _ in 0..30 {
            assert_eq!(
                tsp(&ctx, b"titanic.request", &[b"no body"]),
                frames(&[b"400"])
            );
        }
    });
    // The limiter is one line a second: what is measured is its window.
    std::thread::sleep(ms(1100));
    sc.in_namespace(|| {
        let ctx = zmq::Context::new();
        assert_eq!(
            tsp(&ctx, b"titanic.request", &[b"no body"]),
            frames(&[b"400"])
        );
    });
    let line = sc.expect(titanic, "similar since)", secs(10));
    let lines = sc.count(titanic, refused) - before;
    // The one with the count, and one or two more if the burst (or the
    // refusal `start_titanic` caused just before) began a new second on a
    // loaded machine: never one per refusal.
    assert!((1..=3).contains(&lines), "{lines} refusal lines");
    let similar: u64 = line
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"));
    assert!(similar >= 15, "{line}");
    sc.stop_cleanly(titanic, secs(20));
}

#[test]
fn a_late_answer_never_becomes_another_requests_reply() {
    use std::sync::mpsc;
    let mut sc = Scenario::new("titanic-late-answer");
    let (_broker, titanic) = start_titanic(&mut sc, &["-v"]);
    let (uuid_sender, uuid_receiver) = mpsc::channel();
    let (go, go_receiver) = mpsc::channel::<()>();
    let client = sc.in_namespace_background(move || {
        let ctx = zmq::Context::new();
        let first = submit(&ctx, b"late", &[b"first"]);
        let second = submit(&ctx, b"late", &[b"second"]);
        let worker = wire::probe(&ctx, zmq::DEALER).connect("tcp://localhost:5555");
        send(&worker, &[b"", b"MDPW01", b"\x01", b"late"]);
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(request.last().map(Vec::as_slice), Some(&b"first"[..]));
        // The client gives up on the first request while its call is in
        // flight; once the call's deadline passed, the second one is due.
        assert_eq!(tsp(&ctx, b"titanic.close", &[&first]), frames(&[b"200"]));
        uuid_sender.send(second.clone()).unwrap();
        go_receiver
            .recv_timeout(secs(60))
            .expect("titanic never dispatched the second request");
        // Only now does the worker answer the first request, to the
        // address of the call that timed out.
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &request[3], b"", b"first, late"],
        );
        let request = recv_skip_heartbeats(&worker);
        assert_eq!(request.last().map(Vec::as_slice), Some(&b"second"[..]));
        send(
            &worker,
            &[b"", b"MDPW01", b"\x03", &request[3], b"", b"second"],
        );
        await_reply(&ctx, &second, secs(30))
    });
    let second = uuid_receiver
        .recv_timeout(secs(60))
        .unwrap_or_else(|_| sc.fail("the client never got its requests in"));
    let line = format!("I: processing request {}", String::from_utf8_lossy(&second));
    sc.expect(titanic, &line, secs(30));
    go.send(()).unwrap();
    let reply = client
        .join()
        .unwrap_or_else(|_| sc.fail("the client failed"));
    // A timed-out call's socket is closed, never reused: reused, it would
    // take the late answer as the second request's reply (or drop it as a
    // bad answer while it waits for the broker's lookup).
    assert_eq!(reply, frames(&[b"200", b"second"]), "{}", sc.report());
    assert_eq!(sc.count(titanic, "bad answer"), 0, "{}", sc.report());
    sc.stop_cleanly(titanic, secs(20));
}
