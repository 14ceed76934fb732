//! The exported directory loads in Python `transformers` as `Wav2Vec2Model` and
//! `Wav2Vec2ForPreTraining`, with its own `Wav2Vec2FeatureExtractor` normalising a padded batch,
//! and gives the Rust encoder's hidden states (every layer) and the contrastive head's
//! projections within 1e-4 on the real frames.
//!
//! Needs a Python with torch, safetensors and transformers, named by `SSL_PYTHON` (`cargo xtask
//! test` sets it). Without it the test fails: it is never skipped silently.
use ssl_speech::interop::export::export_hf;
use ssl_speech::model::encoder::{normalize_rows, valid_lengths};
use ssl_speech::model::{frame_validity, ModelConfig};
use ssl_speech::objectives::{Method, SpeechObjective};
use ssl_speech::pipeline::SpeechConfig;
use tch::{Device, Kind, Tensor};

const CHECK: &str = r#"
import sys, torch
from safetensors.torch import load_file
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining, Wav2Vec2Model
d = sys.argv[1]
ref = load_file(d + "/../expected.safetensors")
lengths = ref["lengths"].tolist()
fe = Wav2Vec2FeatureExtractor.from_pretrained(d)
raw = [ref["waves"][i, :n].numpy() for i, n in enumerate(lengths)]
inp = fe(raw, sampling_rate=16000, padding=True, return_tensors="pt")
valid = ref["valid"][..., None].float()
model, info = Wav2Vec2Model.from_pretrained(d, output_loading_info=True)
pre, pre_info = Wav2Vec2ForPreTraining.from_pretrained(d, output_loading_info=True)
missing = sorted(info["missing_keys"]) + sorted(pre_info["missing_keys"])
print("missing", missing, "unexpected", sorted(pre_info["unexpected_keys"]))
with torch.no_grad():
    out = model.eval()(inp.input_values, attention_mask=inp.attention_mask, output_hidden_states=True)
    p = pre.eval()(inp.input_values, attention_mask=inp.attention_mask)
hidden = ref["hidden"]
diffs = {"last": ((out.last_hidden_state - hidden[-1]).abs() * valid).max().item()}
# transformers 5 leaves the final LayerNorm out of the last entry of hidden_states (it is in
# last_hidden_state); ours has it, so that entry is compared through last_hidden_state.
for i, h in enumerate(out.hidden_states[:-1]):
    diffs[f"hidden_{i}"] = ((h - hidden[i]).abs() * valid).max().item()
diffs["project_hid"] = ((p.projected_states - ref["projected"]).abs() * valid).max().item()
diffs["project_q"] = ((p.projected_quantized_states - ref["projected_q"]).abs() * valid).max().item()
print("layers", len(out.hidden_states), "of", hidden.shape[0])
print(" ".join(f"{k}={v:.3e}" for k, v in diffs.items()))
print(f"max_abs_diff={max(diffs.values()):.3e}")
ok = max(diffs.values()) < 1e-4 and not missing and len(out.hidden_states) == hidden.shape[0]
sys.exit(0 if ok else 1)
"#;

fn linear(x: &Tensor, weights: &[(String, Tensor)], name: &str) -> Tensor {
    let get = |n: String| weights.iter().find(|(k, _)| *k == n).map(|(_, t)| t.shallow_clone()).unwrap();
    x.matmul(&get(format!("{name}.weight")).tr()) + get(format!("{name}.bias"))
}

