//! The pretraining [`DataSource`]: packed sequences read by index and masked dynamically, each
//! with its own item RNG from the loader (a fresh mask every time a sequence is seen, the same
//! masks for the same seed). Masking per item, not per batch, keeps a sequence's mask independent
//! of the batch it lands in, so a data-parallel run masks exactly as one process does.
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_text::data::dataset::collate_masked;
//! use ssl_text::data::masking::{Masker, MaskingConfig};
//! use ssl_text::data::packing::PackedSeq;
//! use ssl_text::data::tokenizer::SpecialIds;
//! let special = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
//! let masker = Masker::new(MaskingConfig { rate: 0.25, ..Default::default() }, special, 50, 8).unwrap();
//! let seq = PackedSeq { ids: vec![2, 10, 11, 12, 13, 14, 15, 3], word_starts: vec![true; 8] };
//! let batch = collate_masked(&masker, &[seq.clone(), seq], &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
//! assert_eq!(batch.input_ids.size(), [2, 8]);
//! assert_eq!(batch.positions.size(), [2, 2]);
//! ```
use crate::data::masking::{MaskedSeq, Masker};
use crate::data::packing::{PackedCorpus, PackedSeq};
use rand_chacha::ChaCha8Rng;
use ssl_core::loader::DataSource;
use std::sync::Arc;
use tch::{Device, TchError, Tensor};

/// A masked batch on the CPU. `positions`, `targets` and `valid` are `[B, slots]`.
pub struct MlmBatch {
    /// `[B, L]` int64 ids after masking.
    pub input_ids: Tensor,
    /// Masked positions (int64), padded with 0.
    pub positions: Tensor,
    /// Original ids at those positions (int64).
    pub targets: Tensor,
    /// Which slots are real (bool).
    pub valid: Tensor,
}

impl MlmBatch {
    /// The batch on `device` ([`ssl_core::device::upload`]: asynchronous from pinned memory).
    pub fn to(&self, device: Device) -> Result<MlmBatch, TchError> {
        self.map(|t| ssl_core::device::upload(t, device))
    }

    /// The batch in page-locked host memory when `device` is a CUDA device
    /// ([`ssl_core::device::pin`]).
    pub fn pinned(&self, device: Device) -> Result<MlmBatch, TchError> {
        self.map(|t| ssl_core::device::pin(t, device))
    }

    fn map(&self, f: impl Fn(&Tensor) -> Result<Tensor, TchError>) -> Result<MlmBatch, TchError> {
        Ok(MlmBatch {
            input_ids: f(&self.input_ids)?,
            positions: f(&self.positions)?,
            targets: f(&self.targets)?,
            valid: f(&self.valid)?,
        })
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.input_ids.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Mask every sequence with `rng` and stack the results.
pub fn collate_masked(masker: &Masker, items: &[PackedSeq], rng: &mut ChaCha8Rng) -> MlmBatch {
    stack_masked(masker, items.iter().map(|s| masker.mask(&s.ids, &s.word_starts, rng)).collect())
}

/// Stack masked sequences (of one length) into a batch.
pub fn stack_masked(masker: &Masker, items: Vec<MaskedSeq>) -> MlmBatch {
    let b = items.len() as i64;
    let len = items.first().map(|s| s.input_ids.len()).unwrap_or(0) as i64;
    let slots = masker.slots() as i64;
    let mut ids = Vec::with_capacity((b * len) as usize);
    let mut pos = Vec::with_capacity((b * slots) as usize);
    let mut tgt = Vec::with_capacity((b * slots) as usize);
    let mut valid = Vec::with_capacity((b * slots) as usize);
    for m in items {
        ids.extend(m.input_ids);
        pos.extend(m.positions);
        tgt.extend(m.targets);
        valid.extend(m.valid);
    }
    MlmBatch {
        input_ids: Tensor::from_slice(&ids).view([b, len]),
        positions: Tensor::from_slice(&pos).view([b, slots]),
        targets: Tensor::from_slice(&tgt).view([b, slots]),
        valid: Tensor::from_slice(&valid).view([b, slots]),
    }
}

/// Packed sequences of the training split, masked on the fly.
pub struct MlmDataset {
    corpus: Arc<PackedCorpus>,
    indices: Vec<usize>,
    masker: Masker,
}

impl MlmDataset {
    pub fn new(corpus: Arc<PackedCorpus>, indices: Vec<usize>, masker: Masker) -> Self {
        Self { corpus, indices, masker }
    }
}

impl DataSource for MlmDataset {
    type Item = MaskedSeq;
    type Batch = MlmBatch;

    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<MaskedSeq, ssl_core::loader::Skipped> {
        use ssl_core::loader::Skipped;
        let i =
            *self.indices.get(index).ok_or_else(|| Skipped::record("corpus.packed", index as u64, "out of range"))?;
        let seq: PackedSeq =
            self.corpus.get(i).map_err(|e| Skipped::record("corpus.packed", i as u64, e.to_string()))?;
        Ok(self.masker.mask(&seq.ids, &seq.word_starts, rng))
    }

    fn collate(&self, items: Vec<MaskedSeq>, _rng: &mut ChaCha8Rng) -> MlmBatch {
        stack_masked(&self.masker, items)
    }

    fn pin_memory(&self, batch: MlmBatch, device: Device) -> Result<MlmBatch, TchError> {
        batch.pinned(device)
    }
}
