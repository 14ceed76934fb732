//! `ssl bench <modality>`: our side of `cargo xtask bench`. Measures a shipped model's training
//! throughput through the real `Trainer`, with our data loader and with one pre-loaded batch every
//! step, and writes what the PyTorch reference under `bench/` needs to prove it is equivalent: the
//! initial weights, one fixed batch (with everything random the loss depends on), our first-step
//! loss on it and our parameter count.
//!
//! The modalities live in `bench/{vision,text,speech}.rs`; each builds its model, data and fixed
//! batch and returns a [`Measured`], which this module writes to `<name>_ours.json`.
mod speech;
mod text;
mod vision;

use anyhow::{bail, Result};
use ssl_core::bench::{matmul_peak, peak_rss_bytes, Spread};
use ssl_core::loader::DataSource;
use ssl_core::trainer::{read_metrics, Objective, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Flags of `ssl bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// vision, text or speech.
    #[arg(default_value = "vision")]
    pub modality: String,
    /// Where the JSON results and the reference artefacts go.
    #[arg(long)]
    pub out: PathBuf,
    /// A short run for smoke tests (smaller text and speech batches too).
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Model preset (text: tiny or mini; speech: tiny; vision: ignored).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// ResNet width (vision; default: the shipped preset).
    #[arg(long)]
    pub width: Option<i64>,
    /// Batch size (default: vision 64; text and speech: their recipe's, 8 and 4 with --quick).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Steps per timed window (default 10, 2 with --quick).
    #[arg(long)]
    pub window_steps: Option<u64>,
    /// Timed windows after the warm-up window (default 5, 2 with --quick).
    #[arg(long)]
    pub windows: Option<u64>,
}

/// The timed windows: `windows` windows of `steps` steps after one warm-up window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub steps: u64,
    pub windows: u64,
}

impl Timing {
    fn new(a: &BenchArgs) -> Self {
        let (steps, windows) = if a.quick { (2, 2) } else { (10, 5) };
        Self { steps: a.window_steps.unwrap_or(steps).max(1), windows: a.windows.unwrap_or(windows).max(1) }
    }

    /// Make `train` run exactly the timed windows with `batch_size`, logging once per window.
    pub fn apply(&self, train: &mut TrainConfig, batch_size: usize) {
        train.batch_size = batch_size;
        train.steps = self.steps * (self.windows + 1);
        train.log_every = self.steps;
        train.checkpoint_every = 0;
        train.progress = false;
    }
}

/// Everything a bench run shares with its modality.
pub(crate) struct Context {
    pub args: BenchArgs,
    pub device: Device,
    pub timing: Timing,
}

impl Context {
    /// Where artefact `what` (`init`, `batch`) of model `name` goes.
    pub fn artefact(&self, name: &str, what: &str) -> PathBuf {
        self.args.out.join(format!("{name}_{what}.safetensors"))
    }
}

/// A batch that can be handed out again every step.
pub(crate) trait FixedBatch: Send + 'static {
    /// A copy with its own storage, made in the loader thread as `collate` makes a batch (a
    /// memory copy is all that is left of the loader's work). Shallow clones of one batch are
    /// not what training sees; quick runs on a busy machine hinted they may be slower.
    fn fresh_copy(&self) -> Self;
}

impl FixedBatch for Tensor {
    fn fresh_copy(&self) -> Self {
        self.copy()
    }
}

/// The same collated batch every step (copied from memory, not decoded, augmented or masked),
/// isolating the loader's overhead.
struct Preloaded<B>(Mutex<B>);

impl<B: FixedBatch> DataSource for Preloaded<B> {
    type Item = ();
    type Batch = B;
    fn len(&self) -> usize {
        1 << 20
    }
    fn get(&self, _: usize, _: &mut rand_chacha::ChaCha8Rng) -> Result<(), String> {
        Ok(())
    }
    fn collate(&self, _: Vec<()>, _: &mut rand_chacha::ChaCha8Rng) -> B {
        self.0.lock().map(|b| b.fresh_copy()).unwrap_or_else(|e| e.into_inner().fresh_copy())
    }
}

/// Train through the real `Trainer` and return samples/s over the timed windows.
fn windows<O, S>(train: &TrainConfig, dir: &Path, objective: &mut O, source: Arc<S>, device: Device) -> Result<Spread>
where
    O: Objective,
    S: DataSource<Batch = O::Batch>,
{
    Trainer::new(train.clone(), dir, device).fit(objective, source, false)?;
    // The first logging window includes warm-up (allocator, kernels, first batches): dropped.
    let sps: Vec<f64> = read_metrics(dir).iter().skip(1).map(|m| m.samples_per_s).collect();
    Ok(Spread::of(&sps))
}

/// Samples/s with our data loader, then with `fixed` every step, each on a fresh objective.
pub(crate) fn loader_and_preloaded<O, S>(
    train: &TrainConfig,
    mut objective: impl FnMut() -> Result<O>,
    source: Arc<S>,
    fixed: &O::Batch,
    device: Device,
) -> Result<(Spread, Spread)>
where
    O: Objective,
    O::Batch: FixedBatch,
    S: DataSource<Batch = O::Batch>,
{
    let tmp = tempfile::tempdir()?;
    let loader = windows(train, &tmp.path().join("loader"), &mut objective()?, source, device)?;
    let preloaded = Arc::new(Preloaded(Mutex::new(fixed.fresh_copy())));
    let pre = windows(train, &tmp.path().join("preloaded"), &mut objective()?, preloaded, device)?;
    Ok((loader, pre))
}

/// Write the variables of `vs` sorted by name to `path`; returns the trainable parameter count.
pub(crate) fn write_init(vs: &VarStore, path: &Path) -> Result<i64> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|x, y| x.0.cmp(&y.0));
    Tensor::write_safetensors(&named, path)?;
    Ok(named.iter().filter(|(_, t)| t.requires_grad()).map(|(_, t)| t.numel() as i64).sum())
}

/// The reference flags that repeat our optimizer settings.
pub(crate) fn optimizer_flags(train: &TrainConfig) -> Vec<String> {
    let mut flags = vec![
        "--lr".to_string(),
        train.lr.to_string(),
        "--weight-decay".into(),
        train.optimizer.weight_decay.to_string(),
        "--clip".into(),
        train.clip_norm.to_string(),
    ];
    if let ssl_core::optim::OptimizerKind::AdamW { beta1, beta2, eps } = train.optimizer.kind {
        flags.extend(["--betas".into(), format!("{beta1},{beta2}"), "--eps".into(), eps.to_string()]);
    }
    flags
}

/// What one modality measured.
pub(crate) struct Measured {
    /// File prefix and key in bench.json (`text_mini`).
    pub name: String,
    pub modality: &'static str,
    pub preset: String,
    /// A one-line description of the model and its input.
    pub model: String,
    pub batch_size: usize,
    /// Samples per optimizer step (what samples/s counts).
    pub samples_per_step: usize,
    pub sample_unit: &'static str,
    /// A second throughput unit and how many of it one sample holds (tokens, audio seconds).
    pub per_sample: Option<(&'static str, f64)>,
    pub parameters: i64,
    pub first_step_loss: f64,
    /// Analytic training FLOPs per sample (3x forward).
    pub flops_per_sample: f64,
    pub loader: Spread,
    pub preloaded: Spread,
    /// The reference script (relative to the workspace root) and its model and optimizer flags.
    pub script: &'static str,
    pub script_args: Vec<String>,
    /// Modality-specific details.
    pub details: serde_json::Value,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let device = ssl_core::device::parse(&a.device)?;
    std::fs::create_dir_all(&a.out)?;
    let ctx = Context { timing: Timing::new(&a), device, args: a };
    let m = match ctx.args.modality.as_str() {
        "vision" => vision::measure(&ctx)?,
        "text" => text::measure(&ctx)?,
        "speech" => speech::measure(&ctx)?,
        other => bail!("`ssl bench {other}`: expected vision, text or speech"),
    };
    let peak = matmul_peak(device, if ctx.args.quick { 512 } else { 2048 }, 5);
    let spread = |s: &Spread| ssl_records::bench::Spread { median: s.median, min: s.min, max: s.max, n: s.n };
    let out = ssl_records::bench::OursRun {
        name: m.name.clone(),
        modality: m.modality.to_owned(),
        preset: m.preset.clone(),
        model: m.model.clone(),
        details: m.details.clone(),
        batch_size: m.batch_size,
        samples_per_step: m.samples_per_step,
        sample_unit: m.sample_unit.to_owned(),
        per_sample: m.per_sample.map(|(unit, count)| ssl_records::bench::PerSample { unit: unit.to_owned(), count }),
        parameters: m.parameters,
        first_step_loss: m.first_step_loss,
        flops_per_sample: m.flops_per_sample,
        peak_flops: peak,
        device: format!("{device:?}"),
        threads: tch::get_num_threads(),
        ours_loader_samples_per_s: spread(&m.loader),
        ours_preloaded_samples_per_s: spread(&m.preloaded),
        peak_rss_bytes: peak_rss_bytes(),
        windows: ctx.timing.windows,
        window_steps: ctx.timing.steps,
        reference: ssl_records::bench::ReferenceCall {
            script: m.script.to_owned(),
            args: m.script_args.clone(),
            init: ctx.artefact(&m.name, "init"),
            batch: ctx.artefact(&m.name, "batch"),
        },
    };
    std::fs::write(ctx.args.out.join(format!("{}_ours.json", m.name)), serde_json::to_vec_pretty(&out)?)?;
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
