//! The evaluation protocol, run the same way for every modality.
use super::classifier::{LinearClassifier, ProbeConfig};
use super::finetune::FinetuneConfig;
use super::report::{self, headline_k, Comparison, Cost, EvalRow, GapStats, RobustRow, SeedSelection, Sides, Stat};
use super::selection::{self, Candidate, Selection};
use super::{accuracy, extract_features, knn, subsets, Encoder, LabeledSet};
use crate::error::{CoreError, Result};
use crate::process::process_cpu_secs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// One of the three ways to evaluate an encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalKind {
    /// Logistic regression on frozen features.
    Linear,
    /// Cosine kNN on frozen features.
    Knn,
    /// Every parameter trained with a linear head.
    Finetune,
}

impl EvalKind {
    pub fn name(self) -> &'static str {
        match self {
            EvalKind::Linear => "linear",
            EvalKind::Knn => "knn",
            EvalKind::Finetune => "finetune",
        }
    }
}

impl std::str::FromStr for EvalKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "linear" => Ok(EvalKind::Linear),
            "knn" => Ok(EvalKind::Knn),
            "finetune" => Ok(EvalKind::Finetune),
            other => Err(format!("unknown evaluation `{other}` (expected linear, knn or finetune)")),
        }
    }
}

/// Settings of the protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProtocolConfig {
    pub labels_per_class: Vec<usize>,
    /// Seeds (few-label subsets) at each label budget.
    pub seeds: usize,
    /// Seeds at the headline budget ([`super::report::headline_k`]); at least `seeds`.
    pub headline_seeds: usize,
    pub evals: Vec<EvalKind>,
    pub probe: ProbeConfig,
    pub finetune: FinetuneConfig,
    pub knn_k: usize,
    /// Labels per class at which robustness is measured (default: 10 if evaluated, else the largest).
    pub robustness_labels_per_class: Option<usize>,
    /// At most this many test examples are used under each corruption.
    pub robustness_max_test: usize,
    pub feature_batch: usize,
    pub raw_baseline: bool,
    pub seed: u64,
    /// Print one line per (labels per class, seed) to stderr.
    pub progress: bool,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            labels_per_class: vec![1, 5, 10, 50],
            seeds: 3,
            headline_seeds: 5,
            evals: vec![EvalKind::Linear, EvalKind::Knn, EvalKind::Finetune],
            probe: ProbeConfig::default(),
            finetune: FinetuneConfig::default(),
            knn_k: 20,
            robustness_labels_per_class: None,
            robustness_max_test: 1000,
            feature_batch: 256,
            raw_baseline: true,
            seed: 0,
            progress: true,
        }
    }
}

impl ProtocolConfig {
    fn robustness_k(&self) -> Option<usize> {
        self.robustness_labels_per_class
            .or_else(|| self.labels_per_class.contains(&10).then_some(10))
            .or_else(|| self.labels_per_class.iter().copied().max())
    }

    /// The seeds evaluated at `k` labels per class: `seed, seed + 1, ...`, more of them at the
    /// headline budget.
    pub(crate) fn seeds_at(&self, k: usize) -> Vec<u64> {
        let n = if headline_k(&self.labels_per_class) == Some(k) {
            self.seeds.max(self.headline_seeds)
        } else {
            self.seeds
        };
        (0..n as u64).map(|s| self.seed + s).collect()
    }

