//! `--init-from`: pretraining starts from a HuggingFace BERT made by transformers, or from one of
//! our own runs, and the weights it starts from are those of the source (checked tensor by
//! tensor after steps at a negligible learning rate). Sources that do not fit are refused,
//! naming what does not fit, before any step.
//!
//! Needs the test Python (`SSL_PYTHON`, with transformers) for the HF source.
use ssl_text::data::tokenizer::{TextTokenizer, TokenizerConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{json, ssl, text};
use tch::Tensor;

/// A randomly initialised `BertModel` saved by transformers as safetensors.
const MAKE_BERT: &str = r#"
import sys, torch
from transformers import BertConfig, BertModel
root, vocab = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=96)
BertModel(cfg).save_pretrained(root, safe_serialization=True)
"#;

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// Two steps at a learning rate too small to move any weight measurably, the smallest evaluation.
const TEXT_RUN: [&str; 17] = [
    "pretrain-text",
    "--steps",
    "2",
    "--lr",
    "1e-9",
    "--batch-size",
    "8",
    "--max-len",
    "64",
    "--labels-per-class",
    "2",
    "--seeds",
    "1",
    "--eval",
    "linear",
    "--threads",
    "1",
];

fn text_run(out: &Path, init: &Path) -> Vec<String> {
    let mut a: Vec<String> = TEXT_RUN.iter().map(|s| s.to_string()).collect();
    a.extend(["--out".into(), out.display().to_string(), "--init-from".into(), init.display().to_string()]);
    a
}

fn tensors(file: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).into_iter().collect()
}

fn final_weights(run: &Path) -> HashMap<String, Tensor> {
    let mut steps: Vec<PathBuf> =
        std::fs::read_dir(run.join("checkpoints")).unwrap().map(|e| e.unwrap().path()).collect();
    steps.sort();
    tensors(&steps.last().expect("a checkpoint").join("model.safetensors"))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn text_continues_from_a_transformers_bert_and_from_our_own_run() {
    let d = tempfile::tempdir().unwrap();
    let hf = d.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    // A small WordPiece vocabulary from the committed corpus, saved beside the weights.
    let corpus = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/text/corpus"));
    let mut docs = Vec::new();
    for e in std::fs::read_dir(corpus).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "txt") {
            docs.extend(std::fs::read_to_string(&p).unwrap().lines().take(300).map(str::to_owned));
        }
    }
    let tok = TextTokenizer::train(docs.iter(), &TokenizerConfig { vocab_size: 300, min_frequency: 1 }).unwrap();
    tok.save(&hf.join("tokenizer.json")).unwrap();
    ssl_records::test_python::run(MAKE_BERT, &[hf.as_os_str(), tok.vocab_size().to_string().as_ref()], "transformers");

    // From transformers' BertModel: every tensor loads, the MLM head starts fresh.
    let run1 = d.path().join("from-hf");
    let t = ok(ssl(&text_run(&run1, &hf)));
    assert!(t.contains("initialised from") && t.contains("fresh: cls.predictions"), "{t}");
    let source = tensors(&hf.join("model.safetensors"));
    let ours = final_weights(&run1);
    let mut compared = 0;
    for (name, t) in &source {
        if name.starts_with("pooler.") || name.ends_with("position_ids") {
            continue;
        }
        let mine = ours.get(&format!("bert.{name}")).unwrap_or_else(|| panic!("bert.{name} is not in the run"));
        assert!(max_diff(t, mine) < 1e-6, "{name} moved from the source: {}", max_diff(t, mine));
        compared += 1;
    }
    assert_eq!(compared, 5 + 2 * 16, "embeddings and two layers");
    let config = json(&run1.join("config.json"));
    let model = &config["config"]["resolved"]["model"];
    assert_eq!((model["hidden"].as_i64(), model["max_position"].as_i64()), (Some(32), Some(96)), "{model}");
    let report = json(&run1.join("report.json"));
    assert!(report["notes"].to_string().contains("Pretraining started from"), "{}", report["notes"]);

    // From our own run: its tokenizer and model come along, every tensor (the head too) loads.
    let run2 = d.path().join("from-run");
    ok(ssl(&text_run(&run2, &run1)));
    let (before, after) = (final_weights(&run1), final_weights(&run2));
    assert_eq!(before.len(), after.len());
    for (name, t) in &before {
        assert!(max_diff(t, &after[name]) < 1e-6, "{name} moved");
    }
    let vocab = |p: &Path| TextTokenizer::load(&p.join("tokenizer.json")).unwrap().vocab_size();
    assert_eq!(vocab(&run2), vocab(&hf));

    // What does not fit is refused before any step, naming it.
    let tokenizer = hf.join("tokenizer.json");
    let mut both = text_run(&d.path().join("both"), &hf);
    both.extend(["--tokenizer".into(), tokenizer.display().to_string()]);
    let o = ssl(&both);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--tokenizer and --init-from"), "{}", text(&o));
    let mut long = text_run(&d.path().join("long"), &hf);
    let at = long.iter().position(|a| a == "--max-len").unwrap() + 1;
    long[at] = "128".into();
    let o = ssl(&long);
    assert!(!o.status.success() && text(&o).contains("96 positions"), "{}", text(&o));
    let o =
        ssl(&["pretrain-vision", "--init-from", run1.to_str().unwrap(), "--out", d.path().join("v").to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).contains("text"), "{}", text(&o));
    assert!(!d.path().join("v/checkpoints").exists());
}

