//! A toy regression task wired through every ssl-core extension point. Tests and examples use it
//! to exercise the trainer, checkpoints and the evaluation protocol without any modality; it is
//! also the shortest complete example of implementing [`DataSource`], [`Objective`] and
//! [`Encoder`].
//!
//! ```
//! use ssl_core::toy::{ToyObjective, ToySource};
//! use ssl_core::trainer::{TrainConfig, Trainer};
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = TrainConfig { steps: 20, batch_size: 16, warmup_steps: 2, lr: 1e-2, progress: false, ..Default::default() };
//! let mut objective = ToyObjective::new(tch::Device::Cpu, 4, 0);
//! let summary = Trainer::new(cfg, dir.path(), tch::Device::Cpu)
//!     .fit(&mut objective, std::sync::Arc::new(ToySource::new(256, 4)))
//!     .unwrap();
//! assert!(summary.report.final_loss < summary.losses[0].1);
//! ```
use crate::error::Result;
use crate::eval::Encoder;
use crate::loader::DataSource;
use crate::trainer::{Objective, StepOutput};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// Items are `x ~ U(-1, 1)^dim`, targets `y = sum_i (i+1) x_i / dim + 0.01 noise`.
pub struct ToySource {
    len: usize,
    dim: usize,
}

impl ToySource {
    pub fn new(len: usize, dim: usize) -> Self {
        Self { len, dim }
    }
}

impl DataSource for ToySource {
    type Item = (Vec<f32>, f32);
    type Batch = (Tensor, Tensor);
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, _index: usize, rng: &mut ChaCha8Rng) -> std::result::Result<Self::Item, crate::loader::Skipped> {
        let x: Vec<f32> = (0..self.dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y = x.iter().enumerate().map(|(i, v)| (i + 1) as f32 * v).sum::<f32>() / self.dim as f32
            + 0.01 * rng.random_range(-1.0f32..1.0);
        Ok((x, y))
    }
    fn collate(&self, items: Vec<Self::Item>, _rng: &mut ChaCha8Rng) -> Self::Batch {
        let n = items.len() as i64;
        let xs: Vec<f32> = items.iter().flat_map(|(x, _)| x.iter().copied()).collect();
        let ys: Vec<f32> = items.iter().map(|(_, y)| *y).collect();
        (Tensor::from_slice(&xs).view([n, self.dim as i64]), Tensor::from_slice(&ys))
    }
    fn pin_memory(&self, batch: Self::Batch, device: Device) -> std::result::Result<Self::Batch, tch::TchError> {
        Ok((crate::device::pin(&batch.0, device)?, crate::device::pin(&batch.1, device)?))
    }
}

/// A two-layer MLP regressor. `nan_at` lists steps whose loss is made non-finite (to test the
/// NaN guard).
pub struct ToyObjective {
    vs: VarStore,
    net: nn::Sequential,
    pub nan_at: Vec<u64>,
    step: u64,
}

impl ToyObjective {
    pub fn new(device: Device, dim: i64, seed: i64) -> Self {
        let _rng = crate::rng::torch_rng(seed as u64);
        let vs = VarStore::new(device);
        let root = vs.root();
        let net = nn::seq()
            .add(nn::linear(&root / "fc1", dim, 16, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "fc2", 16, 1, Default::default()));
        Self { vs, net, nan_at: Vec::new(), step: 0 }
    }
}

impl Objective for ToyObjective {
    type Batch = (Tensor, Tensor);
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &Self::Batch, device: Device) -> Result<StepOutput> {
        let (x, y) = (crate::device::upload(&batch.0, device)?, crate::device::upload(&batch.1, device)?);
        let pred = self.net.forward(&x).squeeze_dim(1);
        let mut loss = (pred - y).square().mean(Kind::Float);
        if self.nan_at.contains(&self.step) {
            loss *= f64::NAN;
        }
        let abs_mean = loss.detach().sqrt();
        Ok(StepOutput { loss, metrics: vec![("rmse".into(), abs_mean)] })
    }
    fn on_step_end(&mut self, step: u64, _total: u64) {
        self.step = step + 1;
    }
    fn batch_samples(&self, batch: &Self::Batch) -> usize {
        batch.0.size()[0] as usize
    }
}

/// A linear feature map `x -> tanh(W x)` used as a toy encoder for the protocol.
pub struct ToyEncoder {
    vs: VarStore,
    lin: nn::Linear,
    dim_out: i64,
}

impl ToyEncoder {
    pub fn new(device: Device, dim_in: i64, dim_out: i64, seed: i64) -> Self {
        let _rng = crate::rng::torch_rng(seed as u64);
        let vs = VarStore::new(device);
        let lin = nn::linear(vs.root() / "enc", dim_in, dim_out, Default::default());
        Self { vs, lin, dim_out }
    }
    /// Mutable access, e.g. to copy weights in.
    pub fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }
}

impl Encoder for ToyEncoder {
    fn features(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.lin.forward(&xs.to_kind(Kind::Float)).tanh()
    }
    fn feature_dim(&self) -> i64 {
        self.dim_out
    }
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
}