    /// One sentence for the report's notes: how fine-tuning, its selection and the baselines ran.
    pub fn describe(&self) -> String {
        let f = &self.finetune;
        let grid: Vec<String> = f.grid().iter().map(|x| format!("{x:.0e}")).collect();
        format!(
            "Fine-tuning (pretrained and scratch alike): LP-FT ({} head steps on frozen features, then every parameter), \
             epochs {} over the labeled subset clamped to {}-{} steps, batch {}, AdamW (weight decay {}), cosine schedule; \
             pretrained head lr x{}{}; encoder lr from {{{}}} and the stopping point from {} candidates chosen by {}-fold \
             stratified cross-validation on the labeled subset ({}); BatchNorm uses batch statistics while training. \
             Linear probe: {} full-batch steps{}. Scratch for the probes is the random encoder's frozen features.",
            f.lp_steps,
            f.epochs,
            f.min_steps.min(f.max_steps),
            f.max_steps,
            f.batch_size,
            f.weight_decay,
            f.head_lr_scale,
            if f.layer_decay < 1.0 { format!(", layer-wise decay {}", f.layer_decay) } else { String::new() },
            grid.join(", "),
            f.stop_points,
            f.cv_folds,
            if f.select_every_seed { "on every seed's subset" } else { "on the first seed's subset, reused for the other seeds" },
            self.probe.steps,
            if self.probe.cv_folds >= 2 { format!(", L2 chosen by {}-fold cross-validation", self.probe.cv_folds) } else { String::new() },
        )
    }

    /// The full protocol (`--full-protocol`): 5 seeds everywhere, 5-fold cross-validation on
    /// every seed's subset.
    pub fn full(mut self) -> Self {
        self.seeds = self.seeds.max(5);
        self.headline_seeds = self.headline_seeds.max(5);
        self.finetune.cv_folds = self.finetune.cv_folds.max(5);
        self.finetune.select_every_seed = true;
        self
    }
}

/// What a modality supplies to the protocol.
pub trait EncoderFactory {
    /// A fresh copy of the pretrained encoder (fine-tuning changes it).
    fn pretrained(&self, device: Device) -> Result<Box<dyn Encoder + '_>>;
    /// The same architecture from random initialisation.
    fn scratch(&self, device: Device, seed: u64) -> Result<Box<dyn Encoder + '_>>;
    /// Training-time augmentation for fine-tuning, on CPU inputs.
    fn augment(&self, xs: &Tensor, _seed: u64) -> Tensor {
        xs.shallow_clone()
    }
    /// Raw inputs as flat feature vectors, for the logistic-regression baseline.
    fn raw_features(&self, xs: &Tensor) -> Tensor {
        xs.flatten(1, -1)
    }
}

/// A corruption of test inputs at one severity.
pub struct Corruption {
    pub name: String,
    pub severity: u32,
    pub apply: Box<dyn Fn(&Tensor) -> Tensor>,
}

/// The protocol's results (the evaluation part of a report).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evaluation {
    pub evaluations: Vec<EvalRow>,
    pub robustness: Vec<RobustRow>,
    /// Per label budget and evaluation: the pretrained side against the trained scratch baseline
    /// and the raw baseline, with paired bootstrap intervals; the primary one flagged.
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    /// CPU seconds of the one frozen-feature pass per encoder (pretrained once; scratch once per
    /// seed), shared by the linear and kNN rows and not counted in their budgets.
    #[serde(default)]
    pub feature_cpu_seconds: Option<Sides<f64>>,
    /// What the protocol had to adapt to (e.g. classes with fewer examples than asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Per (eval, k, pretrained): one entry per seed, in seed order.
type Key = (EvalKind, usize, bool);

/// Accuracies and costs collected before aggregation.
#[derive(Default)]
struct Collected {
    test: BTreeMap<Key, Vec<f64>>,
    gap: BTreeMap<Key, Vec<f64>>,
    cv: BTreeMap<Key, Vec<f64>>,
    steps: BTreeMap<Key, Vec<f64>>,
    selection_steps: BTreeMap<Key, Vec<f64>>,
    cpu: BTreeMap<Key, Vec<f64>>,
    selections: BTreeMap<(usize, u64), (Option<Selection>, Option<Selection>)>,
    raw: BTreeMap<usize, Vec<f64>>,
    robust: BTreeMap<(EvalKind, String, u32, bool), Vec<f64>>,
}