#[test]
fn vision_continues_from_our_own_run_of_the_same_model() {
    let d = tempfile::tempdir().unwrap();
    let base = [
        "pretrain-vision",
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--max-images",
        "64",
        "--max-test",
        "40",
        "--labels-per-class",
        "2",
        "--seeds",
        "1",
        "--eval",
        "linear",
        "--threads",
        "1",
    ];
    let run = |out: &Path, extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(extra);
        a.extend(["--out", out.to_str().unwrap()]);
        ssl(&a)
    };
    let first = d.path().join("first");
    ok(run(&first, &["--width", "4"]));
    let second = d.path().join("second");
    let init = first.to_str().unwrap();
    let t = ok(run(&second, &["--width", "4", "--lr", "1e-9", "--init-from", init]));
    assert!(t.contains("initialised from"), "{t}");
    let (before, after) = (final_weights(&first), final_weights(&second));
    assert_eq!(before.len(), after.len());
    for (name, t) in &before {
        // BatchNorm's running statistics keep moving at any learning rate; the weights do not.
        if name.contains("running_") || name.contains("num_batches") {
            continue;
        }
        assert!(max_diff(t, &after[name]) < 1e-6, "{name} moved: {}", max_diff(t, &after[name]));
    }
    // Another width: the first tensor that does not fit is named with both shapes.
    let o = run(&d.path().join("wider"), &["--width", "8", "--init-from", init]);
    assert!(!o.status.success() && text(&o).contains("has shape"), "{}", text(&o));
}

/// The smallest evaluation, on one thread.
const SMALLEST_EVAL: [&str; 8] = ["--labels-per-class", "2", "--seeds", "1", "--eval", "linear", "--threads", "1"];

/// A randomly initialised pre-LN `Wav2Vec2Model` of our shape, saved by transformers.
const MAKE_WAV2VEC2: &str = r#"
import sys, torch
from transformers import Wav2Vec2Config, Wav2Vec2Model
torch.manual_seed(0)
cfg = Wav2Vec2Config(
    conv_dim=[16] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_bias=False,
    feat_extract_norm="group", do_stable_layer_norm=True, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=4, intermediate_size=64, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4)
Wav2Vec2Model(cfg).save_pretrained(sys.argv[1], safe_serialization=True)
"#;

