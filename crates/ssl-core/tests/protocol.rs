//! The evaluation protocol on a toy problem: two Gaussian blobs that a good encoder separates.
use ssl_core::eval::protocol::{evaluate, Corruption, EncoderFactory, EvalKind, ProtocolConfig};
use ssl_core::eval::report::{detect_machine, Report};
use ssl_core::eval::{Encoder, LabeledSet};
use ssl_core::toy::ToyEncoder;
use ssl_core::Result;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn blobs(n: i64, seed: i64) -> LabeledSet {
    let _rng = ssl_core::rng::torch_rng(seed as u64);
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
    let centers = labels.to_kind(Kind::Float).unsqueeze(1) * 2.0 - 1.0; // -1 or +1
    let x = Tensor::randn([n, 6], (Kind::Float, Device::Cpu)) * 0.7 + centers;
    LabeledSet::new(x, labels, 2)
}

/// "Pretrained" encoders share one set of weights (so we can check that frozen evaluations never
/// change them); scratch encoders are fresh random ones.
struct Factory {
    shared: ToyEncoder,
}

struct Shared<'a>(&'a ToyEncoder);

impl Encoder for Shared<'_> {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.0.features(xs, train)
    }
    fn feature_dim(&self) -> i64 {
        self.0.feature_dim()
    }
    fn var_store(&self) -> &VarStore {
        self.0.var_store()
    }
}

impl EncoderFactory for Factory {
    fn pretrained(&self, _device: Device) -> Result<Box<dyn Encoder + '_>> {
        Ok(Box::new(Shared(&self.shared)))
    }
    fn scratch(&self, device: Device, seed: u64) -> Result<Box<dyn Encoder + '_>> {
        Ok(Box::new(ToyEncoder::new(device, 6, 8, 100 + seed as i64)))
    }
}

fn weights(vs: &VarStore) -> Tensor {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::cat(&v.iter().map(|(_, t)| t.flatten(0, -1).detach().copy()).collect::<Vec<_>>(), 0)
}

fn config(evals: Vec<EvalKind>) -> ProtocolConfig {
    let mut cfg = ProtocolConfig { labels_per_class: vec![1, 5], seeds: 2, evals, ..Default::default() };
    cfg.finetune.steps = 20;
    cfg.probe.steps = 50;
    cfg
}

#[test]
fn frozen_evaluations_never_change_the_encoder_and_finetuning_does() {
    let factory = Factory { shared: ToyEncoder::new(Device::Cpu, 6, 8, 1) };
    let (train, test) = (blobs(200, 1), blobs(100, 2));
    let before = weights(factory.shared.var_store());
    evaluate(&factory, &train, &test, &[], &config(vec![EvalKind::Linear, EvalKind::Knn]), Device::Cpu).unwrap();
    assert!(weights(factory.shared.var_store()).equal(&before), "a frozen evaluation changed the encoder");
    evaluate(&factory, &train, &test, &[], &config(vec![EvalKind::Finetune]), Device::Cpu).unwrap();
    assert!(!weights(factory.shared.var_store()).equal(&before), "fine-tuning left the encoder unchanged");
}

