//! `ssl embed`: a finished run's encoder applied to a folder of inputs, its features written as
//! one safetensors file with the list of inputs, which is how an encoder is handed to other
//! tools (a classifier in scikit-learn, a vector index, a plot).
//!
//! The modality reads the inputs exactly as its evaluation reads labeled data and supplies the
//! run's encoder ([`crate::run::Recipe::embedder`]); everything else is here, once.
//!
//! The file holds one tensor, `features` (float32, `[N, D]`, row `i` for input `i`), and its
//! metadata (safetensors `__metadata__`, string to string) holds `inputs` (a JSON list of the
//! `N` input names relative to `data`, in row order), `modality`, `run`, `checkpoint`, `data`,
//! `features` (what a row is) and `skipped` (how many inputs could not be read). In Python:
//!
//! ```python
//! import json
//! from safetensors import safe_open
//! with safe_open("features.safetensors", "pt") as f:
//!     X = f.get_tensor("features")
//!     names = json.loads(f.metadata()["inputs"])
//! ```
//!
//! ```
//! use ssl_core::embed::Embeddings;
//! use tch::Tensor;
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("features.safetensors");
//! let e = Embeddings {
//!     names: vec!["a.png".into(), "b.png".into()],
//!     features: Tensor::from_slice(&[1f32, 2., 3., 4.]).view([2, 2]),
//!     metadata: vec![("modality".into(), "vision".into())],
//! };
//! e.write(&out).unwrap();
//! let back = Embeddings::read(&out).unwrap();
//! assert_eq!(back.names, e.names);
//! assert_eq!(back.features, e.features);
//! ```
use crate::error::{CoreError, Result};
use crate::eval::Encoder;
use safetensors::tensor::{Dtype, TensorView};
use ssl_records::skipped::SkippedInputs;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Rows per forward pass.
pub const BATCH: usize = 64;

/// What a modality hands to [`embed`]: the inputs it read (as its evaluation reads them), their
/// names, what it skipped, and the run's encoder.
pub struct EmbedInputs {
    /// One name per row of `inputs` (the file, or `file:line` for a line of text).
    pub names: Vec<String>,
    /// `[N, ...]` on the CPU, as the encoder's [`Encoder::features`] takes them.
    pub inputs: Tensor,
    /// Inputs that could not be read.
    pub skipped: SkippedInputs,
    /// The run's encoder, on the device the features are computed on.
    pub encoder: Box<dyn Encoder>,
    /// What a row of features is, in words (`mean of the encoded patch tokens`, ...).
    pub describes: String,
}

/// Features with the names of their inputs, as `ssl embed` writes them.
pub struct Embeddings {
    pub names: Vec<String>,
    /// `[N, D]`, float32, CPU.
    pub features: Tensor,
    /// Further metadata (`modality`, `run`, ...), written beside `inputs`.
    pub metadata: Vec<(String, String)>,
}

/// Check `ssl embed`'s paths before anything is read: `data` exists, and `out` is a file whose
/// folder exists.
pub fn check_paths(data: &Path, out: &Path) -> Result<()> {
    if !data.exists() {
        return Err(CoreError::InvalidArgument(format!("--data {}: no such file or folder", data.display())));
    }
    if out.is_dir() {
        return Err(CoreError::InvalidArgument(format!("--out {}: a folder; give a file name", out.display())));
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(CoreError::InvalidArgument(format!(
            "--out {}: the folder {} does not exist",
            out.display(),
            parent.display()
        )));
    }
    Ok(())
}

/// The encoder's features of every input, in batches of [`BATCH`] on `device`, in evaluation
/// mode, with the metadata of `EmbedInputs`.
pub fn embed(inputs: EmbedInputs, device: Device) -> Embeddings {
    let EmbedInputs { names, inputs, skipped, encoder, describes } = inputs;
    let features = crate::eval::map_batches(&inputs, BATCH, device, |x| encoder.features(x, false))
        .to_kind(Kind::Float)
        .contiguous();
    Embeddings {
        names,
        features,
        metadata: vec![("features".into(), describes), ("skipped".into(), skipped.count.to_string())],
    }
}

impl Embeddings {
    /// Name the inputs relative to `data` (the folder given, or the folder of the file given),
    /// so the names do not depend on where the data was when it was embedded.
    pub(crate) fn relative_to(&mut self, data: &Path) {
        let base = if data.is_dir() { Some(data) } else { data.parent() };
        let Some(base) = base.filter(|b| !b.as_os_str().is_empty()) else { return };
        let prefix = format!("{}/", base.display().to_string().trim_end_matches('/'));
        for name in &mut self.names {
            if let Some(rest) = name.strip_prefix(&prefix) {
                *name = rest.to_string();
            }
        }
    }

    /// Write `out` atomically (a temporary file in the same folder, renamed over `out`).
    pub fn write(&self, out: &Path) -> Result<()> {
        let shape: Vec<usize> = self.features.size().iter().map(|&d| d as usize).collect();
        if shape.len() != 2 || shape[0] != self.names.len() {
            return Err(CoreError::InvalidArgument(format!(
                "{} names for features of shape {:?}",
                self.names.len(),
                shape
            )));
        }
        let values = Vec::<f32>::try_from(self.features.to_kind(Kind::Float).flatten(0, -1))
            .map_err(|e| CoreError::InvalidArgument(format!("features: {e}")))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, shape, &bytes)
            .map_err(|e| CoreError::InvalidArgument(format!("features: {e:?}")))?;
        let mut metadata: HashMap<String, String> = self.metadata.iter().cloned().collect();
        metadata.insert("inputs".into(), serde_json::to_string(&self.names).map_err(|e| CoreError::json(out, e))?);
        let data = safetensors::tensor::serialize([("features", view)], &Some(metadata))
            .map_err(|e| CoreError::InvalidArgument(format!("{}: {e:?}", out.display())))?;
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| CoreError::io(dir, e))?;
        tmp.write_all(&data).map_err(|e| CoreError::io(out, e))?;
        tmp.as_file().sync_all().map_err(|e| CoreError::io(out, e))?;
        tmp.persist(out).map_err(|e| CoreError::io(out, e.error))?;
        Ok(())
    }

    /// Read a file [`Embeddings::write`] wrote.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        let bad = |m: String| CoreError::InvalidArgument(format!("{}: {m}", path.display()));
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("{e:?}")))?;
        let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
        let names: Vec<String> =
            serde_json::from_str(&metadata.remove("inputs").ok_or_else(|| bad("no `inputs` in the metadata".into()))?)
                .map_err(|e| bad(format!("`inputs`: {e}")))?;
        let features = Tensor::read_safetensors(path)
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .find(|(n, _)| n == "features")
            .map(|(_, t)| t)
            .ok_or_else(|| bad("no `features` tensor".into()))?;
        let mut metadata: Vec<(String, String)> = metadata.into_iter().collect();
        metadata.sort();
        Ok(Self { names, features, metadata })
    }
}
