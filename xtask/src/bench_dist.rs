//! `cargo xtask bench --nproc-per-node N`: what data-parallel training costs on this machine.
//!
//! 1. All-reduce: our c10d layer (`ssl bench allreduce`) against Python's `torch.distributed`
//!    (`bench/allreduce.py`) on the same sizes, both Gloo on 127.0.0.1 under torchrun, in
//!    alternating rounds (ours, PyTorch, ours, PyTorch) so machine drift hits both alike.
//! 2. Scaling: the text tiny preset pretrained for the same steps and global batch by 1 process
//!    with N intra-op threads and by N processes with 1 thread each; samples/s, the efficiency
//!    (N processes / 1 process), and the per-step all-reduce time the trainer logs.
//! 3. Overlap: the N-process run with the gradient buckets sent from backward's hooks (the
//!    default), only after backward (`--no-dist-overlap`), and from the hooks with 1 MiB
//!    buckets, in alternating rounds; samples/s and the all-reduce time backward did not hide.
//!
//! Writes `dist_bench.json` under `--out` and prints a table.
use anyhow::{bail, Context, Result};
use ssl_records::bench::AllReduceRun;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rounds of the alternating all-reduce comparison.
const ROUNDS: usize = 2;

fn torchrun(python: &Path, nproc: usize, out: &Path) -> Command {
    let mut c = Command::new(python);
    c.args(["-m", "torch.distributed.run", "--nproc-per-node", &nproc.to_string()])
        .env("TMPDIR", out)
        .env("OMP_NUM_THREADS", "1");
    c
}

fn json_lines(mut c: Command, what: &str) -> Result<Vec<AllReduceRun>> {
    let out = c.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("{what} printed {l}")))
        .collect()
}

/// How a scaling run is laid out: processes, intra-op threads each, per-process batch.
struct Layout {
    nproc: usize,
    threads: usize,
    batch: usize,
}

/// The gradient-bucket settings compared in the overlap rounds: name and extra flags.
const OVERLAP_CONFIGS: [(&str, &[&str]); 3] = [
    ("from backward's hooks, 25 MiB buckets (default)", &[]),
    ("after backward, 25 MiB buckets", &["--no-dist-overlap"]),
    ("from backward's hooks, 1 MiB buckets", &["--dist-bucket-mb", "1"]),
];

/// Pretraining throughput of one text run: (samples/s, mean all-reduce ms per step).
fn text_run(
    ssl: &Path,
    root: &Path,
    out: &Path,
    layout: Layout,
    steps: u64,
    tokenizer: Option<&Path>,
    extra: &[&str],
) -> Result<(f64, Option<f64>)> {
    let Layout { nproc, threads, batch } = layout;
    let mut c = Command::new(ssl);
    c.current_dir(root).args(["pretrain-text", "--steps", &steps.to_string(), "--batch-size", &batch.to_string()]);
    c.args(["--threads", &threads.to_string(), "--log-every", "10", "--seed", "0", "--out"]).arg(out);
    c.args(["--eval", "linear", "--labels-per-class", "2", "--seeds", "1"]);
    if nproc > 1 {
        c.args(["--nproc-per-node", &nproc.to_string()]);
    }
    if let Some(t) = tokenizer {
        c.arg("--tokenizer").arg(t);
    }
    c.args(extra);
    let o = c.output().context("starting ssl pretrain-text")?;
    if !o.status.success() {
        bail!("ssl pretrain-text with {nproc} processes failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json"))?)?;
    let sps =
        report.pointer("/pretraining/samples_per_s").and_then(|v| v.as_f64()).context("no samples/s in report.json")?;
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap_or_default();
    let comm: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .skip(1) // the first window holds the warm-up
        .filter_map(|v| v.get("allreduce_ms").and_then(|x| x.as_f64()))
        .collect();
    let comm = (!comm.is_empty()).then(|| comm.iter().sum::<f64>() / comm.len() as f64);
    Ok((sps, comm))
}

