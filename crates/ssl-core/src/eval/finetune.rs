//! Fine-tuning an encoder with a new linear head, the way that makes fine-tuning beat a linear
//! probe: LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
//! Out-of-Distribution").
//!
//! 1. **LP**: the head is fitted on the encoder's frozen features first (full batch), so the
//!    first fine-tuning gradients do not come from a random head and do not wreck the features.
//! 2. **FT**: every parameter is trained, the encoder at `lr` and the head at
//!    `lr * head_lr_scale`; encoders that number their layers ([`Encoder::layer_of`],
//!    transformers) get layer-wise decay: layer `l` of `L` trains at `lr * layer_decay^(L - l)`.
//! 3. **Budget**: epochs over the labeled subset (not a fixed step count), clamped to
//!    `[min_steps, max_steps]`, with a cosine schedule over that budget; [`super::selection`]
//!    chooses by cross-validation where along the schedule to stop.
//!
//! BatchNorm policy: batch statistics while fine-tuning (running statistics updated with
//! momentum 0.1), running statistics whenever features are extracted (LP phase, prediction).
//!
//! The scratch baseline is trained by the same code with the same budget, augmentation and
//! selection; it differs only in starting from random weights, with one learning rate for the
//! whole network (`head_lr_scale` 1: a random encoder has nothing to preserve).
use super::{extract_features, Encoder, LabeledSet};
use crate::error::Result;
use crate::loader::{epoch_order, mix_seed};
use crate::optim::{Optimizer, OptimizerConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// Settings of fine-tuning and of its selection by cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinetuneConfig {
    /// Passes over the labeled subset the schedule spans (before clamping to the step bounds).
    pub epochs: usize,
    /// Fewest optimizer steps (a 1-label-per-class subset is one batch per epoch).
    pub min_steps: usize,
    /// Most optimizer steps.
    pub max_steps: usize,
    pub batch_size: usize,
    /// The encoder learning rate used where the subset is too small to cross-validate.
    pub lr: f64,
    /// Encoder learning rates that cross-validation chooses from (empty: `lr` only).
    pub lr_grid: Vec<f64>,
    /// The pretrained head's learning rate is `lr * head_lr_scale` (scratch: 1).
    pub head_lr_scale: f64,
    /// Layer-wise learning-rate decay for encoders with layers (1: none).
    pub layer_decay: f64,
    pub weight_decay: f64,
    /// LP phase: full-batch AdamW steps of the head on frozen features (0: plain fine-tuning).
    pub lp_steps: usize,
    pub lp_lr: f64,
    /// Folds of the cross-validation (stratified; fewer if a class has fewer examples; below 2
    /// no selection is made and `lr` runs the whole budget).
    pub cv_folds: usize,
    /// Candidate stopping points, evenly spaced along the schedule (early stopping).
    pub stop_points: usize,
    /// Cross-validate on every seed's subset (the full protocol), or on the first seed's subset
    /// at each label budget and reuse its choice for the other seeds (the quick default).
    pub select_every_seed: bool,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            min_steps: 40,
            max_steps: 200,
            batch_size: 32,
            lr: 1e-3,
            lr_grid: vec![3e-4, 1e-3, 3e-3, 1e-2],
            head_lr_scale: 10.0,
            layer_decay: 1.0,
            weight_decay: 0.01,
            lp_steps: 100,
            lp_lr: 1e-2,
            cv_folds: 3,
            stop_points: 4,
            select_every_seed: false,
        }
    }
}

impl FinetuneConfig {
    /// A tiny budget for smoke tests: `steps` steps, one learning rate, 2 folds, 2 stopping
    /// points, 5 LP steps.
    pub fn tiny(steps: usize) -> Self {
        Self {
            min_steps: steps,
            max_steps: steps,
            lr_grid: vec![1e-3],
            cv_folds: 2,
            stop_points: 2,
            lp_steps: 5,
            ..Self::default()
        }
    }

    /// The optimizer steps of the whole schedule on `n` examples.
    pub fn budget(&self, n: usize) -> usize {
        let per_epoch = n.div_ceil(self.batch_size.max(1)).max(1);
        (self.epochs * per_epoch).clamp(self.min_steps.min(self.max_steps), self.max_steps).max(1)
    }
    /// The learning rates cross-validation tries.
    pub fn grid(&self) -> Vec<f64> {
        if self.lr_grid.is_empty() {
            vec![self.lr]
        } else {
            self.lr_grid.clone()
        }
    }
    /// The step at stopping point `j` of [`Self::stop_points`] (1-based; the last is the budget).
    pub(crate) fn stop_step(&self, n: usize, j: usize) -> usize {
        let points = self.stop_points.max(1);
        (self.budget(n) * j.min(points)).div_ceil(points)
    }
}

/// Parameter-free layer normalisation of features before the head: encoders emit features of
/// very different scales, and an unnormalised head learns slowly from few labels.
fn normalize(f: &Tensor) -> Tensor {
    let f = f.to_kind(Kind::Float);
    let d = *f.size().last().unwrap_or(&1);
    f.layer_norm([d], None::<Tensor>, None::<Tensor>, 1e-5, false)
}

