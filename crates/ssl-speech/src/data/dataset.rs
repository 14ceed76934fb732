//! Folders of WAV files: an unlabeled pool for pretraining (every `.wav` below a folder), a
//! labeled `train/<class>/`, `test/<class>/` split for evaluation, and the [`DataSource`] that
//! crops, pads and masks pretraining batches (in the loader, or on the training device:
//! [`crate::data::batch`]).
//!
//! Bad files are skipped with a warning naming them and counted; a folder with no usable audio
//! is an error.
use crate::data::masking::SpanMasker;
use crate::data::wav::{load_16k, SAMPLE_RATE};
use crate::error::{Result, SpeechError};
use crate::model::ModelConfig;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use ssl_core::eval::LabeledSet;
use ssl_core::loader::DataSource;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Tensor;

pub use crate::data::batch::{ResidentAudio, SpeechBatch, Waves};

pub use ssl_records::skipped::Skipped;

/// Every `.wav` file below `dir`, sorted.
pub fn wav_files(dir: &Path) -> Result<Vec<PathBuf>> {
    audio_files(dir, false)
}

/// Every `.wav` (and, with `flac`, `.flac`) file below `dir`, sorted; hidden files and folders
/// are left out ([`ssl_core::files::files_below`]).
pub fn audio_files(dir: &Path, flac: bool) -> Result<Vec<PathBuf>> {
    Ok(ssl_core::files::files_below(dir, |p| crate::data::wav::is_audio_file(p, flac))?)
}

/// Decode files in parallel at 16 kHz, normalised; bad ones are skipped with a warning.
/// Clips shorter than one frame of `model` count as bad.
fn load_all(files: &[PathBuf], min_samples: usize) -> (Vec<(usize, Vec<f32>)>, Vec<Skipped>) {
    let results: Vec<_> = files
        .par_iter()
        .map(|p| {
            load_16k(p).and_then(|x| {
                if x.len() < min_samples {
                    Err(SpeechError::bad(p, format!("shorter than one frame ({} samples at 16 kHz)", x.len())))
                } else {
                    Ok(x)
                }
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(x) => ok.push((i, x)),
            Err(e) => {
                eprintln!("warning: skipping {e}");
                skipped.push(Skipped::file(files[i].display().to_string(), e.to_string()));
            }
        }
    }
    (ok, skipped)
}

/// Unlabeled utterances, decoded once, at 16 kHz and normalised.
pub struct AudioCorpus {
    pub clips: Vec<Vec<f32>>,
    pub skipped: Vec<Skipped>,
}

impl AudioCorpus {
    /// Every `.wav` below `dir` (class subfolders included: their labels are ignored).
    pub fn load_dir(dir: &Path, model: &ModelConfig) -> Result<Self> {
        Self::load_dir_limited(dir, model, usize::MAX, false)
    }

    /// Like [`AudioCorpus::load_dir`], decoding at most `max_files` files evenly spaced over the
    /// sorted list (large corpora do not fit in memory decoded); with `flac`, `.flac` files are
    /// read too.
    pub fn load_dir_limited(dir: &Path, model: &ModelConfig, max_files: usize, flac: bool) -> Result<Self> {
        if !dir.is_dir() {
            return Err(SpeechError::NoAudio { path: dir.display().to_string(), detail: "not a folder".into() });
        }
        let mut files = audio_files(dir, flac)?;
        if files.len() > max_files.max(1) {
            let n = files.len();
            let keep = max_files.max(1);
            files = (0..keep).map(|i| files[i * n / keep].clone()).collect();
        }
        let min = receptive_field(model);
        let (ok, skipped) = load_all(&files, min);
        if ok.is_empty() {
            return Err(SpeechError::NoAudio {
                path: dir.display().to_string(),
                detail: format!("{} audio files found, {} unusable", files.len(), skipped.len()),
            });
        }
        Ok(Self { clips: ok.into_iter().map(|(_, x)| x).collect(), skipped })
    }

    /// Total duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.clips.iter().map(|c| c.len()).sum::<usize>() as f64 / SAMPLE_RATE as f64
    }
}

/// The smallest input that yields one frame.
pub fn receptive_field(model: &ModelConfig) -> usize {
    (1..=100_000).find(|&n| model.frames(n as i64) > 0).unwrap_or(400)
}

/// A labeled evaluation split: fixed-length waveforms `[N, samples]` and class ids.
pub struct LabeledSplit {
    pub train: LabeledSet,
    pub test: LabeledSet,
    pub classes: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// Centre-crop or zero-pad (at the end) a normalised clip to `len` samples. Trailing exact zeros
/// mark padding for the encoder, see [`crate::model::encoder`].
pub fn fit_length(x: &[f32], len: usize) -> Vec<f32> {
    if x.len() >= len {
        let start = (x.len() - len) / 2;
        x[start..start + len].to_vec()
    } else {
        let mut v = x.to_vec();
        v.resize(len, 0.0);
        v
    }
}

fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SpeechError::Layout { path: dir.display().to_string(), message: e.to_string() })?;
    let mut v: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(|n| (n.to_string(), p.clone())))
        // Hidden folders (`.git`, `.ipynb_checkpoints`) are not classes.
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    v.sort();
    Ok(v)
}

