//! `zguide compare`: runs a scenario with our programs and with a reference
//! build of the same examples (the C or C++ originals, built by you), and
//! says whether they print the same.
//!
//! Each scenario runs (one after another, never at once: they share ports)
//!
//! * with **ours**: every part's own program;
//! * with the **reference**: every part whose program the reference
//!   directory has (same file name) runs that one; the others stay ours, and
//!   the report lists them;
//! * with `--mix`, the **mixed** pairings: for each program the reference
//!   has, a run where the parts running it are theirs and everything else is
//!   ours, which shows that the two builds talk to each other. A pairing that
//!   is the same as the reference run is not run twice.
//!
//! The runs use the supervisor exactly as `zguide run` does, with a printer
//! that captures each part's stdout lines instead of showing them. Each
//! part's lines are normalised (see [`crate::normalise`]) and compared in
//! order, part by part: how the parts' lines interleave is not compared (it
//! varies from run to run even between two runs of ours), nor is stderr (log
//! lines differ in format between the C and ours by design).
//!
//! The verdict of a scenario, first that applies: `failed` (our run or the
//! all-reference run did not reach its end condition: a part exited non-zero,
//! the timeout passed; the report says which side), `interop failed` (a run
//! mixing the two did not: the report names the parts that were theirs),
//! `differs` (the first part and line that differ), `same`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use zguide::interrupt;

use crate::normalise::Normaliser;
use crate::output::Printer;
use crate::scenario::{load_all, load_scenario, resolve_program, Scenario};
use crate::supervisor::{self, Outcome, Plan, TempDir};

/// What the command line asked for.
pub struct Request<'a> {
    pub scenario_dir: PathBuf,
    pub names: &'a [String],
    pub all: bool,
    pub reference: PathBuf,
    pub mix: bool,
    pub json: bool,
    pub html: Option<PathBuf>,
    pub envs: &'a [(String, String)],
    /// Run the reference's programs under `stdbuf -oL` (when it is there).
    pub stdbuf: bool,
}

/// The verdict on one scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "same")]
    Same,
    #[serde(rename = "differs")]
    Differs,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "interop failed")]
    InteropFailed,
}

impl Verdict {
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::Differs => "differs",
            Verdict::Failed => "failed",
            Verdict::InteropFailed => "interop failed",
        }
    }
}

/// The whole report: what `--json` prints, what the text and HTML show.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The reference directory.
    pub reference: String,
    /// The reference's programs ran under `stdbuf -oL`: C stdio line-buffers
    /// their stdout, as on a terminal, instead of filling a buffer that a
    /// program stopped by SIGINT never writes.
    pub line_buffered: bool,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub title: String,
    pub verdict: Verdict,
    /// Why, in one line (empty when `same`).
    pub detail: String,
    /// Parts that ran our program in every run: the reference lacks it.
    pub ours_only: Vec<String>,
    pub runs: Vec<RunReport>,
    /// Ours against the reference run, part by part (normalised lines).
    pub parts: Vec<PartReport>,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    /// `ours`, `reference` or `mixed`.
    pub kind: &'static str,
    /// The parts that ran the reference's program.
    pub theirs: Vec<String>,
    pub ok: bool,
    /// `ok`, or why the run failed.
    pub outcome: String,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct PartReport {
    pub label: String,
    pub same: bool,
    /// The first line (from 1) that differs, when one does.
    pub first_difference: Option<usize>,
    pub ours: Vec<String>,
    pub reference: Vec<String>,
}

impl Report {
    /// 0 when every scenario is `same`, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.scenarios.iter().all(|s| s.verdict == Verdict::Same) {
            0
        } else {
            1
        }
    }
}

/// One scenario, checked and with every program found.
struct Prepared {
    scenario: Scenario,
    normaliser: Normaliser,
    ours: Vec<PathBuf>,
    /// The reference's program for each part, where it has one.
    theirs: Vec<Option<PathBuf>>,
}

/// Which parts run the reference's program in one run.
#[derive(Clone, Debug, PartialEq)]
struct Pairing {
    kind: &'static str,
    theirs: Vec<bool>,
}

/// The reference's program for `program` (a part's program as written: its
/// file name is looked up in `reference`), if it has one.
fn reference_program(reference: &Path, program: &str) -> Option<PathBuf> {
    let name = Path::new(program).file_name()?;
    resolve_program(&reference.join(name).to_string_lossy(), None).ok()
}

