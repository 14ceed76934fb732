//! Export of a vision encoder to the Python ecosystem.
//!
//! - **ViT → timm `VisionTransformer`** ([`export_timm`]): the mapping is exact with
//!   `class_token=False, global_pool='avg', fc_norm=False, num_classes=0` (mean of the normalised
//!   patch tokens, as our features are) and our LayerNorm eps of 1e-5 (timm's default is 1e-6, so
//!   the model must be built with `norm_layer=partial(nn.LayerNorm, eps=1e-5)`). Our ViT maps
//!   pixels in `[0, 1]` to `2x - 1` itself; timm does not, so `config.json` gives mean = std = 0.5.
//! - **ViT → HF `ViTModel`, MAE → HF `ViTMAEForPreTraining`** ([`export_hf`], `--format hf`):
//!   exact for a ViT with a CLS token (`--class-token`; HF's ViTs always have one), with the
//!   names transformers writes to disk (`encoder.layer.{i}.attention.attention.query`, which
//!   transformers 4 and 5 both read), the fused `qkv` split into query, key and value, our
//!   LayerNorm eps in `layer_norm_eps`, and an image processor with mean = std = 0.5. Load
//!   `ViTModel` with `add_pooling_layer=False`: its pooler is a classification head pretraining
//!   does not train.
//! - **ResNet → our own names plus `modeling_ssl_resnet.py`** ([`export_resnet`]): the CIFAR stem
//!   (a 3x3 conv with stride 1 and no max-pool) has no HF or timm counterpart, both of which force
//!   a stride-2 stem with max-pool. The exported folder holds `model.safetensors` with our names,
//!   `config.json` with the shape, and a self-contained PyTorch module that rebuilds the network,
//!   feature head included.
//!
//! ```no_run
//! # fn demo(run: &std::path::Path) -> ssl_vision::Result<()> {
//! use ssl_core::interop::RunWeights;
//! let run = RunWeights::read(run, "vision")?;
//! let cfg: ssl_vision::pipeline::VisionConfig = run.resolved()?;
//! ssl_vision::interop::export::export(std::path::Path::new("exported"), &cfg.encoder, Some(&cfg.mae), &run.weights, None)?;
//! # Ok(()) }
//! ```
use crate::error::{Result, VisionError};
use crate::model::encoder::EncoderConfig;
use crate::model::resnet::ResNetConfig;
use crate::model::vit::VitConfig;
use crate::objectives::mae::MaeConfig;
use ssl_core::interop::{write_json, write_tensors, write_text, ExportFormat, Renamer};
use std::path::Path;
use tch::Tensor;

/// The self-contained PyTorch module written next to an exported ResNet.
pub const RESNET_MODULE: &str = include_str!("modeling_ssl_resnet.py");

/// Export `encoder` (weights named as in checkpoints, under `encoder.`, and the MAE decoder under
/// `decoder.` when `mae` is given) into `dir` in `format` (`None`: timm for a ViT, safetensors for
/// a ResNet).
pub fn export(
    dir: &Path,
    encoder: &EncoderConfig,
    mae: Option<&MaeConfig>,
    weights: &[(String, Tensor)],
    format: Option<ExportFormat>,
) -> Result<()> {
    match (encoder, format) {
        (EncoderConfig::Vit(c), None | Some(ExportFormat::Timm)) => export_timm(dir, c, weights),
        (EncoderConfig::Vit(c), Some(ExportFormat::Hf)) => export_hf(dir, c, mae, weights),
        (EncoderConfig::Resnet(c), None | Some(ExportFormat::Safetensors)) => export_resnet(dir, c, weights),
        (EncoderConfig::Vit(_), Some(f)) => Err(VisionError::Invalid(format!(
            "a ViT encoder exports as timm (VisionTransformer) or hf (ViTModel, ViTMAEForPreTraining), not {f}"
        ))),
        (EncoderConfig::Resnet(_), Some(f)) => Err(VisionError::Invalid(format!(
            "a ResNet encoder exports as safetensors (our names plus modeling_ssl_resnet.py), not {f}: its \
             CIFAR stem (3x3, stride 1, no max-pool) has no HF or timm counterpart"
        ))),
    }
}

