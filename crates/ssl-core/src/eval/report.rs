//! `report.json` and `report.md`: the evidence every pretraining run ends with.
//! The schema is documented in `docs/src/report-schema.md`.
use super::protocol::{EvalKind, Evaluation};
use super::selection::Selection;
use super::stats::{paired_bootstrap, PairedDiff};
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

/// A value for the pretrained encoder and one for the scratch baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sides<T> {
    pub pretrained: T,
    pub scratch: T,
}

/// What one evaluation cost, per seed (mean over seeds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Optimizer steps of the evaluated model (fine-tuning, or the probe's full-batch steps).
    pub steps: f64,
    /// Optimizer steps spent by cross-validation to choose the learning rate and stopping point.
    pub selection_steps: f64,
    /// Process CPU seconds (all threads), selection included.
    pub cpu_seconds: f64,
}

/// What fine-tuning's cross-validation chose for one seed's subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSelection {
    pub seed: u64,
    pub pretrained: Selection,
    pub scratch: Selection,
}

/// One evaluation at one number of labels per class.
///
/// `scratch` is the same architecture from random initialisation: for `finetune`, trained on the
/// labeled subset with the same recipe, budget and selection (the baseline the headline uses);
/// for `linear` and `knn`, its frozen random features (a reference, not a trained baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub eval: EvalKind,
    pub labels_per_class: usize,
    pub pretrained: Stat,
    pub scratch: Stat,
    pub raw_baseline: Option<Stat>,
    pub train_test_gap: GapStats,
    /// Cross-validated accuracy of the pretrained evaluation on the labeled subsets (`None` where
    /// they are too small to split): what the labeled data alone says; reported, never used to
    /// choose among evaluations.
    #[serde(default)]
    pub cv_accuracy: Option<Stat>,
    #[serde(default)]
    pub budget: Option<Sides<Option<Cost>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selections: Vec<SeedSelection>,
}

/// At one label budget, one pretrained evaluation against the trained scratch baseline and the
/// raw baseline, paired by seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub labels_per_class: usize,
    pub eval: EvalKind,
    /// The comparison the headline speaks of ([`primary_eval`]), declared before any result.
    #[serde(default)]
    pub primary: bool,
    pub pretrained: Stat,
    /// The same architecture trained from scratch (fine-tuning's scratch side); `None` without
    /// `finetune` among the evaluations.
    pub scratch: Option<Stat>,
    pub raw_baseline: Option<Stat>,
    /// `pretrained - scratch`, paired by seed.
    pub vs_scratch: Option<PairedDiff>,
    /// `pretrained - raw_baseline`, paired by seed.
    pub vs_raw: Option<PairedDiff>,
}

/// The evaluation the headline compares, fixed before any result is seen: fine-tuning where it
/// is evaluated (the one evaluation whose scratch side is a network trained by the same recipe,
/// budget and selection), else the first evaluation asked for. Choosing the best evaluation by
/// test accuracy would use the test split for a choice; choosing it by cross-validated accuracy
/// favours fine-tuning, whose accuracy is the maximum over a grid (measured: it picked a
/// fine-tune 9.5 points below the linear probe on speech).
pub fn primary_eval(evals: &[EvalKind]) -> Option<EvalKind> {
    if evals.contains(&EvalKind::Finetune) {
        Some(EvalKind::Finetune)
    } else {
        evals.first().copied()
    }
}

/// The label budget a headline speaks of: 10 labels per class where evaluated (the budget the
/// evidence bars are set at, and where robustness is measured), else the fewest above one (one
/// label per class is too noisy to headline), else the fewest.
pub fn headline_k(ks: &[usize]) -> Option<usize> {
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    ks.contains(&10).then_some(10).or_else(|| ks.iter().copied().find(|&k| k > 1)).or(ks.first().copied())
}

