//! Crops on the training device (`--augment-on-device`) give the loader's waveforms, bit for bit
//! on the CPU: the same clips, the same drawn starts and span masks, cut by one gather of the
//! resident corpus.
use ssl_core::loader::{Loader, LoaderPosition};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_speech::data::batch::{SpeechBatch, Waves};
use ssl_speech::data::dataset::{AudioCorpus, CropSource};
use ssl_speech::data::masking::SpanMasker;
use ssl_speech::model::ModelConfig;
use ssl_speech::pipeline::{pretrain, SpeechConfig};
use std::path::PathBuf;
use std::sync::Arc;
use tch::Device;

mod common;

fn corpus(model: &ModelConfig) -> AudioCorpus {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/speech/unlabeled");
    AudioCorpus::load_dir(&dir, model).unwrap()
}

fn batches(model: &ModelConfig, crop_seconds: f64, on_device: bool, n: usize) -> Vec<SpeechBatch> {
    let masker = SpanMasker { prob: 0.2, length: 4 };
    let source = CropSource::new(corpus(model), crop_seconds, masker, model.clone()).unwrap();
    let source = Arc::new(source.crops_on_device(on_device).unwrap());
    let mut loader = Loader::new(source, 6, 3, LoaderPosition::default(), 2, 2);
    (0..n).map(|_| loader.next_batch().unwrap().batch).collect()
}

#[test]
fn device_crops_give_the_loaders_waveforms_and_masks() {
    let model = common::small_model();
    // Longer than some clips and shorter than others: rows are cropped and rows are padded.
    let crop_seconds = 1.5;
    let crop = (crop_seconds * 16000.0) as i64;
    let host = batches(&model, crop_seconds, false, 6);
    let device = batches(&model, crop_seconds, true, 6);
    let (mut cropped, mut padded) = (0, 0);
    for (h, d) in host.iter().zip(&device) {
        assert!(matches!(h.waves, Waves::Samples(_)) && matches!(d.waves, Waves::Crops { .. }));
        assert_eq!(h.lengths, d.lengths);
        assert!(h.mask.equal(&d.mask), "the span masks differ");
        let (hw, dw) = (h.waves_on(Device::Cpu).unwrap(), d.waves_on(Device::Cpu).unwrap());
        assert_eq!(hw.size(), dw.size());
        let diff = (&hw - &dw).abs().max().double_value(&[]);
        assert!(diff == 0.0, "the device's crops differ from the loader's by {diff}");
        // Padding is exact zeros (the encoder's marker) on both sides.
        for (row, &len) in d.lengths.iter().enumerate() {
            let width = dw.size()[1];
            if len < width {
                let tail = dw.get(row as i64).narrow(0, len, width - len);
                assert_eq!(tail.abs().max().double_value(&[]), 0.0);
            }
            cropped += (len == crop) as usize;
            padded += (len < crop) as usize;
        }
    }
    assert!(cropped > 0 && padded > 0, "the test needs both cropped ({cropped}) and padded ({padded}) rows");
}

#[test]
fn training_with_device_crops_follows_the_loaders_losses() {
    let losses = |on_device: bool| -> Vec<f64> {
        let mut cfg = SpeechConfig::preset("tiny").unwrap();
        cfg.model = common::small_model();
        (cfg.objective.codebook_size, cfg.objective.entries, cfg.objective.final_dim) = (32, 8, 16);
        cfg.crop_seconds = 1.0;
        cfg.augment_on_device = on_device;
        cfg.train = TrainConfig {
            steps: 4,
            batch_size: 4,
            warmup_steps: 1,
            log_every: 1,
            loader_threads: 1,
            progress: false,
            ..cfg.train
        };
        let dir = tempfile::tempdir().unwrap();
        pretrain(&cfg, corpus(&cfg.model), Trainer::new(cfg.train.clone(), dir.path(), Device::Cpu)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64()).collect()
    };
    let (host, device) = (losses(false), losses(true));
    assert_eq!(host.len(), 4);
    assert!(host.iter().all(|l| l.is_finite()));
    // The same samples and masks bit for bit, so the same losses bit for bit.
    assert_eq!(host, device);
}
