//! The integration-test harness shared by every chapter's tests.
//!
//! A [`Scenario`] is one run of a guide section: it starts real binaries as
//! processes, reads their output line by line, waits for lines with bounded
//! timeouts, writes to their stdin, sends signals, restarts them, and kills
//! everything it started when it is dropped (the test passed or panicked).
//!
//! **Isolation.** The guide's programs use fixed endpoints (`tcp://*:5555` …)
//! and we keep them unchanged, so tests that run in parallel would clash on
//! ports. Every scenario therefore gets its own network namespace: a small
//! holder process is started with `unshare -n` (`unshare -rn` when not root,
//! which adds a user namespace so no privilege is needed), brings its private
//! `lo` up, and then just waits; every program of the scenario is started in
//! that namespace with `nsenter`. Each scenario also gets its own temporary
//! working directory, for the `ipc://` files some programs create.
//!
//! **Ordinary users.** Creating and entering network namespaces needs
//! `CAP_SYS_ADMIN`. As an ordinary user, every test process therefore makes
//! itself root of its own user namespace before `main` runs (see
//! [`become_root_in_own_user_namespace`]): from then on the same code paths
//! work as for root, including probe threads that join a scenario's namespace.
//!
//! **Failures.** Every wait has a timeout (stretched by `ZGUIDE_TEST_SLOWDOWN`,
//! see [`secs`]); when it runs out the panic message shows what we waited for
//! and the recent output of every process.
//!
//! Submodules: [`wire`] (probe sockets that speak raw frames) and [`attack`]
//! (the hostile-peer toolkit: floods, malformed and oversized frames, memory
//! and disk measurements).
#![allow(dead_code)]

pub mod attack;
pub mod mdp;
pub mod network;
pub mod relay;
pub mod runs;
pub mod wire;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The path of one of this crate's binaries: `bin!("hwserver")`.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

/// The factor from `ZGUIDE_TEST_SLOWDOWN` (default 1) by which every timeout
/// in the tests is stretched on a slow machine.
pub fn slowdown() -> f64 {
    std::env::var("ZGUIDE_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|f: &f64| *f > 0.0)
        .unwrap_or(1.0)
}

/// A timeout in seconds, stretched by `ZGUIDE_TEST_SLOWDOWN`.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 * slowdown())
}

/// A timeout in milliseconds, stretched by `ZGUIDE_TEST_SLOWDOWN`.
pub fn ms(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 * slowdown() / 1000.0)
}

/// A socket timeout option (`RCVTIMEO`, `SNDTIMEO`) of `n` milliseconds,
/// stretched by `ZGUIDE_TEST_SLOWDOWN`.
pub fn timeout_ms(n: u64) -> i32 {
    ms(n).as_millis().min(i32::MAX as u128) as i32
}

/// Runs before `main`, while the test process still has one thread (the only
/// time `unshare(CLONE_NEWUSER)` is allowed): as an ordinary user, the
/// process becomes root of a user namespace of its own, mapped to the user's
/// own uid and gid. It gains no power outside that namespace, but inside it
/// may make network namespaces and join them from any thread, so the tests run
/// the same way as root. As root this does nothing. If the kernel forbids
/// unprivileged user namespaces nothing changes, and `Scenario::new` reports
/// the problem.
///
/// It also raises the open-file limit to the hard limit: attack tests open
/// hundreds of probe sockets, and when the tests share one process (`cargo
/// test`) an ordinary user's usual soft limit of 1024 runs out.
extern "C" fn become_root_in_own_user_namespace() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    // SAFETY: plain syscalls on our own process, before any other thread exists.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 || unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return;
    }
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    let _ = std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"));
    let _ = std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"));
}

#[used]
#[link_section = ".init_array"]
static BECOME_ROOT_BEFORE_MAIN: extern "C" fn() = become_root_in_own_user_namespace;

/// Handle of a process within its scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pid(usize);

/// Everything a process printed, stdout and stderr interleaved as read.
#[derive(Default)]
struct OutputState {
    text: String,
    /// Readers still open (stdout, stderr); 0 once both reached end of file.
    open_streams: usize,
}

#[derive(Default)]
struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

impl Output {
    fn append(&self, chunk: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.text.push_str(chunk);
        self.changed.notify_all();
    }

