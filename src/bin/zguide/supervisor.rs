//! Starting a scenario's parts side by side, watching them, stopping them.
//!
//! Each process runs in its own process group, so that a signal reaches the
//! program and anything it started, and so that the terminal's Ctrl-C reaches
//! only the runner, which then passes it on: first SIGINT (the guide's
//! programs close their sockets and exit), then, after [`GRACE`], SIGKILL.
//! Then every process still below the runner (what the parts started, even
//! outside their group) is killed: see [`containment`](crate::containment).
//! Every process also gets `PR_SET_PDEATHSIG`, and the list of processes is a
//! guard that kills whatever still runs when it is dropped (a panic included).
//!
//! The parts share a private working directory, [`TempDir`]: created
//! exclusively under a random name with mode 0700, never an existing one, and
//! removed afterwards, so nobody else can plant files or symlinks in it.
//!
//! One thread per pipe reads the parts' output and hands it to the
//! [`Printer`]; the main loop only starts parts on time, feeds stdin, reaps
//! exits and checks the end condition, waking every few milliseconds. Every
//! wait is bounded.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zguide::interrupt;

use crate::containment;
use crate::output::{Printer, Stream};
use crate::scenario::{secs_text, Connected, Scenario};
use crate::tcp_diag;

/// How long the parts get to exit after SIGINT before they are killed.
pub const GRACE: Duration = Duration::from_secs(2);
/// How often the main loop looks at the processes when nothing happens.
const TICK: Duration = Duration::from_millis(20);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The end condition held: exit code 0.
    Success,
    /// The end condition did not hold (timeout, a part failed): exit code 1.
    Failed(String),
    /// Ctrl-C or SIGTERM: exit code 130.
    Interrupted,
    /// A program could not be started at all: exit code 2.
    Broken(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed(_) => 1,
            Outcome::Broken(_) => 2,
            Outcome::Interrupted => 130,
        }
    }
}

/// A scenario with every part's program found, ready to start.
pub struct Plan<'a> {
    pub scenario: &'a Scenario,
    /// The program of each part, in the order of `scenario.parts`.
    pub programs: Vec<PathBuf>,
    /// Whether `--use` swapped the part's program.
    pub swapped: Vec<bool>,
    /// `--env` settings for every part, over the parts' own `env`.
    pub extra_env: &'a [(String, String)],
    /// The working directory of every part.
    pub workdir: PathBuf,
}

/// The printer, shared by the main loop and the reader threads.
pub type SharedPrinter = Arc<Mutex<Printer>>;

fn lock(printer: &SharedPrinter) -> MutexGuard<'_, Printer> {
    printer.lock().unwrap_or_else(|e| e.into_inner())
}

/// The lines printed before a run: title, section, what it shows.
pub fn header(scenario: &Scenario) -> String {
    let mut text = format!(
        "{}: {} — {}\n",
        scenario.name, scenario.title, scenario.section
    );
    for line in wrap(&scenario.about, 96) {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&scenario.end_condition());
    text
}

/// Greedy word wrap: lines of at most `width` characters (longer words alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Still running, or exited by itself.
    NotAsked,
    Interrupted,
    Killed,
    /// SIGKILLed on the scenario's schedule (`kill_after_ms`).
    Scheduled,
}

/// One running copy of a part.
struct Process {
    part: usize,
    label: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// The part printed its `stdin_when` text (or has none): its `stdin`
    /// text is written once its `stdin_when_connected` peers are there too.
    prompted: bool,
    /// Since when the peers it waits for (`stdin_when_connected`) have been
    /// ready without a break.
    peers_ready_since: Option<Instant>,
    exit: Option<ExitStatus>,
    stop: Stop,
    open_pipes: usize,
    started_at: Option<Instant>,
}

