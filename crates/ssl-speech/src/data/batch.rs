//! What the speech objectives train on: waveforms cut in the loader, or crop offsets into the
//! decoded corpus that the training device turns into waveforms (`--augment-on-device`).
//!
//! With crops on the device the corpus is held as one `f32` tensor of every clip end to end
//! ([`ResidentAudio`]), moved to the training device by the first batch and kept there. The
//! loader threads then only draw: a crop's start and its span mask, with the crop's own RNG as
//! before, so both ways give the same samples and the same masks (`tests/crops_on_device.rs`).
//! A batch's waveforms are one gather of the resident corpus and one `masked_fill` of the
//! padding: no samples cross from host to device after the first step.
//!
//! The span masks stay drawn per crop in the loader: they need each crop's RNG (so a
//! data-parallel run masks as one process does), and a mask is one bool per frame, 1/320 of the
//! bytes of its waveform.
use crate::data::dataset::AudioCorpus;
use ssl_core::device::{pin, upload};
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, TchError, Tensor};

/// The decoded corpus as one `[total]` tensor of samples, with each clip's offset and length.
pub struct ResidentAudio {
    /// Every clip, end to end: on the CPU, then on the training device, moved there (not
    /// copied) by the first batch, so the corpus is held once.
    audio: Mutex<Tensor>,
    offsets: Vec<usize>,
    lengths: Vec<usize>,
}

impl ResidentAudio {
    /// Move `corpus` into one tensor; each clip is released once copied, so the peak is the
    /// corpus plus one clip.
    pub fn new(corpus: AudioCorpus) -> Result<Self, TchError> {
        let total: usize = corpus.clips.iter().map(Vec::len).sum();
        let audio = Tensor::f_zeros([total as i64], (Kind::Float, Device::Cpu))?;
        let (mut offsets, mut lengths) = (Vec::new(), Vec::new());
        let mut at = 0usize;
        for clip in corpus.clips {
            audio.f_narrow(0, at as i64, clip.len() as i64)?.f_copy_(&Tensor::f_from_slice(&clip)?)?;
            offsets.push(at);
            lengths.push(clip.len());
            at += clip.len();
        }
        Ok(Self { audio: Mutex::new(audio), offsets, lengths })
    }

    /// The number of clips.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the corpus holds no clip.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Samples of clip `index`.
    pub fn clip_len(&self, index: usize) -> Option<usize> {
        self.lengths.get(index).copied()
    }

    /// Where clip `index` starts in the corpus tensor.
    pub fn offset(&self, index: usize) -> Option<usize> {
        self.offsets.get(index).copied()
    }

    /// The corpus on `device` (moved there by the first call; an error, not a panic, when it
    /// does not fit).
    fn on(&self, device: Device) -> Result<Tensor, TchError> {
        let mut audio = self.audio.lock().unwrap_or_else(|e| e.into_inner());
        if audio.device() != device {
            *audio = audio.f_to_device(device)?;
        }
        Ok(audio.shallow_clone())
    }

    /// Rows `[B, width]`: row `i` is the corpus from `starts[i]` for `lengths[i]` samples, then
    /// exact zeros (the encoder's padding marker).
    fn crops(&self, starts: &Tensor, lengths: &Tensor, width: i64, device: Device) -> Result<Tensor, TchError> {
        let audio = self.on(device)?;
        let last = (audio.size()[0] - 1).max(0);
        let cols = Tensor::f_arange(width, (Kind::Int64, device))?.f_unsqueeze(0)?;
        let padding = cols.f_ge_tensor(&lengths.f_to_device(device)?.f_unsqueeze(1)?)?;
        let index = upload(starts, device)?.f_unsqueeze(1)?.f_add(&cols)?.f_clamp_max(last)?;
        audio.f_take(&index)?.f_masked_fill(&padding, 0.0)
    }
}

/// A batch's waveforms.
pub enum Waves {
    /// `[B, S]` samples, cut in the loader.
    Samples(Tensor),
    /// Crops of the resident corpus: `starts` (`[B]` int64) are offsets into it, `width` the
    /// padded length `S`.
    Crops { starts: Tensor, width: i64, audio: Arc<ResidentAudio> },
}

/// A pretraining batch.
pub struct SpeechBatch {
    /// The waveforms, zero beyond each row's length (`S` is the longest row, at most the crop
    /// length); [`SpeechBatch::waves_on`] gives them as a tensor.
    pub waves: Waves,
    /// Valid samples per row.
    pub lengths: Vec<i64>,
    /// `[B, T]` bool: frames to mask (never padding).
    pub mask: Tensor,
}

impl SpeechBatch {
    /// The waveforms `[B, S]` on `device`.
    pub fn waves_on(&self, device: Device) -> Result<Tensor, TchError> {
        match &self.waves {
            Waves::Samples(x) => upload(x, device),
            Waves::Crops { starts, width, audio } => {
                audio.crops(starts, &Tensor::f_from_slice(&self.lengths)?, *width, device)
            }
        }
    }

    /// The `[B, T]` mask on `device`.
    pub fn mask_on(&self, device: Device) -> Result<Tensor, TchError> {
        upload(&self.mask, device)
    }

    /// The batch in page-locked host memory when `device` is a CUDA device
    /// ([`ssl_core::device::pin`]), so that [`SpeechBatch::waves_on`] and [`SpeechBatch::mask_on`]
    /// copy it asynchronously.
    pub fn pinned(&self, device: Device) -> Result<Self, TchError> {
        let waves = match &self.waves {
            Waves::Samples(x) => Waves::Samples(pin(x, device)?),
            Waves::Crops { starts, width, audio } => {
                Waves::Crops { starts: pin(starts, device)?, width: *width, audio: audio.clone() }
            }
        };
        Ok(Self { waves, lengths: self.lengths.clone(), mask: pin(&self.mask, device)? })
    }

    /// A copy that shares no tensor storage with this batch (the corpus stays shared).
    pub fn fresh_copy(&self) -> Self {
        let waves = match &self.waves {
            Waves::Samples(x) => Waves::Samples(x.copy()),
            Waves::Crops { starts, width, audio } => {
                Waves::Crops { starts: starts.copy(), width: *width, audio: audio.clone() }
            }
        };
        Self { waves, lengths: self.lengths.clone(), mask: self.mask.copy() }
    }
}
