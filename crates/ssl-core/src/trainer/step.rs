//! One training step: forward and backward over the micro-batches, the strategy's reduction,
//! clipping, the NaN guard and the optimizer update, with one host read per step.
//!
//! A step that fails, whether LibTorch throws (caught by [`crate::torch_error::catch`]) or an
//! error comes back, leaves the weights as they were before it unless it failed in or after the
//! optimizer update; [`StepFailure::good`] is then the state to save, so `--resume` repeats the
//! step exactly (its draws come from the step's own seed, its batch from the saved position).
use super::strategy::Strategy;
use super::{Objective, TrainConfig};
use crate::checkpoint::CheckpointState;
use crate::error::{CoreError, Result};
use crate::kernels::Bf16Autocast;
use crate::loader::{mix_seed, Loader};
use crate::optim::Optimizer;
use crate::rng::TorchRng;
use crate::schedule::LrSchedule;
use crate::torch_error::TorchFailure;
use tch::{Device, Kind, Tensor};

/// Fault injection for the reliability campaign: with this variable set to a step number, that
/// step allocates a tensor no machine can hold after its first forward pass, so the real
/// LibTorch allocation failure runs through the real error path.
pub(crate) const INJECT_OOM_VAR: &str = "SSL_INJECT_OOM_AT_STEP";

/// What one step produced, for the parts around the loop.
pub struct StepReport {
    /// The step that ran (0-based); the state's step is now one more.
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    /// Samples this process loaded.
    pub samples: usize,
    /// The objective's named metrics of the last micro-batch (on the device).
    pub metrics: Vec<(String, Tensor)>,
    /// Data-parallel: whether any rank asked to stop.
    pub stop_agreed: Option<bool>,
    /// Data-parallel: all-reduce seconds and buckets sent from backward.
    pub comm: Option<(f64, usize)>,
    /// Whether the optimizer applied the update (false: a non-finite step skipped).
    pub updated: bool,
}

/// A step that did not complete.
pub struct StepFailure {
    pub error: CoreError,
    /// The state before the step, when the weights are still that state's (the failure came
    /// before the optimizer update began and was not a divergence).
    pub good: Option<CheckpointState>,
}

/// What a step's micro-batches add up to: the summed loss, the summed weight (data-parallel),
/// the samples loaded and the last micro-batch's metrics.
struct Accumulated {
    loss_sum: Tensor,
    weight_sum: f64,
    samples: usize,
    metrics: Vec<(String, Tensor)>,
}

/// Runs steps: the schedule, the step's random seed and the exclusive use of LibTorch's
/// generator for the whole loop.
pub struct Stepper<'a> {
    cfg: &'a TrainConfig,
    device: Device,
    schedule: LrSchedule,
    step_seed: u64,
    rng: TorchRng,
    skipped_before: u64,
    inject_oom: Option<u64>,
    /// Whether this step has started the optimizer update (its failure then keeps nothing).
    updating: bool,
}

impl<'a> Stepper<'a> {
    /// A stepper for a loop that starts at `state`.
    pub fn new(cfg: &'a TrainConfig, device: Device, state: &CheckpointState) -> Self {
        // LibTorch draws inside the steps (dropout, random masks) come from the step's own seed.
        let step_seed = crate::rng::derive(cfg.seed, "step");
        Stepper {
            cfg,
            device,
            schedule: cfg.schedule(),
            step_seed,
            rng: crate::rng::torch_rng(step_seed),
            skipped_before: state.skipped_inputs,
            inject_oom: std::env::var(INJECT_OOM_VAR).ok().and_then(|v| v.parse().ok()),
            updating: false,
        }
    }

    /// Run step `state.step`, advancing `state`; on failure, say what the last good state is.
    pub fn run<O>(
        &mut self,
        objective: &mut O,
        optimizer: &mut Optimizer,
        strategy: &Strategy,
        loader: &mut Loader<O::Batch>,
        state: &mut CheckpointState,
    ) -> std::result::Result<StepReport, Box<StepFailure>>
    where
        O: Objective + ?Sized,
    {
        // What a step changes in the state, all `Copy`: restored into a clone on failure only,
        // so a step never copies the state's configuration.
        let before = (
            state.step,
            state.loader,
            state.optimizer_steps,
            state.nonfinite_steps,
            state.nonfinite_in_row,
            state.skipped_inputs,
        );
        self.updating = false;
        let error = match crate::torch_error::catch(|| self.step(objective, optimizer, strategy, loader, state)) {
            Ok(Ok(report)) => return Ok(report),
            Ok(Err(e)) => e,
            Err(failure) => self.torch_error(before.0, failure),
        };
        let good = match error {
            CoreError::Diverged { .. } => None,
            _ if self.updating => None,
            _ => {
                let mut good = state.clone();
                (
                    good.step,
                    good.loader,
                    good.optimizer_steps,
                    good.nonfinite_steps,
                    good.nonfinite_in_row,
                    good.skipped_inputs,
                ) = before;
                Some(good)
            }
        };
        Err(Box::new(StepFailure { error, good }))
    }

