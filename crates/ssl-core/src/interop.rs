//! What every export to another ecosystem shares: the formats, a finished run's weights and
//! configuration read back, tensor renaming that fails on any name it does not know, and the
//! files of an export directory.
//!
//! The modality crates say how their names map (`ssl_speech::interop::export`, `ssl_vision::interop::export`,
//! `ssl_text::interop::export`); `ssl export` and `--export` reach them through
//! [`crate::run::Recipe::export`].
//!
//! ```
//! use ssl_core::interop::{ExportFormat, Renamer};
//! use tch::Tensor;
//! assert_eq!("timm".parse::<ExportFormat>().unwrap(), ExportFormat::Timm);
//! let weights = vec![("encoder.norm.weight".to_string(), Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu)))];
//! let mut r = Renamer::new(&weights, "encoder.");
//! r.rename("norm.weight", "norm.weight").unwrap();
//! assert!(r.rename("missing", "x").is_err());
//! let out = r.finish().unwrap();
//! assert_eq!(out[0].0, "norm.weight");
//! ```
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use ssl_records::run::RunRecord;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// What `ssl export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A HuggingFace `transformers` directory (config.json, model.safetensors, preprocessor or
    /// tokenizer files).
    Hf,
    /// A `timm` model: model.safetensors with timm's names and a config.json of its arguments.
    Timm,
    /// model.safetensors with our own names, plus a self-contained PyTorch module that rebuilds
    /// the network.
    Safetensors,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Hf => "hf",
            ExportFormat::Timm => "timm",
            ExportFormat::Safetensors => "safetensors",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hf" | "huggingface" => Ok(ExportFormat::Hf),
            "timm" => Ok(ExportFormat::Timm),
            "safetensors" => Ok(ExportFormat::Safetensors),
            o => Err(CoreError::InvalidArgument(format!(
                "unknown export format `{o}` (expected hf, timm or safetensors)"
            ))),
        }
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The modality of the run in `run_dir` (or of the run of a checkpoint inside it), from its
/// `config.json`.
pub fn run_modality(run_dir: &Path) -> Result<String> {
    let run = run_dir_of(run_dir)?;
    Ok(RunRecord::read(&run).map_err(|e| CoreError::InvalidArgument(e.to_string()))?.modality)
}

/// The run directory of `path` (itself, or the run of one of its checkpoints).
pub fn run_dir_of(path: &Path) -> Result<PathBuf> {
    crate::checkpoint::run_of(path).map_err(|_| {
        CoreError::InvalidArgument(format!(
            "{}: not a run directory (no config.json in it or two levels above it)",
            path.display()
        ))
    })
}

/// A finished run read back for export: its `config.json` and the weights of its newest
/// checkpoint (names as in checkpoints, on the CPU, in float32).
pub struct RunWeights {
    pub run_dir: PathBuf,
    pub record: RunRecord,
    pub weights: Vec<(String, Tensor)>,
}

impl RunWeights {
    /// Read the run in `run_dir` (or the run of a checkpoint inside it), which must be of
    /// `modality`.
    pub fn read(run_dir: &Path, modality: &str) -> Result<Self> {
        let run = run_dir_of(run_dir)?;
        let record = RunRecord::read_for(&run, modality).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
        let ckpt = crate::checkpoint::resolve(run_dir)?;
        let file = ckpt.join("model.safetensors");
        let weights = Tensor::read_safetensors(&file)
            .map_err(|e| CoreError::InvalidArgument(format!("{}: {e}", file.display())))?
            .into_iter()
            .map(|(n, t)| (n, t.to_device(Device::Cpu).to_kind(Kind::Float)))
            .collect();
        Ok(Self { run_dir: run, record, weights })
    }

    /// The run's typed configuration (`config.resolved` in its `config.json`).
    pub fn resolved<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        resolved_of(&self.run_dir, &self.record)
    }
}

/// The typed configuration (`config.resolved`) of the finished run in `path` (or of the run of a
/// checkpoint inside it), which must be of `modality`; its weights are not read.
pub fn run_config<T: serde::de::DeserializeOwned>(path: &Path, modality: &str) -> Result<T> {
    let run = run_dir_of(path)?;
    let record = RunRecord::read_for(&run, modality).map_err(|e| CoreError::InvalidArgument(e.to_string()))?;
    resolved_of(&run, &record)
}

fn resolved_of<T: serde::de::DeserializeOwned>(run_dir: &Path, record: &RunRecord) -> Result<T> {
    let v = record.config.get("resolved").cloned().unwrap_or_default();
    serde_json::from_value(v).map_err(|e| {
        CoreError::InvalidArgument(format!(
            "{}: the {} configuration in config.json does not parse: {e}",
            run_dir.display(),
            record.modality
        ))
    })
}

/// Renames tensors from our names to another library's, one by one, and fails on a name it does
/// not find, a shape it does not expect, or (in [`Renamer::finish`]) a tensor left unmapped, so
/// an export can never silently drop or invent a weight.
pub struct Renamer<'a> {
    source: &'a [(String, Tensor)],
    prefix: String,
    used: BTreeSet<String>,
    out: Vec<(String, Tensor)>,
}

