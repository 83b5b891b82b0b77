//! The bench's hidden modes, run by the bench itself inside a benchmark's
//! network namespace (`bench --internal-… args`): load generators where the
//! guide's programs cannot produce a figure, and the raw TCP copy that the
//! file-transfer figures are compared with.
//!
//! Each prints one line of figures, read back by [`crate::guide_jobs`], and
//! exits 0; any failure prints `E: …` and exits 1. Every wait is bounded.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zguide::clone::{KvMap, ICANHAZ, KTHXBAI};
use zguide::kvmsg::KvMsg;
use zguide::Message;

/// clonesrv5's ports (the guide's): snapshots, updates out, updates in.
const CLONE_SNAPSHOT: &str = "tcp://127.0.0.1:5556";
const CLONE_UPDATES: &str = "tcp://127.0.0.1:5557";
const CLONE_COLLECTOR: &str = "tcp://127.0.0.1:5558";
/// The subtree the bench's clone clients use.
const BENCH_SUBTREE: &str = "/bench/";
/// Keys the throughput clients write to, in turn: few enough that the
/// server's map (at most 100,000 keys) never fills.
const LOAD_KEYS: u64 = 1000;

/// Runs a hidden mode if `args` names one; returns its exit code.
pub fn dispatch(args: &[String]) -> Option<i32> {
    let mode = args.first()?.as_str();
    let number = |n: usize| -> Result<u64, String> {
        args.get(n)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("{mode}: argument {n} must be a whole number"))
    };
    let result = match mode {
        "--internal-clone-load" => (|| {
            clone_load(
                number(1)? as usize,
                number(2)? as usize,
                number(3)?,
                Duration::from_secs(number(4)?),
            )
        })(),
        "--internal-clone-snapshot" => {
            (|| clone_snapshot(number(1)? as usize, Duration::from_secs(number(2)?)))()
        }
        "--internal-zre-mesh" => {
            (|| crate::p2p_jobs::run_mesh(number(1)? as usize, Duration::from_secs(120)))()
        }
        "--internal-zre-shout" => (|| {
            crate::p2p_jobs::run_shout(
                number(1)? as usize,
                number(2)? as usize,
                Duration::from_secs(120),
            )
        })(),
        "--internal-zre-converge" => (|| {
            crate::p2p_jobs::run_converge(
                number(1)? as usize,
                number(2)? as usize,
                Duration::from_secs(120),
            )
        })(),
        "--internal-raw-copy" => match args.get(1) {
            Some(path) => raw_copy(path, args.get(2).map(String::as_str)),
            None => Err("--internal-raw-copy needs a file".to_string()),
        },
        _ => return None,
    };
    Some(match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(problem) => {
            println!("E: {problem}");
            1
        }
    })
}

