//! How `zguide compare` shows its [`Report`]: text for the terminal (a
//! side-by-side view per part, differing lines marked, in colour on a
//! terminal without `NO_COLOR`), and one self-contained HTML file (inline
//! CSS, no scripts, no external assets, every text escaped). `--json` is the
//! report serialised as it is.

use std::io::Write;

use crate::compare::{PartReport, Report, ScenarioReport, Verdict};

/// Most rows of one part's side-by-side view; the rest is counted.
const MAX_ROWS: usize = 200;
/// Widest the "ours" column gets in text; longer lines are cut with `…`.
const MAX_COLUMN: usize = 60;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Writes to stdout, ignoring a closed pipe (`zguide compare … | head`).
pub fn print(text: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn pad(text: &str, width: usize) -> String {
    format!(
        "{text}{}",
        " ".repeat(width.saturating_sub(text.chars().count()))
    )
}

fn verdict_colour(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Same => GREEN,
        Verdict::Differs => YELLOW,
        Verdict::Failed | Verdict::InteropFailed => RED,
    }
}

/// One part, ours | reference, a `!` before each row that differs.
fn side_by_side(part: &PartReport, colour: bool, out: &mut String) {
    let rows = part.ours.len().max(part.reference.len());
    let state = match part.first_difference {
        None => "same".to_string(),
        Some(line) => format!("differs from line {line}"),
    };
    out.push_str(&format!(
        "   -- {}: {} lines ours, {} reference, {state}\n",
        part.label,
        part.ours.len(),
        part.reference.len()
    ));
    if rows == 0 {
        return;
    }
    let width = part
        .ours
        .iter()
        .map(|l| l.chars().count())
        .chain(["ours".len()])
        .max()
        .unwrap_or(0)
        .min(MAX_COLUMN);
    out.push_str(&format!("     {} | reference\n", pad("ours", width)));
    for i in 0..rows.min(MAX_ROWS) {
        let ours = part.ours.get(i).map_or("", String::as_str);
        let theirs = part.reference.get(i).map_or("", String::as_str);
        let differs = part.ours.get(i) != part.reference.get(i);
        let left = pad(&cut(ours, width), width);
        let right = cut(theirs, 2 * MAX_COLUMN);
        let line = match (differs, colour) {
            (false, _) => format!("     {left} | {right}\n"),
            (true, false) => format!("   ! {left} | {right}\n"),
            (true, true) => {
                format!("   {YELLOW}!{RESET} {RED}{left}{RESET} | {GREEN}{right}{RESET}\n")
            }
        };
        out.push_str(&line);
    }
    if rows > MAX_ROWS {
        out.push_str(&format!("     … {} more lines\n", rows - MAX_ROWS));
    }
}

fn runs_line(s: &ScenarioReport) -> String {
    let runs: Vec<String> = s
        .runs
        .iter()
        .map(|r| {
            let theirs = if r.kind == "ours" || r.theirs.is_empty() {
                String::new()
            } else {
                format!(" ({} theirs)", r.theirs.join(", "))
            };
            format!("{}{theirs} {} ({:.1} s)", r.kind, r.outcome, r.seconds)
        })
        .collect();
    runs.join("; ")
}

/// The text report: each scenario with its parts side by side, then a table.
pub fn text(report: &Report, colour: bool) -> String {
    let mut out = String::new();
    let bold = |t: &str| {
        if colour {
            format!("{BOLD}{t}{RESET}")
        } else {
            t.to_string()
        }
    };
    let verdict = |v: Verdict| {
        if colour {
            format!("{}{}{RESET}", verdict_colour(v), v.text())
        } else {
            v.text().to_string()
        }
    };
    let buffering = if report.line_buffered {
        " (its programs' stdout line-buffered by stdbuf -oL)"
    } else {
        ""
    };
    out.push_str(&bold(&format!(
        "== zguide compare: ours against {}{buffering}\n",
        report.reference
    )));
    for s in &report.scenarios {
        out.push('\n');
        let detail = if s.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.detail)
        };
        out.push_str(&format!(
            "{} {}{detail}\n",
            bold(&format!("== {}: {} —", s.name, s.title)),
            verdict(s.verdict)
        ));
        out.push_str(&format!("   runs: {}\n", runs_line(s)));
        if !s.ours_only.is_empty() {
            out.push_str(&format!(
                "   ours in every run (the reference has no such program): {}\n",
                s.ours_only.join(", ")
            ));
        }
        for part in &s.parts {
            side_by_side(part, colour, &mut out);
        }
    }

    out.push('\n');
    let name_width = report
        .scenarios
        .iter()
        .map(|s| s.name.chars().count())
        .chain(["SCENARIO".len()])
        .max()
        .unwrap_or(0);
    let verdict_width = "interop failed".len();
    out.push_str(&format!(
        "{}  {}  DETAIL\n",
        pad("SCENARIO", name_width),
        pad("VERDICT", verdict_width)
    ));
    for s in &report.scenarios {
        let padded = pad(s.verdict.text(), verdict_width);
        let shown = if colour {
            format!("{}{padded}{RESET}", verdict_colour(s.verdict))
        } else {
            padded
        };
        let row = format!(
            "{}  {shown}  {}",
            pad(&s.name, name_width),
            cut(&s.detail, 2 * MAX_COLUMN)
        );
        out.push_str(row.trim_end());
        out.push('\n');
    }
    let same = report
        .scenarios
        .iter()
        .filter(|s| s.verdict == Verdict::Same)
        .count();
    out.push_str(&bold(&format!(
        "== {same} of {} scenarios the same\n",
        report.scenarios.len()
    )));
    out
}

