//! What long jobs (training, refresh, import, audit) tell whoever runs them. Libraries report
//! through [`Progress`]; the CLI renders bars and log lines, a program embedding the jobs can
//! record, forward or ignore the events. Every method does nothing unless implemented.

use std::fmt::Debug;

/// Receives a job's progress. Called from the job's threads, hence `&self` and `Sync`.
pub trait Progress: Debug + Send + Sync {
    /// A phase of work begins (e.g. "encoding", "training", "refresh: scoring") with `total`
    /// units (rows, batches) when known; it replaces the previous phase.
    fn start(&self, phase: &str, total: Option<u64>) {
        let _ = (phase, total);
    }

    /// `units` more of the current phase are done.
    fn advance(&self, units: u64) {
        let _ = units;
    }

    /// Counters of the current phase worth showing next to it (e.g. "3 failed").
    fn detail(&self, detail: &str) {
        let _ = detail;
    }

    /// A line for the log: an epoch's metrics, a retry, a summary.
    fn log(&self, line: &str) {
        let _ = line;
    }

    /// The current phase is over.
    fn finish(&self) {}
}

/// Ignores every event: the default of every job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}
