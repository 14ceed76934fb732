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
    pub fn cell(&self) -> String {
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

pub use ssl_records::run::Machine;
use ssl_records::skipped::SkippedInputs;
use ssl_records::summary::PretrainingSummary;

/// The machine this process runs on, for `device`.
pub fn detect_machine(device: tch::Device) -> Machine {
    Machine {
        cpu: ssl_records::run::cpu_model(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        os: std::env::consts::OS.to_owned(),
        device: format!("{device:?}"),
        cuda_available: tch::Cuda::is_available(),
        threads: tch::get_num_threads(),
        toolkit_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The best results at one label budget.
#[derive(Debug, Clone)]
pub struct Best {
    pub pretrained: (EvalKind, Stat),
    pub scratch: (EvalKind, Stat),
    pub raw: Option<Stat>,
}

impl Best {
    /// Best pretrained minus best scratch accuracy.
    pub fn gain(&self) -> f64 {
        self.pretrained.1.mean - self.scratch.1.mean
    }
}

/// `(key, value)` rows of a JSON object, nested keys joined with `.`; long lists are counted.
fn flat_rows(v: &serde_json::Value, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.extend(flat_rows(x, &key));
            }
        }
        serde_json::Value::Array(a) if a.len() > 8 => out.push((prefix.into(), format!("{} items", a.len()))),
        serde_json::Value::Array(a) => out.push((
            prefix.into(),
            a.iter()
                .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        )),
        serde_json::Value::String(x) => out.push((prefix.into(), x.clone())),
        serde_json::Value::Null => out.push((prefix.into(), "-".into())),
        x => out.push((prefix.into(), x.to_string())),
    }
    out
}

/// The whole report of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub modality: String,
    pub method: String,
    pub machine: Machine,
    /// The pretraining summary; `None` for an `--eval-only` report.
    pub pretraining: Option<PretrainingSummary>,
    /// Data paths and counts, in the modality's words.
    pub data: serde_json::Value,
    /// Every input skipped as unreadable (the first ones in full, all of them counted).
    #[serde(default)]
    pub skipped: SkippedInputs,
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

    /// Read the `report.json` of a run directory (or the file itself).
    pub fn read(path: &Path) -> Result<Self> {
        let p = if path.is_dir() { path.join("report.json") } else { path.to_path_buf() };
        let bytes = std::fs::read(&p).map_err(|e| CoreError::io(&p, e))?;
        serde_json::from_slice(&bytes).map_err(|e| CoreError::json(&p, e))
    }

    /// The label budgets evaluated, ascending.
    pub fn labels_per_class(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self.evaluation.evaluations.iter().map(|r| r.labels_per_class).collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }

    /// At `k` labels per class: the best pretrained evaluation, the best scratch one, and the raw
    /// baseline.
    pub fn best_at(&self, k: usize) -> Option<Best> {
        let rows: Vec<&EvalRow> = self.evaluation.evaluations.iter().filter(|r| r.labels_per_class == k).collect();
        let best = |f: &dyn Fn(&EvalRow) -> &Stat| {
            rows.iter().max_by(|a, b| f(a).mean.total_cmp(&f(b).mean)).map(|r| (r.eval, f(r).clone()))
        };
        let (pretrained, scratch) = (best(&|r| &r.pretrained)?, best(&|r| &r.scratch)?);
        Some(Best { pretrained, scratch, raw: rows.iter().find_map(|r| r.raw_baseline.clone()) })
    }

    /// The budget the headline speaks of: the fewest labels per class above one (one label per
    /// class is too noisy to headline), else the fewest.
    pub fn headline_k(&self) -> Option<usize> {
        let ks = self.labels_per_class();
        ks.iter().copied().find(|&k| k > 1).or(ks.first().copied())
    }

    /// The label-efficiency summary: for each k, the best pretrained evaluation against the best
    /// scratch one and the raw baseline.
    pub fn summary_table(&self) -> String {
        let mut s = String::from(
            "| labels/class | pretrained (best) | scratch (best) | raw-input LR | gain |\n|---|---|---|---|---|\n",
        );
        for k in self.labels_per_class() {
            let Some(b) = self.best_at(k) else { continue };
            let raw = b.raw.as_ref().map(|r| r.cell()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {k} | {} ({}) | {} ({}) | {raw} | {:+.3} |",
                b.pretrained.1.cell(),
                b.pretrained.0.name(),
                b.scratch.1.cell(),
                b.scratch.0.name(),
                b.gain()
            );
        }
        s
    }

    /// One sentence: the best pretrained result against the best trained-from-scratch one at the
    /// fewest labels evaluated with more than one class example, with the spread over seeds.
    pub fn headline(&self) -> String {
        let Some((k, Best { pretrained: (pe, p), scratch: (se, sc), .. })) =
            self.headline_k().and_then(|k| self.best_at(k).map(|b| (k, b)))
        else {
            return "No evaluation was run.".into();
        };
        let gain = p.mean - sc.mean;
        let noise = (p.std.powi(2) + sc.std.powi(2)).sqrt();
        let verdict = if gain > noise {
            format!("pretraining beats the same network from scratch by {:+.1} points", 100.0 * gain)
        } else if gain < -noise {
            format!("pretraining loses to the same network from scratch by {:.1} points", -100.0 * gain)
        } else {
            format!("pretraining and scratch are within the seeds' spread ({:+.1} points)", 100.0 * gain)
        };
        format!(
            "**Headline:** at {k} labels per class, {verdict}: {:.3} ± {:.3} ({}) against {:.3} ± {:.3} ({}), over {} seeds.",
            p.mean,
            p.std,
            pe.name(),
            sc.mean,
            sc.std,
            se.name(),
            p.n_seeds
        )
    }

    /// A human summary.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("# Pretraining report: {} / {}\n\n", self.modality, self.method);
        let _ = writeln!(
            s,
            "Machine: {} ({} cores), device {}.\n",
            self.machine.cpu, self.machine.cores, self.machine.device
        );
        s.push_str(&self.headline());
        s.push_str("\n\n## Pretraining\n\n");
        match &self.pretraining {
            Some(p) => {
                s.push_str("| | |\n|---|---|\n");
                for (k, v) in p.rows() {
                    let _ = writeln!(s, "| {k} | {v} |");
                }
            }
            None => s.push_str("None in this report: `--eval-only` evaluated an existing run's encoder.\n"),
        }
        s.push_str("\n## Data\n\n| | |\n|---|---|\n");
        for (k, v) in flat_rows(&self.data, "") {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        let _ = writeln!(s, "| inputs skipped as unreadable | {} |", self.skipped.count);
        if !self.skipped.is_empty() {
            s.push_str("\nSkipped inputs (the first ones):\n\n");
            for x in self.skipped.items.iter().take(20) {
                let _ = writeln!(s, "- `{x}`");
            }
        }
        s.push_str("\n## Notes\n\n");
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
        s.push_str("\n## Plots\n\n![Test accuracy against labels per class: one colour per evaluation, pretrained solid, scratch dashed, bands of one std over seeds](accuracy.png)\n");
        if !self.evaluation.robustness.is_empty() {
            s.push_str("\n![Accuracy against corruption severity, pretrained solid, scratch dashed](robustness.png)\n");
        }
        if self.pretraining.is_some() {
            s.push_str("\n![Pretraining loss, with the learning rate on the right axis](loss.png)\n");
        }
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