#[test]
fn the_protocol_produces_a_complete_report() {
    let factory = Factory { shared: ToyEncoder::new(Device::Cpu, 6, 8, 1) };
    let (train, test) = (blobs(200, 1), blobs(100, 2));
    let noise = Corruption {
        name: "gaussian_noise".into(),
        severity: 1,
        apply: Box::new(|x: &Tensor| x + x.randn_like() * 3.0),
    };
    let cfg = config(vec![EvalKind::Linear, EvalKind::Knn, EvalKind::Finetune]);
    let ev = evaluate(&factory, &train, &test, &[noise], &cfg, Device::Cpu).unwrap();
    assert_eq!(ev.evaluations.len(), 3 * 2);
    for row in &ev.evaluations {
        assert_eq!(row.pretrained.n_seeds, 2);
        assert!((0.0..=1.0).contains(&row.pretrained.mean) && (0.0..=1.0).contains(&row.scratch.mean));
        assert!(row.raw_baseline.is_some());
    }
    // Blobs this far apart are learnable from 5 labels per class by every evaluation.
    let linear5 = ev.evaluations.iter().find(|r| r.eval == EvalKind::Linear && r.labels_per_class == 5).unwrap();
    assert!(linear5.raw_baseline.as_ref().unwrap().mean > 0.8, "{linear5:?}");
    // Robustness at the largest k (10 is not evaluated here): one row per eval for the corruption.
    assert_eq!(ev.robustness.len(), 3);
    assert!(ev.robustness.iter().all(|r| r.labels_per_class == 5));

    let report = Report {
        schema_version: ssl_core::run::REPORT_SCHEMA_VERSION,
        modality: "toy".into(),
        method: "none".into(),
        machine: detect_machine(Device::Cpu),
        pretraining: None,
        data: serde_json::json!({}),
        skipped: Default::default(),
        notes: vec![],
        evaluation: ev,
    };
    let dir = tempfile::tempdir().unwrap();
    report.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let row = &json["evaluations"][0];
    for key in ["eval", "labels_per_class", "pretrained", "scratch", "raw_baseline", "train_test_gap"] {
        assert!(row.get(key).is_some(), "report row lacks {key}: {row}");
    }
    assert!(row["pretrained"]["mean"].is_number() && row["pretrained"]["n_seeds"] == 2);
    assert!(json["robustness"][0]["corruption"] == "gaussian_noise");
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| labels/class |"));
    ssl_core::plots::accuracy_plot(&report, &dir.path().join("accuracy.png")).unwrap();
    assert!(std::fs::metadata(dir.path().join("accuracy.png")).unwrap().len() > 1000);
    ssl_core::plots::robustness_plot(&report, &dir.path().join("robustness.png")).unwrap();
    assert!(std::fs::metadata(dir.path().join("robustness.png")).unwrap().len() > 1000);
    assert!(md.contains("](accuracy.png)") && md.contains("](robustness.png)"), "report.md links its plots");
}

#[test]
fn an_empty_test_set_is_a_clear_error() {
    let factory = Factory { shared: ToyEncoder::new(Device::Cpu, 6, 8, 1) };
    let train = blobs(20, 1);
    let empty = LabeledSet::new(
        Tensor::zeros([0, 6], (Kind::Float, Device::Cpu)),
        Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
        2,
    );
    let err = evaluate(&factory, &train, &empty, &[], &config(vec![EvalKind::Linear]), Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("must not be empty"));
}

/// Cross-validated L2: with one informative feature among 300 noise features and only 40 labeled
/// rows, an almost unregularised head fits the noise; the penalty chosen by 5-fold CV on the 40
/// rows alone must generalise better than the weakest penalty on fresh data.
#[test]
fn cross_validated_probe_picks_a_decay_from_the_grid_and_generalises() {
    use ssl_core::eval::classifier::{cv_l2, LinearClassifier, ProbeConfig, CV_L2};
    let make = |n: i64, seed: i64| {
        let _rng = ssl_core::rng::torch_rng(seed as u64);
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(2);
        let noise = Tensor::randn([n, 300], (Kind::Float, Device::Cpu));
        let signal = (y.to_kind(Kind::Float) * 2.0 - 1.0).unsqueeze(1) * 1.5
            + Tensor::randn([n, 1], (Kind::Float, Device::Cpu)) * 0.5;
        (Tensor::cat(&[signal, noise], 1), y)
    };
    let (x, y) = make(40, 1);
    let (xt, yt) = make(2000, 2);
    let cv = ProbeConfig { cv_folds: 5, ..ProbeConfig::default() };
    let wd = cv_l2(&x, &y, 2, &cv, 0).unwrap();
    assert!(CV_L2.contains(&wd), "{wd}");
    let acc = |cfg: &ProbeConfig| {
        let clf = LinearClassifier::fit(&x, &y, 2, cfg, 0).unwrap();
        clf.predict(&xt).eq_tensor(&yt).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
    };
    let weakest = acc(&ProbeConfig { l2: CV_L2[0], weight_decay: 0.0, ..ProbeConfig::default() });
    let chosen = acc(&cv);
    // Measured: weakest 0.52 (the noise is fitted), cross-validated 0.60 (l2 0.1).
    assert!(chosen >= weakest + 0.05, "cv {chosen} (l2 {wd}) vs the weakest l2 {weakest}");
}
