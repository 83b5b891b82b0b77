//! The scenario runner (`zguide`), run as a real process inside a test
//! scenario's network namespace, so the guide's fixed ports never clash with
//! other tests. The parts it starts inherit that namespace.

mod common;
use common::{secs, Pid, Scenario};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zguide::runner::scenario::{load_all, load_tour, resolve_program};

/// Writes `(name, toml)` scenario files into a fresh directory of `sc`.
fn scenario_files(sc: &Scenario, files: &[(&str, &str)]) -> PathBuf {
    let dir = sc.dir().join("scenarios");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
    dir
}

/// The OS pid in a runner line `== started <label> (pid N): …`.
fn started_pid(sc: &mut Scenario, runner: Pid, label: &str) -> i32 {
    let line = sc.expect(runner, &format!("== started {label} (pid "), secs(30));
    line.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| sc.fail(&format!("no pid in {line:?}")))
}

/// The live (not zombie) processes whose process group is `group`.
fn group_members(group: i32) -> Vec<i32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …": comm may hold spaces, so split after ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            members.push(pid);
        }
    }
    members
}

/// Waits (bounded) until no live process is left in group `group`.
fn assert_group_gone(sc: &Scenario, group: i32, what: &str) {
    let deadline = Instant::now() + secs(20);
    while !group_members(group).is_empty() {
        if Instant::now() > deadline {
            sc.fail(&format!(
                "{what}: processes {:?} of group {group} still alive",
                group_members(group)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn list_shows_the_scenarios_with_section_and_title() {
    let mut sc = Scenario::new("runner-list");
    let list = sc.start("zguide", bin!("zguide"), &["list"]);
    let line = sc.expect(list, "hello ", secs(30));
    assert!(
        line.contains("§1 Ask and Ye Shall Receive") && line.contains("Hello World"),
        "{line}"
    );
    sc.expect(list, "The tour (`zguide run` alone): ", secs(10));
    assert_eq!(sc.wait_exit(list, secs(30)), 0, "{}", sc.report());
}

#[test]
fn run_hello_labels_each_part_and_ends_with_the_client() {
    let mut sc = Scenario::new("runner-hello");
    let runner = sc.start("zguide", bin!("zguide"), &["run", "hello"]);
    sc.expect(
        runner,
        "== hello: Hello World — §1 Ask and Ye Shall Receive",
        secs(30),
    );
    let server = started_pid(&mut sc, runner, "hwserver");
    sc.expect(runner, "[hwserver] Received Hello", secs(60));
    sc.expect(runner, "[hwclient] Received World 9", secs(60));
    sc.expect(runner, "== hwclient exited 0", secs(30));
    let summary = sc.expect(runner, "== hello: ok after ", secs(30));
    assert!(
        summary.contains("hwserver stopped") && summary.contains("hwclient exited 0"),
        "{summary}"
    );
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.count(runner, "[hwserver] Received Hello"), 10);
    assert_group_gone(&sc, server, "hwserver after the run");
}

#[test]
fn a_failing_until_exit_part_fails_the_run_and_the_temp_dir_goes() {
    let mut sc = Scenario::new("runner-fail");
    let dir = scenario_files(
        &sc,
        &[(
            "failing",
            r#"
title = "Fails"
section = "§0 Tests"
until_exit = ["quitter"]

[[part]]
name = "quitter"
program = "sh"
args = ["-c", "echo \"in $(pwd)\"; echo oops >&2; exit 3"]
"#,
        )],
    );
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &["run", "--scenarios", dir.to_str().unwrap(), "failing"],
    );
    let line = sc.expect(runner, "[quitter] in ", secs(30));
    let workdir = PathBuf::from(line.split("in ").nth(1).unwrap());
    sc.expect(runner, "== failing: FAILED (quitter exited 3)", secs(30));
    // Stdout and stderr are read apart, so their lines may come in any order.
    assert_eq!(sc.count(runner, "[quitter:err] oops"), 1, "{}", sc.report());
    assert_eq!(sc.wait_exit(runner, secs(30)), 1, "{}", sc.report());
    assert!(
        workdir.starts_with(std::env::temp_dir()) && !workdir.exists(),
        "the temporary working directory {workdir:?} is removed"
    );
}

#[test]
fn a_timeout_fails_the_run() {
    let mut sc = Scenario::new("runner-timeout");
    let dir = scenario_files(
        &sc,
        &[(
            "slow",
            r#"
title = "Too slow"
section = "§0 Tests"
timeout = 1
until_exit = ["sleeper"]

[[part]]
name = "sleeper"
program = "sleep"
args = [30]
"#,
        )],
    );
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &["run", "--scenarios", dir.to_str().unwrap(), "slow"],
    );
    sc.expect(
        runner,
        "FAILED (timeout after 1 s, still waiting for sleeper)",
        secs(30),
    );
    assert_eq!(sc.wait_exit(runner, secs(30)), 1, "{}", sc.report());
}

#[test]
fn bad_scenarios_programs_and_usage_exit_2_with_a_reason() {
    let mut sc = Scenario::new("runner-usage");
    let dir = scenario_files(
        &sc,
        &[
            (
                "missing",
                "title='t'\nsection='s'\nuntil_exit=['x']\n[[part]]\nname='x'\nprogram='no-such-program-here'\n",
            ),
            ("typo", "title='t'\nsection='s'\nuntil_exit=['x']\n[[part]]\nname='x'\nprogam='sh'\n"),
        ],
    );
    let dir = dir.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["run", "--scenarios", dir, "missing"],
            "\"no-such-program-here\" is neither in ",
        ),
        (
            &["run", "--scenarios", dir, "typo"],
            "unknown field `progam`",
        ),
        (
            &["run", "--scenarios", dir, "nothing"],
            "no scenario named \"nothing\"",
        ),
        (
            &["run", "hello", "--use", "hwbroker=/bin/true"],
            "no part named \"hwbroker\" in hello",
        ),
        (
            &["run", "hello", "--use", "hwserver=/no/such/file"],
            "/no/such/file does not exist",
        ),
        (&["run", "--bogus"], "unknown option --bogus"),
    ];
    for (i, (args, message)) in cases.iter().enumerate() {
        let pid = sc.start(&format!("zguide-{i}"), bin!("zguide"), args);
        sc.expect(pid, message, secs(30));
        assert_eq!(sc.wait_exit(pid, secs(30)), 2, "{args:?}\n{}", sc.report());
        assert_eq!(sc.count(pid, "== started"), 0, "nothing starts: {args:?}");
    }
}

