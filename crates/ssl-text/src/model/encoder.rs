//! The text encoder as ssl-core's evaluation protocol sees it.
//!
//! Protocol inputs are `[N, L]` int64 token ids padded with `[PAD]` = 0; the encoder derives the
//! attention mask from `ids != 0` and its features are the mean of the last hidden states over
//! the non-padding tokens. The raw-input baseline is TF-IDF over the WordPiece vocabulary
//! (special tokens excluded): raw counts times the smoothed IDF `ln((1 + n) / (1 + df)) + 1`
//! (scikit-learn's default), each row scaled to unit L2 norm; the protocol's logistic regression
//! on it is the classic TF-IDF text classifier. The IDF is fitted with
//! [`TextEncoderFactory::with_idf_from`] on the training texts (labels are not used); without
//! it every IDF is 1.
//!
//! ```
//! use ssl_core::eval::{Encoder, EncoderFactory};
//! use ssl_text::model::encoder::TextEncoderFactory;
//! use ssl_text::model::BertConfig;
//! use tch::{Device, Tensor};
//! let cfg = BertConfig { vocab_size: 20, max_position: 8, ..BertConfig::preset("tiny").unwrap() };
//! let factory = TextEncoderFactory::new(cfg, None);
//! let enc = factory.scratch(Device::Cpu, 0).unwrap();
//! let ids = Tensor::from_slice(&[2i64, 9, 9, 3, 0, 0]).view([1, 6]);
//! assert_eq!(enc.features(&ids, false).size(), [1, 128]);
//! let tfidf = factory.raw_features(&ids);
//! assert_eq!(tfidf.size(), [1, 20]);
//! // One non-special token (id 9, twice): the unit-norm row is 1 there.
//! assert!((tfidf.double_value(&[0, 9]) - 1.0).abs() < 1e-6);
//! ```
use crate::data::tokenizer::SpecialIds;
use crate::model::{BertConfig, Pooling};
use crate::objectives::mlm::MlmObjective;
use ssl_core::checkpoint;
use ssl_core::error::CoreError;
use ssl_core::eval::{Encoder, EncoderFactory};
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A BERT whose features are mean-pooled hidden states ([`Pooling`]).
pub struct TextEncoder {
    model: MlmObjective,
    pooling: Pooling,
}

impl TextEncoder {
    pub fn new(model: MlmObjective) -> Self {
        Self { model, pooling: Pooling::Last }
    }

    /// Pool these hidden states into features.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }
}

impl Encoder for TextEncoder {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        // Padding is trailing: drop the columns that are padding in every row (same result, less work).
        let used = xs.ne(0).any_dim(0, false).nonzero();
        let len = if used.numel() == 0 { 1 } else { used.max().int64_value(&[]) + 1 };
        self.model.bert.pooled(&xs.narrow(1, 0, len), train, self.pooling)
    }

    fn feature_dim(&self) -> i64 {
        self.model.bert.config().hidden
    }

    fn var_store(&self) -> &VarStore {
        &self.model.vs
    }

    /// Embeddings are depth 0, `bert.encoder.layer.<i>` depth `i + 1`, everything above the top
    /// layer (the MLM head, unused by features) depth `layers`.
    fn layer_of(&self, name: &str) -> Option<(usize, usize)> {
        let top = self.model.bert.config().layers as usize;
        Some(if name.starts_with("bert.embeddings.") {
            (0, top)
        } else if let Some(rest) = name.strip_prefix("bert.encoder.layer.") {
            let i: usize = rest.split('.').next()?.parse().ok()?;
            (i + 1, top)
        } else {
            (top, top)
        })
    }
}

/// Builds pretrained (from a checkpoint or run directory) and scratch encoders.
pub struct TextEncoderFactory {
    cfg: BertConfig,
    weights: Option<PathBuf>,
    /// Special-token ids, excluded from the TF-IDF baseline.
    special: SpecialIds,
    /// Inverse document frequency per vocabulary entry (empty: all 1).
    idf: Vec<f32>,
    pooling: Pooling,
}