fn zmq_error(what: &str) -> impl Fn(zmq::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// `publishers` PUSH clients send `updates` updates in all (split evenly)
/// through clonesrv5 to `subscribers` SUB clients, which count what they
/// receive. Before the timed part, warm-up updates go out until every
/// subscriber has seen one (so no subscriber misses the start). Prints
/// `clone-load: sent S received R subscribers N seconds T`, T from the first
/// timed send to the last update received (or the last send, if later).
fn clone_load(
    publishers: usize,
    subscribers: usize,
    updates: u64,
    limit: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let context = zmq::Context::new();
    let warm = Arc::new(AtomicUsize::new(0));
    let timed = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let last_receipt_ns = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();

    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let socket = context.socket(zmq::SUB).map_err(zmq_error("SUB socket"))?;
        socket
            .set_subscribe(BENCH_SUBTREE.as_bytes())
            .map_err(zmq_error("subscribe"))?;
        socket.set_rcvhwm(100_000).map_err(zmq_error("rcvhwm"))?;
        socket.set_linger(0).map_err(zmq_error("linger"))?;
        socket
            .connect(CLONE_UPDATES)
            .map_err(zmq_error("connect to clonesrv5's publisher"))?;
        let (warm, timed, received, last) = (
            warm.clone(),
            timed.clone(),
            received.clone(),
            last_receipt_ns.clone(),
        );
        subs.push(std::thread::spawn(move || -> Result<(), String> {
            let mut warmed = false;
            let mut mine = 0u64;
            let mut idle_since = Instant::now();
            while Instant::now() < deadline {
                let Some(msg) = Message::recv_timeout(&socket, 100).map_err(|e| e.to_string())?
                else {
                    // Once the timed part is on, two seconds without
                    // updates mean the rest were dropped: stop counting.
                    if timed.load(Ordering::SeqCst) && idle_since.elapsed() > Duration::from_secs(2)
                    {
                        break;
                    }
                    continue;
                };
                idle_since = Instant::now();
                let kv = KvMsg::from_message(msg).map_err(|e| e.to_string())?;
                if kv.key().ends_with(b"warm") {
                    if !warmed {
                        warmed = true;
                        warm.fetch_add(1, Ordering::SeqCst);
                    }
                    continue;
                }
                mine += 1;
                received.fetch_add(1, Ordering::SeqCst);
                last.fetch_max(origin.elapsed().as_nanos() as u64, Ordering::SeqCst);
                if mine >= updates {
                    break;
                }
            }
            Ok(())
        }));
    }

    let push = || -> Result<zmq::Socket, String> {
        let socket = context
            .socket(zmq::PUSH)
            .map_err(zmq_error("PUSH socket"))?;
        socket.set_linger(1000).map_err(zmq_error("linger"))?;
        // A send that waits longer than this means the server is stuck.
        socket.set_sndtimeo(5000).map_err(zmq_error("sndtimeo"))?;
        socket
            .connect(CLONE_COLLECTOR)
            .map_err(zmq_error("connect to clonesrv5's collector"))?;
        Ok(socket)
    };
    let send = |socket: &zmq::Socket, key: String, body: &str| -> Result<(), String> {
        KvMsg::with(key, 0, body.as_bytes())
            .to_message()
            .send(socket)
            .map_err(|e| format!("send to clonesrv5: {e}"))
    };

    // Warm up: until every subscriber has heard from the server.
    let warmer = push()?;
    while warm.load(Ordering::SeqCst) < subscribers {
        if Instant::now() >= deadline {
            return Err(format!(
                "only {} of {subscribers} subscribers heard the warm-up updates",
                warm.load(Ordering::SeqCst)
            ));
        }
        send(&warmer, format!("{BENCH_SUBTREE}warm"), "1")?;
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let warm-up updates still in flight arrive before the timed part.
    std::thread::sleep(Duration::from_millis(200));

    let mut sockets = Vec::new();
    for _ in 0..publishers {
        sockets.push(push()?);
    }
    // Connections are asynchronous: give them a moment before timing.
    std::thread::sleep(Duration::from_millis(200));
    timed.store(true, Ordering::SeqCst);
    let started_ns = origin.elapsed().as_nanos() as u64;
    let per_publisher = updates / publishers as u64;
    let extra = updates % publishers as u64;
    let mut senders = Vec::new();
    for (n, socket) in sockets.into_iter().enumerate() {
        let count = per_publisher + u64::from((n as u64) < extra);
        senders.push(std::thread::spawn(move || -> Result<u64, String> {
            for i in 0..count {
                if Instant::now() >= deadline {
                    return Err("time limit reached while sending".to_string());
                }
                let key = format!(
                    "{BENCH_SUBTREE}{}",
                    (i * publishers as u64 + n as u64) % LOAD_KEYS
                );
                KvMsg::with(key, 0, i.to_string().into_bytes())
                    .to_message()
                    .send(&socket)
                    .map_err(|e| format!("send to clonesrv5: {e}"))?;
            }
            Ok(count)
        }));
    }
    let mut sent = 0;
    let mut problems = Vec::new();
    for sender in senders {
        match sender.join() {
            Ok(Ok(count)) => sent += count,
            Ok(Err(problem)) => problems.push(problem),
            Err(_) => problems.push("a sender panicked".to_string()),
        }
    }
    let sent_ns = origin.elapsed().as_nanos() as u64;
    for sub in subs {
        match sub.join() {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => problems.push(problem),
            Err(_) => problems.push("a subscriber panicked".to_string()),
        }
    }
    if let Some(problem) = problems.first() {
        return Err(problem.clone());
    }
    let got = received.load(Ordering::SeqCst);
    let end_ns = last_receipt_ns.load(Ordering::SeqCst).max(sent_ns);
    let seconds = end_ns.saturating_sub(started_ns) as f64 / 1e9;
    Ok(format!(
        "clone-load: sent {sent} received {got} subscribers {subscribers} seconds {seconds:.6}"
    ))
}

/// Fills clonesrv5 with `keys` distinct keys, checks with one snapshot that
/// it holds them all, then times a new client (a fresh DEALER) from its
/// connect to the snapshot's `KTHXBAI`, storing every entry in a map as
/// clonecli5 does. Prints `clone-snapshot: keys K entries E ms M`.
fn clone_snapshot(keys: usize, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let context = zmq::Context::new();
    let push = context
        .socket(zmq::PUSH)
        .map_err(zmq_error("PUSH socket"))?;
    push.set_sndtimeo(5000).map_err(zmq_error("sndtimeo"))?;
    push.set_linger(1000).map_err(zmq_error("linger"))?;
    push.connect(CLONE_COLLECTOR)
        .map_err(zmq_error("connect to clonesrv5's collector"))?;
    for n in 0..keys {
        KvMsg::with(
            format!("{BENCH_SUBTREE}{n:06}"),
            0,
            n.to_string().into_bytes(),
        )
        .to_message()
        .send(&push)
        .map_err(|e| format!("send to clonesrv5: {e}"))?;
    }
    // The server has them all once a snapshot holds them all.
    loop {
        let (entries, _) = snapshot(&context, deadline)?;
        if entries >= keys {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("the server holds {entries} of {keys} keys"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (entries, elapsed) = snapshot(&context, deadline)?;
    Ok(format!(
        "clone-snapshot: keys {keys} entries {entries} ms {:.3}",
        elapsed.as_secs_f64() * 1000.0
    ))
}

/// One snapshot of the bench's subtree by a new client: the entries and
/// the time from connect to `KTHXBAI`.
fn snapshot(context: &zmq::Context, deadline: Instant) -> Result<(usize, Duration), String> {
    let started = Instant::now();
    let dealer = context
        .socket(zmq::DEALER)
        .map_err(zmq_error("DEALER socket"))?;
    dealer.set_linger(0).map_err(zmq_error("linger"))?;
    dealer
        .connect(CLONE_SNAPSHOT)
        .map_err(zmq_error("connect to clonesrv5's snapshot port"))?;
    Message::from_frames([ICANHAZ, BENCH_SUBTREE])
        .send(&dealer)
        .map_err(|e| format!("ICANHAZ?: {e}"))?;
    let mut map = KvMap::with_limits(usize::MAX, usize::MAX);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("snapshot incomplete after {} entries", map.len()));
        }
        let Some(msg) =
            Message::recv_timeout(&dealer, left.as_millis() as i64).map_err(|e| e.to_string())?
        else {
            continue;
        };
        let kv = KvMsg::from_message(msg).map_err(|e| format!("snapshot entry: {e}"))?;
        if kv.key() == KTHXBAI.as_bytes() {
            return Ok((map.len(), started.elapsed()));
        }
        map.store(kv);
    }
}

/// The baseline for `fileio`: the file copied over one plain TCP
/// connection on loopback, read and written in 250,000-byte chunks (the
/// fileio programs' chunk size) by two threads. With `dest`, the receiver
/// writes what it receives there and syncs it at the end, as a file copy
/// does (the study's file-transfer tool writes its copy; `fileio3` writes
/// nothing). Prints `raw-copy: bytes B seconds T`.
fn raw_copy(path: &str, dest: Option<&str>) -> Result<String, String> {
    const CHUNK: usize = 250_000;
    let started = Instant::now();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let sender = std::thread::spawn(move || -> Result<u64, String> {
        let mut stream =
            std::net::TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
        let mut buffer = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Ok(total);
            }
            stream
                .write_all(&buffer[..n])
                .map_err(|e| format!("send: {e}"))?;
            total += n as u64;
        }
    });
    let mut stream = accept_within(&listener, Duration::from_secs(30))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut copy = match dest {
        Some(dest) => {
            Some(std::fs::File::create(dest).map_err(|e| format!("cannot create {dest}: {e}"))?)
        }
        None => None,
    };
    let mut buffer = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let n = stream
            .read(&mut buffer)
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        if let Some(copy) = &mut copy {
            copy.write_all(&buffer[..n])
                .map_err(|e| format!("write: {e}"))?;
        }
        received += n as u64;
    }
    if let Some(copy) = &copy {
        copy.sync_all().map_err(|e| format!("sync: {e}"))?;
    }
    let sent = sender
        .join()
        .map_err(|_| "the sending thread panicked".to_string())??;
    if sent != received {
        return Err(format!("sent {sent} bytes but received {received}"));
    }
    Ok(format!(
        "raw-copy: bytes {received} seconds {:.6}",
        started.elapsed().as_secs_f64()
    ))
}

/// `accept` that gives up after `limit` (the sending thread may have failed
/// before it connected).
fn accept_within(
    listener: &std::net::TcpListener,
    limit: Duration,
) -> Result<std::net::TcpStream, String> {
    let deadline = Instant::now() + limit;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("accept: {e}"))?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(|e| format!("accept: {e}"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("no connection within {limit:?}"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}