    fn text(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .text
            .clone()
    }
}

/// How to start a process: arguments, environment, working directory.
#[derive(Clone, Default)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

impl Spec {
    pub fn new(program: impl AsRef<Path>, args: &[&str]) -> Spec {
        Spec {
            program: program.as_ref().to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Spec::default()
        }
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Spec {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Spec {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }
}

struct Proc {
    label: String,
    spec: Spec,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    output: Arc<Output>,
    readers: Vec<JoinHandle<()>>,
    /// Byte offset in the output up to which `expect` has consumed lines.
    cursor: usize,
    exit: Option<std::process::ExitStatus>,
}

/// One isolated run of a guide section. See the module docs.
pub struct Scenario {
    name: String,
    holder: Child,
    holder_stdin: Option<ChildStdin>,
    dir: PathBuf,
    procs: Vec<Proc>,
    labels: HashMap<String, usize>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes a spawned process die with the test process, and puts it in its own
/// process group so that killing the group also takes its children.
fn own_group_and_die_with_parent(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls (prctl, setpgid) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::setpgid(0, 0);
            Ok(())
        });
    }
}

static SCENARIOS: AtomicUsize = AtomicUsize::new(0);

impl Scenario {
    /// A fresh network namespace with `lo` up, and an empty working directory.
    pub fn new(name: &str) -> Scenario {
        let serial = SCENARIOS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "zguide-test-{name}-{}-{serial}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scenario directory");

