//! Choosing fine-tuning's learning rate and stopping point by k-fold cross-validation on the
//! labeled subset alone. The function never receives the test split, so no choice can depend on
//! it; pretrained and scratch encoders go through the same selection.
use super::finetune::{FinetuneConfig, Finetuned};
use super::{Encoder, LabeledSet};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// What cross-validation chose for one encoder on one subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Encoder learning rate.
    pub lr: f64,
    /// Stopping point along the schedule, as a fraction of the budget.
    pub stop: f64,
    /// Mean validation accuracy of the choice over the folds; `None` where the subset was too
    /// small to cross-validate (then `lr` is the configured default and `stop` is 1).
    pub cv_accuracy: Option<f64>,
    /// Folds used (0: no cross-validation).
    pub folds: usize,
    /// Optimizer steps spent on the folds.
    pub cv_steps: usize,
}

/// Stratified folds: within each class, the examples in subset order go to folds 0, 1, 2, ...
/// The number of folds is `cfg.cv_folds` or the smallest class size, if smaller.
pub fn folds(labels: &[i64], num_classes: i64, wanted: usize) -> (usize, Vec<usize>) {
    let smallest = (0..num_classes).map(|c| labels.iter().filter(|&&l| l == c).count()).filter(|&n| n > 0).min();
    let k = wanted.min(smallest.unwrap_or(0));
    let mut seen = vec![0usize; num_classes.max(0) as usize];
    let fold = labels
        .iter()
        .map(|&l| {
            let s = &mut seen[l.clamp(0, num_classes - 1) as usize];
            *s += 1;
            (*s - 1) % k.max(1)
        })
        .collect();
    (k, fold)
}

/// The `(fit rows, validation rows)` of each stratified fold of `labels` ([`folds`]); empty
/// where fewer than 2 folds can be made. Every cross-validation of the protocol (fine-tuning's
/// selection, the frozen evaluations' accuracies, the probe's L2) splits this way.
pub fn splits(labels: &[i64], num_classes: i64, wanted: usize) -> Vec<(Vec<i64>, Vec<i64>)> {
    let (k, fold) = folds(labels, num_classes, wanted);
    if k < 2 {
        return Vec::new();
    }
    (0..k).map(|f| (0..labels.len() as i64).partition(|&i| fold[i as usize] != f)).collect()
}

/// One encoder to fine-tune: how to build fresh copies of it (each call the same initial
/// weights), whether it is pretrained (head and layer learning-rate scales) or scratch, the
/// augmentation, the device and the seed.
pub struct Candidate<'s, 'a> {
    pub make: &'s dyn Fn() -> Result<Box<dyn Encoder + 'a>>,
    pub pretrained: bool,
    pub augment: &'s dyn Fn(&Tensor, u64) -> Tensor,
    pub device: Device,
    pub seed: u64,
}

impl<'a> Candidate<'_, 'a> {
    fn start(&self, train: &LabeledSet, cfg: &FinetuneConfig, lr: f64) -> Result<Finetuned<'a>> {
        Finetuned::new((self.make)()?, train, cfg, lr, self.pretrained, self.device, self.seed)
    }

    /// Cross-validate on `train`: for each learning rate of the grid and each fold, train on the
    /// other folds and count correct validation predictions at each stopping point; the best
    /// `(lr, stop)` wins, the first in grid order and the earlier stop on ties.
    pub fn select(&self, train: &LabeledSet, cfg: &FinetuneConfig) -> Result<Selection> {
        let labels = train.label_vec();
        let splits = splits(&labels, train.num_classes, cfg.cv_folds);
        if splits.is_empty() {
            return Ok(Selection { lr: cfg.lr, stop: 1.0, cv_accuracy: None, folds: 0, cv_steps: 0 });
        }
        let points = cfg.stop_points.max(1);
        let grid = cfg.grid();
        let mut correct = vec![vec![0i64; points]; grid.len()];
        let mut cv_steps = 0;
        for (fit, val) in &splits {
            let (fit, val) = (train.select(fit), train.select(val));
            for (g, &lr) in grid.iter().enumerate() {
                let mut run = self.start(&fit, cfg, lr)?;
                for j in 1..=points {
                    run.advance(&fit, cfg.stop_step(fit.len(), j), self.augment)?;
                    let pred = run.predict(&val.inputs, 256);
                    correct[g][j - 1] += pred.eq_tensor(&val.labels).sum(Kind::Int64).int64_value(&[]);
                }
                cv_steps += run.steps();
            }
        }
        let mut best = (i64::MIN, 0, 0);
        for (g, row) in correct.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                if c > best.0 {
                    best = (c, g, j);
                }
            }
        }
        let (c, g, j) = best;
        Ok(Selection {
            lr: grid[g],
            stop: (j + 1) as f64 / points as f64,
            cv_accuracy: Some(c as f64 / labels.len().max(1) as f64),
            folds: splits.len(),
            cv_steps,
        })
    }

    /// Fine-tune a fresh copy on all of `train` with the selected learning rate, up to the
    /// selected stopping point.
    pub(crate) fn refit(&self, train: &LabeledSet, cfg: &FinetuneConfig, sel: &Selection) -> Result<Finetuned<'a>> {
        let mut run = self.start(train, cfg, sel.lr)?;
        let points = cfg.stop_points.max(1);
        let j = (sel.stop * points as f64).round().clamp(1.0, points as f64) as usize;
        run.advance(train, cfg.stop_step(train.len(), j), self.augment)?;
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_shrink_to_the_smallest_class() {
        let labels = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
        let (k, fold) = folds(&labels, 2, 3);
        assert_eq!(k, 3);
        for f in 0..3 {
            let members: Vec<i64> = labels.iter().zip(&fold).filter(|(_, &x)| x == f).map(|(&l, _)| l).collect();
            assert_eq!(members.iter().filter(|&&l| l == 0).count(), 2);
            assert_eq!(members.iter().filter(|&&l| l == 1).count(), 2);
        }
        assert_eq!(folds(&[0, 1, 1, 1], 2, 3).0, 1);
        assert_eq!(folds(&[0, 0, 1, 1], 2, 5).0, 2);
    }
}
