//! fileclient: lists and fetches files from a `fileserver` over SFT/1, the
//! study's file-transfer protocol (study part 4, `zguide/file-transfer-protocol.md`,
//! [`zguide::filetransfer::client`]).
//!
//! What it shows: `fileio3`'s credit (§47) as a real tool. `get` keeps
//! `--window` FETCHes of `--chunk-size` bytes in flight, checks the BLAKE3
//! hash of every chunk (a corrupt one is fetched again, never written), writes
//! in order through a reorder buffer of at most `--window` chunks to
//! `DEST.part`, records the verified offset in `DEST.part.state` every
//! `--sync-every` bytes (fsync'd), checks the whole file's hash and only then
//! renames it to `DEST`. Killed at any moment (or the server killed), it
//! resumes from the last verified offset when started again with the same
//! command: `I: <name>: resuming at <offset> of <size> bytes`.
//!
//! * `fileclient list [PREFIX]` prints `<size> <name>` per file, then
//!   `I: <n> files, <bytes> bytes`.
//! * `fileclient get NAME DEST` fetches the file NAME to DEST (into DEST if
//!   it is a directory), or, if NAME is a directory of the server ("" or
//!   `.` for all of it), the whole tree into the directory DEST. A
//!   destination file that already holds the same bytes is left alone. At the
//!   end: `I: received <bytes> bytes (<n> chunks, <r> re-fetched) in <s> s (<MB/s> MB/s)`.
//!
//! Progress: a bar (bytes, rate, ETA) when stdout is a terminal, otherwise
//! `I: progress <name>: <written> of <size> bytes (<p>%) <rate> MB/s` every
//! `--progress-ms`; `--quiet` for neither.
//!
//! Exit codes: 0 done; 1 the server refused (403 path refused, 404 no such
//! file, 413, our CURVE key not allowed …); 2 no answer (the server was
//! silent for `--retries` timeouts of `--timeout-ms` in a row); 3 integrity
//! (a chunk arrived corrupt more than `--chunk-retries` times in a row, or
//! the whole file's hash did not match); 4 local error (cannot write DEST,
//! bad key file, bad settings); 64 bad command line; 130 Ctrl-C or SIGTERM
//! (the verified prefix is saved first).
//!
//! Test knob: with `ZGUIDE_FILECLIENT_HOLD=1` the client, once done, prints
//! `I: holding until stdin closes` and waits for end of file on stdin before
//! exiting, so a test can read its peak memory from `/proc`.
//!
//! Run beside it: `fileserver DIR`. Examples:
//!
//! ```text
//! fileclient list                                    # everything served
//! fileclient get big.iso /tmp/big.iso                # resumable
//! fileclient get photos ./photos                     # a whole tree
//! fileclient --window 32 --chunk-size 4M --no-compress get big.iso .
//! fileclient --limit-rate 10M get big.iso .          # 10 MiB/s at most
//! fileclient --connect tcp://server:6000 --curve-keys alice_secret \
//!     --curve-server-key server get report.pdf .
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use zguide::filetransfer::client::{self, Client, ClientOptions, Failure, Progress};
use zguide::{helpers, interrupt};

