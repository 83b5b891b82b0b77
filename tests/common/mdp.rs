//! Majordomo pieces shared by the chapter 4 Majordomo and Titanic tests:
//! starting a broker and workers and waiting until they are ready, raw MDP
//! probes on the broker's `tcp://localhost:5555`, and the seeded MDP fuzzer.

use super::wire::{self, frames, Frames};
use super::{secs, Pid, Scenario};

/// A raw probe connected to the broker (LINGER 0, bounded timeouts).
pub fn probe(ctx: &zmq::Context, kind: zmq::SocketType) -> zmq::Socket {
    wire::probe(ctx, kind).connect("tcp://localhost:5555")
}

/// Sends `parts` as one message.
pub fn send(socket: &zmq::Socket, parts: &[&[u8]]) {
    wire::send(socket, parts)
}

/// Receives one message or panics after the probe's timeout.
pub fn recv(socket: &zmq::Socket) -> Frames {
    wire::recv(socket, "MDP probe")
}

/// Receives on a worker probe, skipping HEARTBEATs, until something else;
/// bounded by the probe's receive timeout for each message and by 30 s in all.
pub fn recv_skip_heartbeats(socket: &zmq::Socket) -> Frames {
    wire::recv_until(socket, "worker probe", secs(30), |msg| {
        *msg != frames(&[b"", b"MDPW01", b"\x04"])
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// One MMI lookup with a raw REQ socket.
pub fn mmi(ctx: &zmq::Context, service: &[u8], name: &[u8]) -> Frames {
    let client = probe(ctx, zmq::REQ);
    send(&client, &[b"MDPC01", service, name]);
    recv(&client)
}

/// Starts mdbroker -v and waits until it is bound.
pub fn start_broker(sc: &mut Scenario) -> Pid {
    let broker = sc.start("mdbroker", crate::bin!("mdbroker"), &["-v"]);
    sc.expect(
        broker,
        "I: MDP broker/0.2.0 is active at tcp://*:5555",
        secs(30),
    );
    broker
}

/// Starts mdbroker without `-v` (the C's default: it prints only its banner)
/// and waits until it is bound.
pub fn start_quiet_broker(sc: &mut Scenario) -> Pid {
    let broker = sc.start("mdbroker", crate::bin!("mdbroker"), &[]);
    sc.expect(broker, "is active at tcp://*:5555", secs(30));
    broker
}

/// Starts an mdworker and waits until the broker registered it.
pub fn start_worker(sc: &mut Scenario, broker: Pid, label: &str) -> Pid {
    let worker = sc.start(label, crate::bin!("mdworker"), &[]);
    sc.expect(broker, "I: registering new worker", secs(30));
    worker
}

/// Random multipart messages: random frame counts and bytes, valid headers
/// with bad commands and frame counts, and a few huge frames.
pub fn random_message(rng: &mut u64, n: usize, services: &[&[u8]]) -> Frames {
    let mut next = || {
        // xorshift64*: reproducible, no dependency.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let bytes = |len: usize, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
        (0..len).map(|_| next() as u8).collect()
    };
    let count = (next() % 9) as usize;
    let mut msg: Frames = (0..count)
        .map(|_| {
            let len = (next() % 24) as usize;
            bytes(len, &mut next)
        })
        .collect();
    match next() % 6 {
        0 => {} // pure noise
        1 | 2 => {
            // worker header, any command byte 0..=7, random tail
            let command = vec![(next() % 8) as u8];
            let mut head = frames(&[b"", b"MDPW01"]);
            head.push(command);
            head.extend(msg);
            msg = head;
        }
        _ => {
            // client header, a known or random service, random body
            let service = if next() % 2 == 0 {
                services[(next() as usize) % services.len()].to_vec()
            } else {
                bytes((next() % 12) as usize, &mut next)
            };
            let mut head = frames(&[b"", b"MDPC01"]);
            head.push(service);
            head.extend(msg);
            msg = head;
        }
    }
    // A handful of huge frames (1–4 MiB), spread over the run.
    if n % 2500 == 1234 {
        let size = (1 + (n / 2500) % 4) << 20;
        msg.push(vec![0xAB; size]);
    }
    msg
}

pub fn fuzz(ctx: &zmq::Context, count: usize, services: &[&[u8]], seed: u64) {
    let mut rng = seed;
    // Several identities, so the broker sees many "workers" and "clients".
    let sockets: Vec<zmq::Socket> = (0..16).map(|_| probe(ctx, zmq::DEALER)).collect();
    for n in 0..count {
        let msg = random_message(&mut rng, n, services);
        let socket = &sockets[n % sockets.len()];
        if msg.is_empty() {
            socket.send(&b""[..], 0).unwrap();
        } else {
            socket.send_multipart(msg, 0).unwrap();
        }
        // Drain whatever came back (DISCONNECTs, replies), never block.
        for s in &sockets {
            while s.recv_multipart(zmq::DONTWAIT).is_ok() {}
        }
    }
}
