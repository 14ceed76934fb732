//! The components around the loop. Each has one job and is called at fixed points:
//! [`Component::start`] before the first step, [`Component::before_step`] and
//! [`Component::after_step`] around each step (in [`Parts::standard`]'s order),
//! [`Component::failed`] when a step fails, and [`Component::finish`] to fill the summary.
//!
//! The order after a step matters and is fixed here: the EMA teacher follows the update first
//! (so a checkpoint holds the teacher of its step), then the metrics (whose benchmark gate may
//! end the run), the profiler window, the checkpointer, and last the interrupt guard (which
//! needs the checkpoint just written).
use super::records::{TrainSummary, WindowGate};
use super::step::{StepFailure, StepReport};
use super::Trainer;
use crate::checkpoint::{self, CheckpointState};
use crate::dist::World;
use crate::ema::EmaTeacher;
use crate::error::{CoreError, Result};
use crate::optim::Optimizer;
use crate::process::process_cpu_secs;
use crate::profile::StepProfiler;
use crate::progress::Progress;
use crate::sinks::MetricSinks;
use crate::sinks::MetricsLine;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind};

/// Whether the loop goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the loop here, without a final checkpoint (the benchmark's gate).
    Stop,
}

/// What the components see: the model's variables, the optimizer, the state after the step, and
/// the checkpoint this process wrote at this point, if any.
pub struct Scene<'a> {
    pub vs: &'a VarStore,
    pub optimizer: &'a Optimizer,
    pub state: &'a CheckpointState,
    /// Set by the checkpointer when it saved after this step.
    pub saved: Option<PathBuf>,
    /// This is the run's last step.
    pub is_last: bool,
    /// The run stops here on a signal (SIGINT/SIGTERM, agreed by every rank).
    pub interrupted: bool,
    /// Seconds the run has trained so far, in this process and those it resumed from.
    pub elapsed_secs: f64,
}

impl<'a> Scene<'a> {
    pub fn new(vs: &'a VarStore, optimizer: &'a Optimizer, state: &'a CheckpointState) -> Self {
        Scene {
            vs,
            optimizer,
            state,
            saved: None,
            is_last: false,
            interrupted: false,
            elapsed_secs: state.elapsed_secs,
        }
    }
}

/// One part of the loop.
pub trait Component {
    /// Before the first step of this process.
    fn start(&mut self, _scene: &Scene<'_>) -> Result<()> {
        Ok(())
    }
    /// Before each step.
    fn before_step(&mut self, _step: u64) -> Result<()> {
        Ok(())
    }
    /// After each step that completed.
    fn after_step(&mut self, report: &StepReport, scene: &mut Scene<'_>) -> Result<Flow>;
    /// A step failed; `good` is the state before it when the weights are still that state's.
    /// Returns where that state was saved, if this component saved it.
    fn failed(&mut self, _good: Option<&CheckpointState>, _vs: &VarStore, _optimizer: &Optimizer) -> Option<PathBuf> {
        None
    }
    /// The loop ended: add what this component knows to the summary.
    fn finish(&mut self, _summary: &mut TrainSummary) {}
}

/// The components of a run, in order, and the run's clock.
pub struct Parts {
    components: Vec<Box<dyn Component>>,
    started: Instant,
    cpu_start: f64,
    elapsed_before: f64,
    total_steps: u64,
    samples_per_step: usize,
}

impl Parts {
    /// The components of every run: see the module's documentation for their order.
    pub fn standard(trainer: &Trainer, world: &World, state: &CheckpointState, teacher: Option<EmaTeacher>) -> Parts {
        let cfg = &trainer.config;
        let main = world.is_main();
        let mut components: Vec<Box<dyn Component>> = Vec::new();
        if let Some(teacher) = teacher {
            components.push(Box::new(TeacherUpdate { teacher, total: cfg.steps }));
        }
        components.push(Box::new(History::default()));
        components.push(Box::new(Metrics::new(trainer, world, state)));
        if cfg.profile > 0 && main {
            let dir = trainer.run_dir.join("profile");
            let profiler = StepProfiler::new(dir, state.step, cfg.steps, cfg.profile, trainer.device.is_cuda());
            components.push(Box::new(ProfilerWindow(profiler)));
        }
        components.push(Box::new(Checkpointer::new(trainer, main)));
        components.push(Box::new(InterruptGuard { run_dir: trainer.run_dir.display().to_string() }));
        Parts {
            components,
            started: Instant::now(),
            cpu_start: process_cpu_secs(),
            elapsed_before: state.elapsed_secs,
            total_steps: cfg.steps,
            samples_per_step: cfg.batch_size * cfg.grad_accum * world.size,
        }
    }

