//! The logistic-regression head on fixed features: the linear probe and the raw-input baseline.
//! (Fine-tuning is in [`super::finetune`].)
use crate::error::Result;
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

/// The L2 penalty with the best validation accuracy over `cfg.cv_folds` stratified folds
/// ([`super::selection::splits`]); the first of equals (the weakest penalty) wins. With too few
/// examples per class to split, `cfg.l2`.
pub fn cv_l2(x: &Tensor, y: &Tensor, num_classes: i64, cfg: &ProbeConfig, seed: u64) -> Result<f64> {
    let n = x.size()[0];
    let labels = Vec::<i64>::try_from(y).unwrap_or_default();
    // (fit x, fit y, validation x, validation y) per fold, split once for every penalty.
    let splits: Vec<_> = super::selection::splits(&labels, num_classes, cfg.cv_folds)
        .into_iter()
        .map(|(fit, val)| {
            let (fit, val) = (Tensor::from_slice(&fit), Tensor::from_slice(&val));
            (x.index_select(0, &fit), y.index_select(0, &fit), x.index_select(0, &val), y.index_select(0, &val))
        })
        .collect();
    if splits.is_empty() {
        return Ok(cfg.l2);
    }
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
