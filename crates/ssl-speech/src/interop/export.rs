//! Export to HuggingFace `transformers`: `Wav2Vec2Model`, or `Wav2Vec2ForPreTraining` when the
//! run trained the contrastive head.
//!
//! The mapping is exact, not approximate:
//!
//! - the conv stack, with a group norm on the first conv only (`feat_extract_norm = "group"`,
//!   no conv bias, exact GELU);
//! - the feature LayerNorm and projection (`feature_projection`);
//! - the positional conv: HF keeps it weight-normalised over the kernel dimension, as
//!   `parametrizations.weight.original0` (the norm over dimensions 0 and 1, `[1, 1, K]`) and
//!   `original1` (the weight itself), which multiply back to our weight;
//! - the fused `qkv` projection, whose rows split into `q_proj`, `k_proj` and `v_proj`;
//! - pre-LN layers and a final LayerNorm (`do_stable_layer_norm = true`);
//! - every dropout and the layer drop at 0.
//!
//! Only encoders with [`crate::model::ModelConfig::pos_norm`] off are HF's architecture: HF's
//! pre-LN encoder has no LayerNorm after the positional conv, and a LayerNorm cannot be folded
//! into the next layer's (the residual stream carries the normalised values). Other encoders are
//! refused. The BEST-RQ and reconstruction heads have no HF counterpart and are not exported; the
//! contrastive head maps onto `Wav2Vec2ForPreTraining` (`quantizer.weight_proj`,
//! `quantizer.codevectors`, `project_q`, `project_hid`).
//!
//! ```no_run
//! # fn demo(cfg: &ssl_speech::pipeline::SpeechConfig, weights: &[(String, tch::Tensor)]) -> ssl_speech::Result<()> {
//! ssl_speech::interop::export::export_hf(std::path::Path::new("exported"), cfg, weights)?;
//! // Python: Wav2Vec2Model.from_pretrained("exported"), Wav2Vec2FeatureExtractor.from_pretrained("exported")
//! # Ok(()) }
//! ```
use crate::error::{Result, SpeechError};
use crate::objectives::{Method, ENCODER_PREFIX};
use crate::pipeline::SpeechConfig;
use ssl_core::interop::{weight_norm_parts, write_json, write_tensors, Renamer};
use std::path::Path;
use tch::Tensor;

/// The sample rate every encoder is trained at.
const SAMPLE_RATE: i64 = 16000;

