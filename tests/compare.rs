//! `zguide compare`, run as a real process inside a test scenario's network
//! namespace: ours against reference directories made of links to our own
//! binaries (the same build must come out `same`) and of small shell scripts
//! that print something else, fail, or only talk to each other. The
//! normaliser and the report renderers have unit tests in the binary
//! (`cargo test --bin zguide`).

mod common;
use common::runs::scenario_files;
use common::{secs, Pid, Scenario};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a reference directory holds under a program's name.
enum Program<'a> {
    /// A link to one of our binaries.
    Link(&'a str),
    /// A shell script with this body.
    Script(&'a str),
}

/// Makes `sc.dir()/<name>/` holding `programs`; returns its path.
fn program_dir(sc: &Scenario, name: &str, programs: &[(&str, Program)]) -> PathBuf {
    let dir = sc.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (program, what) in programs {
        let path = dir.join(program);
        match what {
            Program::Link(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            Program::Script(body) => {
                std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts `zguide compare ARGS` and returns it once it exited with `code`.
fn compare(sc: &mut Scenario, args: &[&str], code: i32) -> Pid {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let label = format!("zguide-{}", RUNS.fetch_add(1, Ordering::Relaxed));
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    let runner = sc.start(&label, bin!("zguide"), &all);
    assert_eq!(sc.wait_exit(runner, secs(60)), code, "{}", sc.report());
    runner
}

/// The summary table's row for `scenario`, spaces squeezed.
fn summary_row(sc: &Scenario, runner: Pid, scenario: &str) -> String {
    let rows: Vec<String> = sc
        .lines(runner)
        .iter()
        .filter(|l| l.starts_with(&format!("{scenario} ")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "one summary row for {scenario}\n{}",
        sc.report()
    );
    rows[0].clone()
}

#[test]
fn our_own_binaries_as_the_reference_are_the_same() {
    let mut sc = Scenario::new("compare-same");
    let reference = program_dir(&sc, "ref", &[("identity", Program::Link(bin!("identity")))]);
    // The guide's own `identity` scenario: a real program, its generated
    // identity normalised.
    let runner = compare(
        &mut sc,
        &["identity", "--mix", "--reference", path(&reference)],
        0,
    );
    assert_eq!(summary_row(&sc, runner, "identity"), "identity same");
    assert_eq!(sc.count(runner, "== 1 of 1 scenarios the same"), 1);
    // Side by side, ours | reference, the identity as a placeholder.
    assert_eq!(
        sc.count(
            runner,
            "     [005] <id>                                     | [005] <id>"
        ),
        1,
        "{}",
        sc.report()
    );
    assert_eq!(
        sc.count(runner, "[040] ROUTER socket uses REQ's socket identity"),
        1
    );
    // Two runs: with one program, the mixed pairing is the reference run.
    assert_eq!(sc.count(runner, "== identity: ours run ok"), 1);
    assert_eq!(sc.count(runner, "== identity: reference run ok"), 1);
    assert_eq!(sc.count(runner, "mixed run"), 0, "{}", sc.report());
}

#[test]
fn a_line_that_differs_is_named_with_its_part_and_the_exit_code_is_1() {
    let mut sc = Scenario::new("compare-differs");
    // Like identity, with another (normalised away) identity, and one line changed.
    let reference = program_dir(
        &sc,
        "ref",
        &[(
            "identity",
            Program::Script(
                "echo ----------------------------------------\n\
                 echo '[005] 0012345678'\n\
                 echo '[000] '\n\
                 echo '[039] ROUTER uses a different identity'",
            ),
        )],
    );
    let runner = compare(&mut sc, &["identity", "--reference", path(&reference)], 1);
    assert!(
        summary_row(&sc, runner, "identity").starts_with("identity differs identity line 4: "),
        "{}",
        sc.report()
    );
    assert_eq!(
        sc.count(
            runner,
            "== identity: Identities — differs (identity line 4: \
             ours \"[039] ROUTER uses a generated 5 byte identity\", \
             reference \"[039] ROUTER uses a different identity\")"
        ),
        1,
        "{}",
        sc.report()
    );
    assert_eq!(
        sc.count(runner, "   ! [039] ROUTER uses a generated 5 byte identity  | [039] ROUTER uses a different identity"),
        1,
        "{}",
        sc.report()
    );
    assert_eq!(
        sc.count(
            runner,
            "-- identity: 8 lines ours, 4 reference, differs from line 4"
        ),
        1
    );
}

#[test]
fn a_reference_that_exits_non_zero_fails_on_its_side() {
    let mut sc = Scenario::new("compare-failed");
    let reference = program_dir(
        &sc,
        "ref",
        &[("identity", Program::Script("echo oops\nexit 3"))],
    );
    let runner = compare(&mut sc, &["identity", "--reference", path(&reference)], 1);
    assert_eq!(
        summary_row(&sc, runner, "identity"),
        "identity failed reference: identity exited 3",
        "{}",
        sc.report()
    );
}

/// Two parts that meet at a named pipe in their working directory: `pipe`
/// for ours, `theirs` for the reference. Each build talks only to itself, so
/// both plain runs work and print the same, and every mixed run hangs.
fn pipe_pair(sc: &Scenario) -> (PathBuf, PathBuf) {
    let script = |pipe: &str, speaker: bool| {
        let talk = if speaker {
            format!("echo hello > {pipe}\necho said hello")
        } else {
            format!("read line < {pipe}\necho \"heard $line\"")
        };
        format!("mkfifo {pipe} 2>/dev/null\n{talk}")
    };
    let ours = program_dir(
        sc,
        "ours",
        &[
            ("speaker", Program::Script(&script("pipe", true))),
            ("listener", Program::Script(&script("pipe", false))),
        ],
    );
    let theirs = program_dir(
        sc,
        "theirs",
        &[
            ("speaker", Program::Script(&script("theirs", true))),
            ("listener", Program::Script(&script("theirs", false))),
        ],
    );
    let scenarios = scenario_files(
        sc,
        &[(
            "pipes",
            &format!(
                r#"
title = "Two parts at a pipe"
section = "§0 Tests"
timeout = 2
until_exit = ["speaker", "listener"]

[[part]]
name = "speaker"
program = "{}/speaker"

[[part]]
name = "listener"
program = "{}/listener"
"#,
                path(&ours),
                path(&ours)
            ),
        )],
    );
    (scenarios, theirs)
}

#[test]
fn a_mixed_run_that_never_ends_is_an_interop_failure_naming_the_mixed_part() {
    let mut sc = Scenario::new("compare-interop");
    let (scenarios, theirs) = pipe_pair(&sc);
    let args = [
        "pipes",
        "--scenarios",
        path(&scenarios),
        "--reference",
        path(&theirs),
    ];
    // Without --mix, each build on its own: the same.
    let plain = compare(&mut sc, &args, 0);
    assert_eq!(summary_row(&sc, plain, "pipes"), "pipes same");
    assert_eq!(sc.count(plain, "mixed run"), 0);
    // With --mix, a run per program: the speaker theirs first, and it hangs.
    let mut mixed_args = args.to_vec();
    mixed_args.push("--mix");
    let mixed = compare(&mut sc, &mixed_args, 1);
    assert_eq!(
        summary_row(&sc, mixed, "pipes"),
        "pipes interop failed with speaker theirs and the rest ours: \
         timeout after 2 s, still waiting for speaker, listener",
        "{}",
        sc.report()
    );
    assert_eq!(
        sc.count(mixed, "== pipes: mixed run (speaker theirs) FAILED"),
        1
    );
    assert_eq!(
        sc.count(mixed, "== pipes: mixed run (listener theirs) FAILED"),
        1
    );
}

#[test]
fn runs_that_differ_only_in_clocks_ids_and_timings_are_the_same() {
    let mut sc = Scenario::new("compare-normalise");
    let ours = program_dir(
        &sc,
        "ours",
        &[(
            "stamp",
            Program::Script(
                "echo '12:00:01 I: started on 2026-11-26, pid 4242'\n\
                 echo '[005] 006B8B4567'\n\
                 echo 'worker A1B2-C3D4 ready, session 550e8400-e29b-41d4-a716-446655440000'\n\
                 echo 'Total elapsed time: 5 msec'\n\
                 echo 'job 17 of worker 3 done'",
            ),
        )],
    );
    let reference = program_dir(
        &sc,
        "ref",
        &[(
            "stamp",
            Program::Script(
                "echo '23:59:59 I: started on 2027-01-02, pid 7'\n\
                 echo '[005] 00A0C3D4E5'\n\
                 echo 'D: a debug line that the scenario ignores'\n\
                 echo 'worker FFFF-0000 ready, session 123e4567-e89b-12d3-a456-426614174000'\n\
                 echo 'Total elapsed time: 1234 msec'\n\
                 echo 'job 17 of worker 9 done'",
            ),
        )],
    );
    let scenarios = scenario_files(
        &sc,
        &[(
            "stamps",
            &format!(
                r#"
title = "Clocks and ids"
section = "§0 Tests"
until_exit = ["stamp"]

[compare]
ignore = ["^D: "]
replace = [{{ pattern = "worker \\d+ done", with = "worker N done" }}]

[[part]]
name = "stamp"
program = "{}/stamp"
"#,
                path(&ours)
            ),
        )],
    );
    let args = [
        "stamps",
        "--scenarios",
        path(&scenarios),
        "--reference",
        path(&reference),
    ];
    let runner = compare(&mut sc, &args, 0);
    assert_eq!(
        summary_row(&sc, runner, "stamps"),
        "stamps same",
        "{}",
        sc.report()
    );
    assert_eq!(
        sc.count(runner, "<time> I: started on <date>, pid <n>"),
        1,
        "{}",
        sc.report()
    );
}

#[test]
fn json_and_html_reports() {
    let mut sc = Scenario::new("compare-reports");
    let (scenarios, theirs) = pipe_pair(&sc);
    // The listener hears something else in the reference build.
    std::fs::write(
        theirs.join("listener"),
        "#!/bin/sh\nmkfifo theirs 2>/dev/null\nread line < theirs\necho \"heard <$line> & more\"\n",
    )
    .unwrap();
    let html = sc.dir().join("report.html");
    // stdout alone, the JSON (progress lines go to stderr).
    let args = [
        "-c",
        "exec \"$0\" \"$@\" 2>/dev/null",
        bin!("zguide"),
        "compare",
        "pipes",
        "--scenarios",
        path(&scenarios),
        "--reference",
        path(&theirs),
        "--json",
        "--html",
        path(&html),
    ];
    let runner = sc.start("zguide", "/bin/sh", &args);
    assert_eq!(sc.wait_exit(runner, secs(60)), 1, "{}", sc.report());
    let json = sc.output(runner);
    let report: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| sc.fail(&format!("not JSON ({e}):\n{json}")));
    let pipes = &report["scenarios"][0];
    assert_eq!(pipes["name"], "pipes");
    assert_eq!(pipes["verdict"], "differs");
    assert_eq!(
        pipes["detail"],
        "listener line 1: ours \"heard hello\", reference \"heard <hello> & more\""
    );
    assert_eq!(pipes["runs"][0]["kind"], "ours");
    assert_eq!(pipes["runs"][1]["kind"], "reference");
    assert_eq!(
        pipes["runs"][1]["theirs"],
        serde_json::json!(["speaker", "listener"])
    );
    let parts = pipes["parts"].as_array().unwrap();
    assert_eq!(parts[0]["label"], "speaker");
    assert_eq!(parts[0]["same"], true);
    assert_eq!(parts[1]["first_difference"], 1);
    assert_eq!(
        parts[1]["reference"],
        serde_json::json!(["heard <hello> & more"])
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("<table id=\"summary\">"), "{page}");
    assert!(
        page.contains("<td><a href=\"#s-pipes\">pipes</a></td><td class=\"differs\">differs</td>"),
        "{page}"
    );
    assert!(page.contains("heard &lt;hello&gt; &amp; more"), "{page}");
    for asset in [
        "http:", "https:", "src=", "<link", "<script", "@import", "url(",
    ] {
        assert!(
            !page.contains(asset),
            "no external asset ({asset}) in:\n{page}"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let mut sc = Scenario::new("compare-usage");
    let empty = program_dir(&sc, "empty", &[]);
    let cases: [&[&str]; 5] = [
        &["identity"],
        &["--reference", path(&empty)],
        &["identity", "--all", "--reference", path(&empty)],
        &["identity", "--reference", path(&empty)],
        &["identity", "--reference", "/nonexistent/zguide-ref"],
    ];
    for args in cases {
        compare(&mut sc, args, 2);
    }
    let run = sc.start("run", bin!("zguide"), &["run", "identity", "--mix"]);
    assert_eq!(sc.wait_exit(run, secs(30)), 2, "{}", sc.report());
    let text = sc.output(run);
    assert!(text.contains("options of `zguide compare`"), "{text}");
}

#[test]
fn reference_programs_are_line_buffered_unless_no_stdbuf() {
    let mut sc = Scenario::new("compare-stdbuf");
    // `stdbuf -oL` tells a C program's stdio (through `_STDBUF_O`, read by
    // the library it preloads) to flush each line; a C example stopped by
    // SIGINT otherwise loses everything it printed to the pipe.
    let ours = program_dir(
        &sc,
        "ours",
        &[("buffered", Program::Script("echo stdout L"))],
    );
    let reference = program_dir(
        &sc,
        "ref",
        &[(
            "buffered",
            Program::Script("echo \"stdout ${_STDBUF_O:-as the program sets it}\""),
        )],
    );
    let scenarios = scenario_files(
        &sc,
        &[(
            "buffering",
            &format!(
                "title = \"Buffering\"\nsection = \"§0 Tests\"\nuntil_exit = [\"buffered\"]\n\n\
                 [[part]]\nname = \"buffered\"\nprogram = \"{}/buffered\"\n",
                path(&ours)
            ),
        )],
    );
    let args = [
        "buffering",
        "--scenarios",
        path(&scenarios),
        "--reference",
        path(&reference),
    ];
    let line_buffered = compare(&mut sc, &args, 0);
    assert_eq!(
        summary_row(&sc, line_buffered, "buffering"),
        "buffering same"
    );
    assert_eq!(sc.count(line_buffered, "line-buffered by stdbuf -oL"), 1);
    let mut as_is_args = args.to_vec();
    as_is_args.push("--no-stdbuf");
    let as_is = compare(&mut sc, &as_is_args, 1);
    assert_eq!(
        summary_row(&sc, as_is, "buffering"),
        "buffering differs buffered line 1: ours \"stdout L\", reference \"stdout as the program sets it\"",
        "{}",
        sc.report()
    );
}

#[test]
fn all_runs_every_scenario_the_reference_covers_and_ours_failing_is_said() {
    let mut sc = Scenario::new("compare-all");
    let ours = program_dir(
        &sc,
        "ours",
        &[
            ("alpha", Program::Script("echo alpha")),
            ("beta", Program::Script("echo beta")),
            ("gamma", Program::Script("echo gamma")),
            ("broken", Program::Script("echo broken\nexit 4")),
        ],
    );
    let reference = program_dir(
        &sc,
        "ref",
        &[
            ("alpha", Program::Script("echo alpha")),
            ("broken", Program::Script("echo broken")),
        ],
    );
    let scenario = |parts: &[&str]| {
        let mut text = format!(
            "title = \"t\"\nsection = \"§0 Tests\"\nuntil_exit = [\"{}\"]\n",
            parts.join("\", \"")
        );
        for part in parts {
            text.push_str(&format!(
                "\n[[part]]\nname = \"{part}\"\nprogram = \"{}/{part}\"\n",
                path(&ours)
            ));
        }
        text
    };
    let scenarios = scenario_files(
        &sc,
        &[
            ("one-covered", &scenario(&["alpha", "beta"])),
            ("none-covered", &scenario(&["gamma"])),
            ("ours-broken", &scenario(&["broken"])),
        ],
    );
    let runner = compare(
        &mut sc,
        &[
            "--all",
            "--scenarios",
            path(&scenarios),
            "--reference",
            path(&reference),
        ],
        1,
    );
    // beta is ours in every run, and the report says so.
    assert_eq!(summary_row(&sc, runner, "one-covered"), "one-covered same");
    assert_eq!(
        sc.count(
            runner,
            "ours in every run (the reference has no such program): beta"
        ),
        1,
        "{}",
        sc.report()
    );
    assert_eq!(
        summary_row(&sc, runner, "ours-broken"),
        "ours-broken failed ours: broken exited 4"
    );
    assert_eq!(sc.count(runner, "none-covered"), 0, "{}", sc.report());
    assert_eq!(sc.count(runner, "== 1 of 2 scenarios the same"), 1);
}

#[test]
fn ctrl_c_stops_a_comparison_with_130() {
    let mut sc = Scenario::new("compare-interrupt");
    let ours = program_dir(
        &sc,
        "ours",
        &[("waiter", Program::Script("echo waiting\nexec sleep 300"))],
    );
    let scenarios = scenario_files(
        &sc,
        &[(
            "waits",
            &format!(
                "title = \"t\"\nsection = \"§0 Tests\"\ntimeout = 600\nuntil_exit = [\"waiter\"]\n\n\
                 [[part]]\nname = \"waiter\"\nprogram = \"{}/waiter\"\n",
                path(&ours)
            ),
        )],
    );
    let args = [
        "compare",
        "waits",
        "--scenarios",
        path(&scenarios),
        "--reference",
        path(&ours),
    ];
    let runner = sc.start("zguide", bin!("zguide"), &args);
    sc.expect(runner, "== waits: ours run …", secs(30));
    sc.interrupt(runner);
    assert_eq!(sc.wait_exit(runner, secs(30)), 130, "{}", sc.report());
    assert_eq!(sc.count(runner, "reference run"), 0, "{}", sc.report());
}

#[test]
fn help_describes_compare() {
    let mut sc = Scenario::new("compare-help");
    let help = sc.start("help", bin!("zguide"), &["help", "compare"]);
    assert_eq!(sc.wait_exit(help, secs(30)), 0);
    for option in [
        "--reference DIR",
        "--mix",
        "--all",
        "--json",
        "--html FILE",
        "--no-stdbuf",
    ] {
        assert!(
            sc.output(help).contains(option),
            "{option}: {}",
            sc.report()
        );
    }
    let flag = sc.start("flag", bin!("zguide"), &["compare", "--help"]);
    assert_eq!(sc.wait_exit(flag, secs(30)), 0);
    assert_eq!(sc.output(flag), sc.output(help));
    let top = sc.start("top", bin!("zguide"), &["--help"]);
    assert_eq!(sc.wait_exit(top, secs(30)), 0);
    assert!(sc
        .output(top)
        .contains("zguide compare [OPTIONS] SCENARIO... --reference DIR"));
}