impl<'a> Renamer<'a> {
    /// Rename the tensors of `source` whose names start with `prefix` (the prefix is left out
    /// of the names given to [`Renamer::rename`]).
    pub fn new(source: &'a [(String, Tensor)], prefix: &str) -> Self {
        Self { source, prefix: prefix.to_string(), used: BTreeSet::new(), out: Vec::new() }
    }

    /// Our tensor `ours` (without the prefix).
    pub fn get(&mut self, ours: &str) -> Result<Tensor> {
        let full = format!("{}{ours}", self.prefix);
        let t = self
            .source
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, t)| t.shallow_clone())
            .ok_or_else(|| CoreError::CheckpointMismatch(format!("tensor `{full}` is missing from the weights")))?;
        self.used.insert(full);
        Ok(t)
    }

    /// Write `tensor` under `theirs`.
    pub fn put(&mut self, theirs: impl Into<String>, tensor: Tensor) {
        self.out.push((theirs.into(), tensor));
    }

    /// Our `ours` becomes their `theirs`, unchanged.
    pub fn rename(&mut self, ours: &str, theirs: impl Into<String>) -> Result<()> {
        let t = self.get(ours)?;
        self.put(theirs, t);
        Ok(())
    }

    /// Every tensor under the prefix mapped: the renamed tensors, sorted by name, contiguous.
    pub fn finish(self) -> Result<Vec<(String, Tensor)>> {
        let left: Vec<&String> = self
            .source
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(&self.prefix) && !self.used.contains(*n))
            .collect();
        if let Some(first) = left.first() {
            return Err(CoreError::CheckpointMismatch(format!(
                "tensor `{first}` has no counterpart in the conversion ({} unmapped in all)",
                left.len()
            )));
        }
        let mut out: Vec<(String, Tensor)> = self.out.into_iter().map(|(n, t)| (n, t.contiguous())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Split a weight into weight normalisation's magnitude and direction: `g` is the l2 norm of `w`
/// over every dimension but `dim` (kept with size 1), `v` is `w` itself, so `g * v / ||v|| = w`.
pub fn weight_norm_parts(w: &Tensor, dim: i64) -> (Tensor, Tensor) {
    let dims: Vec<i64> = (0..w.dim() as i64).filter(|&d| d != dim).collect();
    let g = w.square().sum_dim_intlist(&dims[..], true, Kind::Float).sqrt();
    (g, w.shallow_clone())
}

/// Create `dir` (with its parents). An existing non-empty directory is refused, so an export
/// never mixes with other files.
pub fn create_export_dir(dir: &Path) -> Result<()> {
    if dir.is_file() {
        return Err(CoreError::InvalidArgument(format!("--to {}: a file, not a folder", dir.display())));
    }
    if dir.is_dir() && std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))?.next().is_some() {
        return Err(CoreError::InvalidArgument(format!(
            "--to {}: the folder is not empty; export into a new or empty folder",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))
}

/// Write `tensors` as `dir/name` (safetensors, float32, CPU, contiguous).
pub fn write_tensors(dir: &Path, name: &str, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = dir.join(name);
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, &path).map_err(|e| CoreError::io(&path, std::io::Error::other(e.to_string())))
}

/// Write `value` as pretty JSON to `dir/name`.
pub fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<()> {
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| CoreError::json(&path, e))?;
    std::fs::write(&path, bytes).map_err(|e| CoreError::io(&path, e))
}

/// Write `text` to `dir/name`.
pub fn write_text(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| CoreError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_norm_parts_rebuild_the_weight() {
        let w = Tensor::randn([4, 2, 3], (Kind::Float, Device::Cpu));
        let (g, v) = weight_norm_parts(&w, 2);
        assert_eq!(g.size(), vec![1, 1, 3]);
        let norm = v.square().sum_dim_intlist(&[0i64, 1][..], true, Kind::Float).sqrt();
        let back = &g * &v / norm;
        assert!(back.allclose(&w, 1e-6, 1e-6, false));
    }

    #[test]
    fn a_tensor_left_unmapped_is_an_error_naming_it() {
        let t = || Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let w = vec![("e.a".to_string(), t()), ("e.b".to_string(), t()), ("head.c".to_string(), t())];
        let mut r = Renamer::new(&w, "e.");
        r.rename("a", "x.a").unwrap();
        let e = r.finish().unwrap_err().to_string();
        assert!(e.contains("`e.b`"), "{e}");
        let e = Renamer::new(&w, "e.").get("zz").unwrap_err().to_string();
        assert!(e.contains("`e.zz`"), "{e}");
    }

    #[test]
    fn formats_parse_and_export_dirs_must_be_empty() {
        assert_eq!("hf".parse::<ExportFormat>().unwrap(), ExportFormat::Hf);
        assert!("onnx".parse::<ExportFormat>().is_err());
        let d = tempfile::tempdir().unwrap();
        create_export_dir(&d.path().join("new/deeper")).unwrap();
        std::fs::write(d.path().join("new/deeper/x"), "x").unwrap();
        assert!(create_export_dir(&d.path().join("new/deeper")).is_err());
    }
}
