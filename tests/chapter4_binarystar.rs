//! Chapter 4, Binary Star (§31–§32): `bstarsrv`, `bstarsrv2` and `bstarcli`
//! as real processes. Failover when the active server is SIGKILLed or
//! stopped with Ctrl-C, failback that never makes two actives, the fatal
//! dual-active/dual-passive guards, and state messages from a fake peer.

mod common;
use common::wire::probe;
use common::{ms, secs, Pid, Scenario};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The numbers of the client's `I: server replied OK (n)` lines, in order.
fn replies(sc: &Scenario, client: Pid) -> Vec<u64> {
    sc.lines(client)
        .iter()
        .filter_map(|l| l.strip_prefix("I: server replied OK ("))
        .filter_map(|rest| rest.strip_suffix(')'))
        .map(|n| n.parse().expect("a sequence number"))
        .collect()
}

/// Asserts the client got 1, 2, 3 … with no number skipped or repeated.
fn assert_gapless(sc: &Scenario, client: Pid) -> u64 {
    let got = replies(sc, client);
    let want: Vec<u64> = (1..=got.len() as u64).collect();
    if got != want {
        sc.fail(&format!("replies not 1..n in order: {got:?}"));
    }
    got.len() as u64
}

/// Starts the pair (primary first) and waits until they found each other.
fn start_pair(sc: &mut Scenario, program: &str) -> (Pid, Pid) {
    let primary = sc.start("primary", program, &["-p"]);
    sc.expect(
        primary,
        "I: Primary active, waiting for backup (passive)",
        secs(10),
    );
    let backup = sc.start("backup", program, &["-b"]);
    sc.expect(primary, "I: connected to backup (passive), ready", secs(10));
    sc.expect(backup, "I: connected to primary (active), ready", secs(10));
    (primary, backup)
}

/// Kill (or Ctrl-C) the active primary while the client runs: the client
/// fails over, the backup takes over on the client's vote, and the sequence
/// goes on without a gap. Then restart the primary: it must go passive and
/// stay so for several heartbeats, while the backup keeps serving.
fn failover_and_failback(name: &str, program: &str, stop_with_sigint: bool) {
    let mut sc = Scenario::new(name);
    let (primary, backup) = start_pair(&mut sc, program);
    let client = sc.start("bstarcli", bin!("bstarcli"), &[]);
    sc.expect(client, "I: server replied OK (3)", secs(20));

    if stop_with_sigint {
        sc.stop_cleanly(primary, secs(10));
    } else {
        sc.kill(primary);
    }
    sc.expect(client, "W: no response from server, failing over", secs(10));
    sc.expect(
        client,
        "I: connecting to server at tcp://localhost:5002...",
        secs(10),
    );
    let line = sc.expect(backup, "I: failover successful, ready", secs(10));
    assert!(line.ends_with("active"), "{line}");
    let before = replies(&sc, client).len();
    sc.expect_count(client, "I: server replied OK", before + 2, secs(20));
    assert_gapless(&sc, client);

    // Failback: the old primary comes back while the backup is active, and
    // a second client votes for it at once (the book's dual-active race).
    sc.restart(primary);
    let second = sc.start("bstarcli2", bin!("bstarcli"), &[]);
    let line = sc.expect(primary, "I: connected to backup (active), ready", secs(10));
    assert!(line.ends_with("passive"), "{line}");
    // The primary did not answer; the second client found the backup.
    sc.expect(
        second,
        "I: connecting to server at tcp://localhost:5002...",
        secs(10),
    );
    sc.expect(second, "I: server replied OK (1)", secs(20));
    // Several heartbeats with the client voting all the time (it alternates
    // servers after each timeout only if the backup stops answering, which it
    // must not): the primary must never become active.
    let before = replies(&sc, client).len();
    sc.expect_count(client, "I: server replied OK", before + 5, secs(20));
    let restarted = sc.output(primary);
    let after_restart = restarted
        .rsplit("--- restarted ---")
        .next()
        .unwrap_or_default();
    if after_restart.contains("ready active") || after_restart.contains("ready as active") {
        sc.fail("the restarted primary became a second active");
    }
    assert!(!sc.output(backup).contains("fatal error"));
    sc.assert_running(primary);
    sc.assert_running(backup);
    assert_gapless(&sc, client);
    sc.stop_cleanly(client, secs(10));
    sc.stop_cleanly(second, secs(10));
    sc.stop_cleanly(backup, secs(10));
    sc.stop_cleanly(primary, secs(10));
}

