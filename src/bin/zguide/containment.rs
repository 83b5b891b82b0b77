//! Keeping every process a run started inside the run: no part, and nothing a
//! part started, outlives it.
//!
//! A part is one program, but a program may start others: `sh -c 'sleep 300 &
//! …'`, a C example that forks, a worker that daemonises with `setsid`. Those
//! grandchildren are not in the runner's list of processes, may leave the
//! part's process group, and used to survive both the end of a run and a
//! runner killed with `kill -9`. The design, which needs no privilege (it
//! works the same as root and as an ordinary user, with or without
//! namespaces):
//!
//! * **Two processes.** `zguide run` starts a copy of itself, the *inner*
//!   runner, which does the real work; the *outer* one only waits for it,
//!   passes Ctrl-C/SIGTERM on, and exits with its exit code. The inner runner
//!   has `PR_SET_PDEATHSIG = SIGTERM`: if the outer one dies in any way,
//!   `kill -9` included, the kernel sends the inner one SIGTERM, which it
//!   handles like Ctrl-C: it stops every part and cleans up as below. (A
//!   process cannot clean up after its own SIGKILL; its child can.)
//! * **Subreaper.** Both runners are child subreapers
//!   (`PR_SET_CHILD_SUBREAPER`): a process whose parent dies is re-parented
//!   to the nearest subreaper above it instead of to init, so everything a
//!   part starts stays in the inner runner's tree, even after a double fork
//!   or `setsid`.
//! * **The whole tree.** At the end of every scenario (and when the outer
//!   runner's child is gone) [`kill_descendants`] walks `/proc` from the
//!   runner down by parent pid and SIGKILLs every process it finds, until
//!   none is left, then reaps the orphans it inherited.
//! * Each part still gets `PR_SET_PDEATHSIG = SIGKILL` (see the supervisor),
//!   so even a SIGKILL sent to the inner runner itself takes the parts with
//!   it; the outer runner then inherits their orphans and kills them.
//!
//! What is left: SIGKILL sent to *both* runners at once (`pkill -9 zguide`)
//! kills the parts but not their own children, which then belong to init.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// Set by the outer runner for the inner one: the outer runner's pid.
const INNER_VAR: &str = "ZGUIDE_RUNNER_PARENT";

/// Called first thing in `main`, while the process has one thread. In the
/// inner runner it returns true, after checking that its parent is the
/// outer runner and making itself a subreaper; elsewhere it returns false.
pub fn is_inner_runner() -> bool {
    let Some(parent) = std::env::var_os(INNER_VAR) else {
        return false;
    };
    // Not for the parts: they must not think they are runners.
    std::env::remove_var(INNER_VAR);
    // SAFETY: getppid has no preconditions.
    let actual = unsafe { libc::getppid() };
    if parent.to_str().and_then(|p| p.parse().ok()) != Some(actual) {
        // The outer runner died before our PDEATHSIG was set: stop at once.
        std::process::exit(130);
    }
    become_subreaper();
    true
}

fn become_subreaper() {
    // SAFETY: prctl on our own process, with an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        eprintln!(
            "zguide: cannot become a subreaper ({}); processes that the parts start may outlive the run",
            std::io::Error::last_os_error()
        );
    }
}

/// The inner runner's pid, for the outer runner's signal handler (0: none yet).
static INNER: AtomicI32 = AtomicI32::new(0);
/// A signal arrived before the inner runner existed.
static PENDING: AtomicBool = AtomicBool::new(false);

/// The outer runner: starts the inner one with the same arguments, passes
/// Ctrl-C/SIGTERM on to it, waits, kills whatever is left of its tree and
/// returns its exit code (128 + the signal if a signal ended it).
pub fn run_outer() -> i32 {
    become_subreaper();
    let installed = ctrlc::set_handler(|| {
        let inner = INNER.load(Ordering::SeqCst);
        if inner > 0 {
            // SAFETY: kill(2) on our own child, which we have not reaped.
            unsafe { libc::kill(inner, libc::SIGINT) };
        } else {
            PENDING.store(true, Ordering::SeqCst);
        }
    });
    if let Err(e) = installed {
        eprintln!("zguide: cannot catch Ctrl-C: {e}");
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("zguide: cannot find my own program: {e}");
            return 2;
        }
    };
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut command = Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env(INNER_VAR, me.to_string());
    // SAFETY: only prctl (async-signal-safe) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut inner = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("zguide: cannot start the runner: {e}");
            return 2;
        }
    };
    INNER.store(inner.id() as i32, Ordering::SeqCst);
    if PENDING.load(Ordering::SeqCst) {
        // SAFETY: as in the handler.
        unsafe { libc::kill(inner.id() as i32, libc::SIGINT) };
    }
    let status = loop {
        match inner.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("zguide: lost the runner: {e}");
                break std::process::ExitStatus::from_raw(2 << 8);
            }
        }
    };
    INNER.store(0, Ordering::SeqCst);
    kill_descendants(Duration::from_secs(5));
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `(pid, parent pid, is a zombie)` of every process in `/proc`.
fn process_table() -> Vec<(i32, i32, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut table = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue; // Gone meanwhile.
        };
        // "pid (comm) state ppid …": comm may hold anything, so split after the last ')'.
        let mut fields = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace();
        let state = fields.next().unwrap_or("");
        if let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) {
            table.push((pid, ppid, state == "Z" || state == "X"));
        }
    }
    table
}

/// The live processes below `root` (its children, their children, …).
pub fn live_descendants(root: i32) -> Vec<i32> {
    let table = process_table();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            table
                .iter()
                .filter(|(pid, ppid, _)| *ppid == parent && !found.contains(pid))
                .map(|(pid, _, _)| *pid)
                .collect::<Vec<_>>(),
        );
        next += 1;
    }
    found.remove(0);
    found.retain(|pid| table.iter().any(|(p, _, zombie)| p == pid && !zombie));
    found
}

/// SIGKILLs every process below this one, again and again until none is
/// left (a process may fork while we look) or `limit` passed, reaping the
/// children it leaves; returns how many it killed. Call it only when the
/// runner's own `Child`ren have been reaped: it reaps any child.
pub fn kill_descendants(limit: Duration) -> usize {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let deadline = Instant::now() + limit;
    let mut killed = 0;
    loop {
        let live = live_descendants(me);
        for &pid in &live {
            // SAFETY: kill(2) on a process below us in the tree.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        reap_children();
        if live.is_empty() || Instant::now() >= deadline {
            return killed;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps every child that has exited (orphans we inherited as subreaper).
fn reap_children() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on any child of ours.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}
