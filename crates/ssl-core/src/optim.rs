//! AdamW and SGD (Nesterov) whose state tensors are ours, so they go into checkpoints.
//!
//! Two code paths compute the same update: the fused/multi-tensor LibTorch kernels reached through
//! [`crate::kernels`] (the default) and a composed-ops fallback written with plain tensor ops. Weight
//! decay skips biases and normalisation parameters (every tensor with fewer than two dimensions).
//!
//! ```
//! use ssl_core::optim::{Optimizer, OptimizerConfig};
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//! let vs = nn::VarStore::new(Device::Cpu);
//! let lin = nn::linear(vs.root() / "lin", 3, 1, Default::default());
//! let mut opt = Optimizer::new(&vs, OptimizerConfig::adamw(0.01));
//! let x = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
//! for _ in 0..5 {
//!     opt.zero_grad();
//!     lin.forward(&x).pow_tensor_scalar(2).mean(Kind::Float).backward();
//!     opt.step(1e-2).unwrap();
//! }
//! assert_eq!(opt.steps_taken(), 5);
//! ```
use crate::error::{CoreError, Result};
use crate::kernels;
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Kind, Tensor};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay (Loshchilov & Hutter).
    AdamW { beta1: f64, beta2: f64, eps: f64 },
    /// SGD with momentum, Nesterov if asked; weight decay is added to the gradient.
    Sgd { momentum: f64, nesterov: bool },
}

/// Optimizer settings; the learning rate itself comes from the schedule at each step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
    /// Use the fused / multi-tensor LibTorch kernels (true) or the composed-ops fallback.
    pub fused: bool,
}

impl OptimizerConfig {
    /// AdamW with PyTorch's default betas and eps.
    pub fn adamw(weight_decay: f64) -> Self {
        Self { kind: OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, weight_decay, fused: true }
    }
    /// SGD with Nesterov momentum 0.9.
    pub fn sgd_nesterov(weight_decay: f64) -> Self {
        Self { kind: OptimizerKind::Sgd { momentum: 0.9, nesterov: true }, weight_decay, fused: true }
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::adamw(0.05)
    }
}

struct Param {
    name: String,
    var: Tensor,
    decay: bool,
    /// This parameter's learning rate is `lr * lr_scale` (1 unless [`Optimizer::set_lr_scales`]).
    lr_scale: f64,
    /// AdamW: exp_avg, exp_avg_sq, step (f32 scalar). SGD: momentum buffer.
    state: Vec<Tensor>,
}

/// An optimizer over every trainable variable of a [`VarStore`], in name order.
pub struct Optimizer {
    params: Vec<Param>,
    config: OptimizerConfig,
    steps: u64,
}

fn state_names(kind: &OptimizerKind) -> &'static [&'static str] {
    match kind {
        OptimizerKind::AdamW { .. } => &["exp_avg", "exp_avg_sq", "step"],
        OptimizerKind::Sgd { .. } => &["momentum_buffer"],
    }
}

impl Optimizer {
    /// Collect the trainable variables of `vs`; tensors with fewer than two dimensions (biases,
    /// norm scales) get no weight decay.
    pub fn new(vs: &VarStore, config: OptimizerConfig) -> Self {
        Self::over(&[("", vs)], config)
    }

