//! The exported directory loads in Python `transformers` (`BertForMaskedLM` for a post-LN model,
//! `RobertaPreLayerNormForMaskedLM` for a pre-LN one) and gives the same logits as the Rust model
//! (within 1e-4) on a padded batch, and its `tokenizer.json` gives the same ids.
//!
//! Needs a Python with torch, safetensors and transformers, named by `SSL_PYTHON` (`cargo xtask
//! test` sets it). Without it the test fails: it is never skipped silently.
use ssl_text::data::tokenizer::{TextTokenizer, TokenizerConfig};
use ssl_text::interop::export::export_hf;
use ssl_text::model::BertConfig;
use ssl_text::objectives::mlm::MlmObjective;
use tch::{Device, Kind, Tensor};

const CHECK: &str = r#"
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast
d = sys.argv[1]
ref = load_file(d + "/../expected.safetensors")
model, info = AutoModelForMaskedLM.from_pretrained(d, output_loading_info=True)
model.eval()
print(type(model).__name__, "missing", info["missing_keys"], "unexpected", info["unexpected_keys"])
if type(model).__name__ != sys.argv[3] or info["missing_keys"] or info["unexpected_keys"]:
    sys.exit(1)
ids = ref["ids"]
with torch.no_grad():
    out = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
keep = (ids != 0).unsqueeze(-1)
diff = ((out - ref["logits"]).abs() * keep).max().item()
print(f"max_abs_diff={diff:.3e}")
tok = PreTrainedTokenizerFast(tokenizer_file=d + "/tokenizer.json")
py_ids = tok(sys.argv[2])["input_ids"]
rust_ids = ref["text_ids"].tolist()
print("python ids", py_ids)
print("rust ids  ", rust_ids)
sys.exit(0 if diff < 1e-4 and py_ids == rust_ids else 1)
"#;

#[test]
fn exported_model_matches_transformers() {
    exported_model_matches(false, "BertForMaskedLM");
}

#[test]
fn exported_pre_ln_model_matches_roberta_prelayernorm() {
    exported_model_matches(true, "RobertaPreLayerNormForMaskedLM");
}

fn exported_model_matches(pre_ln: bool, class: &str) {
    let docs = [
        "A thoroughly entertaining film, with sharp writing and warm performances.",
        "The plot drags and the jokes fall flat; a forgettable sequel.",
        "Call me Ishmael. Some years ago, never mind how long precisely.",
    ];
    let corpus: Vec<String> = (0..10).flat_map(|_| docs.iter().map(|s| s.to_string())).collect();
    let tok = TextTokenizer::train(corpus.iter(), &TokenizerConfig { vocab_size: 120, min_frequency: 1 }).unwrap();

    let _rng = ssl_core::rng::torch_rng(3);
    let cfg = BertConfig {
        vocab_size: tok.vocab_size() as i64,
        max_position: 24,
        pre_ln,
        ..BertConfig::preset("tiny").unwrap()
    };
    let model = MlmObjective::new(&cfg, Device::Cpu).unwrap();
    // Random LayerNorm gains and biases too, so every tensor's name and layout matters.
    tch::no_grad(|| {
        for (name, mut var) in model.vs.variables() {
            let noise = Tensor::randn(var.size(), (Kind::Float, Device::Cpu)) * 0.05;
            if name.ends_with("LayerNorm.weight") || name.ends_with("layer_norm.weight") {
                var.copy_(&(noise + 1.0));
            } else {
                var.copy_(&(var.shallow_clone() + noise));
            }
        }
    });

    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hf");
    export_hf(&dir, &model, &tok).unwrap();
    for f in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // The tied decoder weight is written once.
    let names: Vec<String> =
        Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().map(|t| t.0).collect();
    let base = if pre_ln { "roberta_prelayernorm" } else { "bert" };
    assert!(names.contains(&format!("{base}.embeddings.word_embeddings.weight")));
    assert!(!names.iter().any(|n| n.contains("decoder")));

    let text = "A sharp, warm film.";
    let text_ids = tok.encode_padded(text, 24).unwrap().into_iter().filter(|&i| i != 0).collect::<Vec<_>>();
    let rows: Vec<i64> = docs.iter().flat_map(|d| tok.encode_padded(d, 24).unwrap()).collect();
    let ids = Tensor::from_slice(&rows).view([docs.len() as i64, 24]);
    let logits = tch::no_grad(|| model.bert.mlm_logits_all(&ids));
    Tensor::write_safetensors(
        &[("ids", ids), ("logits", logits), ("text_ids", Tensor::from_slice(&text_ids))],
        root.path().join("expected.safetensors"),
    )
    .unwrap();

    ssl_records::test_python::check(
        CHECK,
        &[dir.as_os_str(), text.as_ref(), class.as_ref()],
        "torch, safetensors and transformers",
    );
}
