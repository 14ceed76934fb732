//! `report.json` and `report.md`: the evidence every pretraining run ends with.
//! The schema is documented in `docs/src/report-schema.md`.
use super::protocol::{EvalKind, Evaluation};
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Mean, standard deviation and count over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n_seeds: usize,
    pub values: Vec<f64>,
}

impl Stat {
    /// Aggregate per-seed values (population std; 0 for one value).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self { mean, std: var.sqrt(), n_seeds: values.len(), values: values.to_vec() }
    }
    fn cell(&self) -> String {
        format!("{:.3} ± {:.3}", self.mean, self.std)
    }
}

/// Train-minus-test accuracy, for the pretrained and the scratch encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapStats {
    pub pretrained: Stat,
    pub scratch: Stat,
}

/// One evaluation at one number of labels per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub eval: EvalKind,
    pub labels_per_class: usize,
    pub pretrained: Stat,
    pub scratch: Stat,
    pub raw_baseline: Option<Stat>,
    pub train_test_gap: GapStats,
}

/// Accuracy under one corruption at one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustRow {
    pub eval: EvalKind,
    pub labels_per_class: usize,
    pub corruption: String,
    pub severity: u32,
    pub pretrained: Stat,
    pub scratch: Stat,
}

/// The machine and versions a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub os: String,
    pub device: String,
    pub cuda_available: bool,
    pub threads: i32,
    pub toolkit_version: String,
}

impl Machine {
    /// Describe this machine for `device`.
    pub fn detect(device: tch::Device) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            os: std::env::consts::OS.to_owned(),
            device: format!("{device:?}"),
            cuda_available: tch::Cuda::is_available(),
            threads: tch::get_num_threads(),
            toolkit_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The whole report of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub modality: String,
    pub method: String,
    pub machine: Machine,
    /// The pretraining summary (steps, wall time, final loss, ...).
    pub pretraining: serde_json::Value,
    /// Data counts, including inputs skipped as unreadable.
    pub data: serde_json::Value,
    /// Free-form notes (e.g. which encoder block was probed).
    pub notes: Vec<String>,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

impl Report {
    /// Write `report.json` and `report.md` into `run_dir`.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let p = run_dir.join("report.json");
        let json = serde_json::to_vec_pretty(self).map_err(|e| CoreError::json(&p, e))?;
        std::fs::write(&p, json).map_err(|e| CoreError::io(&p, e))?;
        let md = run_dir.join("report.md");
        std::fs::write(&md, self.to_markdown()).map_err(|e| CoreError::io(&md, e))
    }

    /// The label-efficiency summary: for each k, the best pretrained evaluation against the best
    /// scratch one and the raw baseline.
    pub fn summary_table(&self) -> String {
        let mut ks: Vec<usize> = self.evaluation.evaluations.iter().map(|r| r.labels_per_class).collect();
        ks.sort_unstable();
        ks.dedup();
        let mut s = String::from(
            "| labels/class | pretrained (best) | scratch (best) | raw-input LR | gain |\n|---|---|---|---|---|\n",
        );
        for k in ks {
            let rows: Vec<&EvalRow> = self.evaluation.evaluations.iter().filter(|r| r.labels_per_class == k).collect();
            let best = |f: &dyn Fn(&EvalRow) -> &Stat| {
                rows.iter().max_by(|a, b| f(a).mean.total_cmp(&f(b).mean)).map(|r| (r.eval, f(r).clone()))
            };
            let (Some((pe, p)), Some((se, sc))) = (best(&|r| &r.pretrained), best(&|r| &r.scratch)) else { continue };
            let raw = rows.iter().find_map(|r| r.raw_baseline.clone()).map(|r| r.cell()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {k} | {} ({}) | {} ({}) | {raw} | {:+.3} |",
                p.cell(),
                pe.name(),
                sc.cell(),
                se.name(),
                p.mean - sc.mean
            );
        }
        s
    }

    /// A human summary.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("# Pretraining report: {} / {}\n\n", self.modality, self.method);
        let _ = writeln!(
            s,
            "Machine: {} ({} cores), device {}.\n",
            self.machine.cpu, self.machine.cores, self.machine.device
        );
        let _ = writeln!(s, "Pretraining: `{}`\n\nData: `{}`\n", self.pretraining, self.data);
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        let _ = writeln!(s, "\n## Label efficiency (test accuracy, mean ± std over seeds)\n\n{}", self.summary_table());
        s.push_str("\n## Every evaluation\n\n| eval | labels/class | pretrained | scratch | raw-input LR | gap pretrained | gap scratch |\n|---|---|---|---|---|---|---|\n");
        for r in &self.evaluation.evaluations {
            let raw = r.raw_baseline.as_ref().map(|x| x.cell()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {raw} | {:+.3} | {:+.3} |",
                r.eval.name(),
                r.labels_per_class,
                r.pretrained.cell(),
                r.scratch.cell(),
                r.train_test_gap.pretrained.mean,
                r.train_test_gap.scratch.mean
            );
        }
        s.push_str(
            "\nThe gap is train accuracy on the labeled subset minus test accuracy: smaller means less overfitting.\n",
        );
        if !self.evaluation.robustness.is_empty() {
            s.push_str("\n## Robustness (test accuracy under corruption)\n\n| eval | labels/class | corruption | severity | pretrained | scratch |\n|---|---|---|---|---|---|\n");
            for r in &self.evaluation.robustness {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.eval.name(),
                    r.labels_per_class,
                    r.corruption,
                    r.severity,
                    r.pretrained.cell(),
                    r.scratch.cell()
                );
            }
        }
        s
    }
}
