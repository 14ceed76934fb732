//! The JSON of `cargo xtask bench`, typed: what `ssl bench` measured on our side
//! ([`OursRun`], `<name>_ours.json`), what a PyTorch reference under `bench/` printed
//! ([`ReferenceRun`], its last stdout line), and the report xtask writes ([`BenchReport`],
//! `bench.json`).
//!
//! JSON has no NaN or infinity: serde_json writes a non-finite `f64` as `null`. The fields a
//! diverging or degenerate measurement can make non-finite (first-step losses, their difference,
//! the matmul peak) read `null` back as NaN, so such a run is reported as not equivalent instead
//! of failing to parse.
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `null` (a non-finite number, as serde_json writes it) as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Median, min and max of samples/s over the timed windows, and how many windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// Summarise `values` (empty gives zeros).
    ///
    /// ```
    /// let s = ssl_records::bench::Spread::of(&[3.0, 1.0, 2.0]);
    /// assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    /// ```
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self { median: 0.0, min: 0.0, max: 0.0, n: 0 };
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) };
        Self { median, min: v[0], max: v[v.len() - 1], n: v.len() }
    }
}

/// One timed window as a benchmark process announces it on stdout when xtask alternates the two
/// sides (`ssl bench --paired`, `bench/reference.py --paired`): one JSON line
/// `{"window": {...}}` per window, the warm-up window's `index` 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// `loader` or `preloaded` (ours), `pytorch` (a reference).
    pub config: String,
    pub index: u64,
    pub samples_per_s: f64,
    /// What the process used during the window (absent from older or non-Linux records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<WindowUsage>,
}

/// The process's resource use over one window, all threads together (`getrusage(RUSAGE_SELF)`
/// differences, the same call on both sides): tells a slow window caused by the machine (fewer
/// CPU seconds, more involuntary switches) from one caused by the process's own work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowUsage {
    /// Wall-clock seconds of the window.
    pub wall_s: f64,
    /// User plus system CPU seconds of every thread.
    pub cpu_s: f64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// Context switches: waits (voluntary) and preemptions (involuntary).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// The stdout line that carries a [`Window`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowLine {
    pub window: Window,
}

/// The benchmarked modalities whose loader can leave the batch to the training device
/// (`--augment-on-device`: vision's augmentation, speech's crops).
pub const ON_DEVICE_MODALITIES: [&str; 2] = ["vision", "speech"];

/// `--augment-on-device` for `modality` (`None`: every model), refused with the reason when a
/// model it covers has no such path.
///
/// ```
/// use ssl_records::bench::check_augment_on_device;
/// assert!(check_augment_on_device(Some("speech")).is_ok());
/// assert!(check_augment_on_device(Some("text")).unwrap_err().contains("vision or speech"));
/// assert!(check_augment_on_device(None).is_err());
/// ```
pub fn check_augment_on_device(modality: Option<&str>) -> Result<(), String> {
    match modality {
        Some(m) if ON_DEVICE_MODALITIES.contains(&m) => Ok(()),
        m => Err(format!(
            "--augment-on-device is an option of {} only, not {}: name one of them",
            ON_DEVICE_MODALITIES.join(" or "),
            m.map_or("every model's".to_string(), |m| format!("{m}'s"))
        )),
    }
}

/// The coverage a distribution-free confidence interval of a median should reach.
pub const CI_LEVEL: f64 = 0.95;

/// Ours against PyTorch window pair by window pair: each of our windows was followed at once by
/// one of the reference's, so drift of the machine hits both sides of a pair alike.
///
/// `ci_low`..`ci_high` is the distribution-free confidence interval of the median ratio (order
/// statistics of the pairs' ratios; `ci_level` is its exact coverage, below [`CI_LEVEL`] when
/// there are too few pairs to reach it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedRatio {
    /// `data loader` or `pre-loaded`.
    pub config: String,
    /// Samples/s of each pair, ours and the reference's.
    pub ours: Vec<f64>,
    pub pytorch: Vec<f64>,
    /// ours / pytorch, pair by pair.
    pub ratios: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
}

