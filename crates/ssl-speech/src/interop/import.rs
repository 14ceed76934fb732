//! Import from a HuggingFace `transformers` directory: a `Wav2Vec2Model` or
//! `Wav2Vec2ForPreTraining` (`config.json` + `model.safetensors`), the inverse of
//! [`crate::interop::export`].
//!
//! - Only HF's pre-LN shape with a group norm on the first conv is our encoder
//!   (`do_stable_layer_norm = true`, `feat_extract_norm = "group"`, `conv_bias = false`, exact
//!   GELU, one width for every conv, LayerNorm eps 1e-5). Anything else is refused with the
//!   reason: the public wav2vec2-base is post-LN, and the large "lv60" models put a LayerNorm and a
//!   bias on every conv, which our encoder does not have.
//! - The positional conv's weight normalisation is folded back into one weight (`original0 *
//!   original1 / ||original1||`, or the older `weight_g` / `weight_v` names); `q_proj`, `k_proj`
//!   and `v_proj` are stacked into our fused `qkv`.
//! - Every tensor must map onto ours by name and shape, or the import fails naming it. A
//!   `Wav2Vec2ForPreTraining`'s contrastive head (`quantizer.*`, `project_q`, `project_hid`)
//!   becomes ours when the run's objective is `contrastive`; other objectives start their head
//!   fresh and leave it out. A checkpoint saved without `masked_spec_embed` (HF keeps it only
//!   when masking is on) leaves our mask embedding fresh.
//! - `pytorch_model.bin` is refused: it is a pickle ([`ssl_core::init::HfDir`]).
//!
//! ```no_run
//! # fn demo() -> ssl_speech::Result<()> {
//! use ssl_speech::interop::import::HfWav2Vec2;
//! let hf = HfWav2Vec2::read(std::path::Path::new("my-wav2vec2"))?;
//! let init = hf.init_weights(ssl_speech::objectives::Method::BestRq);
//! # Ok(()) }
//! ```
use crate::error::{Result, SpeechError};
use crate::model::ModelConfig;
use crate::objectives::{Method, ObjectiveConfig, ENCODER_PREFIX};
use ssl_core::init::{HfDir, InitWeights};
use ssl_core::interop::Renamer;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A HuggingFace wav2vec2 checkpoint read from a directory, renamed to our variables.
pub struct HfWav2Vec2 {
    pub dir: PathBuf,
    /// Our encoder of the same shape.
    pub model: ModelConfig,
    /// The contrastive head's sizes (`groups`, `entries`, `final_dim`) when the checkpoint has
    /// one (`Wav2Vec2ForPreTraining`).
    pub head: Option<(i64, i64, i64)>,
    /// Encoder tensors under `encoder.`, head tensors under `head.`.
    pub tensors: Vec<(String, Tensor)>,
}

impl HfWav2Vec2 {
    /// Read `config.json` and `model.safetensors` of `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let hf = HfDir::read(dir)?;
        let model = model_config(&hf)?;
        let pretraining = hf.tensors.iter().any(|(n, _)| n.starts_with("wav2vec2."));
        let base = if pretraining { "wav2vec2." } else { "" };
        let mut r = Renamer::new(&hf.tensors, "");
        let mut out = encoder_tensors(&mut r, &model, base)?;
        let head = if pretraining { Some(head_tensors(&hf, &mut r, &mut out)?) } else { None };
        r.finish()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self { dir: dir.to_path_buf(), model, head, tensors: out })
    }

    /// `Wav2Vec2ForPreTraining` or `Wav2Vec2Model`.
    pub fn kind(&self) -> &'static str {
        if self.head.is_some() {
            "HF Wav2Vec2ForPreTraining"
        } else {
            "HF Wav2Vec2Model"
        }
    }

    /// Apply the checkpoint's shape to a run's objective: the contrastive head's sizes when the
    /// run trains that head and the checkpoint has one.
    pub fn apply_to(&self, objective: &mut ObjectiveConfig) {
        if let (Method::Contrastive, Some((groups, entries, final_dim))) = (objective.method, self.head) {
            objective.groups = groups;
            objective.entries = entries;
            objective.final_dim = final_dim;
        }
    }

    /// The tensors as `--init-from` weights for a run of `method`: the encoder always, the
    /// contrastive head when the run trains it and the checkpoint has it; every other head
    /// variable (and the mask embedding when the checkpoint has none) starts fresh.
    pub fn init_weights(&self, method: Method) -> InitWeights {
        let keep_head = method == Method::Contrastive && self.head.is_some();
        let tensors = self
            .tensors
            .iter()
            .filter(|(n, _)| keep_head || !n.starts_with("head."))
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        let mut fresh_prefixes = vec![format!("{ENCODER_PREFIX}.mask_embedding")];
        if !keep_head {
            fresh_prefixes.push("head.".into());
        }
        InitWeights { source: self.dir.clone(), kind: self.kind().into(), tensors, fresh_prefixes }
    }
}

