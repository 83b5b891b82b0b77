//! The scenario runner (`zguide`), run as a real process inside a test
//! scenario's network namespace, so the guide's fixed ports never clash with
//! other tests. The parts it starts inherit that namespace. What the runner
//! does with the guide's own scenario files is in `tests/scenarios.rs`; its
//! internals have unit tests in the binary (`cargo test --bin zguide`).

mod common;
use common::runs::scenario_files;
use common::{ms, secs, Pid, Scenario, Spec};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// True while process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest.trim_start());
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// The pids a part announced with `grandchild <pid>` lines.
fn announced_grandchildren(sc: &Scenario, runner: Pid) -> Vec<i32> {
    sc.lines(runner)
        .iter()
        .filter_map(|l| l.split("grandchild ").nth(1))
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

/// Waits (bounded) until none of `pids` is alive.
fn assert_all_gone(sc: &Scenario, pids: &[i32], what: &str) {
    let deadline = Instant::now() + secs(20);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for pid in &left {
                // SAFETY: cleanup of a process this test made the runner start.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            sc.fail(&format!("{what}: processes {left:?} still alive"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
fn check_names_every_scenario_file_and_its_programs() {
    let mut sc = Scenario::new("runner-check");
    let check = sc.start("zguide", bin!("zguide"), &["check"]);
    assert_eq!(sc.wait_exit(check, secs(30)), 0, "{}", sc.report());
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("zguide/scenarios");
    let bin_dir = Path::new(bin!("zguide"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&scenarios).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let Some(name) = file.strip_suffix(".toml") else {
            continue;
        };
        let line = sc
            .lines(check)
            .into_iter()
            .find(|l| l.starts_with(&format!("ok {name}: ")))
            .unwrap_or_else(|| sc.fail(&format!("`zguide check` does not name {name}")));
        // Every part's program is one of this crate's binaries.
        for part in line.split(": ").nth(1).unwrap_or("").split(' ') {
            let program = part.split_once('=').map_or("", |(_, p)| p);
            assert!(
                program.starts_with(&bin_dir),
                "{name}: {part} is not a binary of this crate"
            );
        }
        names.push(name.to_string());
    }
    assert!(names.len() >= 30, "only {names:?}");
    sc.expect(check, "ok the tour: hello, ", secs(10));
    sc.expect(
        check,
        &format!("{} scenarios and the tour are fine", names.len()),
        secs(10),
    );
}

#[test]
fn check_reports_every_broken_file_and_missing_program() {
    let mut sc = Scenario::new("runner-check-bad");
    let dir = scenario_files(
        &sc,
        &[
            ("fine", "title='t'\nsection='s'\nuntil_exit=['x']\n[[part]]\nname='x'\nprogram='sh'\n"),
            ("typo", "title='t'\nsection='s'\nuntil_exit=['x']\n[[part]]\nname='x'\nprogam='sh'\n"),
            (
                "missing",
                "title='t'\nsection='s'\nuntil_exit=['x']\n[[part]]\nname='x'\nprogram='no-such-program-here'\n",
            ),
        ],
    );
    std::fs::write(
        dir.parent().unwrap().join("tour.toml"),
        "scenarios = ['fine', 'gone']\n",
    )
    .unwrap();
    let check = sc.start(
        "zguide",
        bin!("zguide"),
        &["check", "--scenarios", dir.to_str().unwrap()],
    );
    assert_eq!(sc.wait_exit(check, secs(30)), 2, "{}", sc.report());
    for needle in [
        "ok fine: x=/",
        "typo.toml: TOML parse error",
        "unknown field `progam`",
        "missing: part x: program \"no-such-program-here\" is neither in ",
        "the tour names \"gone\", which is not a valid scenario",
        "zguide: 3 problems",
    ] {
        assert_eq!(sc.count(check, needle), 1, "{needle}\n{}", sc.report());
    }
}

/// A part that leaves processes behind: `waiter` forks a `sleep` that stays
/// in its process group and waits for it; `orphaner` (once `waiter` has
/// forked) starts one in a session of its own and exits, orphaning it. Both
/// announce `grandchild <pid>`; `orphaner` also shows its working directory.
const FORKER: &str = r#"
title = "Parts that start processes"
section = "§0 Tests"
timeout = 60
until_exit = ["orphaner"]

[[part]]
name = "waiter"
program = "sh"
args = ["-c", "sleep 300 & echo \"grandchild $!\"; touch forked; wait"]

[[part]]
name = "orphaner"
program = "sh"
args = ["-c", "until [ -e forked ]; do sleep 0.05; done; setsid sleep 300 & echo \"grandchild $!\"; echo \"cwd $(pwd) mode $(stat -c %a .)\"; ls -A | sed 's/^/entry /'"]
"#;

#[test]
fn what_a_part_started_dies_with_a_normal_run() {
    let mut sc = Scenario::new("runner-grandchildren");
    let dir = scenario_files(&sc, &[("forker", FORKER)]);
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &["run", "--scenarios", dir.to_str().unwrap(), "forker"],
    );
    sc.expect(runner, "== forker: ok after", secs(60));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    let grandchildren = announced_grandchildren(&sc, runner);
    assert_eq!(grandchildren.len(), 2, "{}", sc.report());
    assert_all_gone(&sc, &grandchildren, "after a normal run");
    assert_eq!(
        sc.count(runner, "== killed 2 process(es) that the parts had started"),
        1,
        "{}",
        sc.report()
    );
}

#[test]
fn what_a_part_started_dies_with_a_killed_runner() {
    let mut sc = Scenario::new("runner-grandchildren-kill");
    let forever = FORKER
        .replace(
            "until_exit = [\"orphaner\"]",
            "duration = 100\ntimeout = 120",
        )
        .replace("timeout = 60\n", "")
        .replace("sed 's/^/entry /'", "sed 's/^/entry /'; exec sleep 300");
    let dir = scenario_files(&sc, &[("forker", &forever)]);
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &["run", "--scenarios", dir.to_str().unwrap(), "forker"],
    );
    let waiter = started_pid(&mut sc, runner, "waiter");
    let orphaner = started_pid(&mut sc, runner, "orphaner");
    sc.expect(runner, "[orphaner] cwd ", secs(30));
    let grandchildren = announced_grandchildren(&sc, runner);
    assert_eq!(grandchildren.len(), 2, "{}", sc.report());
    assert!(grandchildren.iter().all(|&p| alive(p)), "{}", sc.report());
    sc.kill(runner);
    let mut everyone = grandchildren.clone();
    everyone.extend([waiter, orphaner]);
    assert_all_gone(&sc, &everyone, "after the runner got SIGKILL");
}

#[test]
fn the_working_directory_is_private_and_fresh() {
    let mut sc = Scenario::new("runner-tempdir");
    let dir = scenario_files(&sc, &[("forker", FORKER)]);
    // The runner's temporary directory goes under TMPDIR: the test's own.
    let tmp = sc.dir().join("tmp");
    let target = sc.dir().join("target");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    // An attacker's directory at the path the runner used to choose,
    // `zguide-<scenario>-<runner pid>-0`, with a symlink planted in it. The
    // shell plants it for its own pid, then becomes the runner (exec keeps
    // the pid).
    let script = format!(
        "planted={tmp}/zguide-forker-$$-0; mkdir -p $planted && ln -s {target} $planted/planted-link \
         && exec {zguide} run --scenarios {dir} forker",
        tmp = tmp.display(),
        target = target.display(),
        zguide = bin!("zguide"),
        dir = dir.display(),
    );
    let runner = sc.start_spec(
        "zguide",
        Spec::new("sh", &["-c", &script]).env("TMPDIR", tmp.display()),
    );
    let line = sc.expect(runner, "[orphaner] cwd ", secs(30));
    assert_eq!(sc.wait_exit(runner, secs(60)), 0, "{}", sc.report());
    let (workdir, mode) = line
        .split("cwd ")
        .nth(1)
        .and_then(|rest| rest.split_once(" mode "))
        .unwrap_or_else(|| sc.fail(&format!("no cwd in {line:?}")));
    let workdir = PathBuf::from(workdir);
    assert!(workdir.starts_with(&tmp), "{workdir:?} is not under TMPDIR");
    assert!(
        !workdir.to_string_lossy().ends_with("-0"),
        "{workdir:?} is the predictable name"
    );
    assert_eq!(mode, "700", "{}", sc.report());
    // Fresh: nothing in it but what the parts made (`forked`).
    let entries: Vec<String> = sc
        .lines(runner)
        .iter()
        .filter_map(|l| l.split("[orphaner] entry ").nth(1).map(str::to_string))
        .collect();
    assert_eq!(entries, ["forked"], "{}", sc.report());
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert!(!workdir.exists(), "{workdir:?} is removed after the run");
}

#[test]
fn a_nul_in_args_or_env_fails_before_any_part_starts() {
    let mut sc = Scenario::new("runner-nul");
    let first =
        "[[part]]\nname='first'\nprogram='sh'\nargs=['-c', 'echo first started; sleep 30']\n";
    let dir = scenario_files(
        &sc,
        &[
            (
                "nularg",
                &format!("title='t'\nsection='s'\nuntil_exit=['second']\n{first}[[part]]\nname='second'\nprogram='echo'\nargs=[\"a\\u0000b\"]\n"),
            ),
            (
                "nulenv",
                &format!("title='t'\nsection='s'\nuntil_exit=['second']\n{first}[[part]]\nname='second'\nprogram='echo'\nenv={{ X = \"a\\u0000b\" }}\n"),
            ),
        ],
    );
    for (name, what) in [("nularg", "an argument"), ("nulenv", "an `env` value")] {
        let runner = sc.start(
            name,
            bin!("zguide"),
            &["run", "--scenarios", dir.to_str().unwrap(), name],
        );
        assert_eq!(sc.wait_exit(runner, secs(30)), 2, "{}", sc.report());
        assert_eq!(
            sc.count(runner, &format!("part \"second\": {what} holds a NUL byte")),
            1,
            "{}",
            sc.report()
        );
        assert_eq!(sc.count(runner, "started"), 0, "{}", sc.report());
    }
}

#[test]
fn stdin_waits_for_the_prompt_and_the_peers_connections() {
    let mut sc = Scenario::new("runner-connected");
    let dir = scenario_files(
        &sc,
        &[(
            "connected",
            r#"
title = "Press Enter when a peer is connected"
section = "§0 Tests"
until_exit = ["asker"]

[[part]]
name = "asker"
program = "sh"
args = ["-c", "printf 'Press Enter when ready: '; read line; echo \"got [$line]\""]
stdin = "go\n"
stdin_when = "Press Enter"
stdin_when_connected = { port = 5599, peers = 1 }
"#,
        )],
    );
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &["run", "--scenarios", dir.to_str().unwrap(), "connected"],
    );
    sc.expect(runner, "[asker] Press Enter when ready: ", secs(30));
    // Prompted, but nobody is connected to port 5599: no Enter yet.
    std::thread::sleep(ms(500));
    assert_eq!(sc.count(runner, "<- stdin"), 0, "{}", sc.report());
    // A listener on 5599 and one connection to it, inside the namespace:
    // first connected only, then with a ZeroMQ-sized handshake (a 64-byte
    // greeting and a 27-byte READY) sent and read.
    let (ready_in, ready) = std::sync::mpsc::channel();
    let (handshake_in, handshake) = std::sync::mpsc::channel::<()>();
    let (done_in, done) = std::sync::mpsc::channel::<()>();
    let peer = sc.in_namespace_background(move || {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:5599").unwrap();
        let mut client = std::net::TcpStream::connect("127.0.0.1:5599").unwrap();
        let (mut server, _) = listener.accept().unwrap();
        ready_in.send(()).unwrap();
        let _ = handshake.recv_timeout(secs(60));
        client.write_all(&[0u8; 64 + 27]).unwrap();
        server.read_exact(&mut [0u8; 64 + 27]).unwrap();
        let _ = done.recv_timeout(secs(60));
    });
    ready.recv_timeout(secs(30)).expect("the peer connected");
    // Connected, but no handshake: still no Enter.
    std::thread::sleep(ms(500));
    assert_eq!(sc.count(runner, "<- stdin"), 0, "{}", sc.report());
    handshake_in.send(()).unwrap();
    sc.expect(runner, "== asker <- stdin \"go\\n\"", secs(30));
    sc.expect(runner, "[asker] got [go]", secs(30));
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    done_in.send(()).unwrap();
    peer.join().unwrap();
}

