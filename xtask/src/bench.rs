//! `cargo xtask bench`: our training throughput against an equivalent PyTorch eager script and
//! against the machine's measured matmul peak. Speed claims in the docs come from this command.
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A short run for smoke tests (no meaningful numbers).
    #[arg(long)]
    pub quick: bool,
    /// Where bench.json and the artefacts go.
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
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

/// Run the benchmark. `ssl` runs our side (a cargo command prepared by the caller with the
/// LibTorch environment), `python` the reference.
pub fn run(root: &Path, mut ssl: Command, python: &Path, args: &BenchArgs) -> Result<Value> {
    let out = if args.out.is_absolute() { args.out.clone() } else { root.join(&args.out) };
    std::fs::create_dir_all(&out)?;
    ssl.args(["bench", "vision", "--device", &args.device, "--out"]).arg(&out);
    if args.quick {
        ssl.arg("--quick");
    }
    eprintln!("==> vision: ours (data loader, then pre-loaded tensors)");
    let status = ssl.status().context("running ssl bench")?;
    if !status.success() {
        bail!("ssl bench failed ({status})");
    }
    let ours: Value = serde_json::from_slice(&std::fs::read(out.join("vision_ours.json"))?)?;
    eprintln!("==> vision: PyTorch eager reference");
    let blocks: Vec<String> =
        ours["blocks"].as_array().map(|b| b.iter().map(|v| v.to_string()).collect()).unwrap_or_default();
    let py = Command::new(python)
        .arg(root.join("bench/vision_rotation.py"))
        .arg("--init")
        .arg(out.join("vision_init.safetensors"))
        .arg("--batch")
        .arg(out.join("vision_batch.safetensors"))
        .args(["--width", &ours["width"].to_string(), "--blocks", &blocks.join(",")])
        .args(["--window", &ours["window_steps"].to_string(), "--windows", &ours["windows"].to_string()])
        .args(["--threads", &ours["threads"].to_string()])
        .output()
        .context("running bench/vision_rotation.py")?;
    if !py.status.success() {
        bail!("the PyTorch reference failed:\n{}", String::from_utf8_lossy(&py.stderr));
    }
    let reference = last_json_line(&String::from_utf8_lossy(&py.stdout))?;

    let loss_diff = (f(&ours["first_step_loss"]) - f(&reference["first_step_loss"])).abs();
    let same_params = ours["parameters"] == reference["parameters"];
    let equivalent = same_params && loss_diff < 1e-4;
    let flops = f(&ours["flops_per_sample"]);
    let peak = f(&ours["peak_flops"]);
    let torch_sps = f(&reference["samples_per_s"]["median"]);
    let loader_sps = f(&ours["ours_loader_samples_per_s"]["median"]);
    let pre_sps = f(&ours["ours_preloaded_samples_per_s"]["median"]);
    let row = |config: &str, spread: &Value, loader_overhead: Option<f64>, mem: Option<u64>| {
        let sps = f(&spread["median"]);
        json!({
            "modality": "vision",
            "config": config,
            "samples_per_s": spread,
            "vs_pytorch": if torch_sps > 0.0 { sps / torch_sps } else { 0.0 },
            "loader_overhead_pct": loader_overhead,
            "mfu_pct": if peak > 0.0 { 100.0 * sps * flops / peak } else { 0.0 },
            "peak_rss_bytes": mem,
        })
    };
    let overhead = if pre_sps > 0.0 { Some(100.0 * (1.0 - loader_sps / pre_sps)) } else { None };
    let rows = vec![
        row("ours, data loader", &ours["ours_loader_samples_per_s"], overhead, ours["peak_rss_bytes"].as_u64()),
        row("ours, pre-loaded tensors", &ours["ours_preloaded_samples_per_s"], None, None),
        row("PyTorch eager (pre-loaded)", &reference["samples_per_s"], None, None),
    ];
    let git_rev = cmd_output("git", &["-C", &root.display().to_string(), "rev-parse", "HEAD"]);
    let report = json!({
        "quick": args.quick,
        "machine": machine(),
        "versions": {
            "rustc": cmd_output("rustc", &["--version"]),
            "torch": reference["torch_version"],
            "toolkit": env!("CARGO_PKG_VERSION"),
        },
        "git_rev": git_rev,
        "peak_flops": peak,
        "peak_kind": if args.device == "cpu" { "fp32 matmul" } else { "bf16 matmul" },
        "equivalence": {
            "vision": {
                "parameters_ours": ours["parameters"],
                "parameters_pytorch": reference["parameters"],
                "first_step_loss_ours": ours["first_step_loss"],
                "first_step_loss_pytorch": reference["first_step_loss"],
                "abs_diff": loss_diff,
                "equivalent": equivalent,
            }
        },
        "models": { "vision": ours["model"] },
        "rows": rows,
        "not_measured": ["text (tiny, mini presets)", "speech (tiny preset)"],
    });
    std::fs::write(out.join("bench.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("{}", table(&report));
    if !equivalent {
        bail!(
            "the PyTorch reference is not equivalent: parameters {} vs {}, first-step loss differs by {loss_diff:.2e}",
            ours["parameters"],
            reference["parameters"]
        );
    }
    Ok(report)
}

/// The printed table.
pub fn table(report: &Value) -> String {
    let mut s = format!(
        "machine: {} ({} cores); peak {} {:.1} GFLOP/s\n\n| modality | config | samples/s median (min-max) | vs PyTorch | loader overhead | MFU | peak RSS |\n|---|---|---|---|---|---|---|\n",
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
        s.push_str(&format!(
            "| {} | {} | {:.0} ({:.0}-{:.0}) | {:.2}x | {overhead} | {:.1}% | {mem} |\n",
            r["modality"].as_str().unwrap_or(""),
            r["config"].as_str().unwrap_or(""),
            f(&sp["median"]),
            f(&sp["min"]),
            f(&sp["max"]),
            f(&r["vs_pytorch"]),
            f(&r["mfu_pct"]),
        ));
    }
    s
}