/// Our encoder for an HF wav2vec2 `config.json`, or the reason it is not ours.
pub fn model_config(hf: &HfDir) -> Result<ModelConfig> {
    let refuse = |msg: String| SpeechError::from(hf.invalid(msg));
    let model_type = hf.str_or("model_type", "");
    if model_type != "wav2vec2" {
        return Err(refuse(format!(
            "model_type `{model_type}` is not `wav2vec2` (Wav2Vec2Model or Wav2Vec2ForPreTraining)"
        )));
    }
    if hf.config.get("do_stable_layer_norm").and_then(|v| v.as_bool()) != Some(true) {
        return Err(refuse(
            "a post-LN wav2vec2 (`do_stable_layer_norm` false, as in wav2vec2-base): our encoder is HF's pre-LN one"
                .into(),
        ));
    }
    let norm = hf.str_or("feat_extract_norm", "group");
    if norm != "group" {
        return Err(refuse(format!(
            "feat_extract_norm `{norm}`: our conv stack has a group norm on the first conv only (`group`)"
        )));
    }
    if hf.config.get("conv_bias").and_then(|v| v.as_bool()).unwrap_or(false) {
        return Err(refuse("conv_bias true: our convs have no bias".into()));
    }
    for key in ["feat_extract_activation", "hidden_act"] {
        let act = hf.str_or(key, "gelu");
        if act != "gelu" {
            return Err(refuse(format!("{key} `{act}`: our encoder uses exact GELU (`gelu`)")));
        }
    }
    let eps = hf.config.get("layer_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-5);
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(refuse(format!("layer_norm_eps {eps}: our LayerNorms use 1e-5")));
    }
    let conv_dim = hf.ints("conv_dim")?;
    let (kernels, strides) = (hf.ints("conv_kernel")?, hf.ints("conv_stride")?);
    if conv_dim.is_empty() || conv_dim.iter().any(|&c| c != conv_dim[0]) {
        return Err(refuse(format!("conv_dim {conv_dim:?}: our conv stack has one width for every conv")));
    }
    if kernels.len() != conv_dim.len() || strides.len() != conv_dim.len() {
        return Err(refuse("conv_dim, conv_kernel and conv_stride differ in length".into()));
    }
    let model = ModelConfig {
        conv_channels: conv_dim[0],
        conv_kernels: kernels,
        conv_strides: strides,
        dim: hf.int("hidden_size")?,
        layers: hf.int("num_hidden_layers")?,
        heads: hf.int("num_attention_heads")?,
        ffn_dim: hf.int("intermediate_size")?,
        pos_conv_kernel: hf.int("num_conv_pos_embeddings")?,
        pos_conv_groups: hf.int("num_conv_pos_embedding_groups")?,
        pos_norm: false,
    };
    model.validate().map_err(|e| refuse(e.to_string()))?;
    Ok(model)
}

