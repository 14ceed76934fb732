//! Export to a HuggingFace `transformers` directory: `model.safetensors`, `config.json`,
//! `tokenizer.json` and `tokenizer_config.json`.
//!
//! - A post-LayerNorm model is HF's `BertForMaskedLM`, names unchanged.
//! - A pre-LayerNorm model is HF's `RobertaPreLayerNormForMaskedLM`, exactly: an embedding
//!   LayerNorm, blocks that normalise the input of attention (`attention.LayerNorm`) and of the
//!   feed-forward (`intermediate.LayerNorm`) and add to the un-normalised residual, a final
//!   LayerNorm (`roberta_prelayernorm.LayerNorm`), and the same MLM head. The one difference is
//!   where positions start: RoBERTa numbers real tokens from `pad + 1`, so our position table is
//!   written shifted by `pad + 1` rows (the rows before it are zeros, used only by padding).
//!   Our inputs are right-padded, so every real token gets the position it was trained with.
//!
//! The MLM decoder weight is tied to the word embeddings, and safetensors refuses tensors that
//! share memory, so it is written once (as the word embeddings); `transformers` ties it again on
//! load.
//!
//! ```no_run
//! # use ssl_text::{interop::export::export_hf, model::BertConfig, objectives::mlm::MlmObjective, data::tokenizer::TextTokenizer};
//! # fn demo(tok: &TextTokenizer) -> ssl_text::Result<()> {
//! let cfg = BertConfig { vocab_size: tok.vocab_size() as i64, max_position: 64, ..BertConfig::preset("tiny")? };
//! let model = MlmObjective::new(&cfg, tch::Device::Cpu)?;
//! export_hf(std::path::Path::new("exported"), &model, tok)?;
//! // Python: BertForMaskedLM.from_pretrained("exported")
//! // (AutoModelForMaskedLM.from_pretrained works for both post-LN and pre-LN exports)
//! # Ok(()) }
//! ```
use crate::data::tokenizer::TextTokenizer;
use crate::error::{Result, TextError};
use crate::objectives::mlm::MlmObjective;
use ssl_core::interop::Renamer;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Write `model` and `tokenizer` as a HuggingFace BERT directory.
pub fn export_hf(dir: &Path, model: &MlmObjective, tokenizer: &TextTokenizer) -> Result<()> {
    let cfg = model.bert.config();
    if tokenizer.vocab_size() as i64 != cfg.vocab_size {
        return Err(TextError::InvalidArgument(format!(
            "the tokenizer has {} entries but the model {}",
            tokenizer.vocab_size(),
            cfg.vocab_size
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| TextError::io(dir, e))?;
    let mut named: Vec<(String, tch::Tensor)> = model
        .vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let s = tokenizer.special();
    if cfg.pre_ln {
        named = roberta_prelayernorm_tensors(&named, cfg, s.pad)?;
    }
    let weights = dir.join("model.safetensors");
    tch::Tensor::write_safetensors(&named, &weights).map_err(TextError::Torch)?;

    let (architecture, model_type, positions) = match cfg.pre_ln {
        false => ("BertForMaskedLM", "bert", cfg.max_position),
        true => ("RobertaPreLayerNormForMaskedLM", "roberta-prelayernorm", cfg.max_position + s.pad + 1),
    };
    let config = serde_json::json!({
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": positions,
        "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": s.pad,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
    });
    let write_json = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = dir.join(name);
        let bytes = serde_json::to_vec_pretty(v).map_err(|e| TextError::format(&p, e.to_string()))?;
        std::fs::write(&p, bytes).map_err(|e| TextError::io(&p, e))
    };
    write_json("config.json", &config)?;
    tokenizer.save(&dir.join("tokenizer.json"))?;
    let tok_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": true,
        "model_max_length": cfg.max_position,
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    });
    write_json("tokenizer_config.json", &tok_config)
}

/// Our pre-LN BERT's tensors (BERT names) with `RobertaPreLayerNormForMaskedLM` names; the
/// position table shifted down by `pad + 1` rows. Every tensor must map.
pub fn roberta_prelayernorm_tensors(
    named: &[(String, Tensor)],
    cfg: &crate::model::BertConfig,
    pad: i64,
) -> Result<Vec<(String, Tensor)>> {
    let mut r = Renamer::new(named, "");
    let base = "roberta_prelayernorm";
    for e in ["word_embeddings.weight", "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"] {
        r.rename(&format!("bert.embeddings.{e}"), format!("{base}.embeddings.{e}"))?;
    }
    let pos = r.get("bert.embeddings.position_embeddings.weight")?;
    let shifted = Tensor::cat(&[Tensor::zeros([pad + 1, cfg.hidden], (Kind::Float, Device::Cpu)), pos], 0);
    r.put(format!("{base}.embeddings.position_embeddings.weight"), shifted);
    for i in 0..cfg.layers {
        let (ours, theirs) = (format!("bert.encoder.layer.{i}"), format!("{base}.encoder.layer.{i}"));
        for w in ["weight", "bias"] {
            for (o, t) in [
                ("attention.self.query", "attention.self.query"),
                ("attention.self.key", "attention.self.key"),
                ("attention.self.value", "attention.self.value"),
                ("attention.output.dense", "attention.output.dense"),
                // Our pre-LN block keeps BERT's names for its norms: the one before attention is
                // `attention.output.LayerNorm`, the one before the feed-forward `output.LayerNorm`.
                ("attention.output.LayerNorm", "attention.LayerNorm"),
                ("output.LayerNorm", "intermediate.LayerNorm"),
                ("intermediate.dense", "intermediate.dense"),
                ("output.dense", "output.dense"),
            ] {
                r.rename(&format!("{ours}.{o}.{w}"), format!("{theirs}.{t}.{w}"))?;
            }
        }
    }
    for w in ["weight", "bias"] {
        r.rename(&format!("bert.encoder.final_layer_norm.{w}"), format!("{base}.LayerNorm.{w}"))?;
        r.rename(&format!("cls.predictions.transform.dense.{w}"), format!("lm_head.dense.{w}"))?;
        r.rename(&format!("cls.predictions.transform.LayerNorm.{w}"), format!("lm_head.layer_norm.{w}"))?;
    }
    r.rename("cls.predictions.bias", "lm_head.bias")?;
    Ok(r.finish()?)
}
