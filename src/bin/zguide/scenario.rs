//! Scenario files: what `zguide run <name>` starts, and when it is done.
//!
//! One TOML file per guide section, `zguide/scenarios/<name>.toml`, read with
//! serde. The file format is documented for learners in `zguide/README.md`;
//! this module turns a file into a checked [`Scenario`], so that every mistake
//! (a typo in a key, an `until_exit` that names no part, a NUL byte in an
//! argument, a program that is not built) is reported before any process
//! starts.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Seconds a scenario may run when its file sets no `timeout`.
pub const DEFAULT_TIMEOUT_SECS: f64 = 60.0;
/// Most copies of one part a file may ask for (`instances`).
pub const MAX_INSTANCES: u32 = 100;

/// A checked scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file name without `.toml`: what `zguide run` takes.
    pub name: String,
    pub title: String,
    pub section: String,
    pub about: String,
    /// After this the runner stops everything and the run fails.
    pub timeout: Duration,
    /// The run succeeds once every instance of these parts exited with 0.
    pub until_exit: Vec<String>,
    /// Or: the run succeeds after this long (programs that run forever).
    pub duration: Option<Duration>,
    pub parts: Vec<Part>,
    /// Extra normalisation rules for `zguide compare` (the `[compare]` table).
    pub compare: CompareRules,
}

/// A scenario's `[compare]` table: rules `zguide compare` applies to every
/// line before the default ones (see [`crate::normalise`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareRules {
    /// Lines matching one of these regexes are left out of the comparison.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Each `pattern` (a regex) is replaced by `with` (`$1` for a group).
    #[serde(default)]
    pub replace: Vec<Replace>,
}

/// One `replace` rule of a `[compare]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    pub pattern: String,
    pub with: String,
}

/// One program of a scenario, started `instances` times.
#[derive(Clone, Debug)]
pub struct Part {
    pub name: String,
    /// As written in the file (default: the part's name); see [`resolve_program`].
    pub program: String,
    pub args: Vec<String>,
    pub instances: u32,
    /// Pause between starting the previous part and this one.
    pub start_after: Duration,
    /// Text written to the part's stdin (which is then closed) …
    pub stdin: Option<String>,
    /// … once the part printed a line containing this (else right away) …
    pub stdin_when: Option<String>,
    /// … and once this many TCP peers are connected to this local port.
    pub stdin_when_connected: Option<Connected>,
    pub env: Vec<(String, String)>,
    /// When false (the default), the part exiting by itself with a non-zero
    /// code, or killed by a signal nobody sent, fails the run.
    pub allow_failure: bool,
    /// Fault injection for demos: SIGKILL the part this long after it
    /// started (a crash for the others to survive, as in failover patterns).
    pub kill_after: Option<Duration>,
}

/// `stdin_when_connected = { port = 5557, peers = 3 }`: the state a part's
/// peers are in once they are ready, as the kernel sees it. A peer counts
/// once its connection to the local `port` is established and has brought
/// the ZeroMQ greeting and READY command (at least 91 bytes), all read by the
/// program; with `subscribed = true`, a SUB's subscription as well (at
/// least 94 bytes: a PUB drops what it sends before that).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connected {
    pub port: u16,
    pub peers: u32,
    #[serde(default)]
    pub subscribed: bool,
}

impl Part {
    /// The labels of the part's processes: `name`, or `name-1` … `name-N`.
    pub fn labels(&self) -> Vec<String> {
        if self.instances == 1 {
            vec![self.name.clone()]
        } else {
            (1..=self.instances)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        }
    }
}

impl Scenario {
    /// The section number (`§12 …` → 12), used to list scenarios in guide order.
    pub fn section_number(&self) -> u32 {
        let digits: String = self
            .section
            .trim_start_matches('§')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap_or(u32::MAX)
    }

    /// The part called `name`, if any.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// One line saying when the run ends, for the header.
    pub fn end_condition(&self) -> String {
        if let Some(d) = self.duration {
            return format!("runs for {} s", secs_text(d));
        }
        let names: Vec<String> = self
            .until_exit
            .iter()
            .map(|name| match self.part(name).map_or(1, |p| p.instances) {
                1 => name.clone(),
                n => format!("all {n} {name}"),
            })
            .collect();
        let verb = if names.len() == 1 && !names[0].starts_with("all ") {
            "exits"
        } else {
            "exit"
        };
        format!(
            "ends when {} {verb} (timeout {} s)",
            names.join(" and "),
            secs_text(self.timeout)
        )
    }
}

/// `4` or `2.5`, for messages.
pub fn secs_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// What went wrong with a scenario or tour file; says which file.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for FileError {}

