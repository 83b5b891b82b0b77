//! `zguide`: runs the guide's examples side by side, each line labelled with
//! the program that printed it. Not a guide program: an application built on
//! the same crate, in its own folder because it has several modules.
//!
//! The guide's examples come in sets: a server and a client, a ventilator,
//! workers and a sink, a broker with clients and workers. The book asks you to
//! open a terminal per program; `zguide run <scenario>` starts them all in
//! one, each line labelled with the program that printed it, and stops them
//! all when the scenario is over or you press Ctrl-C.
//!
//! * [`scenario`]: the scenario files (`zguide/scenarios/*.toml`) and the
//!   tour (`zguide/tour.toml`), parsed and checked;
//! * [`supervisor`]: starting, feeding, watching and stopping the processes,
//!   in a private working directory;
//! * [`containment`]: making sure nothing a part started outlives the run;
//! * [`output`]: the labelled, optionally coloured output;
//! * [`compare`]: `zguide compare`, ours against a reference build, with
//!   [`normalise`] (what is compared) and [`report`] (text, JSON, HTML).
//!
//! This file is the command line: `list`, `check`, `run`, `compare`, `help`. Exit codes:
//! 0 success, 1 the end condition did not hold, 2 bad usage or scenario, 130
//! interrupted. The file format and the commands are described for learners
//! in `zguide/README.md`.

mod compare;
mod containment;
mod normalise;
mod output;
mod report;
mod scenario;
mod supervisor;
mod tcp_diag;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use zguide::interrupt;

use output::Printer;
use scenario::{load_all, load_scenario, load_tour, resolve_program, Scenario};
use supervisor::{header, Outcome, Plan, TempDir};

/// `println!` that ignores a closed stdout (`zguide list | head`) instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit code: bad usage or scenario.
const EXIT_USAGE: i32 = 2;

const USAGE: &str = "\
zguide: run the ZeroMQ guide's examples side by side

Usage:
  zguide list                          list the scenarios (one per guide section)
  zguide check                         check every scenario file, the tour, and
                                       that each part's program is there
  zguide run [OPTIONS] [SCENARIO]...   run scenarios one after another;
                                       without a SCENARIO, run the short tour
  zguide compare [OPTIONS] SCENARIO... --reference DIR
                                       run scenarios with our programs and with
                                       DIR's (e.g. your C build), compare what
                                       each part prints
  zguide help [COMMAND]                show this text, or a command's

Options:
  --scenarios DIR   read scenarios from DIR (default: $ZGUIDE_SCENARIOS, else
                    the crate's zguide/scenarios, else ./zguide/scenarios)
  -h, --help        show help
  -V, --version     show the version

Examples:
  zguide run hello
  zguide run hello --use hwserver=./my-c-build/hwserver
  zguide compare hello identity --reference ./my-c-build --mix

Exit codes: 0 success, 1 a scenario's end condition did not hold (timeout, a
part failed), 2 bad usage or scenario file, 130 interrupted (Ctrl-C).
";

const RUN_USAGE: &str = "\
zguide run: start a scenario's programs side by side, labelled

Usage:
  zguide run [OPTIONS] [SCENARIO]...

Every part of the scenario is started in one working directory; each line it
prints is shown as `[part] line` (stderr as `[part:err]` when not coloured).
The run ends when the scenario's `until_exit` parts have exited, or after its
`duration`; then the other parts get SIGINT and, 2 s later, SIGKILL, and so
does anything they started. Ctrl-C stops everything the same way. Every
scenario named is checked before anything starts. Without a SCENARIO the tour in tour.toml (next
to the scenario directory) runs, one scenario after another.

Options:
  --use PART=PROGRAM  run PROGRAM instead of the part's own program, e.g. your
                      C or C++ build of the same example (repeatable). A
                      PROGRAM with a `/` is a path; a bare name is looked up
                      beside zguide, then on PATH.
  --env KEY=VALUE     set an environment variable for every part, over the
                      scenario's own `env` (repeatable), e.g. a workload knob:
                      --env ZGUIDE_REQUESTS=1000
  --dir DIR           working directory of the parts (created if missing, kept);
                      default: a fresh private temporary directory (mode 0700,
                      random name), removed afterwards
  --scenarios DIR     read scenarios from DIR
  -h, --help          show this help