/// The ViT's weights with timm `VisionTransformer` names.
pub fn timm_tensors(cfg: &VitConfig, weights: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    let mut r = Renamer::new(weights, "encoder.");
    for w in ["weight", "bias"] {
        r.rename(&format!("patch.{w}"), format!("patch_embed.proj.{w}"))?;
        r.rename(&format!("norm.{w}"), format!("norm.{w}"))?;
        for i in 0..cfg.depth {
            for (ours, theirs) in [
                ("ln1", "norm1"),
                ("qkv", "attn.qkv"),
                ("proj", "attn.proj"),
                ("ln2", "norm2"),
                ("fc1", "mlp.fc1"),
                ("fc2", "mlp.fc2"),
            ] {
                r.rename(&format!("block{i}.{ours}.{w}"), format!("blocks.{i}.{theirs}.{w}"))?;
            }
        }
    }
    r.rename("pos", "pos_embed")?;
    if cfg.class_token {
        r.rename("cls", "cls_token")?;
    }
    Ok(r.finish()?)
}

/// timm's arguments for our ViT and its input normalisation. `architecture` is a name timm
/// registers (its ViT), whose sizes `model_args` override, so timm's and transformers' one-line
/// loaders build it: `timm.create_model("local-dir:DIR", pretrained=True)` and
/// `transformers.AutoModel.from_pretrained(DIR)` (`num_classes` is not in `model_args`:
/// transformers' timm wrapper passes it itself). Those loaders use timm's LayerNorm epsilon, 1e-6;
/// `VisionTransformer(**model_args, num_classes=0, norm_layer=partial(nn.LayerNorm, eps=layer_norm_eps))` builds
/// ours exactly.
pub fn timm_config(cfg: &VitConfig) -> serde_json::Value {
    let c = cfg.in_channels as usize;
    // Our features: the CLS token's encoding, or the mean of the patch tokens.
    let pool = if cfg.class_token { "token" } else { "avg" };
    serde_json::json!({
        "architecture": TIMM_ARCHITECTURE,
        "num_classes": 0,
        "num_features": cfg.dim,
        "global_pool": pool,
        "model_args": {
            "img_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "in_chans": cfg.in_channels,
            "global_pool": pool,
            "embed_dim": cfg.dim,
            "depth": cfg.depth,
            "num_heads": cfg.heads,
            "mlp_ratio": cfg.mlp_ratio as f64,
            "qkv_bias": true,
            "class_token": cfg.class_token,
            "fc_norm": false,
        },
        "layer_norm_eps": cfg.layer_norm_eps,
        "pretrained_cfg": {
            "input_size": [cfg.in_channels, cfg.image_size, cfg.image_size],
            "mean": vec![0.5; c],
            "std": vec![0.5; c],
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "num_classes": 0,
        },
    })
}

/// The timm architecture an exported ViT names (its sizes are `model_args`').
pub const TIMM_ARCHITECTURE: &str = "vit_tiny_patch16_224";

/// Write a ViT as a timm `VisionTransformer`: `model.safetensors` and `config.json`.
pub fn export_timm(dir: &Path, cfg: &VitConfig, weights: &[(String, Tensor)]) -> Result<()> {
    let tensors = timm_tensors(cfg, weights)?;
    std::fs::create_dir_all(dir).map_err(|e| VisionError::io(dir, e))?;
    write_tensors(dir, "model.safetensors", &tensors)?;
    write_json(dir, "config.json", &timm_config(cfg))?;
    Ok(())
}

