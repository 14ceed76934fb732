//! A tiny pretraining run plus the evaluation protocol, through the library, on the committed
//! default data (a few dozen steps: this checks the plumbing, not the accuracy).
use ssl_core::eval::report::{detect_machine, Report};
use ssl_core::eval::EvalKind;
use ssl_core::trainer::Trainer;
use ssl_text::data::labeled::load_labeled;
use ssl_text::model::Pooling;
use ssl_text::pipeline::{self, TextConfig};
use std::path::PathBuf;
use tch::Device;

fn datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/text")
}

#[test]
fn tiny_pretrain_then_evaluate() {
    let run = tempfile::tempdir().unwrap();
    let mut cfg = TextConfig::cramming("tiny").unwrap();
    cfg.tokenizer.vocab_size = 1000;
    cfg.max_len = 32;
    cfg.model.hidden = 64;
    cfg.model.heads = 2;
    cfg.model.intermediate = 128;
    cfg.train.steps = 40;
    cfg.train.lr = 2e-3;
    cfg.train.warmup_steps = 4;
    cfg.train.batch_size = 32;
    cfg.train.log_every = 10;
    cfg.train.progress = false;
    cfg.max_heldout = 32;

    let data = pipeline::prepare(&[datasets().join("corpus")], None, &cfg, run.path(), false).unwrap();
    assert!(data.trained_tokenizer);
    assert!(run.path().join("tokenizer.json").is_file());
    assert!(data.packed.meta.documents > 4000, "{:?}", data.packed.meta);
    assert_eq!(data.read.skipped_lines, 0);
    assert_eq!(data.heldout_indices.len(), 32);

    let pre = pipeline::pretrain(&data, &cfg, Trainer::new(cfg.train.clone(), run.path(), Device::Cpu)).unwrap();
    assert_eq!(pre.summary.report.steps, 40);
    let first: f64 = pre.summary.losses[..5].iter().map(|l| l.1).sum::<f64>() / 5.0;
    let last: f64 = pre.summary.losses[35..].iter().map(|l| l.1).sum::<f64>() / 5.0;
    assert!(last < first - 0.5, "MLM loss did not fall: {first} -> {last}");
    let heldout = pre.heldout.unwrap();
    assert!(heldout.accuracy > 0.0 && heldout.accuracy < 1.0);
    assert!(heldout.perplexity.is_finite() && heldout.perplexity < 1000.0, "{heldout:?}");
    assert!(pre.tokens_seen > 40 * 32 * 20);

    // Resuming continues from the checkpoint instead of starting again.
    let mut longer = cfg.clone();
    longer.train.steps = 45;
    let resumed =
        pipeline::pretrain(&data, &longer, Trainer::new(longer.train.clone(), run.path(), Device::Cpu).resuming(true))
            .unwrap();
    assert_eq!(resumed.summary.report.resumed_from, Some(40));
    assert_eq!(resumed.summary.losses.len(), 5);

    let labeled = load_labeled(&datasets().join("labeled/rotten_tomatoes.csv"), "text", "label", 0).unwrap();
    assert_eq!(labeled.classes, ["fresh", "rotten"]);
    let mut protocol = TextConfig::protocol();
    protocol.labels_per_class = vec![5];
    protocol.seeds = 1;
    protocol.headline_seeds = 1;
    protocol.finetune = ssl_core::eval::finetune::FinetuneConfig {
        batch_size: 16,
        ..ssl_core::eval::finetune::FinetuneConfig::tiny(10)
    };
    protocol.probe.steps = 50;
    protocol.robustness_max_test = 64;
    let inputs =
        pipeline::eval_inputs(&data.tokenizer, &pre.model, cfg.max_len, &labeled, run.path(), &protocol, Pooling::Last)
            .unwrap();
    let evaluation = ssl_core::eval::evaluate(
        inputs.factory.as_ref(),
        &inputs.train,
        &inputs.test,
        &inputs.corruptions,
        &protocol,
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(evaluation.evaluations.len(), 2);
    for row in &evaluation.evaluations {
        assert!([EvalKind::Linear, EvalKind::Finetune].contains(&row.eval));
        for acc in [row.pretrained.mean, row.scratch.mean, row.raw_baseline.as_ref().unwrap().mean] {
            assert!((0.0..=1.0).contains(&acc), "{row:?}");
        }
    }
    // Three corruptions at three severities, for each evaluation.
    assert_eq!(evaluation.robustness.len(), 18);

    let report = Report {
        schema_version: ssl_core::run::REPORT_SCHEMA_VERSION,
        modality: "text".into(),
        method: "mlm".into(),
        machine: detect_machine(Device::Cpu),
        pretraining: Some(pre.summary.report.clone()),
        data: serde_json::json!({ "mlm_heldout": heldout }),
        skipped: Default::default(),
        notes: vec![],
        memory: None,
        evaluation,
    };
    report.write(run.path()).unwrap();
    let back: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(back["modality"], "text");
    assert!(back["data"]["mlm_heldout"]["perplexity"].as_f64().unwrap().is_finite());
    assert!(report.summary_table().contains("| 5 |"));
}

#[test]
fn empty_corpus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.txt"), "\n\n").unwrap();
    let run = tempfile::tempdir().unwrap();
    let err = pipeline::prepare(&[dir.path().to_path_buf()], None, &TextConfig::default(), run.path(), false)
        .err()
        .expect("an empty corpus must fail");
    assert!(err.to_string().contains("no text found"), "{err}");
}
