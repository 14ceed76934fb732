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
    BenchMachine, BenchReport, BenchVersions, Equivalence, ModelRuns, OursRun, ReferenceRun, Row, Spread,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    /// Timed windows after the warm-up window (default 5, 2 with --quick).
    #[arg(long)]
    pub windows: Option<u64>,
    /// After timing, record N steps of ours and of the reference with their profilers and put
    /// them side by side, op by op, in `OUT/<name>_profile.md` (traces in `OUT/<name>_profile/`).
    #[arg(long, value_name = "N")]
    pub profile: Option<u64>,
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

/// Run our side of model `name`, then its reference; returns (ours, reference).
fn measure(
    root: &Path,
    ssl: &dyn Fn() -> Command,
    python: &Path,
    args: &BenchArgs,
    model: (&str, &str, &str),
) -> Result<(OursRun, ReferenceRun)> {
    let (modality, preset, name) = model;
    let out = &args.out;
    eprintln!("==> {name}: ours (data loader, then pre-loaded tensors)");
    let mut cmd = ssl();
    cmd.args(["bench", modality, "--preset", preset, "--device", &args.device, "--out"]).arg(out);
    if args.quick {
        cmd.arg("--quick");
    }
    if let Some(n) = args.window_steps {
        cmd.args(["--window-steps", &n.to_string()]);
    }
    if let Some(n) = args.windows {
        cmd.args(["--windows", &n.to_string()]);
    }
    if let Some(n) = args.profile {
        cmd.args(["--profile", &n.to_string()]);
    }
    let status = cmd.status().context("running ssl bench")?;
    if !status.success() {
        bail!("ssl bench {modality} --preset {preset} failed ({status})");
    }
    let file = out.join(format!("{name}_ours.json"));
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let ours: OursRun =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not what ssl bench writes", file.display()))?;
    let r = &ours.reference;
    eprintln!("==> {name}: PyTorch eager reference ({})", r.script);
    let mut py = Command::new(python);
    py.arg(root.join(&r.script));
    py.args(&r.args);
    py.arg("--init").arg(&r.init);
    py.arg("--batch").arg(&r.batch);
    py.args(["--window", &ours.window_steps.to_string(), "--windows", &ours.windows.to_string()]);
    py.args(["--threads", &ours.threads.to_string()]);
    if modality != "vision" {
        py.args(["--device", &args.device]);
    }
    let profiles = out.join(format!("{name}_profile"));
    if let Some(n) = args.profile {
        py.args(["--profile", &n.to_string(), "--profile-out"]).arg(profiles.join("pytorch-trace.json"));
    }
    let output = py.output().with_context(|| format!("running {}", r.script))?;
    if !output.status.success() {
        bail!("the PyTorch reference {} failed:\n{}", r.script, String::from_utf8_lossy(&output.stderr));
    }
    if let Some(n) = args.profile {
        compare_profiles(ssl, &profiles, n, &out.join(format!("{name}_profile.md")))?;
    }
    let reference = last_json_line(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("reading the result of {}", r.script))?;
    Ok((ours, reference))
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

/// The three table rows of one model. MFU divides by the matmul peak measured in our process.
fn rows(ours: &OursRun, reference: &ReferenceRun) -> Vec<Row> {
    let peak = ours.peak_flops;
    let torch_sps = reference.samples_per_s.median;
    let loader_sps = ours.ours_loader_samples_per_s.median;
    let pre_sps = ours.ours_preloaded_samples_per_s.median;
    let (unit, per_sample) = match &ours.per_sample {
        Some(p) => (Some(p.unit.clone()), p.count),
        None => (None, 0.0),
    };
    let row = |config: &str, spread: Spread, loader_overhead_pct: Option<f64>, peak_rss_bytes: Option<u64>| {
        let sps = spread.median;
        Row {
            model: ours.name.clone(),
            modality: ours.modality.clone(),
            preset: ours.preset.clone(),
            config: config.into(),
            sample_unit: ours.sample_unit.clone(),
            samples_per_s: spread,
            unit: unit.clone(),
            units_per_s: (per_sample > 0.0).then_some(sps * per_sample),
            vs_pytorch: if torch_sps > 0.0 { sps / torch_sps } else { 0.0 },
            loader_overhead_pct,
            mfu_pct: if peak > 0.0 { 100.0 * sps * ours.flops_per_sample / peak } else { 0.0 },
            peak_rss_bytes,
        }
    };
    let overhead = if pre_sps > 0.0 { Some(100.0 * (1.0 - loader_sps / pre_sps)) } else { None };
    vec![
        row("ours, data loader", ours.ours_loader_samples_per_s, overhead, Some(ours.peak_rss_bytes)),
        row("ours, pre-loaded tensors", ours.ours_preloaded_samples_per_s, None, None),
        row("PyTorch eager (pre-loaded)", reference.samples_per_s, None, reference.peak_rss_bytes),
    ]
}

/// Run the benchmark. `ssl` makes the command that runs our side (a cargo command prepared by the
/// caller with the LibTorch environment; one per model), `python` runs the references.
pub fn run(root: &Path, ssl: &dyn Fn() -> Command, python: &Path, args: &BenchArgs) -> Result<BenchReport> {
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
        let (ours, reference) = measure(root, ssl, python, &args, model)?;
        // Each `ssl bench` process measures its own peak (the rows' MFU); the table shows the best.
        peak = peak.max(ours.peak_flops);
        torch_version.clone_from(&reference.torch_version);
        equivalences.insert(model.2.to_owned(), equivalence(&ours, &reference));
        all_rows.extend(rows(&ours, &reference));
        runs.insert(model.2.to_owned(), ModelRuns { ours, pytorch: reference });
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
        "machine: {} ({} cores); peak {} {:.1} GFLOP/s\n\n| model | config | samples/s median (min-max) | throughput | vs PyTorch | loader overhead | MFU | peak RSS |\n|---|---|---|---|---|---|---|---|\n",
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
        s.push_str(&format!(
            "| {} | {} | {} {} ({}-{}) | {units} | {:.2}x | {overhead} | {:.1}% | {mem} |\n",
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
            "device": "Cpu", "threads": 2,
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
    fn rows_equivalence_and_table() {
        let (ours, reference) = (ours(), reference(9.00001));
        let e = equivalence(&ours, &reference);
        assert!(e.equivalent && (e.abs_diff - 1e-5).abs() < 1e-9, "{e:?}");
        assert!(!equivalence(&ours, &self::reference(9.1)).equivalent);
        let rows = rows(&ours, &reference);
        assert_eq!(rows.len(), 3);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs();
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
            runs: BTreeMap::from([("text_tiny".into(), ModelRuns { ours, pytorch: reference })]),
            rows,
        };
        let t = table(&report);
        assert!(t.starts_with("machine: cpu (2 cores); peak fp32 matmul 200.0 GFLOP/s\n"), "{t}");
        assert!(
            t.contains("| text_tiny | ours, data loader | 180 sequences (170-190) | 23.0k tokens/s | 0.72x | 10.0% | 90.0% | 1000 MiB |"),
            "{t}"
        );
        assert!(t.contains("| text_tiny | PyTorch eager (pre-loaded) | 250 sequences (240-260) | 32.0k tokens/s | 1.00x | - | 125.0% | - |"), "{t}");
    }
}