    fn step<O>(
        &mut self,
        objective: &mut O,
        optimizer: &mut Optimizer,
        strategy: &Strategy,
        loader: &mut Loader<O::Batch>,
        state: &mut CheckpointState,
    ) -> Result<StepReport>
    where
        O: Objective + ?Sized,
    {
        let step = state.step;
        self.rng.reseed(mix_seed(&[self.step_seed, step]));
        let lr = self.schedule.lr_at(step);
        strategy.zero_grad(optimizer);
        let Accumulated { loss_sum, weight_sum, samples, metrics } =
            self.accumulate(objective, strategy, loader, state)?;
        let agreed = strategy.reduce(&loss_sum, weight_sum, self.cfg.grad_accum, crate::interrupt::requested())?;
        let grad_norm = optimizer.clip_grad_norm(self.cfg.clip_norm)?;
        // One host read per step: the loss, the gradient norm (the NaN guard) and the ranks'
        // stop request together.
        let mut parts = vec![agreed.loss.to_kind(Kind::Float), grad_norm.to_device(self.device).to_kind(Kind::Float)];
        parts.extend(agreed.stop.iter().map(|s| s.to_kind(Kind::Float)));
        let host = Tensor::stack(&parts, 0).to_device(Device::Cpu);
        let (loss, norm) = (host.double_value(&[0]), host.double_value(&[1]));
        let stop_agreed = agreed.stop.map(|_| host.double_value(&[2]) > 0.0);
        let updated = self.guard(loss, norm, lr, optimizer, strategy, state)?;
        objective.on_step_end(step, self.cfg.steps);
        state.step += 1;
        state.skipped_inputs = self.skipped_before + loader.skipped();
        Ok(StepReport { step, lr, loss, grad_norm: norm, samples, metrics, stop_agreed, comm: agreed.comm, updated })
    }

    /// Forward and backward over the step's micro-batches.
    fn accumulate<O>(
        &mut self,
        objective: &mut O,
        strategy: &Strategy,
        loader: &mut Loader<O::Batch>,
        state: &mut CheckpointState,
    ) -> Result<Accumulated>
    where
        O: Objective + ?Sized,
    {
        let accum = self.cfg.grad_accum;
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let (mut weight_sum, mut samples, mut metrics) = (0.0, 0usize, Vec::new());
        for micro in 0..accum {
            let loaded = loader.next_batch()?;
            samples += objective.batch_samples(&loaded.batch);
            state.loader = loaded.next;
            // Only a data-parallel step weighs its micro-batches.
            let weight = strategy.weight(|| objective.loss_weight(&loaded.batch));
            let out = {
                let _autocast = Bf16Autocast::new(self.cfg.bf16, self.device)?;
                objective.forward(&loaded.batch, self.device)?
            };
            if self.inject_oom == Some(state.step) && micro == 0 {
                let _ = Tensor::empty([1i64 << 40], (Kind::Float, self.device));
            }
            strategy.backward(&out.loss.to_kind(Kind::Float), weight, micro, accum, &mut loss_sum)?;
            weight_sum += weight;
            metrics = out.metrics;
        }
        Ok(Accumulated { loss_sum, weight_sum, samples, metrics })
    }

    /// The NaN guard: apply the update when the loss and the gradient norm are finite, else
    /// skip it (an error after too many in a row). Whether the update was applied.
    fn guard(
        &mut self,
        loss: f64,
        norm: f64,
        lr: f64,
        optimizer: &mut Optimizer,
        strategy: &Strategy,
        state: &mut CheckpointState,
    ) -> Result<bool> {
        if loss.is_finite() && norm.is_finite() {
            // From here on the weights are no longer the state before the step's.
            self.updating = true;
            optimizer.step(lr)?;
            state.optimizer_steps = optimizer.steps_taken();
            state.nonfinite_in_row = 0;
            return Ok(true);
        }
        strategy.zero_grad(optimizer);
        state.nonfinite_steps += 1;
        state.nonfinite_in_row += 1;
        let step = state.step;
        eprintln!("warning: step {step}: non-finite loss ({loss}) or gradient norm ({norm}); update skipped");
        if state.nonfinite_in_row >= self.cfg.max_nonfinite_in_row {
            return Err(CoreError::Diverged { count: state.nonfinite_in_row, step });
        }
        Ok(false)
    }

    /// The typed error of a LibTorch failure at `step` (`saved` is filled in by the caller).
    fn torch_error(&self, step: u64, failure: TorchFailure) -> CoreError {
        let batch_size = self.cfg.batch_size;
        if !failure.out_of_memory() {
            return CoreError::StepFailed { step, batch_size, message: failure.message, saved: String::new() };
        }
        let accum = self.cfg.grad_accum;
        let mut advice = String::from(match step {
            0 => "Run again once memory is free",
            _ => "Continue with --resume once memory is free",
        });
        if batch_size > 1 {
            advice += &format!(
                ", or start again with less memory per step: --batch-size {} --grad-accum {} keeps the batch of \
                 each update",
                batch_size / 2,
                accum * 2
            );
        }
        CoreError::OutOfMemory { step, batch_size, message: failure.message, saved: String::new(), advice }
    }
}
