//! Study §2 and §3, discovery: UDP surveys (`survey`, `respond` on
//! `zguide::survey`) and presence beacons (`beacon`, `presence` on
//! `zguide::beacon`), on loopback and on the simulated LAN of
//! `tests/common/network.rs`.

mod common;
use common::network::{Network, BROADCAST};
use common::{ms, secs, Scenario};

use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::Instant;

use rand::{Rng, SeedableRng};

/// Sends `count` datagrams of random bytes and sizes (0 to 65,507, the
/// largest UDP payload, the edge sizes first) to `target` from inside the caller's namespace.
fn spray_random_datagrams(target: &str, count: usize, seed: u64) -> usize {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buffer = vec![0u8; 65_507];
    let mut sent = 0;
    // The edges first (empty, around the headers and the name limit, the
    // largest), then random sizes.
    let edges = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255, 256, 264, 265, 266, 65_507,
    ];
    for n in 0..count {
        let size = edges
            .get(n)
            .copied()
            .unwrap_or_else(|| rng.gen_range(0..=65_507));
        rng.fill(&mut buffer[..size]);
        if socket.send_to(&buffer[..size], target).is_ok() {
            sent += 1;
        }
    }
    sent
}

// ---------------------------------------------------------------------------
// Surveys

#[test]
fn survey_finds_local_responders_with_no_configuration_and_exits_1_when_nobody_answers() {
    let mut sc = Scenario::new("survey-local");
    let echo = sc.start("respond-echo", bin!("respond"), &["echo:5555"]);
    let both = sc.start(
        "respond-both",
        bin!("respond"),
        &["weather:5556", "echo:6666"],
    );
    sc.expect(
        echo,
        "respond: answering surveys on udp port 5680",
        secs(10),
    );
    sc.expect(
        both,
        "respond: answering surveys on udp port 5680",
        secs(10),
    );

    let all = sc.start("survey-all", bin!("survey"), &[]);
    assert_eq!(sc.wait_exit(all, secs(10)), 0, "{}", sc.report());
    let mut lines = sc.lines(all);
    lines.sort();
    assert_eq!(
        lines,
        [
            "echo at tcp://127.0.0.1:5555",
            "echo at tcp://127.0.0.1:6666",
            "weather at tcp://127.0.0.1:5556"
        ]
    );

    let weather = sc.start("survey-weather", bin!("survey"), &["weather"]);
    assert_eq!(sc.wait_exit(weather, secs(10)), 0, "{}", sc.report());
    assert_eq!(sc.lines(weather), ["weather at tcp://127.0.0.1:5556"]);

    let nobody = sc.start("survey-nobody", bin!("survey"), &["nothing"]);
    assert_eq!(sc.wait_exit(nobody, secs(10)), 1, "{}", sc.report());
    assert!(sc.lines(nobody).is_empty(), "{}", sc.report());
    sc.stop_cleanly(echo, secs(10));
    sc.stop_cleanly(both, secs(10));
}

#[test]
fn survey_across_the_lan_finds_responders_on_other_hosts_and_its_own() {
    let mut net = Network::new("survey-lan", 3);
    let responders: Vec<_> = (0..3)
        .map(|host| {
            let service = format!("svc{host}:{}", 7000 + host);
            let pid = net
                .host(host)
                .start("respond", bin!("respond"), &[service.as_str()]);
            net.host(host).expect(pid, "answering surveys", secs(10));
            pid
        })
        .collect();
    let survey = net
        .host(0)
        .start("survey", bin!("survey"), &["--broadcast", BROADCAST]);
    assert_eq!(
        net.host(0).wait_exit(survey, secs(10)),
        0,
        "{}",
        net.report()
    );
    let mut lines = net.host(0).lines(survey);
    lines.sort();
    let want: Vec<String> = (0..3)
        .map(|h| format!("svc{h} at tcp://{}:{}", Network::address_of(h), 7000 + h))
        .collect();
    assert_eq!(lines, want, "{}", net.report());
    // By name: only host 2's.
    let one = net.host(1).start(
        "survey-svc2",
        bin!("survey"),
        &["svc2", "--broadcast", BROADCAST],
    );
    assert_eq!(net.host(1).wait_exit(one, secs(10)), 0, "{}", net.report());
    assert_eq!(net.host(1).lines(one), [want[2].clone()]);
    for (host, pid) in responders.into_iter().enumerate() {
        net.host(host).stop_cleanly(pid, secs(10));
    }
}