// ---- the file as written -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    title: String,
    section: String,
    #[serde(default)]
    about: String,
    timeout: Option<f64>,
    #[serde(default)]
    until_exit: Vec<String>,
    #[serde(default)]
    duration: f64,
    #[serde(rename = "part", default)]
    parts: Vec<PartFile>,
    #[serde(default)]
    compare: CompareRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartFile {
    name: String,
    program: Option<String>,
    #[serde(default)]
    args: Vec<Scalar>,
    #[serde(default = "one")]
    instances: u32,
    #[serde(default)]
    start_after_ms: u64,
    stdin: Option<String>,
    stdin_when: Option<String>,
    stdin_when_connected: Option<Connected>,
    /// Removed (it was a fixed sleep standing in for synchronisation);
    /// read only to say what replaces it.
    stdin_after_ms: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, Scalar>,
    /// Accepted for older files and ignored: all parts share one directory.
    #[serde(default)]
    #[allow(dead_code)]
    cwd_temp: bool,
    #[serde(default)]
    allow_failure: bool,
    kill_after_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

/// `args = ["1", 2]` and `env = { N = 1000 }`: numbers and booleans are
/// accepted where a string is meant, since TOML makes them easy to write.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// An environment variable name: not empty, no `=`, no NUL.
pub fn valid_env_key(key: &str) -> bool {
    !key.is_empty() && !key.contains('=') && !key.contains('\0')
}

/// A part or scenario name: what goes between the label's brackets.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn seconds(value: f64, key: &str) -> Result<Duration, String> {
    if value.is_finite() && (0.0..=86_400.0).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("`{key}` must be between 0 and 86400 seconds"))
    }
}

/// Parses and checks the text of a scenario file named `name`.
pub fn parse_scenario(name: &str, path: &Path, text: &str) -> Result<Scenario, FileError> {
    let error = |message: String| FileError {
        path: path.to_path_buf(),
        message,
    };
    if !valid_name(name) {
        return Err(error(format!(
            "the file name {name:?} is not a valid scenario name (letters, digits, - _ .)"
        )));
    }
    let file: ScenarioFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
    let timeout =
        seconds(file.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS), "timeout").map_err(error)?;
    let duration = seconds(file.duration, "duration").map_err(error)?;
    if timeout.is_zero() {
        return Err(error("`timeout` must be more than 0".into()));
    }
    let duration = (!duration.is_zero()).then_some(duration);
    if file.parts.is_empty() {
        return Err(error(
            "no [[part]]: a scenario starts at least one program".into(),
        ));
    }

    let mut parts: Vec<Part> = Vec::new();
    for p in file.parts {
        let name = p.name;
        let in_part = |message: String| error(format!("part {name:?}: {message}"));
        if !valid_name(&name) {
            return Err(in_part(
                "a part name is letters, digits, - _ . (at most 40)".into(),
            ));
        }
        if parts.iter().any(|q| q.name == name) {
            return Err(in_part("two parts have this name".into()));
        }
        if p.instances == 0 || p.instances > MAX_INSTANCES {
            return Err(in_part(format!("`instances` must be 1 to {MAX_INSTANCES}")));
        }
        if p.stdin_when.is_some() && p.stdin.is_none() {
            return Err(in_part("`stdin_when` without `stdin`".into()));
        }
        if p.stdin_after_ms.is_some() {
            return Err(in_part(
                "`stdin_after_ms` was removed (a fixed delay is no synchronisation): \
                 use `stdin_when` for the part's prompt and `stdin_when_connected` for its peers"
                    .into(),
            ));
        }
        if p.stdin_when_connected.is_some() && p.stdin.is_none() {
            return Err(in_part("`stdin_when_connected` without `stdin`".into()));
        }
        if p.stdin_when_connected
            .is_some_and(|c| c.port == 0 || c.peers == 0)
        {
            return Err(in_part(
                "`stdin_when_connected` needs a port and at least one peer".into(),
            ));
        }
        if p.stdin_when.as_deref() == Some("") {
            return Err(in_part("`stdin_when` is empty".into()));
        }
        if p.start_after_ms > 600_000 || p.kill_after_ms.is_some_and(|ms| ms > 600_000) {
            return Err(in_part("a delay of more than 10 minutes".into()));
        }
        let program = p.program.unwrap_or_else(|| name.clone());
        if program.is_empty() {
            return Err(in_part("`program` is empty".into()));
        }
        for key in p.env.keys() {
            if !valid_env_key(key) {
                return Err(in_part(format!("bad environment variable name {key:?}")));
            }
        }
        let args: Vec<String> = p.args.into_iter().map(Scalar::into_string).collect();
        let env: Vec<(String, String)> = p
            .env
            .into_iter()
            .map(|(k, v)| (k, v.into_string()))
            .collect();
        // A NUL cannot be passed to a program: say so now, not when the part
        // is due to start and others already run.
        let texts = std::iter::once(("`program`", &program))
            .chain(args.iter().map(|a| ("an argument", a)))
            .chain(env.iter().map(|(_, v)| ("an `env` value", v)));
        for (what, text) in texts {
            if text.contains('\0') {
                return Err(in_part(format!("{what} holds a NUL byte: {text:?}")));
            }
        }
        parts.push(Part {
            program,
            args,
            instances: p.instances,
            start_after: Duration::from_millis(p.start_after_ms),
            stdin: p.stdin,
            stdin_when: p.stdin_when,
            stdin_when_connected: p.stdin_when_connected,
            env,
            allow_failure: p.allow_failure,
            kill_after: p.kill_after_ms.map(Duration::from_millis),
            name,
        });
    }

    for name in &file.until_exit {
        if !parts.iter().any(|p| &p.name == name) {
            return Err(error(format!(
                "`until_exit` names {name:?}, which is not a part"
            )));
        }
    }
    match (file.until_exit.is_empty(), duration) {
        (true, None) => {
            return Err(error(
                "the scenario never ends: set `until_exit` or a `duration`".into(),
            ))
        }
        (false, Some(_)) => {
            return Err(error(
                "set either `until_exit` or a `duration`, not both".into(),
            ))
        }
        (true, Some(d)) if d >= timeout => {
            return Err(error(format!(
                "`duration` ({} s) must be shorter than `timeout` ({} s)",
                secs_text(d),
                secs_text(timeout)
            )))
        }
        _ => {}
    }

    crate::normalise::Normaliser::new(&file.compare)
        .map_err(|e| error(format!("[compare]: {e}")))?;

    Ok(Scenario {
        compare: file.compare,
        name: name.to_string(),
        title: file.title,
        section: file.section,
        about: file.about.trim().to_string(),
        timeout,
        until_exit: file.until_exit,
        duration,
        parts,
    })
}