impl TextEncoderFactory {
    /// `weights`: a run directory or checkpoint; `None` makes `pretrained` an error.
    pub fn new(cfg: BertConfig, weights: Option<PathBuf>) -> Self {
        Self {
            cfg,
            weights,
            special: SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 },
            idf: Vec::new(),
            pooling: Pooling::Last,
        }
    }

    /// The hidden states the features average (default: the last layer's).
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// Fit the TF-IDF baseline's inverse document frequencies on these `[N, L]` token ids (one
    /// row per document): `idf = ln((1 + N) / (1 + df)) + 1`.
    pub fn with_idf_from(mut self, ids: &Tensor) -> Self {
        let v = self.cfg.vocab_size;
        let n = ids.size()[0];
        let ids = ids.to_device(Device::Cpu).to_kind(Kind::Int64).clamp(0, v - 1);
        let present = Tensor::zeros([n, v], (Kind::Bool, Device::Cpu)).scatter_value(1, &ids, 1);
        let df = Vec::<f32>::try_from(present.sum_dim_intlist(0, false, Kind::Float)).unwrap_or_default();
        self.idf = df.iter().map(|d| ((1.0 + n as f32) / (1.0 + d)).ln() + 1.0).collect();
        self
    }

    /// The fitted inverse document frequencies (empty before [`Self::with_idf_from`]).
    pub fn idf(&self) -> &[f32] {
        &self.idf
    }

    /// Use these special-token ids (default: the order of [`crate::data::tokenizer::SPECIAL_TOKENS`]).
    pub fn with_special(mut self, special: SpecialIds) -> Self {
        self.special = special;
        self
    }
}

fn core_err(e: crate::error::TextError) -> CoreError {
    CoreError::InvalidArgument(e.to_string())
}

impl EncoderFactory for TextEncoderFactory {
    fn pretrained(&self, device: Device) -> ssl_core::Result<Box<dyn Encoder>> {
        let path = self
            .weights
            .as_ref()
            .ok_or_else(|| CoreError::InvalidArgument("no pretrained weights were given".into()))?;
        let model = MlmObjective::new(&self.cfg, device).map_err(core_err)?;
        checkpoint::load_weights(path, &model.vs)?;
        Ok(Box::new(TextEncoder::new(model).with_pooling(self.pooling)))
    }

    fn scratch(&self, device: Device, seed: u64) -> ssl_core::Result<Box<dyn Encoder>> {
        let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(seed, "scratch-init"));
        let model = MlmObjective::new(&self.cfg, device).map_err(core_err)?;
        Ok(Box::new(TextEncoder::new(model).with_pooling(self.pooling)))
    }

    fn raw_features(&self, xs: &Tensor) -> Tensor {
        let n = xs.size()[0];
        let v = self.cfg.vocab_size;
        let ids = xs.to_kind(Kind::Int64).clamp(0, v - 1);
        let counts = Tensor::zeros([n, v], (Kind::Float, xs.device())).scatter_add(
            1,
            &ids,
            &Tensor::ones(ids.size(), (Kind::Float, xs.device())),
        );
        let mut weight = if self.idf.len() == v as usize { self.idf.clone() } else { vec![1f32; v as usize] };
        let s = self.special;
        for id in [s.pad, s.unk, s.cls, s.sep, s.mask] {
            if let Some(w) = weight.get_mut(id as usize) {
                *w = 0.0;
            }
        }
        let tfidf = counts * Tensor::from_slice(&weight).to_device(xs.device()).unsqueeze(0);
        let norm = tfidf.square().sum_dim_intlist(1, true, Kind::Float).sqrt().clamp_min(1e-12);
        tfidf / norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scikit-learn's smoothed IDF, checked by hand:
    /// ```python
    /// from sklearn.feature_extraction.text import TfidfVectorizer
    /// v = TfidfVectorizer(token_pattern=r"\S+").fit(["a b", "a"])
    /// v.idf_  # a: 1.0, b: ln(3/2) + 1 = 1.405465
    /// ```
    #[test]
    fn idf_matches_the_smoothed_formula_and_rows_have_unit_norm() {
        let cfg = BertConfig { vocab_size: 10, max_position: 4, ..BertConfig::preset("tiny").unwrap() };
        // Rows: [CLS] a b [SEP] and [CLS] a [SEP] [PAD], with a = 5, b = 6.
        let ids = Tensor::from_slice(&[2i64, 5, 6, 3, 2, 5, 3, 0]).view([2, 4]);
        let f = TextEncoderFactory::new(cfg, None).with_idf_from(&ids);
        assert!((f.idf()[5] - 1.0).abs() < 1e-6);
        assert!((f.idf()[6] - (1.5f32.ln() + 1.0)).abs() < 1e-6);
        let x = f.raw_features(&ids);
        let norms = Vec::<f64>::try_from(x.square().sum_dim_intlist(1, false, Kind::Double).sqrt()).unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-6), "{norms:?}");
        // Special tokens carry no weight; b outweighs a in the first row.
        assert_eq!(x.double_value(&[0, 2]), 0.0);
        assert!(x.double_value(&[0, 6]) > x.double_value(&[0, 5]));
    }
}