/// Our pre-LN block `ours` (under the renamer's prefix) as an HF ViT layer `theirs`, in the
/// names transformers writes to disk (and transformers 4 reads): `attention.attention.{query,key,
/// value}`, `attention.output.dense`, `layernorm_before`, `layernorm_after`,
/// `intermediate.dense`, `output.dense`; the fused `qkv` splits into three.
fn hf_layer(r: &mut Renamer<'_>, ours: &str, theirs: &str, dim: i64) -> Result<()> {
    for w in ["weight", "bias"] {
        let qkv = r.get(&format!("{ours}.qkv.{w}"))?;
        for (j, name) in ["query", "key", "value"].iter().enumerate() {
            r.put(format!("{theirs}.attention.attention.{name}.{w}"), qkv.narrow(0, j as i64 * dim, dim));
        }
        for (o, t) in [
            ("proj", "attention.output.dense"),
            ("ln1", "layernorm_before"),
            ("ln2", "layernorm_after"),
            ("fc1", "intermediate.dense"),
            ("fc2", "output.dense"),
        ] {
            r.rename(&format!("{ours}.{o}.{w}"), format!("{theirs}.{t}.{w}"))?;
        }
    }
    Ok(())
}

/// The ViT (and, with `mae`, the MAE decoder) with HF names: `ViTModel`'s, or
/// `ViTMAEForPreTraining`'s when `mae` is given. Needs the CLS token every HF ViT has.
pub fn hf_tensors(
    cfg: &VitConfig,
    mae: Option<&MaeConfig>,
    weights: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>> {
    if !cfg.class_token {
        return Err(VisionError::Invalid(
            "HF's ViTModel and ViTMAEForPreTraining always have a CLS token, and this ViT has none: pretrain with \
             --class-token to export as hf, or export as timm (exact without one)"
                .into(),
        ));
    }
    let base = if mae.is_some() { "vit." } else { "" };
    let mut r = Renamer::new(weights, "encoder.");
    r.rename("cls", format!("{base}embeddings.cls_token"))?;
    r.rename("pos", format!("{base}embeddings.position_embeddings"))?;
    for w in ["weight", "bias"] {
        r.rename(&format!("patch.{w}"), format!("{base}embeddings.patch_embeddings.projection.{w}"))?;
        r.rename(&format!("norm.{w}"), format!("{base}layernorm.{w}"))?;
    }
    for i in 0..cfg.depth {
        hf_layer(&mut r, &format!("block{i}"), &format!("{base}encoder.layer.{i}"), cfg.dim)?;
    }
    let mut out = r.finish()?;
    if let Some(m) = mae {
        let mut d = Renamer::new(weights, "decoder.");
        d.rename("mask_token", "decoder.mask_token")?;
        d.rename("pos", "decoder.decoder_pos_embed")?;
        for w in ["weight", "bias"] {
            for (o, t) in [("embed", "decoder_embed"), ("norm", "decoder_norm"), ("pred", "decoder_pred")] {
                d.rename(&format!("{o}.{w}"), format!("decoder.{t}.{w}"))?;
            }
        }
        for i in 0..m.decoder_depth {
            hf_layer(&mut d, &format!("block{i}"), &format!("decoder.decoder_layers.{i}"), m.decoder_dim)?;
        }
        out.extend(d.finish()?);
        out.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(out)
}

/// HF's `config.json` for the ViT (`ViTModel`), or with `mae` for `ViTMAEForPreTraining`.
pub fn hf_config(cfg: &VitConfig, mae: Option<&MaeConfig>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": ["ViTModel"],
        "model_type": "vit",
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.mlp_ratio * cfg.dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": cfg.layer_norm_eps,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.in_channels,
        "qkv_bias": true,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    });
    if let Some(m) = mae {
        v["architectures"] = serde_json::json!(["ViTMAEForPreTraining"]);
        v["model_type"] = "vit_mae".into();
        v["decoder_hidden_size"] = m.decoder_dim.into();
        v["decoder_num_hidden_layers"] = m.decoder_depth.into();
        v["decoder_num_attention_heads"] = m.decoder_heads.into();
        v["decoder_intermediate_size"] = (m.decoder_mlp_ratio * m.decoder_dim).into();
        v["mask_ratio"] = m.mask_ratio.into();
        v["norm_pix_loss"] = m.norm_pix_loss.into();
    }
    v
}

