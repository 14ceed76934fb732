//! Import from transformers: a tiny `Wav2Vec2ForPreTraining` and its `Wav2Vec2Model`, created
//! with random weights (norm gains and biases too) and saved by transformers, load into our
//! encoder and contrastive head and give transformers' hidden states (every layer) and
//! projections within 1e-4 on the real frames of a padded batch. An export of the imported
//! weights gives back transformers' tensors: bit for bit, except the weight-normalised positional
//! conv, whose magnitude and direction are only defined up to a scale (compared as the weight
//! they make). Shapes that are not our encoder are refused with the reason.
//!
//! Needs a Python with torch, safetensors and transformers, named by `SSL_PYTHON` (`cargo xtask
//! test` sets it). Without it the test fails: it is never skipped silently.
use ssl_speech::interop::import::HfWav2Vec2;
use ssl_speech::model::encoder::{normalize_rows, valid_lengths};
use ssl_speech::model::frame_validity;
use ssl_speech::objectives::{Method, SpeechObjective};
use ssl_speech::pipeline::SpeechConfig;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A tiny pre-LN wav2vec2 with our shape, perturbed, saved twice (with and without the
/// contrastive head), and its outputs on a padded batch normalised by its feature extractor.
const MAKE: &str = r#"
import sys, torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForPreTraining
root = sys.argv[1]
torch.manual_seed(0)
cfg = Wav2Vec2Config(
    conv_dim=[16] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_bias=False,
    feat_extract_norm="group", do_stable_layer_norm=True, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=4, intermediate_size=64, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
    num_codevector_groups=2, num_codevectors_per_group=8, codevector_dim=16, proj_codevector_dim=16,
    hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
    feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05)
model = Wav2Vec2ForPreTraining(cfg).eval()
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
model.save_pretrained(root + "/pre", safe_serialization=True)
model.wav2vec2.save_pretrained(root + "/base", safe_serialization=True)
lengths = [16000, 11000, 7300]
waves = torch.zeros(3, 16000)
for i, n in enumerate(lengths):
    t = torch.arange(n) / 16000.0
    waves[i, :n] = torch.sin(t * 2 * torch.pi * (220 + 110 * i)) * 0.3 + 0.05 + torch.randn(n) * 0.1
fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                              return_attention_mask=True)
inp = fe([waves[i, :n].numpy() for i, n in enumerate(lengths)], sampling_rate=16000, padding=True,
         return_tensors="pt")
with torch.no_grad():
    out = model.wav2vec2(inp.input_values, attention_mask=inp.attention_mask, output_hidden_states=True)
    pre = model(inp.input_values, attention_mask=inp.attention_mask)
# transformers 5 leaves the final LayerNorm out of the last entry of hidden_states (it is in
# last_hidden_state); ours has it.
hidden = torch.stack(list(out.hidden_states[:-1]) + [out.last_hidden_state])
save_file({"waves": waves, "lengths": torch.tensor(lengths), "hidden": hidden.contiguous(),
           "projected": pre.projected_states.contiguous(),
           "projected_q": pre.projected_quantized_states.contiguous()}, root + "/expected.safetensors")
print("saved", hidden.shape)
"#;

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).into_iter().collect()
}

fn linear(x: &Tensor, vars: &HashMap<String, Tensor>, name: &str) -> Tensor {
    x.matmul(&vars[&format!("{name}.weight")].tr()) + &vars[&format!("{name}.bias")]
}

fn max_diff_on(a: &Tensor, b: &Tensor, valid: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    ((a - b).abs() * valid.unsqueeze(-1).to_kind(Kind::Float)).max().double_value(&[])
}