/// Frozen features of one encoder on everything the protocol looks at.
struct FeatureBank {
    train: Tensor, // rows aligned with `union`
    test: Tensor,
    corrupted: Vec<Tensor>,
}

fn bank(
    enc: &dyn Encoder,
    train_x: &Tensor,
    test: &LabeledSet,
    corrupted: &[Tensor],
    cfg: &ProtocolConfig,
    device: Device,
) -> FeatureBank {
    FeatureBank {
        train: extract_features(enc, train_x, cfg.feature_batch, device),
        test: extract_features(enc, &test.inputs, cfg.feature_batch, device),
        corrupted: corrupted.iter().map(|c| extract_features(enc, c, cfg.feature_batch, device)).collect(),
    }
}

/// Predicted labels of frozen features.
type Predictor = Box<dyn Fn(&Tensor) -> Tensor>;

/// A classifier on frozen features, fitted on `(x, y)`.
fn frozen_predictor(
    eval: EvalKind,
    x: &Tensor,
    y: &Tensor,
    num_classes: i64,
    cfg: &ProtocolConfig,
    seed: u64,
) -> Result<Predictor> {
    Ok(if eval == EvalKind::Linear {
        let clf = LinearClassifier::fit(x, y, num_classes, &cfg.probe, seed)?;
        Box::new(move |t| clf.predict(t))
    } else {
        let (x, y, k) = (x.shallow_clone(), y.shallow_clone(), cfg.knn_k);
        Box::new(move |t| knn::predict(&x, &y, t, k, num_classes))
    })
}

/// Cross-validated accuracy of a frozen-feature evaluation on the labeled subset alone (the same
/// stratified folds as fine-tuning's selection); `None` where the subset is too small.
fn frozen_cv(
    eval: EvalKind,
    x: &Tensor,
    y: &Tensor,
    num_classes: i64,
    cfg: &ProtocolConfig,
    seed: u64,
) -> Result<Option<f64>> {
    let labels = Vec::<i64>::try_from(y).unwrap_or_default();
    let splits = selection::splits(&labels, num_classes, cfg.finetune.cv_folds);
    if splits.is_empty() {
        return Ok(None);
    }
    let mut correct = 0i64;
    for (fit, val) in &splits {
        let (fit, val) = (Tensor::from_slice(fit), Tensor::from_slice(val));
        let predict =
            frozen_predictor(eval, &x.index_select(0, &fit), &y.index_select(0, &fit), num_classes, cfg, seed)?;
        correct +=
            predict(&x.index_select(0, &val)).eq_tensor(&y.index_select(0, &val)).sum(Kind::Int64).int64_value(&[]);
    }
    Ok(Some(correct as f64 / labels.len().max(1) as f64))
}

/// Run the protocol: for each labels-per-class `k` and seed, draw a stratified subset of `train`;
/// evaluate the pretrained encoder with each evaluation; train the same architecture from scratch
/// with the same fine-tuning recipe and selection; probe the random-initialised encoder's frozen
/// features (a reference); and fit the raw baseline. Every choice (learning rate, stopping point,
/// probe penalty, which pretrained evaluation the headline compares) is made by cross-validation
/// on the labeled subset; `test` is only measured.
pub fn evaluate(
    factory: &dyn EncoderFactory,
    train: &LabeledSet,
    test: &LabeledSet,
    corruptions: &[Corruption],
    cfg: &ProtocolConfig,
    device: Device,
) -> Result<Evaluation> {
    // Every LibTorch draw of the evaluation (scratch initialisation, heads, corruptions) happens
    // under one exclusive guard; each draw site seeds its own component.
    let _rng = crate::rng::torch_rng(crate::rng::derive(cfg.seed, "evaluation"));
    let warnings = check_inputs(train, test, cfg)?;
    let design = Design::draw(train, test, corruptions, cfg);
    let mut run = Run::start(factory, &design, cfg, device)?;
    for &seed in &design.all_seeds {
        run.seed(seed)?;
    }
    Ok(run.finish(warnings))
}