#[test]
fn speech_continues_from_a_transformers_wav2vec2() {
    let d = tempfile::tempdir().unwrap();
    let hf = d.path().join("hf");
    ssl_records::test_python::run(MAKE_WAV2VEC2, &[&hf], "transformers");
    let run = d.path().join("run");
    let mut args = vec!["pretrain-speech", "--init-from", hf.to_str().unwrap(), "--steps", "0", "--max-files", "12"];
    args.extend(SMALLEST_EVAL);
    args.extend(["--out", run.to_str().unwrap()]);
    let t = ok(ssl(&args));
    assert!(t.contains("initialised from"), "{t}");
    // The run's step-0 checkpoint holds the source as imported, and the head alone is fresh.
    let imported = ssl_speech::interop::import::HfWav2Vec2::read(&hf).unwrap();
    let ours = final_weights(&run);
    for (name, t) in &imported.tensors {
        assert!(max_diff(t, &ours[name]) == 0.0, "{name} differs from the import");
    }
    let encoder = ours.keys().filter(|n| n.starts_with("encoder.")).count();
    assert_eq!(encoder, imported.tensors.len(), "every encoder tensor comes from the source");
    let config = json(&run.join("config.json"));
    let model = &config["config"]["resolved"]["model"];
    assert_eq!((model["dim"].as_i64(), model["conv_channels"].as_i64()), (Some(32), Some(16)), "{model}");
    assert_eq!(config["config"]["resolved"]["preset"], "HF Wav2Vec2Model of --init-from");
    let report = json(&run.join("report.json"));
    assert!(report["notes"].to_string().contains("Pretraining started from"), "{}", report["notes"]);
    // A post-LN checkpoint is refused before any step, saying why.
    let mut cfg = json(&hf.join("config.json"));
    cfg["do_stable_layer_norm"] = false.into();
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    let mut again = args.to_vec();
    let out = d.path().join("post-ln");
    *again.last_mut().unwrap() = out.to_str().unwrap();
    let o = ssl(&again);
    assert_eq!(o.status.code(), Some(2), "a usage error, found before any work: {}", text(&o));
    assert!(text(&o).contains("post-LN"), "{}", text(&o));
    assert!(!out.join("checkpoints").exists(), "nothing trained");
}

/// A randomly initialised `ViTMAEModel` for the committed 28x28 grey images, saved by
/// transformers (no decoder: ours starts fresh).
const MAKE_VIT_MAE: &str = r#"
import sys, torch
from transformers import ViTMAEConfig, ViTMAEModel
torch.manual_seed(0)
cfg = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=28,
                   patch_size=4, num_channels=1)
ViTMAEModel(cfg).save_pretrained(sys.argv[1], safe_serialization=True)
"#;

#[test]
fn vision_mae_continues_from_a_transformers_vit_mae() {
    let d = tempfile::tempdir().unwrap();
    let hf = d.path().join("hf");
    ssl_records::test_python::run(MAKE_VIT_MAE, &[&hf], "transformers");
    let run = d.path().join("run");
    let mut args = vec!["pretrain-vision", "--method", "mae", "--init-from", hf.to_str().unwrap(), "--steps", "0"];
    args.extend(["--max-images", "64", "--max-test", "40"]);
    args.extend(SMALLEST_EVAL);
    args.extend(["--out", run.to_str().unwrap()]);
    let t = ok(ssl(&args));
    assert!(t.contains("initialised from") && t.contains("fresh: decoder."), "{t}");
    let imported = ssl_vision::interop::import::HfVit::read(&hf).unwrap();
    let ours = final_weights(&run);
    for (name, t) in &imported.tensors {
        assert!(max_diff(t, &ours[name]) == 0.0, "{name} differs from the import");
    }
    let config = json(&run.join("config.json"));
    let encoder = &config["config"]["resolved"]["encoder"];
    assert_eq!((encoder["class_token"].as_bool(), encoder["layer_norm_eps"].as_f64()), (Some(true), Some(1e-12)));
    // A ViT source with a ResNet method is refused before any work.
    let out = d.path().join("rotation");
    args[2] = "rotation";
    *args.last_mut().unwrap() = out.to_str().unwrap();
    let o = ssl(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--method mae"), "{}", text(&o));
    assert!(!out.join("checkpoints").exists());
}