impl PairedRatio {
    /// The ratios of `ours[i] / pytorch[i]` and their summary.
    ///
    /// ```
    /// use ssl_records::bench::PairedRatio;
    /// let ours = [10.0, 11.0, 9.0, 10.0, 10.0, 10.5];
    /// let torch = [10.0, 10.0, 10.0, 10.0, 10.0, 10.0];
    /// let p = PairedRatio::of("pre-loaded", &ours, &torch);
    /// assert_eq!((p.median, p.min, p.max), (1.0, 0.9, 1.1));
    /// // Six pairs: the interval [min, max] covers the median with probability 1 - 2/64.
    /// assert_eq!((p.ci_low, p.ci_high, p.ci_level), (0.9, 1.1, 1.0 - 2.0 / 64.0));
    /// assert!(!p.within(5.0) && p.within(10.5));
    /// ```
    pub fn of(config: &str, ours: &[f64], pytorch: &[f64]) -> Self {
        let ratios: Vec<f64> = ours.iter().zip(pytorch).map(|(o, t)| if *t > 0.0 { o / t } else { 0.0 }).collect();
        let s = Spread::of(&ratios);
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let (k, level) = median_ci_rank(sorted.len());
        let (ci_low, ci_high) = if sorted.is_empty() { (0.0, 0.0) } else { (sorted[k - 1], sorted[sorted.len() - k]) };
        Self {
            config: config.to_owned(),
            ours: ours[..ratios.len()].to_vec(),
            pytorch: pytorch[..ratios.len()].to_vec(),
            ratios,
            median: s.median,
            min: s.min,
            max: s.max,
            ci_low,
            ci_high,
            ci_level: level,
        }
    }

    /// The interval's larger half-width, in percent of the median.
    pub fn half_width_pct(&self) -> f64 {
        if self.median > 0.0 {
            100.0 * (self.median - self.ci_low).max(self.ci_high - self.median) / self.median
        } else {
            f64::INFINITY
        }
    }

    /// Whether the interval reaches [`CI_LEVEL`] and lies within ±`pct` percent of the median.
    pub fn within(&self, pct: f64) -> bool {
        self.ci_level >= CI_LEVEL && self.half_width_pct() <= pct
    }
}

/// For `n` sorted values, the rank `k` (1-based) such that `[x_k, x_(n+1-k)]` is the narrowest
/// order-statistic interval covering the median with probability at least [`CI_LEVEL`], and that
/// coverage (`1 - 2 P(Binomial(n, 1/2) <= k - 1)`). With too few values for [`CI_LEVEL`], `[min,
/// max]` (`k` = 1) and its lower coverage.
fn median_ci_rank(n: usize) -> (usize, f64) {
    if n == 0 {
        return (1, 0.0);
    }
    // P(B <= j) for B ~ Binomial(n, 1/2), j = 0..n.
    let mut cdf = Vec::with_capacity(n + 1);
    let (mut term, mut acc) = (0.5f64.powi(n as i32), 0.0);
    for j in 0..=n {
        acc += term;
        cdf.push(acc);
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    let coverage = |k: usize| 1.0 - 2.0 * cdf[k - 1];
    let mut k = 1;
    while k < n.div_ceil(2) && coverage(k + 1) >= CI_LEVEL {
        k += 1;
    }
    (k, coverage(k))
}

/// A second throughput unit and how many of it one sample holds (`tokens`, 128.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerSample {
    pub unit: String,
    pub count: f64,
}

/// How xtask runs the reference for one model: the script and its model and optimizer flags, and
/// the artefacts `ssl bench` wrote for it (initial weights and the fixed batch, safetensors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCall {
    /// Relative to the workspace root (`bench/text_mlm.py`).
    pub script: String,
    pub args: Vec<String>,
    pub init: PathBuf,
    pub batch: PathBuf,
    /// The decoded data our loader samples from (safetensors), for the reference's end-to-end
    /// configuration (`--data`: a `torch.utils.data.DataLoader` over it); absent in records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The DataLoader's worker processes: as many as our loader's threads.
    #[serde(default)]
    pub workers: usize,
}