Exit codes: 0 success, 1 an end condition did not hold (timeout, a part
exited with an error), 2 bad usage, scenario or missing program, 130 Ctrl-C.
";

const COMPARE_USAGE: &str = "\
zguide compare: our programs against a reference build of the same examples

Usage:
  zguide compare [OPTIONS] SCENARIO... --reference DIR
  zguide compare [OPTIONS] --all --reference DIR

Runs each scenario with our programs, then with every part's program replaced
by DIR's program of the same file name (parts whose program DIR lacks stay
ours; the report says so), and compares what each part printed on stdout,
line by line in order, after normalising clocks, dates, ids, UUIDs, pids and
timings (a scenario's [compare] table adds `ignore` and `replace` rules).
How the parts' lines interleave is not compared, nor stderr. The runs are
otherwise those of `zguide run`, one after another, output captured.

Verdicts: same; differs (the part and its first differing line); failed (our
run or the reference run did not reach its end condition: which side, why);
interop failed (a run mixing both builds did not: which parts were theirs).

Options:
  --reference DIR   the reference programs, e.g. the C examples you built
                    (required)
  --mix             also run each of DIR's programs alone among ours (one run
                    per program), to see that the two builds talk
  --all             every scenario with at least one of DIR's programs
  --json            print the report as JSON instead of text
  --html FILE       also write the report as one self-contained HTML page
  --no-stdbuf       run DIR's programs as they are; by default they run under
                    `stdbuf -oL` (when on PATH), so that a C program's stdout
                    is line-buffered as on a terminal: on a pipe C stdio holds
                    it in a buffer that a program stopped by Ctrl-C never writes
  --env KEY=VALUE   set an environment variable for every part (repeatable)
  --scenarios DIR   read scenarios from DIR
  -h, --help        show this help

Progress (one line per run) goes to stderr. Exit codes: 0 every scenario the
same, 1 something differed or failed, 2 bad usage, scenario or missing
program, 130 Ctrl-C.
";

const CHECK_USAGE: &str = "\
zguide check: check every scenario file and the tour

Usage:
  zguide check [--scenarios DIR]

Reads every scenario file and the tour as `zguide run` would, finds each
part's program, and prints one line per scenario: `ok NAME: part=program …`,
or what is wrong. Exit code 0 when all are fine, 2 otherwise.
";

const LIST_USAGE: &str = "\
zguide list: list the scenarios, in guide order

Usage:
  zguide list [--scenarios DIR]

Shows each scenario's name (what `zguide run` takes), guide section and title,
and which scenarios the tour (`zguide run` alone) runs.
";

#[derive(Debug, Default, PartialEq)]
struct Cli {
    command: Option<String>,
    names: Vec<String>,
    scenarios: Option<PathBuf>,
    swaps: Vec<(String, String)>,
    envs: Vec<(String, String)>,
    dir: Option<PathBuf>,
    reference: Option<PathBuf>,
    mix: bool,
    all: bool,
    json: bool,
    html: Option<PathBuf>,
    no_stdbuf: bool,
    help: bool,
    version: bool,
}

fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli::default();
    let mut rest = args.iter();
    let mut options_done = false;
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone().or_else(|| rest.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{name} needs a value")),
            }
        };
        match flag {
            _ if options_done || !flag.starts_with('-') || flag == "-" => {
                if cli.command.is_none() {
                    cli.command = Some(arg.clone());
                } else {
                    cli.names.push(arg.clone());
                }
            }
            "--" => options_done = true,
            "-h" | "--help" => cli.help = true,
            "-V" | "--version" => cli.version = true,
            "--scenarios" => cli.scenarios = Some(value("--scenarios")?.into()),
            "--dir" => cli.dir = Some(value("--dir")?.into()),
            "--reference" => cli.reference = Some(value("--reference")?.into()),
            "--html" => cli.html = Some(value("--html")?.into()),
            "--mix" => cli.mix = true,
            "--all" => cli.all = true,
            "--json" => cli.json = true,
            "--no-stdbuf" => cli.no_stdbuf = true,
            "--env" => {
                let setting = value("--env")?;
                match setting.split_once('=') {
                    Some((key, value)) if scenario::valid_env_key(key) => {
                        cli.envs.push((key.to_string(), value.to_string()))
                    }
                    _ => return Err(format!("--env takes KEY=VALUE, not {setting:?}")),
                }
            }
            "--use" => {
                let swap = value("--use")?;
                match swap.split_once('=') {
                    Some((part, program)) if !part.is_empty() && !program.is_empty() => {
                        cli.swaps.push((part.to_string(), program.to_string()))
                    }
                    _ => return Err(format!("--use takes PART=PROGRAM, not {swap:?}")),
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(cli)
}

impl Cli {
    /// The options only `compare` takes.
    fn has_compare_options(&self) -> bool {
        self.reference.is_some()
            || self.mix
            || self.all
            || self.json
            || self.html.is_some()
            || self.no_stdbuf
    }
}

fn main() -> ExitCode {
    // Before any thread exists: the inner runner (see `containment`) is told
    // so by its environment, which it clears for the parts.
    let inner = containment::is_inner_runner();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = command_line(&args, inner);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs the `zguide` command line; returns the process exit code. `inner`:
/// this process is the inner runner that does the work of `zguide run`.
fn command_line(args: &[String], inner: bool) -> i32 {
    let cli = match parse_args(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    if cli.version {
        outln!("zguide {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    match cli.command.as_deref() {
        None if cli.help => print_help(USAGE),
        None => {
            eprint!("{USAGE}");
            EXIT_USAGE
        }
        Some("help") => match cli.names.first().map(String::as_str) {
            None => print_help(USAGE),
            Some("run") => print_help(RUN_USAGE),
            Some("list") => print_help(LIST_USAGE),
            Some("check") => print_help(CHECK_USAGE),
            Some("compare") => print_help(COMPARE_USAGE),
            Some(other) => usage_error(&format!("no command {other:?}")),
        },
        Some("list") if cli.help => print_help(LIST_USAGE),
        Some("check") if cli.help => print_help(CHECK_USAGE),
        Some("run") if cli.help => print_help(RUN_USAGE),
        Some("compare") if cli.help => print_help(COMPARE_USAGE),
        Some(command @ ("list" | "check")) => {
            if !cli.names.is_empty()
                || !cli.swaps.is_empty()
                || !cli.envs.is_empty()
                || cli.dir.is_some()
                || cli.has_compare_options()
            {
                return usage_error(&format!("`zguide {command}` takes only --scenarios"));
            }
            let dir = scenario_dir(cli.scenarios);
            if command == "list" {
                list(&dir)
            } else {
                check(&dir)
            }
        }
        // The work is done by a second copy of zguide, so that a SIGKILLed
        // runner still stops everything: see `containment`.
        Some("run") if cli.has_compare_options() => usage_error(
            "--reference, --mix, --all, --json and --html are options of `zguide compare`",
        ),
        Some("compare") => match compare_usage(&cli) {
            Err(e) => usage_error(&e),
            Ok(()) if !inner => containment::run_outer(),
            Ok(()) => compare(cli),
        },
        Some("run") if !inner => containment::run_outer(),
        Some("run") => run(&cli),
        Some(other) => usage_error(&format!("no command {other:?}")),
    }
}

fn print_help(text: &str) -> i32 {
    let _ = write!(std::io::stdout(), "{text}");
    0
}

fn usage_error(message: &str) -> i32 {
    eprintln!("zguide: {message}\n(`zguide --help` shows the usage)");
    EXIT_USAGE
}

fn error(message: &str) -> i32 {
    eprintln!("zguide: {message}");
    EXIT_USAGE
}

/// `--scenarios`, else `$ZGUIDE_SCENARIOS`, else the crate's own
/// `zguide/scenarios` (found at build time), else `./zguide/scenarios`.
fn scenario_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    if let Some(dir) = std::env::var_os("ZGUIDE_SCENARIOS").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("zguide/scenarios");
    if built_in.is_dir() {
        built_in
    } else {
        PathBuf::from("zguide/scenarios")
    }
}

fn list(dir: &Path) -> i32 {
    let (scenarios, errors) = match load_all(dir) {
        Ok(found) => found,
        Err(e) => return error(&e.to_string()),
    };
    let width = |f: fn(&Scenario) -> &str, title: &str| {
        scenarios
            .iter()
            .map(|s| f(s).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let name_width = width(|s| &s.name, "NAME");
    let section_width = width(|s| &s.section, "SECTION");
    let row = |name: &str, section: &str, title: &str| {
        let pad = |text: &str, w: usize| {
            format!(
                "{text}{}",
                " ".repeat(w.saturating_sub(text.chars().count()))
            )
        };
        outln!(
            "{}  {}  {title}",
            pad(name, name_width),
            pad(section, section_width)
        );
    };
    row("NAME", "SECTION", "TITLE");
    for s in &scenarios {
        row(&s.name, &s.section, &s.title);
    }
    if let Ok(tour) = load_tour(dir) {
        outln!(
            "\nThe tour (`zguide run` alone): {}",
            tour.scenarios.join(", ")
        );
    }
    for e in &errors {
        eprintln!("zguide: {e}");
    }
    if errors.is_empty() {
        0
    } else {
        EXIT_USAGE
    }
}

/// Where the running `zguide` is: cargo puts every binary of the crate there.
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// `zguide check`: every scenario file parses, every part's program is
/// found, and the tour names only scenarios that exist.
fn check(dir: &Path) -> i32 {
    let (scenarios, mut problems) = match load_all(dir) {
        Ok((scenarios, errors)) => (
            scenarios,
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ),
        Err(e) => return error(&e.to_string()),
    };
    let exe_dir = exe_dir();
    for s in &scenarios {
        let mut found = Vec::new();
        for part in &s.parts {
            match resolve_program(&part.program, exe_dir.as_deref()) {
                Ok(path) => found.push(format!("{}={}", part.name, path.display())),
                Err(e) => problems.push(format!("{}: part {}: {e}", s.name, part.name)),
            }
        }
        if found.len() == s.parts.len() {
            outln!("ok {}: {}", s.name, found.join(" "));
        }
    }
    match load_tour(dir) {
        Ok(tour) => {
            for name in &tour.scenarios {
                if !scenarios.iter().any(|s| &s.name == name) {
                    problems.push(format!(
                        "{}: the tour names {name:?}, which is not a valid scenario",
                        tour.path.display()
                    ));
                }
            }
            if problems.is_empty() {
                outln!("ok the tour: {}", tour.scenarios.join(", "));
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    for problem in &problems {
        eprintln!("zguide: {problem}");
    }
    if problems.is_empty() {
        outln!("{} scenarios and the tour are fine", scenarios.len());
        0
    } else {
        eprintln!("zguide: {} problems", problems.len());
        EXIT_USAGE
    }
}

/// What `zguide compare` needs and refuses, checked before anything starts.
fn compare_usage(cli: &Cli) -> Result<(), String> {
    if cli.reference.is_none() {
        return Err("`zguide compare` needs --reference DIR".into());
    }
    if !cli.swaps.is_empty() || cli.dir.is_some() {
        return Err("`zguide compare` takes no --use or --dir".into());
    }
    match (cli.all, cli.names.is_empty()) {
        (true, false) => Err("give scenarios or --all, not both".into()),
        (false, true) => Err("`zguide compare` needs a SCENARIO or --all".into()),
        _ => Ok(()),
    }
}

fn compare(cli: Cli) -> i32 {
    let request = compare::Request {
        scenario_dir: scenario_dir(cli.scenarios.clone()),
        names: &cli.names,
        all: cli.all,
        reference: cli.reference.clone().unwrap_or_default(),
        mix: cli.mix,
        json: cli.json,
        html: cli.html.clone(),
        envs: &cli.envs,
        stdbuf: !cli.no_stdbuf,
    };
    match compare::compare(request, exe_dir().as_deref()) {
        Ok(code) => code,
        Err(e) => error(&e),
    }
}

fn run(cli: &Cli) -> i32 {
    let dir = scenario_dir(cli.scenarios.clone());
    let (names, tour) = if cli.names.is_empty() {
        match load_tour(&dir) {
            Ok(tour) => (tour.scenarios.clone(), Some(tour)),
            Err(e) => return error(&format!("no scenario given, and no tour: {e}")),
        }
    } else {
        (cli.names.clone(), None)
    };

    // Check everything before starting anything.
    let mut scenarios = Vec::new();
    for name in &names {
        match load_scenario(&dir, name) {
            Ok(s) => scenarios.push(s),
            Err(e) => return error(&e.to_string()),
        }
    }
    let swaps: HashMap<&str, &str> = cli
        .swaps
        .iter()
        .map(|(p, prog)| (p.as_str(), prog.as_str()))
        .collect();
    for part in swaps.keys() {
        if !scenarios.iter().any(|s| s.part(part).is_some()) {
            let known: Vec<&str> = scenarios
                .iter()
                .flat_map(|s| s.parts.iter().map(|p| p.name.as_str()))
                .collect();
            return error(&format!(
                "--use {part}=…: no part named {part:?} in {} (parts: {})",
                names.join(", "),
                known.join(", ")
            ));
        }
    }
    let exe_dir = exe_dir();
    let mut programs = Vec::new();
    for s in &scenarios {
        let mut found = Vec::new();
        for part in &s.parts {
            let program = swaps
                .get(part.name.as_str())
                .copied()
                .unwrap_or(&part.program);
            match resolve_program(program, exe_dir.as_deref()) {
                Ok(path) => found.push(path),
                Err(e) => return error(&format!("{}: part {}: {e}", s.name, part.name)),
            }
        }
        programs.push(found);
    }
    if let Some(d) = &cli.dir {
        if let Err(e) = std::fs::create_dir_all(d) {
            return error(&format!("cannot create {}: {e}", d.display()));
        }
    }

    interrupt::catch_signals();
    let printer = Arc::new(Mutex::new(Printer::stdout()));
    let note = |text: &str| printer.lock().unwrap_or_else(|e| e.into_inner()).note(text);
    if let Some(tour) = &tour {
        note(&format!(
            "The tour: {} ({} scenarios)",
            names.join(", "),
            names.len()
        ));
        if !tour.about.is_empty() {
            note(&tour.about);
        }
    }
    let mut outcomes = Vec::new();
    for (s, programs) in scenarios.iter().zip(programs) {
        if interrupt::interrupted() {
            outcomes.push(Outcome::Interrupted);
            break;
        }
        if !outcomes.is_empty() {
            printer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .blank_line();
        }
        note(&header(s));
        let temp;
        let workdir = match &cli.dir {
            Some(d) => d.clone(),
            None => match TempDir::new(&s.name) {
                Ok(t) => {
                    temp = t;
                    temp.path().to_path_buf()
                }
                Err(e) => return error(&format!("cannot create a working directory: {e}")),
            },
        };
        let plan = Plan {
            scenario: s,
            swapped: s
                .parts
                .iter()
                .map(|p| swaps.contains_key(p.name.as_str()))
                .collect(),
            programs,
            extra_env: &cli.envs,
            workdir,
        };
        outcomes.push(supervisor::run(&plan, &printer));
    }

    if outcomes.len() > 1 || tour.is_some() {
        let ok = outcomes.iter().filter(|o| **o == Outcome::Success).count();
        printer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blank_line();
        note(&format!("{ok} of {} scenarios ok", names.len()));
    }
    let codes: Vec<i32> = outcomes.iter().map(Outcome::exit_code).collect();
    [130, EXIT_USAGE, 1]
        .into_iter()
        .find(|c| codes.contains(c))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_go_anywhere_and_take_values_both_ways() {
        let cli = parse_args(&args(
            "--scenarios /s run hello --use hwserver=/x/mtserver --use=hwclient=hwclient --dir=/d",
        ))
        .unwrap();
        assert_eq!(cli.command.as_deref(), Some("run"));
        assert_eq!(cli.names, ["hello"]);
        assert_eq!(cli.scenarios, Some(PathBuf::from("/s")));
        assert_eq!(cli.dir, Some(PathBuf::from("/d")));
        assert_eq!(
            cli.swaps,
            [
                ("hwserver".to_string(), "/x/mtserver".to_string()),
                ("hwclient".to_string(), "hwclient".to_string())
            ]
        );
    }

    #[test]
    fn bad_usage_is_explained() {
        for (line, expected) in [
            ("run --use hwserver", "PART=PROGRAM"),
            ("run --use", "needs a value"),
            ("run --frobnicate", "unknown option --frobnicate"),
        ] {
            let err = parse_args(&args(line)).unwrap_err();
            assert!(err.contains(expected), "{line}: {err}");
        }
        assert_eq!(command_line(&args("frobnicate"), false), EXIT_USAGE);
        assert_eq!(command_line(&args("list extra"), false), EXIT_USAGE);
    }
}
