//! `ssl embed` on a finished run (called from the round trips in `cli.rs`, which made the run and
//! its export): every readable input is one row, named relative to `--data` in path order;
//! unreadable inputs are skipped and counted; hidden files and other extensions are not inputs;
//! and the rows are what Python computes from the run's export on the same files (vision through
//! `modeling_ssl_resnet.py`, text through transformers), or, for speech, equal for equal clips.
//!
//! Needs the test Python (`SSL_PYTHON`, with torch, safetensors, transformers and Pillow).
use crate::common::{json, ssl, text};
use ssl_core::embed::Embeddings;
use std::path::Path;

/// The exported ResNet's features of the PNGs, as a Python user computes them.
const CHECK_VISION: &str = r#"
import json, sys, numpy as np, torch
from PIL import Image
from safetensors import safe_open
exported, data, out = sys.argv[1:4]
sys.path.insert(0, exported)
from modeling_ssl_resnet import SslResNet
with safe_open(out, "pt") as f:
    X = f.get_tensor("features")
    names = json.loads(f.metadata()["inputs"])
imgs = torch.stack([torch.from_numpy(np.array(Image.open(data + "/" + n).convert("L"), dtype=np.float32) / 255.0)
                    for n in names]).unsqueeze(1)
with torch.no_grad():
    feats = SslResNet.from_pretrained(exported).eval().features(imgs)
diff = (feats - X).abs().max().item()
print(f"max_abs_diff={diff:.3e}")
sys.exit(0 if diff < 1e-4 and feats.shape == X.shape else 1)
"#;

/// The exported BERT's mean-pooled last hidden states of each line, tokenized on its own (no
/// padding) by the exported tokenizer.json, cut to the run's length.
const CHECK_TEXT: &str = r#"
import json, sys, torch
from safetensors import safe_open
from transformers import AutoModel, PreTrainedTokenizerFast
exported, data, out, max_len = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with safe_open(out, "pt") as f:
    X = f.get_tensor("features")
    names = json.loads(f.metadata()["inputs"])
tok = PreTrainedTokenizerFast(tokenizer_file=exported + "/tokenizer.json")
model = AutoModel.from_pretrained(exported).eval()
rows = []
for n in names:
    path, line = n.rsplit(":", 1)
    text = open(data + "/" + path, "rb").read().split(b"\n")[int(line) - 1].decode().rstrip("\r")
    ids = tok(text, truncation=True, max_length=max_len)["input_ids"]
    with torch.no_grad():
        rows.append(model(input_ids=torch.tensor([ids])).last_hidden_state.mean(1)[0])
feats = torch.stack(rows)
diff = (feats - X).abs().max().item()
print(f"max_abs_diff={diff:.3e}")
sys.exit(0 if diff < 1e-4 and feats.shape == X.shape else 1)
"#;

/// A deterministic 28x28 grey image.
fn image(seed: u32) -> image::GrayImage {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    image::GrayImage::from_fn(28, 28, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        image::Luma([(state >> 24) as u8])
    })
}

