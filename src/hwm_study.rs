//! The high-water-mark study (study §1): a fast publisher, a slow
//! subscriber, and what the HWM changes. Behind `tspub --hwm-study`.
//!
//! For each HWM in the list, one run: a [`publish`] thread and a
//! [`subscribe`] thread, each with its own ZeroMQ context (as if they were
//! two processes), joined by TCP on loopback. Both ends get the HWM as
//! `ZMQ_SNDHWM` and `ZMQ_RCVHWM`. The publisher sends `rate` messages a
//! second for `duration`; the subscriber spends `slow` on every message, so
//! it cannot keep up, and queues fill: PUB drops (gaps appear) and what is
//! queued waits (latency grows). The subscriber stops at the publisher's end
//! markers; each run gives one [`Row`], and [`table`] and [`svg`] show them.
//!
//! Between the two queues sit the kernel's TCP buffers, which also hold
//! messages; `tcp_buffer` sets `ZMQ_SNDBUF`/`ZMQ_RCVBUF` (0: the OS default)
//! so that their share can be made small and the HWM's effect seen alone.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::pubsub_stats::{
    publish, publisher_socket, subscribe, subscriber_socket, Outcome, PublisherSettings,
    SubscriberSettings, SystemClock,
};
use crate::Error;

/// The study's settings; the `--study-*` flags of `tspub`.
#[derive(Clone, Debug)]
pub struct StudySettings {
    pub hwms: Vec<i32>,
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    pub slow: Duration,
    /// `ZMQ_SNDBUF` and `ZMQ_RCVBUF` in bytes on both ends; 0: OS default.
    pub tcp_buffer: i32,
}

/// One run's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub hwm: i32,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Row {
    pub fn lost_percent(&self) -> f64 {
        100.0 * self.lost as f64 / (self.sent.max(1)) as f64
    }
}

/// Runs the study: one run per HWM, in order; `progress` hears each row.
pub fn run(settings: &StudySettings, mut progress: impl FnMut(&Row)) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for &hwm in &settings.hwms {
        let row = one_run(settings, hwm)?;
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}

fn one_run(settings: &StudySettings, hwm: i32) -> Result<Row, Error> {
    let buffers = (settings.tcp_buffer, settings.tcp_buffer);
    let publisher_context = zmq::Context::new();
    let publisher = publisher_socket(&publisher_context, (hwm, hwm), buffers, 0)?;
    publisher.bind("tcp://127.0.0.1:*")?;
    let endpoint = publisher
        .get_last_endpoint()?
        .map_err(|_| Error::Protocol("no endpoint".into()))?;
    let subscriber_settings = SubscriberSettings {
        topics: vec![String::new()],
        slow: settings.slow,
        abort_after: None,
        report_every: Duration::from_secs(3600),
        publishers: 1,
        duration: None,
        json: false,
    };
    let done = Arc::new(AtomicBool::new(false));
    let subscriber_done = done.clone();
    let subscriber = std::thread::spawn(move || -> Result<Outcome, Error> {
        let context = zmq::Context::new();
        let socket = subscriber_socket(&context, (hwm, hwm), buffers, &[String::new()], 1 << 20)?;
        socket.connect(&endpoint)?;
        let outcome = subscribe(
            &socket,
            &subscriber_settings,
            &SystemClock,
            &mut std::io::sink(),
        );
        subscriber_done.store(true, Ordering::SeqCst);
        outcome
    });
    let publisher_settings = PublisherSettings {
        name: format!("hwm{hwm}"),
        rate: settings.rate,
        size: settings.size,
        topics: 1,
        duration: Some(settings.duration),
        count: None,
        wait_subscribers: 1,
        // Until the slow subscriber has drained its queue and seen the end.
        end_wait: Duration::from_secs(600),
        done: Some(done),
    };
    let sent = publish(&publisher, &publisher_settings, &SystemClock)?;
    let outcome = subscriber
        .join()
        .map_err(|_| Error::Protocol("the subscriber thread panicked".into()))??;
    let Outcome::Done(report) = outcome else {
        return Err(Error::Protocol("the subscriber aborted".into()));
    };
    let figures = report.publishers.first().cloned().unwrap_or_default();
    if figures.sent != Some(sent.sent) {
        log::warn!(
            "HWM {hwm}: the subscriber counted {:?} sent, the publisher {}",
            figures.sent,
            sent.sent
        );
    }
    Ok(Row {
        hwm,
        sent: sent.sent,
        received: figures.received,
        lost: figures.lost,
        p50_ms: report.latency_us.p50 / 1000.0,
        p99_ms: report.latency_us.p99 / 1000.0,
        max_ms: report.latency_us.max / 1000.0,
    })
}

