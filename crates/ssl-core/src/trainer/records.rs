//! What training leaves behind: the summary of a run, the lines of `metrics.jsonl`, and the
//! gate the benchmark uses between windows.
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
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

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub samples_per_s: f64,
    pub wall_time: f64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Called after each logged window with its metrics line; the time it takes is left out of the
/// next window. `Ok(false)` ends training there (no checkpoint is written): the benchmark uses it
/// to alternate timed windows with another process ([`crate::bench`]).
pub type WindowGate = Arc<dyn Fn(&MetricsLine) -> Result<bool> + Send + Sync>;

fn read_metric_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// Read `metrics.jsonl` of a run directory.
pub fn read_metrics(run_dir: &Path) -> Vec<MetricsLine> {
    read_metric_lines(&run_dir.join("metrics.jsonl")).iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`), 0 where unavailable.
pub fn process_cpu_secs() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on every Linux configuration in use.
    (ticks(11) + ticks(12)) / 100.0
}