/// The inputs the protocol needs: both splits non-empty, a seed and a budget, two classes. The
/// warnings it has to give (classes with fewer examples than the largest budget).
fn check_inputs(train: &LabeledSet, test: &LabeledSet, cfg: &ProtocolConfig) -> Result<Vec<String>> {
    if train.is_empty() || test.is_empty() {
        return Err(CoreError::InvalidArgument("the labeled train and test sets must not be empty".into()));
    }
    if cfg.seeds == 0 || cfg.labels_per_class.is_empty() {
        return Err(CoreError::InvalidArgument("need at least one seed and one labels-per-class value".into()));
    }
    let labels = train.label_vec();
    let counts: Vec<usize> = (0..train.num_classes).map(|c| labels.iter().filter(|&&l| l == c).count()).collect();
    let present = counts.iter().filter(|&&n| n > 0).count();
    if present < 2 {
        return Err(CoreError::InvalidArgument(format!(
            "the labeled train split has examples of {present} class(es); a classifier needs at least 2"
        )));
    }
    let mut warnings = Vec::new();
    if let Some(&k) = cfg.labels_per_class.iter().max() {
        let short: Vec<String> =
            counts.iter().enumerate().filter(|(_, &n)| n < k).map(|(c, n)| format!("class {c}: {n}")).collect();
        if !short.is_empty() {
            let w = format!(
                "{} of {} classes have fewer than {k} labeled training examples ({}); their subsets use all they have",
                short.len(),
                counts.len(),
                short.join(", ")
            );
            eprintln!("warning: {w}");
            warnings.push(w);
        }
    }
    Ok(warnings)
}

/// What the protocol measures on, fixed before anything is measured: the seeds at each budget,
/// the stratified subsets, the union of their rows (the only training rows whose features are
/// needed), and the corrupted test inputs.
struct Design<'a> {
    train: &'a LabeledSet,
    test: &'a LabeledSet,
    corruptions: &'a [Corruption],
    seeds_at: BTreeMap<usize, Vec<u64>>,
    all_seeds: Vec<u64>,
    subsets_of: BTreeMap<(usize, u64), Vec<i64>>,
    union: Vec<i64>,
    union_set: LabeledSet,
    robust_k: Option<usize>,
    robust_test: LabeledSet,
    corrupted: Vec<Tensor>,
}

impl<'a> Design<'a> {
    fn draw(train: &'a LabeledSet, test: &'a LabeledSet, corruptions: &'a [Corruption], cfg: &ProtocolConfig) -> Self {
        let labels = train.label_vec();
        let seeds_at: BTreeMap<usize, Vec<u64>> = cfg.labels_per_class.iter().map(|&k| (k, cfg.seeds_at(k))).collect();
        let mut all_seeds: Vec<u64> = seeds_at.values().flatten().copied().collect();
        all_seeds.sort_unstable();
        all_seeds.dedup();
        let mut subsets_of = BTreeMap::new();
        for (&k, seeds) in &seeds_at {
            for &s in seeds {
                subsets_of.insert((k, s), subsets::stratified(&labels, train.num_classes, k, s));
            }
        }
        let mut union: Vec<i64> = subsets_of.values().flatten().copied().collect();
        union.sort_unstable();
        union.dedup();
        let union_set = train.select(&union);
        let robust_test = test.head(cfg.robustness_max_test);
        let corrupted: Vec<Tensor> = corruptions.iter().map(|c| (c.apply)(&robust_test.inputs)).collect();
        Design {
            train,
            test,
            corruptions,
            seeds_at,
            all_seeds,
            subsets_of,
            union,
            union_set,
            robust_k: cfg.robustness_k(),
            robust_test,
            corrupted,
        }
    }

    /// The positions in the union of the rows `idx`.
    fn pos_in_union(&self, idx: &[i64]) -> Tensor {
        Tensor::from_slice(&idx.iter().map(|i| self.union.binary_search(i).unwrap_or(0) as i64).collect::<Vec<_>>())
    }
}