/// Reads `<dir>/<name>.toml`.
pub fn load_scenario(dir: &Path, name: &str) -> Result<Scenario, FileError> {
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| FileError {
        path: path.clone(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            format!("no scenario named {name:?} (`zguide list` shows them)")
        } else {
            e.to_string()
        },
    })?;
    parse_scenario(name, &path, &text)
}

/// Every `*.toml` in `dir`, parsed, in guide order (section number, then
/// name); files that do not parse come back as errors beside them.
pub fn load_all(dir: &Path) -> Result<(Vec<Scenario>, Vec<FileError>), FileError> {
    let entries = std::fs::read_dir(dir).map_err(|e| FileError {
        path: dir.to_path_buf(),
        message: format!("cannot read the scenario directory: {e}"),
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file_name = e.file_name().into_string().ok()?;
            file_name.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match load_scenario(dir, &name) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(e),
        }
    }
    scenarios.sort_by(|a, b| (a.section_number(), &a.name).cmp(&(b.section_number(), &b.name)));
    Ok((scenarios, errors))
}

// ---- the tour ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TourFile {
    #[serde(default)]
    about: String,
    scenarios: Vec<String>,
}

/// The default tour: scenario names, run one after another.
#[derive(Clone, Debug)]
pub struct Tour {
    pub path: PathBuf,
    pub about: String,
    pub scenarios: Vec<String>,
}

/// The tour file belongs beside the scenario directory: `zguide/tour.toml`
/// for `zguide/scenarios/`.
pub fn tour_path(scenario_dir: &Path) -> PathBuf {
    scenario_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("tour.toml")
}

/// Reads the tour that goes with `scenario_dir`.
pub fn load_tour(scenario_dir: &Path) -> Result<Tour, FileError> {
    let path = tour_path(scenario_dir);
    let error = |message: String| FileError {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| error(e.to_string()))?;
    let file: TourFile = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
    if file.scenarios.is_empty() {
        return Err(error("the tour lists no scenarios".into()));
    }
    Ok(Tour {
        path,
        about: file.about.trim().to_string(),
        scenarios: file.scenarios,
    })
}

// ---- finding programs ----------------------------------------------------