impl Process {
    fn running(&self) -> bool {
        self.child.is_some() && self.exit.is_none()
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Sends `signal` to the process's group (itself and what it started).
    fn signal(&self, signal: i32) {
        if let (Some(pid), true) = (self.pid(), self.running()) {
            // SAFETY: kill(2) on the process group of a child we have not
            // reaped yet, so the group id cannot belong to anyone else.
            unsafe { libc::kill(-pid, signal) };
        }
    }

    /// Reaps the process if it exited; true if it did just now.
    fn reap(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                self.stdin = None;
                true
            }
            Ok(None) => false,
            Err(_) => {
                // Cannot happen for our own child; treat it as gone.
                self.exit = Some(ExitStatus::from_raw(0));
                true
            }
        }
    }

    /// How the process ended, for the summary.
    fn status_text(&self) -> String {
        let Some(status) = self.exit else {
            return if self.child.is_none() {
                "not started".into()
            } else {
                "still running".into()
            };
        };
        match (self.stop, status.code(), status.signal()) {
            (Stop::Killed, _, _) => format!("killed ({} s after SIGINT)", secs_text(GRACE)),
            (Stop::Scheduled, _, _) => "killed on schedule (SIGKILL)".into(),
            (Stop::Interrupted, Some(0), _) => "stopped".into(),
            (Stop::Interrupted, Some(code), _) => format!("stopped (exit {code})"),
            (Stop::Interrupted, None, Some(libc::SIGINT)) => "stopped by SIGINT".into(),
            (Stop::Interrupted, None, signal) => {
                format!("stopped (signal {})", signal.unwrap_or(0))
            }
            (Stop::NotAsked, Some(code), _) => format!("exited {code}"),
            (Stop::NotAsked, None, signal) => format!("killed by signal {}", signal.unwrap_or(0)),
        }
    }
}

/// The processes of a run. Dropping it kills whatever still runs, so no path
/// out of [`run`] (an early return, a panic) leaves a process behind.
struct Processes(Vec<Process>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            p.signal(libc::SIGKILL);
        }
        wait_all(&mut self.0, Duration::from_secs(5));
        // And whatever they started, in their group or not.
        containment::kill_descendants(Duration::from_secs(5));
    }
}

/// Reaps processes until none runs or `limit` passed.
fn wait_all(processes: &mut [Process], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        for p in processes.iter_mut() {
            p.reap();
        }
        if !processes.iter().any(Process::running) || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(TICK);
    }
}

enum Event {
    /// The process printed its `stdin_when` text.
    StdinWanted(usize),
    /// One of the process's pipes reached end of file.
    PipeClosed(usize),
}

