//! The start and end every guide program shares: [`run`].
//!
//! Each C example opens with the same few lines (`s_catch_signals`, a
//! context, sockets) and ends the same way (close, destroy, `return 0`). In
//! Rust the boilerplate is: set up logging in the guide's style, catch
//! Ctrl-C/SIGTERM, run the program's body, and turn its `Result` into an exit
//! code, with `Error::Interrupted` counting as a clean exit (code 0) because
//! that is how a blocked call reports the user's Ctrl-C.
//!
//! ```no_run
//! use zguide::{helpers, program, Error};
//!
//! fn main() -> std::process::ExitCode {
//!     program::run(|| {
//!         let context = zmq::Context::new();
//!         let responder = zguide::socket::new(&context, zmq::REP).bind("tcp://*:5555")?;
//!         loop {
//!             let _request = helpers::recv_string(&responder)?; // Ctrl-C: Err(Interrupted)
//!             helpers::send_string(&responder, "World")?;
//!         }
//!     })
//! }
//! ```
//!
//! Errors that end the program are logged once as `E: <what>` on stderr and
//! give exit code 1. Sockets are dropped (closed, with the bounded LINGER the
//! [`socket`](crate::socket) builder sets) before the context, so the exit is
//! prompt even when a peer has stopped reading.

use std::process::ExitCode;

use crate::{helpers, interrupt, Error};

/// Runs a program's body with `I:`-level logging (`RUST_LOG` overrides it),
/// Ctrl-C/SIGTERM caught, and the exit code taken from the result.
pub fn run(body: impl FnOnce() -> Result<(), Error>) -> ExitCode {
    run_logging("info", body)
}

/// [`run`] with another default log level, e.g. `"debug"` for a `-v` flag.
pub fn run_logging(level: &str, body: impl FnOnce() -> Result<(), Error>) -> ExitCode {
    helpers::init_log(level);
    interrupt::catch_signals();
    exit_code(body())
}

/// The exit code for a program's result: 0 for success and for Ctrl-C, 1 for
/// an error (logged).
pub fn exit_code(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) | Err(Error::Interrupted) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Treats Ctrl-C as a normal end: `Err(Interrupted)` becomes `Ok(())`. For
/// a worker thread's result, or a loop that should end quietly on Ctrl-C.
pub fn interrupted_is_ok(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(Error::Interrupted) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_c_is_a_clean_exit_and_errors_are_not() {
        assert_eq!(exit_code(Ok(())), ExitCode::SUCCESS);
        assert_eq!(exit_code(Err(Error::Interrupted)), ExitCode::SUCCESS);
        assert_eq!(exit_code(Err(Error::Timeout)), ExitCode::FAILURE);
        assert!(interrupted_is_ok(Err(Error::Interrupted)).is_ok());
        assert!(matches!(
            interrupted_is_ok(Err(Error::Timeout)),
            Err(Error::Timeout)
        ));
    }

    /// `run` in a child process (it installs the logger and the Ctrl-C
    /// handler for the whole process): an error is logged with the C's
    /// `E:` prefix and exits 1, success and Ctrl-C exit 0.
    #[test]
    fn run_logs_an_error_as_e_and_gives_its_exit_code() {
        const CHILD: &str = "ZGUIDE_PROGRAM_RUN_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let failed = run(|| Err(Error::Protocol("the reason".into())));
            let fine = run_logging("debug", || {
                log::debug!("debug is on");
                Ok(())
            });
            let stopped = run(|| Err(Error::Interrupted));
            println!(
                "codes {} {} {}",
                failed == ExitCode::FAILURE,
                fine == ExitCode::SUCCESS,
                stopped == ExitCode::SUCCESS
            );
            return;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "program::tests::run_logs_an_error_as_e_and_gives_its_exit_code",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(stdout.contains("codes true true true"), "{stdout}{stderr}");
        assert!(
            stderr.lines().any(|l| l == "E: protocol error: the reason"),
            "{stderr}"
        );
        // The logger is installed once, by the first run (at I: level).
        assert!(!stderr.contains("debug is on"), "{stderr}");
    }
}
