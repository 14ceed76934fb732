//! `cargo xtask bench`: our training throughput against an equivalent PyTorch eager script and
//! against the machine's measured matmul peak, for every modality's reference models. Speed
//! claims in the docs come from this command.
//!
//! For each model, `ssl bench` measures our side and writes `<name>_ours.json`, the initial
//! weights and a fixed batch; the reference script it names (under `bench/`) loads those, and the
//! two are equivalent when their parameter counts match and their first-step losses agree within
//! [`LOSS_TOLERANCE`].
//!
//! All three JSON shapes (`<name>_ours.json`, the reference's JSON line and `bench.json`) are the
//! serde types of `ssl_records::bench`, which `ssl bench` writes with too.
use anyhow::{bail, Context, Result};
use ssl_records::bench::{
    BenchMachine, BenchReport, BenchVersions, Equivalence, ModelRuns, OursRun, PairedRatio, PairedSummary,
    ReferenceCall, ReferenceRun, Row, Spread, Window, WindowLine,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Largest first-step loss difference between ours and the reference.
pub const LOSS_TOLERANCE: f64 = 1e-4;

/// The reference models: (modality, preset, name in bench.json).
pub const MODELS: [(&str, &str, &str); 4] = [
    ("vision", "tiny", "vision"),
    ("text", "tiny", "text_tiny"),
    ("text", "mini", "text_mini"),
    ("speech", "tiny", "speech_tiny"),
];

/// Flags of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A short run for smoke tests (small windows and batches: no meaningful numbers).
    #[arg(long)]
    pub quick: bool,
    /// Where bench.json and the artefacts go.
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Only this modality (vision, text or speech).
    #[arg(long)]
    pub modality: Option<String>,
    /// Steps per timed window (default 10, 2 with --quick).
    #[arg(long)]
    pub window_steps: Option<u64>,
    /// Window pairs (ours, then PyTorch) per configuration at least (default 6, 2 with --quick).
    #[arg(long)]
    pub windows: Option<u64>,
    /// Window pairs per configuration at most (default 30; with --quick, --windows): pairs are
    /// added until the paired ratio's 95% confidence interval is within ±--target-pct.
    #[arg(long)]
    pub max_windows: Option<u64>,
    /// The half-width, in percent of the median, the paired ratio's confidence interval should reach.
    #[arg(long, default_value_t = 5.0)]
    pub target_pct: f64,
    /// After timing, record N steps of ours and of the reference with their profilers and put
    /// them side by side, op by op, in `OUT/<name>_profile.md` (traces in `OUT/<name>_profile/`).
    #[arg(long, value_name = "N")]
    pub profile: Option<u64>,
    /// Instead of the comparison with PyTorch: our throughput with the data loader for every
    /// pair of intra-op and loader threads out of 1, 2, 4, ... cores, in turns, against the
    /// defaults (`OUT/threads.json`; --windows rounds).
    #[arg(long)]
    pub threads_table: bool,
    /// Our side makes its batches on the training device as batched tensor ops (vision's
    /// augmentation, speech's crops; pretrain-vision's and pretrain-speech's
    /// --augment-on-device); needs --modality vision or speech.
    #[arg(long)]
    pub augment_on_device: bool,
    /// Instead of the models: the data-parallel benchmark with N local processes (all-reduce
    /// against torch.distributed, and scaling against 1 process; see bench_dist.rs).
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

fn cmd_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> BenchMachine {
    BenchMachine {
        cpu: ssl_records::run::cpu_model(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        gpu: cmd_output("nvidia-smi", &["-L"]),
    }
}

/// The reference's result: the last JSON line it printed.
fn last_json_line(text: &str) -> Result<ReferenceRun> {
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).context("no JSON line in the output")?;
    serde_json::from_str(line).with_context(|| format!("unexpected JSON from the reference: {line}"))
}

/// A benchmark process the orchestrator alternates with: its stdin, and its stdout read line by
/// line. Killed when dropped (on an error path); [`Side::finish`] lets it end normally.
pub(crate) struct Side {
    pub(crate) what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines that were not windows (the reference's result is the last JSON line).
    other: Vec<String>,
    /// Every window it announced, warm-up included, in order.
    pub(crate) windows: Vec<Window>,
}

impl Side {
    pub(crate) fn spawn(what: &str, mut cmd: Command) -> Result<Side> {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().with_context(|| format!("starting {what}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = BufReader::new(stdout).lines();
        Ok(Side { what: what.to_owned(), child, stdin, lines, other: Vec::new(), windows: Vec::new() })
    }

    /// The next window the process announces.
    pub(crate) fn window(&mut self) -> Result<Window> {
        for line in self.lines.by_ref() {
            let line = line.with_context(|| format!("reading the output of {}", self.what))?;
            match serde_json::from_str::<WindowLine>(&line) {
                Ok(w) => {
                    self.windows.push(w.window.clone());
                    return Ok(w.window);
                }
                Err(_) => self.other.push(line),
            }
        }
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        bail!("{} ended before its next window ({status})", self.what)
    }

    /// The process's warm-up window of `config` (its first, index 0), which no ratio uses.
    pub(crate) fn warm_up(&mut self, config: &str) -> Result<()> {
        let w = self.window()?;
        if (w.config.as_str(), w.index) != (config, 0) {
            bail!("{} announced {w:?}, expected its {config} warm-up window", self.what);
        }
        Ok(())
    }

    /// Run one more window of the process, which must be of `config`; returns its samples/s.
    pub(crate) fn run_window(&mut self, config: &str) -> Result<f64> {
        self.say("go")?;
        let w = self.window()?;
        if w.config != config {
            bail!("{} announced {w:?}, expected a {config} window", self.what);
        }
        Ok(w.samples_per_s)
    }

    /// Tell the process `word` (`go`: one more window; anything else ends its timing).
    pub(crate) fn say(&mut self, word: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{word}").and_then(|_| stdin.flush()).with_context(|| format!("writing to {}", self.what))
    }

    /// Let the process end (its stdin closed), and return what else it printed.
    pub(crate) fn finish(&mut self) -> Result<Vec<String>> {
        self.stdin.take();
        for line in self.lines.by_ref() {
            self.other.push(line.with_context(|| format!("reading the output of {}", self.what))?);
        }
        let status = self.child.wait().with_context(|| format!("waiting for {}", self.what))?;
        if !status.success() {
            bail!("{} failed ({status})", self.what);
        }
        Ok(std::mem::take(&mut self.other))
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How many window pairs a configuration gets: at least `min`, then more until the paired
/// ratio's confidence interval is within ±`target_pct`, at most `max`.
#[derive(Debug, Clone, Copy)]
struct Pairing {
    min: u64,
    max: u64,
    target_pct: f64,
}

impl Pairing {
    fn of(args: &BenchArgs) -> Self {
        let min = args.windows.unwrap_or(if args.quick { 2 } else { 6 }).max(1);
        let max = args.max_windows.unwrap_or(if args.quick { min } else { 30 }).max(min);
        Pairing { min, max, target_pct: args.target_pct }
    }

    fn done(&self, p: &PairedRatio) -> bool {
        let n = p.ratios.len() as u64;
        n >= self.max || (n >= self.min && p.within(self.target_pct))
    }
}

/// The paired ratios of one model, by [`PairedRatio::config`].
pub const END_TO_END: &str = "end to end";
pub const LOADER_VS_PRELOADED: &str = "data loader";
pub const PRELOADED: &str = "pre-loaded";
pub const PYTORCH_LOADER: &str = "PyTorch DataLoader";
/// Ours with the data loader against ours pre-loaded: our loader's overhead, as
/// [`PYTORCH_LOADER`] is PyTorch's.
pub const OURS_LOADER: &str = "our loader";

/// Both sides of one model as measured: our record, the reference pre-loaded and with its
/// DataLoader, and the paired ratios.
struct Measurement {
    ours: OursRun,
    pytorch: ReferenceRun,
    pytorch_dataloader: Option<ReferenceRun>,
    paired: Vec<PairedRatio>,
}

fn log_pair(p: &PairedRatio) {
    let n = p.ratios.len();
    eprintln!(
        "    {} pair {n}: {:.1} / {:.1} samples/s = {:.3}; median {:.3}, {:.0}% interval {:.3}-{:.3} (±{:.1}%)",
        p.config,
        p.ours[n - 1],
        p.pytorch[n - 1],
        p.ratios[n - 1],
        p.median,
        100.0 * p.ci_level,
        p.ci_low,
        p.ci_high,
        p.half_width_pct()
    );
}

/// Run model `name` as up to four processes that take turns, window by window, one at work at a
/// time: ours with the data loader, ours pre-loaded, the reference with a DataLoader, the
/// reference pre-loaded. Every ratio (end to end, pre-loaded, and each side's loader overhead)
/// pairs windows of the same round; rounds are added until the end-to-end and pre-loaded ratios
/// are as tight as asked.
fn measure(
    root: &Path,
    ssl: &dyn Fn() -> Command,
    python: &Path,
    args: &BenchArgs,
    model: (&str, &str, &str),
) -> Result<Measurement> {
    let (modality, preset, name) = model;
    let out = &args.out;
    let pairing = Pairing::of(args);
    eprintln!("==> {name}: ours and the PyTorch eager reference, in turns window by window");
    // Our two configurations are two processes; the pre-loaded one writes its artefacts (the same
    // bytes) into a folder of its own, so it never rewrites a file a reference is reading.
    let ours_side = |only: &str, to: &Path| -> Result<Side> {
        let mut cmd = ssl();
        cmd.args(["bench", modality, "--preset", preset, "--device", &args.device, "--paired", "--only", only]);
        cmd.arg("--out").arg(to);
        if args.quick {
            cmd.arg("--quick");
        }
        if args.augment_on_device {
            cmd.arg("--augment-on-device");
        }
        if let Some(n) = args.window_steps {
            cmd.args(["--window-steps", &n.to_string()]);
        }
        cmd.args(["--windows", &pairing.max.to_string()]);
        if let (Some(n), "preloaded") = (args.profile, only) {
            cmd.args(["--profile", &n.to_string()]);
        }
        let mut side = Side::spawn(&format!("ssl bench {modality} --preset {preset} --only {only}"), cmd)?;
        side.warm_up(only)?;
        Ok(side)
    };
    let mut ours = ours_side("loader", out)?;
    // Written before our timing started; our side now waits, so each reference warms up alone.
    let file = out.join(format!("{name}_reference.json"));
    let call: ReferenceCall =
        serde_json::from_slice(&std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?)
            .with_context(|| format!("{} is not what ssl bench writes", file.display()))?;
    let reference = || {
        let mut py = Command::new(python);
        py.arg(root.join(&call.script));
        py.args(&call.args);
        py.arg("--init").arg(&call.init);
        py.arg("--batch").arg(&call.batch);
        py.args(["--paired", "--device", &args.device]);
        py
    };
    let profiles = out.join(format!("{name}_profile"));
    let mut py = reference();
    if let Some(n) = args.profile {
        py.args(["--profile", &n.to_string(), "--profile-out"]).arg(profiles.join("pytorch-trace.json"));
    }
    let mut torch = Side::spawn(&format!("the PyTorch reference {}", call.script), py)?;
    torch.warm_up("preloaded")?;
    let mut torch_dl = match &call.data {
        Some(data) => {
            let mut py = reference();
            py.arg("--data").arg(data).args(["--workers", &call.workers.to_string()]);
            let mut side = Side::spawn(&format!("{} with a DataLoader", call.script), py)?;
            side.warm_up("dataloader")?;
            Some(side)
        }
        None => None,
    };
    let pre_out = out.join(format!("{name}_preloaded_side"));
    let mut ours_pre = ours_side("preloaded", &pre_out)?;
    let mut paired = Vec::new();

    // One round: ours with the loader, ours pre-loaded, PyTorch with its DataLoader, PyTorch
    // pre-loaded.
    let (mut o, mut op, mut d, mut t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    loop {
        o.push(ours.run_window("loader")?);
        op.push(ours_pre.run_window("preloaded")?);
        if let Some(side) = torch_dl.as_mut() {
            d.push(side.run_window("dataloader")?);
        }
        t.push(torch.run_window("preloaded")?);
        let e2e = PairedRatio::of(END_TO_END, &o, &d);
        let pre = PairedRatio::of(PRELOADED, &op, &t);
        let vs_pre = PairedRatio::of(LOADER_VS_PRELOADED, &o, &t);
        let own = PairedRatio::of(OURS_LOADER, &o, &op);
        if torch_dl.is_some() {
            log_pair(&e2e);
        }
        log_pair(&pre);
        log_pair(&own);
        if pairing.done(&pre) && (torch_dl.is_none() || pairing.done(&e2e)) {
            if torch_dl.is_some() {
                paired.extend([e2e, PairedRatio::of(PYTORCH_LOADER, &d, &t)]);
            }
            paired.extend([pre, vs_pre, own]);
            break;
        }
    }
    for side in [&mut ours, &mut ours_pre] {
        side.say("next")?;
        side.finish()?;
    }
    let record = |dir: &Path| -> Result<OursRun> {
        let bytes = std::fs::read(dir.join(format!("{name}_ours.json"))).context("reading ssl bench's record")?;
        serde_json::from_slice(&bytes).context("ssl bench's record is not an OursRun")
    };
    // The loader process's record, with the pre-loaded process's samples/s.
    let mut ours_run = record(out)?;
    ours_run.ours_preloaded_samples_per_s = record(&pre_out)?.ours_preloaded_samples_per_s;
    let result = |side: &mut Side| -> Result<ReferenceRun> {
        let lines = side.finish()?;
        last_json_line(&lines.join("\n")).with_context(|| format!("reading the result of {}", side.what))
    };
    let pytorch_dataloader = torch_dl.as_mut().map(result).transpose()?;
    let pytorch = result(&mut torch)?;
    let sides = [Some(&ours), Some(&ours_pre), torch_dl.as_ref(), Some(&torch)];
    write_windows(&out.join(format!("{name}_windows.jsonl")), sides.into_iter().flatten())?;
    if let Some(n) = args.profile {
        compare_profiles(ssl, &profiles, n, &out.join(format!("{name}_profile.md")))?;
    }
    Ok(Measurement { ours: ours_run, pytorch, pytorch_dataloader, paired })
}

/// Every window of every side, one JSON line each (`{"side": ..., "window": {...}}`), in the
/// order the sides announced them: the raw record behind the ratios, with each window's
/// resource use.
fn write_windows<'a>(path: &Path, sides: impl Iterator<Item = &'a Side>) -> Result<()> {
    let mut text = String::new();
    for side in sides {
        for w in &side.windows {
            text.push_str(&serde_json::to_string(&serde_json::json!({ "side": side.what, "window": w }))?);
            text.push('\n');
        }
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `ssl trace` over our trace and the reference's (`dir/trace.json`, `dir/pytorch-trace.json`),
/// written to `to` and shown.
fn compare_profiles(ssl: &dyn Fn() -> Command, dir: &Path, steps: u64, to: &Path) -> Result<()> {
    let output = ssl()
        .arg("trace")
        .arg(dir.join("trace.json"))
        .arg("--against")
        .arg(dir.join("pytorch-trace.json"))
        .args(["--steps", &steps.to_string(), "--top", "25"])
        .output()
        .context("running ssl trace")?;
    if !output.status.success() {
        bail!("ssl trace failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    let table = String::from_utf8_lossy(&output.stdout);
    std::fs::write(to, format!("# Ours (A) against PyTorch eager (B), op by op\n\n{table}"))
        .with_context(|| format!("writing {}", to.display()))?;
    eprintln!("==> op by op: {}", to.display());
    for line in table.lines().take(14) {
        eprintln!("    {line}");
    }
    Ok(())
}

/// Whether the reference is equivalent, with the numbers that say so.
fn equivalence(ours: &OursRun, reference: &ReferenceRun) -> Equivalence {
    let diff = (ours.first_step_loss - reference.first_step_loss).abs();
    Equivalence {
        parameters_ours: ours.parameters,
        parameters_pytorch: reference.parameters,
        first_step_loss_ours: ours.first_step_loss,
        first_step_loss_pytorch: reference.first_step_loss,
        abs_diff: diff,
        equivalent: ours.parameters == reference.parameters && diff < LOSS_TOLERANCE,
    }
}

/// The table rows of one model: ours with the data loader, ours pre-loaded, PyTorch with its
/// DataLoader (when it ran) and PyTorch pre-loaded. MFU divides by the matmul peak measured in our
/// process. "vs PyTorch" compares like with like: our data loader against PyTorch's DataLoader
/// (end to end; against PyTorch pre-loaded when there is no DataLoader run), pre-loaded against
/// pre-loaded, each the median of its paired ratios (without pairs, the ratio of medians). A
/// loader overhead compares a side's two configurations through their paired ratios against the
/// same PyTorch pre-loaded windows, so that drift between the configurations cancels too.
fn rows(
    ours: &OursRun,
    reference: &ReferenceRun,
    dataloader: Option<&ReferenceRun>,
    paired: &[PairedRatio],
) -> Vec<Row> {
    let peak = ours.peak_flops;
    let torch_sps = reference.samples_per_s.median;
    let find = |config: &str| paired.iter().find(|p| p.config == config);
    let of_medians = |sps: f64| if torch_sps > 0.0 { sps / torch_sps } else { 0.0 };
    let ratio = |config: &str, sps: f64| find(config).map_or(of_medians(sps), |p| p.median);
    let loader_vs_pre = ratio(LOADER_VS_PRELOADED, ours.ours_loader_samples_per_s.median);
    let pre_vs = ratio(PRELOADED, ours.ours_preloaded_samples_per_s.median);
    let (unit, per_sample) = match &ours.per_sample {
        Some(p) => (Some(p.unit.clone()), p.count),
        None => (None, 0.0),
    };
    let row = |config: String,
               spread: Spread,
               vs_pytorch: f64,
               paired: Option<&PairedRatio>,
               loader_overhead_pct: Option<f64>,
               peak_rss_bytes: Option<u64>| {
        let sps = spread.median;
        Row {
            model: ours.name.clone(),
            modality: ours.modality.clone(),
            preset: ours.preset.clone(),
            config,
            sample_unit: ours.sample_unit.clone(),
            samples_per_s: spread,
            unit: unit.clone(),
            units_per_s: (per_sample > 0.0).then_some(sps * per_sample),
            vs_pytorch,
            paired: paired.map(PairedSummary::from),
            loader_overhead_pct,
            mfu_pct: if peak > 0.0 { 100.0 * sps * ours.flops_per_sample / peak } else { 0.0 },
            peak_rss_bytes,
        }
    };
    // Our loader's overhead: paired within rounds where measured so (as PyTorch's), otherwise
    // from the two ratios against PyTorch pre-loaded.
    let overhead = |loader_ratio: f64| match find(OURS_LOADER) {
        Some(p) => Some(100.0 * (1.0 - p.median)),
        None => (pre_vs > 0.0).then(|| 100.0 * (1.0 - loader_ratio / pre_vs)),
    };
    let (loader_vs, loader_pair) = match (dataloader, find(END_TO_END)) {
        (Some(_), Some(p)) => (p.median, Some(p)),
        (Some(d), None) => (ours.ours_loader_samples_per_s.median / d.samples_per_s.median.max(1e-12), None),
        (None, _) => (loader_vs_pre, find(LOADER_VS_PRELOADED)),
    };
    let mut rows = vec![
        row(
            "ours, data loader".into(),
            ours.ours_loader_samples_per_s,
            loader_vs,
            loader_pair,
            overhead(loader_vs_pre),
            Some(ours.peak_rss_bytes),
        ),
        row("ours, pre-loaded tensors".into(), ours.ours_preloaded_samples_per_s, pre_vs, find(PRELOADED), None, None),
    ];
    if let Some(d) = dataloader {
        let own = find(PYTORCH_LOADER).map_or(of_medians(d.samples_per_s.median), |p| p.median);
        rows.push(row(
            match ours.reference.workers {
                1 => "PyTorch eager, DataLoader (1 worker)".to_string(),
                n => format!("PyTorch eager, DataLoader ({n} workers)"),
            },
            d.samples_per_s,
            1.0,
            None,
            Some(100.0 * (1.0 - own)),
            d.peak_rss_bytes,
        ));
    }
    rows.push(row(
        "PyTorch eager (pre-loaded)".into(),
        reference.samples_per_s,
        1.0,
        None,
        None,
        reference.peak_rss_bytes,
    ));
    rows
}

/// Run the benchmark. `ssl` makes the command that runs our side (a cargo command prepared by the
/// caller with the LibTorch environment; one per model), `python` runs the references.
pub fn run(root: &Path, ssl: &dyn Fn() -> Command, python: &Path, args: &BenchArgs) -> Result<BenchReport> {
    if args.augment_on_device {
        ssl_records::bench::check_augment_on_device(args.modality.as_deref())
            .map_err(|e| anyhow::anyhow!("{e} (--modality)"))?;
    }
    let mut args = args.clone();
    if !args.out.is_absolute() {
        args.out = root.join(&args.out);
    }
    std::fs::create_dir_all(&args.out)?;
    let models: Vec<_> = MODELS.iter().filter(|m| args.modality.as_deref().is_none_or(|w| w == m.0)).collect();
    if models.is_empty() {
        bail!("--modality must be vision, text or speech");
    }
    let (mut runs, mut equivalences, mut all_rows) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
    let (mut peak, mut torch_version) = (0.0f64, String::new());
    for &&model in &models {
        let Measurement { ours, pytorch: reference, pytorch_dataloader, paired } =
            measure(root, ssl, python, &args, model)?;
        // Each `ssl bench` process measures its own peak (the rows' MFU); the table shows the best.
        peak = peak.max(ours.peak_flops);
        torch_version.clone_from(&reference.torch_version);
        equivalences.insert(model.2.to_owned(), equivalence(&ours, &reference));
        all_rows.extend(rows(&ours, &reference, pytorch_dataloader.as_ref(), &paired));
        runs.insert(model.2.to_owned(), ModelRuns { ours, pytorch: reference, pytorch_dataloader, paired });
    }
    let report = BenchReport {
        quick: args.quick,
        machine: machine(),
        versions: BenchVersions {
            rustc: cmd_output("rustc", &["--version"]),
            torch: torch_version,
            toolkit: env!("CARGO_PKG_VERSION").into(),
        },
        git_rev: ssl_records::run::git_revision(root).unwrap_or_default(),
        device: args.device.clone(),
        peak_flops: peak,
        peak_kind: if args.device == "cpu" { "fp32 matmul" } else { "bf16 matmul" }.into(),
        loss_tolerance: LOSS_TOLERANCE,
        equivalence: equivalences,
        models: runs.iter().map(|(k, v)| (k.clone(), v.ours.model.clone())).collect(),
        runs,
        rows: all_rows,
    };
    std::fs::write(args.out.join("bench.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("{}", table(&report));
    let failed: Vec<String> = report
        .equivalence
        .iter()
        .filter(|(_, e)| !e.equivalent)
        .map(|(name, e)| {
            format!(
                "{name}: parameters {} vs {}, first-step loss differs by {:.2e}",
                e.parameters_ours, e.parameters_pytorch, e.abs_diff
            )
        })
        .collect();
    if !failed.is_empty() {
        bail!("the PyTorch reference is not equivalent:\n  {}", failed.join("\n  "));
    }
    Ok(report)
}

/// `1234.5` as `1235`, `123456.0` as `123.5k`.
fn count(v: f64) -> String {
    if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The printed table.
pub fn table(report: &BenchReport) -> String {
    let mut s = format!(
        "machine: {} ({} cores); peak {} {:.1} GFLOP/s\n\n| model | config | samples/s median (min-max) | throughput | vs PyTorch | paired: interval (coverage, pairs) | loader overhead | MFU | peak RSS |\n|---|---|---|---|---|---|---|---|---|\n",
        report.machine.cpu,
        report.machine.cores,
        report.peak_kind,
        report.peak_flops / 1e9
    );
    for r in &report.rows {
        let sp = &r.samples_per_s;
        let overhead = r.loader_overhead_pct.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into());
        let mem = r.peak_rss_bytes.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0)).unwrap_or_else(|| "-".into());
        let units = r
            .units_per_s
            .map(|u| format!("{} {}/s", count(u), r.unit.as_deref().unwrap_or("")))
            .unwrap_or_else(|| "-".into());
        let paired = r
            .paired
            .map(|p| format!("{:.2}-{:.2}x ({:.0}%, {})", p.ci_low, p.ci_high, 100.0 * p.ci_level, p.pairs))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "| {} | {} | {} {} ({}-{}) | {units} | {:.2}x | {paired} | {overhead} | {:.1}% | {mem} |\n",
            r.model,
            r.config,
            count(sp.median),
            r.sample_unit,
            count(sp.min),
            count(sp.max),
            r.vs_pytorch,
            r.mfu_pct,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> OursRun {
        serde_json::from_value(serde_json::json!({
            "name": "text_tiny", "modality": "text", "preset": "tiny", "model": "BERT tiny", "details": {},
            "batch_size": 8, "samples_per_step": 8, "sample_unit": "sequences",
            "per_sample": {"unit": "tokens", "count": 128.0},
            "parameters": 958592, "first_step_loss": 9.0, "flops_per_sample": 1e9, "peak_flops": 2e11,
            "device": "Cpu", "threads": 2, "loader_threads": 1,
            "ours_loader_samples_per_s": {"median": 180.0, "min": 170.0, "max": 190.0, "n": 5},
            "ours_preloaded_samples_per_s": {"median": 200.0, "min": 195.0, "max": 205.0, "n": 5},
            "peak_rss_bytes": 1048576000u64, "windows": 5, "window_steps": 10,
            "reference": {"script": "bench/text_mlm.py", "args": [], "init": "i", "batch": "b"}
        }))
        .unwrap()
    }

    fn reference(loss: f64) -> ReferenceRun {
        serde_json::from_value(serde_json::json!({
            "parameters": 958592, "first_step_loss": loss, "fused_adamw": true, "threads": 2,
            "torch_version": "2.13.0", "samples_per_s": {"median": 250.0, "min": 240.0, "max": 260.0, "n": 5}
        }))
        .unwrap()
    }

    #[test]
    fn pairs_are_added_until_the_interval_is_tight_or_the_most_ran() {
        let pairing = Pairing { min: 6, max: 10, target_pct: 5.0 };
        let torch = [100.0; 10];
        // Steady ratios: done at the minimum, not before.
        let steady = [101.0, 99.0, 100.0, 102.0, 98.0, 100.0];
        assert!(!pairing.done(&PairedRatio::of(PRELOADED, &steady[..5], &torch)));
        assert!(pairing.done(&PairedRatio::of(PRELOADED, &steady, &torch)));
        // Noisy ratios: not done until the most pairs ran.
        let noisy = [80.0, 120.0, 90.0, 110.0, 70.0, 130.0, 85.0, 115.0, 75.0, 125.0];
        assert!(!pairing.done(&PairedRatio::of(PRELOADED, &noisy[..9], &torch)));
        assert!(pairing.done(&PairedRatio::of(PRELOADED, &noisy, &torch)));
    }

    #[test]
    fn rows_equivalence_and_table() {
        let (ours, reference) = (ours(), reference(9.00001));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs();
        let e = equivalence(&ours, &reference);
        assert!(e.equivalent && (e.abs_diff - 1e-5).abs() < 1e-9, "{e:?}");
        assert!(!equivalence(&ours, &self::reference(9.1)).equivalent);
        // Paired: the median of the pairs' ratios, and the loader overhead from the two medians.
        let loader = [160.0, 170.0, 180.0];
        let mut paired = vec![
            PairedRatio::of(LOADER_VS_PRELOADED, &loader, &[200.0, 200.0, 200.0]),
            PairedRatio::of(PRELOADED, &[200.0, 190.0, 210.0], &[200.0, 200.0, 200.0]),
        ];
        let with_pairs = rows(&ours, &reference, None, &paired);
        assert!(close(with_pairs[0].vs_pytorch, 0.85) && close(with_pairs[1].vs_pytorch, 1.0), "{with_pairs:?}");
        assert!(close(with_pairs[0].loader_overhead_pct.unwrap(), 15.0), "{:?}", with_pairs[0]);
        assert_eq!(with_pairs[1].paired.map(|p| (p.pairs, p.ci_low, p.ci_high)), Some((3, 0.95, 1.05)));
        assert_eq!((with_pairs[2].vs_pytorch, with_pairs[2].paired), (1.0, None));
        // With PyTorch's DataLoader: our loader row compares against it (end to end), and its
        // own row carries its loader overhead; ours is still measured against pre-loaded PyTorch.
        let mut dataloader = reference.clone();
        dataloader.samples_per_s.median = 100.0;
        paired.push(PairedRatio::of(END_TO_END, &loader, &[100.0, 100.0, 100.0]));
        paired.push(PairedRatio::of(PYTORCH_LOADER, &[100.0, 90.0, 110.0], &[200.0, 200.0, 200.0]));
        let four = rows(&ours, &reference, Some(&dataloader), &paired);
        assert_eq!(four.len(), 4);
        assert!(close(four[0].vs_pytorch, 1.7) && close(four[0].loader_overhead_pct.unwrap(), 15.0), "{:?}", four[0]);
        assert_eq!(four[2].config, "PyTorch eager, DataLoader (0 workers)");
        assert!(close(four[2].loader_overhead_pct.unwrap(), 50.0), "{:?}", four[2]);
        assert_eq!(four[3].config, "PyTorch eager (pre-loaded)");
        let rows = rows(&ours, &reference, None, &[]);
        assert_eq!(rows.len(), 3);
        assert!(close(rows[0].loader_overhead_pct.unwrap(), 10.0), "{:?}", rows[0]);
        assert!(close(rows[0].units_per_s.unwrap(), 180.0 * 128.0), "{:?}", rows[0]);
        assert!(close(rows[0].vs_pytorch, 0.72) && close(rows[0].mfu_pct, 90.0), "{:?}", rows[0]);
        assert_eq!((rows[1].peak_rss_bytes, rows[2].peak_rss_bytes), (None, None));
        let report = BenchReport {
            quick: true,
            machine: BenchMachine { cpu: "cpu".into(), cores: 2, gpu: String::new() },
            versions: BenchVersions { rustc: "r".into(), torch: "2.13.0".into(), toolkit: "0".into() },
            git_rev: String::new(),
            device: "cpu".into(),
            peak_flops: 2e11,
            peak_kind: "fp32 matmul".into(),
            loss_tolerance: LOSS_TOLERANCE,
            equivalence: BTreeMap::from([("text_tiny".into(), e)]),
            models: BTreeMap::from([("text_tiny".into(), "BERT tiny".into())]),
            runs: BTreeMap::from([(
                "text_tiny".into(),
                ModelRuns { ours, pytorch: reference, pytorch_dataloader: None, paired: Vec::new() },
            )]),
            rows,
        };
        let t = table(&report);
        assert!(t.starts_with("machine: cpu (2 cores); peak fp32 matmul 200.0 GFLOP/s\n"), "{t}");
        assert!(
            t.contains("| text_tiny | ours, data loader | 180 sequences (170-190) | 23.0k tokens/s | 0.72x | - | 10.0% | 90.0% | 1000 MiB |"),
            "{t}"
        );
        assert!(t.contains("| text_tiny | PyTorch eager (pre-loaded) | 250 sequences (240-260) | 32.0k tokens/s | 1.00x | - | - | 125.0% | - |"), "{t}");
    }
}