/// Runs `plan` to its end and prints a summary line; see the module docs.
/// Call [`interrupt::catch_signals`] first, so that Ctrl-C ends the run cleanly.
pub fn run(plan: &Plan, printer: &SharedPrinter) -> Outcome {
    let scenario = plan.scenario;
    let mut processes = Processes(Vec::new());
    let mut labels = Vec::new();
    for (index, part) in scenario.parts.iter().enumerate() {
        for label in part.labels() {
            labels.push((label.clone(), index));
            processes.0.push(Process {
                part: index,
                label,
                child: None,
                stdin: None,
                prompted: false,
                peers_ready_since: None,
                exit: None,
                stop: Stop::NotAsked,
                started_at: None,
                open_pipes: 0,
            });
        }
    }
    lock(printer).set_labels(labels);

    let (events_in, events) = mpsc::channel();
    let started = Instant::now();
    let outcome = supervise(
        plan,
        &mut processes.0,
        printer,
        &events_in,
        &events,
        started,
    );
    stop_all(&mut processes.0, printer);

    // Let the readers print the last lines before the summary.
    let drain_deadline = Instant::now() + Duration::from_secs(1);
    while processes.0.iter().any(|p| p.open_pipes > 0) && Instant::now() < drain_deadline {
        match events.recv_timeout(TICK) {
            Ok(Event::PipeClosed(i)) => processes.0[i].open_pipes -= 1,
            Ok(Event::StdinWanted(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let verdict = match &outcome {
        Outcome::Success => "ok".to_string(),
        Outcome::Failed(why) => format!("FAILED ({why})"),
        Outcome::Broken(why) => format!("could not run ({why})"),
        Outcome::Interrupted => "interrupted".to_string(),
    };
    lock(printer).note(&format!(
        "{}: {verdict} after {:.1} s; {}",
        scenario.name,
        started.elapsed().as_secs_f64(),
        summary(scenario, &processes.0)
    ));
    outcome
}

/// The main loop: start, feed, reap, judge.
fn supervise(
    plan: &Plan,
    processes: &mut [Process],
    printer: &SharedPrinter,
    events_in: &Sender<Event>,
    events: &Receiver<Event>,
    started: Instant,
) -> Outcome {
    let scenario = plan.scenario;
    let mut next = 0;
    let mut last_start = started;
    loop {
        if interrupt::interrupted() {
            return Outcome::Interrupted;
        }

        // Start the processes that are due, in file order.
        while next < processes.len() {
            let part_index = processes[next].part;
            let first_of_part = next == 0 || processes[next - 1].part != part_index;
            let delay = if first_of_part {
                scenario.parts[part_index].start_after
            } else {
                Duration::ZERO
            };
            if Instant::now() < last_start + delay {
                break;
            }
            if let Err(e) = start(plan, next, processes, printer, events_in) {
                return Outcome::Broken(e);
            }
            last_start = Instant::now();
            next += 1;
        }

        // Feed stdin where a part asked for it; count closed pipes.
        let mut event = events.recv_timeout(TICK).ok();
        while let Some(e) = event {
            handle(e, processes);
            event = events.try_recv().ok();
        }
        for p in processes.iter_mut() {
            if p.stdin.is_some() && p.prompted {
                let wanted = scenario.parts[p.part].stdin_when_connected;
                let ready = match wanted {
                    None => true,
                    Some(wanted) => peers_settled(wanted, &mut p.peers_ready_since),
                };
                if ready {
                    feed_stdin(plan, p, printer);
                }
            }
        }

        // Kill the parts whose time has come (`kill_after_ms`).
        for p in processes.iter_mut() {
            let due = scenario.parts[p.part].kill_after.zip(p.started_at);
            if p.running()
                && p.stop == Stop::NotAsked
                && due.is_some_and(|(after, at)| at.elapsed() >= after)
            {
                lock(printer).note(&format!(
                    "killing {} (SIGKILL), as the scenario says",
                    p.label
                ));
                p.stop = Stop::Scheduled;
                p.signal(libc::SIGKILL);
            }
        }

        // Reap the processes that exited by themselves.
        for index in 0..processes.len() {
            if !processes[index].reap() {
                continue;
            }
            // Its last lines may still be in the pipes: print them first.
            let deadline = Instant::now() + Duration::from_millis(500);
            while processes[index].open_pipes > 0 && Instant::now() < deadline {
                if let Ok(e) = events.recv_timeout(TICK) {
                    handle(e, processes);
                }
            }
            let p = &processes[index];
            let text = p.status_text();
            lock(printer).note(&format!("{} {text}", p.label));
            let part = &scenario.parts[p.part];
            let ok = p.exit.is_some_and(|s| s.success()) || p.stop == Stop::Scheduled;
            if !ok && (scenario.until_exit.contains(&part.name) || !part.allow_failure) {
                return Outcome::Failed(format!("{} {text}", p.label));
            }
        }

        // The end condition.
        let all_started = next == processes.len();
        let done = |name: &String| {
            processes
                .iter()
                .filter(|p| &scenario.parts[p.part].name == name)
                .all(|p| p.exit.is_some())
        };
        if all_started && !scenario.until_exit.is_empty() && scenario.until_exit.iter().all(done) {
            return Outcome::Success;
        }
        if all_started && processes.iter().all(|p| p.exit.is_some()) {
            return Outcome::Success; // Nothing left to run, and nothing failed.
        }
        let elapsed = started.elapsed();
        if scenario.duration.is_some_and(|d| elapsed >= d) {
            return Outcome::Success;
        }
        if elapsed >= scenario.timeout {
            let waiting: Vec<&str> = processes
                .iter()
                .filter(|p| scenario.until_exit.contains(&scenario.parts[p.part].name))
                .filter(|p| p.exit.is_none())
                .map(|p| p.label.as_str())
                .collect();
            return Outcome::Failed(format!(
                "timeout after {} s, still waiting for {}",
                secs_text(scenario.timeout),
                waiting.join(", ")
            ));
        }
    }
}

/// Notes what a reader thread reported.
fn handle(event: Event, processes: &mut [Process]) {
    match event {
        Event::StdinWanted(i) => processes[i].prompted = true,
        Event::PipeClosed(i) => processes[i].open_pipes -= 1,
    }
}

/// Starts process `index` and its reader threads.
fn start(
    plan: &Plan,
    index: usize,
    processes: &mut [Process],
    printer: &SharedPrinter,
    events_in: &Sender<Event>,
) -> Result<(), String> {
    let part = &plan.scenario.parts[processes[index].part];
    let program = &plan.programs[processes[index].part];
    let mut command = Command::new(program);
    command
        .args(&part.args)
        .current_dir(&plan.workdir)
        .envs(part.env.iter().map(|(k, v)| (k, v)))
        .envs(plan.extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(if part.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_runner(&mut command);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {} ({}): {e}",
            processes[index].label,
            program.display()
        )
    })?;

    let process = &mut processes[index];
    let shown = if plan.swapped[process.part] {
        program.display().to_string()
    } else {
        part.program.clone()
    };
    let mut command_line = vec![shown];
    command_line.extend(part.args.iter().map(|a| quoted(a)));
    lock(printer).note(&format!(
        "started {} (pid {}): {}",
        process.label,
        child.id(),
        command_line.join(" ")
    ));

    process.stdin = child.stdin.take();
    let pipes: [(Option<Box<dyn Read + Send>>, Stream); 2] = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            Stream::Stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            Stream::Stderr,
        ),
    ];
    for (pipe, stream) in pipes {
        let Some(pipe) = pipe else { continue };
        process.open_pipes += 1;
        let printer = printer.clone();
        let events = events_in.clone();
        let wanted = part.stdin_when.clone();
        std::thread::spawn(move || read_pipe(pipe, index, stream, &printer, wanted, &events));
    }
    process.child = Some(child);
    process.started_at = Some(Instant::now());
    process.prompted = part.stdin_when.is_none();
    Ok(())
}

/// A shell-like rendering of one argument, for the "started" line.
fn quoted(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Asks the kernel to SIGKILL the process when the runner dies, however it
/// dies. (It is tied to the thread that started the process: the runner
/// starts every process from its main loop, which lives until the end.)
fn die_with_runner(command: &mut Command) {
    // SAFETY: getpid has no preconditions.
    let runner = unsafe { libc::getpid() };
    // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The runner may have died before prctl took effect.
            if libc::getppid() != runner {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The bytes a ZeroMQ peer has sent once its greeting (64 bytes) and READY
/// command (at least 27: `Socket-Type` of a three-letter type) are through.
const HANDSHAKE_BYTES: u64 = 64 + 27;
/// … and, from a SUB, a subscription (at least 3 bytes).
const SUBSCRIBED_BYTES: u64 = HANDSHAKE_BYTES + 3;

/// True once at least `wanted.peers` peers are ready on local port
/// `wanted.port`, in the network namespace the runner and its parts share:
/// each one's TCP connection established and its ZeroMQ handshake (with
/// `subscribed`, its subscription too) received and read by the program, as
/// the kernel's `sock_diag` reports it. This is how "press Enter once the
/// workers are connected" is told apart from "press Enter after a while":
/// the peers' connections are the readiness a ventilator waits for. Where
/// `sock_diag` is missing, established connections in `/proc/net/tcp` are
/// counted instead (the handshake then follows within a millisecond on an
/// idle machine, later on a busy one).
fn peers_connected(wanted: Connected) -> bool {
    let enough = if wanted.subscribed {
        SUBSCRIBED_BYTES
    } else {
        HANDSHAKE_BYTES
    };
    match tcp_diag::established_on(wanted.port) {
        Ok(connections) => {
            let ready = connections
                .iter()
                .filter(|c| c.bytes_received >= enough && c.unread == 0)
                .count();
            ready >= wanted.peers as usize
        }
        Err(_) => established_in_proc(wanted.port) >= wanted.peers as usize,
    }
}

/// How long the peers must stay ready before a part is given its input.
/// The kernel shows that libzmq's I/O thread has *read* a peer's
/// subscription; the subscription reaches the PUB socket a moment later,
/// through a pipe. On a loaded machine that moment can be a scheduler slice
/// (a CI run saw a subscriber miss the first message), so the readiness
/// must hold for this long first.
const PEERS_SETTLE: Duration = Duration::from_millis(100);

/// [`peers_connected`], held for [`PEERS_SETTLE`] without a break (`since`
/// keeps when it was first seen).
fn peers_settled(wanted: Connected, since: &mut Option<Instant>) -> bool {
    if !peers_connected(wanted) {
        *since = None;
        return false;
    }
    since.get_or_insert_with(Instant::now).elapsed() >= PEERS_SETTLE
}

/// Established TCP connections to local `port` in `/proc/net/tcp` and
/// `tcp6`.
fn established_in_proc(port: u16) -> usize {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // "sl local_address rem_address st …", addresses as HEXIP:HEXPORT,
        // state 01 = ESTABLISHED.
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"01") {
                count += 1;
            }
        }
    }
    count
}

/// Writes the part's `stdin` text once, then closes its stdin.
fn feed_stdin(plan: &Plan, process: &mut Process, printer: &SharedPrinter) {
    let Some(mut stdin) = process.stdin.take() else {
        return; // The process is gone.
    };
    let text = plan.scenario.parts[process.part]
        .stdin
        .as_deref()
        .unwrap_or_default();
    // The note first: the part may answer at once.
    lock(printer).note(&format!("{} <- stdin {text:?}", process.label));
    if let Err(e) = stdin.write_all(text.as_bytes()).and_then(|_| stdin.flush()) {
        lock(printer).note(&format!("{}: cannot write its stdin: {e}", process.label));
    }
}

/// Copies one pipe of process `index` to the printer until end of file, and
/// reports when the process prints its `stdin_when` text.
fn read_pipe(
    mut pipe: Box<dyn Read + Send>,
    index: usize,
    stream: Stream,
    printer: &SharedPrinter,
    mut wanted: Option<String>,
    events: &Sender<Event>,
) {
    let mut buffer = [0u8; 8192];
    // The current line so far, to find a prompt that has no newline yet.
    let mut line = String::new();
    loop {
        let n = match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buffer[..n];
        lock(printer).part(index, stream, chunk);
        if let Some(needle) = wanted.as_deref() {
            for segment in chunk.split_inclusive(|&b| b == b'\n') {
                line.push_str(&String::from_utf8_lossy(segment));
                if line.contains(needle) {
                    let _ = events.send(Event::StdinWanted(index));
                    wanted = None;
                    break;
                }
                if segment.ends_with(b"\n") || line.len() > 64 * 1024 {
                    line.clear();
                }
            }
        }
    }
    let _ = events.send(Event::PipeClosed(index));
}

/// SIGINT to every process still running, SIGKILL to those still running
/// after [`GRACE`], then SIGKILL to anything else below the runner.
fn stop_all(processes: &mut [Process], printer: &SharedPrinter) {
    for p in processes.iter_mut() {
        p.reap();
        if p.running() {
            p.stop = Stop::Interrupted;
            p.signal(libc::SIGINT);
        }
    }
    wait_all(processes, GRACE);
    let stubborn: Vec<String> = processes
        .iter()
        .filter(|p| p.running())
        .map(|p| p.label.clone())
        .collect();
    if !stubborn.is_empty() {
        lock(printer).note(&format!(
            "{} still running {} s after SIGINT: SIGKILL",
            stubborn.join(", "),
            secs_text(GRACE)
        ));
        for p in processes.iter_mut().filter(|p| p.running()) {
            p.stop = Stop::Killed;
            p.signal(libc::SIGKILL);
        }
        wait_all(processes, Duration::from_secs(5));
    }
    // Whatever the parts started and left behind, in their group or not.
    let leftovers = containment::kill_descendants(Duration::from_secs(5));
    if leftovers > 0 {
        lock(printer).note(&format!(
            "killed {leftovers} process(es) that the parts had started and left running"
        ));
    }
}

/// "hwclient exited 0, hwserver stopped, 10 × syncsub exited 0".
fn summary(scenario: &Scenario, processes: &[Process]) -> String {
    let mut items = Vec::new();
    for (index, part) in scenario.parts.iter().enumerate() {
        let texts: Vec<(String, &str)> = processes
            .iter()
            .filter(|p| p.part == index)
            .map(|p| (p.status_text(), p.label.as_str()))
            .collect();
        if texts.len() > 1 && texts.iter().all(|(t, _)| *t == texts[0].0) {
            items.push(format!("{} × {} {}", texts.len(), part.name, texts[0].0));
        } else {
            items.extend(texts.iter().map(|(t, label)| format!("{label} {t}")));
        }
    }
    items.join(", ")
}

/// A fresh private working directory for a run, removed when dropped.
///
/// Its name is random (`zguide-<scenario>-<16 hex digits>` in the temporary
/// directory) and it is made with one `mkdir` of mode 0700, which fails if
/// anything exists at that path, a directory or a symlink someone planted:
/// then another name is drawn. So the parts never write into a directory
/// (or through a link) that someone else prepared, and nobody else can look
/// inside while they run.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(scenario: &str) -> std::io::Result<TempDir> {
        use rand::Rng;
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        for _ in 0..16 {
            let name = format!("zguide-{scenario}-{:016x}", rand::thread_rng().gen::<u64>());
            let path = base.join(name);
            match builder.create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("16 random names in {} were all taken", base.display()),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_private_random_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let a = TempDir::new("unit").unwrap();
        let b = TempDir::new("unit").unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }

    #[test]
    fn peers_count_once_their_handshake_and_subscription_are_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshaken = |peers| Connected {
            port,
            peers,
            subscribed: false,
        };
        let subscribed = |peers| Connected {
            port,
            peers,
            subscribed: true,
        };
        let wait_for = |wanted: Connected| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !peers_connected(wanted) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            peers_connected(wanted)
        };
        assert!(!peers_connected(handshaken(1)));
        let mut one = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut one_here, _) = listener.accept().unwrap();
        assert!(established_in_proc(port) >= 1);
        // Connected, but no handshake yet.
        assert!(!peers_connected(handshaken(1)));
        let mut buffer = [0u8; 200];
        one.write_all(&[0u8; HANDSHAKE_BYTES as usize]).unwrap();
        // Arrived but unread: the program has not seen it.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!peers_connected(handshaken(1)));
        one_here
            .read_exact(&mut buffer[..HANDSHAKE_BYTES as usize])
            .unwrap();
        assert!(wait_for(handshaken(1)));
        assert!(!peers_connected(subscribed(1)));
        one.write_all(&[1, 0, 1]).unwrap();
        one_here.read_exact(&mut buffer[..3]).unwrap();
        assert!(wait_for(subscribed(1)));
        assert!(!peers_connected(handshaken(2)));
        let mut two = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut two_here, _) = listener.accept().unwrap();
        two.write_all(&[0u8; 100]).unwrap();
        two_here.read_exact(&mut buffer[..100]).unwrap();
        assert!(wait_for(subscribed(2)));
    }

    #[test]
    fn long_about_texts_are_wrapped() {
        let lines = wrap("one two three four five six", 9);
        assert_eq!(lines, ["one two", "three", "four five", "six"]);
        assert!(wrap("  ", 10).is_empty());
    }
}
