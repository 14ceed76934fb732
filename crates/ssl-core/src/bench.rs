//! The benchmark harness behind `ssl bench` and `cargo xtask bench`: a modality's model trained
//! through the real [`Trainer`] for timed windows, with its data loader and with one pre-loaded
//! batch every step; the device's measured matrix-multiply peak (for MFU); peak memory; and the
//! typed record ([`ssl_records::bench::OursRun`]) the PyTorch reference under `bench/` is checked
//! against. Each modality's `bench` module builds its model, data and fixed batch and returns a
//! [`Measured`].
use crate::error::{CoreError, Result};
use crate::loader::DataSource;
use crate::trainer::{read_metrics, MetricsLine, Objective, TrainConfig, Trainer, WindowGate};
use ssl_records::bench::{OursRun, PerSample, ReferenceCall};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub use ssl_records::bench::Spread;

/// Wait for queued device work (CUDA); a no-op on the CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The measured matmul peak in FLOP/s: fp32 on the CPU, bf16 on CUDA, square matrices of side `n`,
/// best of `repeats` timed runs after one warm-up.
pub(crate) fn matmul_peak(device: Device, n: i64, repeats: usize) -> f64 {
    let kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let _ = a.matmul(&b);
    synchronize(device);
    let mut best = f64::MAX;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let _c = a.matmul(&b);
        synchronize(device);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), 0 where unavailable.
pub fn peak_rss_bytes() -> u64 {
    crate::memory::status_bytes("VmHWM:").unwrap_or(0)
}

/// FLOPs of a 2-D convolution over one image (multiply-adds counted as 2).
pub fn conv2d_flops(cin: i64, cout: i64, k: i64, out_h: i64, out_w: i64) -> f64 {
    2.0 * (cin * cout * k * k * out_h * out_w) as f64
}

/// Forward FLOPs of one transformer block over `tokens` positions of width `dim` with a
/// feed-forward of width `ffn`: the Q, K, V and output projections, the scores Q K^T and the
/// weighted sum of V, and the feed-forward pair (multiply-adds counted as 2; norms and softmax
/// left out).
///
/// ```
/// // 2·4·(4·2² + 2·2·3) projections and feed-forward, plus 2·2·4²·2 attention.
/// assert_eq!(ssl_core::bench::transformer_layer_flops(4.0, 2.0, 3.0), 224.0 + 128.0);
/// ```
pub fn transformer_layer_flops(tokens: f64, dim: f64, ffn: f64) -> f64 {
    2.0 * tokens * (4.0 * dim * dim + 2.0 * dim * ffn) + 2.0 * 2.0 * tokens * tokens * dim
}

/// What a benchmark run is asked for.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where the JSON results and the reference artefacts go.
    pub out: PathBuf,
    /// A short run for smoke tests (smaller batches too).
    pub quick: bool,
    /// Model preset (text: tiny or mini; speech: tiny; vision: ignored).
    pub preset: String,
    /// ResNet width (vision).
    pub width: Option<i64>,
    /// Vision and speech: make the batches on the training device as batched tensor ops.
    pub augment_on_device: bool,
    /// Batch size (default: the modality's).
    pub batch_size: Option<usize>,
    /// Steps per timed window (default 10, 2 with `quick`).
    pub window_steps: Option<u64>,
    /// Timed windows after the warm-up window (default 5, 2 with `quick`).
    pub windows: Option<u64>,
    /// After the timed windows, this many steps on the pre-loaded batch recorded with LibTorch's
    /// profiler into `out/<name>_profile/` (0: none; see [`crate::profile`]).
    pub profile: u64,
    /// Alternate with another process (`cargo xtask bench`): announce every window on stdout
    /// and wait for a line on stdin before the next (see [`stdin_gate`]).
    pub paired: bool,
    /// The data loader's threads (0: the trainer's choice, [`crate::trainer::loader_threads`]).
    pub loader_threads: usize,
    /// Time only this configuration (`None`: the data loader, then the pre-loaded batch); the
    /// other's samples/s is then recorded as empty (`n` = 0).
    pub only: Option<BenchConfig>,
}

/// The two timed configurations of our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchConfig {
    /// Batches from the data loader (decode, augment, mask) as in a real run.
    Loader,
    /// One pre-loaded batch, copied every step: the step alone.
    Preloaded,
}