/// The encoder's tensors under our names (`encoder.` prefix), taken from `r` (HF's names, with
/// `base` before them in a `Wav2Vec2ForPreTraining`).
fn encoder_tensors(r: &mut Renamer<'_>, m: &ModelConfig, base: &str) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    let ours = |s: &str| format!("{ENCODER_PREFIX}.{s}");
    let mut take = |r: &mut Renamer<'_>, theirs: String, mine: String| -> Result<()> {
        out.push((ours(&mine), r.get(&theirs)?));
        Ok(())
    };
    for i in 0..m.conv_kernels.len() {
        take(r, format!("{base}feature_extractor.conv_layers.{i}.conv.weight"), format!("conv.{i}.weight"))?;
    }
    for w in ["weight", "bias"] {
        take(r, format!("{base}feature_extractor.conv_layers.0.layer_norm.{w}"), format!("conv_norm.{w}"))?;
        take(r, format!("{base}feature_projection.layer_norm.{w}"), format!("feature_norm.{w}"))?;
        take(r, format!("{base}feature_projection.projection.{w}"), format!("proj.{w}"))?;
        take(r, format!("{base}encoder.layer_norm.{w}"), format!("final_norm.{w}"))?;
    }
    take(r, format!("{base}encoder.pos_conv_embed.conv.bias"), "pos_conv.bias".into())?;
    let has = |r: &mut Renamer<'_>, n: &str| r.get(n).ok();
    if let Some(t) = has(r, &format!("{base}masked_spec_embed")) {
        out.push((ours("mask_embedding"), t));
    }
    let pos = format!("{base}encoder.pos_conv_embed.conv");
    let (g, v) = match (
        has(r, &format!("{pos}.parametrizations.weight.original0")),
        has(r, &format!("{pos}.parametrizations.weight.original1")),
    ) {
        (Some(g), Some(v)) => (g, v),
        _ => (r.get(&format!("{pos}.weight_g"))?, r.get(&format!("{pos}.weight_v"))?),
    };
    let norm = v.square().sum_dim_intlist(&[0i64, 1][..], true, Kind::Float).sqrt();
    out.push((ours("pos_conv.weight"), &g * &v / norm));
    for i in 0..m.layers {
        let theirs = |s: &str| format!("{base}encoder.layers.{i}.{s}");
        let mine = |s: &str| ours(&format!("layer.{i}.{s}"));
        for w in ["weight", "bias"] {
            let parts: Vec<Tensor> = ["q_proj", "k_proj", "v_proj"]
                .iter()
                .map(|p| r.get(&theirs(&format!("attention.{p}.{w}"))))
                .collect::<ssl_core::Result<_>>()?;
            out.push((mine(&format!("qkv.{w}")), Tensor::cat(&parts, 0)));
            for (t, o) in [
                ("attention.out_proj", "out"),
                ("layer_norm", "ln1"),
                ("final_layer_norm", "ln2"),
                ("feed_forward.intermediate_dense", "ff1"),
                ("feed_forward.output_dense", "ff2"),
            ] {
                out.push((mine(&format!("{o}.{w}")), r.get(&theirs(&format!("{t}.{w}")))?));
            }
        }
    }
    Ok(out)
}

/// A `Wav2Vec2ForPreTraining`'s contrastive head under our names (`head.` prefix), appended to
/// `out`; returns its sizes (groups, entries, final dimension).
fn head_tensors(hf: &HfDir, r: &mut Renamer<'_>, out: &mut Vec<(String, Tensor)>) -> Result<(i64, i64, i64)> {
    let groups = hf.int("num_codevector_groups")?;
    let entries = hf.int("num_codevectors_per_group")?;
    let (code, proj) = (hf.int("codevector_dim")?, hf.int("proj_codevector_dim")?);
    if code != proj {
        return Err(hf
            .invalid(format!(
                "codevector_dim {code} and proj_codevector_dim {proj} differ: our contrastive head compares vectors of one size"
            ))
            .into());
    }
    let cv = r.get("quantizer.codevectors")?;
    out.push(("head.quantizer.codevectors".into(), cv.squeeze_dim(0)));
    for w in ["weight", "bias"] {
        out.push((format!("head.quantizer.logits.{w}"), r.get(&format!("quantizer.weight_proj.{w}"))?));
        out.push((format!("head.project_q.{w}"), r.get(&format!("project_q.{w}"))?));
        out.push((format!("head.final_proj.{w}"), r.get(&format!("project_hid.{w}"))?));
    }
    Ok((groups, entries, code))
}
