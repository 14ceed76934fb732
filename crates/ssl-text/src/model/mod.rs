//! A BERT encoder with a tied masked-language-model head, in tch `nn`.
//!
//! Variables are named exactly as HuggingFace's `BertForMaskedLM` names them
//! (`bert.embeddings.word_embeddings.weight`, `bert.encoder.layer.0.attention.self.query.weight`,
//! `cls.predictions.transform.dense.weight`, ...), so a post-LayerNorm model exports to
//! `transformers` without renaming. The output projection of the MLM head is the word-embedding
//! matrix itself (tied); only its bias `cls.predictions.bias` is a separate variable.
//!
//! Attention runs through LibTorch's `scaled_dot_product_attention`; the attention mask is derived
//! from the input ids (`[PAD]` = 0 is never attended to).
//!
//! ```
//! use ssl_text::model::{BertConfig, BertMlm};
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//! let cfg = BertConfig { vocab_size: 50, max_position: 16, ..BertConfig::preset("tiny").unwrap() };
//! let vs = VarStore::new(Device::Cpu);
//! let bert = BertMlm::new(&vs.root(), &cfg).unwrap();
//! let ids = Tensor::from_slice(&[2i64, 7, 8, 9, 3, 0]).view([1, 6]);
//! let hidden = bert.encode(&ids, false);
//! assert_eq!(hidden.size(), [1, 6, 128]);
//! let positions = Tensor::from_slice(&[1i64, 3]).view([1, 2]);
//! assert_eq!(bert.mlm_logits(&ids, &positions, false).size(), [1, 2, 50]);
//! assert_eq!(bert.mean_pooled(&ids, false).size(), [1, 128]);
//! ```
pub mod encoder;
pub mod flops;