/// The rows as a Markdown table.
pub fn table(settings: &StudySettings, rows: &[Row]) -> String {
    let mut out = format!(
        "Publisher {} msg/s × {} s, {} B; subscriber {} µs per message; TCP buffers {}.\n\n",
        settings.rate,
        settings.duration.as_secs_f64(),
        settings.size,
        settings.slow.as_micros(),
        if settings.tcp_buffer > 0 {
            format!("{} B", settings.tcp_buffer)
        } else {
            "OS default".into()
        }
    );
    out += "| HWM | sent | received | lost | lost % | latency p50 ms | p99 ms | max ms |\n";
    out += "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.hwm,
            r.sent,
            r.received,
            r.lost,
            r.lost_percent(),
            r.p50_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    out
}

/// Two panels against HWM (log scale): messages lost (%) and latency (ms,
/// p50 and p99), as a standalone SVG.
pub fn svg(rows: &[Row]) -> String {
    let (panel_w, panel_h, margin) = (380.0, 260.0, 60.0);
    let width = 2.0 * (panel_w + margin) + 20.0;
    let height = panel_h + 2.0 * margin;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    out += "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    let hwms: Vec<f64> = rows.iter().map(|r| f64::from(r.hwm.max(1))).collect();
    let lost: Vec<f64> = rows.iter().map(Row::lost_percent).collect();
    let p50: Vec<f64> = rows.iter().map(|r| r.p50_ms).collect();
    let p99: Vec<f64> = rows.iter().map(|r| r.p99_ms).collect();
    panel(
        &mut out,
        margin,
        margin,
        (panel_w, panel_h),
        "messages lost (%)",
        &hwms,
        &[("lost", "#c0392b", &lost)],
    );
    panel(
        &mut out,
        2.0 * margin + panel_w + 20.0,
        margin,
        (panel_w, panel_h),
        "latency (ms)",
        &hwms,
        &[("p50", "#2980b9", &p50), ("p99", "#8e44ad", &p99)],
    );
    out += "</svg>\n";
    out
}

/// One panel: log-scale x (HWM), linear y from 0, a polyline per series.
fn panel(
    out: &mut String,
    left: f64,
    top: f64,
    (w, h): (f64, f64),
    title: &str,
    xs: &[f64],
    series: &[(&str, &str, &[f64])],
) {
    let (x_min, x_max) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let (lx_min, lx_max) = (x_min.log10(), x_max.log10().max(x_min.log10() + 1e-9));
    let y_max = series
        .iter()
        .flat_map(|(_, _, ys)| ys.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x_at = |x: f64| left + (x.log10() - lx_min) / (lx_max - lx_min) * w;
    let y_at = |y: f64| top + h - y / y_max * h;
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#888"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"#,
        left + w / 2.0,
        top - 12.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">high-water mark (messages, log scale)</text>"#,
        left + w / 2.0,
        top + h + 36.0
    );
    for x in xs {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{x}</text>"#,
            x_at(*x),
            top + h + 16.0
        );
    }
    for tick in 0..=4 {
        let y = y_max / 1.1 * f64::from(tick) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + w,
            y_at(y),
            y_at(y),
            left - 6.0,
            y_at(y) + 4.0,
            format_tick(y)
        );
    }
    for (index, (name, colour, ys)) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(ys.iter())
            .map(|(x, y)| format!("{:.1},{:.1}", x_at(*x), y_at(*y)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for point in &points {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
        }
        let legend_y = top + 16.0 + 16.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{legend_y}" fill="{colour}">{name}</text>"#,
            left + 8.0
        );
    }
}