#[test]
fn help_describes_the_commands() {
    let mut sc = Scenario::new("runner-help");
    let help = sc.start("help", bin!("zguide"), &["--help"]);
    sc.expect(help, "zguide run [OPTIONS] [SCENARIO]...", secs(30));
    assert_eq!(sc.wait_exit(help, secs(30)), 0);
    let run_help = sc.start("run-help", bin!("zguide"), &["run", "--help"]);
    sc.expect(run_help, "--use PART=PROGRAM", secs(30));
    assert_eq!(sc.wait_exit(run_help, secs(30)), 0);
    let bare = sc.start("bare", bin!("zguide"), &[]);
    sc.expect(bare, "Usage:", secs(30));
    assert_eq!(sc.wait_exit(bare, secs(30)), 2);
}

#[test]
fn use_swaps_a_part_for_another_program() {
    let mut sc = Scenario::new("runner-use");
    // §10's multithreaded server in the Hello World server's place.
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &[
            "run",
            "hello",
            &format!("--use=hwserver={}", bin!("mtserver")),
        ],
    );
    let started = sc.expect(runner, "== started hwserver (pid ", secs(30));
    assert!(started.ends_with(bin!("mtserver")), "{started}");
    sc.expect(runner, "[hwserver] Received request: [Hello]", secs(60));
    sc.expect(runner, "[hwclient] Received World 9", secs(60));
    sc.expect(runner, "== hello: ok after", secs(30));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.count(runner, "[hwserver] Received Hello"), 0);
}

#[test]
fn use_takes_a_bare_name_and_several_swaps() {
    let mut sc = Scenario::new("runner-use-two");
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &[
            "run",
            "hello",
            "--use",
            "hwserver=hwserver",
            "--use",
            "hwclient=version",
        ],
    );
    sc.expect(runner, "[hwclient] Current 0MQ version is ", secs(30));
    sc.expect(runner, "== hello: ok after", secs(30));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
}

#[test]
fn ctrl_c_stops_every_part_and_exits_130() {
    let mut sc = Scenario::new("runner-sigint");
    let dir = scenario_files(
        &sc,
        &[(
            "forever",
            r#"
title = "Runs until stopped"
section = "§0 Tests"
duration = 100
timeout = 120

[[part]]
name = "hwserver"

[[part]]
name = "stubborn"
program = "sh"
# Ignores SIGINT, and so does its child `sleep`: only SIGKILL stops them.
args = ["-c", "trap '' INT; echo ready; while :; do sleep 1; done"]
"#,
        )],
    );
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &["run", "--scenarios", dir.to_str().unwrap(), "forever"],
    );
    let server = started_pid(&mut sc, runner, "hwserver");
    let stubborn = started_pid(&mut sc, runner, "stubborn");
    sc.expect(runner, "[stubborn] ready", secs(30));
    assert!(!group_members(stubborn).is_empty());
    sc.interrupt(runner);
    sc.expect(
        runner,
        "stubborn still running 2 s after SIGINT: SIGKILL",
        secs(30),
    );
    let summary = sc.expect(runner, "== forever: interrupted after", secs(30));
    assert!(
        summary.contains("hwserver stopped") && summary.contains("stubborn killed"),
        "{summary}"
    );
    assert_eq!(sc.wait_exit(runner, secs(30)), 130, "{}", sc.report());
    assert_group_gone(&sc, server, "hwserver after Ctrl-C");
    assert_group_gone(&sc, stubborn, "stubborn and its sleep after Ctrl-C");
}

