//! A tiny pretrain + evaluation through the library, checking the report and the run directory.
use ssl_core::trainer::Trainer;
use ssl_vision::data;
use ssl_vision::model::encoder::EncoderConfig;
use ssl_vision::pipeline::{self, Method, VisionConfig};
use std::sync::Arc;

#[test]
fn tiny_rotation_run_produces_a_checkpoint_and_a_complete_evaluation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-slice");
    let mut o = data::open(&root, 28).unwrap();
    o.train.truncate(600);
    let mut test = o.test.unwrap();
    test.truncate(200);
    let mut cfg = VisionConfig::defaults(Method::Rotation, 1, 28);
    if let EncoderConfig::Resnet(r) = &mut cfg.encoder {
        r.width = 4;
    }
    cfg.train.steps = 6;
    cfg.train.warmup_steps = 1;
    cfg.train.batch_size = 16;
    cfg.train.progress = false;
    cfg.protocol.labels_per_class = vec![1, 5];
    cfg.protocol.seeds = 2;
    cfg.protocol.headline_seeds = 2;
    cfg.protocol.finetune = ssl_core::eval::finetune::FinetuneConfig::tiny(3);
    cfg.protocol.probe.steps = 20;
    cfg.protocol.robustness_max_test = 20;
    let dir = tempfile::tempdir().unwrap();
    let summary = pipeline::pretrain(
        &cfg,
        Arc::new(o.train.clone()),
        Trainer::new(cfg.train.clone(), dir.path(), tch::Device::Cpu),
    )
    .unwrap();
    assert_eq!(summary.report.steps, 6);
    assert!(ssl_core::checkpoint::latest(dir.path()).is_some());
    let ev = pipeline::evaluate(&cfg, dir.path(), &o.train, &test, tch::Device::Cpu).unwrap();
    assert_eq!(ev.evaluations.len(), 3 * 2);
    assert!(ev.evaluations.iter().all(|r| r.pretrained.n_seeds == 2 && r.raw_baseline.is_some()));
    // Five corruptions at three severities, for each of the three evaluations.
    assert_eq!(ev.robustness.len(), 15 * 3);

    // Resuming a finished run trains nothing more and keeps its checkpoint.
    let again = pipeline::pretrain(
        &cfg,
        Arc::new(o.train.clone()),
        Trainer::new(cfg.train.clone(), dir.path(), tch::Device::Cpu).resuming(true),
    )
    .unwrap();
    assert_eq!(again.report.resumed_from, Some(6));
    assert!(again.losses.is_empty());
}

#[test]
fn inpainting_and_mae_write_reconstruction_grids() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-slice");
    let mut o = data::open(&root, 28).unwrap();
    o.train.truncate(64);
    for method in [Method::Inpainting, Method::Mae] {
        let mut cfg = VisionConfig::defaults(method, 1, 28);
        match &mut cfg.encoder {
            EncoderConfig::Resnet(r) => r.width = 4,
            EncoderConfig::Vit(v) => {
                v.dim = 32;
                v.depth = 1;
                v.heads = 2;
            }
        }
        cfg.mae.decoder_dim = 16;
        cfg.mae.decoder_depth = 1;
        cfg.train.steps = 2;
        cfg.train.warmup_steps = 1;
        cfg.train.batch_size = 16;
        cfg.train.progress = false;
        let dir = tempfile::tempdir().unwrap();
        pipeline::pretrain(
            &cfg,
            Arc::new(o.train.clone()),
            Trainer::new(cfg.train.clone(), dir.path(), tch::Device::Cpu),
        )
        .unwrap();
        let grid = image::open(dir.path().join("reconstructions.png")).unwrap();
        assert_eq!(grid.height(), 3 * (28 + 2) + 2, "{method:?}: three rows (original, masked, reconstructed)");
    }
}
