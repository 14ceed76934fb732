//! The one `config.json` schema of every run directory.
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The PyTorch/LibTorch release tch 0.26 is built for: what set-up installs and what every run
/// records.
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// `git rev-parse HEAD` of the checkout at `dir`, where it is one and git is installed.
pub fn git_revision(dir: &Path) -> Option<String> {
    let o = std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]).output().ok()?;
    let rev = String::from_utf8(o.stdout).ok()?.trim().to_owned();
    (o.status.success() && !rev.is_empty()).then_some(rev)
}

/// The version of [`RunRecord`]; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// `config.json`: everything that defines a run and where it ran. The same schema for every
/// modality; `config` is the modality's own typed configuration (with the shared run options in
/// it), and `data` says which data the run read.
///
/// A `config.json` is also valid input: `ssl pretrain-<modality> --config config.json` runs the
/// same configuration again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    /// `vision`, `text` or `speech` (or a user recipe's name).
    pub modality: String,
    /// The pretext task (`rotation`, `mlm`, `best-rq`, ...).
    pub method: String,
    /// The modality's configuration, including the shared run options.
    pub config: serde_json::Value,
    /// The data the run read (paths, counts, skipped inputs).
    pub data: serde_json::Value,
    pub machine: Machine,
    pub versions: Versions,
    /// `git rev-parse HEAD` of the toolkit's source tree, where it was built from a checkout.
    pub git_revision: Option<String>,
}

/// Errors reading a run record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a run's config.json: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("{path} was written with config.json schema {found}; this toolkit reads schema {expected}")]
    Schema { path: String, found: u32, expected: u32 },
    #[error("{path} is a {found} run; this command runs {expected}")]
    Modality { path: String, found: String, expected: String },
}

impl RunRecord {
    /// Read and check a `config.json` (or the one in a run directory).
    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let p = file.display().to_string();
        let bytes = std::fs::read(&file).map_err(|source| RecordError::Io { path: p.clone(), source })?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| RecordError::Json { path: p.clone(), source })?;
        let found = v.get("schema_version").and_then(|s| s.as_u64()).unwrap_or(0) as u32;
        if found != SCHEMA_VERSION {
            return Err(RecordError::Schema { path: p, found, expected: SCHEMA_VERSION });
        }
        serde_json::from_value(v).map_err(|source| RecordError::Json { path: p, source })
    }

    /// [`RunRecord::read`], and check that it is a run of `modality`.
    pub fn read_for(path: &Path, modality: &str) -> Result<Self, RecordError> {
        let r = Self::read(path)?;
        if r.modality != modality {
            let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
            return Err(RecordError::Modality {
                path: file.display().to_string(),
                found: r.modality,
                expected: modality.into(),
            });
        }
        Ok(r)
    }

    /// Write `config.json` into `run_dir`, atomically (a temporary file, then a rename).
    pub fn write(&self, run_dir: &Path) -> Result<(), RecordError> {
        let file = run_dir.join("config.json");
        let p = file.display().to_string();
        let json = serde_json::to_vec_pretty(self).map_err(|source| RecordError::Json { path: p.clone(), source })?;
        let tmp = run_dir.join(".config.json.tmp");
        std::fs::write(&tmp, json)
            .and_then(|_| std::fs::rename(&tmp, &file))
            .map_err(|source| RecordError::Io { path: p, source })
    }
}

/// The machine a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub os: String,
    pub device: String,
    pub cuda_available: bool,
    /// LibTorch intra-op threads.
    pub threads: i32,
    pub toolkit_version: String,
}

/// Versions of what a run was built with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versions {
    pub toolkit: String,
    /// The LibTorch the binary links (tch's expected version).
    pub libtorch: String,
}

/// The CPU model name (`/proc/cpuinfo`), or `unknown`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(modality: &str) -> RunRecord {
        RunRecord {
            schema_version: SCHEMA_VERSION,
            modality: modality.into(),
            method: "m".into(),
            config: serde_json::json!({"a": 1}),
            data: serde_json::json!({}),
            machine: Machine {
                cpu: "c".into(),
                cores: 2,
                os: "linux".into(),
                device: "Cpu".into(),
                cuda_available: false,
                threads: 2,
                toolkit_version: "0".into(),
            },
            versions: Versions { toolkit: "0".into(), libtorch: "2.13.0".into() },
            git_revision: None,
        }
    }

    #[test]
    fn writes_reads_and_refuses_another_modality_or_schema() {
        let d = tempfile::tempdir().unwrap();
        let r = record("vision");
        r.write(d.path()).unwrap();
        assert_eq!(RunRecord::read(d.path()).unwrap(), r);
        let e = RunRecord::read_for(d.path(), "text").unwrap_err().to_string();
        assert!(e.contains("is a vision run"), "{e}");
        std::fs::write(d.path().join("config.json"), r#"{"vision": {}}"#).unwrap();
        let e = RunRecord::read(d.path()).unwrap_err().to_string();
        assert!(e.contains("schema 0"), "{e}");
        std::fs::write(d.path().join("config.json"), "{").unwrap();
        assert!(matches!(RunRecord::read(d.path()), Err(RecordError::Json { .. })));
    }
}