/// The timed windows: `windows` windows of `steps` steps after one warm-up window.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub steps: u64,
    pub windows: u64,
    /// The data loader's threads (0: the trainer's choice).
    pub loader_threads: usize,
}

impl Timing {
    /// Make `train` run exactly the timed windows with `batch_size` and the loader threads asked
    /// for, logging once per window.
    pub fn apply(&self, train: &mut TrainConfig, batch_size: usize) {
        train.batch_size = batch_size;
        train.loader_threads = self.loader_threads;
        train.steps = self.steps * (self.windows + 1);
        train.log_every = self.steps;
        train.checkpoint_every = 0;
        train.progress = false;
    }
}

/// Everything a modality's measurement shares.
pub struct BenchContext {
    pub options: BenchOptions,
    pub device: Device,
    pub timing: Timing,
}

impl BenchContext {
    pub fn new(options: BenchOptions, device: Device) -> Self {
        let (steps, windows) = if options.quick { (2, 2) } else { (10, 5) };
        let timing = Timing {
            steps: options.window_steps.unwrap_or(steps).max(1),
            windows: options.windows.unwrap_or(windows).max(1),
            loader_threads: options.loader_threads,
        };
        Self { options, device, timing }
    }

    /// Where artefact `what` (`init`, `batch`) of model `name` goes.
    pub fn artefact(&self, name: &str, what: &str) -> PathBuf {
        self.options.out.join(format!("{name}_{what}.safetensors"))
    }

    /// Write the decoded data our loader samples from, `tensors` by name, to the `data` artefact
    /// of model `name`: what the reference's DataLoader reads.
    pub fn write_data(&self, name: &str, tensors: &[(&str, &Tensor)]) -> Result<()> {
        Tensor::write_safetensors(tensors, self.artefact(name, "data"))?;
        Ok(())
    }

    /// How to run model `name`'s reference: `script` with its model and optimizer flags `args`,
    /// our window length and intra-op threads, on the artefacts (the `data` one written by
    /// [`BenchContext::write_data`], with as many DataLoader workers as our loader has threads).
    /// Also written to `out/<name>_reference.json` before any timing, so that `cargo xtask bench`
    /// can start the reference while our side runs.
    pub fn reference(&self, name: &str, script: &str, mut args: Vec<String>) -> Result<ReferenceCall> {
        args.extend([
            "--window".into(),
            self.timing.steps.to_string(),
            "--windows".into(),
            self.timing.windows.to_string(),
            "--threads".into(),
            tch::get_num_threads().to_string(),
        ]);
        let call = ReferenceCall {
            script: script.to_owned(),
            args,
            init: self.artefact(name, "init"),
            batch: self.artefact(name, "batch"),
            data: Some(self.artefact(name, "data")),
            workers: crate::trainer::loader_threads(self.timing.loader_threads, self.device),
        };
        let path = self.options.out.join(format!("{name}_reference.json"));
        let json = serde_json::to_vec_pretty(&call).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| CoreError::io(&path, e))?;
        Ok(call)
    }
}

/// A batch that can be handed out again every step.
pub trait FixedBatch: Send + 'static {
    /// A copy with its own storage, made in the loader thread as `collate` makes a batch (a
    /// memory copy is all that is left of the loader's work). Shallow clones of one batch are
    /// not what training sees.
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
    fn get(&self, _: usize, _: &mut rand_chacha::ChaCha8Rng) -> std::result::Result<(), crate::loader::Skipped> {
        Ok(())
    }
    fn collate(&self, _: Vec<()>, _: &mut rand_chacha::ChaCha8Rng) -> B {
        self.0.lock().map(|b| b.fresh_copy()).unwrap_or_else(|e| e.into_inner().fresh_copy())
    }
}

