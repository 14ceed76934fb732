//! The example recipe runs end to end on the committed images and ends with the same report as
//! the built-in methods.
#[test]
fn jigsaw_runs_through_the_recipe_seam_and_reports() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_jigsaw"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("OMP_NUM_THREADS", "1")
        .args(["--steps", "6", "--batch-size", "8", "--width", "4", "--max-images", "64", "--max-test", "40"])
        .args(["--labels-per-class", "2", "--seeds", "1", "--eval", "linear", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{log}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["method"], "jigsaw");
    assert_eq!(report["pretraining"]["steps"], 6);
    assert!(!report["evaluations"].as_array().unwrap().is_empty());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("jigsaw_acc"), "the objective's own metric is logged: {metrics}");
}