#[test]
fn env_sets_a_variable_for_every_part_over_the_files_own() {
    let mut sc = Scenario::new("runner-env");
    let dir = scenario_files(
        &sc,
        &[(
            "env",
            "title='t'\nsection='s'\nuntil_exit=['a', 'b']\n[[part]]\nname='a'\nprogram='sh'\nargs=['-c', 'echo \"N=$N\"']\nenv={ N = 1 }\n[[part]]\nname='b'\nprogram='sh'\nargs=['-c', 'echo \"N=$N\"']\n",
        )],
    );
    let runner = sc.start(
        "zguide",
        bin!("zguide"),
        &[
            "run",
            "--scenarios",
            dir.to_str().unwrap(),
            "env",
            "--env",
            "N=7",
        ],
    );
    assert_eq!(sc.wait_exit(runner, secs(30)), 0, "{}", sc.report());
    assert_eq!(sc.count(runner, "[a] N=7"), 1, "{}", sc.report());
    assert_eq!(sc.count(runner, "[b] N=7"), 1, "{}", sc.report());
    let bad = sc.start("bad", bin!("zguide"), &["run", "hello", "--env", "=1"]);
    sc.expect(bad, "--env takes KEY=VALUE", secs(30));
    assert_eq!(sc.wait_exit(bad, secs(30)), 2);
}
