//! Labelled output: every line a part prints is shown as `[label] line`.
//!
//! All parts write to pipes that reader threads drain; each thread hands what
//! it read to the one [`Printer`], which owns the runner's stdout. Programs
//! such as `taskwork` print progress without a newline (`23.45.12.`), so the
//! printer keeps an "open" line: more text from the same part continues it,
//! and anything from another part first ends it. The reader sees the dots as
//! they come and every line still carries exactly one label.
//!
//! Colour (a colour per label, stderr text dimmed) is used only when stdout is
//! a terminal and `NO_COLOR` is unset (<https://no-color.org>). Without colour,
//! stderr lines are labelled `[label:err]`.
//!
//! For `zguide compare`, a printer can also *capture*: it keeps each label's
//! complete stdout lines, to be taken after the run with
//! [`Printer::take_captured`]. What it prints is unchanged (`compare` gives
//! it a sink).

use std::io::{IsTerminal, Write};

/// Which pipe of a part a chunk of text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Label colours, cycled through by part index (red is left for errors).
const COLOURS: [&str; 6] = ["36", "33", "35", "32", "34", "96"];
const RESET: &str = "\x1b[0m";

/// The runner's single writer to its stdout. See the module docs.
pub struct Printer {
    out: Box<dyn Write + Send>,
    colour: bool,
    labels: Vec<String>,
    /// Colour index of each label (instances of one part share a colour).
    colours: Vec<usize>,
    /// Labels are padded to this width so the text columns line up.
    width: usize,
    /// The label index and stream of a line printed without its newline yet.
    open: Option<(usize, Stream)>,
    /// When capturing: per label, its complete stdout lines and the line
    /// still open.
    captured: Option<Vec<(Vec<String>, Vec<u8>)>>,
}

/// Most bytes of one captured line; the rest is cut (a program printing
/// without newlines must not grow the runner without bound).
const CAPTURED_LINE_MAX: usize = 64 * 1024;
/// Most lines captured per label; later ones are dropped.
const CAPTURED_LINES_MAX: usize = 100_000;

/// True when colour should be used on the runner's stdout.
pub fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

impl Printer {
    /// A printer on the process's stdout, with colour if [`colour_wanted`].
    pub fn stdout() -> Printer {
        Printer::new(Box::new(std::io::stdout()), colour_wanted())
    }

    pub fn new(out: Box<dyn Write + Send>, colour: bool) -> Printer {
        Printer {
            out,
            colour,
            labels: Vec::new(),
            colours: Vec::new(),
            width: 0,
            open: None,
            captured: None,
        }
    }

    /// A printer that writes to `out` and also captures each label's stdout
    /// lines (see [`Printer::take_captured`]).
    pub fn capturing(out: Box<dyn Write + Send>) -> Printer {
        let mut printer = Printer::new(out, false);
        printer.captured = Some(Vec::new());
        printer
    }

    /// The stdout lines captured since the labels were last set, as
    /// `(label, lines)`; a last line without a newline counts as a line.
    pub fn take_captured(&mut self) -> Vec<(String, Vec<String>)> {
        let Some(captured) = self.captured.as_mut() else {
            return Vec::new();
        };
        let taken = std::mem::take(captured);
        *captured = vec![(Vec::new(), Vec::new()); self.labels.len()];
        self.labels
            .iter()
            .cloned()
            .zip(taken)
            .map(|(label, (mut lines, open))| {
                if !open.is_empty() {
                    lines.push(String::from_utf8_lossy(&open).into_owned());
                }
                (label, lines)
            })
            .collect()
    }

