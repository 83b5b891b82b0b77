//! The `filetransfer` group: the study's file-transfer tool (`fileserver`
//! with `fileclient get`, SFT/1, `zguide/file-transfer-protocol.md`) on the
//! fileio group's test file, beside that group's raw TCP copy and `fileio3`
//! of the same file, with compression and CURVE off and on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zguide::curve::{secret_path, Keys};

use crate::guide_jobs::{fileio_rate, raw_copy_rate, raw_copy_rate_to};
use crate::jobs::{expect_success, Sample};
use crate::procs::{last_lines, Namespace, Proc};

/// `fileserver`'s default port (the guide's fileio port).
const PORT: u16 = 6000;

/// The compressible file, beside the fileio group's `testdata`.
pub const TEXT_NAME: &str = "textdata";

/// The rows' tests, in order: what [`run`] returns, value by value.
pub const ROWS: [(&str, &str); 10] = [
    ("raw TCP copy", "MB/s"),
    ("raw TCP copy, writing its copy", "MB/s"),
    ("fileio3", "MB/s"),
    ("fileclient random, zstd off", "MB/s"),
    ("fileclient random, zstd on", "MB/s"),
    ("fileclient text, zstd on", "MB/s"),
    ("fileclient random, CURVE, zstd off", "MB/s"),
    ("fileclient / raw copy writing its copy", "%"),
    ("fileclient / raw", "%"),
    ("CURVE cost", "%"),
];

/// One `fileclient get` configuration.
#[derive(Clone, Copy)]
struct Setup {
    /// The served file's name in the data folder.
    file: &'static str,
    compress: bool,
    curve: bool,
}

const SETUPS: [Setup; 4] = [
    Setup {
        file: crate::FILEIO_NAME,
        compress: false,
        curve: false,
    },
    Setup {
        file: crate::FILEIO_NAME,
        compress: true,
        curve: false,
    },
    Setup {
        file: TEXT_NAME,
        compress: true,
        curve: false,
    },
    Setup {
        file: crate::FILEIO_NAME,
        compress: false,
        curve: true,
    },
];

/// Makes `dir/textdata` of `bytes` bytes of English-like text with
/// `broker-fanout gen --seed 7` (the fileio group's `testdata` is made by
/// the caller, shared with that group).
pub fn make_textdata(broker_fanout: &Path, dir: &Path, bytes: u64) -> Result<(), String> {
    let path = dir.join(TEXT_NAME);
    let mut cmd = Command::new(broker_fanout);
    cmd.arg("gen")
        .arg(&path)
        .args(["--bytes", &bytes.to_string(), "--seed", "7"]);
    let mut proc = Proc::spawn("broker-fanout gen", cmd)?;
    expect_success(&mut proc, Duration::from_secs(600))?;
    match std::fs::metadata(&path) {
        Ok(m) if m.len() == bytes => Ok(()),
        _ => Err(format!("broker-fanout gen did not make {}", path.display())),
    }
}