/// `<name>_ours.json`: what `ssl bench <modality>` measured on our side, and how to run the
/// reference against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OursRun {
    /// File prefix and key in bench.json (`text_mini`).
    pub name: String,
    pub modality: String,
    pub preset: String,
    /// A one-line description of the model and its input.
    pub model: String,
    /// Modality-specific details (model and masking configuration, ...).
    #[serde(default)]
    pub details: serde_json::Value,
    pub batch_size: usize,
    /// Samples per optimizer step (what samples/s counts).
    pub samples_per_step: usize,
    pub sample_unit: String,
    /// `null` where a sample has no second unit (vision).
    #[serde(default)]
    pub per_sample: Option<PerSample>,
    /// Trainable parameters.
    pub parameters: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub first_step_loss: f64,
    /// Analytic training FLOPs per sample (3x forward).
    pub flops_per_sample: f64,
    /// The matmul peak measured in the same process (FLOP/s).
    #[serde(deserialize_with = "nan_if_null")]
    pub peak_flops: f64,
    /// The LibTorch device, as `Debug` prints it (`Cpu`, `Cuda(0)`).
    pub device: String,
    /// LibTorch intra-op threads.
    pub threads: i32,
    /// The data loader's threads (0 in records written before they were recorded).
    #[serde(default)]
    pub loader_threads: usize,
    pub ours_loader_samples_per_s: Spread,
    pub ours_preloaded_samples_per_s: Spread,
    pub peak_rss_bytes: u64,
    /// Timed windows after the warm-up window, and steps per window.
    pub windows: u64,
    pub window_steps: u64,
    pub reference: ReferenceCall,
}

/// The JSON line a PyTorch reference prints last (`bench/reference.py`'s `train_and_report`,
/// `bench/vision_rotation.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRun {
    pub parameters: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub first_step_loss: f64,
    /// Whether `torch.optim.AdamW(fused=True)` was available.
    pub fused_adamw: bool,
    pub threads: i64,
    pub torch_version: String,
    pub samples_per_s: Spread,
    /// Peak resident memory of the reference process (the vision reference does not report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// Peak CUDA memory allocated, on CUDA only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_cuda_bytes: Option<u64>,
}

/// Both sides of one model, as `bench.json` keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRuns {
    pub ours: OursRun,
    pub pytorch: ReferenceRun,
    /// The reference trained from a `torch.utils.data.DataLoader` over the same data (end to end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch_dataloader: Option<ReferenceRun>,
    /// The ratios of windows that ran in turns (see `xtask/src/bench.rs`): `end to end` (ours
    /// with the data loader / PyTorch with its DataLoader), `PyTorch DataLoader` (its DataLoader /
    /// pre-loaded), `data loader` (ours with the data loader / PyTorch pre-loaded) and
    /// `pre-loaded` (ours / PyTorch, both pre-loaded); empty where the sides ran one after the
    /// other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paired: Vec<PairedRatio>,
}

/// Whether the reference computes the same thing: same parameter count, first-step losses within
/// the report's `loss_tolerance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Equivalence {
    pub parameters_ours: i64,
    pub parameters_pytorch: i64,
    #[serde(deserialize_with = "nan_if_null")]
    pub first_step_loss_ours: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub first_step_loss_pytorch: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub abs_diff: f64,
    pub equivalent: bool,
}

/// One row of the table: one model in one configuration (ours with the data loader, ours with
/// pre-loaded tensors, PyTorch eager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The model's name (`text_mini`).
    pub model: String,
    pub modality: String,
    pub preset: String,
    pub config: String,
    pub sample_unit: String,
    pub samples_per_s: Spread,
    /// The second unit and its rate (`null` for vision).
    pub unit: Option<String>,
    pub units_per_s: Option<f64>,
    /// Ours over PyTorch: the median of the paired window ratios where the sides alternated
    /// (`paired`), else the median samples/s over PyTorch's.
    pub vs_pytorch: f64,
    /// The paired ratio's confidence interval, coverage and number of pairs (our rows of an
    /// alternating run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedSummary>,
    /// How much slower the data loader is than pre-loaded tensors (ours, data loader row only).
    pub loader_overhead_pct: Option<f64>,
    /// Model FLOPs utilization against the measured matmul peak.
    pub mfu_pct: f64,
    /// `null` where the configuration has no process of its own to measure.
    pub peak_rss_bytes: Option<u64>,
}