        let mut holder = Command::new("unshare");
        holder.arg(if is_root() { "-n" } else { "-rn" });
        // The holder waits on its stdin: when the test process goes away, the
        // pipe closes and the holder exits with it, even after a SIGKILL.
        holder.args([
            "sh",
            "-c",
            "ip link set lo up && echo ready && read _ignored",
        ]);
        holder
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        own_group_and_die_with_parent(&mut holder);
        let mut holder = holder
            .spawn()
            .expect("start the namespace holder (needs unshare and ip)");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read from namespace holder");
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("could not create a network namespace: {line}{err}");
        }
        let holder_stdin = holder.stdin.take();
        Scenario {
            name: name.to_string(),
            holder,
            holder_stdin,
            dir,
            procs: Vec::new(),
            labels: HashMap::new(),
        }
    }

    /// The pid of the process that holds the scenario's network namespace
    /// (`/proc/<pid>/ns/net`), for `nsenter -t <pid> -n`.
    pub fn namespace_pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs `command args…` (such as `ip`) inside the scenario's network
    /// namespace and panics with its output if it fails.
    pub fn run_in_namespace(&self, command: &str, args: &[&str]) {
        run_in_namespace_of(self.namespace_pid(), command, args);
    }

    /// The scenario's private working directory (default cwd of processes).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts `program args…` inside the scenario's namespace, labelled `label`.
    pub fn start(&mut self, label: &str, program: &str, args: &[&str]) -> Pid {
        self.start_spec(label, Spec::new(program, args))
    }

    /// Starts a process described by `spec`.
    pub fn start_spec(&mut self, label: &str, spec: Spec) -> Pid {
        assert!(
            !self.labels.contains_key(label),
            "label {label} used twice in scenario {}",
            self.name
        );
        let output = Arc::new(Output::default());
        let mut proc = Proc {
            label: label.to_string(),
            spec,
            child: None,
            stdin: None,
            output,
            readers: Vec::new(),
            cursor: 0,
            exit: None,
        };
        self.spawn_into(&mut proc);
        self.procs.push(proc);
        let index = self.procs.len() - 1;
        self.labels.insert(label.to_string(), index);
        Pid(index)
    }

    fn spawn_into(&self, proc: &mut Proc) {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.holder.id().to_string());
        if is_root() {
            cmd.arg("-n");
        } else {
            cmd.args(["-U", "-n", "--preserve-credentials"]);
        }
        cmd.arg("--").arg(&proc.spec.program).args(&proc.spec.args);
        cmd.current_dir(proc.spec.cwd.as_ref().unwrap_or(&self.dir));
        cmd.env("RUST_BACKTRACE", "1");
        for (k, v) in &proc.spec.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        own_group_and_die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", proc.spec.program.display()));
        proc.stdin = child.stdin.take();
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        proc.output.state.lock().unwrap().open_streams = streams.len();
        for mut stream in streams {
            let output = proc.output.clone();
            proc.readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => output.append(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
                let mut state = output.state.lock().unwrap_or_else(|e| e.into_inner());
                state.open_streams -= 1;
                output.changed.notify_all();
            }));
        }
        proc.child = Some(child);
        proc.exit = None;
    }

    /// The handle of the process labelled `label`.
    pub fn pid(&self, label: &str) -> Pid {
        Pid(*self
            .labels
            .get(label)
            .unwrap_or_else(|| panic!("no process labelled {label}")))
    }

    /// The OS process id (for signals sent by hand).
    pub fn os_pid(&self, pid: Pid) -> i32 {
        self.procs[pid.0]
            .child
            .as_ref()
            .map(|c| c.id() as i32)
            .unwrap_or(0)
    }

    /// What a process has cost so far: voluntary context switches of its
    /// main thread (one each time it blocked and woke) and CPU time of all
    /// its threads, in clock ticks (utime + stime). A loop that sleeps in
    /// `poll` until something happens adds neither while nothing happens;
    /// one that polls with a short timeout adds a wake-up per timeout, and
    /// one whose timeout is zero spins, adding CPU time.
    pub fn idle_cost(&self, pid: Pid) -> (u64, u64) {
        let proc_file = |name: &str| {
            std::fs::read_to_string(format!("/proc/{}/{name}", self.os_pid(pid)))
                .unwrap_or_else(|e| self.fail(&format!("no /proc {name}: {e}")))
        };
        let wakeups = proc_file("status")
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| self.fail("no voluntary_ctxt_switches line"));
        let ticks = proc_file("stat")
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or_else(|| self.fail("no utime/stime in /proc stat"));
        (wakeups, ticks)
    }

    /// [`idle_cost`](Scenario::idle_cost) over `window`: the wake-ups and
    /// clock ticks `pid` adds while the test waits (a window to measure in,
    /// not a synchronisation).
    pub fn idle_cost_over(&self, pid: Pid, window: Duration) -> (u64, u64) {
        let (wakeups, ticks) = self.idle_cost(pid);
        std::thread::sleep(window);
        let (wakeups_after, ticks_after) = self.idle_cost(pid);
        (wakeups_after - wakeups, ticks_after - ticks)
    }

    /// Everything the process printed so far (all its runs, if restarted).
    pub fn output(&self, pid: Pid) -> String {
        self.procs[pid.0].output.text()
    }

    /// The lines the process printed so far.
    pub fn lines(&self, pid: Pid) -> Vec<String> {
        self.output(pid).lines().map(str::to_string).collect()
    }

    /// How many output lines contain `needle`.
    pub fn count(&self, pid: Pid, needle: &str) -> usize {
        self.output(pid)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a line after the last `expect`ed one contains `needle`, and
    /// returns that line. A line still being written (no newline yet) counts.
    pub fn expect(&mut self, pid: Pid, needle: &str, timeout: Duration) -> String {
        // Whole lines already searched are not searched again on the next
        // change: the check runs under the output's lock, and a rescan of a
        // large output on every chunk would stall the reader and, through the
        // full pipe, the program itself.
        let searched = std::cell::Cell::new(0);
        let (line, end) = self.wait_output(
            pid,
            timeout,
            &format!("a line containing {needle:?}"),
            |text, cursor| {
                let from = cursor.max(searched.get());
                let found = find_line(text, from, needle);
                if found.is_none() {
                    searched.set(from + text[from..].rfind('\n').map_or(0, |i| i + 1));
                }
                found
            },
        );
        self.procs[pid.0].cursor = end;
        line
    }

    /// Waits until `needle` appears on `n` lines in total (from the start).
    pub fn expect_count(&mut self, pid: Pid, needle: &str, n: usize, timeout: Duration) {
        // Counts each whole line once (see `expect`): (end of the last whole
        // line counted, lines with `needle` up to there).
        let counted = std::cell::Cell::new((0, 0));
        self.wait_output(
            pid,
            timeout,
            &format!("{n} lines containing {needle:?}"),
            |text, _| {
                let (from, mut count) = counted.get();
                let whole = from + text[from..].rfind('\n').map_or(0, |i| i + 1);
                count += text[from..whole]
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count();
                counted.set((whole, count));
                // A line still being written counts too.
                let partial = usize::from(text[whole..].contains(needle));
                (count + partial >= n).then_some(())
            },
        );
    }

    /// Waits until `pred` holds for the process's whole output so far.
    pub fn wait_for(&self, pid: Pid, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) {
        self.wait_output(pid, timeout, what, |text, _| pred(text).then_some(()));
    }

    fn wait_output<T>(
        &self,
        pid: Pid,
        timeout: Duration,
        what: &str,
        check: impl Fn(&str, usize) -> Option<T>,
    ) -> T {
        let proc = &self.procs[pid.0];
        let deadline = Instant::now() + timeout;
        let mut state = proc.output.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(value) = check(&state.text, proc.cursor) {
                return value;
            }
            let now = Instant::now();
            if now >= deadline || state.open_streams == 0 {
                drop(state);
                let reason = if now >= deadline {
                    format!("timed out after {timeout:?}")
                } else {
                    "its output closed (the process ended)".to_string()
                };
                panic!(
                    "[{}] waiting for {what} from {}: {reason}\n{}",
                    self.name,
                    proc.label,
                    self.report()
                );
            }
            state = proc
                .output
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Writes `text` to the process's stdin (e.g. `"\n"` for "press Enter").
    pub fn write_stdin(&mut self, pid: Pid, text: &str) {
        let proc = &mut self.procs[pid.0];
        let stdin = proc.stdin.as_mut().expect("stdin already closed");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes the process's stdin (end of file).
    pub fn close_stdin(&mut self, pid: Pid) {
        self.procs[pid.0].stdin = None;
    }

    /// Sends a signal (`libc::SIGINT`, `libc::SIGTERM`, `libc::SIGKILL` …).
    pub fn signal(&self, pid: Pid, signal: i32) {
        let os_pid = self.os_pid(pid);
        if os_pid > 0 {
            // SAFETY: plain kill(2) on a child we started and have not reaped.
            unsafe { libc::kill(os_pid, signal) };
        }
    }

    /// SIGINT, as Ctrl-C would.
    pub fn interrupt(&self, pid: Pid) {
        self.signal(pid, libc::SIGINT);
    }

    /// Ctrl-C (SIGINT) and wait: the process must exit with code 0 within
    /// `timeout`, as every long-running guide program does on Ctrl-C.
    pub fn stop_cleanly(&mut self, pid: Pid, timeout: Duration) {
        self.stop_cleanly_with(pid, libc::SIGINT, timeout);
    }

    /// Like [`stop_cleanly`](Scenario::stop_cleanly) with another signal
    /// (`libc::SIGTERM`): the process must exit with code 0 within `timeout`.
    pub fn stop_cleanly_with(&mut self, pid: Pid, signal: i32, timeout: Duration) {
        self.signal(pid, signal);
        let code = self.wait_exit(pid, timeout);
        if code != 0 {
            let label = self.procs[pid.0].label.clone();
            self.fail(&format!(
                "{label} exited with {code} on signal {signal}, not 0"
            ));
        }
    }

    /// SIGKILL and reap: the process is gone when this returns.
    pub fn kill(&mut self, pid: Pid) {
        self.signal(pid, libc::SIGKILL);
        self.wait_exit(pid, secs(10));
    }

    /// Waits for the process to exit and returns its exit code, or
    /// `-signal` if a signal ended it.
    pub fn wait_exit(&mut self, pid: Pid, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let proc = &mut self.procs[pid.0];
            if proc.exit.is_none() {
                let child = proc.child.as_mut().expect("process was started");
                proc.exit = child.try_wait().expect("try_wait");
            }
            if let Some(status) = proc.exit {
                // Let the readers drain what is left in the pipes, also when
                // `is_running` saw the exit first: the last lines may still
                // be on their way.
                let output = proc.output.clone();
                let drain_deadline = Instant::now() + secs(5);
                let mut state = output.state.lock().unwrap_or_else(|e| e.into_inner());
                while state.open_streams > 0 && Instant::now() < drain_deadline {
                    state = output
                        .changed
                        .wait_timeout(state, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                return code_of(status);
            }
            if Instant::now() >= deadline {
                let label = proc.label.clone();
                panic!(
                    "[{}] {label} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self, pid: Pid) -> bool {
        let proc = &mut self.procs[pid.0];
        if proc.exit.is_some() {
            return false;
        }
        match proc.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                proc.exit = Some(status);
                false
            }
            _ => false,
        }
    }

    /// Asserts the process is still running, with the report if not.
    pub fn assert_running(&mut self, pid: Pid) {
        if !self.is_running(pid) {
            let label = self.procs[pid.0].label.clone();
            panic!("[{}] {label} is not running\n{}", self.name, self.report());
        }
    }

    /// Starts the process again with the same arguments (it must have exited
    /// or been killed). Its output continues in the same buffer, after a
    /// `--- restarted ---` marker, and the `expect` cursor stays where it was.
    pub fn restart(&mut self, pid: Pid) {
        assert!(!self.is_running(pid), "restart of a running process");
        let mut proc = std::mem::replace(
            &mut self.procs[pid.0],
            Proc {
                label: String::new(),
                spec: Spec::default(),
                child: None,
                stdin: None,
                output: Arc::new(Output::default()),
                readers: Vec::new(),
                cursor: 0,
                exit: None,
            },
        );
        proc.output.append("--- restarted ---\n");
        for reader in proc.readers.drain(..) {
            let _ = reader.join();
        }
        self.spawn_into(&mut proc);
        self.procs[pid.0] = proc;
    }

    /// Runs `probe` on a thread that has joined the scenario's network
    /// namespace, so test-side sockets can speak raw frames to the programs
    /// (`tcp://localhost:5555` there is the scenario's, not the host's), and
    /// waits for it. `probe` must create its own `zmq::Context`: libzmq's I/O
    /// thread is started with the context's first socket and inherits the
    /// namespace. A panic in the probe fails the test with the report.
    pub fn in_namespace<T: Send + 'static>(&self, probe: impl FnOnce() -> T + Send + 'static) -> T {
        match self.in_namespace_background(probe).join() {
            Ok(value) => value,
            Err(panic) => {
                eprintln!("{}", self.report());
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Like [`in_namespace`](Scenario::in_namespace) but does not wait: for a
    /// probe (a flooding client, a fake worker) that must run while the test
    /// goes on. Join the handle to get its result; every wait inside the
    /// probe must be bounded, so that the join is too.
    pub fn in_namespace_background<T: Send + 'static>(
        &self,
        probe: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let ns_path = format!("/proc/{}/ns/net", self.holder.id());
        let name = self.name.clone();
        std::thread::spawn(move || {
            let file =
                std::fs::File::open(&ns_path).expect("open the scenario's network namespace");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "[{name}] cannot join the namespace: {}",
                std::io::Error::last_os_error()
            );
            probe()
        })
    }

    /// The last lines of every process's output, for failure messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for proc in &self.procs {
            let text = proc.output.text();
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(40);
            out.push_str(&format!(
                "---- {} ({} lines, last {}) ----\n",
                proc.label,
                lines.len(),
                lines.len() - skip
            ));
            for line in &lines[skip..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Panics with `message` and the report.
    pub fn fail(&self, message: &str) -> ! {
        panic!("[{}] {message}\n{}", self.name, self.report());
    }
}

/// Runs `command args…` in the network namespace held by `pid`; panics with
/// the command's output if it fails.
pub fn run_in_namespace_of(pid: u32, command: &str, args: &[&str]) {
    let output = Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .arg("-n")
        .arg("--")
        .arg(command)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run nsenter {command}: {e}"));
    assert!(
        output.status.success(),
        "{command} {args:?} in namespace {pid} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn code_of(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

/// Finds the first complete or partial line at or after byte `cursor` that
/// contains `needle`; returns it and the offset just past it.
fn find_line(text: &str, cursor: usize, needle: &str) -> Option<(String, usize)> {
    let rest = text.get(cursor..)?;
    let mut offset = cursor;
    for line in rest.split_inclusive('\n') {
        let end = offset + line.len();
        if line.contains(needle) {
            return Some((line.trim_end_matches(['\n', '\r']).to_string(), end));
        }
        offset = end;
    }
    None
}

impl Drop for Scenario {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            if let Some(child) = proc.child.as_mut() {
                // The whole process group: the program and anything it started
                // (even if the program itself already ended).
                // SAFETY: kill(2) on a group we created.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                if proc.exit.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        self.holder_stdin = None;
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
