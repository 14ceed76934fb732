//! `cargo xtask bench`: our training throughput against an equivalent PyTorch eager script and
//! against the machine's measured matmul peak, for every modality's reference models. Speed
//! claims in the docs come from this command.
//!
//! For each model, `ssl bench` measures our side and writes `<name>_ours.json`, the initial
//! weights and a fixed batch; the reference script it names (under `bench/`) loads those, and the
//! two are equivalent when their parameter counts match and their first-step losses agree within
//! [`LOSS_TOLERANCE`].
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
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

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "gpu": cmd_output("nvidia-smi", &["-L"]),
    })
}

fn last_json_line(text: &str) -> Result<Value> {
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).context("no JSON line in the output")?;
    Ok(serde_json::from_str(line)?)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Run our side of model `name`, then its reference; returns (ours, reference).
fn measure(
    root: &Path,
    ssl: &dyn Fn() -> Command,
    python: &Path,
    args: &BenchArgs,
    model: (&str, &str, &str),
) -> Result<(Value, Value)> {
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
    let status = cmd.status().context("running ssl bench")?;
    if !status.success() {
        bail!("ssl bench {modality} --preset {preset} failed ({status})");
    }
    let ours: Value = serde_json::from_slice(&std::fs::read(out.join(format!("{name}_ours.json")))?)?;
    let r = &ours["reference"];
    let script = r["script"].as_str().context("ssl bench names no reference script")?;
    eprintln!("==> {name}: PyTorch eager reference ({script})");
    let mut py = Command::new(python);
    py.arg(root.join(script));
    py.args(r["args"].as_array().into_iter().flatten().filter_map(Value::as_str));
    py.arg("--init").arg(r["init"].as_str().unwrap_or_default());
    py.arg("--batch").arg(r["batch"].as_str().unwrap_or_default());
    py.args(["--window", &ours["window_steps"].to_string(), "--windows", &ours["windows"].to_string()]);
    py.args(["--threads", &ours["threads"].to_string()]);
    if modality != "vision" {
        py.args(["--device", &args.device]);
    }
    let output = py.output().with_context(|| format!("running {script}"))?;
    if !output.status.success() {
        bail!("the PyTorch reference {script} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok((ours, last_json_line(&String::from_utf8_lossy(&output.stdout))?))
}

/// Whether the reference is equivalent, with the numbers that say so.
fn equivalence(ours: &Value, reference: &Value) -> Value {
    let diff = (f(&ours["first_step_loss"]) - f(&reference["first_step_loss"])).abs();
    let same_params = ours["parameters"].as_i64().is_some() && ours["parameters"] == reference["parameters"];
    json!({
        "parameters_ours": ours["parameters"],
        "parameters_pytorch": reference["parameters"],
        "first_step_loss_ours": ours["first_step_loss"],
        "first_step_loss_pytorch": reference["first_step_loss"],
        "abs_diff": diff,
        "equivalent": same_params && diff < LOSS_TOLERANCE,
    })
}

/// The three table rows of one model. MFU divides by the matmul peak measured in our process.
fn rows(ours: &Value, reference: &Value) -> Vec<Value> {
    let peak = f(&ours["peak_flops"]);
    let flops = f(&ours["flops_per_sample"]);
    let torch_sps = f(&reference["samples_per_s"]["median"]);
    let loader_sps = f(&ours["ours_loader_samples_per_s"]["median"]);
    let pre_sps = f(&ours["ours_preloaded_samples_per_s"]["median"]);
    let (unit, per_sample) = match ours["per_sample"].as_object() {
        Some(p) => (p["unit"].clone(), f(&p["count"])),
        None => (Value::Null, 0.0),
    };
    let row = |config: &str, spread: &Value, loader_overhead: Option<f64>, mem: &Value| {
        let sps = f(&spread["median"]);
        json!({
            "model": ours["name"],
            "modality": ours["modality"],
            "preset": ours["preset"],
            "config": config,
            "sample_unit": ours["sample_unit"],
            "samples_per_s": spread,
            "unit": unit,
            "units_per_s": if per_sample > 0.0 { Value::from(sps * per_sample) } else { Value::Null },
            "vs_pytorch": if torch_sps > 0.0 { sps / torch_sps } else { 0.0 },
            "loader_overhead_pct": loader_overhead,
            "mfu_pct": if peak > 0.0 { 100.0 * sps * flops / peak } else { 0.0 },
            "peak_rss_bytes": mem,
        })
    };
    let overhead = if pre_sps > 0.0 { Some(100.0 * (1.0 - loader_sps / pre_sps)) } else { None };
    vec![
        row("ours, data loader", &ours["ours_loader_samples_per_s"], overhead, &ours["peak_rss_bytes"]),
        row("ours, pre-loaded tensors", &ours["ours_preloaded_samples_per_s"], None, &Value::Null),
        row("PyTorch eager (pre-loaded)", &reference["samples_per_s"], None, &reference["peak_rss_bytes"]),
    ]
}

/// Run the benchmark. `ssl` makes the command that runs our side (a cargo command prepared by the
/// caller with the LibTorch environment; one per model), `python` runs the references.
pub fn run(root: &Path, ssl: &dyn Fn() -> Command, python: &Path, args: &BenchArgs) -> Result<Value> {
    let mut args = args.clone();
    if !args.out.is_absolute() {
        args.out = root.join(&args.out);
    }
    std::fs::create_dir_all(&args.out)?;
    let models: Vec<_> = MODELS.iter().filter(|m| args.modality.as_deref().is_none_or(|w| w == m.0)).collect();
    if models.is_empty() {
        bail!("--modality must be vision, text or speech");
    }
    let (mut runs, mut equivalences, mut all_rows) = (serde_json::Map::new(), serde_json::Map::new(), Vec::new());
    let (mut peak, mut torch_version) = (0.0f64, Value::Null);
    for &&model in &models {
        let (ours, reference) = measure(root, ssl, python, &args, model)?;
        // Each `ssl bench` process measures its own peak (the rows' MFU); the table shows the best.
        peak = peak.max(f(&ours["peak_flops"]));
        torch_version = reference["torch_version"].clone();
        equivalences.insert(model.2.into(), equivalence(&ours, &reference));
        all_rows.extend(rows(&ours, &reference));
        runs.insert(model.2.into(), json!({ "ours": ours, "pytorch": reference }));
    }
    let report = json!({
        "quick": args.quick,
        "machine": machine(),
        "versions": {
            "rustc": cmd_output("rustc", &["--version"]),
            "torch": torch_version,
            "toolkit": env!("CARGO_PKG_VERSION"),
        },
        "git_rev": cmd_output("git", &["-C", &root.display().to_string(), "rev-parse", "HEAD"]),
        "device": args.device,
        "peak_flops": peak,
        "peak_kind": if args.device == "cpu" { "fp32 matmul" } else { "bf16 matmul" },
        "loss_tolerance": LOSS_TOLERANCE,
        "equivalence": equivalences,
        "models": runs.iter().map(|(k, v)| (k.clone(), v["ours"]["model"].clone())).collect::<serde_json::Map<_, _>>(),
        "runs": runs,
        "rows": all_rows,
    });
    std::fs::write(args.out.join("bench.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("{}", table(&report));
    let failed: Vec<String> = equivalences
        .iter()
        .filter(|(_, e)| e["equivalent"] != true)
        .map(|(name, e)| {
            format!(
                "{name}: parameters {} vs {}, first-step loss differs by {:.2e}",
                e["parameters_ours"],
                e["parameters_pytorch"],
                f(&e["abs_diff"])
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
pub fn table(report: &Value) -> String {
    let mut s = format!(
        "machine: {} ({} cores); peak {} {:.1} GFLOP/s\n\n| model | config | samples/s median (min-max) | throughput | vs PyTorch | loader overhead | MFU | peak RSS |\n|---|---|---|---|---|---|---|---|\n",
        report["machine"]["cpu"].as_str().unwrap_or("?"),
        report["machine"]["cores"],
        report["peak_kind"].as_str().unwrap_or(""),
        f(&report["peak_flops"]) / 1e9
    );
    for r in report["rows"].as_array().into_iter().flatten() {
        let sp = &r["samples_per_s"];
        let overhead = r["loader_overhead_pct"].as_f64().map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into());
        let mem = r["peak_rss_bytes"]
            .as_u64()
            .map(|b| format!("{:.0} MiB", b as f64 / 1048576.0))
            .unwrap_or_else(|| "-".into());
        let units = r["units_per_s"]
            .as_f64()
            .map(|u| format!("{} {}/s", count(u), r["unit"].as_str().unwrap_or("")))
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "| {} | {} | {} {} ({}-{}) | {units} | {:.2}x | {overhead} | {:.1}% | {mem} |\n",
            r["model"].as_str().unwrap_or(""),
            r["config"].as_str().unwrap_or(""),
            count(f(&sp["median"])),
            r["sample_unit"].as_str().unwrap_or(""),
            count(f(&sp["min"])),
            count(f(&sp["max"])),
            f(&r["vs_pytorch"]),
            f(&r["mfu_pct"]),
        ));
    }
    s
}
