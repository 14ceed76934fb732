//! The pretraining part of `report.json`, typed.
use serde::{Deserialize, Serialize};

/// What pretraining did, as the report shows it. Absent from an `--eval-only` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PretrainingSummary {
    /// Optimizer steps the run has reached.
    pub steps: u64,
    /// The step this process resumed from, if it resumed.
    pub resumed_from: Option<u64>,
    /// The last finite loss; NaN when no step ran (`--steps 0 --init-from`) or none was finite.
    /// JSON has no NaN: it is written as `null` and read back as NaN.
    #[serde(deserialize_with = "nan_if_null")]
    pub final_loss: f64,
    /// Wall-clock and CPU seconds of the pretraining in this process.
    pub wall_secs: f64,
    pub cpu_secs: f64,
    pub samples_per_s: f64,
    /// Steps whose update was skipped because the loss or gradient was not finite.
    pub nonfinite_steps: u64,
    /// Training items the loader skipped as unreadable.
    pub skipped_inputs: u64,
    /// The pretraining peak resident memory estimated before the first step, in bytes (a forked
    /// child's measured step plus the optimizer state and the loader's batches); compare with
    /// the report's `memory.peak_resident_bytes`. Absent where the check did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_estimate_bytes: Option<u64>,
    /// The process's peak resident memory when pretraining ended (`VmHWM`), in bytes: what the
    /// estimate estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_resident_bytes: Option<u64>,
}

fn gib(bytes: Option<u64>) -> String {
    bytes.map(|b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)).unwrap_or_else(|| "-".into())
}

/// A number that JSON holds as `null` when it was NaN (serde_json writes NaN as `null`).
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
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
            ("peak memory, estimated before the first step", gib(self.memory_estimate_bytes)),
            ("peak memory, measured", gib(self.peak_resident_bytes)),
            ("training inputs skipped", self.skipped_inputs.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_a_finite_loss_reads_back() {
        let s = PretrainingSummary {
            steps: 0,
            resumed_from: None,
            final_loss: f64::NAN,
            wall_secs: 1.0,
            cpu_secs: 0.0,
            samples_per_s: 0.0,
            nonfinite_steps: 0,
            skipped_inputs: 0,
            memory_estimate_bytes: None,
            peak_resident_bytes: None,
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"final_loss\":null"), "{json}");
        let back: PretrainingSummary = serde_json::from_str(&json).unwrap();
        assert!(back.final_loss.is_nan() && back.steps == 0);
        let finite: PretrainingSummary =
            serde_json::from_str(&json.replace("\"final_loss\":null", "\"final_loss\":2.5")).unwrap();
        assert_eq!(finite.final_loss, 2.5);
    }
}