/// The encoder (and contrastive head) of `weights` (names as in checkpoints) with HF's names.
/// Returns the tensors and whether they are a `Wav2Vec2ForPreTraining`.
pub fn hf_tensors(cfg: &SpeechConfig, weights: &[(String, Tensor)]) -> Result<(Vec<(String, Tensor)>, bool)> {
    let m = &cfg.model;
    if m.pos_norm {
        return Err(SpeechError::InvalidArgument(
            "this encoder has a LayerNorm after the positional convolution (`pos_norm`: the shape of runs made \
             before it became optional), which HuggingFace's pre-LN Wav2Vec2Model does not have and which cannot \
             be folded away; pretrain again (new runs have pos_norm off) to export it"
                .into(),
        ));
    }
    let pretraining = cfg.objective.method == Method::Contrastive;
    let base = if pretraining { "wav2vec2." } else { "" };
    let mut r = Renamer::new(weights, &format!("{ENCODER_PREFIX}."));
    for i in 0..m.conv_kernels.len() {
        r.rename(&format!("conv.{i}.weight"), format!("{base}feature_extractor.conv_layers.{i}.conv.weight"))?;
    }
    for w in ["weight", "bias"] {
        r.rename(&format!("conv_norm.{w}"), format!("{base}feature_extractor.conv_layers.0.layer_norm.{w}"))?;
        r.rename(&format!("feature_norm.{w}"), format!("{base}feature_projection.layer_norm.{w}"))?;
        r.rename(&format!("proj.{w}"), format!("{base}feature_projection.projection.{w}"))?;
        r.rename(&format!("final_norm.{w}"), format!("{base}encoder.layer_norm.{w}"))?;
    }
    r.rename("mask_embedding", format!("{base}masked_spec_embed"))?;
    let pos = r.get("pos_conv.weight")?;
    let (g, v) = weight_norm_parts(&pos, 2);
    r.put(format!("{base}encoder.pos_conv_embed.conv.parametrizations.weight.original0"), g);
    r.put(format!("{base}encoder.pos_conv_embed.conv.parametrizations.weight.original1"), v);
    r.rename("pos_conv.bias", format!("{base}encoder.pos_conv_embed.conv.bias"))?;
    let d = m.dim;
    for i in 0..m.layers {
        let ours = |s: &str| format!("layer.{i}.{s}");
        let theirs = |s: &str| format!("{base}encoder.layers.{i}.{s}");
        for w in ["weight", "bias"] {
            let qkv = r.get(&ours(&format!("qkv.{w}")))?;
            if qkv.size()[0] != 3 * d {
                return Err(SpeechError::InvalidArgument(format!(
                    "tensor `{ENCODER_PREFIX}.{}` has {} rows, expected 3 x {d}",
                    ours(&format!("qkv.{w}")),
                    qkv.size()[0]
                )));
            }
            for (j, name) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                r.put(theirs(&format!("attention.{name}.{w}")), qkv.narrow(0, j as i64 * d, d));
            }
            r.rename(&ours(&format!("out.{w}")), theirs(&format!("attention.out_proj.{w}")))?;
            r.rename(&ours(&format!("ln1.{w}")), theirs(&format!("layer_norm.{w}")))?;
            r.rename(&ours(&format!("ln2.{w}")), theirs(&format!("final_layer_norm.{w}")))?;
            r.rename(&ours(&format!("ff1.{w}")), theirs(&format!("feed_forward.intermediate_dense.{w}")))?;
            r.rename(&ours(&format!("ff2.{w}")), theirs(&format!("feed_forward.output_dense.{w}")))?;
        }
    }
    let mut out = r.finish()?;
    if pretraining {
        let mut h = Renamer::new(weights, "head.");
        let cv = h.get("quantizer.codevectors")?;
        h.put("quantizer.codevectors", cv.unsqueeze(0));
        for w in ["weight", "bias"] {
            h.rename(&format!("quantizer.logits.{w}"), format!("quantizer.weight_proj.{w}"))?;
            h.rename(&format!("project_q.{w}"), format!("project_q.{w}"))?;
            h.rename(&format!("final_proj.{w}"), format!("project_hid.{w}"))?;
        }
        out.extend(h.finish()?);
        out.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok((out, pretraining))
}

/// HF's `config.json` for the encoder of `cfg`.
pub fn hf_config(cfg: &SpeechConfig, pretraining: bool) -> serde_json::Value {
    let (m, o) = (&cfg.model, &cfg.objective);
    let architecture = if pretraining { "Wav2Vec2ForPreTraining" } else { "Wav2Vec2Model" };
    serde_json::json!({
        "architectures": [architecture],
        "model_type": "wav2vec2",
        "conv_dim": vec![m.conv_channels; m.conv_kernels.len()],
        "conv_kernel": m.conv_kernels,
        "conv_stride": m.conv_strides,
        "conv_bias": false,
        "num_feat_extract_layers": m.conv_kernels.len(),
        "feat_extract_norm": "group",
        "feat_extract_activation": "gelu",
        "hidden_size": m.dim,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "intermediate_size": m.ffn_dim,
        "hidden_act": "gelu",
        "num_conv_pos_embeddings": m.pos_conv_kernel,
        "num_conv_pos_embedding_groups": m.pos_conv_groups,
        "do_stable_layer_norm": true,
        "layer_norm_eps": 1e-5,
        "hidden_dropout": 0.0,
        "activation_dropout": 0.0,
        "attention_dropout": 0.0,
        "feat_proj_dropout": 0.0,
        "feat_quantizer_dropout": 0.0,
        "final_dropout": 0.0,
        "layerdrop": 0.0,
        "apply_spec_augment": true,
        "mask_time_prob": cfg.masking.prob,
        "mask_time_length": cfg.masking.length,
        "mask_feature_prob": 0.0,
        "num_codevector_groups": o.groups,
        "num_codevectors_per_group": o.entries,
        "codevector_dim": o.final_dim,
        "proj_codevector_dim": o.final_dim,
        "num_negatives": o.num_negatives,
        "contrastive_logits_temperature": o.logit_temperature,
        "diversity_loss_weight": o.diversity_weight,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    })
}

/// The feature extractor's settings: 16 kHz mono, each utterance normalised to zero mean and
/// unit variance over its real samples (what our encoder does itself), padding with zeros and
/// an attention mask.
pub fn preprocessor_config() -> serde_json::Value {
    serde_json::json!({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": SAMPLE_RATE,
        "padding_value": 0.0,
        "padding_side": "right",
        "do_normalize": true,
        "return_attention_mask": true,
    })
}