fn format_tick(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        [(10, 50.0), (100, 40.0), (1000, 10.0)]
            .into_iter()
            .map(|(hwm, lost)| Row {
                hwm,
                sent: 1000,
                received: 1000 - lost as u64 * 10,
                lost: lost as u64 * 10,
                p50_ms: 1.0,
                p99_ms: 2.0,
                max_ms: 3.0,
            })
            .collect()
    }

    #[test]
    fn the_table_has_a_row_per_hwm_and_the_svg_a_point_per_row() {
        let settings = StudySettings {
            hwms: vec![10, 100, 1000],
            rate: 1000,
            size: 64,
            duration: Duration::from_secs(1),
            slow: Duration::from_micros(100),
            tcp_buffer: 0,
        };
        let table = table(&settings, &rows());
        assert!(
            table.contains("| 10 | 1000 | 500 | 500 | 50.0 |"),
            "{table}"
        );
        assert_eq!(table.lines().filter(|l| l.starts_with("| 1")).count(), 3);
        let svg = svg(&rows());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 9, "3 series × 3 points");
    }

    /// Where everything goes: two panels of 380 × 260 with 60 px margins,
    /// x on a log scale from the smallest HWM to the largest, y linear from
    /// 0 to 1.1 × the largest value.
    #[test]
    fn the_svg_puts_each_point_and_label_where_the_scales_say() {
        let drawing = svg(&rows());
        for expected in [
            r#"width="900" height="380" viewBox="0 0 900 380""#,
            // Panel 1 at (60, 60); lost 50, 40, 10 % of a y_max of 55.
            r##"<rect x="60" y="60" width="380" height="260" fill="none" stroke="#888"/>"##,
            r#"<text x="250" y="48" text-anchor="middle" font-weight="bold">messages lost (%)</text>"#,
            r#"<text x="250" y="356" text-anchor="middle">high-water mark"#,
            r#"<text x="60.0" y="336" text-anchor="middle">10</text>"#,
            r#"<text x="250.0" y="336" text-anchor="middle">100</text>"#,
            r#"<text x="440.0" y="336" text-anchor="middle">1000</text>"#,
            r#"<polyline points="60.0,83.6 250.0,130.9 440.0,272.7""#,
            r#"<circle cx="250.0" cy="130.9" r="3""#,
            r##"<line x1="60" x2="440" y1="201.8" y2="201.8" stroke="#ddd"/><text x="54" y="205.8" text-anchor="end">25.0</text>"##,
            r##"<text x="68" y="76" fill="#c0392b">lost</text>"##,
            // Panel 2 at (520, 60); p50 1 ms and p99 2 ms of a y_max of 2.2.
            r##"<rect x="520" y="60" width="380" height="260""##,
            r##"<polyline points="520.0,201.8 710.0,201.8 900.0,201.8" fill="none" stroke="#2980b9""##,
            r##"<polyline points="520.0,83.6 710.0,83.6 900.0,83.6" fill="none" stroke="#8e44ad""##,
            r##"<text x="528" y="92" fill="#8e44ad">p99</text>"##,
        ] {
            assert!(drawing.contains(expected), "no {expected} in\n{drawing}");
        }
        // One HWM only: no division by a zero-width scale.
        let one = svg(&rows()[..1]);
        assert!(!one.contains("NaN") && !one.contains("inf"), "{one}");
    }

    /// A short real run per HWM over loopback TCP: every message sent is
    /// received or counted lost, and latencies are in milliseconds.
    #[test]
    fn a_run_measures_one_row_per_hwm() {
        let settings = StudySettings {
            hwms: vec![1000, 2000],
            rate: 1000,
            size: 32,
            duration: Duration::from_millis(200),
            slow: Duration::ZERO,
            tcp_buffer: 0,
        };
        let mut heard = Vec::new();
        let rows = run(&settings, |row| heard.push(row.hwm)).unwrap();
        assert_eq!(heard, [1000, 2000]);
        assert_eq!(rows.iter().map(|r| r.hwm).collect::<Vec<_>>(), [1000, 2000]);
        for row in &rows {
            assert!(row.sent > 0, "{row:?}");
            assert_eq!(row.received + row.lost, row.sent, "{row:?}");
            assert_eq!(row.lost, 0, "nothing lost, nothing slow: {row:?}");
            // Milliseconds, not microseconds: loopback takes well under
            // a few seconds per message.
            assert!(row.max_ms < 5000.0, "{row:?}");
            assert!(
                row.p50_ms <= row.p99_ms && row.p99_ms <= row.max_ms,
                "{row:?}"
            );
        }
    }
}
