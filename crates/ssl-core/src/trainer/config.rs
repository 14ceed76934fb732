//! The trainer's settings: [`TrainConfig`], with the loader's thread rule.
use crate::optim::OptimizerConfig;
use crate::schedule::{Decay, LrSchedule};
use serde::{Deserialize, Serialize};
use tch::Device;

/// Trainer settings. Defaults are conservative; modalities override them from their papers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub steps: u64,
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer update.
    pub grad_accum: usize,
    /// Global gradient-norm clip; 0 disables clipping.
    pub clip_norm: f64,
    pub lr: f64,
    /// The peak learning rate when pretraining continues from `--init-from` weights and no
    /// `--lr` is given (`None`: [`TrainConfig::lr`]); a pretrained model does not take the
    /// from-scratch rate. Applied by the run plan ([`crate::run::plan`]).
    pub continued_lr: Option<f64>,
    pub warmup_steps: u64,
    pub decay: Decay,
    /// Final LR as a fraction of the peak.
    pub lr_floor: f64,
    pub optimizer: OptimizerConfig,
    pub seed: u64,
    pub log_every: u64,
    /// 0 saves only at the end.
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// Stop with an error after this many non-finite steps in a row.
    pub max_nonfinite_in_row: u32,
    /// Stop with an error after this many training inputs in a row fail to load.
    pub max_failed_inputs_in_row: u64,
    /// Measure one step in a child process before training and refuse a plan that will not
    /// fit in memory ([`super::memory_check`]). Off for library use; the run pipeline turns it
    /// on unless `--no-memory-check`.
    pub memory_check: bool,
    /// The memory budget in bytes (`--max-memory`); `None`: the container's limit, else the
    /// memory available.
    pub max_memory: Option<u64>,
    /// bf16 autocast (CUDA only; ignored on CPU).
    pub bf16: bool,
    /// Batches prepared ahead by the loader thread.
    pub prefetch: usize,
    /// Decode/augment threads of the loader; 0 picks them (see [`loader_threads`]).
    pub loader_threads: usize,
    /// Show progress: a bar on a terminal, a line per logging step otherwise.
    pub progress: bool,
    /// Steps recorded with LibTorch's profiler into `RUN/profile/` (0: none; see
    /// [`crate::profile`]). Not a property of the run: neither stored nor compared on resume.
    #[serde(skip)]
    pub profile: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 64,
            grad_accum: 1,
            clip_norm: 1.0,
            lr: 1e-3,
            continued_lr: None,
            warmup_steps: 100,
            decay: Decay::Cosine,
            lr_floor: 0.1,
            optimizer: OptimizerConfig::default(),
            seed: 0,
            log_every: 10,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            max_nonfinite_in_row: 5,
            max_failed_inputs_in_row: crate::loader::MAX_FAILED_IN_ROW,
            memory_check: false,
            max_memory: None,
            bf16: true,
            prefetch: 4,
            loader_threads: 0,
            progress: true,
            profile: 0,
        }
    }
}

/// The loader's decode/augment threads: `requested` if non-zero; otherwise, on the CPU, the cores
/// LibTorch's intra-op threads leave free (at least one), and on a GPU all cores but one. More
/// loader threads than free cores on the CPU made every step slower: measured with
/// `cargo xtask bench` on 2 cores, the rotation ResNet ran at 395 rotated images/s with rayon's
/// default pool (2 threads) and 1,130 with one loader thread.
pub fn loader_threads(requested: usize, device: Device) -> usize {
    if requested > 0 {
        return requested;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match device {
        Device::Cpu => cores.saturating_sub(tch::get_num_threads().max(0) as usize).max(1),
        _ => cores.saturating_sub(1).max(1),
    }
}

impl TrainConfig {
    /// The LR schedule this configuration describes.
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            peak: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
            decay: self.decay,
            floor: self.lr_floor,
        }
    }
}
