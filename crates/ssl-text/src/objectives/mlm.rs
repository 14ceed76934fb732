//! The masked-language-model objective for ssl-core's trainer, and its held-out evaluation.
//!
//! The loss is cross-entropy at the masked slots only: the encoder runs on the whole sequence,
//! then the hidden states of the masked positions are gathered and only those go through the
//! output head (the head's `[H, V]` projection is the most expensive part of a small BERT).
//!
//! ```
//! use ssl_text::model::BertConfig;
//! use ssl_text::objectives::mlm::MlmObjective;
//! use ssl_core::trainer::Objective;
//! let cfg = BertConfig { vocab_size: 30, max_position: 8, ..BertConfig::preset("tiny").unwrap() };
//! let obj = MlmObjective::new(&cfg, tch::Device::Cpu).unwrap();
//! assert!(obj.var_store().trainable_variables().len() > 10);
//! ```
use crate::data::dataset::{collate_masked, MlmBatch};
use crate::data::masking::Masker;
use crate::data::packing::PackedCorpus;
use crate::error::Result;
use crate::model::{BertConfig, BertMlm};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use ssl_core::loader::mix_seed;
use ssl_core::losses::masked_cross_entropy;
use ssl_core::trainer::{Objective, StepOutput};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A BERT with its MLM head and the variables that hold it.
pub struct MlmObjective {
    pub vs: VarStore,
    pub bert: BertMlm,
}

impl MlmObjective {
    /// A freshly initialised model on `device` (seed LibTorch first for reproducibility).
    pub fn new(cfg: &BertConfig, device: Device) -> Result<Self> {
        let vs = VarStore::new(device);
        let bert = BertMlm::new(&vs.root(), cfg)?;
        Ok(Self { vs, bert })
    }
}

/// Masked-token accuracy: `(argmax == target)` over valid slots, as a device scalar.
fn masked_accuracy(logits: &Tensor, targets: &Tensor, valid: &Tensor) -> Tensor {
    let hit = logits.argmax(-1, false).eq_tensor(targets).logical_and(valid).to_kind(Kind::Float);
    hit.sum(Kind::Float) / valid.to_kind(Kind::Float).sum(Kind::Float).clamp_min(1.0)
}

impl Objective for MlmObjective {
    type Batch = MlmBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &MlmBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let b = batch.to(device)?;
        let logits = self.bert.mlm_logits(&b.input_ids, &b.positions, true).to_kind(Kind::Float);
        let loss = masked_cross_entropy(&logits, &b.targets, &b.valid);
        let acc = masked_accuracy(&logits.detach(), &b.targets, &b.valid);
        Ok(StepOutput { loss, metrics: vec![("mlm_accuracy".into(), acc)] })
    }

    fn batch_samples(&self, batch: &MlmBatch) -> usize {
        batch.len()
    }

    /// The loss is a mean over the masked tokens, whose number varies by batch.
    fn loss_weight(&self, batch: &MlmBatch) -> f64 {
        batch.valid.f_sum(tch::Kind::Int64).map(|n| n.int64_value(&[]) as f64).unwrap_or(batch.len() as f64)
    }
}

/// Masked-token accuracy and perplexity on held-out sequences.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MlmEval {
    /// Mean cross-entropy (nats) over the masked tokens.
    pub loss: f64,
    pub accuracy: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    pub masked_tokens: u64,
    pub sequences: u64,
}

/// Seed of the evaluation mask: fixed, independent of the run's seed, so numbers from different
/// runs on the same held-out sequences and mask rate compare.
pub const EVAL_MASK_SEED: u64 = 0x5EED_E7A1;

/// Evaluate `bert` on the sequences `indices` of `corpus`, each masked with an RNG derived from
/// [`EVAL_MASK_SEED`] and the sequence index only.
pub fn evaluate_mlm(
    bert: &BertMlm,
    corpus: &PackedCorpus,
    indices: &[usize],
    masker: &Masker,
    batch_size: usize,
    device: Device,
) -> Result<MlmEval> {
    let mut loss_sum = 0.0;
    let mut hits = 0.0;
    let mut count = 0.0;
    for chunk in indices.chunks(batch_size.max(1)) {
        let mut batch_parts = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let seq = corpus.get(i)?;
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[EVAL_MASK_SEED, i as u64]));
            batch_parts.push(collate_masked(masker, std::slice::from_ref(&seq), &mut rng));
        }
        let cat = |f: fn(&MlmBatch) -> &Tensor| Tensor::cat(&batch_parts.iter().map(f).collect::<Vec<_>>(), 0);
        let b = MlmBatch {
            input_ids: cat(|b| &b.input_ids),
            positions: cat(|b| &b.positions),
            targets: cat(|b| &b.targets),
            valid: cat(|b| &b.valid),
        }
        .to(device)?;
        let (l, h, n) = tch::no_grad(|| {
            let logits = bert.mlm_logits(&b.input_ids, &b.positions, false).to_kind(Kind::Float);
            let n = b.valid.to_kind(Kind::Float).sum(Kind::Float).double_value(&[]);
            let l = masked_cross_entropy(&logits, &b.targets, &b.valid).double_value(&[]) * n;
            let h = masked_accuracy(&logits, &b.targets, &b.valid).double_value(&[]) * n;
            (l, h, n)
        });
        loss_sum += l;
        hits += h;
        count += n;
    }
    let loss = if count > 0.0 { loss_sum / count } else { f64::NAN };
    Ok(MlmEval {
        loss,
        accuracy: if count > 0.0 { hits / count } else { f64::NAN },
        perplexity: loss.exp(),
        masked_tokens: count as u64,
        sequences: indices.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::masking::MaskingConfig;
    use crate::data::packing::{PackedSeq, PackedWriter};
    use crate::data::tokenizer::SpecialIds;

    #[test]
    fn loss_starts_near_log_vocab_and_eval_is_deterministic() {
        let special = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
        let v = 64;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.bin");
        let mut w = PackedWriter::create(&path, 16, special).unwrap();
        for k in 0..8u32 {
            let mut ids = vec![2];
            ids.extend((0..14).map(|j| 5 + (k * 7 + j) % 59));
            ids.push(3);
            w.write(&PackedSeq { ids, word_starts: vec![true; 16] }).unwrap();
        }
        w.finish().unwrap();
        let corpus = PackedCorpus::open(&path).unwrap();
        let masker = Masker::new(MaskingConfig { rate: 0.25, ..Default::default() }, special, v, 16).unwrap();
        let _rng = ssl_core::rng::torch_rng(0);
        let cfg = BertConfig { vocab_size: v as i64, max_position: 16, ..BertConfig::preset("tiny").unwrap() };
        let obj = MlmObjective::new(&cfg, Device::Cpu).unwrap();
        let idx: Vec<usize> = (0..8).collect();
        let a = evaluate_mlm(&obj.bert, &corpus, &idx, &masker, 3, Device::Cpu).unwrap();
        let b = evaluate_mlm(&obj.bert, &corpus, &idx, &masker, 8, Device::Cpu).unwrap();
        assert_eq!(a.masked_tokens, 8 * 4);
        assert!((a.loss - b.loss).abs() < 1e-5, "batching changed the evaluation");
        // Small random init: close to uniform over the vocabulary.
        assert!((a.loss - (v as f64).ln()).abs() < 0.3, "{}", a.loss);
        assert!((a.perplexity - a.loss.exp()).abs() < 1e-9);
    }
}