/// Run the distributed benchmark with `nproc` local processes.
pub fn run(root: &Path, ssl: &Path, python: &Path, nproc: usize, out: &Path, quick: bool) -> Result<serde_json::Value> {
    if nproc < 2 {
        bail!("--nproc-per-node must be at least 2 for the distributed benchmark");
    }
    let out: PathBuf = if out.is_absolute() { out.to_path_buf() } else { root.join(out) };
    std::fs::create_dir_all(&out)?;
    let sizes = if quick { "100000" } else { "1000000,10000000" };
    let iters = if quick { "3" } else { "20" };
    let mut ours = Vec::new();
    let mut pytorch = Vec::new();
    for round in 0..ROUNDS {
        eprintln!("==> all-reduce, round {}/{ROUNDS}: ours, then torch.distributed", round + 1);
        let mut c = torchrun(python, nproc, &out);
        c.arg("--no-python")
            .arg(ssl)
            .args(["bench", "allreduce", "--sizes", sizes, "--iters", iters, "--out"])
            .arg(&out);
        ours.extend(json_lines(c, "ssl bench allreduce")?);
        let mut c = torchrun(python, nproc, &out);
        c.arg(root.join("bench/allreduce.py")).args(["--sizes", sizes, "--iters", iters]);
        pytorch.extend(json_lines(c, "bench/allreduce.py")?);
    }
    let steps: u64 = if quick { 10 } else { 100 };
    let global = 16usize;
    eprintln!("==> scaling: text tiny, {steps} steps of {global} sequences: 1 process x {nproc} threads, then {nproc} processes x 1 thread");
    let one_dir = out.join("scale-1");
    let _ = std::fs::remove_dir_all(&one_dir);
    let (one, _) = text_run(ssl, root, &one_dir, Layout { nproc: 1, threads: nproc, batch: global }, steps, None, &[])?;
    let many_dir = out.join(format!("scale-{nproc}"));
    let _ = std::fs::remove_dir_all(&many_dir);
    let tok = one_dir.join("tokenizer.json");
    let many_layout = || Layout { nproc, threads: 1, batch: global / nproc };
    let (many, comm) = text_run(ssl, root, &many_dir, many_layout(), steps, Some(&tok), &[])?;
    // Overlap: each bucket setting once per round, the rounds one after the other.
    let mut overlap: Vec<(usize, &str, f64, Option<f64>)> = Vec::new();
    for round in 0..ROUNDS {
        for (i, (name, flags)) in OVERLAP_CONFIGS.iter().enumerate() {
            eprintln!("==> overlap, round {}/{ROUNDS}: {nproc} processes, gradients sent {name}", round + 1);
            let dir = out.join(format!("overlap-{i}"));
            let _ = std::fs::remove_dir_all(&dir);
            let (sps, comm) = text_run(ssl, root, &dir, many_layout(), steps, Some(&tok), flags)?;
            overlap.push((round + 1, name, sps, comm));
        }
    }

    if ours.len() != pytorch.len() || ours.iter().zip(&pytorch).any(|(o, p)| o.elements != p.elements) {
        bail!("ours and torch.distributed measured different sizes: {} against {} rows", ours.len(), pytorch.len());
    }
    let per_round = ours.len() / ROUNDS.max(1);
    let mut table = String::from(
        "| round | elements | ours ms median (min-max) | torch.distributed ms median (min-max) | ours GB/s | torch GB/s | ours / torch time |\n|---|---|---|---|---|---|---|\n",
    );
    // Paired by round and size: the rounds alternate ours, PyTorch, ours, PyTorch.
    for (i, (o, p)) in ours.iter().zip(&pytorch).enumerate() {
        table.push_str(&format!(
            "| {} | {} | {:.2} ({:.2}-{:.2}) | {:.2} ({:.2}-{:.2}) | {:.2} | {:.2} | {:.2} |\n",
            i / per_round.max(1) + 1,
            o.elements,
            o.ms.median,
            o.ms.min,
            o.ms.max,
            p.ms.median,
            p.ms.min,
            p.ms.max,
            o.gb_per_s(),
            p.gb_per_s(),
            o.ms.median / p.ms.median.max(1e-12)
        ));
    }
    let efficiency = many / one.max(1e-9);
    table.push_str(&format!(
        "\nscaling, text tiny, global batch {global}: 1 process x {nproc} threads {one:.1} samples/s; {nproc} processes x 1 thread {many:.1} samples/s; efficiency {efficiency:.2}; all-reduce {} ms per step\n",
        comm.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into())
    ));
    table.push_str(&format!(
        "\noverlap, text tiny, {nproc} processes x 1 thread:\n\n| round | gradients sent | samples/s | all-reduce ms per step not hidden |\n|---|---|---|---|\n"
    ));
    for (round, name, sps, comm) in &overlap {
        let comm = comm.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into());
        table.push_str(&format!("| {round} | {name} | {sps:.1} | {comm} |\n"));
    }
    println!("{table}");
    let overlap: Vec<serde_json::Value> = overlap
        .iter()
        .map(|(round, name, sps, comm)| {
            serde_json::json!({ "round": round, "gradients_sent": name, "samples_per_s": sps, "allreduce_ms_per_step": comm })
        })
        .collect();
    let record = serde_json::json!({
        "machine": { "cpu": ssl_records::run::cpu_model(), "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) },
        "git_rev": ssl_records::run::git_revision(root).unwrap_or_default(),
        "nproc": nproc,
        "quick": quick,
        "allreduce": { "ours": ours, "pytorch": pytorch },
        "scaling": { "model": "text tiny", "steps": steps, "global_batch": global, "one_process_samples_per_s": one,
                     "n_processes_samples_per_s": many, "efficiency": efficiency, "allreduce_ms_per_step": comm },
        "overlap": overlap,
        "table": table,
    });
    std::fs::write(out.join("dist_bench.json"), serde_json::to_vec_pretty(&record)?)?;
    Ok(record)
}
