//! What training leaves behind: the summary of a run, and the gate the benchmark uses between
//! windows (the lines of `metrics.jsonl` are [`crate::sinks::MetricsLine`]).
use crate::error::Result;
use crate::sinks::MetricsLine;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// What a finished (or resumed-and-finished) run reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainSummary {
    /// What `report.json` shows: steps, resumption, final loss, wall and CPU seconds (user +
    /// system, all threads, where the OS reports it), throughput, skipped steps and inputs.
    #[serde(flatten)]
    pub report: ssl_records::summary::PretrainingSummary,
    /// `(step, loss)` of every step run in this process.
    pub losses: Vec<(u64, f64)>,
    pub checkpoint: Option<PathBuf>,
}

/// Called after each logged window with its metrics line; the time it takes is left out of the
/// next window. `Ok(false)` ends training there (no checkpoint is written): the benchmark uses it
/// to alternate timed windows with another process ([`crate::bench`]).
pub type WindowGate = Arc<dyn Fn(&MetricsLine) -> Result<bool> + Send + Sync>;
