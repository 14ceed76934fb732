//! Exported vision encoders load in Python and give our features within 1e-4: a ViT, with and
//! without a CLS token, as timm's `VisionTransformer` (built from the exported `config.json`,
//! inputs normalised with its mean and std); a CLS-token ViT as HF's `ViTModel` (inputs through
//! the exported `ViTImageProcessor`) and an MAE as HF's `ViTMAEForPreTraining` (the same noise
//! gives the same mask and the same reconstruction, and its `ViTMAEModel` unmasked gives our
//! features); a ResNet through the exported
//! `modeling_ssl_resnet.py` (batch-norm running statistics included).
//!
//! Needs a Python with torch, safetensors, timm and transformers, named by `SSL_PYTHON` (`cargo
//! xtask test` sets it). Without it the test fails: it is never skipped silently.
use ssl_core::interop::ExportFormat;
use ssl_vision::interop::export::export;
use ssl_vision::model::encoder::{EncoderConfig, Net, VisionEncoder};
use ssl_vision::model::resnet::ResNetConfig;
use ssl_vision::model::vit::VitConfig;
use ssl_vision::objectives::mae::{MaeConfig, MaeTask};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const CHECK_TIMM: &str = r#"
import json, sys, torch
from functools import partial
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer
d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
model = VisionTransformer(**cfg["model_args"], num_classes=cfg["num_classes"], norm_layer=partial(torch.nn.LayerNorm, eps=cfg["layer_norm_eps"]))
model.load_state_dict(load_file(d + "/model.safetensors"), strict=True)
ref = load_file(d + "/../expected.safetensors")
p = cfg["pretrained_cfg"]
mean = torch.tensor(p["mean"]).view(1, -1, 1, 1)
std = torch.tensor(p["std"]).view(1, -1, 1, 1)
with torch.no_grad():
    out = model.eval()((ref["images"] - mean) / std)
diff = (out - ref["features"]).abs().max().item()
print(f"max_abs_diff={diff:.3e}")
sys.exit(0 if diff < 1e-4 and out.shape == ref["features"].shape else 1)
"#;

/// The one-line loaders of timm and transformers on the same export, within the tolerance
/// `argv[2]`. They build timm's LayerNorm (epsilon 1e-6): a ViT with that epsilon matches within
/// 1e-4 (measured: equal); ours (LibTorch's 1e-5) within 5e-3 (measured: about 1e-5 without a CLS
/// token, about 1e-3 with one).
const CHECK_TIMM_LOADERS: &str = r#"
import json, sys, torch, timm, transformers
from safetensors.torch import load_file
d, tolerance = sys.argv[1], float(sys.argv[2])
ref = load_file(d + "/../expected.safetensors")
p = json.load(open(d + "/config.json"))["pretrained_cfg"]
x = (ref["images"] - torch.tensor(p["mean"]).view(1, -1, 1, 1)) / torch.tensor(p["std"]).view(1, -1, 1, 1)
by_timm = timm.create_model("local-dir:" + d, pretrained=True).eval()
by_hf = transformers.AutoModel.from_pretrained(d).eval()
with torch.no_grad():
    a = by_timm(x)
    b = by_hf(pixel_values=x).pooler_output
da = (a - ref["features"]).abs().max().item()
db = (b - ref["features"]).abs().max().item()
print(f"timm.create_model max_abs_diff={da:.3e}; AutoModel max_abs_diff={db:.3e}")
sys.exit(0 if max(da, db) < tolerance and a.shape == b.shape == ref["features"].shape else 1)
"#;