/// Load `dir/<class>/*.wav` as fixed-length waveforms; `classes` gives the ids.
fn load_class_folder(
    dir: &Path,
    classes: &[String],
    samples: usize,
    min: usize,
    skipped: &mut Vec<Skipped>,
) -> Result<LabeledSet> {
    let layout = |m: String| SpeechError::Layout { path: dir.display().to_string(), message: m };
    let dirs = class_dirs(dir).map_err(|_| layout("expected one subfolder per class".into()))?;
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (name, d) in &dirs {
        let c = classes
            .iter()
            .position(|x| x == name)
            .ok_or_else(|| layout(format!("{name} is not a class of the training split")))?;
        for f in wav_files(d)? {
            files.push(f);
            labels.push(c as i64);
        }
    }
    let (kept, inputs, sk) = load_clips(&files, samples, min);
    skipped.extend(sk);
    if kept.is_empty() {
        return Err(SpeechError::NoAudio {
            path: dir.display().to_string(),
            detail: format!("{} .wav files found", files.len()),
        });
    }
    let ys: Vec<i64> = kept.iter().map(|&i| labels[i]).collect();
    Ok(LabeledSet::new(inputs, Tensor::from_slice(&ys), classes.len() as i64))
}

/// Decode `files` as the labeled folders are (16 kHz, normalised, centre-cropped or zero-padded
/// to `samples`; shorter than `min_samples` counts as unreadable): the indices in `files` of
/// the clips kept, the clips `[N, samples]`, and the files skipped (each named in a warning).
/// `ssl embed` reads its inputs with this.
pub fn load_clips(files: &[PathBuf], samples: usize, min_samples: usize) -> (Vec<usize>, Tensor, Vec<Skipped>) {
    let (ok, skipped) = load_all(files, min_samples);
    let mut flat = Vec::with_capacity(ok.len() * samples);
    for (_, x) in &ok {
        flat.extend(fit_length(x, samples));
    }
    let inputs = Tensor::from_slice(&flat).view([ok.len() as i64, samples as i64]);
    (ok.into_iter().map(|(i, _)| i).collect(), inputs, skipped)
}

/// Load `dir/train/<class>/*.wav` and `dir/test/<class>/*.wav` as fixed-length waveforms of
/// `samples` samples. Classes are the sorted subfolder names of `train/`; `test/` must use a
/// subset of them.
pub fn load_labeled(dir: &Path, samples: usize, model: &ModelConfig) -> Result<LabeledSplit> {
    let layout = |m: &str| SpeechError::Layout { path: dir.display().to_string(), message: m.to_string() };
    let train_dirs =
        class_dirs(&dir.join("train")).map_err(|_| layout("expected a train/ folder with one subfolder per class"))?;
    if !dir.join("test").is_dir() {
        return Err(layout("expected a test/ folder with one subfolder per class"));
    }
    if train_dirs.len() < 2 {
        return Err(layout("train/ needs at least two class subfolders"));
    }
    let classes: Vec<String> = train_dirs.iter().map(|(n, _)| n.clone()).collect();
    let min = receptive_field(model);
    let mut skipped = Vec::new();
    let train = load_class_folder(&dir.join("train"), &classes, samples, min, &mut skipped)?;
    let test = load_class_folder(&dir.join("test"), &classes, samples, min, &mut skipped)?;
    Ok(LabeledSplit { train, test, classes, skipped })
}

/// Load a second test set with the given classes: `dir/test/<class>/` if `dir/test` exists,
/// else `dir/<class>/`.
pub fn load_test_folder(dir: &Path, samples: usize, model: &ModelConfig, classes: &[String]) -> Result<LabeledSet> {
    let d = if dir.join("test").is_dir() { dir.join("test") } else { dir.to_path_buf() };
    let mut skipped = Vec::new();
    let set = load_class_folder(&d, classes, samples, receptive_field(model), &mut skipped)?;
    for s in skipped {
        eprintln!("warning: skipped {}: {}", s.path, s.reason);
    }
    Ok(set)
}

/// Where a [`CropSource`] cuts its crops from.
enum Clips {
    /// Decoded clips; the loader copies each crop into the batch.
    Host(AudioCorpus),
    /// One tensor of the corpus; the training device cuts the crops ([`crate::data::batch`]).
    Resident(Arc<ResidentAudio>),
}

impl Clips {
    fn len(&self) -> usize {
        match self {
            Clips::Host(c) => c.clips.len(),
            Clips::Resident(a) => a.len(),
        }
    }