/// Text made safe for HTML, in an element or an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\t' => out.push_str(&format!("&#x{:x};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}\
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
td.line{font-family:monospace;white-space:pre-wrap}\
tr.diff td{background:#fde2e1}\
.same{color:#176f2c}.differs{color:#9a6700}.failed,.interop-failed{color:#b42318}\
";

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Same => "same",
        Verdict::Differs => "differs",
        Verdict::Failed => "failed",
        Verdict::InteropFailed => "interop-failed",
    }
}

/// One self-contained HTML page: the summary table, then each scenario.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<title>zguide compare</title>\n<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n<h1>zguide compare</h1>\n");
    out.push_str(&format!(
        "<p>Ours against the reference in <code>{}</code>. Lines are compared per part, in order, after \
         normalisation (clocks, ids, pids and timings replaced by placeholders).</p>\n",
        escape(&report.reference)
    ));
    out.push_str(
        "<table id=\"summary\">\n<thead><tr><th>Scenario</th><th>Verdict</th><th>Detail</th></tr></thead>\n<tbody>\n",
    );
    for s in &report.scenarios {
        out.push_str(&format!(
            "<tr><td><a href=\"#s-{name}\">{name}</a></td><td class=\"{class}\">{verdict}</td><td>{detail}</td></tr>\n",
            name = escape(&s.name),
            class = verdict_class(s.verdict),
            verdict = s.verdict.text(),
            detail = escape(&s.detail)
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    for s in &report.scenarios {
        out.push_str(&format!(
            "<section id=\"s-{}\">\n<h2>{}: {} — <span class=\"{}\">{}</span></h2>\n",
            escape(&s.name),
            escape(&s.name),
            escape(&s.title),
            verdict_class(s.verdict),
            s.verdict.text()
        ));
        if !s.detail.is_empty() {
            out.push_str(&format!("<p>{}</p>\n", escape(&s.detail)));
        }
        out.push_str(&format!("<p>Runs: {}</p>\n", escape(&runs_line(s))));
        if !s.ours_only.is_empty() {
            out.push_str(&format!(
                "<p>Ours in every run (the reference has no such program): {}</p>\n",
                escape(&s.ours_only.join(", "))
            ));
        }
        for part in &s.parts {
            out.push_str(&format!(
                "<h3>{}</h3>\n<table class=\"side\">\n<thead><tr><th>#</th><th>ours</th><th>reference</th></tr></thead>\n<tbody>\n",
                escape(&part.label)
            ));
            let rows = part.ours.len().max(part.reference.len());
            for i in 0..rows {
                let differs = part.ours.get(i) != part.reference.get(i);
                out.push_str(&format!(
                    "<tr{}><td>{}</td><td class=\"line\">{}</td><td class=\"line\">{}</td></tr>\n",
                    if differs { " class=\"diff\"" } else { "" },
                    i + 1,
                    escape(part.ours.get(i).map_or("", String::as_str)),
                    escape(part.reference.get(i).map_or("", String::as_str))
                ));
            }
            out.push_str("</tbody>\n</table>\n");
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::RunReport;

    fn report() -> Report {
        Report {
            reference: "/ref".into(),
            line_buffered: true,
            scenarios: vec![ScenarioReport {
                name: "hello".into(),
                title: "Hello <World>".into(),
                verdict: Verdict::Differs,
                detail: "hwclient line 2: ours \"b\", reference \"<script>\"".into(),
                ours_only: vec!["hwserver".into()],
                runs: vec![RunReport {
                    kind: "ours",
                    theirs: vec![],
                    ok: true,
                    outcome: "ok".into(),
                    seconds: 1.0,
                }],
                parts: vec![PartReport {
                    label: "hwclient".into(),
                    same: false,
                    first_difference: Some(2),
                    ours: vec!["a".into(), "b".into()],
                    reference: vec!["a".into(), "<script>".into()],
                }],
            }],
        }
    }

    #[test]
    fn text_marks_the_differing_rows_and_ends_with_a_table() {
        let plain = text(&report(), false);
        assert!(plain.contains("     a    | a\n"), "{plain}");
        assert!(plain.contains("   ! b    | <script>\n"), "{plain}");
        assert!(plain.contains("SCENARIO  VERDICT"), "{plain}");
        assert!(plain.contains("hello     differs"), "{plain}");
        assert!(!plain.contains('\x1b'));
        let coloured = text(&report(), true);
        assert!(
            coloured.contains(&format!("{RED}b   {RESET}")),
            "{coloured}"
        );
    }

    #[test]
    fn html_escapes_every_text_and_loads_nothing() {
        let page = html(&report());
        assert!(page.contains("<table id=\"summary\">"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("Hello &lt;World&gt;"));
        assert!(page.contains("<tr class=\"diff\"><td>2</td>"));
        assert!(!page.contains("http"));
        assert_eq!(escape("a\u{1b}b\"'&"), "a&#x1b;b&quot;&#39;&amp;");
    }
}
