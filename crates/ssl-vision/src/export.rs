//! Export of a vision encoder to the Python ecosystem.
//!
//! - **ViT → timm `VisionTransformer`** ([`export_timm`]): the mapping is exact with
//!   `class_token=False, global_pool='avg', fc_norm=False, num_classes=0` (mean of the normalised
//!   patch tokens, as our features are) and our LayerNorm eps of 1e-5 (timm's default is 1e-6, so
//!   the model must be built with `norm_layer=partial(nn.LayerNorm, eps=1e-5)`). Our ViT maps
//!   pixels in `[0, 1]` to `2x - 1` itself; timm does not, so `config.json` gives mean = std = 0.5.
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
//! let cfg: ssl_vision::recipe::VisionConfig = run.resolved()?;
//! ssl_vision::export::export(std::path::Path::new("exported"), &cfg.encoder, &run.weights, None)?;
//! # Ok(()) }
//! ```
use crate::encoder::EncoderConfig;
use crate::error::{Result, VisionError};
use crate::resnet::ResNetConfig;
use crate::vit::VitConfig;
use ssl_core::interop::{write_json, write_tensors, write_text, ExportFormat, Renamer};
use std::path::Path;
use tch::Tensor;

/// The self-contained PyTorch module written next to an exported ResNet.
pub const RESNET_MODULE: &str = include_str!("modeling_ssl_resnet.py");

/// Our LayerNorm eps (LibTorch's default), against timm's 1e-6.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Export `encoder` (weights named as in checkpoints, under `encoder.`) into `dir` in `format`
/// (`None`: timm for a ViT, safetensors for a ResNet).
pub fn export(
    dir: &Path,
    encoder: &EncoderConfig,
    weights: &[(String, Tensor)],
    format: Option<ExportFormat>,
) -> Result<()> {
    match (encoder, format) {
        (EncoderConfig::Vit(c), None | Some(ExportFormat::Timm)) => export_timm(dir, c, weights),
        (EncoderConfig::Resnet(c), None | Some(ExportFormat::Safetensors)) => export_resnet(dir, c, weights),
        (EncoderConfig::Vit(_), Some(f)) => {
            Err(VisionError::Invalid(format!("a ViT encoder exports as timm (VisionTransformer), not {f}")))
        }
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
    Ok(r.finish()?)
}

/// timm's arguments for our ViT (`VisionTransformer(**model_args, norm_layer=partial(nn.LayerNorm,
/// eps=layer_norm_eps))`) and its input normalisation.
pub fn timm_config(cfg: &VitConfig) -> serde_json::Value {
    let c = cfg.in_channels as usize;
    serde_json::json!({
        "architecture": "vit_ssl_toolkit",
        "num_classes": 0,
        "num_features": cfg.dim,
        "global_pool": "avg",
        "model_args": {
            "img_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "in_chans": cfg.in_channels,
            "num_classes": 0,
            "global_pool": "avg",
            "embed_dim": cfg.dim,
            "depth": cfg.depth,
            "num_heads": cfg.heads,
            "mlp_ratio": cfg.mlp_ratio as f64,
            "qkv_bias": true,
            "class_token": false,
            "fc_norm": false,
        },
        "layer_norm_eps": LAYER_NORM_EPS,
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

/// Write a ViT as a timm `VisionTransformer`: `model.safetensors` and `config.json`.
pub fn export_timm(dir: &Path, cfg: &VitConfig, weights: &[(String, Tensor)]) -> Result<()> {
    let tensors = timm_tensors(cfg, weights)?;
    std::fs::create_dir_all(dir).map_err(|e| VisionError::io(dir, e))?;
    write_tensors(dir, "model.safetensors", &tensors)?;
    write_json(dir, "config.json", &timm_config(cfg))?;
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
    use crate::encoder::VisionEncoder;

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
        let e = export(d.path(), &r, &weights(&r), Some(ExportFormat::Timm)).unwrap_err().to_string();
        assert!(e.contains("CIFAR stem"), "{e}");
        export(d.path(), &r, &weights(&r), None).unwrap();
        for f in ["model.safetensors", "config.json", "modeling_ssl_resnet.py"] {
            assert!(d.path().join(f).is_file(), "{f}");
        }
    }
}