#[test]
fn bstarsrv_fails_over_on_sigkill_and_never_fails_back_into_two_actives() {
    failover_and_failback("bstarsrv-failover", bin!("bstarsrv"), false);
}

#[test]
fn bstarsrv2_fails_over_on_sigkill_and_never_fails_back_into_two_actives() {
    failover_and_failback("bstarsrv2-failover", bin!("bstarsrv2"), false);
}

#[test]
fn bstarsrv2_fails_over_when_the_primary_is_stopped_with_ctrl_c() {
    failover_and_failback("bstarsrv2-sigint", bin!("bstarsrv2"), true);
}

#[test]
fn the_two_implementations_form_one_pair() {
    let mut sc = Scenario::new("bstar-mixed");
    let primary = sc.start("primary", bin!("bstarsrv2"), &["-p"]);
    let backup = sc.start("backup", bin!("bstarsrv"), &["-b"]);
    sc.expect(
        primary,
        "I: connected to backup (passive), ready as active",
        secs(10),
    );
    sc.expect(
        backup,
        "I: connected to primary (active), ready passive",
        secs(10),
    );
    let client = sc.start("bstarcli", bin!("bstarcli"), &[]);
    sc.expect(client, "I: server replied OK (2)", secs(20));
    sc.kill(primary);
    sc.expect(backup, "I: failover successful, ready active", secs(20));
    sc.expect(client, "I: server replied OK (4)", secs(20));
    assert_gapless(&sc, client);
}

/// A fake peer: publishes `states` in turn on the backup's state endpoint
/// (`tcp://*:5004`) every 100 ms until `stop` is set or 20 s have passed.
fn fake_backup(
    sc: &Scenario,
    states: Vec<&'static str>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    sc.in_namespace_background(move || {
        let context = zmq::Context::new();
        let publisher = probe(&context, zmq::PUB).bind("tcp://*:5004");
        let deadline = Instant::now() + secs(20);
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let _ = publisher.send(states[n % states.len()], zmq::DONTWAIT);
            n += 1;
            std::thread::sleep(ms(100));
        }
    })
}

#[test]
fn dual_actives_are_fatal_for_both_servers() {
    for program in [bin!("bstarsrv"), bin!("bstarsrv2")] {
        let mut sc = Scenario::new("bstar-dual-active");
        let primary = sc.start("primary", program, &["-p"]);
        // A "backup" that says it is waiting, then that it is active.
        let stop = Arc::new(AtomicBool::new(false));
        let peer = fake_backup(&sc, vec!["2"], stop.clone());
        sc.expect(primary, "I: connected to backup (passive), ready", secs(10));
        stop.store(true, Ordering::SeqCst);
        peer.join().expect("fake peer");
        let stop = Arc::new(AtomicBool::new(false));
        let peer = fake_backup(&sc, vec!["3"], stop.clone());
        sc.expect(primary, "E: fatal error - dual actives, aborting", secs(10));
        let code = sc.wait_exit(primary, secs(10));
        stop.store(true, Ordering::SeqCst);
        peer.join().expect("fake peer");
        assert_ne!(code, 0, "{program}: dual actives must end with an error");
    }
}

#[test]
fn dual_passives_are_fatal() {
    let mut sc = Scenario::new("bstar-dual-passive");
    let primary = sc.start("primary", bin!("bstarsrv2"), &["-p"]);
    // An active "backup" makes the primary passive; then it says passive too.
    let stop = Arc::new(AtomicBool::new(false));
    let peer = fake_backup(&sc, vec!["3"], stop.clone());
    sc.expect(
        primary,
        "I: connected to backup (active), ready as passive",
        secs(10),
    );
    stop.store(true, Ordering::SeqCst);
    peer.join().expect("fake peer");
    let stop = Arc::new(AtomicBool::new(false));
    let peer = fake_backup(&sc, vec!["4"], stop.clone());
    sc.expect(
        primary,
        "E: fatal error - dual passives, aborting",
        secs(10),
    );
    let code = sc.wait_exit(primary, secs(10));
    stop.store(true, Ordering::SeqCst);
    peer.join().expect("fake peer");
    assert_ne!(code, 0);
}

