//! Export to a HuggingFace `transformers` directory: `model.safetensors` with `BertForMaskedLM`
//! tensor names, `config.json`, `tokenizer.json` and `tokenizer_config.json`.
//!
//! The MLM decoder weight is tied to the word embeddings, and safetensors refuses tensors that
//! share memory, so it is written once (as `bert.embeddings.word_embeddings.weight`);
//! `transformers` ties it again on load. Only post-LayerNorm models can be exported: HF's BERT has
//! no pre-LN variant.
//!
//! ```no_run
//! # use ssl_text::{export::export_hf, model::BertConfig, objective::MlmObjective, tokenizer::TextTokenizer};
//! # fn demo(tok: &TextTokenizer) -> ssl_text::Result<()> {
//! let cfg = BertConfig { vocab_size: tok.vocab_size() as i64, max_position: 64, ..BertConfig::preset("tiny")? };
//! let model = MlmObjective::new(&cfg, tch::Device::Cpu)?;
//! export_hf(std::path::Path::new("exported"), &model, tok)?;
//! // Python: BertForMaskedLM.from_pretrained("exported")
//! # Ok(()) }
//! ```
use crate::error::{Result, TextError};
use crate::objective::MlmObjective;
use crate::tokenizer::TextTokenizer;
use std::path::Path;
use tch::{Device, Kind};

/// Write `model` and `tokenizer` as a HuggingFace BERT directory.
pub fn export_hf(dir: &Path, model: &MlmObjective, tokenizer: &TextTokenizer) -> Result<()> {
    let cfg = model.bert.config();
    if cfg.pre_ln {
        return Err(TextError::InvalidArgument(
            "a pre-LayerNorm model cannot be exported to HuggingFace BertForMaskedLM (post-LN only)".into(),
        ));
    }
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
    let weights = dir.join("model.safetensors");
    tch::Tensor::write_safetensors(&named, &weights).map_err(TextError::Torch)?;

    let s = tokenizer.special();
    let config = serde_json::json!({
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": cfg.max_position,
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
