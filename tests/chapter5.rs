//! Chapter 5 (Advanced Pub-Sub), §36–§38: Espresso, the Last Value Cache
//! with the pathological publisher and subscriber, and the Suicidal Snail,
//! as real processes. (The Clone pattern, §39–§46, has its own file.)

mod common;
use common::{ms, secs, Scenario};

use std::time::Instant;

#[test]
fn espresso_shows_subscriptions_five_messages_unsubscriptions_then_silence() {
    let mut sc = Scenario::new("espresso");
    let espresso = sc.start("espresso", bin!("espresso"), &[]);
    sc.expect(espresso, "[002] 0141", secs(10));
    sc.expect(espresso, "[002] 0142", secs(10));
    sc.expect(espresso, "[002] 0041", secs(30));
    sc.expect_count(espresso, "[002] 0042", 1, secs(10));
    let seen = sc.lines(espresso);
    // A window of 15 publisher ticks: nothing may pass once nobody listens.
    let quiet_from = Instant::now();
    while quiet_from.elapsed() < ms(1500) {
        std::thread::sleep(ms(100));
    }
    let after = sc.lines(espresso);
    if after.len() != seen.len() {
        sc.fail("messages passed the proxy after the subscriber left");
    }
    // What passed: A and B messages only, at least the five the subscriber
    // read (a sixth may be in flight when it leaves), all before the
    // unsubscriptions.
    let first_unsubscribe = seen
        .iter()
        .position(|l| l == "[002] 0041" || l == "[002] 0042")
        .expect("an unsubscription line");
    let messages: Vec<&String> = seen.iter().filter(|l| l.starts_with("[007] ")).collect();
    assert!(
        (5..=6).contains(&messages.len()),
        "{} messages passed: {messages:?}",
        messages.len()
    );
    for line in &messages {
        let text = &line["[007] ".len()..];
        assert!(
            (text.starts_with("A-") || text.starts_with("B-"))
                && text[2..].chars().all(|c| c.is_ascii_digit()),
            "{line}"
        );
    }
    assert!(seen[first_unsubscribe..]
        .iter()
        .all(|l| !l.starts_with("[007]")));
    sc.stop_cleanly(espresso, secs(10));
    sc.expect(espresso, " interrupted", secs(5));
}

/// lvcache + pathopub + pathosub: a subscriber that joins after the 1000
/// topics went out gets its topic's value at once from the cache, and a
/// second subscriber to the same topic does too (XPUB_VERBOSE).
#[test]
fn a_late_subscriber_gets_the_cached_value_at_once() {
    let mut sc = Scenario::new("lvcache");
    let cache = sc.start("lvcache", bin!("lvcache"), &[]);
    // A subscriber to the last topic tells us when all 1000 went through.
    let last = sc.start(
        "pathosub-999",
        bin!("pathosub"),
        &["tcp://localhost:5558", "999"],
    );
    sc.expect(cache, "Sending cached topic 999", secs(10));
    sc.start("pathopub", bin!("pathopub"), &["tcp://*:5557"]);
    sc.expect(last, "Save Roger", secs(20));

    // Now the late ones: each must print the cached value well before any
    // random update could bring it (one topic in 1000 per second).
    for label in ["pathosub-500-a", "pathosub-500-b"] {
        let late = sc.start(label, bin!("pathosub"), &["tcp://localhost:5558", "500"]);
        let asked = Instant::now();
        sc.expect(late, "Save Roger", secs(5));
        assert!(asked.elapsed() < secs(5));
    }
    sc.expect_count(cache, "Sending cached topic 500", 2, secs(5));
    sc.assert_running(cache);
    sc.stop_cleanly(cache, secs(10));
}