/// Where the client writes its copy: `/dev/shm` when there is one (memory,
/// as the raw copy and `fileio3`, which write nothing to disk), else `dir`.
fn dest_dir(dir: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Removes a client's copy (and its `.part` files) when dropped.
struct Dest(PathBuf);

impl Dest {
    fn remove(&self) {
        for suffix in ["", ".part", ".part.state"] {
            let mut name = self.0.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The raw copy, `fileio3`, and `fileclient get` of the data folder's files
/// in every [`SETUPS`] configuration, each in its own namespace; then
/// fileclient (random, zstd off) ÷ raw in %, and the CURVE cost in %.
pub fn run(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    dir: &Path,
    bytes: u64,
    timeout: Duration,
) -> Result<Sample, String> {
    let raw = raw_copy_rate(dir, bytes, timeout)?;
    // The like-for-like baseline: a copy that ends as a file where
    // fileclient writes its own.
    let raw_copy = Dest(dest_dir(dir).join(format!(
        "zguide-bench-filetransfer-{}-raw",
        std::process::id()
    )));
    let raw_writing = raw_copy_rate_to(dir, bytes, timeout, Some(&raw_copy.0))?;
    raw_copy.remove();
    let fileio3 = fileio_rate(program, "fileio3", dir, bytes, timeout)?;
    // The keys go beside the copy, not into the served folder.
    let keys = KeyDir(dest_dir(dir).join(format!(
        "zguide-bench-filetransfer-{}-keys",
        std::process::id()
    )));
    make_keys(&keys.0)?;
    let mut values = vec![raw, raw_writing, fileio3];
    for setup in SETUPS {
        values.push(get(program, dir, &keys.0, setup, bytes, timeout)?);
    }
    let (plain, curve) = (values[3], values[6]);
    values.push(100.0 * plain / raw_writing);
    values.push(100.0 * plain / raw);
    values.push(100.0 * (1.0 - curve / plain));
    Ok(Sample {
        values,
        secondary: None,
    })
}

/// The CURVE keys' folder, removed when dropped.
struct KeyDir(PathBuf);

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_keys(dir: &Path) -> Result<(), String> {
    let clients = dir.join("clients");
    std::fs::create_dir_all(&clients)
        .map_err(|e| format!("cannot create {}: {e}", clients.display()))?;
    for name in ["server", "clients/client"] {
        let keys = Keys::generate().map_err(|e| format!("CURVE keys: {e}"))?;
        let path = dir.join(name);
        keys.save(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn text(path: PathBuf) -> String {
    path.display().to_string()
}

/// `fileserver dir` and `fileclient get` of `setup.file` in a fresh
/// namespace: one untimed get first (the server hashes the file on its
/// first STAT and keeps the hash; the figures in
/// `file-transfer-protocol.md` are of a served file already hashed), the
/// copy removed, then the timed get: MB/s from the client's own line.
fn get(
    program: &dyn Fn(&str) -> Result<PathBuf, String>,
    dir: &Path,
    keys: &Path,
    setup: Setup,
    bytes: u64,
    timeout: Duration,
) -> Result<f64, String> {
    let ns = Namespace::new()?;
    let mut server_args = Vec::new();
    let mut client_args = vec!["--quiet".to_string()];
    if setup.curve {
        server_args.extend([
            "--curve-keys".to_string(),
            text(secret_path(&keys.join("server"))),
            "--curve-clients".to_string(),
            text(keys.join("clients")),
        ]);
        client_args.extend([
            "--curve-keys".to_string(),
            text(secret_path(&keys.join("clients/client"))),
            "--curve-server-key".to_string(),
            text(keys.join("server")),
        ]);
    }
    if !setup.compress {
        client_args.push("--no-compress".to_string());
    }
    server_args.push(text(dir.to_path_buf()));
    let _server = ns.start("fileserver", &program("fileserver")?, &server_args, &[])?;
    ns.wait_for_port(PORT, timeout)?;
    let dest = Dest(dest_dir(dir).join(format!(
        "zguide-bench-filetransfer-{}-{}",
        std::process::id(),
        setup.file
    )));
    dest.remove();
    client_args.extend([
        "get".to_string(),
        setup.file.to_string(),
        text(dest.0.clone()),
    ]);
    let mut received = None;
    for _warm_up_then_timed in 0..2 {
        let mut client = ns.start("fileclient", &program("fileclient")?, &client_args, &[])?;
        expect_success(&mut client, timeout)?;
        let got = client_received(client.output()).ok_or_else(|| {
            format!(
                "fileclient printed no total: {}",
                last_lines(client.output(), 3)
            )
        })?;
        let copied = std::fs::metadata(&dest.0).map_or(0, |m| m.len());
        dest.remove();
        if got.bytes != bytes || copied != bytes {
            return Err(format!(
                "fileclient received {} and wrote {copied} of {bytes} bytes",
                got.bytes
            ));
        }
        received = Some(got);
    }
    match received {
        Some(got) if got.seconds > 0.0 => Ok(got.bytes as f64 / 1e6 / got.seconds),
        _ => Err("fileclient timed no transfer".to_string()),
    }
}

/// The figures of `fileclient get`'s last line,
/// `I: received <bytes> bytes (<n> chunks, <r> re-fetched) in <s> s (<MB/s> MB/s)`.
#[derive(Debug, PartialEq)]
pub struct Received {
    pub bytes: u64,
    pub chunks: u64,
    pub refetched: u64,
    pub seconds: f64,
    pub rate: f64,
}

/// The last `I: received …` line of `output`, if whole.
pub fn client_received(output: &str) -> Option<Received> {
    let line = output
        .lines()
        .rfind(|l| l.trim_start().starts_with("I: received "))?;
    let rest = line.trim_start().strip_prefix("I: received ")?;
    let words: Vec<&str> = rest
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '(' || c == ')' || c == ','))
        .collect();
    // <bytes> bytes <n> chunks <r> re-fetched in <s> s <rate> MB/s
    match words.as_slice() {
        [bytes, "bytes", chunks, "chunks", refetched, "re-fetched", "in", seconds, "s", rate, "MB/s"] => {
            Some(Received {
                bytes: bytes.parse().ok()?,
                chunks: chunks.parse().ok()?,
                refetched: refetched.parse().ok()?,
                seconds: seconds.parse().ok()?,
                rate: rate.parse().ok()?,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_total_is_read() {
        let out = "I: fileclient connecting\n\
                   I: received 1073741824 bytes (1024 chunks, 2 re-fetched) in 1.730 s (620.7 MB/s)\n";
        assert_eq!(
            client_received(out),
            Some(Received {
                bytes: 1_073_741_824,
                chunks: 1024,
                refetched: 2,
                seconds: 1.73,
                rate: 620.7,
            })
        );
        // The last one counts; a cut or foreign line does not.
        let two = "I: received 1 bytes (1 chunks, 0 re-fetched) in 0.001 s (1.0 MB/s)\n\
                   I: received 16777216 bytes (16 chunks, 0 re-fetched) in 0.030 s (559.2 MB/s)\n\
                   I: 16777216 bytes on the wire, 0 duplicate replies, 0 reconnects\n";
        assert_eq!(client_received(two).map(|r| r.bytes), Some(16_777_216));
        assert_eq!(
            client_received("I: received 5 bytes (1 chunks, 0 re-fetched) in\n"),
            None
        );
        assert_eq!(
            client_received("I: received x bytes (1 chunks, 0 re-fetched) in 1 s (1 MB/s)\n"),
            None
        );
        assert_eq!(client_received("E: 404 no such file\n"), None);
    }
}