use crate::error::{Result, TextError};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Which hidden states the sentence features average (see [`BertMlm::pooled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Pooling {
    /// The last layer's hidden states (what a fine-tuning head on top of BERT sees).
    #[default]
    Last,
    /// The mean of every layer's hidden states, embedding output included: small MLM models
    /// keep much of their lexical knowledge in the lower layers.
    Layers,
}

impl std::str::FromStr for Pooling {
    type Err = TextError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" => Ok(Self::Last),
            "layers" => Ok(Self::Layers),
            other => Err(TextError::InvalidArgument(format!("unknown pooling {other:?} (last or layers)"))),
        }
    }
}

/// The shape of a BERT encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden: i64,
    pub layers: i64,
    pub heads: i64,
    pub intermediate: i64,
    /// Longest sequence (learned position embeddings).
    pub max_position: i64,
    pub type_vocab_size: i64,
    /// Pre-LayerNorm blocks (plus a final LayerNorm) instead of BERT's post-LayerNorm.
    /// Only post-LN models can be exported to HuggingFace `BertForMaskedLM`.
    pub pre_ln: bool,
    /// Dropout on embeddings, attention output and feed-forward output (Cramming: 0).
    pub dropout: f64,
    pub layer_norm_eps: f64,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            hidden: 128,
            layers: 2,
            heads: 2,
            intermediate: 512,
            max_position: 512,
            type_vocab_size: 2,
            pre_ln: false,
            dropout: 0.0,
            layer_norm_eps: 1e-12,
        }
    }
}

impl BertConfig {
    /// The named sizes of Turc et al.: `tiny` (2 layers x 128), `mini` (4x256), `small` (4x512);
    /// heads = hidden / 64, intermediate = 4 x hidden.
    pub fn preset(name: &str) -> Result<Self> {
        let (layers, hidden) = match name {
            "tiny" => (2, 128),
            "mini" => (4, 256),
            "small" => (4, 512),
            other => {
                return Err(TextError::InvalidArgument(format!(
                    "unknown preset `{other}` (expected tiny, mini or small)"
                )))
            }
        };
        Ok(Self { layers, hidden, heads: hidden / 64, intermediate: 4 * hidden, ..Default::default() })
    }

    /// Check the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let positive = [self.vocab_size, self.hidden, self.layers, self.heads, self.intermediate, self.max_position];
        if positive.iter().any(|&v| v <= 0) || self.type_vocab_size <= 0 {
            return Err(TextError::InvalidArgument(format!("every model size must be positive: {self:?}")));
        }
        if self.hidden % self.heads != 0 {
            return Err(TextError::InvalidArgument(format!(
                "hidden size {} is not divisible by {} heads",
                self.hidden, self.heads
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TextError::InvalidArgument(format!("dropout {} must be in [0, 1)", self.dropout)));
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> i64 {
        let h = self.hidden;
        let emb = (self.vocab_size + self.max_position + self.type_vocab_size) * h + 2 * h;
        let layer =
            4 * (h * h + h) + 2 * 2 * h + (h * self.intermediate + self.intermediate) + (self.intermediate * h + h);
        let head = h * h + h + 2 * h + self.vocab_size;
        let final_ln = if self.pre_ln { 2 * h } else { 0 };
        emb + self.layers * layer + head + final_ln
    }
}

fn init() -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev: 0.02 }
}

fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    nn::linear(p, i, o, nn::LinearConfig { ws_init: init(), bs_init: Some(nn::Init::Const(0.0)), bias: true })
}

fn layer_norm(p: nn::Path, h: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![h], nn::LayerNormConfig { eps, ..Default::default() })
}

struct Block {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    attn_ln: nn::LayerNorm,
    inter: nn::Linear,
    out: nn::Linear,
    out_ln: nn::LayerNorm,
}

/// BERT encoder plus MLM head.
pub struct BertMlm {
    cfg: BertConfig,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_ln: nn::LayerNorm,
    blocks: Vec<Block>,
    final_ln: Option<nn::LayerNorm>,
    head_dense: nn::Linear,
    head_ln: nn::LayerNorm,
    head_bias: Tensor,
}

impl BertMlm {
    /// Create the variables under `root` (names as in HuggingFace `BertForMaskedLM`).
    pub fn new(root: &nn::Path, cfg: &BertConfig) -> Result<Self> {
        cfg.validate()?;
        let (h, eps) = (cfg.hidden, cfg.layer_norm_eps);
        let emb = root / "bert" / "embeddings";
        let word = emb.sub("word_embeddings").var("weight", &[cfg.vocab_size, h], init());
        let position = emb.sub("position_embeddings").var("weight", &[cfg.max_position, h], init());
        let token_type = emb.sub("token_type_embeddings").var("weight", &[cfg.type_vocab_size, h], init());
        let emb_ln = layer_norm(&emb / "LayerNorm", h, eps);
        let enc = root / "bert" / "encoder";
        let blocks = (0..cfg.layers)
            .map(|i| {
                let l = &enc / "layer" / i;
                Block {
                    query: linear(&l / "attention" / "self" / "query", h, h),
                    key: linear(&l / "attention" / "self" / "key", h, h),
                    value: linear(&l / "attention" / "self" / "value", h, h),
                    attn_out: linear(&l / "attention" / "output" / "dense", h, h),
                    attn_ln: layer_norm(&l / "attention" / "output" / "LayerNorm", h, eps),
                    inter: linear(&l / "intermediate" / "dense", h, cfg.intermediate),
                    out: linear(&l / "output" / "dense", cfg.intermediate, h),
                    out_ln: layer_norm(&l / "output" / "LayerNorm", h, eps),
                }
            })
            .collect();
        let final_ln = cfg.pre_ln.then(|| layer_norm(&enc / "final_layer_norm", h, eps));
        let pred = root / "cls" / "predictions";
        let head_dense = linear(&pred / "transform" / "dense", h, h);
        let head_ln = layer_norm(&pred / "transform" / "LayerNorm", h, eps);
        let head_bias = pred.var("bias", &[cfg.vocab_size], nn::Init::Const(0.0));
        Ok(Self {
            cfg: cfg.clone(),
            word,
            position,
            token_type,
            emb_ln,
            blocks,
            final_ln,
            head_dense,
            head_ln,
            head_bias,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The (tied) word-embedding matrix `[V, H]`.
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word
    }

    fn attention(&self, b: &Block, x: &Tensor, mask: &Tensor) -> Tensor {
        let (bs, len, h) = x.size3().expect("hidden states are [B, L, H]");
        let nh = self.cfg.heads;
        let split = |t: Tensor| t.view([bs, len, nh, h / nh]).transpose(1, 2);
        let q = split(b.query.forward(x));
        let k = split(b.key.forward(x));
        let v = split(b.value.forward(x));
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false);
        b.attn_out.forward(&a.transpose(1, 2).reshape([bs, len, h]))
    }

    /// Last hidden states `[B, L, H]` of token ids `[B, L]` (int64, `[PAD]` = 0).
    pub fn encode(&self, ids: &Tensor, train: bool) -> Tensor {
        let mut states = self.encode_all(ids, train);
        states.pop().expect("the embedding output is always there")
    }

    /// Every hidden state `[B, L, H]`: the embedding output, then each block's output (the last
    /// one after the final LayerNorm of pre-LN models), `layers + 1` in all.
    pub fn encode_all(&self, ids: &Tensor, train: bool) -> Vec<Tensor> {
        let len = ids.size()[1];
        let p = if train { self.cfg.dropout } else { 0.0 };
        let positions = Tensor::arange(len, (Kind::Int64, ids.device()));
        let x = Tensor::embedding(&self.word, ids, -1, false, false)
            + Tensor::embedding(&self.position, &positions, -1, false, false).unsqueeze(0)
            + self.token_type.get(0);
        let mut x = self.emb_ln.forward(&x).dropout(p, train);
        let mut states = vec![x.shallow_clone()];
        // [B, 1, 1, L]: true where a key may be attended to.
        let mask = ids.ne(0).unsqueeze(1).unsqueeze(1);
        for b in &self.blocks {
            if self.cfg.pre_ln {
                // Residual sums build new tensors: an in-place `+=` would overwrite what LayerNorm's
                // backward pass still needs.
                let a = self.attention(b, &b.attn_ln.forward(&x), &mask).dropout(p, train);
                let y = &x + a;
                let f = b.out.forward(&b.inter.forward(&b.out_ln.forward(&y)).gelu("none")).dropout(p, train);
                x = &y + f;
            } else {
                let a = self.attention(b, &x, &mask).dropout(p, train);
                x = b.attn_ln.forward(&(x + a));
                let f = b.out.forward(&b.inter.forward(&x).gelu("none")).dropout(p, train);
                x = b.out_ln.forward(&(x + f));
            }
            states.push(x.shallow_clone());
        }
        if let (Some(ln), Some(last)) = (&self.final_ln, states.last_mut()) {
            *last = ln.forward(&x);
        }
        states
    }

    fn head(&self, hidden: &Tensor) -> Tensor {
        let t = self.head_ln.forward(&self.head_dense.forward(hidden).gelu("none"));
        t.matmul(&self.word.tr()) + &self.head_bias
    }

    /// MLM logits `[B, S, V]` at `positions` `[B, S]` only (the head never sees other positions).
    pub fn mlm_logits(&self, ids: &Tensor, positions: &Tensor, train: bool) -> Tensor {
        let hidden = self.encode(ids, train);
        let h = self.cfg.hidden;
        let (bs, s) = positions.size2().expect("positions are [B, S]");
        let gathered = hidden.gather(1, &positions.unsqueeze(-1).expand([bs, s, h], false), false);
        self.head(&gathered)
    }

    /// MLM logits `[B, L, V]` at every position.
    pub fn mlm_logits_all(&self, ids: &Tensor) -> Tensor {
        self.head(&self.encode(ids, false))
    }

    /// Mean of the last hidden states over the non-`[PAD]` tokens: `[B, H]`.
    pub fn mean_pooled(&self, ids: &Tensor, train: bool) -> Tensor {
        self.pooled(ids, train, Pooling::Last)
    }

    /// Features of `ids` `[B, L]` -> `[B, H]`: hidden states averaged over the non-padding
    /// tokens, from the last layer or from every layer ([`Pooling`]).
    pub fn pooled(&self, ids: &Tensor, train: bool, pooling: Pooling) -> Tensor {
        let hidden = match pooling {
            Pooling::Last => self.encode(ids, train),
            Pooling::Layers => {
                let states = self.encode_all(ids, train);
                Tensor::stack(&states, 0).mean_dim(0, false, states[0].kind())
            }
        };
        let kind = hidden.kind();
        let keep = ids.ne(0).to_kind(kind).unsqueeze(-1);
        (hidden * &keep).sum_dim_intlist(1, false, kind) / keep.sum_dim_intlist(1, false, kind).clamp_min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn presets_and_parameter_count() {
        for (name, layers, hidden) in [("tiny", 2, 128), ("mini", 4, 256), ("small", 4, 512)] {
            let cfg = BertConfig::preset(name).unwrap();
            assert_eq!(
                (cfg.layers, cfg.hidden, cfg.heads, cfg.intermediate),
                (layers, hidden, hidden / 64, 4 * hidden)
            );
        }
        assert!(BertConfig::preset("huge").is_err());
        let cfg = BertConfig { vocab_size: 100, max_position: 32, ..BertConfig::preset("tiny").unwrap() };
        for pre_ln in [false, true] {
            let cfg = BertConfig { pre_ln, ..cfg.clone() };
            let vs = VarStore::new(Device::Cpu);
            let _ = BertMlm::new(&vs.root(), &cfg).unwrap();
            let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
            assert_eq!(n, cfg.num_parameters());
        }
        assert!(BertConfig { heads: 3, ..cfg.clone() }.validate().is_err());
    }

    #[test]
    fn padding_does_not_change_real_tokens() {
        let cfg = BertConfig { vocab_size: 40, max_position: 16, ..BertConfig::preset("tiny").unwrap() };
        let vs = VarStore::new(Device::Cpu);
        let bert = BertMlm::new(&vs.root(), &cfg).unwrap();
        let short = Tensor::from_slice(&[2i64, 7, 8, 3]).view([1, 4]);
        let padded = Tensor::from_slice(&[2i64, 7, 8, 3, 0, 0]).view([1, 6]);
        let a = bert.encode(&short, false);
        let b = bert.encode(&padded, false).narrow(1, 0, 4);
        assert!(a.allclose(&b, 1e-5, 1e-5, false));
        let pa = bert.mean_pooled(&short, false);
        let pb = bert.mean_pooled(&padded, false);
        assert!(pa.allclose(&pb, 1e-5, 1e-5, false));
    }

    #[test]
    fn gathered_logits_match_full_logits() {
        let cfg = BertConfig { vocab_size: 40, max_position: 16, ..BertConfig::preset("tiny").unwrap() };
        let vs = VarStore::new(Device::Cpu);
        let bert = BertMlm::new(&vs.root(), &cfg).unwrap();
        let ids = Tensor::from_slice(&[2i64, 7, 8, 9, 10, 3]).view([1, 6]);
        let pos = Tensor::from_slice(&[4i64, 1]).view([1, 2]);
        let g = bert.mlm_logits(&ids, &pos, false);
        let full = bert.mlm_logits_all(&ids);
        assert!(g.get(0).get(0).allclose(&full.get(0).get(4), 1e-5, 1e-5, false));
        assert!(g.get(0).get(1).allclose(&full.get(0).get(1), 1e-5, 1e-5, false));
    }
}