/// The image processor: resize to the model's size, pixels to `[0, 1]`, then mean = std = 0.5,
/// which is the `2x - 1` our ViT applies itself.
pub fn hf_preprocessor(cfg: &VitConfig) -> serde_json::Value {
    let c = cfg.in_channels as usize;
    serde_json::json!({
        "image_processor_type": "ViTImageProcessor",
        "do_resize": true,
        "size": {"height": cfg.image_size, "width": cfg.image_size},
        "resample": 2,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": vec![0.5; c],
        "image_std": vec![0.5; c],
    })
}

/// Write a ViT as an HF directory: `config.json`, `model.safetensors`, `preprocessor_config.json`.
pub fn export_hf(dir: &Path, cfg: &VitConfig, mae: Option<&MaeConfig>, weights: &[(String, Tensor)]) -> Result<()> {
    let tensors = hf_tensors(cfg, mae, weights)?;
    std::fs::create_dir_all(dir).map_err(|e| VisionError::io(dir, e))?;
    write_tensors(dir, "model.safetensors", &tensors)?;
    write_json(dir, "config.json", &hf_config(cfg, mae))?;
    write_json(dir, "preprocessor_config.json", &hf_preprocessor(cfg))?;
    Ok(())
}

/// Write a ResNet as `model.safetensors` (our names without the `encoder.` prefix),
/// `config.json` (its shape) and `modeling_ssl_resnet.py`.
pub fn export_resnet(dir: &Path, cfg: &ResNetConfig, weights: &[(String, Tensor)]) -> Result<()> {
    let mut r = Renamer::new(weights, "encoder.");
    for (name, _) in weights {
        if let Some(ours) = name.strip_prefix("encoder.") {
            r.rename(ours, ours)?;
        }
    }
    let tensors = r.finish()?;
    if tensors.is_empty() {
        return Err(VisionError::Invalid("the checkpoint holds no `encoder.` tensors".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| VisionError::io(dir, e))?;
    write_tensors(dir, "model.safetensors", &tensors)?;
    let config = serde_json::json!({
        "architecture": "SslResNet",
        "in_channels": cfg.in_channels,
        "width": cfg.width,
        "blocks_per_stage": cfg.blocks_per_stage,
        "feature_stage": cfg.feature_stage,
        "feature_pool": cfg.feature_pool,
        "batch_norm_eps": 1e-5,
        "input": "images in [0, 1], NCHW; the model maps them to 2x - 1 itself",
    });
    write_json(dir, "config.json", &config)?;
    write_text(dir, "modeling_ssl_resnet.py", RESNET_MODULE)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::encoder::VisionEncoder;

    fn weights(cfg: &EncoderConfig) -> Vec<(String, Tensor)> {
        let enc = VisionEncoder::new(cfg, tch::Device::Cpu, 0);
        enc.vs.variables().into_iter().collect()
    }

    #[test]
    fn every_vit_tensor_gets_a_timm_name() {
        let vit = VitConfig { depth: 2, dim: 32, heads: 2, ..Default::default() };
        let w = weights(&EncoderConfig::Vit(vit.clone()));
        let out = timm_tensors(&vit, &w).unwrap();
        assert_eq!(out.len(), w.len());
        assert!(out.iter().any(|(n, _)| n == "blocks.1.attn.qkv.weight"));
        assert!(out.iter().any(|(n, t)| n == "pos_embed" && t.size() == [1, vit.num_patches(), 32]));
    }

    #[test]
    fn the_wrong_format_is_refused_with_the_reason() {
        let r = EncoderConfig::Resnet(ResNetConfig { width: 4, ..Default::default() });
        let d = tempfile::tempdir().unwrap();
        let e = export(d.path(), &r, None, &weights(&r), Some(ExportFormat::Timm)).unwrap_err().to_string();
        assert!(e.contains("CIFAR stem"), "{e}");
        export(d.path(), &r, None, &weights(&r), None).unwrap();
        for f in ["model.safetensors", "config.json", "modeling_ssl_resnet.py"] {
            assert!(d.path().join(f).is_file(), "{f}");
        }
    }
}
