//! `--init-from PATH`: start pretraining from weights trained elsewhere instead of a random
//! initialisation (continued, domain- or task-adaptive pretraining).
//!
//! The source is one of our own run directories (or one of its checkpoints) of the same
//! modality, or another tool's directory (a HuggingFace `config.json` + `model.safetensors`),
//! which the modality's recipe converts to our names. Either way the result is an
//! [`InitWeights`]: tensors named as the objective's variables. [`InitWeights::load_into`] copies
//! them in and fails on any name or shape that does not map, naming the tensor; only variables
//! under [`InitWeights::fresh_prefixes`] (a head the source does not have) may keep their fresh
//! initialisation.
//!
//! The trainer applies them when a run starts ([`crate::trainer::Trainer::init`]); a resumed run
//! continues from its own checkpoint instead.
//!
//! ```
//! use ssl_core::init::InitWeights;
//! use tch::{nn, Device, Kind, Tensor};
//! let vs = nn::VarStore::new(Device::Cpu);
//! let _w = vs.root().sub("enc").zeros("w", &[2]);
//! let _h = vs.root().sub("head").zeros("b", &[3]);
//! let init = InitWeights {
//!     source: "elsewhere".into(),
//!     kind: "example".into(),
//!     tensors: vec![("enc.w".into(), Tensor::ones([2], (Kind::Float, Device::Cpu)))],
//!     fresh_prefixes: vec!["head.".into()],
//! };
//! assert_eq!(init.load_into(&vs).unwrap(), vec!["head.b".to_string()]);
//! let bad = InitWeights { fresh_prefixes: vec![], ..init };
//! assert!(bad.load_into(&vs).unwrap_err().to_string().contains("head.b"));
//! ```
use crate::error::{CoreError, Result};
use ssl_records::run::RunRecord;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

/// Weights to start a run from, named as the objective's variables.
pub struct InitWeights {
    /// Where they came from (for messages and `config.json`).
    pub source: PathBuf,
    /// What the source was, in words (`run`, `HF BertModel`, ...).
    pub kind: String,
    /// The tensors, under the objective's variable names.
    pub tensors: Vec<(String, Tensor)>,
    /// Variables that may be missing from `tensors` and keep their fresh initialisation (name
    /// prefixes, such as a head the source does not have).
    pub fresh_prefixes: Vec<String>,
}

/// What `--init-from` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSource {
    /// One of our runs of this modality: `path` is its run directory or a checkpoint inside it,
    /// `run_dir` the run directory (its `config.json`, `tokenizer.json`, ...).
    Run { path: PathBuf, run_dir: PathBuf },
    /// Another tool's directory (`config.json` plus weights), for the recipe to convert.
    Foreign(PathBuf),
}

impl InitSource {
    /// Tell which kind of source `path` is, for a run of `modality`: one of our runs must be of
    /// the same modality, and anything else is an error that says what was expected. Only
    /// `config.json` is read, no weights.
    pub fn of(path: &Path, modality: &str) -> Result<Self> {
        if !path.exists() {
            return Err(CoreError::InvalidArgument(format!("--init-from {}: no such directory", path.display())));
        }
        if let Ok(run_dir) = crate::checkpoint::run_of(path) {
            if let Ok(record) = RunRecord::read(&run_dir) {
                if record.modality != modality {
                    return Err(CoreError::InvalidArgument(format!(
                        "--init-from {}: a {} run, and this is a {modality} run",
                        path.display(),
                        record.modality
                    )));
                }
                return Ok(InitSource::Run { path: path.to_path_buf(), run_dir });
            }
        }
        if path.is_dir() && path.join("config.json").is_file() {
            return Ok(InitSource::Foreign(path.to_path_buf()));
        }
        Err(CoreError::InvalidArgument(format!(
            "--init-from {}: neither one of our run directories (or checkpoints) nor a HuggingFace directory \
             (config.json with model.safetensors)",
            path.display()
        )))
    }
}

/// Another tool's checkpoint directory, read the way every import reads one: `config.json`
/// parsed, and the tensors of `model.safetensors` on the CPU in float32. A directory whose
/// weights are only `pytorch_model.bin` is refused: it is a pickle, and loading one runs code from
/// the file.
pub struct HfDir {
    pub dir: PathBuf,
    pub config: serde_json::Value,
    pub tensors: Vec<(String, Tensor)>,
}

impl HfDir {
    /// `config.json` and the weights.
    pub fn read(dir: &Path) -> Result<Self> {
        let Self { config, .. } = Self::config_only(dir)?;
        let file = hf_weights_file(dir)?;
        let tensors = Tensor::read_safetensors(&file)
            .map_err(|e| CoreError::InvalidArgument(format!("{}: {e}", file.display())))?
            .into_iter()
            .map(|(n, t)| (n, t.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float)))
            .collect();
        Ok(Self { dir: dir.to_path_buf(), config, tensors })
    }

    /// `config.json` alone (no tensors), for checks before any work; the weights file must exist.
    pub fn config_only(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| CoreError::io(&cfg_path, e))?;
        let config = serde_json::from_str(&text).map_err(|e| CoreError::json(&cfg_path, e))?;
        hf_weights_file(dir)?;
        Ok(Self { dir: dir.to_path_buf(), config, tensors: Vec::new() })
    }

    /// The integer `key` of `config.json`.
    pub fn int(&self, key: &str) -> Result<i64> {
        self.config
            .get(key)
            .and_then(|x| x.as_i64())
            .ok_or_else(|| self.invalid(format!("config.json has no integer `{key}`")))
    }

    /// The list of integers `key` of `config.json`.
    pub fn ints(&self, key: &str) -> Result<Vec<i64>> {
        self.config
            .get(key)
            .and_then(|x| x.as_array())
            .and_then(|a| a.iter().map(|x| x.as_i64()).collect::<Option<Vec<i64>>>())
            .ok_or_else(|| self.invalid(format!("config.json has no list of integers `{key}`")))
    }

    /// The string `key` of `config.json`, or `default` when it is absent.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.config.get(key).and_then(|x| x.as_str()).unwrap_or(default)
    }

    /// An error about this directory.
    pub fn invalid(&self, msg: impl std::fmt::Display) -> CoreError {
        CoreError::InvalidArgument(format!("{}: {msg}", self.dir.display()))
    }
}