#[test]
fn transformers_wav2vec2_imports_and_matches_its_outputs() {
    let root = tempfile::tempdir().unwrap();
    ssl_records::test_python::run(MAKE, &[root.path()], "torch, safetensors and transformers");
    let expected = tensors(&root.path().join("expected.safetensors"));

    // With the head, into a contrastive objective: every variable comes from the checkpoint.
    let hf = HfWav2Vec2::read(&root.path().join("pre")).unwrap();
    assert_eq!(hf.kind(), "HF Wav2Vec2ForPreTraining");
    let mut cfg = SpeechConfig::preset("tiny").unwrap();
    cfg.model = hf.model.clone();
    cfg.objective.method = Method::Contrastive;
    hf.apply_to(&mut cfg.objective);
    assert_eq!((cfg.objective.groups, cfg.objective.entries, cfg.objective.final_dim), (2, 8, 16));
    let objective = SpeechObjective::new(&cfg.model, cfg.objective.clone(), Device::Cpu);
    let vs = ssl_core::trainer::Objective::var_store(&objective);
    let fresh = hf.init_weights(Method::Contrastive).load_into(vs).unwrap();
    assert!(fresh.is_empty(), "every variable comes from the checkpoint: {fresh:?} fresh");

    let waves = expected["waves"].shallow_clone();
    let lengths: Vec<i64> = Vec::try_from(&expected["lengths"]).unwrap();
    let m = &objective.model;
    let (hidden, feats, valid) = tch::no_grad(|| {
        let x = normalize_rows(&waves, &valid_lengths(&waves));
        let feats = m.conv_features(&x);
        let valid = frame_validity(m.config(), &lengths, feats.size()[1], Device::Cpu);
        (Tensor::stack(&m.transform(&m.project(&feats), &valid, None), 0), feats, valid)
    });
    assert_eq!(hidden.size(), expected["hidden"].size(), "every layer's hidden states");
    let mut worst = 0f64;
    for i in 0..hidden.size()[0] {
        let d = max_diff_on(&hidden.get(i), &expected["hidden"].get(i), &valid);
        println!("hidden_{i}: {d:.3e}");
        worst = worst.max(d);
    }
    let vars: HashMap<String, Tensor> = vs.variables().into_iter().collect();
    let (projected, projected_q) = tch::no_grad(|| {
        let pred = linear(&hidden.get(-1), &vars, "head.final_proj");
        let (b, t) = (feats.size()[0], feats.size()[1]);
        let (g, v) = (cfg.objective.groups, cfg.objective.entries);
        let ids = linear(&feats, &vars, "head.quantizer.logits").view([b, t, g, v]).argmax(-1, false);
        let cv = vars["head.quantizer.codevectors"].view([g, v, -1]);
        let q = Tensor::einsum("btgv,gvd->btgd", &[ids.one_hot(v).to_kind(Kind::Float), cv], None::<i64>)
            .reshape([b, t, -1]);
        (pred, linear(&q, &vars, "head.project_q"))
    });
    let dp = max_diff_on(&projected, &expected["projected"], &valid);
    let dq = max_diff_on(&projected_q, &expected["projected_q"], &valid);
    println!("project_hid: {dp:.3e}, project_q: {dq:.3e}, max_abs_diff={:.3e}", worst.max(dp).max(dq));
    assert!(worst < 1e-4 && dp < 1e-4 && dq < 1e-4, "hidden {worst:e}, projected {dp:e}, quantized {dq:e}");

    // Export the imported weights: transformers' own tensors come back.
    let mut weights: Vec<(String, Tensor)> = vars.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let again = root.path().join("again");
    ssl_speech::interop::export::export_hf(&again, &cfg, &weights).unwrap();
    let (source, back) =
        (tensors(&root.path().join("pre/model.safetensors")), tensors(&again.join("model.safetensors")));
    let mut names: Vec<&String> = source.keys().collect();
    names.sort();
    let mut back_names: Vec<&String> = back.keys().collect();
    back_names.sort();
    assert_eq!(names, back_names, "the same tensors");
    let pos = "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original";
    for n in names.iter().filter(|n| !n.starts_with(pos)) {
        assert!(source[*n].equal(&back[*n]), "{n} differs after import and export");
    }
    let weight = |t: &HashMap<String, Tensor>| {
        let (g, v) = (&t[&format!("{pos}0")], &t[&format!("{pos}1")]);
        g * v / v.square().sum_dim_intlist(&[0i64, 1][..], true, Kind::Float).sqrt()
    };
    assert!(weight(&source).allclose(&weight(&back), 1e-6, 1e-6, false), "the positional conv's weight");

    // Without the head, into a BEST-RQ objective: the head alone starts fresh.
    let base = HfWav2Vec2::read(&root.path().join("base")).unwrap();
    assert_eq!(base.kind(), "HF Wav2Vec2Model");
    assert_eq!(base.model, hf.model);
    let bestrq = SpeechObjective::new(&base.model, SpeechConfig::preset("tiny").unwrap().objective, Device::Cpu);
    let fresh = base.init_weights(Method::BestRq).load_into(ssl_core::trainer::Objective::var_store(&bestrq)).unwrap();
    assert!(!fresh.is_empty() && fresh.iter().all(|n| n.starts_with("head.")), "{fresh:?}");
    let a = &vars["encoder.layer.1.qkv.weight"];
    let b = &ssl_core::trainer::Objective::var_store(&bestrq).variables()["encoder.layer.1.qkv.weight"];
    assert!(a.equal(b), "the same encoder from either checkpoint");
}

/// A `config.json` of our shape with `change` applied, and a placeholder weights file.
fn hf_dir(change: serde_json::Value) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = serde_json::json!({
        "model_type": "wav2vec2", "do_stable_layer_norm": true, "feat_extract_norm": "group", "conv_bias": false,
        "conv_dim": [16, 16], "conv_kernel": [10, 3], "conv_stride": [5, 2], "hidden_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
        "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 4,
    });
    for (k, v) in change.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
    Tensor::write_safetensors(
        &[("x", Tensor::zeros([1], (Kind::Float, Device::Cpu)))],
        d.path().join("model.safetensors"),
    )
    .unwrap();
    d
}

#[test]
fn shapes_that_are_not_our_encoder_are_refused_with_the_reason() {
    for (change, needle) in [
        (serde_json::json!({"do_stable_layer_norm": false}), "post-LN"),
        (serde_json::json!({"feat_extract_norm": "layer"}), "feat_extract_norm `layer`"),
        (serde_json::json!({"conv_bias": true}), "conv_bias"),
        (serde_json::json!({"conv_dim": [16, 32]}), "one width"),
        (serde_json::json!({"hidden_act": "relu"}), "relu"),
        (serde_json::json!({"model_type": "hubert"}), "hubert"),
        (serde_json::json!({}), "missing"),
    ] {
        let d = hf_dir(change.clone());
        let e = HfWav2Vec2::read(d.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(needle), "{change}: {e}");
    }
}
