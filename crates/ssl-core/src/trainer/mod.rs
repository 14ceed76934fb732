//! The training loop shared by every modality, made of parts.
//!
//! A modality implements [`Objective`] (batch in; loss and named metrics out) and a
//! [`DataSource`]; the [`Trainer`] owns everything else. [`Trainer::fit`] only hands off:
//!
//! - [`resume`] decides where the run starts (the newest checkpoint that loads, `--init-from`,
//!   or fresh weights);
//! - [`strategy`] is chosen once: one process, or data-parallel over c10d;
//! - [`step`] runs one step (forward, backward, all-reduce, clip, NaN guard, optimizer), and
//!   turns a LibTorch failure inside it into a typed error with the last good state kept;
//! - [`parts`] are the components called around each step: the EMA teacher, the metrics and
//!   progress writer with the benchmark's window gate, the profiler window, the checkpointer and
//!   the interrupt guard. Adding one never touches `fit`.
use crate::checkpoint::CheckpointState;
use crate::ema::EmaTeacher;
use crate::error::{CoreError, Result};
use crate::loader::{DataSource, Loader};
use crate::optim::Optimizer;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{nn::VarStore, Device, Tensor};

mod config;
pub mod memory_check;
pub mod parts;
mod records;
pub mod resume;
pub mod step;
pub mod strategy;

pub use crate::sinks::{read_metrics, MetricsLine};
pub use config::{loader_threads, TrainConfig};
pub use records::{TrainSummary, WindowGate};

/// What one forward pass of an objective returns.
pub struct StepOutput {
    /// The scalar loss to minimise.
    pub loss: Tensor,
    /// Named scalar metrics (kept on the device; read only at logging steps).
    pub metrics: Vec<(String, Tensor)>,
}

/// A pretext task: what a modality plugs into the trainer.
pub trait Objective {
    /// The batch type produced by the modality's [`DataSource`].
    type Batch: Send + 'static;
    /// Every trainable variable (encoder and heads).
    fn var_store(&self) -> &VarStore;
    /// Forward pass and loss for one batch, in training mode.
    fn forward(&mut self, batch: &Self::Batch, device: Device) -> Result<StepOutput>;
    /// Called after each step with the step number and the total (e.g. to anneal a temperature).
    fn on_step_end(&mut self, _step: u64, _total: u64) {}
    /// The number of samples in a batch (for samples/s).
    fn batch_samples(&self, batch: &Self::Batch) -> usize;
    /// How many terms the batch's loss averages: its samples, unless the loss is a mean over
    /// something else (masked tokens, masked frames). Data-parallel training weights each rank's
    /// loss by it, so the averaged gradient is exactly that of the global batch's mean loss.
    fn loss_weight(&self, batch: &Self::Batch) -> f64 {
        self.batch_samples(batch) as f64
    }
    /// The EMA teacher whose variables follow the student's (BYOL, DINO, data2vec), if the
    /// objective has one: the trainer updates it after every applied optimizer step, before
    /// the step's checkpoint, so resume stays exact.
    fn teacher(&self) -> Option<EmaTeacher> {
        None
    }
}

/// A boxed objective is an objective (a recipe with several methods picks one at run time).
impl<O: Objective + ?Sized> Objective for Box<O> {
    type Batch = O::Batch;
    fn var_store(&self) -> &VarStore {
        (**self).var_store()
    }
    fn forward(&mut self, batch: &Self::Batch, device: Device) -> Result<StepOutput> {
        (**self).forward(batch, device)
    }
    fn on_step_end(&mut self, step: u64, total: u64) {
        (**self).on_step_end(step, total)
    }
    fn batch_samples(&self, batch: &Self::Batch) -> usize {
        (**self).batch_samples(batch)
    }
    fn loss_weight(&self, batch: &Self::Batch) -> f64 {
        (**self).loss_weight(batch)
    }
    fn teacher(&self) -> Option<EmaTeacher> {
        (**self).teacher()
    }
}

