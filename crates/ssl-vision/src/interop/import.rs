//! Import from a HuggingFace `transformers` directory: a `ViTModel`, a `ViTMAEModel` or a
//! `ViTMAEForPreTraining` (`config.json` + `model.safetensors`), the inverse of
//! [`crate::interop::export::export_hf`].
//!
//! - The ViT takes the checkpoint's shape: sizes, image and patch size, channels, its LayerNorm
//!   eps (HF's ViTs use 1e-12), and a CLS token (every HF ViT has one). Exact GELU, biased
//!   q/k/v and an MLP a whole multiple of the width are required; anything else is refused with
//!   the reason.
//! - Names are read in the scheme transformers writes to disk, the one published checkpoints use
//!   (`encoder.layer.{i}.attention.attention.query`, `intermediate.dense`, `output.dense`; the
//!   MAE decoder's `decoder_layers.{i}`, which transformers 5 writes as
//!   `decoder_encoder.layer.{i}`), and in transformers 5's in-memory scheme
//!   (`layers.{i}.attention.q_proj`, `mlp.fc1`); query, key and value are stacked into our fused
//!   `qkv`.
//! - Every tensor must map onto ours by name and shape, or the import fails naming it. A
//!   `ViTModel`'s pooler (a classification head pretraining does not train) is left out. A
//!   `ViTMAEForPreTraining`'s decoder becomes ours (its sizes adopted); from a checkpoint without
//!   one, the decoder starts fresh.
//! - `pytorch_model.bin` is refused: it is a pickle ([`ssl_core::init::HfDir`]).
//!
//! ```no_run
//! # fn demo() -> ssl_vision::Result<()> {
//! use ssl_vision::interop::import::HfVit;
//! let hf = HfVit::read(std::path::Path::new("vit-mae-base"))?;
//! let init = hf.init_weights();
//! # Ok(()) }
//! ```
use crate::error::{Result, VisionError};
use crate::model::vit::VitConfig;
use crate::objectives::mae::MaeConfig;
use ssl_core::init::{HfDir, InitWeights};
use ssl_core::interop::Renamer;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// A HuggingFace ViT checkpoint read from a directory, renamed to our variables.
pub struct HfVit {
    pub dir: PathBuf,
    /// Our ViT of the same shape.
    pub vit: VitConfig,
    /// The MAE decoder's shape, when the checkpoint has one (`ViTMAEForPreTraining`): its width,
    /// depth, heads and MLP ratio, set on `mae`; the masking settings stay the run's.
    pub decoder: Option<MaeConfig>,
    /// The encoder's tensors under `encoder.`, the decoder's under `decoder.`.
    pub tensors: Vec<(String, Tensor)>,
    kind: &'static str,
}

impl HfVit {
    /// Read `config.json` and `model.safetensors` of `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let mut hf = HfDir::read(dir)?;
        let (vit, kind) = vit_config(&hf)?;
        hf.tensors = hf.tensors.into_iter().map(|(n, t)| (modern_name(&n), t)).collect();
        let pretraining = hf.tensors.iter().any(|(n, _)| n.starts_with("decoder."));
        let base = if hf.tensors.iter().any(|(n, _)| n.starts_with("vit.")) { "vit." } else { "" };
        let mut r = Renamer::new(&hf.tensors, "");
        let mut out = Vec::new();
        for (theirs, ours) in [("embeddings.cls_token", "cls"), ("embeddings.position_embeddings", "pos")] {
            out.push((format!("encoder.{ours}"), r.get(&format!("{base}{theirs}"))?));
        }
        for w in ["weight", "bias"] {
            let patch = r.get(&format!("{base}embeddings.patch_embeddings.projection.{w}"))?;
            out.push((format!("encoder.patch.{w}"), patch));
            out.push((format!("encoder.norm.{w}"), r.get(&format!("{base}layernorm.{w}"))?));
            // A ViTModel's pooler: a classification head, not part of the encoder (read so the
            // renamer counts it as mapped, then left out).
            let _ = r.get(&format!("{base}pooler.dense.{w}"));
        }
        for i in 0..vit.depth {
            layer(&mut r, &mut out, &format!("{base}layers.{i}"), &format!("encoder.block{i}"))?;
        }
        let decoder = if pretraining {
            let m = decoder_config(&hf)?;
            out.push(("decoder.mask_token".into(), r.get("decoder.mask_token")?));
            out.push(("decoder.pos".into(), r.get("decoder.decoder_pos_embed")?));
            for w in ["weight", "bias"] {
                for (theirs, ours) in [("decoder_embed", "embed"), ("decoder_norm", "norm"), ("decoder_pred", "pred")] {
                    out.push((format!("decoder.{ours}.{w}"), r.get(&format!("decoder.{theirs}.{w}"))?));
                }
            }
            for i in 0..m.decoder_depth {
                layer(&mut r, &mut out, &format!("decoder.decoder_layers.{i}"), &format!("decoder.block{i}"))?;
            }
            Some(m)
        } else {
            None
        };
        r.finish()?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let kind = if decoder.is_some() { "HF ViTMAEForPreTraining" } else { kind };
        Ok(Self { dir: dir.to_path_buf(), vit, decoder, tensors: out, kind })
    }

    /// `ViTModel`, `ViTMAEModel` or `ViTMAEForPreTraining`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Set the decoder's shape on a run's MAE settings, when the checkpoint has a decoder.
    pub fn apply_to(&self, mae: &mut MaeConfig) {
        if let Some(d) = &self.decoder {
            mae.decoder_dim = d.decoder_dim;
            mae.decoder_depth = d.decoder_depth;
            mae.decoder_heads = d.decoder_heads;
            mae.decoder_mlp_ratio = d.decoder_mlp_ratio;
        }
    }

    /// The tensors as `--init-from` weights for an MAE run: the decoder starts fresh when the
    /// checkpoint has none.
    pub fn init_weights(&self) -> InitWeights {
        InitWeights {
            source: self.dir.clone(),
            kind: self.kind.into(),
            tensors: self.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
            fresh_prefixes: if self.decoder.is_some() { Vec::new() } else { vec!["decoder.".into()] },
        }
    }
}