/// Lists and fetches files from a fileserver (SFT/1), resumably.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The server's endpoint.
    #[arg(long, default_value = client::DEFAULT_CONNECT)]
    connect: String,
    /// Chunk requests in flight (1-64).
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Bytes per chunk request: a power of two from 1K to 4M (suffix K, M:
    /// binary units).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    chunk_size: u64,
    /// Do not accept compressed chunks.
    #[arg(long)]
    no_compress: bool,
    /// Milliseconds of silence before outstanding requests are sent again.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Silent timeouts in a row before giving up (exit 2).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Corrupt copies of one chunk in a row before giving up (exit 3).
    #[arg(long, default_value_t = 5)]
    chunk_retries: u32,
    /// Verified bytes between fsyncs of DEST.part and its resume state.
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    sync_every: u64,
    /// Ask for at most this many bytes a second (suffix K, M, G).
    #[arg(long, value_parser = parse_size)]
    limit_rate: Option<u64>,
    /// Milliseconds between progress lines (when stdout is not a terminal).
    #[arg(long, default_value_t = 1000)]
    progress_ms: u64,
    /// No progress bar or lines.
    #[arg(short, long)]
    quiet: bool,
    /// CURVE: the server's public key file.
    #[arg(long, requires = "curve_keys")]
    curve_server_key: Option<PathBuf>,
    /// CURVE: this client's key pair (the `_secret` file made by curvekeys).
    #[arg(long, requires = "curve_server_key")]
    curve_keys: Option<PathBuf>,
    /// More log lines.
    #[arg(short, long)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the files under PREFIX (all of them by default): `<size> <name>`.
    List {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Fetch the file or directory NAME to DEST.
    Get { name: String, dest: PathBuf },
}

/// `1048576`, `1024K`, `1M`, `1G` (binary units).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a size is a number with an optional K, M or G"))?;
    let factor = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit (K, M or G)")),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?}: too large"))
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 64 } else { 0 });
        }
    };
    helpers::init_log(if args.verbose { "debug" } else { "info" });
    interrupt::catch_signals();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(failure) => {
            if !matches!(failure, Failure::Interrupted) {
                log::error!("{failure}");
            } else {
                log::warn!("interrupted: the verified part is kept for a resume");
            }
            failure.exit_code()
        }
    };
    if std::env::var_os("ZGUIDE_FILECLIENT_HOLD").is_some() {
        log::info!("holding until stdin closes");
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    }
    ExitCode::from(code)
}

fn run(args: &Args) -> Result<(), Failure> {
    let chunk_size = u32::try_from(args.chunk_size)
        .map_err(|_| Failure::Local("the chunk size is a power of two from 1K to 4M".into()))?;
    let curve =
        zguide::curve::load_client(args.curve_keys.as_deref(), args.curve_server_key.as_deref())
            .map_err(|e| Failure::Local(e.to_string()))?;
    let every = Duration::from_millis(args.progress_ms.max(1));
    let options = ClientOptions {
        endpoint: args.connect.clone(),
        window: args.window,
        chunk_size,
        compress: !args.no_compress,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        retries: args.retries,
        chunk_retries: args.chunk_retries,
        sync_every: args.sync_every.max(1),
        limit_rate: args.limit_rate,
        curve,
        progress: if args.quiet {
            Progress::Quiet
        } else {
            Progress::Auto(every)
        },
    };
    let mut client = Client::new(options)?;
    match &args.command {
        Command::List { prefix } => {
            let prefix = if prefix == "." {
                ""
            } else {
                prefix.trim_end_matches('/')
            };
            let entries = client.list(prefix)?;
            for entry in &entries {
                println!("{:>14} {}", entry.size, entry.name);
            }
            log::info!(
                "{} files, {} bytes",
                entries.len(),
                entries.iter().map(|e| e.size).sum::<u64>()
            );
            Ok(())
        }
        Command::Get { name, dest } => {
            let name = if name == "." {
                ""
            } else {
                name.trim_end_matches('/')
            };
            let started = Instant::now();
            let result = client.get(name, dest);
            let totals = client.totals();
            let seconds = started.elapsed().as_secs_f64();
            log::info!(
                "received {} bytes ({} chunks, {} re-fetched) in {seconds:.3} s ({:.1} MB/s)",
                totals.bytes,
                totals.chunks,
                totals.refetched,
                totals.bytes as f64 / 1e6 / seconds.max(1e-9)
            );
            if totals.wire_bytes != totals.bytes || totals.reconnects > 0 || totals.duplicates > 0 {
                log::info!(
                    "{} bytes on the wire, {} duplicate replies, {} reconnects",
                    totals.wire_bytes,
                    totals.duplicates,
                    totals.reconnects
                );
            }
            result.map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("256k"), Ok(256 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("M").is_err());
    }
}
