//! Import from a HuggingFace `transformers` directory: a `BertModel` or `BertForMaskedLM`
//! (`config.json` + `model.safetensors`), with or without the `bert.` prefix.
//!
//! - The shape comes from `config.json` (`model_type` `bert`, `hidden_act` `gelu`, absolute
//!   positions); anything else is refused with the reason.
//! - Every tensor must map onto ours, by name and shape, or the import fails naming it. Known
//!   tensors we have no use for are dropped: the pooler (`bert.pooler.*`, a `BertModel`'s
//!   sentence head that MLM does not train), the decoder weight (tied: it must equal the word
//!   embeddings) and the decoder bias (the same tensor as `cls.predictions.bias`).
//! - A checkpoint without the MLM head (`BertModel`) gets a fresh one, tied to the imported word
//!   embeddings as ours always is: the head's variables keep the initialisation they were
//!   created with.
//! - `pytorch_model.bin` is refused: it is a pickle, and loading one runs code from the file.
//!
//! ```no_run
//! # fn demo() -> ssl_text::Result<()> {
//! use ssl_text::interop::import::HfBert;
//! let hf = HfBert::read(std::path::Path::new("all-MiniLM-L6-v2"))?;
//! let model = ssl_text::objectives::mlm::MlmObjective::new(&hf.config, tch::Device::Cpu)?;
//! let fresh_head = hf.load_into(&model.vs)?;
//! # Ok(()) }
//! ```
use crate::error::{Result, TextError};
use crate::model::BertConfig;
use ssl_core::init::{HfDir, InitWeights};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

/// A HuggingFace BERT checkpoint read from a directory.
pub struct HfBert {
    pub dir: PathBuf,
    /// Our configuration of the same shape.
    pub config: BertConfig,
    /// The tensors, renamed to ours (`bert.` prefix, `cls.predictions.*` when present).
    pub tensors: Vec<(String, Tensor)>,
}

fn invalid(dir: &Path, msg: impl std::fmt::Display) -> TextError {
    TextError::InvalidArgument(format!("{}: {msg}", dir.display()))
}

impl HfBert {
    /// Read `config.json` and `model.safetensors` of `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let hf = HfDir::read(dir)?;
        let config = bert_config(dir, &hf.config)?;
        let tensors = rename(dir, hf.tensors, &config)?;
        Ok(Self { dir: dir.to_path_buf(), config, tensors })
    }

    /// Whether the checkpoint has the MLM head (`BertForMaskedLM`).
    pub fn has_head(&self) -> bool {
        self.tensors.iter().any(|(n, _)| n.starts_with("cls."))
    }

    /// The tensors as `--init-from` weights: every one must map, only the MLM head (`cls.`) may
    /// be missing (it is then initialised fresh, tied to the word embeddings).
    pub fn init_weights(&self) -> InitWeights {
        let kind = if self.has_head() { "HF BertForMaskedLM" } else { "HF BertModel" };
        InitWeights {
            source: self.dir.clone(),
            kind: kind.into(),
            tensors: self.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
            fresh_prefixes: vec!["cls.".into()],
        }
    }

    /// Copy the tensors into the variables of `vs` (an [`crate::objectives::mlm::MlmObjective`]'s),
    /// as [`InitWeights::load_into`] does. Returns the fresh (MLM head) variables' names.
    pub fn load_into(&self, vs: &VarStore) -> Result<Vec<String>> {
        Ok(self.init_weights().load_into(vs)?)
    }
}

fn int(dir: &Path, v: &serde_json::Value, key: &str) -> Result<i64> {
    v.get(key).and_then(|x| x.as_i64()).ok_or_else(|| invalid(dir, format!("config.json has no integer `{key}`")))
}

/// Our configuration for an HF BERT `config.json`, or the reason it is not one we can run.
pub fn bert_config(dir: &Path, v: &serde_json::Value) -> Result<BertConfig> {
    let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
    if model_type != "bert" {
        return Err(invalid(dir, format!("model_type `{model_type}` is not `bert` (BertModel or BertForMaskedLM)")));
    }
    let act = v.get("hidden_act").and_then(|m| m.as_str()).unwrap_or("gelu");
    if act != "gelu" {
        return Err(invalid(dir, format!("hidden_act `{act}`: our BERT uses exact GELU (`gelu`)")));
    }
    let pos = v.get("position_embedding_type").and_then(|m| m.as_str()).unwrap_or("absolute");
    if pos != "absolute" {
        return Err(invalid(dir, format!("position_embedding_type `{pos}`: only absolute positions are ours")));
    }
    let cfg = BertConfig {
        vocab_size: int(dir, v, "vocab_size")?,
        hidden: int(dir, v, "hidden_size")?,
        layers: int(dir, v, "num_hidden_layers")?,
        heads: int(dir, v, "num_attention_heads")?,
        intermediate: int(dir, v, "intermediate_size")?,
        max_position: int(dir, v, "max_position_embeddings")?,
        type_vocab_size: v.get("type_vocab_size").and_then(|x| x.as_i64()).unwrap_or(2),
        pre_ln: false,
        dropout: 0.0,
        layer_norm_eps: v.get("layer_norm_eps").and_then(|x| x.as_f64()).unwrap_or(1e-12),
    };
    cfg.validate().map_err(|e| invalid(dir, e))?;
    Ok(cfg)
}

/// HF names to ours: the `bert.` prefix added where missing, known extras dropped, anything
/// unknown an error naming it.
fn rename(dir: &Path, raw: Vec<(String, Tensor)>, cfg: &BertConfig) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    let mut decoder = None;
    for (name, t) in raw {
        let ours =
            if name.starts_with("bert.") || name.starts_with("cls.") { name.clone() } else { format!("bert.{name}") };
        let known = ours.starts_with("bert.embeddings.")
            || ours.starts_with("bert.encoder.layer.")
            || ours.starts_with("cls.predictions.");
        match ours.as_str() {
            n if n.starts_with("bert.pooler.") || n.ends_with("position_ids") => continue,
            "cls.predictions.decoder.bias" => continue,
            "cls.predictions.decoder.weight" => decoder = Some(t),
            _ if known => out.push((ours, t)),
            _ => return Err(invalid(dir, format!("tensor `{name}` does not map onto our BERT"))),
        }
    }
    if let Some(d) = decoder {
        let word = out.iter().find(|(n, _)| n == "bert.embeddings.word_embeddings.weight").map(|(_, t)| t);
        if !word.is_some_and(|w| w.size() == d.size() && w.equal(&d)) {
            return Err(invalid(
                dir,
                "tensor `cls.predictions.decoder.weight` differs from the word embeddings: our MLM head is tied",
            ));
        }
    }
    if !out.iter().any(|(n, _)| n == "bert.embeddings.word_embeddings.weight") {
        return Err(invalid(dir, format!("no word embeddings among the tensors (a {}-layer BERT?)", cfg.layers)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_architectures_are_refused() {
        let d = std::path::Path::new("m");
        let v = serde_json::json!({"model_type": "roberta", "vocab_size": 10});
        assert!(bert_config(d, &v).unwrap_err().to_string().contains("roberta"));
        let v = serde_json::json!({"model_type": "bert", "hidden_act": "relu"});
        assert!(bert_config(d, &v).unwrap_err().to_string().contains("relu"));
    }
}
