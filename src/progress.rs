//! Progress of long work: a bar with rows, rows/s and ETA on a terminal, a plain line every few
//! seconds elsewhere (logs of scheduled jobs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    label: String,
    detail: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Self {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            let template = if total.is_some() {
                "{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}"
            } else {
                "{msg} {spinner} {pos} rows, {per_sec}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(label.clone());
            bar
        });
        let now = Instant::now();
        Self { label, detail: String::new(), bar, total, done: 0, started: now, last_line: now }
    }

    /// Counters shown after the label (e.g. "12 failed").
    pub fn set_detail(&mut self, detail: impl Into<String>) {
        self.detail = detail.into();
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} ({})", self.label, self.detail));
        }
    }

    pub fn advance(&mut self, rows: u64) {
        self.done += rows;
        match &self.bar {
            Some(bar) => bar.inc(rows),
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    pub fn finish(self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}", self.line()),
        }
    }

    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / seconds;
        let of_total = self.total.map(|total| format!("/{total}")).unwrap_or_default();
        let eta = match self.total {
            Some(total) if rate > 0.0 && total > self.done => {
                format!(", ETA {:.0}s", (total - self.done) as f64 / rate)
            }
            _ => String::new(),
        };
        let detail = if self.detail.is_empty() { String::new() } else { format!(" ({})", self.detail) };
        format!("{}{detail}: {}{of_total} rows, {rate:.0} rows/s, {seconds:.1}s{eta}", self.label, self.done)
    }
}
