//! The two trained classifiers of the protocol: a logistic-regression head on fixed features
//! (linear probe and raw-input baseline) and full fine-tuning of an encoder with a linear head.
use super::{Encoder, LabeledSet};
use crate::error::Result;
use crate::loader::mix_seed;
use crate::optim::{Optimizer, OptimizerConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// Settings of the logistic-regression head (full batch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    pub steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// An L2 penalty `l2 / 2 * |W|^2` added to the loss (the bias is not penalised). Unlike
    /// AdamW's decoupled `weight_decay`, which shrinks every weight towards the same size
    /// whatever its gradient, this is classic regularised logistic regression: uninformative
    /// features end up with small weights.
    #[serde(default)]
    pub l2: f64,
    /// With 2 or more, `l2` and `weight_decay` are ignored: `l2` is chosen from [`CV_L2`] by this
    /// many-fold cross-validation on the labeled subset itself (no test data; `weight_decay` 0),
    /// then the head is refitted on the whole subset with it. 0: use `l2` and `weight_decay`.
    #[serde(default)]
    pub cv_folds: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { steps: 300, lr: 1e-2, weight_decay: 1e-3, l2: 0.0, cv_folds: 0 }
    }
}

/// The L2 penalties that cross-validation ([`ProbeConfig::cv_folds`]) chooses from.
pub const CV_L2: [f64; 5] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0];

/// The L2 penalty with the best validation accuracy over `folds` folds (row `i` is in fold
/// `i % folds`); the first of equals (the weakest penalty) wins.
pub fn cv_l2(x: &Tensor, y: &Tensor, num_classes: i64, cfg: &ProbeConfig, seed: u64) -> Result<f64> {
    let n = x.size()[0];
    let folds = cfg.cv_folds as i64;
    let fold_of = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(folds);
    // (fit x, fit y, validation x, validation y) per fold, split once for every penalty.
    let splits: Vec<_> = (0..folds)
        .filter_map(|f| {
            let val = fold_of.eq(f).nonzero().squeeze_dim(1);
            let fit = fold_of.ne(f).nonzero().squeeze_dim(1);
            (val.numel() > 0 && fit.numel() > 0).then(|| {
                (x.index_select(0, &fit), y.index_select(0, &fit), x.index_select(0, &val), y.index_select(0, &val))
            })
        })
        .collect();
    let mut best = (f64::NEG_INFINITY, cfg.l2);
    for &l2 in &CV_L2 {
        let one = ProbeConfig { l2, weight_decay: 0.0, cv_folds: 0, ..*cfg };
        let mut correct = 0i64;
        for (xf, yf, xv, yv) in &splits {
            let pred = LinearClassifier::fit(xf, yf, num_classes, &one, seed)?.predict(xv);
            correct += pred.eq_tensor(yv).sum(Kind::Int64).int64_value(&[]);
        }
        let acc = correct as f64 / n.max(1) as f64;
        if acc > best.0 {
            best = (acc, l2);
        }
    }
    Ok(best.1)
}

/// Settings of fine-tuning (mini-batches drawn with replacement from the labeled subset).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self { steps: 100, batch_size: 32, lr: 1e-3, weight_decay: 0.01 }
    }
}

/// Logistic regression on standardised features.
pub struct LinearClassifier {
    mean: Tensor,
    std: Tensor,
    _vs: VarStore,
    head: nn::Linear,
}