#[test]
fn survey_ignores_and_counts_foreign_ids_bad_headers_and_truncated_answers() {
    let mut sc = Scenario::new("survey-junk");
    let (ready_tx, ready_rx) = mpsc::channel();
    // A fake responder: for the survey it hears, three bad answers and a good one.
    let fake = sc.in_namespace_background(move || {
        let socket = zguide::survey::bind_udp(5680).expect("bind 5680");
        socket.set_nonblocking(false).unwrap();
        socket.set_read_timeout(Some(secs(10))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buffer = [0u8; 512];
        let (n, surveyor) = socket.recv_from(&mut buffer).expect("a survey");
        let request = zguide::survey::Request::decode(&buffer[..n]).expect("a valid survey");
        let answer = |id: u32, port: u16| {
            zguide::survey::Answer {
                id,
                port,
                service: "echo".into(),
            }
            .encode()
        };
        let mut bad_header = answer(request.id, 1);
        bad_header[0] = b'X';
        let truncated = answer(request.id, 2)[..9].to_vec();
        for datagram in [
            answer(request.id.wrapping_add(1), 3),
            bad_header,
            truncated,
            answer(request.id, 5555),
        ] {
            socket.send_to(&datagram, surveyor).expect("answer");
        }
    });
    ready_rx.recv_timeout(secs(10)).expect("the fake responder");
    let survey = sc.start("survey", bin!("survey"), &["-v"]);
    assert_eq!(sc.wait_exit(survey, secs(10)), 0, "{}", sc.report());
    fake.join().expect("fake responder");
    let answers: Vec<String> = sc
        .lines(survey)
        .into_iter()
        .filter(|l| l.contains(" at tcp://"))
        .collect();
    assert_eq!(answers, ["echo at tcp://127.0.0.1:5555"], "{}", sc.report());
    sc.expect(
        survey,
        "ignored 1 bad header, 1 truncated, 0 bad name, 1 foreign id",
        secs(1),
    );
}

#[test]
fn a_responder_counts_bad_datagrams_and_survives_ten_thousand_random_ones() {
    let mut sc = Scenario::new("respond-junk");
    let responder = sc.start("respond", bin!("respond"), &["echo:5555", "-v"]);
    sc.expect(responder, "answering surveys", secs(10));
    sc.in_namespace(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for datagram in [
            &b"XVY1\0\0\0\0echo"[..],
            b"SVY1\0\0",
            b"SVY1\0\0\0\0\xff\xfe",
        ] {
            socket.send_to(datagram, "127.0.0.1:5680").unwrap();
        }
    });
    sc.expect(responder, "(bad header, 1 so far)", secs(10));
    sc.expect(responder, "(truncated, 1 so far)", secs(10));
    sc.expect(responder, "(bad service name, 1 so far)", secs(10));
    let sent = sc.in_namespace(|| spray_random_datagrams("127.0.0.1:5680", 10_000, 7));
    assert_eq!(sent, 10_000);
    // Still alive and answering.
    let survey = sc.start("survey", bin!("survey"), &["echo"]);
    assert_eq!(sc.wait_exit(survey, secs(20)), 0, "{}", sc.report());
    assert_eq!(sc.lines(survey), ["echo at tcp://127.0.0.1:5555"]);
    sc.assert_running(responder);
    sc.stop_cleanly(responder, secs(10));
    sc.expect(responder, "I: answered 1;", secs(1));
}

#[test]
fn a_responder_sleeps_while_nobody_surveys() {
    let mut sc = Scenario::new("respond-idle");
    let responder = sc.start("respond", bin!("respond"), &["echo:5555"]);
    sc.expect(responder, "answering surveys", secs(10));
    // Two idle seconds: it blocks in its poll. With a timeout of 1 ms
    // instead of -1 it would wake about 2,000 times (or spin).
    let (woke, cpu) = sc.idle_cost_over(responder, secs(2));
    assert!(
        woke <= 50 && cpu <= 20,
        "respond woke {woke} times and used {cpu} ticks of CPU in 2 idle seconds"
    );
    sc.stop_cleanly(responder, secs(10));
}

#[test]
fn the_survey_scenario_runs_to_its_end() {
    let (sc, runner) = common::runs::run_to_the_end("survey", &[], 60);
    let output = sc.output(runner);
    assert!(output.contains("echo at tcp://127.0.0.1:5555"), "{output}");
    assert!(
        output.contains("weather at tcp://127.0.0.1:5556"),
        "{output}"
    );
}

// ---------------------------------------------------------------------------
// Beacons