/// The gate of a paired benchmark (`ssl bench --paired`): after each window, print it as a
/// [`WindowLine`](ssl_records::bench::WindowLine) on stdout, then block on stdin for the
/// orchestrator's word: `go` runs the next window, anything else (or the end of stdin) ends this
/// configuration's training. The process does no work between its line and the word, so the
/// other side's window runs alone.
pub fn stdin_gate(config: &str) -> WindowGate {
    let config = config.to_owned();
    let index = AtomicU64::new(0);
    let start = Mutex::new(UsageMark::now());
    Arc::new(move |line: &MetricsLine| {
        let mut start = start.lock().unwrap_or_else(|e| e.into_inner());
        let window = ssl_records::bench::Window {
            config: config.clone(),
            index: index.fetch_add(1, Ordering::Relaxed),
            samples_per_s: line.samples_per_s,
            usage: start.as_ref().zip(UsageMark::now()).map(|(a, b)| b.since(a)),
        };
        let text = serde_json::to_string(&ssl_records::bench::WindowLine { window })
            .map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}").and_then(|_| out.flush()).map_err(|e| CoreError::io("stdout", e))?;
        let mut word = String::new();
        std::io::stdin().read_line(&mut word).map_err(|e| CoreError::io("stdin", e))?;
        // The next window starts now, after the wait for the word.
        *start = UsageMark::now();
        Ok(word.trim() == "go")
    })
}

/// The process's resource counters at one instant.
struct UsageMark {
    at: std::time::Instant,
    usage: libc::rusage,
}

impl UsageMark {
    fn now() -> Option<Self> {
        // SAFETY: `getrusage` only writes the struct it is given; an all-zero `rusage` is valid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
        ok.then(|| UsageMark { at: std::time::Instant::now(), usage })
    }

    /// What was used from `start` to `self`.
    fn since(&self, start: &UsageMark) -> ssl_records::bench::WindowUsage {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        let cpu = |u: &libc::rusage| secs(u.ru_utime) + secs(u.ru_stime);
        let count = |f: fn(&libc::rusage) -> libc::c_long| (f(&self.usage) - f(&start.usage)).max(0) as u64;
        ssl_records::bench::WindowUsage {
            wall_s: (self.at - start.at).as_secs_f64(),
            cpu_s: cpu(&self.usage) - cpu(&start.usage),
            minor_faults: count(|u| u.ru_minflt),
            major_faults: count(|u| u.ru_majflt),
            voluntary_switches: count(|u| u.ru_nvcsw),
            involuntary_switches: count(|u| u.ru_nivcsw),
        }
    }
}

/// Train through the real `Trainer` and return samples/s over the timed windows (all of them
/// but the warm-up one, however many ran: a paired run ends when the orchestrator says so).
fn windows<O, S>(
    train: &TrainConfig,
    dir: &Path,
    objective: &mut O,
    source: Arc<S>,
    device: Device,
    gate: Option<WindowGate>,
) -> Result<Spread>
where
    O: Objective,
    S: DataSource<Batch = O::Batch>,
{
    let mut trainer = Trainer::new(train.clone(), dir, device);
    trainer.window_gate = gate;
    trainer.fit(objective, source)?;
    // The first logging window includes warm-up (allocator, kernels, first batches): dropped.
    let sps: Vec<f64> = read_metrics(dir).iter().skip(1).map(|m| m.samples_per_s).collect();
    Ok(Spread::of(&sps))
}

/// Samples/s with the data loader, then with `fixed` every step (or only the one `--only` asks
/// for), each on a fresh objective; then,
/// with `--profile N`, N more steps on `fixed` (after 2 warm-up steps) recorded with LibTorch's
/// profiler into `out/<name>_profile/` (untimed, so the profiler does not touch the numbers).
pub fn loader_and_preloaded<O, S>(
    ctx: &BenchContext,
    name: &str,
    train: &TrainConfig,
    mut objective: impl FnMut() -> Result<O>,
    source: Arc<S>,
    fixed: &O::Batch,
) -> Result<(Spread, Spread)>
where
    O: Objective,
    O::Batch: FixedBatch,
    S: DataSource<Batch = O::Batch>,
{
    let device = ctx.device;
    let tmp = tempfile::tempdir().map_err(|e| CoreError::io(std::env::temp_dir(), e))?;
    let gate = |config: &str| ctx.options.paired.then(|| stdin_gate(config));
    let runs = |config: BenchConfig| ctx.options.only.is_none_or(|only| only == config);
    let loader = match runs(BenchConfig::Loader) {
        true => windows(train, &tmp.path().join("loader"), &mut objective()?, source, device, gate("loader"))?,
        false => Spread::of(&[]),
    };
    let preloaded = || Arc::new(Preloaded(Mutex::new(fixed.fresh_copy())));
    let pre = match runs(BenchConfig::Preloaded) {
        true => {
            windows(train, &tmp.path().join("preloaded"), &mut objective()?, preloaded(), device, gate("preloaded"))?
        }
        false => Spread::of(&[]),
    };
    let n = ctx.options.profile;
    if n > 0 && runs(BenchConfig::Preloaded) {
        let mut t = train.clone();
        (t.steps, t.profile, t.log_every) = (n + 2, n, 0);
        let run = tmp.path().join("profiled");
        Trainer::new(t, &run, device).fit(&mut objective()?, preloaded())?;
        let to = ctx.options.out.join(format!("{name}_profile"));
        std::fs::create_dir_all(&to).map_err(|e| CoreError::io(&to, e))?;
        for f in ["trace.json", "top-ops.md"] {
            let from = run.join("profile").join(f);
            std::fs::copy(&from, to.join(f)).map_err(|e| CoreError::io(&from, e))?;
        }
    }
    Ok((loader, pre))
}

