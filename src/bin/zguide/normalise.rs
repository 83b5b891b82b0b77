//! Normalising the lines two runs print before `zguide compare` compares them.
//!
//! Two correct runs of one example never print exactly the same text: clocks,
//! random identities, pids and timings differ from run to run. Each rule
//! replaces such a token by a placeholder (`<time>`, `<id>`, `<n>` …), so
//! that only what the program *means* is compared. The defaults below apply
//! to every scenario; a scenario file adds its own in a `[compare]` table:
//! `ignore` (lines matching one of these regexes are dropped) and `replace`
//! (each `pattern` replaced by `with`, `$1` for a group), applied in that
//! order before the defaults.

use regex::{Captures, Regex};

use crate::scenario::CompareRules;

/// The default rules, in the order they apply: `(pattern, replacement)`.
/// The longer, more specific tokens come first, so that a UUID is not first
/// cut into times or hex runs.
const DEFAULTS: [(&str, &str); 9] = [
    // ISO 8601 dates, with or without a time: 2026-11-26, 2026-11-26T01:46:01.123Z.
    (
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b",
        "<date>",
    ),
    // Clock times: 12:34:56, 12:34:56.789.
    (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
    // UUIDs, with dashes or as 32 hex digits (czmq's zuuid_str).
    (
        r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b",
        "<uuid>",
    ),
    (r"\b[0-9A-Fa-f]{32}\b", "<uuid>"),
    // The guide's printable random ids (`s_set_id`: %04X-%04X).
    (r"\b[0-9A-F]{4}-[0-9A-F]{4}\b", "<id>"),
    // Pids: the runner's `(pid N)`, and `pid N`, `pid=N` in programs' lines.
    (r"\bpid[ =:]?\d+", "pid <n>"),
    // Timings: `123 msec`, `0.5 s`, `12ms`.
    (
        r"\b\d+(?:[.,]\d+)?\s*(msec|millisecs?|milliseconds?|usec|microseconds?|µs|us|ms|ns|secs?|seconds?)\b",
        "<n> $1",
    ),
    // Rates: `1234 calls/second`, `56 msg/sec`.
    (r"\d+(?:[.,]\d+)?(\s*[\w-]+/s(?:ec(?:ond)?)?)\b", "<n>$1"),
    // Binary identities as frame dumps show them: `[005] 006B8B4567`; see
    // `hex_run` for the general case.
    (r"(\[\d{3}\] )[0-9A-F]{10}\b", "$1<id>"),
];

/// Runs of upper-case hex digits (8 or more, an even number, at least one a
/// digit and one a letter) are binary identities or random bytes: `<hex>`.
const HEX_RUN: &str = r"\b(?:[0-9A-F]{2}){4,}\b";

/// One `replace` rule.
struct Rule {
    pattern: Regex,
    with: String,
}

/// The compiled rules of one scenario, defaults included.
pub struct Normaliser {
    ignore: Vec<Regex>,
    rules: Vec<Rule>,
    hex_run: Regex,
}

impl Normaliser {
    /// The defaults and `custom` (a scenario's `[compare]` table). An error
    /// names the regex that does not compile.
    pub fn new(custom: &CompareRules) -> Result<Normaliser, String> {
        let compile =
            |pattern: &str| Regex::new(pattern).map_err(|e| format!("bad regex {pattern:?}: {e}"));
        let ignore = custom
            .ignore
            .iter()
            .map(|p| compile(p))
            .collect::<Result<_, _>>()?;
        let mut rules = Vec::new();
        for r in &custom.replace {
            rules.push(Rule {
                pattern: compile(&r.pattern)?,
                with: r.with.clone(),
            });
        }
        for (pattern, with) in DEFAULTS {
            rules.push(Rule {
                pattern: compile(pattern)?,
                with: with.to_string(),
            });
        }
        Ok(Normaliser {
            ignore,
            rules,
            hex_run: compile(HEX_RUN)?,
        })
    }

    /// The line as compared, or `None` if an `ignore` rule drops it.
    pub fn line(&self, line: &str) -> Option<String> {
        if self.ignore.iter().any(|r| r.is_match(line)) {
            return None;
        }
        let mut text = line.trim_end().to_string();
        for rule in &self.rules {
            text = rule
                .pattern
                .replace_all(&text, rule.with.as_str())
                .into_owned();
        }
        let text = self.hex_run.replace_all(&text, |c: &Captures| {
            let run = &c[0];
            let digit = run.bytes().any(|b| b.is_ascii_digit());
            let letter = run.bytes().any(|b| b.is_ascii_uppercase());
            if digit && letter {
                "<hex>".to_string()
            } else {
                run.to_string()
            }
        });
        Some(text.into_owned())
    }

    /// Every line that is kept, normalised.
    pub fn lines(&self, lines: &[String]) -> Vec<String> {
        lines.iter().filter_map(|l| self.line(l)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{CompareRules, Replace};

    fn defaults() -> Normaliser {
        Normaliser::new(&CompareRules::default()).unwrap()
    }

    #[test]
    fn clocks_ids_pids_and_timings_become_placeholders() {
        let n = defaults();
        let cases = [
            ("12:34:56 I: worker ready", "<time> I: worker ready"),
            ("26-11-26 01:46:01.123 E: x", "26-11-26 <time> E: x"),
            ("at 2026-11-26T01:46:01Z done", "at <date> done"),
            ("2026-11-26", "<date>"),
            ("[005] 006B8B4567", "[005] <id>"),
            ("[017] 0080000029", "[017] <id>"),
            ("id 550e8400-e29b-41d4-a716-446655440000", "id <uuid>"),
            ("uuid 0123456789ABCDEF0123456789abcdef", "uuid <uuid>"),
            ("Worker: A1B2-C3D4 ready", "Worker: <id> ready"),
            (
                "== started hwserver (pid 20919): hwserver",
                "== started hwserver (pid <n>): hwserver",
            ),
            (
                "Total elapsed time: 123 msec",
                "Total elapsed time: <n> msec",
            ),
            ("took 0.52 s", "took 0.52 s"),
            ("took 12ms", "took <n> ms"),
            (" 4823 calls/second", " <n> calls/second"),
            ("identity 00A1B2C3D4E5", "identity <hex>"),
            // What must stay: words, counts, plain numbers.
            ("Received World 9", "Received World 9"),
            ("DEADBEEF CAFEBABE", "DEADBEEF CAFEBABE"),
            ("12345678", "12345678"),
            ("[000]", "[000]"),
            ("Sending Hello 3...", "Sending Hello 3..."),
        ];
        for (raw, expected) in cases {
            assert_eq!(n.line(raw).as_deref(), Some(expected), "{raw:?}");
        }
    }

    #[test]
    fn runs_that_differ_only_by_such_tokens_normalise_alike() {
        let n = defaults();
        let ours = ["12:00:01 [005] 006B8B4567 took 5 msec", "A1B2-C3D4 ok"];
        let theirs = ["23:59:59 [005] 00A0C3D4E5 took 17 msec", "FFFF-0000 ok"];
        let norm =
            |lines: &[&str]| n.lines(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
        assert_eq!(norm(&ours), norm(&theirs));
        assert_ne!(norm(&["Received World 1"]), norm(&["Received World 2"]));
    }

    #[test]
    fn a_scenario_adds_ignore_and_replace_rules() {
        let custom = CompareRules {
            ignore: vec!["^D: ".into(), "heartbeat".into()],
            replace: vec![Replace {
                pattern: r"worker (\d+)".into(),
                with: "worker N".into(),
            }],
        };
        let n = Normaliser::new(&custom).unwrap();
        assert_eq!(n.line("D: debug"), None);
        assert_eq!(n.line("sent heartbeat"), None);
        assert_eq!(n.line("worker 7 done").as_deref(), Some("worker N done"));
        let bad = CompareRules {
            ignore: vec!["(".into()],
            replace: vec![],
        };
        assert!(Normaliser::new(&bad).err().unwrap().contains("bad regex"));
    }
}
