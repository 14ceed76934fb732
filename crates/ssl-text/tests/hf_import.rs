//! Tiny `BertForMaskedLM` and `BertModel` checkpoints with random weights, saved locally by
//! `transformers`, import into our BERT and give transformers' logits and hidden states within
//! 1e-4 on a padded batch; a `BertModel` gets a fresh MLM head; and export -> import -> export is
//! bit-identical.
//!
//! Needs a Python with torch, safetensors and transformers, named by `SSL_PYTHON` (`cargo xtask
//! test` sets it). Without it the test fails: it is never skipped silently.
use ssl_text::data::tokenizer::{TextTokenizer, TokenizerConfig};
use ssl_text::interop::export::export_hf;
use ssl_text::interop::import::HfBert;
use ssl_text::objectives::mlm::MlmObjective;
use tch::{Device, Kind, Tensor};

const MAKE: &str = r#"
import sys, torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM, BertModel
root, vocab = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=24, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)
def perturbed(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()
mlm = perturbed(BertForMaskedLM(cfg))
base = perturbed(BertModel(cfg))
mlm.save_pretrained(root + "/mlm")
base.save_pretrained(root + "/base")
ids = torch.tensor([[2, 7, 8, 9, 10, 3, 0, 0], [2, 11, 12, 13, 14, 15, 16, 3], [2, 17, 3, 0, 0, 0, 0, 0]])
mask = (ids != 0).long()
with torch.no_grad():
    logits = mlm(input_ids=ids, attention_mask=mask).logits
    hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
save_file({"ids": ids, "logits": logits.contiguous(), "hidden": hidden.contiguous()}, root + "/expected.safetensors")
"#;

/// Largest absolute difference over the non-padding positions of `[B, L, *]` tensors.
fn diff(a: &Tensor, b: &Tensor, ids: &Tensor) -> f64 {
    let keep = ids.ne(0).to_kind(Kind::Float).unsqueeze(-1);
    ((a - b).abs() * keep).max().double_value(&[])
}

#[test]
fn transformers_checkpoints_import_and_round_trip() {
    let docs = ["a thoroughly entertaining film with sharp writing", "the plot drags and the jokes fall flat"];
    let corpus: Vec<String> = (0..10).flat_map(|_| docs.iter().map(|s| s.to_string())).collect();
    let tok = TextTokenizer::train(corpus.iter(), &TokenizerConfig { vocab_size: 100, min_frequency: 1 }).unwrap();
    let vocab = tok.vocab_size();
    assert!(vocab > 20, "ids up to 17 must be in the vocabulary");

    let root = tempfile::tempdir().unwrap();
    ssl_records::test_python::run(
        MAKE,
        &[root.path().as_os_str(), vocab.to_string().as_ref()],
        "torch, safetensors and transformers",
    );
    let expected: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(root.path().join("expected.safetensors")).unwrap().into_iter().collect();
    let ids = &expected["ids"];

    // BertForMaskedLM: every tensor maps, the logits agree.
    let hf = HfBert::read(&root.path().join("mlm")).unwrap();
    assert!(hf.has_head());
    let mlm = MlmObjective::new(&hf.config, Device::Cpu).unwrap();
    assert!(hf.load_into(&mlm.vs).unwrap().is_empty(), "nothing fresh in a BertForMaskedLM");
    let logits = tch::no_grad(|| mlm.bert.mlm_logits_all(ids));
    let d = diff(&logits, &expected["logits"], ids);
    println!("BertForMaskedLM logits max_abs_diff={d:.3e}");
    assert!(d < 1e-4, "logits differ from transformers by {d}");

    // BertModel (no `bert.` prefix, a pooler, no head): the encoder agrees, the head is fresh.
    let _rng = ssl_core::rng::torch_rng(1);
    let hf_base = HfBert::read(&root.path().join("base")).unwrap();
    assert!(!hf_base.has_head());
    let base = MlmObjective::new(&hf_base.config, Device::Cpu).unwrap();
    let fresh = hf_base.load_into(&base.vs).unwrap();
    assert!(!fresh.is_empty() && fresh.iter().all(|n| n.starts_with("cls.predictions.")), "{fresh:?}");
    let hidden = tch::no_grad(|| base.bert.encode(ids, false));
    let d = diff(&hidden, &expected["hidden"], ids);
    println!("BertModel last_hidden_state max_abs_diff={d:.3e}");
    assert!(d < 1e-4, "hidden states differ from transformers by {d}");

    // export -> import -> export is bit-identical.
    let (e1, e2) = (root.path().join("e1"), root.path().join("e2"));
    export_hf(&e1, &mlm, &tok).unwrap();
    let again = HfBert::read(&e1).unwrap();
    let m2 = MlmObjective::new(&again.config, Device::Cpu).unwrap();
    assert!(again.load_into(&m2.vs).unwrap().is_empty());
    export_hf(&e2, &m2, &tok).unwrap();
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        let (a, b) = (std::fs::read(e1.join(f)).unwrap(), std::fs::read(e2.join(f)).unwrap());
        assert!(a == b, "{f} differs after export -> import -> export");
    }
}

#[test]
fn a_tensor_that_does_not_map_is_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1,
            "num_attention_heads": 1, "intermediate_size": 8, "max_position_embeddings": 6}"#,
    )
    .unwrap();
    let t = Tensor::zeros([10, 4], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(
        &[("embeddings.word_embeddings.weight", &t), ("adapter.weight", &t)],
        dir.join("model.safetensors"),
    )
    .unwrap();
    let e = HfBert::read(dir).err().expect("an unknown tensor is refused").to_string();
    assert!(e.contains("`adapter.weight`"), "{e}");
    // A shape that does not fit is named too.
    let t = Tensor::zeros([9, 4], (Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("embeddings.word_embeddings.weight", &t)], dir.join("model.safetensors")).unwrap();
    let hf = HfBert::read(dir).unwrap();
    let m = MlmObjective::new(&hf.config, Device::Cpu).unwrap();
    let e = hf.load_into(&m.vs).unwrap_err().to_string();
    assert!(e.contains("`bert.embeddings.word_embeddings.weight` has shape [9, 4]"), "{e}");
}
