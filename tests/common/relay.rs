//! A TCP relay that records what crosses it, to check what is on the wire
//! (CURVE: nothing readable).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A TCP relay on 127.0.0.1 in front of `target`: returns its endpoint and
/// everything that crossed it in either direction, for one connection.
pub fn relay(target: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let target = target.trim_start_matches("tcp://").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let Ok((inbound, _)) = listener.accept() else {
            return;
        };
        let Ok(outbound) = TcpStream::connect(&target) else {
            return;
        };
        let pump = |mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = from.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    // Recorded before it is passed on, so whatever the other
                    // side has received is already in the record.
                    {
                        let mut seen = record.lock().unwrap_or_else(|e| e.into_inner());
                        if seen.len() < 1 << 20 {
                            seen.extend_from_slice(&buffer[..n]);
                        }
                    }
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            })
        };
        let a = pump(
            inbound.try_clone().unwrap(),
            outbound.try_clone().unwrap(),
            record.clone(),
        );
        let b = pump(outbound, inbound, record);
        let _ = (a.join(), b.join());
    });
    (endpoint, seen)
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
