//! The pretraining part of `report.json`, typed.
use serde::{Deserialize, Serialize};

/// What pretraining did, as the report shows it. Absent from an `--eval-only` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainingSummary {
    /// Optimizer steps the run has reached.
    pub steps: u64,
    /// The step this process resumed from, if it resumed.
    pub resumed_from: Option<u64>,
    pub final_loss: f64,
    /// Wall-clock and CPU seconds of the pretraining in this process.
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub samples_per_s: f64,
    /// Steps whose update was skipped because the loss or gradient was not finite.
    pub nonfinite_steps: u64,
    /// Training items the loader skipped as unreadable.
    pub skipped_inputs: u64,
}

impl PretrainingSummary {
    /// `(field, value)` rows for a two-column table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("steps", self.steps.to_string()),
            ("resumed from step", self.resumed_from.map(|s| s.to_string()).unwrap_or_else(|| "-".into())),
            ("final loss", format!("{:.4}", self.final_loss)),
            ("wall time", format!("{:.0} s", self.wall_secs)),
            ("CPU time", format!("{:.0} CPU-s", self.cpu_secs)),
            ("throughput", format!("{:.1} samples/s", self.samples_per_s)),
            ("non-finite steps skipped", self.nonfinite_steps.to_string()),
            ("training inputs skipped", self.skipped_inputs.to_string()),
        ]
    }
}