/// Garbage on the state channel is logged and ignored, and is not a sign of
/// life: the client's vote still makes the lone primary active once two
/// heartbeats have passed (in C, `atoi` turned the garbage into an event and
/// refreshed the peer's expiry, so failover never came).
#[test]
fn garbage_state_messages_neither_crash_nor_block_failover() {
    for program in [bin!("bstarsrv"), bin!("bstarsrv2")] {
        let mut sc = Scenario::new("bstar-garbage");
        let primary = sc.start("primary", program, &["-p"]);
        let stop = Arc::new(AtomicBool::new(false));
        let peer = fake_backup(&sc, vec!["x", "", "33", "0", "5", "3\0"], stop.clone());
        sc.expect(primary, "ignored a bad state message", secs(10));
        let client = sc.start("bstarcli", bin!("bstarcli"), &[]);
        sc.expect(primary, "I: request from client, ready", secs(20));
        sc.expect(client, "I: server replied OK (1)", secs(20));
        stop.store(true, Ordering::SeqCst);
        peer.join().expect("fake peer");
        sc.assert_running(primary);
        sc.stop_cleanly(primary, secs(10));
        sc.stop_cleanly(client, secs(10));
    }
}

/// A primary alone must not answer before its failover window has passed
/// (it might be failing back), and then answers on the client's vote.
#[test]
fn a_lone_primary_waits_one_failover_window_then_serves() {
    let mut sc = Scenario::new("bstar-lone-primary");
    let primary = sc.start("primary", bin!("bstarsrv2"), &["-p"]);
    sc.expect(primary, "I: Primary active", secs(10));
    let started = Instant::now();
    let client = sc.start("bstarcli", bin!("bstarcli"), &[]);
    sc.expect(primary, "I: request from client, ready as active", secs(20));
    assert!(
        started.elapsed() >= ms(1900),
        "the primary became active {:?} after start, inside its failover window",
        started.elapsed()
    );
    sc.expect(client, "I: server replied OK (2)", secs(20));
    assert_gapless(&sc, client);
}

#[test]
fn wrong_arguments_print_the_usage_and_exit_0() {
    let mut sc = Scenario::new("bstar-usage");
    let one = sc.start("bstarsrv", bin!("bstarsrv"), &["-x"]);
    let two = sc.start("bstarsrv2", bin!("bstarsrv2"), &[]);
    sc.expect(one, "Usage: bstarsrv { -p | -b }", secs(10));
    sc.expect(two, "Usage: bstarsrvs { -p | -b }", secs(10));
    assert_eq!(sc.wait_exit(one, secs(10)), 0);
    assert_eq!(sc.wait_exit(two, secs(10)), 0);
}

#[test]
fn bstarcli_stops_after_the_requested_count_and_on_ctrl_c() {
    let mut sc = Scenario::new("bstarcli-count");
    let _pair = start_pair(&mut sc, bin!("bstarsrv2"));
    let client = sc.start_spec(
        "bstarcli",
        common::Spec::new(bin!("bstarcli"), &[]).env("ZGUIDE_REQUESTS", 3),
    );
    assert_eq!(sc.wait_exit(client, secs(20)), 0);
    assert_eq!(replies(&sc, client), [1, 2, 3]);
    // Ctrl-C while waiting for servers that are not there is prompt.
    let mut sc = Scenario::new("bstarcli-alone");
    let lonely = sc.start("bstarcli", bin!("bstarcli"), &[]);
    sc.expect(
        lonely,
        "I: connecting to server at tcp://localhost:5001...",
        secs(10),
    );
    sc.stop_cleanly(lonely, secs(5));
}
