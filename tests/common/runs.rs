//! Running the project's own scenario files with the real runner
//! (`zguide run <name>`) inside a test scenario's network namespace, and
//! reading the runner's labelled output. `tests/scenarios.rs` runs every
//! file this way; chapter test files run their own chapter's files with the
//! same helper, and `every_scenario_file_has_a_test_here` looks for a
//! `run_to_the_end("<name>"` call somewhere in `tests/`.

use std::path::PathBuf;

use super::{secs, Pid, Scenario};

/// Runs `zguide run <name> <extra>…` until the runner's verdict, which must
/// be success: `== <name>: ok after …` and exit code 0. Returns the scenario
/// and the runner, for checks on the labelled lines.
pub fn run_to_the_end(name: &str, extra: &[&str], within: u64) -> (Scenario, Pid) {
    let mut sc = Scenario::new(&format!("scenario-{name}"));
    let mut args = vec!["run", name];
    args.extend(extra);
    let runner = sc.start("zguide", crate::bin!("zguide"), &args);
    sc.expect(runner, &format!("== {name}: ok after "), secs(within));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    (sc, runner)
}

/// The runner's output, each part's line as `[label] text`: the runner pads
/// labels to one width, which depends on the scenario's other labels.
pub fn labelled_lines(sc: &Scenario, runner: Pid) -> Vec<String> {
    sc.lines(runner)
        .into_iter()
        .map(|line| match line.split_once("] ") {
            Some((label, text)) if line.starts_with('[') && !label.contains(' ') => {
                format!("{label}] {}", text.trim_start())
            }
            _ => line,
        })
        .collect()
}

/// How many lines contain `needle` (labels unpadded, see [`labelled_lines`]).
pub fn count(sc: &Scenario, runner: Pid, needle: &str) -> usize {
    labelled_lines(sc, runner)
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// Asserts that exactly `n` lines contain `needle`.
pub fn assert_lines(sc: &Scenario, runner: Pid, needle: &str, n: usize) {
    let found = count(sc, runner, needle);
    if found != n {
        sc.fail(&format!("{found} lines with {needle:?}, expected {n}"));
    }
}

/// Asserts that at least `n` lines contain `needle`.
pub fn assert_at_least(sc: &Scenario, runner: Pid, needle: &str, n: usize) {
    let found = count(sc, runner, needle);
    if found < n {
        sc.fail(&format!(
            "{found} lines with {needle:?}, expected at least {n}"
        ));
    }
}

/// The runner's closing line, `== <name>: ok after … s; <how each part ended>`.
pub fn summary(sc: &Scenario, runner: Pid, name: &str) -> String {
    let prefix = format!("== {name}: ok after ");
    sc.lines(runner)
        .into_iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| sc.fail("no summary line"))
}

/// Writes scenario files (`name`, TOML text) into a `scenarios/` folder of
/// the test scenario's directory and returns that folder, for
/// `zguide … --scenarios <dir>`.
pub fn scenario_files(sc: &Scenario, files: &[(&str, &str)]) -> PathBuf {
    let dir = sc.dir().join("scenarios");
    std::fs::create_dir_all(&dir).expect("create the scenarios folder");
    for (name, text) in files {
        std::fs::write(dir.join(format!("{name}.toml")), text).expect("write a scenario file");
    }
    dir
}
