//! Atomic, resumable checkpoints: weights and optimizer state as safetensors, everything else
//! (step, loader position, seeds, config) as JSON.
//!
//! A checkpoint is a directory `step-<N>` under `<run>/checkpoints/`. It is written into a
//! `.tmp` sibling, every file is fsync'ed, then the directory is renamed into place and the parent
//! fsync'ed: a crash mid-save leaves the previous checkpoint intact and the half-written one is
//! never mistaken for a complete checkpoint (only names without `.tmp` count).
use crate::error::{CoreError, Result};
use crate::loader::LoaderPosition;
use crate::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The JSON half of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointState {
    /// Training steps completed.
    pub step: u64,
    /// Optimizer updates applied (steps minus skipped non-finite steps).
    pub optimizer_steps: u64,
    /// Where the data loader resumes.
    pub loader: LoaderPosition,
    /// Non-finite steps skipped so far, and in a row at save time.
    pub nonfinite_steps: u64,
    pub nonfinite_in_row: u32,
    /// Inputs the loader skipped so far.
    pub skipped_inputs: u64,
    /// Wall-clock seconds spent training so far.
    pub elapsed_secs: f64,
    /// The configuration of the run (trainer and model), checked on resume.
    pub config: serde_json::Value,
}

const MODEL: &str = "model.safetensors";
const OPTIM: &str = "optimizer.safetensors";
const STATE: &str = "state.json";

/// The checkpoints folder of a run directory.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn step_of(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("step-")?.parse().ok()
}

/// All complete checkpoints of a run, oldest first.
pub fn list(run_dir: &Path) -> Vec<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(STATE).is_file())
        .filter_map(|p| step_of(&p).map(|s| (s, p)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The newest complete checkpoint of a run.
pub fn latest(run_dir: &Path) -> Option<PathBuf> {
    list(run_dir).pop()
}

fn fsync_file(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| CoreError::io(path, e))
}

fn fsync_dir(path: &Path) -> Result<()> {
    // Directories can be opened read-only and fsync'ed on Unix; elsewhere this is best effort.
    match fs::File::open(path) {
        Ok(f) => {
            let _ = f.sync_all();
            Ok(())
        }
        Err(e) => Err(CoreError::io(path, e)),
    }
}

fn write_tensors(path: &Path, named: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> =
        named.iter().map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).contiguous())).collect();
    // LibTorch's message for a failed write is generic; say which file and why.
    Tensor::write_safetensors(&cpu, path).map_err(|e| {
        let mut message = e.to_string();
        if let Some(io) = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>()) {
            message = io.to_string();
        }
        CoreError::Io { path: path.display().to_string(), source: std::io::Error::other(message) }
    })?;
    fsync_file(path)
}

/// Atomically write a checkpoint for `state.step`, then delete all but the newest `keep`.
pub fn save(
    run_dir: &Path,
    vs: &VarStore,
    optimizer: &Optimizer,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    fs::create_dir_all(&dir).map_err(|e| CoreError::io(&dir, e))?;
    let final_path = dir.join(format!("step-{:09}", state.step));
    let tmp = dir.join(format!("step-{:09}.tmp", state.step));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
    }
    let written = (|| {
        fs::create_dir_all(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
        let mut weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        write_tensors(&tmp.join(MODEL), &weights)?;
        write_tensors(&tmp.join(OPTIM), &optimizer.state_tensors())?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| CoreError::json(tmp.join(STATE), e))?;
        fs::write(tmp.join(STATE), json).map_err(|e| CoreError::io(tmp.join(STATE), e))?;
        fsync_file(&tmp.join(STATE))?;
        fsync_dir(&tmp)
    })();
    if let Err(e) = written {
        // A full disk: drop the partial copy (it would only take space), keep the older ones.
        let _ = fs::remove_dir_all(&tmp);
        let message = match e {
            CoreError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        return Err(CoreError::CheckpointWrite { path: final_path.display().to_string(), message });
    }
    if final_path.exists() {
        fs::remove_dir_all(&final_path).map_err(|e| CoreError::io(&final_path, e))?;
    }
    fs::rename(&tmp, &final_path).map_err(|e| CoreError::io(&final_path, e))?;
    fsync_dir(&dir)?;
    let all = list(run_dir);
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        let _ = fs::remove_dir_all(old);
    }
    // Partial copies of earlier saves that were cut off (a kill, a full disk) go now.
    for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    Ok(final_path)
}

/// Copy the tensors of a safetensors file into the variables of `vs`, by name. A missing tensor
/// or a shape mismatch is an error that names the tensor.
pub(crate) fn load_weights_file(path: &Path, vs: &VarStore) -> Result<()> {
    let saved = Tensor::read_safetensors(path)?;
    load_named(&saved, vs, &path.display().to_string())
}

fn load_named(saved: &[(String, Tensor)], vs: &VarStore, origin: &str) -> Result<()> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let dst = &vars[name];
        let src = saved
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| CoreError::CheckpointMismatch(format!("tensor `{name}` is missing from {origin}")))?;
        if src.size() != dst.size() {
            return Err(CoreError::CheckpointMismatch(format!(
                "tensor `{name}` has shape {:?} in {origin}, but the model expects {:?}",
                src.size(),
                dst.size()
            )));
        }
        let mut dst = dst.shallow_clone();
        tch::no_grad(|| dst.copy_(src));
    }
    Ok(())
}

/// Load the weights of a checkpoint directory (or of a run directory's newest checkpoint).
pub fn load_weights(path: &Path, vs: &VarStore) -> Result<()> {
    let ckpt = resolve(path)?;
    load_weights_file(&ckpt.join(MODEL), vs)
}

/// A checkpoint directory itself, or the newest one of a run directory.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(STATE).is_file() {
        return Ok(path.to_path_buf());
    }
    latest(path).ok_or_else(|| CoreError::NoCheckpoint(path.display().to_string()))
}

/// Read only the JSON state of a checkpoint.
pub fn read_state(ckpt: &Path) -> Result<CheckpointState> {
    let p = ckpt.join(STATE);
    let bytes = fs::read(&p).map_err(|e| CoreError::io(&p, e))?;
    serde_json::from_slice(&bytes).map_err(|e| CoreError::json(&p, e))
}

/// Restore weights, optimizer state and the JSON state from a checkpoint directory.
pub fn load(ckpt: &Path, vs: &VarStore, optimizer: &mut Optimizer) -> Result<CheckpointState> {
    let state = read_state(ckpt)?;
    load_weights_file(&ckpt.join(MODEL), vs)?;
    let saved = Tensor::read_safetensors(ckpt.join(OPTIM))?;
    let device = vs.device();
    let saved: Vec<(String, Tensor)> = saved.into_iter().map(|(n, t)| (n, t.to_device(device))).collect();
    optimizer.load_state(&saved, state.optimizer_steps)?;
    Ok(state)
}

/// The run directory of `--checkpoint`: the path itself if it holds a `config.json`, else the
/// run two levels above a checkpoint (`<run>/checkpoints/step-N`).
pub(crate) fn run_of(path: &Path) -> Result<PathBuf> {
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    match path.parent().and_then(Path::parent) {
        Some(run) if run.join("config.json").is_file() => Ok(run.to_path_buf()),
        _ => Err(CoreError::InvalidArgument(format!(
            "--checkpoint {}: not a run directory (no config.json in it or two levels above it)",
            path.display()
        ))),
    }
}