    fn clip_len(&self, index: usize) -> Option<usize> {
        match self {
            Clips::Host(c) => c.clips.get(index).map(Vec::len),
            Clips::Resident(a) => a.clip_len(index),
        }
    }
}

/// Random fixed-length crops of a corpus, each span-masked with its own item RNG (so a crop's mask
/// does not depend on the batch it lands in: a data-parallel run masks as one process does).
pub struct CropSource {
    clips: Clips,
    crop: usize,
    masker: SpanMasker,
    model: ModelConfig,
}

impl CropSource {
    /// Crops of `crop_seconds` (clips shorter than that are zero-padded, with a padding mask).
    pub fn new(corpus: AudioCorpus, crop_seconds: f64, masker: SpanMasker, model: ModelConfig) -> Result<Self> {
        let crop = (crop_seconds * SAMPLE_RATE as f64).round() as usize;
        if crop < receptive_field(&model) {
            return Err(SpeechError::InvalidArgument(format!(
                "--crop-seconds {crop_seconds} is shorter than one frame"
            )));
        }
        if !(masker.prob > 0.0 && masker.prob <= 1.0) || masker.length == 0 {
            return Err(SpeechError::InvalidArgument(
                "mask probability must be in (0, 1] and the span length positive".into(),
            ));
        }
        Ok(Self { clips: Clips::Host(corpus), crop, masker, model })
    }

    /// With `on_device`, cut the crops on the training device (`--augment-on-device`): the corpus
    /// becomes one tensor ([`ResidentAudio`]) and batches carry offsets into it. The samples and
    /// masks are those of the loader's crops.
    pub fn crops_on_device(self, on_device: bool) -> Result<Self> {
        let clips = match (self.clips, on_device) {
            (Clips::Host(corpus), true) => Clips::Resident(Arc::new(ResidentAudio::new(corpus)?)),
            (clips, _) => clips,
        };
        Ok(Self { clips, ..self })
    }

    pub fn crop_samples(&self) -> usize {
        self.crop
    }
}

/// A crop (its clip, first sample and length) and the span mask over its frames.
pub struct MaskedCrop {
    pub clip: usize,
    pub start: usize,
    pub len: usize,
    pub mask: Vec<bool>,
}

impl DataSource for CropSource {
    type Item = MaskedCrop;
    type Batch = SpeechBatch;

    fn len(&self) -> usize {
        self.clips.len()
    }

    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> std::result::Result<MaskedCrop, Skipped> {
        let clip_len = self
            .clips
            .clip_len(index)
            .ok_or_else(|| Skipped::record("pretraining audio", index as u64, "no such clip"))?;
        let (start, len) = match clip_len <= self.crop {
            true => (0, clip_len),
            false => (rng.random_range(0..=clip_len - self.crop), self.crop),
        };
        let frames = self.model.frames(len as i64).max(0) as usize;
        let mask = self.masker.sample(frames, frames, rng);
        Ok(MaskedCrop { clip: index, start, len, mask })
    }

    fn collate(&self, crops: Vec<MaskedCrop>, _rng: &mut ChaCha8Rng) -> SpeechBatch {
        let b = crops.len();
        let lengths: Vec<i64> = crops.iter().map(|c| c.len as i64).collect();
        // Pad to the longest item of the batch, not to the crop length: with short clips most of
        // a crop would be padding.
        let width = crops.iter().map(|c| c.len).max().unwrap_or(0).min(self.crop);
        let total = self.model.frames(width as i64).max(0) as usize;
        // Each crop's mask covers its own frames; padding frames are never masked.
        let mut flat_mask = Vec::with_capacity(b * total);
        for c in &crops {
            let n = c.mask.len().min(total);
            flat_mask.extend_from_slice(&c.mask[..n]);
            flat_mask.resize(flat_mask.len() + total - n, false);
        }
        let mask = Tensor::from_slice(&flat_mask).view([b as i64, total as i64]);
        let waves = match &self.clips {
            Clips::Host(corpus) => {
                let mut flat = Vec::with_capacity(b * width);
                for c in &crops {
                    let n = c.len.min(width);
                    flat.extend_from_slice(&corpus.clips[c.clip][c.start..c.start + n]);
                    flat.resize(flat.len() + width - n, 0.0);
                }
                Waves::Samples(Tensor::from_slice(&flat).view([b as i64, width as i64]))
            }
            Clips::Resident(audio) => {
                let starts: Vec<i64> =
                    crops.iter().map(|c| (audio.offset(c.clip).unwrap_or(0) + c.start) as i64).collect();
                Waves::Crops { starts: Tensor::from_slice(&starts), width: width as i64, audio: audio.clone() }
            }
        };
        SpeechBatch { waves, lengths, mask }
    }

    fn pin_memory(&self, batch: SpeechBatch, device: tch::Device) -> std::result::Result<SpeechBatch, tch::TchError> {
        batch.pinned(device)
    }
}
