//! The training loop shared by every modality.
//!
//! A modality implements [`Objective`] (batch in; loss and named metrics out) and a
//! [`DataSource`]; the [`Trainer`] owns everything else: the optimizer, the LR schedule,
//! gradient accumulation and clipping, the NaN guard, bf16 autocast, seeding, progress,
//! `metrics.jsonl` and checkpoints with exact resume.
use crate::checkpoint::{self, CheckpointState};
use crate::error::{CoreError, Result};
use crate::kernels::Bf16Autocast;
use crate::loader::{mix_seed, DataSource, Loader, LoaderPosition};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::{Decay, LrSchedule};
use crate::sinks::MetricSinks;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// How [`Trainer::fit`] starts: from the newest checkpoint of the run directory (`resume`), and
/// otherwise (a new run, or a resumed one with no checkpoint yet) from `init` when given
/// (`--init-from`), else from the objective's fresh initialisation. A `bool` converts to
/// `Start { resume, init: None }`.
#[derive(Clone, Copy, Default)]
pub struct Start<'a> {
    pub resume: bool,
    pub init: Option<&'a crate::init::InitWeights>,
}

impl From<bool> for Start<'_> {
    fn from(resume: bool) -> Self {
        Start { resume, init: None }
    }
}

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
}

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
            warmup_steps: 100,
            decay: Decay::Cosine,
            lr_floor: 0.1,
            optimizer: OptimizerConfig::default(),
            seed: 0,
            log_every: 10,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            max_nonfinite_in_row: 5,
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

/// What a finished (or resumed-and-finished) run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// What `report.json` shows: steps, resumption, final loss, wall and CPU seconds (user +
    /// system, all threads, where the OS reports it), throughput, skipped steps and inputs.
    #[serde(flatten)]
    pub report: ssl_records::summary::PretrainingSummary,
    /// `(step, loss)` of every step run in this process.
    pub losses: Vec<(u64, f64)>,
    pub checkpoint: Option<PathBuf>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub samples_per_s: f64,
    pub wall_time: f64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Called after each logged window with its metrics line; the time it takes is left out of the
/// next window. `Ok(false)` ends training there (no checkpoint is written): the benchmark uses it
/// to alternate timed windows with another process ([`crate::bench`]).
pub type WindowGate = Arc<dyn Fn(&MetricsLine) -> Result<bool> + Send + Sync>;

/// The training engine.
pub struct Trainer {
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub device: Device,
    /// Extra configuration (model, method) stored in checkpoints and checked on resume.
    pub model_config: serde_json::Value,
    /// See [`WindowGate`]; `None` for every real run.
    pub window_gate: Option<WindowGate>,
}

fn read_metric_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

impl Trainer {
    pub fn new(config: TrainConfig, run_dir: impl Into<PathBuf>, device: Device) -> Self {
        Self { config, run_dir: run_dir.into(), device, model_config: serde_json::Value::Null, window_gate: None }
    }

    fn stored_config(&self, world: &crate::dist::World) -> serde_json::Value {
        let mut c = serde_json::to_value(&self.config).unwrap_or_default();
        if let Some(obj) = c.as_object_mut() {
            // Fields that may change between a run and its resumption.
            for k in
                ["steps", "warmup_steps", "log_every", "checkpoint_every", "keep_checkpoints", "progress", "prefetch"]
            {
                obj.remove(k);
            }
        }
        let mut stored = serde_json::json!({ "trainer": c, "model": self.model_config });
        // The loader position and the global batch depend on the number of processes; a
        // one-process run stores nothing, so its checkpoints stay what they were.
        if world.is_distributed() {
            stored["world_size"] = serde_json::json!(world.size);
        }
        stored
    }