/// One evaluation of one side on one subset.
struct Outcome {
    test_acc: f64,
    train_acc: f64,
    robust: Vec<f64>,
    cv: Option<f64>,
    steps: usize,
    selection_steps: usize,
}

/// The protocol in progress: the pretrained encoder's frozen features, the raw baseline's
/// features, the fine-tuning selections shared across seeds, and what has been collected.
struct Run<'a> {
    factory: &'a dyn EncoderFactory,
    design: &'a Design<'a>,
    cfg: &'a ProtocolConfig,
    device: Device,
    frozen: bool,
    pre_bank: Option<FeatureBank>,
    raw: Option<(Tensor, Tensor)>,
    /// Fine-tuning selections shared across seeds (the quick protocol), per (k, pretrained).
    shared: BTreeMap<(usize, bool), Selection>,
    col: Collected,
    feature_cpu: Sides<f64>,
    bar: crate::progress::Progress,
    done: u64,
}

impl<'a> Run<'a> {
    fn start(
        factory: &'a dyn EncoderFactory,
        design: &'a Design<'a>,
        cfg: &'a ProtocolConfig,
        device: Device,
    ) -> Result<Self> {
        let frozen = cfg.evals.iter().any(|e| matches!(e, EvalKind::Linear | EvalKind::Knn));
        let total: usize = design.seeds_at.values().map(Vec::len).sum();
        let bar = crate::progress::Progress::new("evaluating", total as u64, !cfg.progress);
        let mut feature_cpu = Sides { pretrained: 0.0, scratch: 0.0 };
        let pre_bank = if frozen {
            let t0 = process_cpu_secs();
            let enc = factory.pretrained(device)?;
            let b = bank(enc.as_ref(), &design.union_set.inputs, design.test, &design.corrupted, cfg, device);
            feature_cpu.pretrained += process_cpu_secs() - t0;
            Some(b)
        } else {
            None
        };
        let raw = cfg
            .raw_baseline
            .then(|| (factory.raw_features(&design.union_set.inputs), factory.raw_features(&design.test.inputs)));
        Ok(Run {
            factory,
            design,
            cfg,
            device,
            frozen,
            pre_bank,
            raw,
            shared: BTreeMap::new(),
            col: Collected::default(),
            feature_cpu,
            bar,
            done: 0,
        })
    }

    /// Every budget that draws a subset with `seed`: the scratch encoder's frozen features once,
    /// then each subset.
    fn seed(&mut self, seed: u64) -> Result<()> {
        let d = self.design;
        let ks: Vec<usize> =
            self.cfg.labels_per_class.iter().copied().filter(|k| d.seeds_at[k].contains(&seed)).collect();
        let scratch_bank = if self.frozen {
            let t0 = process_cpu_secs();
            let enc = self.factory.scratch(self.device, seed)?;
            let b = bank(enc.as_ref(), &d.union_set.inputs, d.test, &d.corrupted, self.cfg, self.device);
            self.feature_cpu.scratch += process_cpu_secs() - t0;
            Some(b)
        } else {
            None
        };
        for k in ks {
            if crate::interrupt::requested() {
                return Err(CoreError::InterruptedEvaluation);
            }
            self.done += 1;
            self.bar.update(self.done, &format!("{k} labels/class, seed {seed}"));
            self.subset(k, seed, scratch_bank.as_ref())?;
        }
        Ok(())
    }