/// The safetensors weights of another tool's directory; a directory with only a pickle is refused.
pub(crate) fn hf_weights_file(dir: &Path) -> Result<PathBuf> {
    let st = dir.join("model.safetensors");
    if st.is_file() {
        return Ok(st);
    }
    let invalid = |m: &str| CoreError::InvalidArgument(format!("{}: {m}", dir.display()));
    if dir.join("pytorch_model.bin").is_file() {
        return Err(invalid(
            "only pytorch_model.bin, which is refused: it is a pickle, and loading one runs code from the file. \
             Convert it to model.safetensors first (in Python: model.save_pretrained(dir, safe_serialization=True))",
        ));
    }
    Err(invalid("no model.safetensors"))
}

impl InitWeights {
    /// The weights of our run `dir` (or of the checkpoint `dir`), which must be of `modality`:
    /// every variable of the objective, as its newest (or named) checkpoint saved them.
    pub fn from_run(dir: &Path, modality: &str) -> Result<Self> {
        Ok(Self::of_run(dir, crate::interop::RunWeights::read(dir, modality)?))
    }

    /// The weights of a run already read back from `dir`.
    pub fn of_run(dir: &Path, run: crate::interop::RunWeights) -> Self {
        Self { source: dir.to_path_buf(), kind: "run".into(), tensors: run.weights, fresh_prefixes: Vec::new() }
    }

    fn mismatch(&self, msg: String) -> CoreError {
        CoreError::CheckpointMismatch(format!("--init-from {} ({}): {msg}", self.source.display(), self.kind))
    }

    /// Copy the tensors into the variables of `vs`. Every tensor must find its variable with
    /// the same shape, and every variable must get a tensor unless it is under a fresh prefix.
    /// Returns the variables left as initialised, sorted.
    pub fn load_into(&self, vs: &VarStore) -> Result<Vec<String>> {
        let vars = vs.variables();
        for (name, t) in &self.tensors {
            let dst = vars
                .get(name)
                .ok_or_else(|| self.mismatch(format!("tensor `{name}` has no counterpart in the model")))?;
            if dst.size() != t.size() {
                return Err(self.mismatch(format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.size(),
                    dst.size()
                )));
            }
            let mut d = dst.shallow_clone();
            let src = t.f_to_device(d.device())?.f_to_kind(d.kind())?;
            tch::no_grad(|| d.f_copy_(&src))?;
        }
        let mut fresh: Vec<String> =
            vars.keys().filter(|n| !self.tensors.iter().any(|(m, _)| m == *n)).cloned().collect();
        fresh.sort();
        if let Some(n) = fresh.iter().find(|n| !self.fresh_prefixes.iter().any(|p| n.starts_with(p.as_str()))) {
            return Err(self.mismatch(format!(
                "the model's tensor `{n}` is missing from the source (is it of the same model size?)"
            )));
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn shapes_must_match_and_values_are_copied() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().zeros("w", &[2, 3]);
        let init = InitWeights {
            source: "src".into(),
            kind: "test".into(),
            tensors: vec![("w".into(), Tensor::ones([3, 2], (Kind::Float, Device::Cpu)))],
            fresh_prefixes: vec![],
        };
        let e = init.load_into(&vs).unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains("[3, 2]"), "{e}");
        let init =
            InitWeights { tensors: vec![("w".into(), Tensor::full([2, 3], 7.0, (Kind::Float, Device::Cpu)))], ..init };
        assert!(init.load_into(&vs).unwrap().is_empty());
        assert_eq!(w.sum(Kind::Float).double_value(&[]), 42.0);
        let extra = InitWeights { tensors: vec![("v".into(), Tensor::ones([1], (Kind::Float, Device::Cpu)))], ..init };
        assert!(extra.load_into(&vs).unwrap_err().to_string().contains("`v` has no counterpart"));
    }

    #[test]
    fn sources_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        assert!(InitSource::of(&d.path().join("none"), "text").unwrap_err().to_string().contains("no such"));
        assert!(InitSource::of(d.path(), "text").unwrap_err().to_string().contains("neither"));
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        assert_eq!(InitSource::of(d.path(), "text").unwrap(), InitSource::Foreign(d.path().to_path_buf()));
    }

    #[test]
    fn a_pickle_alone_is_refused_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pytorch_model.bin"), b"not read").unwrap();
        let e = hf_weights_file(d.path()).unwrap_err().to_string();
        assert!(e.contains("pickle"), "{e}");
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        assert!(HfDir::read(d.path()).is_err());
    }
}