/// A 0.6 s tone at 16 kHz.
fn tone(path: &Path, hz: f32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..9_600 {
        let t = i as f32 / 16_000.0;
        w.write_sample(((2.0 * std::f32::consts::PI * hz * t).sin() * 8_000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Write the inputs for `modality` under `data`, with one unreadable input, a hidden one and a
/// file of another kind; return the names the readable inputs must have, in order.
fn write_inputs(modality: &str, data: &Path) -> Vec<&'static str> {
    for sub in ["a", ".hidden"] {
        std::fs::create_dir_all(data.join(sub)).unwrap();
    }
    std::fs::write(data.join("notes.md"), "not an input").unwrap();
    match modality {
        "vision" => {
            for (i, name) in ["a/0.png", "a/1.png", "b.png", "c.png", ".hidden/h.png"].iter().enumerate() {
                image(i as u32).save(data.join(name)).unwrap();
            }
            std::fs::write(data.join("bad.png"), b"not a png").unwrap();
            vec!["a/0.png", "a/1.png", "b.png", "c.png"]
        }
        "text" => {
            let long = "a long review that goes on and on ".repeat(12);
            std::fs::write(data.join("reviews.txt"), format!("a fine film\n\n{long}\r\nthe worst plot\n")).unwrap();
            let mut bad = b"ok line\n".to_vec();
            bad.extend_from_slice(b"caf\xe9 latin-1\n");
            std::fs::write(data.join("a/more.txt"), bad).unwrap();
            std::fs::write(data.join(".hidden/h.txt"), "hidden\n").unwrap();
            vec!["a/more.txt:1", "reviews.txt:1", "reviews.txt:3", "reviews.txt:4"]
        }
        _ => {
            tone(&data.join("a/x.wav"), 440.0);
            tone(&data.join("b.wav"), 440.0);
            tone(&data.join("c.wav"), 1_250.0);
            tone(&data.join(".hidden/h.wav"), 300.0);
            let whole = std::fs::read(data.join("c.wav")).unwrap();
            std::fs::write(data.join("bad.wav"), &whole[..30]).unwrap();
            vec!["a/x.wav", "b.wav", "c.wav"]
        }
    }
}

fn row(e: &Embeddings, i: i64) -> tch::Tensor {
    e.features.get(i)
}

/// Run `ssl embed` on `run` and check its file; `exported` is the run's export in its natural
/// format.
pub fn check(modality: &str, run: &Path, exported: &Path, dir: &Path) {
    let data = dir.join("embed-inputs");
    let names = write_inputs(modality, &data);
    let out = dir.join("features.safetensors");
    let o = ssl(&["embed", run.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "ssl embed: {}", text(&o));
    assert!(text(&o).contains("1 unreadable inputs skipped"), "the skip is reported: {}", text(&o));
    let e = Embeddings::read(&out).unwrap();
    assert_eq!(e.names, names, "{modality}: one row per readable input, in path order");
    let meta: std::collections::HashMap<_, _> = e.metadata.iter().cloned().collect();
    assert_eq!(meta.get("skipped").map(String::as_str), Some("1"), "{meta:?}");
    assert_eq!(meta.get("modality").map(String::as_str), Some(modality), "{meta:?}");
    assert!(meta.get("checkpoint").is_some_and(|c| c.contains("step-")), "{meta:?}");
    assert_eq!(e.features.size()[0], names.len() as i64);
    assert!(bool::try_from(e.features.isfinite().all()).unwrap(), "finite features");
    match modality {
        "vision" => {
            ssl_records::test_python::check(CHECK_VISION, &[exported, &data, &out], "torch, safetensors and Pillow");
        }
        "text" => {
            let len = json(&run.join("config.json"))["config"]["resolved"]["text"]["max_len"].to_string();
            let args = [exported.as_os_str(), data.as_os_str(), out.as_os_str(), std::ffi::OsStr::new(&len)];
            ssl_records::test_python::check(CHECK_TEXT, &args, "torch, safetensors and transformers");
        }
        _ => {
            assert_eq!(row(&e, 0), row(&e, 1), "the same clip gives the same row");
            assert!((row(&e, 0) - row(&e, 2)).abs().max().double_value(&[]) > 1e-4, "another clip, another row");
        }
    }
    // Bad paths exit 2 before anything is read.
    for (args, needle) in [
        (vec!["--data", "/nonexistent/in", "--out", out.to_str().unwrap()], "no such file"),
        (vec!["--data", data.to_str().unwrap(), "--out", dir.to_str().unwrap()], "a folder"),
        (vec!["--data", data.to_str().unwrap(), "--out", "/nonexistent/dir/f.safetensors"], "does not exist"),
    ] {
        let mut a = vec!["embed", run.to_str().unwrap()];
        a.extend(args);
        let o = ssl(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{a:?}: {}", text(&o));
    }
}