/// Write the encoder of `weights` (names as in checkpoints) into `dir` as an HF directory:
/// `config.json`, `model.safetensors` and `preprocessor_config.json`.
pub fn export_hf(dir: &Path, cfg: &SpeechConfig, weights: &[(String, Tensor)]) -> Result<()> {
    let (tensors, pretraining) = hf_tensors(cfg, weights)?;
    std::fs::create_dir_all(dir).map_err(|e| SpeechError::Io { path: dir.display().to_string(), source: e })?;
    write_tensors(dir, "model.safetensors", &tensors)?;
    write_json(dir, "config.json", &hf_config(cfg, pretraining))?;
    write_json(dir, "preprocessor_config.json", &preprocessor_config())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use crate::objectives::SpeechObjective;
    use tch::{Device, Kind};

    fn weights(cfg: &SpeechConfig) -> Vec<(String, Tensor)> {
        let _rng = ssl_core::rng::torch_rng(1);
        let o = SpeechObjective::new(&cfg.model, cfg.objective.clone(), Device::Cpu);
        let mut w: Vec<(String, Tensor)> =
            ssl_core::trainer::Objective::var_store(&o).variables().into_iter().collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    }

    fn small() -> SpeechConfig {
        let mut cfg = SpeechConfig::preset("tiny").unwrap();
        cfg.model = ModelConfig { conv_channels: 8, dim: 16, layers: 2, heads: 2, ffn_dim: 32, ..ModelConfig::tiny() };
        cfg.model.pos_conv_groups = 4;
        cfg
    }

    #[test]
    fn every_encoder_tensor_maps_and_the_qkv_splits_back() {
        let cfg = small();
        let w = weights(&cfg);
        let (out, pretraining) = hf_tensors(&cfg, &w).unwrap();
        assert!(!pretraining);
        // 7 convs, group norm 2, feature norm 2, projection 2, mask, pos conv 3, final norm 2,
        // and 16 per layer (q, k, v, out, 2 norms, 2 feed-forward; weight and bias each).
        assert_eq!(out.len(), 7 + 2 + 2 + 2 + 1 + 3 + 2 + 16 * 2);
        let get = |n: &str| out.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone()).unwrap();
        let ours = |n: &str| w.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone()).unwrap();
        let qkv = Tensor::cat(
            &[
                get("encoder.layers.1.attention.q_proj.weight"),
                get("encoder.layers.1.attention.k_proj.weight"),
                get("encoder.layers.1.attention.v_proj.weight"),
            ],
            0,
        );
        assert!(qkv.equal(&ours("encoder.layer.1.qkv.weight")));
        let g = get("encoder.pos_conv_embed.conv.parametrizations.weight.original0");
        assert_eq!(g.size(), vec![1, 1, cfg.model.pos_conv_kernel]);
        let v = get("encoder.pos_conv_embed.conv.parametrizations.weight.original1");
        let back = &g * &v / v.square().sum_dim_intlist(&[0i64, 1][..], true, Kind::Float).sqrt();
        assert!(back.allclose(&ours("encoder.pos_conv.weight"), 1e-6, 1e-6, false));
    }

    #[test]
    fn the_contrastive_head_goes_to_wav2vec2_for_pretraining_names() {
        let mut cfg = small();
        cfg.objective.method = Method::Contrastive;
        let (out, pretraining) = hf_tensors(&cfg, &weights(&cfg)).unwrap();
        assert!(pretraining);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        for n in [
            "wav2vec2.masked_spec_embed",
            "quantizer.weight_proj.weight",
            "quantizer.codevectors",
            "project_q.bias",
            "project_hid.weight",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let cv = out.iter().find(|(n, _)| n == "quantizer.codevectors").unwrap();
        let o = &cfg.objective;
        assert_eq!(cv.1.size(), vec![1, o.groups * o.entries, o.final_dim / o.groups]);
    }

    #[test]
    fn encoders_with_pos_norm_are_refused_with_the_reason() {
        let mut cfg = small();
        cfg.model.pos_norm = true;
        let e = hf_tensors(&cfg, &weights(&cfg)).unwrap_err().to_string();
        assert!(e.contains("pos_norm") && e.contains("cannot be folded"), "{e}");
    }
}
