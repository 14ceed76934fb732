//! Import from transformers: a tiny `ViTMAEForPreTraining` (a decoder MLP 4x wide, as in the
//! paper) and a `ViTModel` with its pooler, created with perturbed random weights and saved by
//! transformers, load into our MAE and ViT and give transformers' outputs within 1e-4: the same
//! noise gives the same mask and reconstruction, and the encoded CLS token matches. The same
//! `ViTModel` saved under transformers 5's in-memory names imports to the same tensors; the
//! imported MAE exports back to transformers' tensors bit for bit (names compared in one scheme:
//! transformers 5 writes the decoder's layers as `decoder_encoder.layer`, we write transformers
//! 4's `decoder_layers`). Shapes that are not ours are refused with the reason.
//!
//! Needs a Python with torch, safetensors and transformers, named by `SSL_PYTHON` (`cargo xtask
//! test` sets it). Without it the test fails: it is never skipped silently.
use ssl_core::init::HfDir;
use ssl_vision::interop::import::HfVit;
use ssl_vision::model::encoder::{EncoderConfig, VisionEncoder};
use ssl_vision::objectives::mae::{MaeConfig, MaeTask};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const MAKE: &str = r#"
import sys, torch
from safetensors.torch import save_file
from transformers import ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTModel
root = sys.argv[1]
torch.manual_seed(0)
shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
             patch_size=4, num_channels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
def perturb(m):
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()
mae = perturb(ViTMAEForPreTraining(ViTMAEConfig(**shape, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                                                decoder_num_attention_heads=2, decoder_intermediate_size=64,
                                                mask_ratio=0.75)))
mae.save_pretrained(root + "/pre", safe_serialization=True)
vit = perturb(ViTModel(ViTConfig(**shape), add_pooling_layer=True))
vit.save_pretrained(root + "/vit", safe_serialization=True)
# The same ViTModel under transformers 5's in-memory names (its files use the older ones).
old = {k: v.contiguous() for k, v in vit.state_dict().items()}
import os, shutil
os.makedirs(root + "/vit-old")
shutil.copy(root + "/vit/config.json", root + "/vit-old/config.json")
save_file(old, root + "/vit-old/model.safetensors")
images = torch.rand(3, 3, 16, 16)
noise = torch.rand(3, 16)
with torch.no_grad():
    out = mae(pixel_values=images * 2 - 1, noise=noise)
    cls = vit(pixel_values=images * 2 - 1).last_hidden_state[:, 0]
save_file({"images": images, "noise": noise, "logits": out.logits.contiguous(), "mask": out.mask.contiguous(),
           "cls": cls.contiguous()}, root + "/expected.safetensors")
print("saved")
"#;

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn transformers_vits_import_and_match_their_outputs() {
    let root = tempfile::tempdir().unwrap();
    ssl_records::test_python::run(MAKE, &[root.path()], "torch, safetensors and transformers");
    let expected = tensors(&root.path().join("expected.safetensors"));

    // ViTMAEForPreTraining into our MAE: encoder and decoder, nothing fresh.
    let hf = HfVit::read(&root.path().join("pre")).unwrap();
    assert_eq!(hf.kind(), "HF ViTMAEForPreTraining");
    assert!(hf.vit.class_token && hf.vit.layer_norm_eps == 1e-12, "{:?}", hf.vit);
    let mut mae = MaeConfig::default();
    hf.apply_to(&mut mae);
    assert_eq!((mae.decoder_dim, mae.decoder_depth, mae.decoder_mlp_ratio), (16, 1, 4));
    let task = MaeTask::new(&hf.vit, mae, Device::Cpu, 0);
    let fresh = hf.init_weights().load_into(&task.vs).unwrap();
    assert!(fresh.is_empty(), "{fresh:?}");
    let (_, pred, mask) = tch::no_grad(|| task.loss_with_noise(&expected["images"], &expected["noise"]));
    assert!(mask.to_kind(Kind::Float).equal(&expected["mask"]), "the same noise masks the same patches");
    let d = max_diff(&pred, &expected["logits"]);
    println!("ViTMAEForPreTraining logits max_abs_diff={d:.3e}");
    assert!(d < 1e-4, "{d}");

    // Exported again: transformers' tensors, bit for bit.
    let weights: Vec<(String, Tensor)> = task.vs.variables().into_iter().collect();
    let again = root.path().join("again");
    ssl_vision::interop::export::export_hf(&again, &hf.vit, Some(&mae), &weights).unwrap();
    let one_scheme = |file: &Path| -> HashMap<String, Tensor> {
        tensors(file).into_iter().map(|(n, t)| (ssl_vision::interop::import::modern_name(&n), t)).collect()
    };
    let (source, back) =
        (one_scheme(&root.path().join("pre/model.safetensors")), one_scheme(&again.join("model.safetensors")));
    assert_eq!(source.len(), back.len());
    for (name, t) in &source {
        assert!(back.get(name).is_some_and(|b| b.equal(t)), "{name} differs after import and export");
    }

    // ViTModel (its pooler left out) into our ViT: the encoded CLS token.
    let vit = HfVit::read(&root.path().join("vit")).unwrap();
    assert_eq!(vit.kind(), "HF ViTModel");
    let enc = VisionEncoder::new(&EncoderConfig::Vit(vit.vit.clone()), Device::Cpu, 0);
    assert!(vit.init_weights().load_into(&enc.vs).unwrap().is_empty());
    let feats = tch::no_grad(|| enc.net.features_t(&expected["images"], false));
    let d = max_diff(&feats, &expected["cls"]);
    println!("ViTModel CLS max_abs_diff={d:.3e}");
    assert!(d < 1e-4, "{d}");
    // transformers 5's in-memory names give the same tensors.
    let old = HfVit::read(&root.path().join("vit-old")).unwrap();
    assert_eq!(old.tensors.len(), vit.tensors.len());
    for ((a, x), (b, y)) in old.tensors.iter().zip(&vit.tensors) {
        assert!(a == b && x.equal(y), "{a} / {b}");
    }
}

#[test]
fn shapes_that_are_not_ours_are_refused_with_the_reason() {
    let base = serde_json::json!({
        "model_type": "vit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
        "intermediate_size": 64, "image_size": 16, "patch_size": 4, "num_channels": 3,
    });
    for (key, value, needle) in [
        ("model_type", serde_json::json!("deit"), "deit"),
        ("hidden_act", serde_json::json!("relu"), "relu"),
        ("qkv_bias", serde_json::json!(false), "qkv_bias"),
        ("intermediate_size", serde_json::json!(48), "multiple"),
    ] {
        let mut cfg = base.clone();
        cfg[key] = value;
        let hf = HfDir { dir: "m".into(), config: cfg, tensors: Vec::new() };
        let e = ssl_vision::interop::import::vit_config(&hf).unwrap_err().to_string();
        assert!(e.contains(needle), "{key}: {e}");
    }
    let hf = HfDir { dir: "m".into(), config: base, tensors: Vec::new() };
    assert!(ssl_vision::interop::import::vit_config(&hf).is_ok());
}