    /// Train `objective` on `source`, starting as `start` says: with `resume`, continue from the
    /// newest checkpoint of the run directory (a missing checkpoint starts anew); a run that
    /// starts anew loads `start.init` first, when given.
    pub fn fit<'a, O, S>(&self, objective: &mut O, source: Arc<S>, start: impl Into<Start<'a>>) -> Result<TrainSummary>
    where
        O: Objective + ?Sized,
        S: DataSource<Batch = O::Batch>,
    {
        let Start { resume, init } = start.into();
        let cfg = &self.config;
        if cfg.batch_size == 0 || cfg.grad_accum == 0 {
            return Err(CoreError::InvalidArgument("batch_size and grad_accum must be positive".into()));
        }
        fs::create_dir_all(&self.run_dir).map_err(|e| CoreError::io(&self.run_dir, e))?;
        let group = crate::dist::group();
        let world = crate::dist::world();
        let main = world.is_main();
        let mut optimizer = Optimizer::new(objective.var_store(), cfg.optimizer);
        let stored_config = self.stored_config(&world);
        let mut state = CheckpointState {
            step: 0,
            optimizer_steps: 0,
            loader: LoaderPosition { seed: cfg.seed, ..Default::default() },
            nonfinite_steps: 0,
            nonfinite_in_row: 0,
            skipped_inputs: 0,
            elapsed_secs: 0.0,
            config: stored_config.clone(),
        };
        let mut resumed_from = None;
        if resume {
            // The newest checkpoint that loads; a damaged one (a truncated file, a state.json that
            // does not parse) is named in a warning and the next older one is tried. A checkpoint
            // of another configuration is an error, not something to skip.
            let mut damaged = Vec::new();
            for ckpt in checkpoint::list(&self.run_dir).into_iter().rev() {
                if let Ok(saved) = checkpoint::read_state(&ckpt) {
                    let processes = |c: &serde_json::Value| c.get("world_size").and_then(|v| v.as_u64()).unwrap_or(1);
                    if processes(&saved.config) != world.size as u64 {
                        return Err(CoreError::CheckpointMismatch(format!(
                            "{} was written by a run of {} process(es), and this one has {}: resume with the same \
                             number of processes (--nproc-per-node), because the global batch and the loader \
                             position depend on it",
                            ckpt.display(),
                            processes(&saved.config),
                            world.size
                        )));
                    }
                    if saved.config != stored_config {
                        return Err(CoreError::CheckpointMismatch(format!(
                            "{} was written with another configuration:\n  saved: {}\n  now:   {}",
                            ckpt.display(),
                            saved.config,
                            stored_config
                        )));
                    }
                }
                match checkpoint::load(&ckpt, objective.var_store(), &mut optimizer) {
                    Ok(s) => {
                        state = s;
                        resumed_from = Some(state.step);
                        break;
                    }
                    Err(e) => {
                        eprintln!("warning: cannot resume from {}: {e}; trying an older checkpoint", ckpt.display());
                        damaged.push(format!("{}: {e}", ckpt.display()));
                    }
                }
            }
            if resumed_from.is_none() && !damaged.is_empty() {
                return Err(CoreError::CheckpointMismatch(format!(
                    "no checkpoint of {} can be resumed:\n  {}",
                    self.run_dir.display(),
                    damaged.join("\n  ")
                )));
            }
        }
        if let (None, Some(init)) = (resumed_from, init) {
            let fresh = init.load_into(objective.var_store())?;
            if main {
                eprintln!(
                    "==> initialised from {} ({}: {} tensors{})",
                    init.source.display(),
                    init.kind,
                    init.tensors.len(),
                    match fresh.len() {
                        0 => String::new(),
                        n => format!(", {n} fresh: {}", fresh.join(", ")),
                    }
                );
            }
        }
        // Rank 0 alone writes metrics, event files and checkpoints.
        let mut sinks = if main { Some(MetricSinks::open(&self.run_dir, state.step)?) } else { None };
        // Every rank starts from rank 0's weights and buffers; the gradients become views into
        // one flat buffer that is averaged over the ranks at every update.
        let sync = match group {
            Some(g) => {
                crate::dist::broadcast_vars(g, objective.var_store())?;
                // Reverse creation order: roughly the order backward produces the gradients,
                // so the first buckets fill (and leave) first. The same on every rank.
                let vs = objective.var_store();
                let params: Vec<Tensor> =
                    vs.trainable_variables().into_iter().filter(Tensor::requires_grad).rev().collect();
                let expected = vs.variables().values().filter(|t| t.requires_grad()).count();
                if params.len() != expected {
                    return Err(CoreError::InvalidArgument(format!(
                        "{expected} variables need a gradient but {} are trainable parameters",
                        params.len()
                    )));
                }
                Some(crate::dist::GradSync::for_group(&params, g)?)
            }
            None => None,
        };

        let schedule = cfg.schedule();
        let threads = loader_threads(cfg.loader_threads, self.device);
        let mut loader = Loader::sharded(
            source,
            cfg.batch_size,
            cfg.seed,
            state.loader,
            cfg.prefetch,
            threads,
            crate::loader::Target { shard: (world.rank, world.size), device: self.device },
        );
        let bar = crate::progress::Progress::new("pretraining", cfg.steps, !cfg.progress || !main);
        bar.tick(state.step);

        let start = Instant::now();
        let cpu_start = process_cpu_secs();
        let mut losses = Vec::new();
        let mut window_samples = 0usize;
        // Data-parallel: time in the gradient all-reduce (including waiting for slower ranks).
        let (mut window_comm, mut window_steps, mut window_overlapped) = (0.0f64, 0u64, 0usize);
        let mut window_start = Instant::now();
        let mut last_loss = f64::NAN;
        let mut last_ckpt = None;
        let skipped_before = state.skipped_inputs;
        // LibTorch draws inside the steps (dropout, random masks) come from the step's own seed.
        let step_seed = crate::rng::derive(cfg.seed, "step");
        let torch_rng = crate::rng::torch_rng(step_seed);
        // No step at all (`--steps 0 --init-from`: the source evaluated as it is): the starting
        // weights are the run's checkpoint.
        if cfg.steps == 0 && main {
            last_ckpt =
                Some(checkpoint::save(&self.run_dir, objective.var_store(), &optimizer, &state, cfg.keep_checkpoints)?);
        }
        let mut profiler = (cfg.profile > 0 && main).then(|| {
            let dir = self.run_dir.join("profile");
            crate::profile::StepProfiler::new(dir, state.step, cfg.steps, cfg.profile, self.device.is_cuda())
        });
        while state.step < cfg.steps {
            let step = state.step;
            if let Some(p) = profiler.as_mut() {
                p.before(step)?;
            }
            torch_rng.reseed(mix_seed(&[step_seed, step]));
            let lr = schedule.lr_at(step);
            match &sync {
                Some(s) => s.zero(),
                None => optimizer.zero_grad(),
            }
            let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
            let mut weight_sum = 0.0;
            let mut extra: Vec<(String, Tensor)> = Vec::new();
            for micro in 0..cfg.grad_accum {
                let loaded = loader.next_batch()?;
                window_samples += objective.batch_samples(&loaded.batch);
                state.loader = loaded.next;
                // Only a data-parallel step weighs its micro-batches.
                let weight = if sync.is_some() { objective.loss_weight(&loaded.batch) } else { 0.0 };
                let out = {
                    let _autocast = Bf16Autocast::new(cfg.bf16, self.device)?;
                    objective.forward(&loaded.batch, self.device)?
                };
                let loss = out.loss.to_kind(Kind::Float);
                if let Some(s) = &sync {
                    // Sums weighted by each micro-batch's loss terms; divided by the global sum
                    // after the all-reduce. The last micro-batch's backward sends the buckets.
                    if micro + 1 == cfg.grad_accum {
                        s.arm()?;
                    }
                    (&loss * weight).backward();
                    loss_sum += loss.detach() * weight;
                    weight_sum += weight;
                } else {
                    (&loss / cfg.grad_accum as f64).backward();
                    loss_sum += loss.detach();
                }
                extra = out.metrics;
            }
            // Data-parallel: average the gradients, the loss and the stop request over the ranks,
            // so every decision below is the same on each of them.
            let (mean_loss, stop_agreed) = match (&sync, group) {
                (Some(s), g) => {
                    let t0 = Instant::now();
                    let r = s.all_reduce(g, &loss_sum, weight_sum, crate::interrupt::requested())?;
                    window_comm += t0.elapsed().as_secs_f64();
                    window_steps += 1;
                    window_overlapped += r.overlapped;
                    (r.loss, Some(r.stop))
                }
                _ => (&loss_sum / cfg.grad_accum as f64, None),
            };
            let grad_norm = optimizer.clip_grad_norm(cfg.clip_norm)?;
            // One host read per step: the loss, the gradient norm (the NaN guard) and the ranks'
            // stop request together.
            let mut parts = vec![mean_loss.to_kind(Kind::Float), grad_norm.to_device(self.device).to_kind(Kind::Float)];
            parts.extend(stop_agreed.iter().map(|s| s.to_kind(Kind::Float)));
            let host = Tensor::stack(&parts, 0).to_device(Device::Cpu);
            let loss_v = host.double_value(&[0]);
            let norm_v = host.double_value(&[1]);
            let stop_agreed = stop_agreed.map(|_| host.double_value(&[2]) > 0.0);
            if loss_v.is_finite() && norm_v.is_finite() {
                optimizer.step(lr)?;
                state.optimizer_steps = optimizer.steps_taken();
                state.nonfinite_in_row = 0;
                last_loss = loss_v;
            } else {
                match &sync {
                    Some(s) => s.zero(),
                    None => optimizer.zero_grad(),
                }
                state.nonfinite_steps += 1;
                state.nonfinite_in_row += 1;
                eprintln!(
                    "warning: step {step}: non-finite loss ({loss_v}) or gradient norm ({norm_v}); update skipped"
                );
                if state.nonfinite_in_row >= cfg.max_nonfinite_in_row {
                    return Err(CoreError::Diverged { count: state.nonfinite_in_row, step });
                }
            }
            losses.push((step, loss_v));
            objective.on_step_end(step, cfg.steps);
            state.step += 1;
            state.skipped_inputs = skipped_before + loader.skipped();

            let is_last = state.step == cfg.steps;
            if cfg.log_every > 0 && (state.step.is_multiple_of(cfg.log_every) || is_last) {
                let secs = window_start.elapsed().as_secs_f64().max(1e-9);
                // Every rank loads the same number of samples per step.
                let sps = (window_samples * world.size) as f64 / secs;
                window_samples = 0;
                window_start = Instant::now();
                let mut map = serde_json::Map::new();
                if window_steps > 0 {
                    // With overlapping, only the all-reduce time backward did not hide.
                    map.insert("allreduce_ms".into(), serde_json::json!(1000.0 * window_comm / window_steps as f64));
                    // Gradient buckets sent from backward's hooks, per step.
                    let per_step = window_overlapped as f64 / window_steps as f64;
                    map.insert("buckets_in_backward".into(), serde_json::json!(per_step));
                    (window_comm, window_steps, window_overlapped) = (0.0, 0, 0);
                }
                for (k, t) in &extra {
                    let v = t.to_device(Device::Cpu).to_kind(Kind::Double).double_value(&[]);
                    map.insert(k.clone(), serde_json::json!(v));
                }
                let line = MetricsLine {
                    step: state.step,
                    loss: loss_v,
                    lr,
                    grad_norm: norm_v,
                    samples_per_s: sps,
                    wall_time: state.elapsed_secs + start.elapsed().as_secs_f64(),
                    extra: map,
                };
                if let Some(sinks) = sinks.as_mut() {
                    sinks.log(&line)?;
                }
                bar.update(state.step, &format!("loss {loss_v:.4} lr {lr:.2e} {sps:.0} samples/s"));
                if let Some(gate) = &self.window_gate {
                    // The wait for the other process is no one's time: leave it out of the next window.
                    let waited = Instant::now();
                    if !gate(&line)? {
                        break;
                    }
                    window_start += waited.elapsed();
                }
            }
            bar.tick(state.step);
            let interrupted = stop_agreed.unwrap_or_else(crate::interrupt::requested) && !is_last;
            if let Some(p) = profiler.as_mut() {
                p.after(step, is_last || interrupted)?;
            }
            let save =
                (cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every)) || is_last || interrupted;
            if save && main {
                let mut s = state.clone();
                s.elapsed_secs += start.elapsed().as_secs_f64();
                last_ckpt =
                    Some(checkpoint::save(&self.run_dir, objective.var_store(), &optimizer, &s, cfg.keep_checkpoints)?);
            }
            if interrupted {
                bar.finish();
                return Err(CoreError::Interrupted {
                    step: state.step,
                    checkpoint: last_ckpt.map(|p| p.display().to_string()).unwrap_or_default(),
                    run_dir: self.run_dir.display().to_string(),
                });
            }
        }
        bar.finish();
        let wall = start.elapsed().as_secs_f64();
        let ran = losses.len() as f64 * (cfg.batch_size * cfg.grad_accum * world.size) as f64;
        Ok(TrainSummary {
            report: ssl_records::summary::PretrainingSummary {
                steps: state.step,
                resumed_from,
                final_loss: last_loss,
                wall_secs: wall,
                cpu_secs: process_cpu_secs() - cpu_start,
                samples_per_s: if wall > 0.0 { ran / wall } else { 0.0 },
                nonfinite_steps: state.nonfinite_steps,
                skipped_inputs: state.skipped_inputs,
            },
            checkpoint: last_ckpt.or_else(|| checkpoint::latest(&self.run_dir)),
            losses,
        })
    }
}

/// Read `metrics.jsonl` of a run directory.
pub fn read_metrics(run_dir: &Path) -> Vec<MetricsLine> {
    read_metric_lines(&run_dir.join("metrics.jsonl")).iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`), 0 where unavailable.
pub fn process_cpu_secs() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on every Linux configuration in use.
    (ticks(11) + ticks(12)) / 100.0
}