impl LinearClassifier {
    /// Fit on features `x` `[N, D]` (CPU) and labels `y` `[N]`.
    pub fn fit(x: &Tensor, y: &Tensor, num_classes: i64, cfg: &ProbeConfig, seed: u64) -> Result<Self> {
        if cfg.cv_folds >= 2 && x.size()[0] >= 2 * cfg.cv_folds as i64 {
            let l2 = cv_l2(x, y, num_classes, cfg, seed)?;
            return Self::fit(x, y, num_classes, &ProbeConfig { l2, weight_decay: 0.0, cv_folds: 0, ..*cfg }, seed);
        }
        let _rng = crate::rng::torch_rng(crate::rng::derive(seed, "probe-init"));
        let x = x.to_kind(Kind::Float).flatten(1, -1);
        let mean = x.mean_dim(0, true, Kind::Float);
        let std = if x.size()[0] > 1 { x.std_dim(0, false, true) + 1e-5 } else { x.ones_like() };
        let z = (&x - &mean) / &std;
        let vs = VarStore::new(Device::Cpu);
        let cfg_lin = nn::LinearConfig { ws_init: nn::Init::Const(0.0), ..Default::default() };
        let head = nn::linear(vs.root() / "probe", z.size()[1], num_classes, cfg_lin);
        let mut opt = Optimizer::new(&vs, OptimizerConfig::adamw(cfg.weight_decay));
        for _ in 0..cfg.steps {
            opt.zero_grad();
            let loss = head.forward(&z).cross_entropy_for_logits(y);
            let loss = if cfg.l2 > 0.0 { loss + head.ws.square().sum(Kind::Float) * (cfg.l2 / 2.0) } else { loss };
            loss.backward();
            opt.step(cfg.lr)?;
        }
        Ok(Self { mean, std, _vs: vs, head })
    }

    /// Predicted labels for features `x` (CPU).
    pub fn predict(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let z = (x.to_kind(Kind::Float).flatten(1, -1) - &self.mean) / &self.std;
            self.head.forward(&z).argmax(1, false)
        })
    }
}

/// Parameter-free layer normalisation of features before the fine-tuning head: encoders emit
/// features of very different scales, and an unnormalised head learns slowly from few labels
/// (the linear probe standardises for the same reason).
fn normalize(f: &Tensor) -> Tensor {
    let f = f.to_kind(Kind::Float);
    let d = *f.size().last().unwrap_or(&1);
    f.layer_norm([d], None::<Tensor>, None::<Tensor>, 1e-5, false)
}

/// An encoder fine-tuned together with a linear head.
pub struct Finetuned<'a> {
    pub encoder: Box<dyn Encoder + 'a>,
    _head_vs: VarStore,
    head: nn::Linear,
    device: Device,
}

impl<'a> Finetuned<'a> {
    /// Train every parameter of `encoder` plus a new linear head on `train`. `augment` is applied
    /// to each mini-batch (on the CPU) with a per-step seed.
    pub fn train(
        encoder: Box<dyn Encoder + 'a>,
        train: &LabeledSet,
        cfg: &FinetuneConfig,
        augment: &dyn Fn(&Tensor, u64) -> Tensor,
        device: Device,
        seed: u64,
    ) -> Result<Self> {
        let _rng = crate::rng::torch_rng(crate::rng::derive(seed, "finetune-init"));
        let head_vs = VarStore::new(device);
        let head = nn::linear(head_vs.root() / "head", encoder.feature_dim(), train.num_classes, Default::default());
        let mut opt = Optimizer::over(
            &[("encoder.", encoder.var_store()), ("head.", &head_vs)],
            OptimizerConfig::adamw(cfg.weight_decay),
        );
        let n = train.len() as i64;
        let bs = (cfg.batch_size as i64).min(n).max(1);
        for step in 0..cfg.steps {
            let idx = Tensor::randint(n, [bs], (Kind::Int64, Device::Cpu));
            let x = augment(&train.inputs.index_select(0, &idx), mix_seed(&[seed, step as u64]));
            let y = train.labels.index_select(0, &idx).to_device(device);
            opt.zero_grad();
            let logits = head.forward(&normalize(&encoder.features(&x.to_device(device), true)));
            logits.to_kind(Kind::Float).cross_entropy_for_logits(&y).backward();
            let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / cfg.steps as f64).cos());
            opt.step(lr)?;
        }
        Ok(Self { encoder, _head_vs: head_vs, head, device })
    }

    /// Predicted labels of `xs` (CPU), in eval mode.
    pub fn predict(&self, xs: &Tensor, batch: usize) -> Tensor {
        super::map_batches(xs, batch, self.device, |x| {
            self.head.forward(&normalize(&self.encoder.features(x, false))).argmax(1, false)
        })
    }
}