/// One HF ViT layer `theirs` (transformers 5 names) as our block `ours`.
fn layer(r: &mut Renamer<'_>, out: &mut Vec<(String, Tensor)>, theirs: &str, ours: &str) -> Result<()> {
    for w in ["weight", "bias"] {
        let qkv: Vec<Tensor> = ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|p| r.get(&format!("{theirs}.attention.{p}.{w}")))
            .collect::<ssl_core::Result<_>>()?;
        out.push((format!("{ours}.qkv.{w}"), Tensor::cat(&qkv, 0)));
        for (t, o) in [
            ("attention.o_proj", "proj"),
            ("layernorm_before", "ln1"),
            ("layernorm_after", "ln2"),
            ("mlp.fc1", "fc1"),
            ("mlp.fc2", "fc2"),
        ] {
            out.push((format!("{ours}.{o}.{w}"), r.get(&format!("{theirs}.{t}.{w}"))?));
        }
    }
    Ok(())
}

/// A tensor name in transformers 5's scheme: the older scheme (`encoder.layer.{i}.attention
/// .attention.query`, `attention.output.dense`, `intermediate.dense`, `output.dense`) renamed,
/// other names unchanged.
pub fn modern_name(name: &str) -> String {
    let mut n = name.replace("encoder.layer.", "layers.");
    for (old, new) in [
        (".attention.attention.query.", ".attention.q_proj."),
        (".attention.attention.key.", ".attention.k_proj."),
        (".attention.attention.value.", ".attention.v_proj."),
        (".attention.output.dense.", ".attention.o_proj."),
        (".intermediate.dense.", ".mlp.fc1."),
        (".output.dense.", ".mlp.fc2."),
    ] {
        n = n.replace(old, new);
    }
    n
}

fn refuse(hf: &HfDir, msg: impl std::fmt::Display) -> VisionError {
    VisionError::Core(hf.invalid(msg))
}

/// Our ViT for an HF ViT or ViTMAE `config.json` (and which of the two it is), or the reason
/// it is not ours.
pub fn vit_config(hf: &HfDir) -> Result<(VitConfig, &'static str)> {
    let kind = match hf.str_or("model_type", "") {
        "vit" => "HF ViTModel",
        "vit_mae" => "HF ViTMAEModel",
        other => return Err(refuse(hf, format!("model_type `{other}` is not `vit` or `vit_mae`"))),
    };
    let act = hf.str_or("hidden_act", "gelu");
    if act != "gelu" {
        return Err(refuse(hf, format!("hidden_act `{act}`: our ViT uses exact GELU (`gelu`)")));
    }
    if hf.config.get("qkv_bias").and_then(|v| v.as_bool()) == Some(false) {
        return Err(refuse(hf, "qkv_bias false: our attention projections have biases"));
    }
    let (dim, ffn) = (hf.int("hidden_size")?, hf.int("intermediate_size")?);
    if dim <= 0 || ffn % dim != 0 {
        return Err(refuse(hf, format!("intermediate_size {ffn} is not a whole multiple of hidden_size {dim}")));
    }
    let vit = VitConfig {
        in_channels: hf.int("num_channels")?,
        image_size: hf.int("image_size")?,
        patch_size: hf.int("patch_size")?,
        dim,
        depth: hf.int("num_hidden_layers")? as usize,
        heads: hf.int("num_attention_heads")?,
        mlp_ratio: ffn / dim,
        class_token: true,
        layer_norm_eps: hf.config.get("layer_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-12),
    };
    if vit.patch_size <= 0 || vit.image_size % vit.patch_size != 0 || vit.heads <= 0 || dim % vit.heads != 0 {
        return Err(refuse(hf, "image_size must be a multiple of patch_size and hidden_size of the heads"));
    }
    Ok((vit, kind))
}

/// The MAE decoder's shape in a ViTMAE `config.json`.
fn decoder_config(hf: &HfDir) -> Result<MaeConfig> {
    let (dim, ffn) = (hf.int("decoder_hidden_size")?, hf.int("decoder_intermediate_size")?);
    if dim <= 0 || ffn % dim != 0 {
        return Err(refuse(hf, format!("decoder_intermediate_size {ffn} is not a whole multiple of {dim}")));
    }
    Ok(MaeConfig {
        decoder_dim: dim,
        decoder_depth: hf.int("decoder_num_hidden_layers")? as usize,
        decoder_heads: hf.int("decoder_num_attention_heads")?,
        decoder_mlp_ratio: ffn / dim,
        ..MaeConfig::default()
    })
}
