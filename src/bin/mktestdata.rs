//! `mktestdata.c` (§47): makes the `testdata` file the `fileio` programs
//! send.
//!
//! `mktestdata` writes 1 GiB (1,073,741,824 bytes) to `./testdata`, as the
//! C does; `mktestdata <bytes> [<path>]` writes another size or elsewhere,
//! e.g. `mktestdata 10000000` for a quick 10 MB run. Prints nothing.
//!
//! Differs from the C: the bytes are pseudo-random (the C wrote a 1 MiB
//! stack buffer it never filled, so usually zeros), which makes a lost,
//! repeated or reordered chunk visible when a copy is compared; the file is
//! written under a temporary name and renamed, so a `fileio` started beside
//! it never reads half a file; errors are reported (`E: …`, exit 1).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use rand::{RngCore, SeedableRng};
use zguide::{program, Error};

/// The C's size: 1024 blocks of 1 MiB.
const DEFAULT_SIZE: u64 = 1024 * 1024 * 1024;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let size = match args.next().map(|a| a.parse::<u64>()) {
        None => DEFAULT_SIZE,
        Some(Ok(size)) => size,
        Some(Err(_)) => {
            eprintln!("Usage: mktestdata [bytes] [path]");
            return ExitCode::FAILURE;
        }
    };
    let path = args.next().unwrap_or_else(|| "testdata".to_string());
    program::run(|| write_testdata(&path, size))
}

fn write_testdata(path: &str, size: u64) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::Protocol(format!("cannot write {path}: {e}"));
    let temporary = format!("{path}.tmp");
    let mut out = BufWriter::new(File::create(&temporary).map_err(fail)?);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        out.write_all(&block[..n]).map_err(fail)?;
        left -= n as u64;
    }
    out.flush().map_err(fail)?;
    drop(out);
    std::fs::rename(&temporary, path).map_err(fail)
}