#[test]
fn a_killed_runner_takes_its_parts_with_it() {
    let mut sc = Scenario::new("runner-sigkill");
    let runner = sc.start("zguide", bin!("zguide"), &["run", "hello"]);
    let server = started_pid(&mut sc, runner, "hwserver");
    let client = started_pid(&mut sc, runner, "hwclient");
    sc.expect(runner, "[hwserver] Received Hello", secs(60));
    sc.kill(runner);
    assert_group_gone(&sc, server, "hwserver after the runner was killed");
    assert_group_gone(&sc, client, "hwclient after the runner was killed");
}

#[test]
fn stdin_is_fed_when_the_prompt_appears() {
    let mut sc = Scenario::new("runner-stdin");
    let dir = scenario_files(
        &sc,
        &[(
            "prompt",
            r#"
title = "Press Enter"
section = "§0 Tests"
until_exit = ["asker"]

[[part]]
name = "asker"
program = "sh"
args = ["-c", "echo \"in $(pwd)\"; printf 'Press Enter when ready: '; read line; echo \"got [$line]\""]
stdin = "go\n"
stdin_when = "Press Enter"
"#,
        )],
    );
    let workdir = sc.dir().join("work");
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &[
            "run",
            "prompt",
            "--scenarios",
            dir.to_str().unwrap(),
            "--dir",
            workdir.to_str().unwrap(),
        ],
    );
    sc.expect(
        runner,
        &format!("[asker] in {}", workdir.display()),
        secs(30),
    );
    // Fed only once the prompt is out: the note comes after it.
    sc.expect(runner, "[asker] Press Enter when ready: ", secs(30));
    sc.expect(runner, "== asker <- stdin \"go\\n\"", secs(30));
    sc.expect(runner, "[asker] got [go]", secs(30));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    assert!(workdir.is_dir(), "--dir is kept");
}

#[test]
fn pipeline_presses_enter_for_taskvent_once_the_workers_are_up() {
    let mut sc = Scenario::new("runner-pipeline");
    let runner = sc.start("zguide", bin!("zguide"), &["run", "pipeline"]);
    sc.expect(runner, "[taskvent] ", secs(30));
    sc.expect(runner, "== taskvent <- stdin \"\\n\"", secs(30));
    sc.expect(runner, "Sending tasks to workers...", secs(30));
    sc.expect(runner, "Total elapsed time: ", secs(60));
    sc.expect(runner, "== pipeline: ok after ", secs(30));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    // Enter came a second after the prompt, when every worker was connected:
    // each got a share of the tasks, not the first one all of them.
    for worker in ["[taskwork-1] ", "[taskwork-2] ", "[taskwork-3] "] {
        assert!(
            sc.count(runner, worker) > 0,
            "{worker} got no task\n{}",
            sc.report()
        );
    }
}

/// Catches typos in every helper's scenario files: each parses, and each
/// part's program is one of this crate's binaries.
#[test]
fn every_scenario_file_is_valid_and_names_a_built_program() {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("zguide/scenarios");
    let (all, errors) = load_all(&scenarios).expect("the scenario directory");
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        errors.is_empty(),
        "bad scenario files:\n{}",
        errors.join("\n")
    );
    assert!(all.iter().any(|s| s.name == "hello"));
    let bin_dir = Path::new(bin!("zguide")).parent().unwrap();
    let mut missing = Vec::new();
    for s in &all {
        for part in &s.parts {
            let found = resolve_program(&part.program, Some(bin_dir));
            if part.program.contains('/') || !found.is_ok_and(|p| p.starts_with(bin_dir)) {
                missing.push(format!(
                    "{}: part {}: program {}",
                    s.name, part.name, part.program
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "programs that are not binaries of this crate:\n{}",
        missing.join("\n")
    );
    let tour = load_tour(&scenarios).expect("zguide/tour.toml");
    for name in &tour.scenarios {
        assert!(
            all.iter().any(|s| &s.name == name),
            "the tour names {name}, which has no scenario file"
        );
    }
}

#[test]
fn the_tour_runs_to_the_end() {
    let mut sc = Scenario::new("runner-tour");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("zguide/scenarios");
    let tour = load_tour(&scenarios).expect("zguide/tour.toml");
    let runner = sc.start("zguide", bin!("zguide"), &["run"]);
    sc.expect(runner, "== The tour: ", secs(30));
    let n = tour.scenarios.len();
    sc.expect(runner, &format!("== {n} of {n} scenarios ok"), secs(120));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
}