/// An encoder being fine-tuned with its head, one optimizer step at a time.
pub struct Finetuned<'a> {
    pub encoder: Box<dyn Encoder + 'a>,
    _head_vs: VarStore,
    head: nn::Linear,
    opt: Optimizer,
    device: Device,
    lr: f64,
    budget: usize,
    step: usize,
    batch: usize,
    seed: u64,
}

impl<'a> Finetuned<'a> {
    /// A new head on `encoder`, fitted on its frozen features of `train` when `cfg.lp_steps > 0`
    /// (LP), ready to fine-tune at encoder learning rate `lr` (`pretrained`: the head at
    /// `lr * cfg.head_lr_scale` and layer-wise decay; scratch: one rate).
    pub fn new(
        encoder: Box<dyn Encoder + 'a>,
        train: &LabeledSet,
        cfg: &FinetuneConfig,
        lr: f64,
        pretrained: bool,
        device: Device,
        seed: u64,
    ) -> Result<Self> {
        let _rng = crate::rng::torch_rng(crate::rng::derive(seed, "finetune-init"));
        let head_vs = VarStore::new(device);
        let head = nn::linear(head_vs.root() / "head", encoder.feature_dim(), train.num_classes, Default::default());
        if cfg.lp_steps > 0 {
            let z = normalize(&extract_features(encoder.as_ref(), &train.inputs, 256, device)).to_device(device);
            let y = train.labels.to_device(device);
            let mut lp = Optimizer::new(&head_vs, OptimizerConfig::adamw(0.0));
            for _ in 0..cfg.lp_steps {
                lp.zero_grad();
                head.forward(&z).cross_entropy_for_logits(&y).backward();
                lp.step(cfg.lp_lr)?;
            }
        }
        let mut opt = Optimizer::over(
            &[("encoder.", encoder.var_store()), ("head.", &head_vs)],
            OptimizerConfig::adamw(cfg.weight_decay),
        );
        if pretrained {
            let (head_scale, decay) = (cfg.head_lr_scale, cfg.layer_decay);
            let enc = encoder.as_ref();
            opt.set_lr_scales(|name| match name.strip_prefix("encoder.") {
                None => head_scale,
                Some(var) => match enc.layer_of(var) {
                    Some((l, top)) => decay.powi(top.saturating_sub(l) as i32),
                    None => 1.0,
                },
            });
        }
        Ok(Self {
            encoder,
            _head_vs: head_vs,
            head,
            opt,
            device,
            lr,
            budget: cfg.budget(train.len()),
            step: 0,
            batch: cfg.batch_size.max(1),
            seed,
        })
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Train until `to_step` steps of the schedule have been taken. Each epoch visits the subset
    /// in a seeded order; `augment` is applied to each mini-batch (on the CPU) with a per-step
    /// seed.
    pub fn advance(
        &mut self,
        train: &LabeledSet,
        to_step: usize,
        augment: &dyn Fn(&Tensor, u64) -> Tensor,
    ) -> Result<()> {
        let _rng = crate::rng::torch_rng(crate::rng::derive(mix_seed(&[self.seed, self.step as u64]), "finetune"));
        let n = train.len();
        let per_epoch = n.div_ceil(self.batch).max(1);
        let mut order = Vec::new();
        while self.step < to_step.min(self.budget) {
            let (epoch, slot) = (self.step / per_epoch, self.step % per_epoch);
            if slot == 0 || order.is_empty() {
                order = epoch_order(n, self.seed, epoch as u64);
            }
            let rows: Vec<i64> = order.iter().skip(slot * self.batch).take(self.batch).map(|&i| i as i64).collect();
            let idx = Tensor::from_slice(&rows);
            let x = augment(&train.inputs.index_select(0, &idx), mix_seed(&[self.seed, self.step as u64]));
            let y = train.labels.index_select(0, &idx).to_device(self.device);
            self.opt.zero_grad();
            let logits = self.head.forward(&normalize(&self.encoder.features(&x.to_device(self.device), true)));
            logits.to_kind(Kind::Float).cross_entropy_for_logits(&y).backward();
            let t = self.step as f64 / self.budget as f64;
            self.opt.step(self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))?;
            self.step += 1;
        }
        Ok(())
    }

    /// Predicted labels of `xs` (CPU), in eval mode.
    pub fn predict(&self, xs: &Tensor, batch: usize) -> Tensor {
        super::map_batches(xs, batch, self.device, |x| {
            self.head.forward(&normalize(&self.encoder.features(x, false))).argmax(1, false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_follows_epochs_within_its_bounds() {
        let cfg = FinetuneConfig { epochs: 20, min_steps: 40, max_steps: 200, batch_size: 32, ..Default::default() };
        assert_eq!(cfg.budget(10), 40); // one batch per epoch: the floor
        assert_eq!(cfg.budget(100), 80); // 4 batches x 20 epochs
        assert_eq!(cfg.budget(500), 200); // 16 x 20 = 320: the ceiling
        assert_eq!(cfg.stop_step(100, 1), 20);
        assert_eq!(cfg.stop_step(100, 4), 80);
        assert_eq!(FinetuneConfig { lr_grid: vec![], lr: 0.5, ..cfg }.grid(), vec![0.5]);
    }
}