#[test]
fn exported_encoder_matches_transformers_on_a_padded_batch() {
    let mut cfg = SpeechConfig::preset("tiny").unwrap();
    // An even positional kernel: HF trims its extra frame as we do.
    cfg.model = ModelConfig {
        conv_channels: 16,
        dim: 32,
        layers: 2,
        heads: 4,
        ffn_dim: 64,
        pos_conv_kernel: 8,
        pos_conv_groups: 4,
        ..ModelConfig::tiny()
    };
    cfg.objective.method = Method::Contrastive;
    cfg.objective.entries = 8;
    cfg.objective.final_dim = 16;
    let _rng = ssl_core::rng::torch_rng(5);
    let objective = SpeechObjective::new(&cfg.model, cfg.objective.clone(), Device::Cpu);
    let vs = ssl_core::trainer::Objective::var_store(&objective);
    // Random norm gains and biases too, so every tensor's name and layout matters.
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let noise = Tensor::randn(var.size(), (Kind::Float, Device::Cpu)) * 0.05;
            if name.contains("norm.weight") || (name.contains(".ln") && name.ends_with("weight")) {
                var.copy_(&(noise + 1.0));
            } else {
                var.copy_(&(var.shallow_clone() + noise));
            }
        }
    });
    let mut weights: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));

    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hf");
    export_hf(&dir, &cfg, &weights).unwrap();
    for f in ["model.safetensors", "config.json", "preprocessor_config.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }

    // Three utterances of 1, 0.69 and 0.46 s, zero-padded to the longest.
    let lengths = [16000i64, 11000, 7300];
    let waves = Tensor::zeros([3, 16000], (Kind::Float, Device::Cpu));
    for (i, &n) in lengths.iter().enumerate() {
        let t = Tensor::arange(n, (Kind::Float, Device::Cpu)) / 16000.0;
        let tone = (&t * (2.0 * std::f64::consts::PI * (220.0 + 110.0 * i as f64))).sin() * 0.3 + 0.05;
        let w = tone + Tensor::randn([n], (Kind::Float, Device::Cpu)) * 0.1;
        waves.get(i as i64).narrow(0, 0, n).copy_(&w);
    }
    assert_eq!(Vec::<i64>::try_from(valid_lengths(&waves)).unwrap(), lengths.to_vec());
    let m = &objective.model;
    let (hidden, feats, valid) = tch::no_grad(|| {
        let x = normalize_rows(&waves, &valid_lengths(&waves));
        let feats = m.conv_features(&x);
        let valid = frame_validity(m.config(), &lengths, feats.size()[1], Device::Cpu);
        let outs = m.transform(&m.project(&feats), &valid, None);
        (Tensor::stack(&outs, 0), feats, valid)
    });
    let (projected, projected_q) = tch::no_grad(|| {
        let pred = linear(&hidden.get(-1), &weights, "head.final_proj");
        // The quantizer in evaluation: the most probable entry of each codebook.
        let (b, t) = (feats.size()[0], feats.size()[1]);
        let (g, v) = (cfg.objective.groups, cfg.objective.entries);
        let ids = linear(&feats, &weights, "head.quantizer.logits").view([b, t, g, v]).argmax(-1, false);
        let cv = weights.iter().find(|(n, _)| n == "head.quantizer.codevectors").unwrap().1.view([g, v, -1]);
        let q = Tensor::einsum("btgv,gvd->btgd", &[ids.one_hot(v).to_kind(Kind::Float), cv], None::<i64>)
            .reshape([b, t, -1]);
        (pred, linear(&q, &weights, "head.project_q"))
    });
    Tensor::write_safetensors(
        &[
            ("waves", waves),
            ("lengths", Tensor::from_slice(&lengths)),
            ("valid", valid.to_kind(Kind::Float)),
            ("hidden", hidden),
            ("projected", projected),
            ("projected_q", projected_q),
        ],
        root.path().join("expected.safetensors"),
    )
    .unwrap();

    ssl_records::test_python::check(CHECK, &[&dir], "torch, safetensors and transformers");
}

#[test]
fn encoders_with_a_positional_layer_norm_are_refused() {
    let mut cfg = SpeechConfig::preset("tiny").unwrap();
    cfg.model.pos_norm = true;
    let _rng = ssl_core::rng::torch_rng(0);
    let objective = SpeechObjective::new(&cfg.model, cfg.objective.clone(), Device::Cpu);
    let weights: Vec<(String, Tensor)> =
        ssl_core::trainer::Objective::var_store(&objective).variables().into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let e = export_hf(dir.path(), &cfg, &weights).unwrap_err().to_string();
    assert!(e.contains("pos_norm"), "{e}");
    assert!(!dir.path().join("model.safetensors").exists());
}
