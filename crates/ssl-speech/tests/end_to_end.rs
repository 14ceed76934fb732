//! A tiny pretrain + evaluation through the library on the committed clips, checked through the
//! report it produces. Kept small so it runs in seconds on 2 CPU cores.
use ssl_core::eval::report::{detect_machine, Report};
use ssl_core::eval::EvalKind;
use ssl_core::trainer::Trainer;
use ssl_speech::data::dataset::{load_labeled, AudioCorpus};
use ssl_speech::objectives::Method;
use ssl_speech::pipeline::{evaluate_split, pretrain, SpeechConfig};
use std::path::PathBuf;
use tch::Device;

mod common;

fn committed(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/speech").join(rel)
}

fn tiny_config(method: Method) -> SpeechConfig {
    let mut cfg = SpeechConfig::preset("tiny").unwrap();
    cfg.model = common::small_model();
    cfg.objective.method = method;
    cfg.objective.codebook_size = 32;
    cfg.objective.entries = 8;
    cfg.objective.final_dim = 16;
    cfg.objective.num_negatives = 10;
    cfg.crop_seconds = 1.0;
    cfg.train.steps = 4;
    cfg.train.batch_size = 4;
    cfg.train.warmup_steps = 1;
    cfg.train.log_every = 2;
    cfg.train.progress = false;
    cfg.protocol.labels_per_class = vec![1];
    cfg.protocol.seeds = 1;
    cfg.protocol.headline_seeds = 1;
    cfg.protocol.evals = vec![EvalKind::Linear, EvalKind::Knn];
    cfg.protocol.probe.steps = 20;
    cfg.protocol.knn_k = 3;
    cfg.protocol.robustness_max_test = 10;
    cfg.eval_seconds = 0.6;
    cfg
}

#[test]
fn tiny_pretrain_and_evaluation_write_a_complete_report() {
    tch::set_num_threads(2);
    let dir = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let cfg = tiny_config(Method::BestRq);
    let corpus = AudioCorpus::load_dir(&committed("unlabeled"), &cfg.model).unwrap();
    assert!(corpus.skipped.is_empty());
    assert!(corpus.seconds() > 30.0);
    eprintln!("loaded in {:?}", t0.elapsed());
    let out = pretrain(&cfg, corpus, Trainer::new(cfg.train.clone(), dir.path(), Device::Cpu)).unwrap();
    eprintln!("pretrained in {:?}", t0.elapsed());
    assert_eq!(out.summary.report.steps, 4);
    assert!(out.summary.report.final_loss.is_finite());
    assert!(out.summary.checkpoint.is_some());
    let metrics = ssl_core::trainer::read_metrics(dir.path());
    assert_eq!(metrics.len(), 2);
    for key in ["target_perplexity", "prediction_variance", "target_variance", "accuracy"] {
        assert!(metrics[1].extra.contains_key(key), "metrics.jsonl lacks {key}");
    }

    let split = load_labeled(&committed("digits"), 9600, &cfg.model).unwrap();
    assert_eq!(split.classes.len(), 10);
    assert_eq!(split.train.len(), 80);
    assert_eq!(split.test.len(), 40);
    eprintln!("labeled loaded in {:?}", t0.elapsed());
    let evaluation = evaluate_split(&cfg, &out.encoder, &split, Device::Cpu).unwrap();
    eprintln!("evaluated in {:?}", t0.elapsed());
    let report = Report {
        schema_version: ssl_core::run::REPORT_SCHEMA_VERSION,
        modality: "speech".into(),
        method: "best-rq".into(),
        machine: detect_machine(Device::Cpu),
        pretraining: Some(out.summary.report.clone()),
        data: serde_json::json!({}),
        skipped: Default::default(),
        notes: vec![],
        memory: None,
        evaluation,
    };
    report.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let rows = json["evaluations"].as_array().unwrap();
    assert_eq!(rows.len(), 2); // linear and knn at 1 label per class
    for r in rows {
        for enc in ["pretrained", "scratch"] {
            let acc = r[enc]["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc));
        }
        assert!(r["raw_baseline"]["mean"].as_f64().is_some(), "the log-mel baseline is reported");
    }
    let robust = json["robustness"].as_array().unwrap();
    let names: Vec<&str> = robust.iter().map(|r| r["corruption"].as_str().unwrap()).collect();
    for want in ["white noise 0 dB SNR", "babble noise 10 dB SNR", "gain -20 dB", "speed 1.1x"] {
        assert!(names.contains(&want), "no robustness row for {want}");
    }
}

#[test]
fn the_other_objectives_train_a_few_steps() {
    tch::set_num_threads(2);
    for method in [Method::Contrastive, Method::Reconstruct] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tiny_config(method);
        cfg.train.steps = 2;
        let corpus = AudioCorpus::load_dir(&committed("unlabeled/espeak"), &cfg.model).unwrap();
        let out = pretrain(&cfg, corpus, Trainer::new(cfg.train.clone(), dir.path(), Device::Cpu)).unwrap();
        assert!(out.summary.report.final_loss.is_finite(), "{method:?}");
        let metrics = ssl_core::trainer::read_metrics(dir.path());
        assert!(metrics[0].extra.contains_key("prediction_variance"));
        if method == Method::Contrastive {
            assert!(metrics[0].extra.contains_key("code_perplexity"));
            assert!(metrics[0].extra.contains_key("gumbel_temperature"));
        }
    }
}
