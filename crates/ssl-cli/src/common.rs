//! What every `pretrain-*` command shares: the common flags, the run directory, and the end of
//! the run (report.json, report.md, plots and the printed summary).
use anyhow::{Context, Result};
use ssl_core::eval::protocol::{EvalKind, Evaluation, ProtocolConfig};
use ssl_core::eval::report::{Machine, Report};
use ssl_core::trainer::TrainSummary;
use std::path::{Path, PathBuf};
use tch::Device;

/// Flags accepted by every pretraining command.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// The run directory (default: runs/<modality>-<method>-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed for initialisation, data order, masking and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N. Asking for CUDA without a GPU is an error, never a silent fallback.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Labels per class for the evaluation, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels_per_class: Option<Vec<usize>>,
    /// Seeds (few-label subsets) per evaluation.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Evaluations to run: linear, knn, finetune (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub eval: Option<Vec<EvalKind>>,
    /// Pretraining steps (overrides the method's default).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Pretraining batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Write a (resumable) checkpoint every N steps, besides the last one (0: only the last).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Intra-op threads for LibTorch (default: all cores).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Skip pretraining and evaluate the encoder of an existing run (`--checkpoint RUN_DIR`).
    #[arg(long)]
    pub eval_only: bool,
    /// With --eval-only: the run directory or checkpoint to evaluate.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl CommonArgs {
    /// The device, checked.
    pub fn device(&self) -> Result<Device> {
        if let Some(t) = self.threads {
            tch::set_num_threads(t);
        }
        Ok(ssl_core::device::parse(&self.device)?)
    }

    /// The run directory, created.
    pub fn run_dir(&self, modality: &str, method: &str) -> Result<PathBuf> {
        let dir = match &self.out {
            Some(d) => d.clone(),
            None => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from("runs").join(format!("{modality}-{method}-{t}"))
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run directory {}", dir.display()))?;
        Ok(dir)
    }

    /// The protocol config: `base` (the modality's defaults) overridden by the flags.
    pub fn protocol(&self, mut base: ProtocolConfig) -> ProtocolConfig {
        if let Some(k) = &self.labels_per_class {
            base.labels_per_class = k.clone();
        }
        if let Some(s) = self.seeds {
            base.seeds = s;
        }
        if let Some(e) = &self.eval {
            base.evals = e.clone();
        }
        base.seed = self.seed;
        base
    }
}

/// A path under the workspace (the committed data): relative to the working directory if it exists
/// there, else relative to the source tree; the relative path if neither exists (so errors name it).
pub fn workspace_path(rel: impl AsRef<Path>) -> PathBuf {
    let here = rel.as_ref().to_path_buf();
    if here.exists() {
        return here;
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(&here);
    if ws.exists() {
        ws
    } else {
        here
    }
}

/// Write the effective configuration of a run as `config.json`.
pub fn write_config(run_dir: &Path, config: &serde_json::Value) -> Result<()> {
    let p = run_dir.join("config.json");
    std::fs::write(&p, serde_json::to_vec_pretty(config)?).with_context(|| format!("writing {}", p.display()))
}

/// Everything a finished run reports, beyond the evaluation itself.
pub struct RunInfo<'a> {
    pub modality: &'a str,
    pub method: &'a str,
    pub device: Device,
    pub summary: Option<&'a TrainSummary>,
    pub data: serde_json::Value,
    pub notes: Vec<String>,
}

/// Write report.json, report.md and the plots, and print the summary.
pub fn finish(run_dir: &Path, info: RunInfo<'_>, evaluation: Evaluation) -> Result<Report> {
    let pretraining = match info.summary {
        Some(s) => serde_json::json!({
            "steps": s.steps,
            "resumed_from": s.resumed_from,
            "final_loss": s.final_loss,
            "wall_secs": s.wall_secs,
            "cpu_secs": s.cpu_secs,
            "samples_per_s": s.samples_per_s,
            "nonfinite_steps": s.nonfinite_steps,
            "skipped_inputs": s.skipped_inputs,
        }),
        None => serde_json::json!({ "eval_only": true }),
    };
    let report = Report {
        schema_version: 1,
        modality: info.modality.into(),
        method: info.method.into(),
        machine: Machine::detect(info.device),
        pretraining,
        data: info.data,
        notes: info.notes,
        evaluation,
    };
    report.write(run_dir)?;
    let mut plots = Vec::new();
    match ssl_core::plots::accuracy_plot(&report, &run_dir.join("accuracy.png")) {
        Ok(()) => plots.push("accuracy.png"),
        Err(e) => eprintln!("warning: {e}"),
    }
    if info.summary.is_some() {
        match ssl_core::plots::loss_plot(run_dir, &run_dir.join("loss.png")) {
            Ok(()) => plots.push("loss.png"),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    println!("\n{}", report.summary_table());
    if let Some(s) = info.summary {
        println!(
            "pretraining: {} steps in {:.0} s wall, {:.0} CPU-s ({:.0} samples/s), final loss {:.4}",
            s.steps, s.wall_secs, s.cpu_secs, s.samples_per_s, s.final_loss
        );
    }
    println!(
        "run directory: {} (config.json, metrics.jsonl, checkpoints/, report.json, report.md, {})",
        run_dir.display(),
        plots.join(", ")
    );
    Ok(report)
}

/// Names of evaluations, for notes.
#[allow(dead_code)]
pub fn eval_names(evals: &[EvalKind]) -> String {
    evals.iter().map(|e| e.name()).collect::<Vec<_>>().join(",")
}
