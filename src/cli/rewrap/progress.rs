//! How a running job shows its progress: an indicatif bar when stderr is a
//! terminal (items done, items/s, ETA, failures), and otherwise a plain line
//! on stderr every `interval`, so logs of unattended runs stay readable.
//!
//! It only displays counters it is handed; it counts nothing itself.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::Counts;

/// What the progress total measures.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    /// Rows (the total is a row count).
    Rows,
    /// Bytes of input (the total is the file size).
    Bytes,
}

/// The progress display of one job.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    unit: Unit,
    total: Option<u64>,
    started: Instant,
    last_line: Instant,
    interval: Duration,
}

impl Progress {
    /// A display for a job whose size is `total` `unit`s, if known; `done`
    /// of them were done by earlier runs (a resumed job).
    pub(super) fn new(unit: Unit, total: Option<u64>, done: u64, interval: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = match unit {
                Unit::Rows => {
                    "{elapsed_precise} [{bar:30}] {pos}/{len} rows ({per_sec}, ETA {eta}) {msg}"
                }
                Unit::Bytes => {
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}"
                }
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(done);
            bar.reset_eta();
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            unit,
            total,
            started: now,
            last_line: now,
            interval,
        }
    }

    /// Shows that the job is at `position` (rows or bytes) with `counts`.
    pub(super) fn update(&mut self, position: u64, counts: &Counts) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.set_message(message(counts, self.started.elapsed()));
            return;
        }
        if self.last_line.elapsed() >= self.interval {
            self.last_line = Instant::now();
            eprintln!("{}", self.line(position, counts));
        }
    }

    /// Clears the bar (the summary follows) or prints a last line.
    pub(super) fn finish(&mut self, position: u64, counts: &Counts) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}", self.line(position, counts)),
        }
    }

    fn line(&self, position: u64, counts: &Counts) -> String {
        let of = match (self.total, self.unit) {
            (Some(total), Unit::Rows) => format!(" of {total}"),
            (Some(total), Unit::Bytes) => {
                let percent = if total == 0 {
                    100.0
                } else {
                    position as f64 * 100.0 / total as f64
                };
                format!(" ({percent:.1}% of the input)")
            }
            (None, _) => String::new(),
        };
        let done = match self.unit {
            Unit::Rows => format!("{position} rows"),
            Unit::Bytes => format!("{} items", counts.seen),
        };
        format!(
            "rewrap: {done}{of}; {}",
            message(counts, self.started.elapsed())
        )
    }
}

fn message(counts: &Counts, elapsed: Duration) -> String {
    let rate = counts.seen as f64 / elapsed.as_secs_f64().max(1e-3);
    format!(
        "{:.0} items/s, {} rewrapped, {} skipped, {} failed, {} changed meanwhile",
        rate, counts.rewrapped, counts.skipped, counts.failed, counts.changed
    )
}