/// The comparisons of every evaluation at every label budget in `rows`, the primary one
/// ([`primary_eval`]) flagged. The bootstrap is seeded with a constant, so a report rewritten
/// from its rows gives the same intervals.
pub fn compare(rows: &[EvalRow]) -> Vec<Comparison> {
    let mut evals: Vec<EvalKind> = Vec::new();
    for r in rows {
        if !evals.contains(&r.eval) {
            evals.push(r.eval);
        }
    }
    let primary = primary_eval(&evals);
    let mut ks: Vec<usize> = rows.iter().map(|r| r.labels_per_class).collect();
    ks.sort_unstable();
    ks.dedup();
    let mut out = Vec::new();
    for k in ks {
        let at: Vec<&EvalRow> = rows.iter().filter(|r| r.labels_per_class == k).collect();
        let scratch = at.iter().find(|r| r.eval == EvalKind::Finetune).map(|r| r.scratch.clone());
        let raw = at.iter().find_map(|r| r.raw_baseline.clone());
        for r in &at {
            let paired =
                |b: &Option<Stat>| b.as_ref().and_then(|b| paired_bootstrap(&r.pretrained.values, &b.values, 0));
            out.push(Comparison {
                labels_per_class: k,
                eval: r.eval,
                primary: Some(r.eval) == primary,
                pretrained: r.pretrained.clone(),
                vs_scratch: paired(&scratch),
                vs_raw: paired(&raw),
                scratch: scratch.clone(),
                raw_baseline: raw.clone(),
            });
        }
    }
    out
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
    /// The memory the run used: its budget, its peak resident memory, the allocator cache's
    /// counters (absent from reports written before they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::memory::MemoryUse>,
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

impl Report {
    /// The evaluation accuracies as TensorBoard scalars `(tag, step, value)`, step = labels
    /// per class: `eval/<eval>_<k>/pretrained`, `eval/<eval>_<k>/scratch` and `eval/raw_<k>`.
    pub fn scalars(&self) -> Vec<(String, i64, f64)> {
        let mut out = Vec::new();
        for r in &self.evaluation.evaluations {
            let k = r.labels_per_class as i64;
            let tag = format!("eval/{}_{}", r.eval.name(), r.labels_per_class);
            out.push((format!("{tag}/pretrained"), k, r.pretrained.mean));
            out.push((format!("{tag}/scratch"), k, r.scratch.mean));
            if let Some(raw) = &r.raw_baseline {
                out.push((format!("eval/raw_{}", r.labels_per_class), k, raw.mean));
            }
        }
        out
    }

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
        let mut report: Report = serde_json::from_slice(&bytes).map_err(|e| CoreError::json(&p, e))?;
        // Comparisons are derived from the rows: derive them again (reports before schema 3 have
        // none, and the rule may have changed since the report was written).
        report.evaluation.comparisons = compare(&report.evaluation.evaluations);
        Ok(report)
    }

    /// The label budgets evaluated, ascending.
    pub fn labels_per_class(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self.evaluation.evaluations.iter().map(|r| r.labels_per_class).collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }

    /// The primary comparison at `k` labels per class.
    pub fn comparison(&self, k: usize) -> Option<&Comparison> {
        self.evaluation.comparisons.iter().find(|c| c.labels_per_class == k && c.primary)
    }

    /// The budget the headline speaks of ([`headline_k`]).
    pub fn headline_k(&self) -> Option<usize> {
        headline_k(&self.labels_per_class())
    }

    /// The label-efficiency summary: at each k, every pretrained evaluation against the trained
    /// scratch baseline and the raw baseline, the primary one marked.
    pub fn summary_table(&self) -> String {
        let mut s = String::from(
            "| labels/class | evaluation | pretrained | scratch (trained) | raw-input LR | gain vs scratch [95% CI] | gain vs raw [95% CI] |\n|---|---|---|---|---|---|---|\n",
        );
        let cell = |x: &Option<Stat>| x.as_ref().map(|r| r.cell()).unwrap_or_else(|| "-".into());
        let diff = |d: &Option<PairedDiff>| {
            d.as_ref()
                .map(|d| {
                    format!("{:+.3} [{:+.3}, {:+.3}]{}", d.mean, d.lo, d.hi, if d.significant { "" } else { " n.s." })
                })
                .unwrap_or_else(|| "-".into())
        };
        for c in &self.evaluation.comparisons {
            let _ = writeln!(
                s,
                "| {} | {}{} | {} | {} | {} | {} | {} |",
                c.labels_per_class,
                c.eval.name(),
                if c.primary { " (primary)" } else { "" },
                c.pretrained.cell(),
                cell(&c.scratch),
                cell(&c.raw_baseline),
                diff(&c.vs_scratch),
                diff(&c.vs_raw)
            );
        }
        s.push_str(
            "\nScratch is the same network trained on the labeled subset by the same recipe and selection as the `finetune` row; gains are means over seeds with 95% paired bootstrap intervals (n.s.: the interval includes 0). The primary evaluation, fixed before any result, is what the headline reports.\n",
        );
        s
    }

    /// One sentence: at the headline budget, the primary pretrained evaluation against the same
    /// network trained from scratch, and against the raw baseline.
    pub fn headline(&self) -> String {
        let Some(c) = self.headline_k().and_then(|k| self.comparison(k)) else {
            return "No evaluation was run.".into();
        };
        let k = c.labels_per_class;
        let p = &c.pretrained;
        let against_scratch = match (&c.scratch, &c.vs_scratch) {
            (Some(sc), Some(d)) => {
                let verdict = if !d.significant {
                    "pretraining and training from scratch are not significantly different"
                } else if d.mean > 0.0 {
                    "pretraining beats the same network trained from scratch"
                } else {
                    "pretraining loses to the same network trained from scratch"
                };
                format!(
                    "{verdict}: {:.3} ± {:.3} ({}) against {:.3} ± {:.3}, {}",
                    p.mean,
                    p.std,
                    c.eval.name(),
                    sc.mean,
                    sc.std,
                    d.describe()
                )
            }
            (Some(sc), None) => format!(
                "pretrained {:.3} ({}) against {:.3} trained from scratch (one seed: no interval)",
                p.mean,
                c.eval.name(),
                sc.mean
            ),
            _ => format!(
                "pretrained {:.3} ± {:.3} ({}); no trained scratch baseline (add `finetune` to --eval)",
                p.mean,
                p.std,
                c.eval.name()
            ),
        };
        let against_raw = match (&c.raw_baseline, &c.vs_raw) {
            (Some(r), Some(d)) => format!("; against the raw-input baseline ({:.3}): {}", r.mean, d.describe()),
            _ => String::new(),
        };
        format!("**Headline:** at {k} labels per class, {against_scratch}{against_raw}.")
    }

    /// A human summary.
    pub(crate) fn to_markdown(&self) -> String {
        let mut s = format!("# Pretraining report: {} / {}\n\n", self.modality, self.method);
        let _ = writeln!(
            s,
            "Machine: {} ({} cores), device {}.\n",
            self.machine.cpu, self.machine.cores, self.machine.device
        );
        s.push_str(&self.headline());
        self.pretraining_section(&mut s);
        self.data_section(&mut s);
        self.notes_section(&mut s);
        let _ = writeln!(s, "\n## Label efficiency (test accuracy, mean ± std over seeds)\n\n{}", self.summary_table());
        self.evaluations_section(&mut s);
        self.selections_section(&mut s);
        self.plots_section(&mut s);
        self.robustness_section(&mut s);
        s
    }

    fn pretraining_section(&self, s: &mut String) {
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
    }

    fn data_section(&self, s: &mut String) {
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
    }

    fn notes_section(&self, s: &mut String) {
        s.push_str("\n## Notes\n\n");
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        for w in &self.evaluation.warnings {
            let _ = writeln!(s, "- **Warning:** {w}");
        }
    }

    fn evaluations_section(&self, s: &mut String) {
        s.push_str("\n## Every evaluation\n\n| eval | labels/class | pretrained | scratch | raw-input LR | CV accuracy | gap pretrained | gap scratch | steps (selection) pretrained / scratch | CPU s pretrained / scratch |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.evaluation.evaluations {
            let raw = r.raw_baseline.as_ref().map(|x| x.cell()).unwrap_or_else(|| "-".into());
            let cv = r.cv_accuracy.as_ref().map(|x| x.cell()).unwrap_or_else(|| "-".into());
            let (steps, cpu) = match &r.budget {
                Some(b) => {
                    let st = |c: &Option<Cost>| {
                        c.as_ref()
                            .map(|c| format!("{:.0} ({:.0})", c.steps, c.selection_steps))
                            .unwrap_or_else(|| "-".into())
                    };
                    let cs = |c: &Option<Cost>| {
                        c.as_ref().map(|c| format!("{:.1}", c.cpu_seconds)).unwrap_or_else(|| "-".into())
                    };
                    (
                        format!("{} / {}", st(&b.pretrained), st(&b.scratch)),
                        format!("{} / {}", cs(&b.pretrained), cs(&b.scratch)),
                    )
                }
                None => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {raw} | {cv} | {:+.3} | {:+.3} | {steps} | {cpu} |",
                r.eval.name(),
                r.labels_per_class,
                r.pretrained.cell(),
                r.scratch.cell(),
                r.train_test_gap.pretrained.mean,
                r.train_test_gap.scratch.mean
            );
        }
        s.push_str(
            "\nFor `linear` and `knn`, *scratch* is the random-initialised encoder's frozen features (a reference); for `finetune` it is the same architecture trained from scratch on the labeled subset with the same recipe, budget, augmentation and selection. The gap is train accuracy on the labeled subset minus test accuracy: smaller means less overfitting. Steps and CPU seconds are per seed; selection steps are cross-validation's.\n",
        );
    }

    fn selections_section(&self, s: &mut String) {
        let sels: Vec<(usize, &SeedSelection)> = self
            .evaluation
            .evaluations
            .iter()
            .flat_map(|r| r.selections.iter().map(move |x| (r.labels_per_class, x)))
            .collect();
        if sels.is_empty() {
            return;
        }
        s.push_str("\n## Fine-tuning selection (cross-validation on the labeled subset)\n\n| labels/class | seed | pretrained lr, stop, CV acc | scratch lr, stop, CV acc |\n|---|---|---|---|\n");
        let one = |x: &Selection| match x.cv_accuracy {
            Some(a) => format!("{:.0e}, {:.2}, {a:.3} ({} folds)", x.lr, x.stop, x.folds),
            None => format!("{:.0e}, {:.2}, default (too few labels to split)", x.lr, x.stop),
        };
        for (k, x) in sels {
            let _ = writeln!(s, "| {k} | {} | {} | {} |", x.seed, one(&x.pretrained), one(&x.scratch));
        }
    }

    fn plots_section(&self, s: &mut String) {
        s.push_str("\n## Plots\n\n![Test accuracy against labels per class: one colour per evaluation, pretrained solid, scratch dashed, bands of one std over seeds](accuracy.png)\n");
        if !self.evaluation.robustness.is_empty() {
            s.push_str("\n![Accuracy against corruption severity, pretrained solid, scratch dashed](robustness.png)\n");
        }
        if self.pretraining.is_some() {
            s.push_str("\n![Pretraining loss, with the learning rate on the right axis](loss.png)\n");
        }
    }

    fn robustness_section(&self, s: &mut String) {
        if self.evaluation.robustness.is_empty() {
            return;
        }
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
}
