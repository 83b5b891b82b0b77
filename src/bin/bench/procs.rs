//! Processes for the benchmarks: a private network namespace per run, and
//! programs started in it with captured output and a time limit.
//!
//! Every run gets a fresh namespace (`unshare -n`, or `unshare -rn` when not
//! root) holding only a loopback interface, so the fixed ports of the guide's
//! programs (Majordomo's tcp 5555) never meet anything else on the machine,
//! and one run's lingering sockets never meet the next run.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zguide::interrupt;

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

/// A network namespace kept alive by a small holder process.
pub struct Namespace {
    holder: Child,
    _holder_stdin: Option<ChildStdin>,
    root: bool,
}

impl Namespace {
    /// A fresh namespace with `lo` up, or an error saying why not.
    pub fn new() -> Result<Namespace, String> {
        let root = is_root();
        let mut holder = Command::new("unshare")
            .arg(if root { "-n" } else { "-rn" })
            .args([
                "sh",
                "-c",
                "ip link set lo up && echo ready && read _ignored",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let stdin = holder.stdin.take();
        let mut line = String::new();
        if let Some(out) = holder.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = holder.kill();
            let _ = holder.wait();
            return Err(format!("cannot create a network namespace: {}", err.trim()));
        }
        Ok(Namespace {
            holder,
            _holder_stdin: stdin,
            root,
        })
    }

    /// A command that runs `program args…` inside the namespace.
    pub fn command(&self, program: &Path, args: &[String]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.holder.id().to_string());
        if self.root {
            cmd.arg("-n");
        } else {
            cmd.args(["-U", "-n", "--preserve-credentials"]);
        }
        cmd.arg("--").arg(program).args(args);
        cmd
    }

    /// Starts `program args…` in the namespace with `env` set.
    pub fn start(
        &self,
        label: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Proc, String> {
        let mut cmd = self.command(program, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(label, cmd)
    }

    /// Waits until something listens on TCP `port` inside the namespace, by
    /// running this program's hidden probe mode there.
    pub fn wait_for_port(&self, port: u16, timeout: Duration) -> Result<(), String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let args = vec![
            "--internal-wait-port".to_string(),
            port.to_string(),
            timeout.as_millis().to_string(),
        ];
        let mut probe = Proc::spawn("probe", self.command(&me, &args))?;
        match probe.wait(timeout + Duration::from_secs(5))? {
            0 => Ok(()),
            _ => Err(format!(
                "nothing listened on port {port} within {timeout:?}"
            )),
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The hidden probe mode: exits 0 once 127.0.0.1:`port` accepts a TCP
/// connection, 1 after `timeout_ms`.
pub fn probe_port(port: &str, timeout_ms: &str) -> i32 {
    let (Ok(port), Ok(ms)) = (port.parse::<u16>(), timeout_ms.parse::<u64>()) else {
        return 2;
    };
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    1
}

/// A started program: its output is collected in the background, and its
/// exit is noticed the moment it happens (for wall-clock timing).
pub struct Proc {
    label: String,
    child: Child,
    started: Instant,
    output: mpsc::Receiver<(String, Instant)>,
    text: String,
    exited: Option<(i32, Instant)>,
}

impl Proc {
    pub fn spawn(label: &str, mut cmd: Command) -> Result<Proc, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    // Stamped as it is read, for timings taken from output.
                    if tx.send((line, Instant::now())).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Proc {
            label: label.to_string(),
            child,
            started,
            output: rx,
            text: String::new(),
            exited: None,
        })
    }

    /// Takes every line until the program's output closes (both readers at
    /// end of file), waiting at most `limit`: once a program has exited, its
    /// last lines may still be on their way through the reader threads (a
    /// fixed 5 ms nap lost the clone load's only line on a loaded machine).
    fn drain_output(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok((line, _)) => {
                    self.text.push_str(&line);
                    self.text.push('\n');
                }
                Err(_) => return, // closed, or the limit passed
            }
        }
    }

    /// Everything printed so far (stdout and stderr lines).
    pub fn output(&mut self) -> &str {
        while let Ok((line, _)) = self.output.try_recv() {
            self.text.push_str(&line);
            self.text.push('\n');
        }
        &self.text
    }

    /// The next line printed (stdout or stderr) with the moment it was read,
    /// waiting until `deadline`; `None` when the deadline passed first or
    /// the program closed its output. Lines already taken by
    /// [`Proc::output`] are not seen again.
    pub fn next_line(&mut self, deadline: Instant) -> Result<Option<(String, Instant)>, String> {
        loop {
            if interrupt::interrupted() {
                return Err("interrupted".to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self
                .output
                .recv_timeout(left.min(Duration::from_millis(50)))
            {
                Ok((line, at)) => {
                    self.text.push_str(&line);
                    self.text.push('\n');
                    return Ok(Some((line, at)));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    /// Waits until `deadline` for a line containing `needle`; returns it and
    /// when it was read, or an error naming what was awaited.
    pub fn wait_for_line(
        &mut self,
        needle: &str,
        deadline: Instant,
    ) -> Result<(String, Instant), String> {
        while let Some((line, at)) = self.next_line(deadline)? {
            if line.contains(needle) {
                return Ok((line, at));
            }
        }
        Err(format!(
            "{} never printed {needle:?}; it printed: {}",
            self.label,
            last_lines(&self.text, 3)
        ))
    }

    /// SIGKILL now; returns the moment the signal was sent.
    pub fn kill(&mut self) -> Instant {
        let at = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = Some((-1, Instant::now()));
        at
    }

    /// Waits for the exit and returns the exit code (-1 if a signal ended it).
    /// Fails after `timeout` (the process is then killed) or on Ctrl-C.
    pub fn wait(&mut self, timeout: Duration) -> Result<i32, String> {
        let deadline = self.started + timeout;
        loop {
            if let Some((code, _)) = self.exited {
                return Ok(code);
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some((status.code().unwrap_or(-1), Instant::now()));
                    self.drain_output(Duration::from_secs(5));
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("{}: {e}", self.label)),
            }
            if interrupt::interrupted() {
                return Err("interrupted".to_string());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let printed = last_lines(self.output(), 3);
                return Err(format!(
                    "{} did not finish within {timeout:?} (killed); it printed: {printed}",
                    self.label
                ));
            }
            // Short naps keep the exit time accurate to about 0.2 ms without
            // taking a core from the programs being measured.
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Seconds from start to exit (after a successful [`Proc::wait`]).
    pub fn wall_secs(&self) -> Option<f64> {
        self.exited
            .map(|(_, at)| at.duration_since(self.started).as_secs_f64())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Where a program of ours or of the reference lives.
pub fn find_program(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = dir.join(name);
    path.is_file().then_some(path)
}