    /// The subset of `k` labels per class drawn with `seed`: the raw baseline, then every
    /// evaluation of both sides.
    fn subset(&mut self, k: usize, seed: u64, scratch_bank: Option<&FeatureBank>) -> Result<()> {
        let d = self.design;
        let rows = d.pos_in_union(&d.subsets_of[&(k, seed)]);
        let sub = d.union_set.select(&Vec::<i64>::try_from(&rows).unwrap_or_default());
        if let Some((rt, rx)) = &self.raw {
            let clf = LinearClassifier::fit(
                &rt.index_select(0, &rows),
                &sub.labels,
                d.train.num_classes,
                &self.cfg.probe,
                seed,
            )?;
            self.col.raw.entry(k).or_default().push(accuracy(&clf.predict(rx), &d.test.labels));
        }
        for &eval in &self.cfg.evals {
            for pretrained in [true, false] {
                let t0 = process_cpu_secs();
                let outcome = match eval {
                    EvalKind::Linear | EvalKind::Knn => {
                        let b = if pretrained { self.pre_bank.as_ref() } else { scratch_bank }
                            .ok_or_else(|| CoreError::InvalidArgument("frozen features were not extracted".into()))?;
                        self.frozen_outcome(eval, k, seed, b, &rows, &sub)?
                    }
                    EvalKind::Finetune => self.finetune_outcome(k, seed, pretrained, &sub)?,
                };
                self.record((eval, k, pretrained), process_cpu_secs() - t0, outcome);
            }
        }
        Ok(())
    }

    /// A linear probe or kNN on frozen features.
    fn frozen_outcome(
        &self,
        eval: EvalKind,
        k: usize,
        seed: u64,
        b: &FeatureBank,
        rows: &Tensor,
        sub: &LabeledSet,
    ) -> Result<Outcome> {
        let d = self.design;
        let n = d.train.num_classes;
        let xtr = b.train.index_select(0, rows);
        let predict = frozen_predictor(eval, &xtr, &sub.labels, n, self.cfg, seed)?;
        let cv = frozen_cv(eval, &xtr, &sub.labels, n, self.cfg, seed)?;
        let robust: Vec<f64> = if Some(k) == d.robust_k {
            b.corrupted.iter().map(|c| accuracy(&predict(c), &d.robust_test.labels)).collect()
        } else {
            Vec::new()
        };
        let steps = if eval == EvalKind::Linear { self.cfg.probe.steps } else { 0 };
        let test_acc = accuracy(&predict(&b.test), &d.test.labels);
        Ok(Outcome {
            test_acc,
            train_acc: accuracy(&predict(&xtr), &sub.labels),
            robust,
            cv,
            steps,
            selection_steps: 0,
        })
    }

    /// Fine-tuning (LP-FT) with its selection by cross-validation on the subset, made once per
    /// budget and side unless every seed selects its own.
    fn finetune_outcome(&mut self, k: usize, seed: u64, pretrained: bool, sub: &LabeledSet) -> Result<Outcome> {
        let (d, cfg, factory, device) = (self.design, self.cfg, self.factory, self.device);
        let make = || if pretrained { factory.pretrained(device) } else { factory.scratch(device, seed) };
        let aug = |x: &Tensor, s: u64| factory.augment(x, s);
        let cand = Candidate { make: &make, pretrained, augment: &aug, device, seed };
        let sel = match self.shared.get(&(k, pretrained)) {
            Some(s) => Selection { cv_steps: 0, ..s.clone() },
            None => {
                let s = cand.select(sub, &cfg.finetune)?;
                if !cfg.finetune.select_every_seed {
                    self.shared.insert((k, pretrained), s.clone());
                }
                s
            }
        };
        let ft = cand.refit(sub, &cfg.finetune, &sel)?;
        let fb = cfg.feature_batch;
        let robust: Vec<f64> = if Some(k) == d.robust_k {
            d.corrupted.iter().map(|c| accuracy(&ft.predict(c, fb), &d.robust_test.labels)).collect()
        } else {
            Vec::new()
        };
        let out = Outcome {
            test_acc: accuracy(&ft.predict(&d.test.inputs, fb), &d.test.labels),
            train_acc: accuracy(&ft.predict(&sub.inputs, fb), &sub.labels),
            robust,
            // A reused selection's CV accuracy was recorded where it was made: one measurement,
            // not one per seed.
            cv: sel.cv_accuracy.filter(|_| sel.cv_steps > 0),
            steps: ft.steps(),
            selection_steps: sel.cv_steps,
        };
        let entry = self.col.selections.entry((k, seed)).or_default();
        if pretrained {
            entry.0 = Some(sel);
        } else {
            entry.1 = Some(sel);
        }
        Ok(out)
    }

