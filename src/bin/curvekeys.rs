//! curvekeys: makes and shows CURVE key pairs (study §4, the broker's and
//! the file server's security; CZMQ's `zcert` tools in small).
//!
//! * `curvekeys` prints a new key pair as two lines, `public-key = "…"` and
//!   `secret-key = "…"` (40 Z85 characters each);
//! * `curvekeys --out PATH` saves a new pair instead: `PATH` holds the public
//!   key (give it to whoever must trust you), `PATH_secret` both keys, created
//!   readable by you only; it prints the public key and both paths. The
//!   files are in `zcert`'s format, so CZMQ programs read them too;
//! * `curvekeys --show PATH` prints the public key of a key file (never its
//!   secret).
//!
//! A server loads its `_secret` file; it lets in the clients whose public
//! files are in its directory of allowed keys (`zguide::curve`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zguide::curve::{secret_path, Keys};

/// Makes and shows CURVE key pairs.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Save the new pair to PATH (the public key) and PATH_secret (both keys, mode 0600).
    #[arg(long, value_name = "PATH", conflicts_with = "show")]
    out: Option<PathBuf>,
    /// Print the public key stored in a key file.
    #[arg(long, value_name = "PATH")]
    show: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("curvekeys: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    if let Some(path) = &args.show {
        let keys = Keys::load(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        println!("public-key = \"{}\"", keys.public_text());
        return Ok(());
    }
    let keys = Keys::generate().map_err(|e| format!("cannot make a key pair: {e}"))?;
    match &args.out {
        Some(path) => {
            keys.save(path)
                .map_err(|e| format!("cannot save {}: {e}", path.display()))?;
            println!("public-key = \"{}\"", keys.public_text());
            println!("public key saved in {}", path.display());
            println!("secret key saved in {}", secret_path(path).display());
        }
        None => {
            println!("public-key = \"{}\"", keys.public_text());
            println!(
                "secret-key = \"{}\"",
                keys.secret_text().unwrap_or_default()
            );
        }
    }
    Ok(())
}