/// Where a part's program is: a path with a `/` is used as it is (relative to
/// the directory `zguide` was started in); a bare name is looked up first in
/// `exe_dir` (the runner's own directory, where cargo puts every binary of the
/// crate), then on `PATH`.
pub fn resolve_program(program: &str, exe_dir: Option<&Path>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot find the current directory: {e}"))?
                .join(path)
        };
        return if is_executable(&path) {
            Ok(path)
        } else if path.exists() {
            Err(format!("{} is not an executable file", path.display()))
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let on_path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = exe_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&on_path));
    for dir in candidates {
        let path = dir.join(program);
        if is_executable(&path) {
            return Ok(path);
        }
    }
    Err(match exe_dir {
        Some(dir) => format!(
            "program {program:?} is neither in {} nor on PATH (is it built? `cargo build --release` builds every example)",
            dir.display()
        ),
        None => format!("program {program:?} is not on PATH"),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, FileError> {
        parse_scenario("test", Path::new("test.toml"), text)
    }

    const HELLO: &str = r#"
title = "Hello World"
section = "§1 Ask and Ye Shall Receive"
about = "REQ and REP."
timeout = 60
until_exit = ["syncsub"]
duration = 0

[[part]]
name = "hwserver"
args = []

[[part]]
name = "syncsub"
program = "hwclient"
instances = 3
start_after_ms = 200
stdin = "\n"
stdin_when = "Press Enter"
stdin_when_connected = { port = 5557, peers = 2 }
env = { ZGUIDE_REQUESTS = 1000, NAME = "x" }
cwd_temp = false

[compare]
ignore = ["^D: "]
replace = [{ pattern = "worker \\d+", with = "worker N" }]
"#;

    #[test]
    fn the_documented_format_parses() {
        let s = parse(HELLO).unwrap();
        assert_eq!(s.title, "Hello World");
        assert_eq!(s.section_number(), 1);
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.duration, None);
        assert_eq!(s.parts[0].program, "hwserver");
        let sub = &s.parts[1];
        assert_eq!(sub.program, "hwclient");
        assert_eq!(sub.labels(), ["syncsub-1", "syncsub-2", "syncsub-3"]);
        assert_eq!(
            s.end_condition(),
            "ends when all 3 syncsub exit (timeout 60 s)"
        );
        assert_eq!(sub.start_after, Duration::from_millis(200));
        assert_eq!(sub.stdin.as_deref(), Some("\n"));
        assert_eq!(
            sub.stdin_when_connected,
            Some(Connected {
                port: 5557,
                peers: 2,
                subscribed: false
            })
        );
        assert_eq!(s.compare.ignore, ["^D: "]);
        assert_eq!(s.compare.replace[0].pattern, "worker \\d+");
        assert!(sub
            .env
            .contains(&("ZGUIDE_REQUESTS".to_string(), "1000".to_string())));
    }

    #[test]
    fn mistakes_are_reported_with_what_is_wrong() {
        let cases = [
            (HELLO.replace("title =", "titel ="), "unknown field"),
            (HELLO.replace("[\"syncsub\"]", "[\"nobody\"]"), "not a part"),
            (HELLO.replace("[\"syncsub\"]", "[]"), "never ends"),
            (HELLO.replace("duration = 0", "duration = 5"), "not both"),
            (HELLO.replace("instances = 3", "instances = 0"), "instances"),
            (HELLO.replace("stdin = \"\\n\"", ""), "without `stdin`"),
            (
                HELLO.replace("name = \"syncsub\"", "name = \"hwserver\""),
                "two parts",
            ),
            (
                HELLO.replace("name = \"syncsub\"", "name = \"a b\""),
                "part name",
            ),
            (HELLO.replace("timeout = 60", "timeout = -1"), "timeout"),
            (HELLO.replace("args = []", "args = [\"a\\u0000b\"]"), "NUL"),
            (HELLO.replace("NAME = \"x\"", "NAME = \"\\u0000\""), "NUL"),
            (
                HELLO.replace(
                    "name = \"hwserver\"",
                    "name = \"hwserver\"\nprogram = \"a\\u0000\"",
                ),
                "NUL",
            ),
            (
                HELLO.replace("cwd_temp = false", "stdin_after_ms = 1000"),
                "removed",
            ),
            (HELLO.replace("peers = 2", "peers = 0"), "at least one peer"),
            (HELLO.replace("\"^D: \"", "\"(\""), "bad regex"),
            (HELLO.replace("ignore =", "ignroe ="), "unknown field"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
        let err = parse("title='t'\nsection='s'\nuntil_exit=[]\nduration=70\n[[part]]\nname='a'\n")
            .unwrap_err();
        assert!(err.to_string().contains("shorter than"), "{err}");
    }

    #[test]
    fn duration_scenarios_end_by_time() {
        let s =
            parse("title='t'\nsection='§14 x'\nduration=4\n[[part]]\nname='psenvpub'\n").unwrap();
        assert_eq!(s.duration, Some(Duration::from_secs(4)));
        assert_eq!(s.end_condition(), "runs for 4 s");
        assert_eq!(s.section_number(), 14);
    }

    #[test]
    fn programs_are_found_beside_the_runner_then_on_path() {
        let found = resolve_program("sh", Some(Path::new("/nonexistent"))).unwrap();
        assert!(found.ends_with("sh"), "{found:?}");
        let err = resolve_program("no-such-program-zguide", Some(Path::new("/tmp"))).unwrap_err();
        assert!(err.contains("neither in /tmp nor on PATH"), "{err}");
        assert!(resolve_program("/bin/sh", None).is_ok());
        assert!(resolve_program("./no/such/file", None)
            .unwrap_err()
            .contains("does not exist"));
    }
}