const CHECK_HF_VIT: &str = r#"
import sys, torch
from safetensors.torch import load_file
from transformers import ViTImageProcessor, ViTModel
d = sys.argv[1]
ref = load_file(d + "/../expected.safetensors")
model, info = ViTModel.from_pretrained(d, add_pooling_layer=False, output_loading_info=True)
print("missing", info["missing_keys"], "unexpected", info["unexpected_keys"])
proc = ViTImageProcessor.from_pretrained(d)
# The processor's own rescale and normalisation, from 8-bit pixels.
pixels = (ref["images"] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
inp = proc(list(pixels), return_tensors="pt", data_format="channels_first", input_data_format="channels_last")
with torch.no_grad():
    out = model.eval()(pixel_values=inp.pixel_values).last_hidden_state[:, 0]
diff = (out - ref["features"]).abs().max().item()
print(f"max_abs_diff={diff:.3e}")
sys.exit(0 if diff < 1e-4 and not info["missing_keys"] and not info["unexpected_keys"] else 1)
"#;

const CHECK_HF_MAE: &str = r#"
import sys, torch
from safetensors.torch import load_file
from transformers import ViTMAEForPreTraining, ViTMAEModel
d = sys.argv[1]
ref = load_file(d + "/../expected.safetensors")
model, info = ViTMAEForPreTraining.from_pretrained(d, output_loading_info=True)
print("missing", info["missing_keys"], "unexpected", info["unexpected_keys"])
with torch.no_grad():
    out = model.eval()(pixel_values=ref["images"] * 2 - 1, noise=ref["noise"])
    # The encoder alone, unmasked, as docs/src/interop.md tells users to load it.
    enc = ViTMAEModel.from_pretrained(d, mask_ratio=0.0).eval()
    cls = enc(pixel_values=ref["images"] * 2 - 1).last_hidden_state[:, 0]
mask_same = torch.equal(out.mask.bool(), ref["mask"].bool())
diff = max((out.logits - ref["pred"]).abs().max().item(), (cls - ref["features"]).abs().max().item())
print("same mask", mask_same)
print(f"max_abs_diff={diff:.3e}")
sys.exit(0 if diff < 1e-4 and mask_same and not info["missing_keys"] and not info["unexpected_keys"] else 1)
"#;

const CHECK_RESNET: &str = r#"
import sys, torch
from safetensors.torch import load_file
d = sys.argv[1]
sys.path.insert(0, d)
from modeling_ssl_resnet import SslResNet
model = SslResNet.from_pretrained(d).eval()
ref = load_file(d + "/../expected.safetensors")
with torch.no_grad():
    feats = model.features(ref["images"])
    pooled = model.pooled(ref["images"])
diff = max((feats - ref["features"]).abs().max().item(), (pooled - ref["pooled"]).abs().max().item())
print(f"max_abs_diff={diff:.3e}")
sys.exit(0 if diff < 1e-4 and feats.shape[1] == model.feature_dim else 1)
"#;

fn run_python(script: &str, dir: &Path) {
    ssl_records::test_python::check(script, &[dir], "torch, safetensors and timm");
}

/// An encoder with every variable perturbed (norm gains around 1, running variances positive),
/// so every tensor's name and layout matters.
fn perturbed(cfg: &EncoderConfig) -> VisionEncoder {
    let enc = VisionEncoder::new(cfg, Device::Cpu, 7);
    let _rng = ssl_core::rng::torch_rng(11);
    tch::no_grad(|| {
        for (name, mut var) in enc.vs.variables() {
            let noise = Tensor::randn(var.size(), (Kind::Float, Device::Cpu)) * 0.05;
            if name.ends_with("running_var") {
                var.copy_(&(noise.abs() * 4.0 + 0.5));
            } else if (name.contains(".ln") && name.ends_with("weight")) || name.contains("norm.weight") {
                var.copy_(&(noise + 1.0));
            } else {
                var.copy_(&(var.shallow_clone() + noise));
            }
        }
    });
    enc
}

fn images(channels: i64, size: i64) -> Tensor {
    let _rng = ssl_core::rng::torch_rng(3);
    Tensor::rand([3, channels, size, size], (Kind::Float, Device::Cpu))
}

fn small_vit(class_token: bool) -> VitConfig {
    VitConfig {
        in_channels: 3,
        image_size: 16,
        patch_size: 4,
        dim: 32,
        depth: 2,
        heads: 4,
        class_token,
        ..Default::default()
    }
}

#[test]
fn vit_exports_to_timm_vision_transformer() {
    for (class_token, eps) in [(false, 1e-5), (true, 1e-5), (true, 1e-6)] {
        let cfg = EncoderConfig::Vit(VitConfig { layer_norm_eps: eps, ..small_vit(class_token) });
        let enc = perturbed(&cfg);
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("timm");
        let weights: Vec<(String, Tensor)> = enc.vs.variables().into_iter().collect();
        export(&dir, &cfg, None, &weights, None).unwrap();
        let x = images(3, 16);
        let feats = tch::no_grad(|| enc.net.features_t(&x, false));
        Tensor::write_safetensors(&[("images", x), ("features", feats)], root.path().join("expected.safetensors"))
            .unwrap();
        run_python(CHECK_TIMM, &dir);
        let tolerance = if eps == 1e-6 { "1e-4" } else { "5e-3" };
        let what = "torch, safetensors, timm and transformers";
        ssl_records::test_python::check(CHECK_TIMM_LOADERS, &[dir.as_os_str(), std::ffi::OsStr::new(tolerance)], what);
    }
}

#[test]
fn vit_with_a_class_token_exports_to_hf_vit_model() {
    let cfg = EncoderConfig::Vit(small_vit(true));
    let enc = perturbed(&cfg);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hf");
    let weights: Vec<(String, Tensor)> = enc.vs.variables().into_iter().collect();
    export(&dir, &cfg, None, &weights, Some(ExportFormat::Hf)).unwrap();
    // 8-bit images, so the image processor sees exactly our pixels.
    let x = (images(3, 16) * 255.0).round() / 255.0;
    let feats = tch::no_grad(|| enc.net.features_t(&x, false));
    Tensor::write_safetensors(&[("images", x), ("features", feats)], root.path().join("expected.safetensors")).unwrap();
    ssl_records::test_python::check(CHECK_HF_VIT, &[&dir], "torch, safetensors and transformers");
    // Without a CLS token, HF is refused with the reason (timm takes it).
    let plain = EncoderConfig::Vit(small_vit(false));
    let w: Vec<(String, Tensor)> = perturbed(&plain).vs.variables().into_iter().collect();
    let e = export(&root.path().join("x"), &plain, None, &w, Some(ExportFormat::Hf)).unwrap_err().to_string();
    assert!(e.contains("--class-token"), "{e}");
}

#[test]
fn mae_exports_to_hf_vit_mae_for_pretraining() {
    let vit = small_vit(true);
    let mae = MaeConfig { decoder_dim: 16, decoder_depth: 1, decoder_heads: 2, ..MaeConfig::default() };
    let task = MaeTask::new(&vit, mae, Device::Cpu, 3);
    let _rng = ssl_core::rng::torch_rng(13);
    tch::no_grad(|| {
        for (name, mut var) in task.vs.variables() {
            let noise = Tensor::randn(var.size(), (Kind::Float, Device::Cpu)) * 0.05;
            if (name.contains(".ln") || name.contains("norm")) && name.ends_with("weight") {
                var.copy_(&(noise + 1.0));
            } else {
                var.copy_(&(var.shallow_clone() + noise));
            }
        }
    });
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hf");
    let weights: Vec<(String, Tensor)> = task.vs.variables().into_iter().collect();
    export(&dir, &EncoderConfig::Vit(vit.clone()), Some(&mae), &weights, Some(ExportFormat::Hf)).unwrap();
    let x = images(3, 16);
    // 16 patches at 75%: HF keeps int(16 * 0.25) = 4, as we do.
    let noise = Tensor::rand([3, vit.num_patches()], (Kind::Float, Device::Cpu));
    let (_, pred, mask) = tch::no_grad(|| task.loss_with_noise(&x, &noise));
    let features = tch::no_grad(|| task.vit.features(&x));
    Tensor::write_safetensors(
        &[
            ("images", x),
            ("noise", noise),
            ("pred", pred.contiguous()),
            ("mask", mask.to_kind(Kind::Float)),
            ("features", features),
        ],
        root.path().join("expected.safetensors"),
    )
    .unwrap();
    ssl_records::test_python::check(CHECK_HF_MAE, &[&dir], "torch, safetensors and transformers");
}

#[test]
fn resnet_exports_with_its_own_pytorch_module() {
    let cfg = EncoderConfig::Resnet(ResNetConfig {
        in_channels: 1,
        width: 8,
        blocks_per_stage: vec![1, 2, 1],
        feature_stage: 2,
        feature_pool: 2,
    });
    let enc = perturbed(&cfg);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("resnet");
    let weights: Vec<(String, Tensor)> = enc.vs.variables().into_iter().collect();
    export(&dir, &cfg, None, &weights, None).unwrap();
    let x = images(1, 16);
    let Net::Resnet(r) = &enc.net else { unreachable!("a ResNet config builds a ResNet") };
    let (feats, pooled) = tch::no_grad(|| (r.features_t(&x, false), r.pooled_last(&x, false)));
    Tensor::write_safetensors(
        &[("images", x), ("features", feats), ("pooled", pooled)],
        root.path().join("expected.safetensors"),
    )
    .unwrap();
    run_python(CHECK_RESNET, &dir);
}
