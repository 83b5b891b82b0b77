//! fileserver: serves the regular files under a directory over SFT/1, the
//! study's file-transfer protocol (study part 4, `zguide/file-transfer-protocol.md`,
//! [`zguide::filetransfer::server`]).
//!
//! What it shows: `fileio3`'s credit-based transfer (§47) grown into a tool.
//! One ROUTER thread that never touches the disk; a pool of `--readers`
//! threads doing every read, shared fairly between clients, so a client
//! whose file sits on a slow disk does not stall the others; names from the
//! wire that cannot leave the served directory (no `..`, no absolute path,
//! no symlink out: 403, nothing opened); a BLAKE3 hash of every chunk and
//! (STAT) of every file, cached by path, size and mtime; zstd level 1 for
//! clients that accept it, only where a chunk shrinks; CURVE with clients
//! allowed by public key (the broker's `zguide::curve`).
//!
//! It prints `I: fileserver serving <dir> at <endpoints> (…)` when ready,
//! with `-v` one line per request, and on Ctrl-C or SIGTERM
//! `I: served <n> chunks, <raw> bytes (<wire> on the wire, <c> compressed), <r> refused, <d> dropped`
//! and exits 0. Exit 1 if it cannot start (no such directory, port taken,
//! bad key file).
//!
//! Bounds (see the module docs): requests at most 1088 bytes; a chunk at
//! most 4 MiB; per client at most `--max-outstanding` requests queued or
//! being read (then 429); replies never block (a client that stops reading
//! holds at most 128 replies in the server's queue); listings at most 100,000
//! files and 16 MiB; at most 20 lines a second about bad peers.
//!
//! Test knob: `ZGUIDE_FILESERVER_SLOW=<prefix>:<ms>` makes every FETCH of a
//! name starting with `<prefix>` wait `<ms>` ms in its reader, a slow disk.
//!
//! Run beside it: `fileclient` (`fileclient list`, `fileclient get NAME DEST`).
//! Examples:
//!
//! ```text
//! fileserver /srv/files                              # tcp://*:6000
//! fileserver --bind tcp://127.0.0.1:7000 --readers 8 .
//! fileserver --no-compress -v /srv/files
//! curvekeys --out server; curvekeys --out clients/alice
//! fileserver --curve-keys server_secret --curve-clients clients/ /srv/files
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zguide::curve::Keys;
use zguide::filetransfer::server::{self, ServerOptions};
use zguide::{program, Error};

/// Serves the regular files under DIR over SFT/1 (fileclient fetches them).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The directory to serve (recursively).
    dir: PathBuf,
    /// Endpoint to bind; again for more.
    #[arg(long = "bind", default_value = server::DEFAULT_BIND)]
    binds: Vec<String>,
    /// Reader threads (every disk access happens on one of them).
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Never compress chunks, even for clients that accept zstd.
    #[arg(long)]
    no_compress: bool,
    /// Requests one client may have queued or being read (past it: 429).
    #[arg(long, default_value_t = 64)]
    max_outstanding: usize,
    /// The server's CURVE key pair (a `_secret` file written by `curvekeys`);
    /// turns CURVE on: plain connections are refused.
    #[arg(long, requires = "curve_clients")]
    curve_keys: Option<PathBuf>,
    /// Directory of allowed clients' public key files.
    #[arg(long, requires = "curve_keys")]
    curve_clients: Option<PathBuf>,
    /// Log every request.
    #[arg(short, long)]
    verbose: bool,
}

fn slow_knob() -> Option<(String, Duration)> {
    let text = std::env::var("ZGUIDE_FILESERVER_SLOW").ok()?;
    let (prefix, ms) = text.rsplit_once(':')?;
    Some((prefix.to_string(), Duration::from_millis(ms.parse().ok()?)))
}

fn main() -> ExitCode {
    let args = Args::parse();
    program::run(|| {
        let curve = match (&args.curve_keys, &args.curve_clients) {
            (Some(keys), Some(clients)) => {
                let keys = Keys::load(keys)
                    .map_err(|e| Error::Protocol(format!("CURVE keys {}: {e}", keys.display())))?;
                Some((keys, clients.clone()))
            }
            _ => None,
        };
        let stats = server::run(ServerOptions {
            root: args.dir.clone(),
            binds: args.binds.clone(),
            readers: args.readers,
            compress: !args.no_compress,
            max_outstanding: args.max_outstanding,
            curve,
            verbose: args.verbose,
            slow: slow_knob(),
        })?;
        log::info!(
            "served {} chunks, {} bytes ({} on the wire, {} compressed), {} refused, {} dropped",
            stats.chunks,
            stats.raw_bytes,
            stats.wire_bytes,
            stats.compressed,
            stats.refused,
            stats.dropped
        );
        Ok(())
    })
}
