//! The results: rows of figures, medians and ratios, and the three ways they
//! leave the program (a table on stdout, JSON and CSV files, an SVG plot).

use std::fmt::Write;

/// Which way is better for a row's figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Better {
    Higher,
    Lower,
}

/// One line of the table: a figure measured on our side and, optionally, on
/// the reference side.
#[derive(Clone, Debug)]
pub struct Row {
    pub group: String,
    pub test: String,
    pub size: Option<usize>,
    pub unit: &'static str,
    pub better: Better,
    /// The goal for ours ÷ reference (≥ for Higher, ≤ for Lower).
    pub goal: Option<f64>,
    pub secondary_unit: Option<&'static str>,
    pub detail: String,
    pub needs_reference: bool,
    pub reference_missing: bool,
    pub ours: Vec<f64>,
    pub reference: Vec<f64>,
    pub ours_secondary: Vec<f64>,
    pub reference_secondary: Vec<f64>,
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(
        group: &str,
        test: &str,
        unit: &'static str,
        better: Better,
        goal: Option<f64>,
    ) -> Row {
        Row {
            group: group.to_string(),
            test: test.to_string(),
            size: None,
            unit,
            better,
            goal,
            secondary_unit: None,
            detail: String::new(),
            needs_reference: false,
            reference_missing: false,
            ours: Vec::new(),
            reference: Vec::new(),
            ours_secondary: Vec::new(),
            reference_secondary: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// `tcp thr 64 B`, `tripping async`, …
    pub fn label(&self) -> String {
        match self.size {
            Some(size) => format!("{} {} {}", self.group, self.test, size_text(size)),
            None => format!("{} {}", self.group, self.test),
        }
    }

    pub fn push(&mut self, reference: bool, value: f64, secondary: Option<f64>) {
        let (values, secondaries) = if reference {
            (&mut self.reference, &mut self.reference_secondary)
        } else {
            (&mut self.ours, &mut self.ours_secondary)
        };
        values.push(value);
        if let Some(s) = secondary {
            secondaries.push(s);
        }
    }

    pub fn add_note(&mut self, note: &str) {
        let note = note.trim();
        if !note.is_empty() && !self.notes.iter().any(|n| n == note) {
            self.notes.push(note.to_string());
        }
    }

    pub fn ours_median(&self) -> Option<f64> {
        median(&self.ours)
    }

    pub fn reference_median(&self) -> Option<f64> {
        median(&self.reference)
    }

    /// Ours ÷ reference, of the medians.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.ours_median()? / self.reference_median()?)
    }

    /// Whether the ratio meets the goal.
    pub fn meets_goal(&self) -> Option<bool> {
        let (ratio, goal) = (self.ratio()?, self.goal?);
        Some(match self.better {
            Better::Higher => ratio >= goal,
            Better::Lower => ratio <= goal,
        })
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

pub fn size_text(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A figure in a compact, readable form: 4 significant digits.
pub fn figure(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.abs() >= 1000.0 => format!("{:.0}", v),
        Some(v) if v.abs() >= 100.0 => format!("{:.1}", v),
        Some(v) if v.abs() >= 10.0 => format!("{:.2}", v),
        Some(v) => format!("{:.3}", v),
    }
}

/// An axis label for 10^`exponent`: 0.1, 1, 10, 100, 1k … 1M …
fn decade_text(exponent: f64) -> String {
    let e = exponent.round() as i32;
    match e {
        i32::MIN..=-1 => format!("{}", 10f64.powi(e)),
        0..=2 => format!("{}", 10i64.pow(e as u32)),
        3..=5 => format!("{}k", 10i64.pow(e as u32 - 3)),
        6..=8 => format!("{}M", 10i64.pow(e as u32 - 6)),
        _ => format!("{}G", 10i64.pow(e as u32 - 9)),
    }
}

/// Run-level facts written with the figures.
pub struct Meta {
    pub repeat: usize,
    pub reference: Option<String>,
    pub load: String,
    pub cores: usize,
    pub libzmq: String,
    pub quick: bool,
}

/// The table printed at the end of a run.
pub fn table(rows: &[Row], with_reference: bool) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["test", "unit", "ours"];
    if with_reference {
        header.extend(["reference", "ratio", "goal"]);
    }
    header.push("also");
    lines.push(header.iter().map(|s| s.to_string()).collect());
    for row in rows {
        let mut line = vec![row.label(), row.unit.to_string(), figure(row.ours_median())];
        if with_reference {
            line.push(figure(row.reference_median()));
            line.push(row.ratio().map_or("-".into(), |r| format!("{r:.2}")));
            line.push(match (row.goal, row.meets_goal()) {
                (Some(goal), Some(met)) => format!(
                    "{}{goal} {}",
                    if row.better == Better::Higher {
                        ">="
                    } else {
                        "<="
                    },
                    if met { "met" } else { "MISSED" }
                ),
                _ => "-".into(),
            });
        }
        let mut also = Vec::new();
        if let Some(unit) = row.secondary_unit {
            let ours = median(&row.ours_secondary);
            if ours.is_some() {
                let mut text = format!("{} {unit}", figure(ours));
                if with_reference && !row.reference_secondary.is_empty() {
                    let _ = write!(text, " (ref. {})", figure(median(&row.reference_secondary)));
                }
                also.push(text);
            }
        }
        also.extend(row.notes.iter().cloned());
        line.push(also.join("; "));
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns - 1)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        for (c, cell) in line.iter().enumerate() {
            if c + 1 == columns {
                out.push_str(cell);
            } else if c == 0 {
                let _ = write!(out, "{cell:<width$}  ", width = widths[c]);
            } else {
                let _ = write!(out, "{cell:>width$}  ", width = widths[c]);
            }
        }
        out = out.trim_end().to_string();
        out.push('\n');
        if n == 0 {
            let total = widths.iter().map(|w| w + 2).sum::<usize>() + 4;
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".to_string(),
    }
}

fn json_list(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| json_number(Some(*v))).collect();
    format!("[{}]", items.join(", "))
}

/// All figures, every run's and the medians, as JSON.
pub fn json(rows: &[Row], meta: &Meta) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"repeat\": {},", meta.repeat);
    let _ = writeln!(out, "  \"quick\": {},", meta.quick);
    let _ = writeln!(
        out,
        "  \"reference\": {},",
        meta.reference.as_deref().map_or("null".into(), json_string)
    );
    let _ = writeln!(out, "  \"libzmq\": {},", json_string(&meta.libzmq));
    let _ = writeln!(out, "  \"cores\": {},", meta.cores);
    let _ = writeln!(out, "  \"load_average\": {},", json_string(&meta.load));
    out.push_str("  \"rows\": [\n");
    for (n, row) in rows.iter().enumerate() {
        let fields = [
            ("group", json_string(&row.group)),
            ("test", json_string(&row.test)),
            ("size", row.size.map_or("null".into(), |s| s.to_string())),
            ("unit", json_string(row.unit)),
            (
                "better",
                json_string(if row.better == Better::Higher {
                    "higher"
                } else {
                    "lower"
                }),
            ),
            ("ours", json_number(row.ours_median())),
            ("reference", json_number(row.reference_median())),
            ("ratio", json_number(row.ratio())),
            ("goal", json_number(row.goal)),
            (
                "goal_met",
                row.meets_goal().map_or("null".into(), |m| m.to_string()),
            ),
            (
                "secondary_unit",
                row.secondary_unit.map_or("null".into(), json_string),
            ),
            ("ours_secondary", json_number(median(&row.ours_secondary))),
            (
                "reference_secondary",
                json_number(median(&row.reference_secondary)),
            ),
            ("ours_runs", json_list(&row.ours)),
            ("reference_runs", json_list(&row.reference)),
            ("detail", json_string(&row.detail)),
            (
                "notes",
                format!(
                    "[{}]",
                    row.notes
                        .iter()
                        .map(|n| json_string(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        let _ = write!(out, "    {{{}}}", body.join(", "));
        out.push_str(if n + 1 < rows.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The medians as CSV, one row per line of the table.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "group,test,size,unit,ours,reference,ratio,goal,goal_met,secondary_unit,ours_secondary,reference_secondary,runs,notes\n",
    );
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    for row in rows {
        let cells = [
            csv_field(&row.group),
            csv_field(&row.test),
            row.size.map_or(String::new(), |s| s.to_string()),
            csv_field(row.unit),
            num(row.ours_median()),
            num(row.reference_median()),
            num(row.ratio()),
            num(row.goal),
            row.meets_goal().map_or(String::new(), |m| m.to_string()),
            row.secondary_unit.map_or(String::new(), csv_field),
            num(median(&row.ours_secondary)),
            num(median(&row.reference_secondary)),
            row.ours.len().to_string(),
            csv_field(&row.notes.join("; ")),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// A line of the plot: (size, value) points.
struct Series {
    name: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(usize, f64)>,
}

/// The size sweep as an SVG: throughput (Mb/s) and latency (µs) against the
/// message size, both axes logarithmic, ours solid and the reference dashed.
pub fn svg(rows: &[Row]) -> String {
    let panels = [
        ("thr", "throughput [Mb/s]", true),
        ("lat", "one-way latency [us]", false),
    ];
    let (panel_w, panel_h, margin) = (460.0, 320.0, 60.0);
    let width = 2.0 * (panel_w + margin) + margin;
    let height = panel_h + 2.0 * margin + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">zguide-rs: libzmq perf tools, message size sweep (medians)</text>"#,
        width / 2.0
    );
    for (p, (test, title, secondary)) in panels.iter().enumerate() {
        let x0 = margin + p as f64 * (panel_w + margin) + 20.0;
        let y0 = margin;
        let mut series = Vec::new();
        for (group, colour) in [("tcp", "#1f77b4"), ("inproc", "#d62728")] {
            for reference in [false, true] {
                let points: Vec<(usize, f64)> = rows
                    .iter()
                    .filter(|r| r.group == group && r.test == *test)
                    .filter_map(|r| {
                        let values = match (secondary, reference) {
                            (true, false) => &r.ours_secondary,
                            (true, true) => &r.reference_secondary,
                            (false, false) => &r.ours,
                            (false, true) => &r.reference,
                        };
                        Some((r.size?, median(values)?))
                    })
                    .filter(|(_, v)| *v > 0.0)
                    .collect();
                if !points.is_empty() {
                    series.push(Series {
                        name: format!("{group} {}", if reference { "reference" } else { "ours" }),
                        colour,
                        dashed: reference,
                        points,
                    });
                }
            }
        }
        plot_panel(&mut out, x0, y0, panel_w, panel_h, title, &series);
    }
    out.push_str("</svg>\n");
    out
}

fn plot_panel(out: &mut String, x0: f64, y0: f64, w: f64, h: f64, title: &str, series: &[Series]) {
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{title}</text>"#,
        x0 + w / 2.0,
        y0 - 8.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">message size</text>"#,
        x0 + w / 2.0,
        y0 + h + 34.0
    );
    let all: Vec<(usize, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text>"#,
            x0 + w / 2.0,
            y0 + h / 2.0
        );
        return;
    }
    let log = |v: f64| v.max(1e-9).log10();
    let (mut xmin, mut xmax) = (f64::MAX, f64::MIN);
    let (mut ymin, mut ymax) = (f64::MAX, f64::MIN);
    for &(s, v) in &all {
        xmin = xmin.min(log(s as f64));
        xmax = xmax.max(log(s as f64));
        ymin = ymin.min(log(v));
        ymax = ymax.max(log(v));
    }
    // Whole decades on the y axis; a little room on the x axis.
    let (ymin, ymax) = (ymin.floor(), ymax.ceil().max(ymin.floor() + 1.0));
    if xmax - xmin < 1e-9 {
        xmin -= 0.5;
        xmax += 0.5;
    }
    let px = |s: f64| x0 + 10.0 + (log(s) - xmin) / (xmax - xmin) * (w - 20.0);
    let py = |v: f64| y0 + h - (log(v) - ymin) / (ymax - ymin) * h;
    let mut decade = ymin;
    while decade <= ymax + 1e-9 {
        let y = py(10f64.powf(decade));
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 + w,
            x0 - 4.0,
            y + 4.0,
            decade_text(decade)
        );
        decade += 1.0;
    }
    let mut sizes: Vec<usize> = all.iter().map(|(s, _)| *s).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for s in sizes {
        let x = px(s as f64);
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
            y0 + h + 16.0,
            size_text(s).replace(' ', "")
        );
    }
    for (n, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(size, v)| format!("{:.1},{:.1}", px(size as f64), py(v)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6,4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            s.colour
        );
        for &(size, v) in &s.points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                px(size as f64),
                py(v),
                s.colour
            );
        }
        // The legend goes under the plot, in a row, clear of the data.
        let (lx, ly) = (x0 + 115.0 * n as f64, y0 + h + 56.0);
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            s.colour,
            lx + 30.0,
            ly + 4.0,
            s.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let mut row = Row::new("tcp", "lat", "us", Better::Lower, Some(1.05));
        row.push(false, 10.0, None);
        row.push(true, 10.0, None);
        assert_eq!(row.meets_goal(), Some(true));
        row.push(false, 30.0, None);
        row.push(false, 30.0, None);
        assert_eq!(row.meets_goal(), Some(false));
    }
}
