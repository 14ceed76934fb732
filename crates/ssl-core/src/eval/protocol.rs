//! The evaluation protocol, run the same way for every modality.
use super::classifier::{FinetuneConfig, Finetuned, LinearClassifier, ProbeConfig};
use super::report::{EvalRow, GapStats, RobustRow, Stat};
use super::{accuracy, extract_features, knn, subsets, Encoder, LabeledSet};
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Tensor};

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
    pub seeds: usize,
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
}

/// Accuracies collected per (eval, k, encoder) before aggregation.
#[derive(Default)]
struct Collected {
    test: BTreeMap<(EvalKind, usize, bool), Vec<f64>>,
    gap: BTreeMap<(EvalKind, usize, bool), Vec<f64>>,
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

/// Run the protocol: for each labels-per-class `k` and seed, draw a stratified subset of `train`,
/// evaluate the pretrained and the scratch encoder with each evaluation, and the raw baseline.
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
    if train.is_empty() || test.is_empty() {
        return Err(CoreError::InvalidArgument("the labeled train and test sets must not be empty".into()));
    }
    if cfg.seeds == 0 || cfg.labels_per_class.is_empty() {
        return Err(CoreError::InvalidArgument("need at least one seed and one labels-per-class value".into()));
    }
    let labels = train.label_vec();
    let seeds: Vec<u64> = (0..cfg.seeds as u64).map(|s| cfg.seed + s).collect();
    // Subsets, and the union of their rows (the only training rows whose features are needed).
    let mut subsets_of = BTreeMap::new();
    for &k in &cfg.labels_per_class {
        for &s in &seeds {
            subsets_of.insert((k, s), subsets::stratified(&labels, train.num_classes, k, s));
        }
    }
    let mut union: Vec<i64> = subsets_of.values().flatten().copied().collect();
    union.sort_unstable();
    union.dedup();
    let pos_in_union = |idx: &[i64]| -> Tensor {
        Tensor::from_slice(&idx.iter().map(|i| union.binary_search(i).unwrap_or(0) as i64).collect::<Vec<_>>())
    };
    let union_set = train.select(&union);
    let robust_k = cfg.robustness_k();
    let robust_test = test.head(cfg.robustness_max_test);
    let corrupted: Vec<Tensor> = corruptions.iter().map(|c| (c.apply)(&robust_test.inputs)).collect();
    let frozen = cfg.evals.iter().any(|e| matches!(e, EvalKind::Linear | EvalKind::Knn));

    let bar =
        crate::progress::Progress::new("evaluating", (seeds.len() * cfg.labels_per_class.len()) as u64, !cfg.progress);
    let mut done = 0u64;
    let mut col = Collected::default();
    let pre_bank = if frozen {
        let enc = factory.pretrained(device)?;
        Some(bank(enc.as_ref(), &union_set.inputs, test, &corrupted, cfg, device))
    } else {
        None
    };
    let raw_train = if cfg.raw_baseline { Some(factory.raw_features(&union_set.inputs)) } else { None };
    let raw_test = if cfg.raw_baseline { Some(factory.raw_features(&test.inputs)) } else { None };