/// The services a presence reported after `event` ("JOINED" or "LEFT").
fn reported(sc: &Scenario, pid: common::Pid, event: &str) -> Vec<String> {
    let prefix = format!("{event} ");
    sc.lines(pid)
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

#[test]
fn three_hosts_see_each_other_join_never_themselves_and_a_killed_one_leaves_within_the_expiry() {
    let mut net = Network::new("presence-lan", 3);
    let services: Vec<String> = (0..3)
        .map(|h| format!("{}:{}", Network::address_of(h), 5670 + h))
        .collect();
    let presences: Vec<_> = (0..3)
        .map(|h| {
            let port = (5670 + h).to_string();
            net.host(h).start(
                "presence",
                bin!("presence"),
                &[
                    "--announce",
                    &port,
                    "--broadcast",
                    BROADCAST,
                    "--interval-ms",
                    "200",
                ],
            )
        })
        .collect();
    for (host, pid) in presences.iter().enumerate() {
        for (other, service) in services.iter().enumerate() {
            if other != host {
                net.host(host)
                    .expect_count(*pid, &format!("JOINED {service}"), 1, secs(10));
            }
        }
    }
    // A few more intervals: still nobody reports itself.
    std::thread::sleep(ms(1000));
    for (host, pid) in presences.iter().enumerate() {
        let joined = reported(net.host(host), *pid, "JOINED");
        assert!(
            !joined.contains(&services[host]),
            "host {host} saw itself: {joined:?}"
        );
        assert_eq!(joined.len(), 2, "host {host}: {joined:?}");
    }
    net.host(2).kill(presences[2]);
    let killed = Instant::now();
    for (host, &pid) in presences.iter().enumerate().take(2) {
        net.host(host)
            .expect(pid, &format!("LEFT {}", services[2]), secs(10));
        let after = killed.elapsed();
        // Expiry 5 × 200 ms = 1 s; reported within the expiry + 1 s.
        assert!(
            after <= ms(2000),
            "host {host} saw LEFT {after:?} after the kill"
        );
        assert_eq!(reported(net.host(host), pid, "LEFT").len(), 1);
    }
    for (host, &pid) in presences.iter().enumerate().take(2) {
        net.host(host).stop_cleanly(pid, secs(10));
    }
}

#[test]
fn presence_reports_beacons_on_loopback_ignores_wrong_headers_and_itself_unless_asked() {
    let mut sc = Scenario::new("presence-local");
    let presence = sc.start(
        "presence",
        bin!("presence"),
        &["--announce", "6000", "--interval-ms", "100", "-v"],
    );
    let echo = sc.start(
        "presence-echo",
        bin!("presence"),
        &["--announce", "6001", "--interval-ms", "100", "--echo"],
    );
    sc.expect(presence, "listening for FOO1 beacons", secs(10));
    let beacon = sc.start("beacon", bin!("beacon"), &["5555", "--interval-ms", "100"]);
    let other = sc.start(
        "beacon-bar",
        bin!("beacon"),
        &["5556", "--interval-ms", "100", "--header", "BAR1"],
    );
    sc.expect(
        beacon,
        "beacon: announcing tcp port 5555 as FOO1 every 100 ms",
        secs(10),
    );
    sc.expect(other, "as BAR1", secs(10));
    sc.expect_count(presence, "JOINED 127.0.0.1:5555", 1, secs(10));
    sc.expect_count(echo, "JOINED 127.0.0.1:6001", 1, secs(10)); // itself, asked with --echo
    sc.expect_count(echo, "JOINED 127.0.0.1:6000", 1, secs(10));
    // Bad bodies with the right header: ignored and counted. Broadcast,
    // as a unicast reaches only one of the programs sharing the port.
    sc.in_namespace(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_broadcast(true).unwrap();
        for datagram in [&b"FOO1"[..], b"FOO1\x17", b"FOO1\x17\x70\x00"] {
            socket.send_to(datagram, "127.255.255.255:5681").unwrap();
        }
    });
    sc.expect(presence, "(3 so far)", secs(10));
    sc.expect_count(presence, "JOINED 127.0.0.1:6001", 1, secs(10));
    std::thread::sleep(ms(500)); // five more intervals
    let mut joined = reported(&sc, presence, "JOINED");
    joined.sort();
    assert_eq!(
        joined,
        ["127.0.0.1:5555", "127.0.0.1:6001"],
        "not BAR1's 5556, not its own 6000: {}",
        sc.report()
    );
    for pid in [beacon, other, presence, echo] {
        sc.stop_cleanly(pid, secs(10));
    }
}

#[test]
fn presence_survives_ten_thousand_random_datagrams_and_still_sees_beacons() {
    let mut sc = Scenario::new("presence-junk");
    let presence = sc.start("presence", bin!("presence"), &["--interval-ms", "100"]);
    sc.expect(presence, "listening for FOO1 beacons", secs(10));
    let sent = sc.in_namespace(|| spray_random_datagrams("127.0.0.1:5681", 10_000, 11));
    assert_eq!(sent, 10_000);
    let beacon = sc.start("beacon", bin!("beacon"), &["5555", "--interval-ms", "100"]);
    sc.expect(presence, "JOINED 127.0.0.1:5555", secs(10));
    sc.assert_running(presence);
    sc.stop_cleanly(beacon, secs(10));
    sc.expect(presence, "LEFT 127.0.0.1:5555", secs(10));
    sc.stop_cleanly(presence, secs(10));
}

#[test]
fn the_beacon_scenario_runs_to_its_end() {
    let (sc, runner) = common::runs::run_to_the_end("beacon", &[], 60);
    let output = sc.output(runner);
    assert!(output.contains("JOINED 127.0.0.1:5670"), "{output}");
    assert!(output.contains("JOINED 127.0.0.1:5671"), "{output}");
}