/// The training engine.
pub struct Trainer {
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub device: Device,
    /// Extra configuration (model, method) stored in checkpoints and checked on resume.
    pub model_config: serde_json::Value,
    /// See [`WindowGate`]; `None` for every real run.
    pub window_gate: Option<WindowGate>,
    /// Continue from the newest checkpoint of the run directory (`--resume`); a missing
    /// checkpoint starts anew.
    pub resume: bool,
    /// The weights a run that starts anew loads first (`--init-from`); otherwise the
    /// objective's fresh initialisation.
    pub init: Option<crate::init::InitWeights>,
}

impl Trainer {
    pub fn new(config: TrainConfig, run_dir: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            config,
            run_dir: run_dir.into(),
            device,
            model_config: serde_json::Value::Null,
            window_gate: None,
            resume: false,
            init: None,
        }
    }

    /// This trainer, continuing from the newest checkpoint of its run directory when `resume`.
    pub fn resuming(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// This trainer, storing `model_config` (the model and method, not the run length) in every
    /// checkpoint and checking it on resume.
    pub fn with_model_config(mut self, model_config: serde_json::Value) -> Self {
        self.model_config = model_config;
        self
    }

    /// Train `objective` on `source`, starting where [`Trainer::resume`] and [`Trainer::init`]
    /// say: the newest checkpoint, else the initial weights, else the objective's own.
    pub fn fit<O, S>(&self, objective: &mut O, source: Arc<S>) -> Result<TrainSummary>
    where
        O: Objective + ?Sized,
        S: DataSource<Batch = O::Batch>,
    {
        self.check()?;
        let world = crate::dist::world();
        let mut optimizer = Optimizer::new(objective.var_store(), self.config.optimizer);
        let restored = resume::restore(self, &world, objective.var_store(), &mut optimizer)?;
        let mut state = restored.state.clone();
        let estimate = memory_check::check(&self.config, self.device, objective, &mut optimizer, source.as_ref())?;
        let strategy = strategy::Strategy::choose(objective.var_store())?;
        let mut parts = parts::Parts::standard(self, &world, &state, objective.teacher());
        let mut loader = self.loader(source, &world, &state);
        let mut stepper = step::Stepper::new(&self.config, self.device, &state);
        parts.start(&parts::Scene::new(objective.var_store(), &optimizer, &state))?;
        while state.step < self.config.steps {
            parts.before_step(state.step)?;
            let report = match stepper.run(objective, &mut optimizer, &strategy, &mut loader, &mut state) {
                Ok(report) => report,
                Err(failure) => return Err(parts.failed(*failure, objective.var_store(), &optimizer)),
            };
            let mut scene = parts::Scene::new(objective.var_store(), &optimizer, &state);
            if parts.after_step(&report, &mut scene)? == parts::Flow::Stop {
                break;
            }
        }
        let mut summary = parts.finish(&state, restored.resumed_from);
        summary.report.memory_estimate_bytes = estimate;
        summary.report.peak_resident_bytes = crate::memory::status_bytes("VmHWM:");
        Ok(summary)
    }

    fn check(&self) -> Result<()> {
        if self.config.batch_size == 0 || self.config.grad_accum == 0 {
            return Err(CoreError::InvalidArgument("batch_size and grad_accum must be positive".into()));
        }
        std::fs::create_dir_all(&self.run_dir).map_err(|e| CoreError::io(&self.run_dir, e))
    }

    /// This rank's loader, from the position `state` holds, its batches pinned for the device.
    fn loader<S: DataSource>(
        &self,
        source: Arc<S>,
        world: &crate::dist::World,
        state: &CheckpointState,
    ) -> Loader<S::Batch> {
        let cfg = &self.config;
        Loader::sharded(
            source,
            cfg.batch_size,
            cfg.seed,
            state.loader,
            cfg.prefetch,
            loader_threads(cfg.loader_threads, self.device),
            crate::loader::Target {
                shard: (world.rank, world.size),
                device: self.device,
                max_failed_in_row: cfg.max_failed_inputs_in_row,
            },
        )
    }
}