    fn capture(&mut self, index: usize, text: &[u8], newline: bool) {
        let Some((lines, open)) = self.captured.as_mut().and_then(|c| c.get_mut(index)) else {
            return;
        };
        if open.len() < CAPTURED_LINE_MAX {
            open.extend_from_slice(text);
        }
        if newline {
            let line = std::mem::take(open);
            if lines.len() < CAPTURED_LINES_MAX {
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }

    /// Sets the labels of the next run: `(label, colour group)` per process.
    pub fn set_labels(&mut self, labels: Vec<(String, usize)>) {
        self.close_open_line();
        self.width = labels
            .iter()
            .map(|(l, _)| l.chars().count() + 2)
            .max()
            .unwrap_or(0);
        self.colours = labels.iter().map(|(_, c)| *c).collect();
        if let Some(captured) = self.captured.as_mut() {
            *captured = vec![(Vec::new(), Vec::new()); labels.len()];
        }
        self.labels = labels.into_iter().map(|(l, _)| l).collect();
    }

    /// Prints `bytes` that the process with label index `index` wrote to `stream`.
    pub fn part(&mut self, index: usize, stream: Stream, bytes: &[u8]) {
        for segment in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, newline) = match segment.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (segment, false),
            };
            if stream == Stream::Stdout {
                self.capture(index, text, newline);
            }
            if self.open != Some((index, stream)) {
                self.close_open_line();
                self.write_label(index, stream);
            }
            if self.colour && stream == Stream::Stderr {
                self.write(b"\x1b[2m");
                self.write(text);
                self.write(RESET.as_bytes());
            } else {
                self.write(text);
            }
            if newline {
                self.write(b"\n");
                self.open = None;
            } else {
                self.open = Some((index, stream));
            }
        }
        let _ = self.out.flush();
    }

    /// Prints one of the runner's own lines (`== …`), bold when in colour.
    pub fn note(&mut self, text: &str) {
        self.close_open_line();
        for line in text.lines() {
            let line = if self.colour {
                format!("\x1b[1m== {line}{RESET}\n")
            } else {
                format!("== {line}\n")
            };
            self.write(line.as_bytes());
        }
        let _ = self.out.flush();
    }

    /// An empty line between runs.
    pub fn blank_line(&mut self) {
        self.close_open_line();
        self.write(b"\n");
        let _ = self.out.flush();
    }

    /// Ends a line a part left open, so the next output starts on its own line.
    pub fn close_open_line(&mut self) {
        if self.open.take().is_some() {
            self.write(b"\n");
            let _ = self.out.flush();
        }
    }

    fn write_label(&mut self, index: usize, stream: Stream) {
        let label = self.labels.get(index).map_or("?", String::as_str);
        let tag = match stream {
            Stream::Stdout => format!("[{label}]"),
            Stream::Stderr if self.colour => format!("[{label}]"),
            Stream::Stderr => format!("[{label}:err]"),
        };
        let pad = " ".repeat(self.width.saturating_sub(tag.chars().count()) + 1);
        let text = if self.colour {
            let colour = COLOURS[self.colours.get(index).copied().unwrap_or(0) % COLOURS.len()];
            format!("\x1b[{colour}m{tag}{RESET}{pad}")
        } else {
            format!("{tag}{pad}")
        };
        self.write(text.as_bytes());
    }

    /// Writes, ignoring errors: a closed stdout (`zguide run | head`) must not
    /// stop the runner from stopping its parts.
    fn write(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` whose contents the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn printer(colour: bool) -> (Printer, Shared) {
        let buffer = Shared::default();
        let mut printer = Printer::new(Box::new(buffer.clone()), colour);
        printer.set_labels(vec![
            ("hwserver".into(), 0),
            ("tasksink".into(), 1),
            ("w-1".into(), 2),
        ]);
        (printer, buffer)
    }

    fn text(buffer: &Shared) -> String {
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn every_line_gets_its_padded_label() {
        let (mut p, buffer) = printer(false);
        p.part(0, Stream::Stdout, b"Received Hello\nReceived");
        p.part(0, Stream::Stdout, b" Hello\n");
        p.part(2, Stream::Stderr, b"W: oops\n");
        p.note("hwserver exited 0");
        assert_eq!(
            text(&buffer),
            "[hwserver] Received Hello\n[hwserver] Received Hello\n[w-1:err]  W: oops\n== hwserver exited 0\n"
        );
    }

    #[test]
    fn progress_without_newlines_continues_until_another_part_speaks() {
        let (mut p, buffer) = printer(false);
        p.part(1, Stream::Stdout, b":..");
        p.part(1, Stream::Stdout, b"..");
        p.part(2, Stream::Stdout, b"12.");
        p.part(1, Stream::Stdout, b".Total elapsed time: 5 msec\n");
        p.part(2, Stream::Stdout, b"7.");
        p.close_open_line();
        assert_eq!(
            text(&buffer),
            "[tasksink] :....\n[w-1]      12.\n[tasksink] .Total elapsed time: 5 msec\n[w-1]      7.\n"
        );
    }

    #[test]
    fn a_capturing_printer_keeps_each_labels_stdout_lines() {
        let buffer = Shared::default();
        let mut p = Printer::capturing(Box::new(buffer.clone()));
        p.set_labels(vec![("a".into(), 0), ("b".into(), 1)]);
        p.part(0, Stream::Stdout, b"one\ntw");
        p.part(1, Stream::Stdout, b"other\n");
        p.part(1, Stream::Stderr, b"W: not captured\n");
        p.part(0, Stream::Stdout, b"o\nthree");
        let captured = p.take_captured();
        assert_eq!(
            captured,
            [
                (
                    "a".to_string(),
                    vec!["one".to_string(), "two".into(), "three".into()]
                ),
                ("b".to_string(), vec!["other".to_string()]),
            ]
        );
        assert!(text(&buffer).contains("[b:err] W: not captured"));
        // The next run starts empty.
        p.set_labels(vec![("c".into(), 0)]);
        assert_eq!(p.take_captured(), [("c".to_string(), vec![])]);
        // A plain printer captures nothing.
        let (mut plain, _) = printer(false);
        plain.part(0, Stream::Stdout, b"x\n");
        assert!(plain.take_captured().is_empty());
    }

    #[test]
    fn colour_marks_labels_and_dims_stderr() {
        let (mut p, buffer) = printer(true);
        p.part(0, Stream::Stdout, b"out\n");
        p.part(0, Stream::Stderr, b"err\n");
        assert_eq!(
            text(&buffer),
            "\x1b[36m[hwserver]\x1b[0m out\n\x1b[36m[hwserver]\x1b[0m \x1b[2merr\x1b[0m\n"
        );
    }
}
