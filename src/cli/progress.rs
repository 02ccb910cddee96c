//! How the CLI shows what jobs report ([`lakecat_core::Progress`]): a bar with counts, rate and
//! ETA on a terminal; elsewhere (logs of scheduled jobs) a plain line every few seconds and one
//! when a phase ends. Log lines (epochs, retries) print above the bar.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lakecat_core::Progress;

/// Renders progress on standard error.
#[derive(Debug)]
pub struct Terminal {
    interactive: bool,
    phase: Mutex<Option<Phase>>,
}

#[derive(Debug)]
struct Phase {
    label: String,
    detail: String,
    bar: Option<ProgressBar>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Terminal {
    pub fn new() -> Self {
        Self { interactive: std::io::stderr().is_terminal(), phase: Mutex::new(None) }
    }

    fn with_phase(&self, action: impl FnOnce(&mut Phase)) {
        let mut phase = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(phase) = phase.as_mut() {
            action(phase);
        }
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Terminal {
    fn start(&self, label: &str, total: Option<u64>) {
        self.finish();
        let bar = self.interactive.then(|| {
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            let template = if total.is_some() {
                "{msg} [{bar:30}] {pos}/{len}, {per_sec}, ETA {eta}"
            } else {
                "{msg} {spinner} {pos}, {per_sec}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar
        });
        let now = Instant::now();
        let phase =
            Phase { label: label.into(), detail: String::new(), bar, total, done: 0, started: now, last_line: now };
        *self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(phase);
    }

    fn advance(&self, units: u64) {
        self.with_phase(|phase| {
            phase.done += units;
            match &phase.bar {
                Some(bar) => bar.inc(units),
                None if phase.last_line.elapsed() >= Duration::from_secs(5) => {
                    phase.last_line = Instant::now();
                    eprintln!("{}", phase.line());
                }
                None => {}
            }
        });
    }

    fn detail(&self, detail: &str) {
        self.with_phase(|phase| {
            phase.detail = detail.into();
            if let Some(bar) = &phase.bar {
                bar.set_message(format!("{} ({detail})", phase.label));
            }
        });
    }

    fn log(&self, line: &str) {
        let phase = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match phase.as_ref().and_then(|phase| phase.bar.as_ref()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        let finished = self.phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(phase) = finished {
            match &phase.bar {
                Some(bar) => bar.finish_and_clear(),
                None => eprintln!("{}", phase.line()),
            }
        }
    }
}

impl Phase {
    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        if self.total.is_none() && self.done == 0 {
            // A phase without units (an export): only its time.
            return format!("{}: {seconds:.1}s", self.label);
        }
        let rate = self.done as f64 / seconds;
        let of_total = self.total.map(|total| format!("/{total}")).unwrap_or_default();
        let eta = match self.total {
            Some(total) if rate > 0.0 && total > self.done => {
                format!(", ETA {:.0}s", (total - self.done) as f64 / rate)
            }
            _ => String::new(),
        };
        let detail = if self.detail.is_empty() { String::new() } else { format!(" ({})", self.detail) };
        format!("{}{detail}: {}{of_total}, {rate:.0}/s, {seconds:.1}s{eta}", self.label, self.done)
    }
}