/// Without the cache, a late subscriber does not get `Save Roger`: the
/// pathology the cache cures (and proof that the test above needs it).
#[test]
fn without_the_cache_a_late_subscriber_waits() {
    let mut sc = Scenario::new("patho-direct");
    let publisher = sc.start("pathopub", bin!("pathopub"), &[]);
    let early = sc.start(
        "pathosub-999",
        bin!("pathosub"),
        &["tcp://localhost:5556", "999"],
    );
    sc.expect(early, "Save Roger", secs(20));
    let late = sc.start(
        "pathosub-500",
        bin!("pathosub"),
        &["tcp://localhost:5556", "500"],
    );
    let start = Instant::now();
    while start.elapsed() < ms(2000) {
        std::thread::sleep(ms(100));
    }
    assert_eq!(sc.count(late, "Save Roger"), 0);
    sc.stop_cleanly(late, secs(10));
    sc.stop_cleanly(publisher, secs(10));
}

#[test]
fn lvcache_drops_malformed_updates_and_bounds_subscriptions() {
    let mut sc = Scenario::new("lvcache-bad");
    let cache = sc.start("lvcache", bin!("lvcache"), &[]);
    let sent = sc.in_namespace(|| {
        let context = zmq::Context::new();
        let publisher = common::wire::probe(&context, zmq::PUB).bind("tcp://*:5557");
        let subscriber = common::wire::probe(&context, zmq::XSUB).connect("tcp://localhost:5558");
        // A huge subscription: the cache's XPUB drops this peer.
        let mut big = vec![1u8];
        big.extend(vec![b'x'; 512 * 1024]);
        subscriber.send(big, 0).expect("send a subscription");
        // Updates of the wrong shape, until the cache has seen some.
        let deadline = Instant::now() + secs(10);
        let mut sent = 0;
        while Instant::now() < deadline && sent < 200 {
            let _ = publisher.send_multipart([&b"only-topic"[..]], zmq::DONTWAIT);
            let _ = publisher.send_multipart([&b"t"[..], b"v", b"extra"], zmq::DONTWAIT);
            sent += 2;
            std::thread::sleep(ms(20));
        }
        // libzmq keeps our own copy of the huge subscription in a trie that
        // it frees recursively: closing this XSUB would overflow the probe
        // thread's stack (the very bug the cache's bound protects it from).
        // So the probe leaves it open.
        std::mem::forget(subscriber);
        std::mem::forget(context);
        sent
    });
    assert!(sent > 0);
    sc.expect(cache, "update dropped, not [topic][value]", secs(10));
    assert_eq!(
        sc.count(cache, "Sending cached topic x"),
        0,
        "a 512 KiB subscription got through"
    );
    // Still serving: a real publisher and subscriber work through it.
    let subscriber = sc.start(
        "pathosub",
        bin!("pathosub"),
        &["tcp://localhost:5558", "999"],
    );
    sc.expect(cache, "Sending cached topic 999", secs(10));
    sc.start("pathopub", bin!("pathopub"), &["tcp://*:5557"]);
    sc.expect(subscriber, "Save Roger", secs(20));
    sc.stop_cleanly(cache, secs(10));
}

#[test]
fn a_slow_snail_kills_itself_and_the_program_ends() {
    let mut sc = Scenario::new("suisnail-slow");
    let snail = sc.start("suisnail", bin!("suisnail"), &["5"]);
    sc.expect(snail, "E: subscriber cannot keep up, aborting", secs(30));
    assert_eq!(sc.wait_exit(snail, secs(10)), 0);
}

/// The C's own pace (1–2 ms of work per 1 ms message) falls behind too.
#[test]
fn the_default_snail_falls_behind_and_aborts() {
    let mut sc = Scenario::new("suisnail-default");
    let snail = sc.start("suisnail", bin!("suisnail"), &[]);
    sc.expect(snail, "E: subscriber cannot keep up, aborting", secs(90));
    assert_eq!(sc.wait_exit(snail, secs(10)), 0);
    // It printed timestamps before it gave up.
    let stamps = sc
        .lines(snail)
        .iter()
        .filter(|l| l.parse::<u64>().is_ok())
        .count();
    assert!(stamps > 100, "only {stamps} timestamps");
}