    for &seed in &seeds {
        let scratch_bank = if frozen {
            let enc = factory.scratch(device, seed)?;
            Some(bank(enc.as_ref(), &union_set.inputs, test, &corrupted, cfg, device))
        } else {
            None
        };
        for &k in &cfg.labels_per_class {
            if crate::interrupt::requested() {
                return Err(CoreError::InterruptedEvaluation);
            }
            done += 1;
            bar.update(done, &format!("{k} labels/class, seed {seed}"));
            let idx = &subsets_of[&(k, seed)];
            let rows = pos_in_union(idx);
            let sub = union_set.select(&Vec::<i64>::try_from(&rows).unwrap_or_default());
            if let (Some(rt), Some(rx)) = (&raw_train, &raw_test) {
                let clf = LinearClassifier::fit(
                    &rt.index_select(0, &rows),
                    &sub.labels,
                    train.num_classes,
                    &cfg.probe,
                    seed,
                )?;
                col.raw.entry(k).or_default().push(accuracy(&clf.predict(rx), &test.labels));
            }
            for &eval in &cfg.evals {
                for pretrained in [true, false] {
                    let key = (eval, k, pretrained);
                    let (test_acc, train_acc, robust) = match eval {
                        EvalKind::Linear | EvalKind::Knn => {
                            let b = if pretrained { pre_bank.as_ref() } else { scratch_bank.as_ref() }
                                .expect("frozen banks exist when a frozen evaluation is asked for");
                            let xtr = b.train.index_select(0, &rows);
                            let predict: Box<dyn Fn(&Tensor) -> Tensor> = if eval == EvalKind::Linear {
                                let clf =
                                    LinearClassifier::fit(&xtr, &sub.labels, train.num_classes, &cfg.probe, seed)?;
                                Box::new(move |x| clf.predict(x))
                            } else {
                                let (xtr, ytr, kk, nc) =
                                    (xtr.shallow_clone(), sub.labels.shallow_clone(), cfg.knn_k, train.num_classes);
                                Box::new(move |x| knn::predict(&xtr, &ytr, x, kk, nc))
                            };
                            let robust: Vec<f64> = if Some(k) == robust_k {
                                b.corrupted.iter().map(|c| accuracy(&predict(c), &robust_test.labels)).collect()
                            } else {
                                Vec::new()
                            };
                            (accuracy(&predict(&b.test), &test.labels), accuracy(&predict(&xtr), &sub.labels), robust)
                        }
                        EvalKind::Finetune => {
                            let enc =
                                if pretrained { factory.pretrained(device)? } else { factory.scratch(device, seed)? };
                            let aug = |x: &Tensor, s: u64| factory.augment(x, s);
                            let ft = Finetuned::train(enc, &sub, &cfg.finetune, &aug, device, seed)?;
                            let fb = cfg.feature_batch;
                            let robust: Vec<f64> = if Some(k) == robust_k {
                                corrupted.iter().map(|c| accuracy(&ft.predict(c, fb), &robust_test.labels)).collect()
                            } else {
                                Vec::new()
                            };
                            (
                                accuracy(&ft.predict(&test.inputs, fb), &test.labels),
                                accuracy(&ft.predict(&sub.inputs, fb), &sub.labels),
                                robust,
                            )
                        }
                    };
                    col.test.entry(key).or_default().push(test_acc);
                    col.gap.entry(key).or_default().push(train_acc - test_acc);
                    for (c, acc) in corruptions.iter().zip(robust) {
                        col.robust.entry((eval, c.name.clone(), c.severity, pretrained)).or_default().push(acc);
                    }
                }
            }
        }
    }

    let mut out = Evaluation::default();
    for &eval in &cfg.evals {
        for &k in &cfg.labels_per_class {
            let get = |m: &BTreeMap<(EvalKind, usize, bool), Vec<f64>>, p: bool| Stat::of(&m[&(eval, k, p)]);
            out.evaluations.push(EvalRow {
                eval,
                labels_per_class: k,
                pretrained: get(&col.test, true),
                scratch: get(&col.test, false),
                raw_baseline: col.raw.get(&k).map(|v| Stat::of(v)),
                train_test_gap: GapStats { pretrained: get(&col.gap, true), scratch: get(&col.gap, false) },
            });
        }
        if let Some(k) = robust_k {
            for c in corruptions {
                let get = |p: bool| col.robust.get(&(eval, c.name.clone(), c.severity, p)).map(|v| Stat::of(v));
                if let (Some(pretrained), Some(scratch)) = (get(true), get(false)) {
                    out.robustness.push(RobustRow {
                        eval,
                        labels_per_class: k,
                        corruption: c.name.clone(),
                        severity: c.severity,
                        pretrained,
                        scratch,
                    });
                }
            }
        }
    }
    bar.finish();
    Ok(out)
}
