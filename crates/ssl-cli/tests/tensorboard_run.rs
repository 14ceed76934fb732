//! A finished run's TensorBoard event files, read by Python's `tensorboard` package: the training
//! scalars at every logging step and the evaluation accuracies at the end.
//!
//! Needs a Python with tensorboard, named by `SSL_PYTHON` (`cargo xtask test` installs it and sets
//! the variable); it is not skipped.
use std::process::Command;

#[test]
fn tensorboard_reads_a_finished_run() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("OMP_NUM_THREADS", "1")
        .args(["pretrain-vision", "--steps", "20", "--batch-size", "8", "--width", "4", "--max-images", "64"])
        .args(["--max-test", "40", "--labels-per-class", "2", "--seeds", "1", "--eval", "linear"])
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let scalars = ssl_records::test_python::tensorboard_scalars(&run);
    let loss = scalars["train/loss"].as_array().expect("train/loss");
    // log_every is 10 for vision: steps 10 and 20.
    assert_eq!(loss.iter().map(|p| p[0].as_i64().unwrap()).collect::<Vec<_>>(), vec![10, 20]);
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (point, line) in loss.iter().zip(&metrics) {
        let (tb, ours) = (point[1].as_f64().unwrap(), line["loss"].as_f64().unwrap());
        assert!((tb - ours).abs() <= 1e-6 * ours.abs().max(1.0), "TensorBoard {tb} vs metrics.jsonl {ours}");
    }
    for tag in ["train/lr", "train/grad_norm", "train/samples_per_s", "train/rotation_acc"] {
        assert_eq!(scalars[tag].as_array().map(Vec::len), Some(2), "{tag}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    let probe = scalars["eval/linear_2/pretrained"].as_array().expect("eval/linear_2/pretrained");
    let want = report["evaluations"][0]["pretrained"]["mean"].as_f64().unwrap();
    assert!((probe[0][1].as_f64().unwrap() - want).abs() < 1e-6);
    assert!(scalars.get("eval/linear_2/scratch").is_some() && scalars.get("eval/raw_2").is_some());
}