/// One row of `cargo xtask bench --threads-table` (`threads.json`): our training throughput with
/// the data loader at `threads` intra-op threads and `loader_threads` loader threads, against the
/// default configuration's window of the same round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadRow {
    pub model: String,
    pub threads: usize,
    pub loader_threads: usize,
    /// Whether this is the default configuration.
    pub default: bool,
    pub samples_per_s: Spread,
    /// The median of this configuration's samples/s over the default's, round by round.
    pub vs_default: f64,
    pub paired: PairedSummary,
}

/// What a table row shows of a [`PairedRatio`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedSummary {
    pub ci_low: f64,
    pub ci_high: f64,
    pub ci_level: f64,
    pub pairs: usize,
}

impl From<&PairedRatio> for PairedSummary {
    fn from(p: &PairedRatio) -> Self {
        Self { ci_low: p.ci_low, ci_high: p.ci_high, ci_level: p.ci_level, pairs: p.ratios.len() }
    }
}

/// The machine the benchmark ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchMachine {
    pub cpu: String,
    pub cores: usize,
    /// `nvidia-smi -L`, empty without one.
    pub gpu: String,
}

/// The versions on both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchVersions {
    /// `rustc --version`.
    pub rustc: String,
    /// The reference's `torch.__version__`.
    pub torch: String,
    pub toolkit: String,
}