/// Loads and checks everything before anything runs; an error is bad usage.
fn prepare(request: &Request, exe_dir: Option<&Path>) -> Result<Vec<Prepared>, String> {
    if !request.reference.is_dir() {
        return Err(format!(
            "--reference {}: not a directory",
            request.reference.display()
        ));
    }
    let scenarios = if request.all {
        let (scenarios, errors) = load_all(&request.scenario_dir).map_err(|e| e.to_string())?;
        for e in errors {
            eprintln!("zguide: skipped: {e}");
        }
        scenarios
    } else {
        let mut scenarios = Vec::new();
        for name in request.names {
            scenarios.push(load_scenario(&request.scenario_dir, name).map_err(|e| e.to_string())?);
        }
        scenarios
    };
    let mut prepared = Vec::new();
    for scenario in scenarios {
        let theirs: Vec<Option<PathBuf>> = scenario
            .parts
            .iter()
            .map(|p| reference_program(&request.reference, &p.program))
            .collect();
        if theirs.iter().all(Option::is_none) {
            if request.all {
                continue; // Not covered at all: nothing to compare.
            }
            return Err(format!(
                "{}: {} has none of its programs ({})",
                scenario.name,
                request.reference.display(),
                scenario
                    .parts
                    .iter()
                    .map(|p| p.program.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut ours = Vec::new();
        for part in &scenario.parts {
            ours.push(
                resolve_program(&part.program, exe_dir)
                    .map_err(|e| format!("{}: part {}: {e}", scenario.name, part.name))?,
            );
        }
        let normaliser = Normaliser::new(&scenario.compare)
            .map_err(|e| format!("{}: [compare]: {e}", scenario.name))?;
        prepared.push(Prepared {
            scenario,
            normaliser,
            ours,
            theirs,
        });
    }
    if prepared.is_empty() {
        return Err(format!(
            "{} has the programs of none of the scenarios",
            request.reference.display()
        ));
    }
    Ok(prepared)
}

/// Ours, the reference, and with `mix` one run per program the reference
/// has (its parts theirs, the rest ours), never the same pairing twice.
fn pairings(p: &Prepared, mix: bool) -> Vec<Pairing> {
    let parts = &p.scenario.parts;
    let mut runs = vec![
        Pairing {
            kind: "ours",
            theirs: vec![false; parts.len()],
        },
        Pairing {
            kind: "reference",
            theirs: p.theirs.iter().map(Option::is_some).collect(),
        },
    ];
    if mix {
        for (index, part) in parts.iter().enumerate() {
            if p.theirs[index].is_none() {
                continue;
            }
            let theirs: Vec<bool> = parts.iter().map(|q| q.program == part.program).collect();
            if !runs.iter().any(|r| r.theirs == theirs) {
                runs.push(Pairing {
                    kind: "mixed",
                    theirs,
                });
            }
        }
    }
    runs
}

/// The result of one run.
struct Ran {
    pairing: Pairing,
    outcome: Outcome,
    seconds: f64,
    lines: Vec<(String, Vec<String>)>,
}

/// Runs one pairing of a scenario, capturing each part's lines.
fn run_one(
    p: &Prepared,
    pairing: &Pairing,
    envs: &[(String, String)],
    stdbuf: Option<&Path>,
) -> Result<Ran, String> {
    let mut scenario = p.scenario.clone();
    let mut programs = Vec::new();
    for (index, part) in scenario.parts.iter_mut().enumerate() {
        match (&p.theirs[index], pairing.theirs[index], stdbuf) {
            (Some(theirs), true, Some(stdbuf)) => {
                // C stdio fully buffers stdout on a pipe, and a C example
                // stopped by SIGINT dies with its buffer unwritten (hwserver
                // "printed" nothing): line-buffer it, as on a terminal.
                let mut args = vec!["-oL".to_string(), theirs.to_string_lossy().into_owned()];
                args.append(&mut part.args);
                part.args = args;
                programs.push(stdbuf.to_path_buf());
            }
            (Some(theirs), true, None) => programs.push(theirs.clone()),
            _ => programs.push(p.ours[index].clone()),
        }
    }
    let temp = TempDir::new(&p.scenario.name)
        .map_err(|e| format!("cannot create a working directory: {e}"))?;
    let plan = Plan {
        scenario: &scenario,
        programs,
        swapped: pairing.theirs.clone(),
        extra_env: envs,
        workdir: temp.path().to_path_buf(),
    };
    let printer = Arc::new(Mutex::new(Printer::capturing(Box::new(std::io::sink()))));
    let started = Instant::now();
    let outcome = supervisor::run(&plan, &printer);
    let lines = printer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take_captured();
    Ok(Ran {
        pairing: pairing.clone(),
        outcome,
        seconds: started.elapsed().as_secs_f64(),
        lines,
    })
}

fn theirs_names(p: &Prepared, pairing: &Pairing) -> Vec<String> {
    p.scenario
        .parts
        .iter()
        .zip(&pairing.theirs)
        .filter(|(_, &t)| t)
        .map(|(part, _)| part.name.clone())
        .collect()
}

/// Compares two parts' normalised lines in order.
fn compare_part(label: &str, ours: Vec<String>, reference: Vec<String>) -> PartReport {
    let first_difference = (0..ours.len().max(reference.len()))
        .find(|&i| ours.get(i) != reference.get(i))
        .map(|i| i + 1);
    PartReport {
        label: label.to_string(),
        same: first_difference.is_none(),
        first_difference,
        ours,
        reference,
    }
}

/// The verdict on a scenario from its runs (ours first, the reference second).
fn judge(p: &Prepared, ran: &[Ran]) -> ScenarioReport {
    let s = &p.scenario;
    let runs: Vec<RunReport> = ran
        .iter()
        .map(|r| RunReport {
            kind: r.pairing.kind,
            theirs: theirs_names(p, &r.pairing),
            ok: r.outcome == Outcome::Success,
            outcome: match &r.outcome {
                Outcome::Success => "ok".into(),
                Outcome::Failed(why) | Outcome::Broken(why) => why.clone(),
                Outcome::Interrupted => "interrupted".into(),
            },
            seconds: (r.seconds * 10.0).round() / 10.0,
        })
        .collect();
    let parts: Vec<PartReport> = match (ran.first(), ran.get(1)) {
        (Some(ours), Some(reference)) => ours
            .lines
            .iter()
            .zip(&reference.lines)
            .map(|((label, a), (_, b))| {
                compare_part(label, p.normaliser.lines(a), p.normaliser.lines(b))
            })
            .collect(),
        _ => Vec::new(),
    };
    let everything_theirs = p.theirs.iter().all(Option::is_some);
    let failure = runs.iter().find(|r| !r.ok);
    let (verdict, detail) = match failure {
        Some(r) if r.kind == "ours" => (Verdict::Failed, format!("ours: {}", r.outcome)),
        Some(r) if r.kind == "reference" && everything_theirs => {
            (Verdict::Failed, format!("reference: {}", r.outcome))
        }
        Some(r) => (
            Verdict::InteropFailed,
            format!(
                "with {} theirs and the rest ours: {}",
                r.theirs.join(", "),
                r.outcome
            ),
        ),
        None => match parts.iter().find(|part| !part.same) {
            Some(part) => {
                let line = part.first_difference.unwrap_or(1);
                let shown = |lines: &[String]| {
                    lines
                        .get(line - 1)
                        .map_or("(no line)".to_string(), |l| format!("{l:?}"))
                };
                (
                    Verdict::Differs,
                    format!(
                        "{} line {line}: ours {}, reference {}",
                        part.label,
                        shown(&part.ours),
                        shown(&part.reference)
                    ),
                )
            }
            None => (Verdict::Same, String::new()),
        },
    };
    ScenarioReport {
        name: s.name.clone(),
        title: s.title.clone(),
        verdict,
        detail,
        ours_only: s
            .parts
            .iter()
            .zip(&p.theirs)
            .filter(|(_, t)| t.is_none())
            .map(|(part, _)| part.name.clone())
            .collect(),
        runs,
        parts,
    }
}

/// A progress line on stderr (stdout is the report), written whole.
fn progress(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("== {text}\n").as_bytes());
}

/// Runs the comparison; returns the exit code (0 all same, 1 not, 2 bad
/// usage, 130 interrupted).
pub fn compare(mut request: Request, exe_dir: Option<&Path>) -> Result<i32, String> {
    request.reference =
        std::path::absolute(&request.reference).map_err(|e| format!("--reference: {e}"))?;
    let prepared = prepare(&request, exe_dir)?;
    let stdbuf = request
        .stdbuf
        .then(|| resolve_program("stdbuf", None).ok())
        .flatten();
    interrupt::catch_signals();
    let mut report = Report {
        reference: request.reference.display().to_string(),
        line_buffered: stdbuf.is_some(),
        scenarios: Vec::new(),
    };
    for p in &prepared {
        let mut ran = Vec::new();
        for pairing in pairings(p, request.mix) {
            if interrupt::interrupted() {
                return Ok(130);
            }
            let theirs = theirs_names(p, &pairing);
            let run = format!(
                "{}: {} run{}",
                p.scenario.name,
                pairing.kind,
                if pairing.kind == "mixed" {
                    format!(" ({} theirs)", theirs.join(", "))
                } else {
                    String::new()
                }
            );
            progress(&format!("{run} …"));
            let r = run_one(p, &pairing, request.envs, stdbuf.as_deref())?;
            progress(&format!(
                "{run} {} after {:.1} s",
                match &r.outcome {
                    Outcome::Success => "ok".to_string(),
                    Outcome::Failed(why) | Outcome::Broken(why) => format!("FAILED ({why})"),
                    Outcome::Interrupted => "interrupted".into(),
                },
                r.seconds
            ));
            if r.outcome == Outcome::Interrupted {
                return Ok(130);
            }
            ran.push(r);
        }
        report.scenarios.push(judge(p, &ran));
    }

    if request.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        crate::report::print(&format!("{text}\n"));
    } else {
        crate::report::print(&crate::report::text(
            &report,
            crate::output::colour_wanted(),
        ));
    }
    if let Some(path) = &request.html {
        std::fs::write(path, crate::report::html(&report))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_compared_line_by_line_in_order() {
        let lines = |t: &[&str]| t.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let same = compare_part("a", lines(&["x", "y"]), lines(&["x", "y"]));
        assert!(same.same && same.first_difference.is_none());
        let differs = compare_part("a", lines(&["x", "y", "z"]), lines(&["x", "Y", "z"]));
        assert_eq!(differs.first_difference, Some(2));
        let shorter = compare_part("a", lines(&["x"]), lines(&["x", "more"]));
        assert_eq!(shorter.first_difference, Some(2));
        let swapped = compare_part("a", lines(&["x", "y"]), lines(&["y", "x"]));
        assert_eq!(swapped.first_difference, Some(1));
    }
}