/// Write the variables of `vs` sorted by name to `path`; returns the trainable parameter count.
pub fn write_init(vs: &VarStore, path: &Path) -> Result<i64> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|x, y| x.0.cmp(&y.0));
    Tensor::write_safetensors(&named, path)?;
    Ok(named.iter().filter(|(_, t)| t.requires_grad()).map(|(_, t)| t.numel() as i64).sum())
}

/// The reference flags that repeat our optimizer settings.
pub fn optimizer_flags(train: &TrainConfig) -> Vec<String> {
    let mut flags = vec![
        "--lr".to_string(),
        train.lr.to_string(),
        "--weight-decay".into(),
        train.optimizer.weight_decay.to_string(),
        "--clip".into(),
        train.clip_norm.to_string(),
    ];
    if let crate::optim::OptimizerKind::AdamW { beta1, beta2, eps } = train.optimizer.kind {
        flags.extend(["--betas".into(), format!("{beta1},{beta2}"), "--eps".into(), eps.to_string()]);
    }
    flags
}

/// What one modality measured.
pub struct Measured {
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
    /// The reference and its flags ([`BenchContext::reference`]).
    pub reference: ReferenceCall,
    /// Modality-specific details.
    pub details: serde_json::Value,
}

impl Measured {
    /// The record `cargo xtask bench` reads, with the machine's peak and memory measured now.
    pub fn record(self, ctx: &BenchContext) -> OursRun {
        let peak = matmul_peak(ctx.device, if ctx.options.quick { 512 } else { 2048 }, 5);
        OursRun {
            reference: self.reference,
            name: self.name,
            modality: self.modality.to_owned(),
            preset: self.preset,
            model: self.model,
            details: self.details,
            batch_size: self.batch_size,
            samples_per_step: self.samples_per_step,
            sample_unit: self.sample_unit.to_owned(),
            per_sample: self.per_sample.map(|(unit, count)| PerSample { unit: unit.to_owned(), count }),
            parameters: self.parameters,
            first_step_loss: self.first_step_loss,
            flops_per_sample: self.flops_per_sample,
            peak_flops: peak,
            device: format!("{:?}", ctx.device),
            threads: tch::get_num_threads(),
            loader_threads: crate::trainer::loader_threads(ctx.timing.loader_threads, ctx.device),
            ours_loader_samples_per_s: self.loader,
            ours_preloaded_samples_per_s: self.preloaded,
            peak_rss_bytes: peak_rss_bytes(),
            windows: ctx.timing.windows,
            window_steps: ctx.timing.steps,
        }
    }
}

/// Time the sum all-reduce of `elements` float32 values over `group`, `iters` times after 3
/// warm-up calls, each call after a barrier (as `bench/allreduce.py` does with
/// `torch.distributed`).
pub fn all_reduce_times(
    group: &crate::dist::ProcessGroup,
    elements: usize,
    iters: usize,
    device: Device,
) -> Result<ssl_records::bench::AllReduceRun> {
    let t = Tensor::f_ones([elements as i64], (Kind::Float, device))?;
    // NCCL's wait only orders the CUDA streams: the host waits for the device before the clock.
    let done = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    for _ in 0..3 {
        group.all_reduce_sum(&t)?;
    }
    done();
    let mut ms = Vec::with_capacity(iters);
    for _ in 0..iters {
        group.barrier()?;
        done();
        let start = Instant::now();
        group.all_reduce_sum(&t)?;
        done();
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(ssl_records::bench::AllReduceRun {
        side: "ours".into(),
        world: group.world().size,
        elements,
        iters,
        ms: ssl_records::bench::Spread::of(&ms),
    })
}
