//! Where a run's numbers go, written once for every modality: `metrics.jsonl` (the run's own
//! record, one line per logging step) and TensorBoard event files in the run directory, so that
//! `tensorboard --logdir runs/` shows every run and `wandb sync` can import one.
//!
//! Scalars: `train/loss`, `train/lr`, `train/grad_norm`, `train/samples_per_s` and `train/<name>`
//! for each of the objective's own metrics at every logging step; at the end of a run,
//! `eval/<eval>_<k>/pretrained`, `eval/<eval>_<k>/scratch` and `eval/raw_<k>` (step = labels per
//! class).
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use ssl_records::tensorboard::EventWriter;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

fn read_metric_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// Read `metrics.jsonl` of a run directory.
pub fn read_metrics(run_dir: &Path) -> Vec<MetricsLine> {
    read_metric_lines(&run_dir.join("metrics.jsonl")).iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The training-time sinks of one run.
pub struct MetricSinks {
    jsonl: fs::File,
    jsonl_path: PathBuf,
    events: EventWriter,
}

fn tb_error(dir: &Path, e: std::io::Error) -> CoreError {
    CoreError::io(dir.join("events.out.tfevents.*"), e)
}

impl MetricSinks {
    /// Open the sinks of `run_dir`. `metrics.jsonl` keeps only its lines up to `resumed_step` (a
    /// killed run may have logged past its last checkpoint); a new event file starts beside any
    /// earlier one (TensorBoard reads them all).
    pub fn open(run_dir: &Path, resumed_step: u64) -> Result<Self> {
        let jsonl_path = run_dir.join("metrics.jsonl");
        let kept: Vec<String> = fs::read_to_string(&jsonl_path)
            .map(|s| s.lines().map(str::to_owned).collect::<Vec<String>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|l: &String| {
                serde_json::from_str::<MetricsLine>(l).map(|m| m.step <= resumed_step).unwrap_or(false)
            })
            .collect();
        let mut jsonl = fs::File::create(&jsonl_path).map_err(|e| CoreError::io(&jsonl_path, e))?;
        for l in &kept {
            writeln!(jsonl, "{l}").map_err(|e| CoreError::io(&jsonl_path, e))?;
        }
        let events = EventWriter::create(run_dir).map_err(|e| tb_error(run_dir, e))?;
        Ok(Self { jsonl, jsonl_path, events })
    }

    /// Record one logging step in every sink.
    pub fn log(&mut self, line: &MetricsLine) -> Result<()> {
        let text = serde_json::to_string(line).map_err(|e| CoreError::json(&self.jsonl_path, e))?;
        writeln!(self.jsonl, "{text}").map_err(|e| CoreError::io(&self.jsonl_path, e))?;
        let step = line.step as i64;
        let fixed = [
            ("train/loss", line.loss),
            ("train/lr", line.lr),
            ("train/grad_norm", line.grad_norm),
            ("train/samples_per_s", line.samples_per_s),
        ];
        let extra = line.extra.iter().filter_map(|(k, v)| v.as_f64().map(|v| (format!("train/{k}"), v)));
        let dir = self.jsonl_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for (tag, v) in fixed.iter().map(|(t, v)| (t.to_string(), *v)).chain(extra) {
            self.events.scalar(&tag, step, v).map_err(|e| tb_error(&dir, e))?;
        }
        self.events.flush().map_err(|e| tb_error(&dir, e))
    }
}

/// Scalars `(tag, step, value)` in a new TensorBoard event file of `run_dir` (the evaluation
/// of a finished run).
pub(crate) fn log_scalars(run_dir: &Path, scalars: &[(String, i64, f64)]) -> Result<()> {
    let mut w = EventWriter::create(run_dir).map_err(|e| tb_error(run_dir, e))?;
    for (tag, step, value) in scalars {
        w.scalar(tag, *step, *value).map_err(|e| tb_error(run_dir, e))?;
    }
    w.flush().map_err(|e| tb_error(run_dir, e))
}