/// `bench.json`: everything `cargo xtask bench` measured, keyed by model name (`vision`,
/// `text_tiny`, `text_mini`, `speech_tiny`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Whether this was a `--quick` smoke run (no meaningful numbers).
    pub quick: bool,
    pub machine: BenchMachine,
    pub versions: BenchVersions,
    /// `git rev-parse HEAD`, empty outside a checkout.
    pub git_rev: String,
    /// `cpu` or `cuda`.
    pub device: String,
    /// The best matmul peak of the `ssl bench` processes (FLOP/s).
    #[serde(deserialize_with = "nan_if_null")]
    pub peak_flops: f64,
    /// `fp32 matmul` or `bf16 matmul`.
    pub peak_kind: String,
    pub loss_tolerance: f64,
    pub equivalence: BTreeMap<String, Equivalence>,
    /// Each model's one-line description.
    pub models: BTreeMap<String, String>,
    pub runs: BTreeMap<String, ModelRuns>,
    pub rows: Vec<Row>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by hand from `ssl bench text` (`crates/ssl-cli/src/bench.rs`, fn `run`).
    const OURS: &str = r#"{
        "name": "text_tiny",
        "modality": "text",
        "preset": "tiny",
        "model": "BERT tiny (2 layers x 128, vocab 8192), 128 tokens, 25% masked, 40 MLM slots",
        "details": {"max_len": 128, "slots": 40, "train_sequences": 812, "model": {"hidden": 128}},
        "batch_size": 8,
        "samples_per_step": 8,
        "sample_unit": "sequences",
        "per_sample": {"unit": "tokens", "count": 128.0},
        "parameters": 958592,
        "first_step_loss": 9.123456789,
        "flops_per_sample": 123456789.0,
        "peak_flops": 293000000000.0,
        "device": "Cpu",
        "threads": 2,
        "loader_threads": 1,
        "ours_loader_samples_per_s": {"median": 214.0, "min": 205.5, "max": 226.25, "n": 5},
        "ours_preloaded_samples_per_s": {"median": 226.0, "min": 221.0, "max": 232.0, "n": 5},
        "peak_rss_bytes": 847249408,
        "windows": 5,
        "window_steps": 10,
        "reference": {
            "script": "bench/text_mlm.py",
            "args": ["--vocab", "8192", "--hidden", "128", "--lr", "0.001"],
            "init": "runs/bench/text_tiny_init.safetensors",
            "batch": "runs/bench/text_tiny_batch.safetensors",
            "data": "runs/bench/text_tiny_data.safetensors",
            "workers": 1
        }
    }"#;

    /// Written by hand from `bench/reference.py` (`train_and_report`) on CUDA.
    const REFERENCE: &str = r#"{"parameters": 958592, "first_step_loss": 9.123456789, "fused_adamw": true, "threads": 2, "torch_version": "2.13.0+cu130", "samples_per_s": {"median": 246.0, "min": 235.0, "max": 276.0, "n": 5}, "peak_rss_bytes": 1065353216, "peak_cuda_bytes": 123456}"#;

    /// Written by hand from `bench/vision_rotation.py`: no memory fields.
    const VISION_REFERENCE: &str = r#"{"parameters": 77364, "first_step_loss": 1.3862943611198906, "fused_adamw": false, "threads": 2, "torch_version": "2.13.0", "samples_per_s": {"median": 1279.0, "min": 1242.0, "max": 1420.0, "n": 5}}"#;

    /// Written by hand from `xtask/src/bench.rs` (fn `run`): one model, two of its rows.
    fn report_json() -> String {
        format!(
            r#"{{
            "quick": false,
            "machine": {{"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "gpu": ""}},
            "versions": {{"rustc": "rustc 1.95.0", "torch": "2.13.0+cu130", "toolkit": "0.1.0"}},
            "git_rev": "4e5b2d1",
            "device": "cpu",
            "peak_flops": 293000000000.0,
            "peak_kind": "fp32 matmul",
            "loss_tolerance": 0.0001,
            "equivalence": {{"text_tiny": {{
                "parameters_ours": 958592, "parameters_pytorch": 958592,
                "first_step_loss_ours": 9.123456789, "first_step_loss_pytorch": 9.123456789,
                "abs_diff": 0.0, "equivalent": true}}}},
            "models": {{"text_tiny": "BERT tiny (2 layers x 128, vocab 8192), 128 tokens, 25% masked, 40 MLM slots"}},
            "runs": {{"text_tiny": {{"ours": {OURS}, "pytorch": {REFERENCE}}}}},
            "rows": [
                {{"model": "text_tiny", "modality": "text", "preset": "tiny", "config": "ours, data loader",
                  "sample_unit": "sequences", "samples_per_s": {{"median": 214.0, "min": 205.5, "max": 226.25, "n": 5}},
                  "unit": "tokens", "units_per_s": 27392.0, "vs_pytorch": 0.87, "loader_overhead_pct": 5.3,
                  "mfu_pct": 33.3, "peak_rss_bytes": 847249408}},
                {{"model": "vision", "modality": "vision", "preset": "resnet-w16", "config": "ours, pre-loaded tensors",
                  "sample_unit": "rotated images", "samples_per_s": {{"median": 893.0, "min": 684.0, "max": 1039.0, "n": 5}},
                  "unit": null, "units_per_s": null, "vs_pytorch": 0.7, "loader_overhead_pct": null,
                  "mfu_pct": 19.9, "peak_rss_bytes": null}}
            ]
        }}"#
        )
    }

    /// `json` parses as `T`, and `T` writes the same JSON value back.
    fn round_trip<T: serde::de::DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(json: &str) -> T {
        let typed: T = serde_json::from_str(json).unwrap();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), value, "writing back changed the JSON");
        assert_eq!(serde_json::from_value::<T>(value).unwrap(), typed);
        typed
    }

    #[test]
    fn median_confidence_ranks_match_the_binomial_table() {
        // Distribution-free 95% intervals of a median: n = 6 gives [x1, x6], n = 10 [x2, x9],
        // n = 20 [x6, x15] (1 - 2 P(B <= k-1) for B ~ Binomial(n, 1/2)).
        let (k, level) = median_ci_rank(6);
        assert_eq!(k, 1);
        assert!((level - 0.96875).abs() < 1e-12);
        let (k, level) = median_ci_rank(10);
        assert_eq!(k, 2);
        assert!((level - (1.0 - 2.0 * 11.0 / 1024.0)).abs() < 1e-12);
        let (k, level) = median_ci_rank(20);
        assert_eq!(k, 6);
        assert!((level - 0.958610).abs() < 1e-6, "{level}");
        // Too few pairs for 95%: [min, max] and its lower coverage.
        let (k, level) = median_ci_rank(3);
        assert_eq!((k, level), (1, 0.75));
    }

    #[test]
    fn paired_ratios_narrow_with_more_pairs() {
        let torch = vec![100.0; 20];
        let ours: Vec<f64> = (0..20).map(|i| 100.0 + if i % 2 == 0 { 1.0 } else { -1.0 } * i as f64).collect();
        let p = PairedRatio::of("pre-loaded", &ours, &torch);
        assert_eq!(p.ratios.len(), 20);
        // The interval drops the 5 most extreme pairs on each side.
        assert!(p.ci_low > p.min && p.ci_high < p.max, "{p:?}");
        assert!(p.within(15.0) && !p.within(5.0), "{}", p.half_width_pct());
        // More values on one side than the other: only the pairs count.
        assert_eq!(PairedRatio::of("x", &ours[..4], &torch).ratios.len(), 4);
    }

    #[test]
    fn ours_round_trips() {
        let ours: OursRun = round_trip(OURS);
        assert_eq!(ours.per_sample, Some(PerSample { unit: "tokens".into(), count: 128.0 }));
        assert_eq!(ours.reference.init, PathBuf::from("runs/bench/text_tiny_init.safetensors"));
        assert_eq!((ours.window_steps, ours.windows, ours.threads), (10, 5, 2));
        assert_eq!(ours.reference.data, Some(PathBuf::from("runs/bench/text_tiny_data.safetensors")));
        // A record from before the DataLoader configuration: no data, no workers.
        let old = OURS.replace(
            ",\n            \"data\": \"runs/bench/text_tiny_data.safetensors\",\n            \"workers\": 1",
            "",
        );
        let old: OursRun = serde_json::from_str(&old).unwrap();
        assert_eq!((old.reference.data, old.reference.workers), (None, 0));
        // Vision has no second unit.
        let vision = OURS.replace(r#"{"unit": "tokens", "count": 128.0}"#, "null");
        assert_eq!(round_trip::<OursRun>(&vision).per_sample, None);
    }

    #[test]
    fn references_round_trip() {
        let r: ReferenceRun = round_trip(REFERENCE);
        assert_eq!((r.peak_rss_bytes, r.peak_cuda_bytes), (Some(1065353216), Some(123456)));
        let v: ReferenceRun = round_trip(VISION_REFERENCE);
        assert_eq!((v.peak_rss_bytes, v.peak_cuda_bytes, v.samples_per_s.n), (None, None, 5));
        // The Python prints other lines before its JSON line; xtask takes the last JSON line.
        assert!(serde_json::from_str::<ReferenceRun>(r#"{"parameters": 1}"#).is_err());
    }

    #[test]
    fn report_round_trips() {
        let report: BenchReport = round_trip(&report_json());
        assert!(report.equivalence["text_tiny"].equivalent);
        assert_eq!(report.runs["text_tiny"].ours.name, "text_tiny");
        assert_eq!(report.rows[1].unit, None);
        assert_eq!(report.rows[0].peak_rss_bytes, Some(847249408));
    }

    #[test]
    fn a_nan_loss_is_written_as_null_and_read_back_as_nan() {
        let mut ours: OursRun = serde_json::from_str(OURS).unwrap();
        ours.first_step_loss = f64::NAN;
        let json = serde_json::to_value(&ours).unwrap();
        assert!(json["first_step_loss"].is_null());
        assert!(serde_json::from_value::<OursRun>(json).unwrap().first_step_loss.is_nan());
    }
}

/// One all-reduce measurement of `cargo xtask bench --nproc-per-node N`: `elements` float32
/// values summed over `world` ranks on 127.0.0.1 with Gloo, `iters` times after a warm-up.
/// `side` is `ours` (`ssl bench allreduce`) or `pytorch` (`bench/allreduce.py`, Python's
/// `torch.distributed`); both print one JSON line per size from rank 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllReduceRun {
    pub side: String,
    pub world: usize,
    pub elements: usize,
    pub iters: usize,
    /// Milliseconds per all-reduce.
    pub ms: Spread,
}

impl AllReduceRun {
    /// Algorithm bandwidth at the median: bytes reduced per second, in GB/s.
    pub fn gb_per_s(&self) -> f64 {
        (self.elements * 4) as f64 / (self.ms.median / 1000.0).max(1e-12) / 1e9
    }
}