    fn record(&mut self, key: Key, cpu: f64, o: Outcome) {
        let col = &mut self.col;
        col.cpu.entry(key).or_default().push(cpu);
        col.steps.entry(key).or_default().push(o.steps as f64);
        col.selection_steps.entry(key).or_default().push(o.selection_steps as f64);
        col.test.entry(key).or_default().push(o.test_acc);
        col.gap.entry(key).or_default().push(o.train_acc - o.test_acc);
        if let Some(cv) = o.cv {
            col.cv.entry(key).or_default().push(cv);
        }
        let (eval, _, pretrained) = key;
        for (c, acc) in self.design.corruptions.iter().zip(o.robust) {
            col.robust.entry((eval, c.name.clone(), c.severity, pretrained)).or_default().push(acc);
        }
    }

    /// The rows, robustness rows and comparisons of what was collected.
    fn finish(self, warnings: Vec<String>) -> Evaluation {
        let mut out = Evaluation {
            feature_cpu_seconds: self.frozen.then(|| self.feature_cpu.clone()),
            warnings,
            ..Default::default()
        };
        for &eval in &self.cfg.evals {
            for &k in &self.cfg.labels_per_class {
                out.evaluations.extend(self.row(eval, k));
            }
            if let Some(k) = self.design.robust_k {
                out.robustness.extend(self.robustness_rows(eval, k));
            }
        }
        out.comparisons = report::compare(&out.evaluations);
        self.bar.finish();
        out
    }

    fn row(&self, eval: EvalKind, k: usize) -> Option<EvalRow> {
        let col = &self.col;
        let stat = |m: &BTreeMap<Key, Vec<f64>>, p: bool| m.get(&(eval, k, p)).map(|v| Stat::of(v));
        let cost = |p: bool| -> Option<Cost> {
            Some(Cost {
                steps: stat(&col.steps, p)?.mean,
                selection_steps: stat(&col.selection_steps, p)?.mean,
                cpu_seconds: stat(&col.cpu, p)?.mean,
            })
        };
        let (pretrained, scratch) = (stat(&col.test, true)?, stat(&col.test, false)?);
        let selections = if eval == EvalKind::Finetune {
            self.design.seeds_at[&k]
                .iter()
                .filter_map(|s| {
                    let (p, sc) = col.selections.get(&(k, *s))?;
                    Some(SeedSelection { seed: *s, pretrained: p.clone()?, scratch: sc.clone()? })
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(EvalRow {
            eval,
            labels_per_class: k,
            pretrained,
            scratch,
            raw_baseline: col.raw.get(&k).map(|v| Stat::of(v)),
            train_test_gap: GapStats {
                pretrained: stat(&col.gap, true).unwrap_or_else(|| Stat::of(&[])),
                scratch: stat(&col.gap, false).unwrap_or_else(|| Stat::of(&[])),
            },
            cv_accuracy: stat(&col.cv, true),
            budget: Some(Sides { pretrained: cost(true), scratch: cost(false) }),
            selections,
        })
    }

    fn robustness_rows(&self, eval: EvalKind, k: usize) -> Vec<RobustRow> {
        let mut rows = Vec::new();
        for c in self.design.corruptions {
            let get = |p: bool| self.col.robust.get(&(eval, c.name.clone(), c.severity, p)).map(|v| Stat::of(v));
            if let (Some(pretrained), Some(scratch)) = (get(true), get(false)) {
                rows.push(RobustRow {
                    eval,
                    labels_per_class: k,
                    corruption: c.name.clone(),
                    severity: c.severity,
                    pretrained,
                    scratch,
                });
            }
        }
        rows
    }
}