    pub fn start(&mut self, scene: &Scene<'_>) -> Result<()> {
        self.components.iter_mut().try_for_each(|c| c.start(scene))
    }

    pub fn before_step(&mut self, step: u64) -> Result<()> {
        self.components.iter_mut().try_for_each(|c| c.before_step(step))
    }

    /// Run every component after a step, in order; the first that stops the loop ends it.
    pub fn after_step(&mut self, report: &StepReport, scene: &mut Scene<'_>) -> Result<Flow> {
        scene.is_last = scene.state.step == self.total_steps;
        scene.elapsed_secs = self.elapsed_before + self.started.elapsed().as_secs_f64();
        scene.interrupted = report.stop_agreed.unwrap_or_else(crate::interrupt::requested) && !scene.is_last;
        for i in 0..self.components.len() {
            match self.components[i].after_step(report, scene) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => return Ok(Flow::Stop),
                Err(e) => {
                    self.close();
                    return Err(e);
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// End the components of a loop that ends with an error (the progress bar is finished).
    fn close(&mut self) {
        for c in &mut self.components {
            c.finish(&mut TrainSummary::default());
        }
    }

    /// A step failed: let the components keep what can be kept, and say so in the error.
    pub fn failed(&mut self, failure: StepFailure, vs: &VarStore, optimizer: &Optimizer) -> CoreError {
        let StepFailure { error, mut good } = failure;
        if let Some(g) = good.as_mut() {
            g.elapsed_secs = self.elapsed_before + self.started.elapsed().as_secs_f64();
        }
        let saved = self.components.iter_mut().filter_map(|c| c.failed(good.as_ref(), vs, optimizer)).last();
        self.close();
        let saved = match (&good, saved) {
            (Some(g), Some(path)) => {
                format!("the state before step {} is saved in {}", g.step, path.display())
            }
            (Some(g), None) if g.step == 0 => "no step had completed, so there was nothing to save".into(),
            (Some(_), None) => "the last checkpoint of the run directory is intact".into(),
            (None, _) => "the weights changed during the failed update, so nothing was saved; the last checkpoint \
                          of the run directory is intact"
                .into(),
        };
        with_saved(error, saved)
    }

    /// The summary of the loop that ended at `state`.
    pub fn finish(mut self, state: &CheckpointState, resumed_from: Option<u64>) -> TrainSummary {
        let wall = self.started.elapsed().as_secs_f64();
        let mut summary = TrainSummary::default();
        for c in &mut self.components {
            c.finish(&mut summary);
        }
        let report = &mut summary.report;
        report.steps = state.step;
        report.resumed_from = resumed_from;
        report.wall_secs = wall;
        report.cpu_secs = process_cpu_secs() - self.cpu_start;
        let ran = summary.losses.len() as f64 * self.samples_per_step as f64;
        report.samples_per_s = if wall > 0.0 { ran / wall } else { 0.0 };
        report.nonfinite_steps = state.nonfinite_steps;
        report.skipped_inputs = state.skipped_inputs;
        summary
    }
}

/// The error of a failed step, with what was kept.
fn with_saved(error: CoreError, saved: String) -> CoreError {
    match error {
        CoreError::OutOfMemory { step, batch_size, message, advice, .. } => {
            CoreError::OutOfMemory { step, batch_size, message, saved, advice }
        }
        CoreError::StepFailed { step, batch_size, message, .. } => {
            CoreError::StepFailed { step, batch_size, message, saved }
        }
        CoreError::Loader(m) => CoreError::Loader(format!("{m}; {saved}: continue with --resume")),
        other => other,
    }
}

/// The EMA teacher follows the student after every applied update.
struct TeacherUpdate {
    teacher: EmaTeacher,
    total: u64,
}

impl Component for TeacherUpdate {
    fn after_step(&mut self, report: &StepReport, _scene: &mut Scene<'_>) -> Result<Flow> {
        if report.updated {
            self.teacher.update(report.step, self.total);
        }
        Ok(Flow::Continue)
    }
}

/// Every step's loss, and the last finite one.
#[derive(Default)]
struct History {
    losses: Vec<(u64, f64)>,
    last_finite: Option<f64>,
}

impl Component for History {
    fn after_step(&mut self, report: &StepReport, _scene: &mut Scene<'_>) -> Result<Flow> {
        self.losses.push((report.step, report.loss));
        if report.updated {
            self.last_finite = Some(report.loss);
        }
        Ok(Flow::Continue)
    }
    fn finish(&mut self, summary: &mut TrainSummary) {
        summary.losses = std::mem::take(&mut self.losses);
        summary.report.final_loss = self.last_finite.unwrap_or(f64::NAN);
    }
}

/// `metrics.jsonl` and event files (rank 0), the progress bar, and the benchmark's window gate.
struct Metrics {
    sinks: Option<MetricSinks>,
    open_error: Option<CoreError>,
    bar: Progress,
    gate: Option<WindowGate>,
    log_every: u64,
    world_size: usize,
    window_start: Instant,
    window_samples: usize,
    /// Data-parallel: all-reduce seconds, steps and buckets sent from backward in the window.
    window_comm: (f64, u64, usize),
}

impl Metrics {
    fn new(trainer: &Trainer, world: &World, state: &CheckpointState) -> Self {
        let cfg = &trainer.config;
        let main = world.is_main();
        // Rank 0 alone writes metrics and event files.
        let (sinks, open_error) = match main.then(|| MetricSinks::open(&trainer.run_dir, state.step)) {
            Some(Ok(s)) => (Some(s), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let bar = Progress::new("pretraining", cfg.steps, !cfg.progress || !main);
        bar.tick(state.step);
        Metrics {
            sinks,
            open_error,
            bar,
            gate: trainer.window_gate.clone(),
            log_every: cfg.log_every,
            world_size: world.size,
            window_start: Instant::now(),
            window_samples: 0,
            window_comm: (0.0, 0, 0),
        }
    }

    fn line(&mut self, report: &StepReport, scene: &Scene<'_>) -> MetricsLine {
        let secs = self.window_start.elapsed().as_secs_f64().max(1e-9);
        // Every rank loads the same number of samples per step.
        let sps = (self.window_samples * self.world_size) as f64 / secs;
        self.window_samples = 0;
        self.window_start = Instant::now();
        let mut extra = serde_json::Map::new();
        let (comm, steps, overlapped) = std::mem::take(&mut self.window_comm);
        if steps > 0 {
            // With overlapping, only the all-reduce time backward did not hide.
            extra.insert("allreduce_ms".into(), serde_json::json!(1000.0 * comm / steps as f64));
            // Gradient buckets sent from backward's hooks, per step.
            extra.insert("buckets_in_backward".into(), serde_json::json!(overlapped as f64 / steps as f64));
        }
        for (k, t) in &report.metrics {
            let v = t.to_device(Device::Cpu).to_kind(Kind::Double).double_value(&[]);
            extra.insert(k.clone(), serde_json::json!(v));
        }
        MetricsLine {
            step: scene.state.step,
            loss: report.loss,
            lr: report.lr,
            grad_norm: report.grad_norm,
            samples_per_s: sps,
            wall_time: scene.elapsed_secs,
            extra,
        }
    }
}

impl Component for Metrics {
    fn start(&mut self, _scene: &Scene<'_>) -> Result<()> {
        match self.open_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn after_step(&mut self, report: &StepReport, scene: &mut Scene<'_>) -> Result<Flow> {
        self.window_samples += report.samples;
        if let Some((secs, overlapped)) = report.comm {
            self.window_comm.0 += secs;
            self.window_comm.1 += 1;
            self.window_comm.2 += overlapped;
        }
        let step = scene.state.step;
        if self.log_every > 0 && (step.is_multiple_of(self.log_every) || scene.is_last) {
            let line = self.line(report, scene);
            if let Some(sinks) = self.sinks.as_mut() {
                sinks.log(&line)?;
            }
            let message = format!("loss {:.4} lr {:.2e} {:.0} samples/s", line.loss, line.lr, line.samples_per_s);
            self.bar.update(step, &message);
            if let Some(gate) = &self.gate {
                // The wait for the other process is no one's time: leave it out of the next window.
                let waited = Instant::now();
                if !gate(&line)? {
                    return Ok(Flow::Stop);
                }
                self.window_start += waited.elapsed();
            }
        }
        self.bar.tick(step);
        Ok(Flow::Continue)
    }

    fn finish(&mut self, _summary: &mut TrainSummary) {
        self.bar.finish();
    }
}

/// `--profile N`: the steps LibTorch's profiler records.
struct ProfilerWindow(StepProfiler);

impl Component for ProfilerWindow {
    fn before_step(&mut self, step: u64) -> Result<()> {
        self.0.before(step)
    }
    fn after_step(&mut self, report: &StepReport, scene: &mut Scene<'_>) -> Result<Flow> {
        self.0.after(report.step, scene.is_last || scene.interrupted)?;
        Ok(Flow::Continue)
    }
}

/// Atomic checkpoints (rank 0): every `checkpoint_every` steps, at the last step, on a signal,
/// at the start of a run of no steps (the starting weights are then the run's checkpoint), and
/// the last good state of a failed step.
struct Checkpointer {
    run_dir: PathBuf,
    main: bool,
    every: u64,
    keep: usize,
    total: u64,
    last: Option<PathBuf>,
}

impl Checkpointer {
    fn new(trainer: &Trainer, main: bool) -> Self {
        let cfg = &trainer.config;
        Checkpointer {
            run_dir: trainer.run_dir.clone(),
            main,
            every: cfg.checkpoint_every,
            keep: cfg.keep_checkpoints,
            total: cfg.steps,
            last: None,
        }
    }

    fn save(&mut self, vs: &VarStore, optimizer: &Optimizer, state: &CheckpointState) -> Result<PathBuf> {
        let path = checkpoint::save(&self.run_dir, vs, optimizer, state, self.keep)?;
        self.last = Some(path.clone());
        Ok(path)
    }
}

impl Component for Checkpointer {
    fn start(&mut self, scene: &Scene<'_>) -> Result<()> {
        if self.total == 0 && self.main {
            self.save(scene.vs, scene.optimizer, scene.state)?;
        }
        Ok(())
    }

    fn after_step(&mut self, _report: &StepReport, scene: &mut Scene<'_>) -> Result<Flow> {
        let step = scene.state.step;
        let due = (self.every > 0 && step.is_multiple_of(self.every)) || scene.is_last || scene.interrupted;
        if due && self.main {
            let mut s = scene.state.clone();
            s.elapsed_secs = scene.elapsed_secs;
            scene.saved = Some(self.save(scene.vs, scene.optimizer, &s)?);
        }
        Ok(Flow::Continue)
    }

    fn failed(&mut self, good: Option<&CheckpointState>, vs: &VarStore, optimizer: &Optimizer) -> Option<PathBuf> {
        // Before the first step there is nothing that a checkpoint would keep.
        let good = good.filter(|g| self.main && g.step > 0)?;
        match self.save(vs, optimizer, good) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("warning: cannot save the state before the failed step: {e}");
                None
            }
        }
    }

    fn finish(&mut self, summary: &mut TrainSummary) {
        summary.checkpoint = self.last.take().or_else(|| checkpoint::latest(&self.run_dir));
    }
}

/// SIGINT or SIGTERM: the run stops after the step's checkpoint with an error that says how to
/// continue.
struct InterruptGuard {
    run_dir: String,
}

impl Component for InterruptGuard {
    fn after_step(&mut self, _report: &StepReport, scene: &mut Scene<'_>) -> Result<Flow> {
        if !scene.interrupted {
            return Ok(Flow::Continue);
        }
        Err(CoreError::Interrupted {
            step: scene.state.step,
            checkpoint: scene.saved.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            run_dir: self.run_dir.clone(),
        })
    }
}