    /// An optimizer over several variable stores (e.g. an encoder and a classification head);
    /// each store's variable names get its prefix.
    pub fn over(stores: &[(&str, &VarStore)], config: OptimizerConfig) -> Self {
        let mut named: Vec<(String, Tensor)> = stores
            .iter()
            .flat_map(|(prefix, vs)| vs.variables().into_iter().map(move |(n, t)| (format!("{prefix}{n}"), t)))
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, var)| {
                let decay = var.dim() >= 2;
                let state = match config.kind {
                    OptimizerKind::AdamW { .. } => vec![
                        var.zeros_like().detach(),
                        var.zeros_like().detach(),
                        Tensor::zeros([], (Kind::Float, var.device())),
                    ],
                    OptimizerKind::Sgd { .. } => vec![var.zeros_like().detach()],
                };
                Param { name, var, decay, lr_scale: 1.0, state }
            })
            .collect();
        Self { params, config, steps: 0 }
    }

    /// The configuration this optimizer runs with.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Number of updates applied so far.
    pub fn steps_taken(&self) -> u64 {
        self.steps
    }

    /// Names of the parameters that receive weight decay.
    pub fn decayed_parameter_names(&self) -> Vec<&str> {
        self.params.iter().filter(|p| p.decay).map(|p| p.name.as_str()).collect()
    }

    /// Scale each parameter's learning rate by `scale(name)` (a lower rate for a pretrained encoder
    /// than for a new head, layer-wise decay). Parameters with equal scales are updated together.
    pub fn set_lr_scales(&mut self, scale: impl Fn(&str) -> f64) {
        for p in &mut self.params {
            p.lr_scale = scale(&p.name);
        }
    }

    /// Reset every gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.var.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// The defined gradients, in parameter order.
    pub fn grads(&self) -> Vec<Tensor> {
        self.params.iter().map(|p| p.var.grad()).filter(|g| g.defined()).collect()
    }

    /// Clip the global gradient norm to `max_norm` (no clipping when `max_norm <= 0`) and return
    /// the pre-clipping norm as a device scalar (not read back to the host).
    pub(crate) fn clip_grad_norm(&self, max_norm: f64) -> Result<Tensor> {
        let grads = self.grads();
        let refs: Vec<&Tensor> = grads.iter().collect();
        kernels::clip_grad_norm(&refs, max_norm)
    }

    /// Apply one update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps;
        let config = self.config;
        let mut scales: Vec<f64> = self.params.iter().map(|p| p.lr_scale).collect();
        scales.sort_by(f64::total_cmp);
        scales.dedup();
        for scale in scales {
            let lr = lr * scale;
            for decay in [true, false] {
                let wd = if decay { config.weight_decay } else { 0.0 };
                let group: Vec<&mut Param> = self
                    .params
                    .iter_mut()
                    .filter(|p| p.decay == decay && p.lr_scale == scale && p.var.grad().defined())
                    .collect();
                if group.is_empty() {
                    continue;
                }
                tch::no_grad(|| match (config.kind, config.fused) {
                    (OptimizerKind::AdamW { beta1, beta2, eps }, true) => fused_adamw(group, lr, beta1, beta2, wd, eps),
                    (OptimizerKind::AdamW { beta1, beta2, eps }, false) => {
                        composed_adamw(group, lr, beta1, beta2, wd, eps, t)
                    }
                    (OptimizerKind::Sgd { momentum, nesterov }, true) => {
                        let grads: Vec<Tensor> = group.iter().map(|p| p.var.grad()).collect();
                        let params: Vec<&Tensor> = group.iter().map(|p| &p.var).collect();
                        let bufs: Vec<&Tensor> = group.iter().map(|p| &p.state[0]).collect();
                        let grads: Vec<&Tensor> = grads.iter().collect();
                        kernels::foreach_sgd(&params, &grads, &bufs, lr, momentum, wd, nesterov, t == 1)
                    }
                    (OptimizerKind::Sgd { momentum, nesterov }, false) => {
                        composed_sgd(group, lr, momentum, wd, nesterov, t == 1)
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Every state tensor, named `<param>.<state>`, plus nothing else: the step count is in the
    /// `step` tensors (AdamW) or recovered by the caller (SGD keeps it in the checkpoint JSON).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let names = state_names(&self.config.kind);
        self.params
            .iter()
            .flat_map(|p| names.iter().zip(&p.state).map(move |(s, t)| (format!("{}.{s}", p.name), t.shallow_clone())))
            .collect()
    }

    /// Restore state saved by [`Optimizer::state_tensors`]; `steps` is the number of updates
    /// already applied. A missing tensor or a shape mismatch is an error naming the tensor.
    pub fn load_state(&mut self, saved: &[(String, Tensor)], steps: u64) -> Result<()> {
        let names = state_names(&self.config.kind);
        for p in &mut self.params {
            for (s, dst) in names.iter().zip(p.state.iter_mut()) {
                let key = format!("{}.{s}", p.name);
                let src = saved
                    .iter()
                    .find(|(n, _)| *n == key)
                    .map(|(_, t)| t)
                    .ok_or_else(|| CoreError::CheckpointMismatch(format!("optimizer state `{key}` is missing")))?;
                if src.size() != dst.size() {
                    return Err(CoreError::CheckpointMismatch(format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        src.size(),
                        dst.size()
                    )));
                }
                tch::no_grad(|| dst.copy_(src));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

fn fused_adamw(group: Vec<&mut Param>, lr: f64, b1: f64, b2: f64, wd: f64, eps: f64) -> Result<()> {
    let grads: Vec<Tensor> = group.iter().map(|p| p.var.grad()).collect();
    for p in &group {
        // `_fused_adamw_` expects the step to be incremented before the call.
        let mut s = p.state[2].shallow_clone();
        let _ = s.g_add_scalar_(1.0);
    }
    let params: Vec<&Tensor> = group.iter().map(|p| &p.var).collect();
    let m: Vec<&Tensor> = group.iter().map(|p| &p.state[0]).collect();
    let v: Vec<&Tensor> = group.iter().map(|p| &p.state[1]).collect();
    let s: Vec<&Tensor> = group.iter().map(|p| &p.state[2]).collect();
    let g: Vec<&Tensor> = grads.iter().collect();
    kernels::fused_adamw(&params, &g, &m, &v, &s, lr, (b1, b2), wd, eps)
}

/// torch.optim.AdamW's single-tensor algorithm, op by op.
fn composed_adamw(group: Vec<&mut Param>, lr: f64, b1: f64, b2: f64, wd: f64, eps: f64, t: u64) -> Result<()> {
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2_sqrt = (1.0 - b2.powi(t as i32)).sqrt();
    for p in group {
        let g = p.var.grad();
        let mut var = p.var.shallow_clone();
        let (mut m, mut v, mut s) =
            (p.state[0].shallow_clone(), p.state[1].shallow_clone(), p.state[2].shallow_clone());
        let _ = s.g_add_scalar_(1.0);
        if wd != 0.0 {
            let _ = var.g_mul_scalar_(1.0 - lr * wd);
        }
        let _ = m.f_lerp_(&g, 1.0 - b1)?;
        let _ = v.g_mul_scalar_(b2);
        let _ = v.f_add_(&(&g * &g * (1.0 - b2)))?;
        let denom = v.sqrt() / bc2_sqrt + eps;
        let _ = var.f_sub_(&(&m / denom * (lr / bc1)))?;
    }
    Ok(())
}

/// torch.optim.SGD's single-tensor algorithm, op by op.
fn composed_sgd(group: Vec<&mut Param>, lr: f64, momentum: f64, wd: f64, nesterov: bool, first: bool) -> Result<()> {
    for p in group {
        let mut var = p.var.shallow_clone();
        let mut d = p.var.grad();
        if wd != 0.0 {
            d = &d + &var * wd;
        }
        if momentum != 0.0 {
            let mut buf = p.state[0].shallow_clone();
            if first {
                buf.copy_(&d);
            } else {
                let _ = buf.g_mul_scalar_(momentum);
                let _ = buf.f_add_(&d)?;
            }
            d = if nesterov { &d + &buf * momentum } else { buf.shallow_clone() };
        }
        let _ = var.f_sub_(&(d * lr))?;
    }
    Ok(())
}
