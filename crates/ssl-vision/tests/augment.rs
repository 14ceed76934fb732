//! Augmentation on the training device (`--augment-on-device`) gives the loader's pixels, bit for
//! bit on the CPU: the same items, the same drawn crops, flips and jitter, applied as batched
//! tensor ops.
use ssl_core::loader::{Loader, LoaderPosition};
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_vision::data::augment::AugmentConfig;
use ssl_vision::data::batch::ImageBatch;
use ssl_vision::data::source::ImageSource;
use ssl_vision::data::{self, ImageSet};
use ssl_vision::model::encoder::EncoderConfig;
use ssl_vision::model::resnet::ResNetConfig;
use ssl_vision::objectives::rotation::RotationTask;
use std::sync::Arc;
use tch::Device;

fn slice(n: usize) -> Arc<ImageSet> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-slice");
    let mut set = data::open(&root, 28).unwrap().train;
    set.truncate(n);
    Arc::new(set)
}

fn batches(images: &Arc<ImageSet>, cfg: AugmentConfig, n: usize) -> Vec<ImageBatch> {
    let source = Arc::new(ImageSource::new(images.clone(), cfg));
    let mut loader = Loader::new(source, 16, 5, LoaderPosition::default(), 2, 2);
    (0..n).map(|_| loader.next_batch().unwrap().batch).collect()
}

#[test]
fn device_augmentation_gives_the_loaders_pixels() {
    let images = slice(64);
    // Every augmentation on, with the rotation recipe's jitter; and each one alone.
    let configs = [
        AugmentConfig { crop_padding: 2, hflip: true, color_jitter: 0.4, on_device: false },
        AugmentConfig { crop_padding: 3, hflip: false, color_jitter: 0.0, on_device: false },
        AugmentConfig { crop_padding: 0, hflip: true, color_jitter: 0.0, on_device: false },
        AugmentConfig { crop_padding: 0, hflip: false, color_jitter: 0.3, on_device: false },
    ];
    for cfg in configs {
        let host = batches(&images, cfg, 5);
        let device = batches(&images, AugmentConfig { on_device: true, ..cfg }, 5);
        for (h, d) in host.iter().zip(&device) {
            assert!(matches!(h, ImageBatch::Pixels(_)) && matches!(d, ImageBatch::Indexed { .. }));
            let (h, d) = (h.pixels(Device::Cpu).unwrap(), d.pixels(Device::Cpu).unwrap());
            assert_eq!(h.size(), d.size());
            let diff = (&h - &d).abs().max().double_value(&[]);
            assert!(diff == 0.0, "{cfg:?}: the device's pixels differ from the loader's by {diff}");
        }
        // The augmentation did something: the pixels are not the raw images.
        if cfg.crop_padding > 0 || cfg.hflip || cfg.color_jitter > 0.0 {
            let raw = images.to_tensor().narrow(0, 0, 16);
            let first = device[0].pixels(Device::Cpu).unwrap();
            assert!(!first.allclose(&raw, 0.0, 0.0, false));
        }
    }
}

#[test]
fn training_with_device_augmentation_follows_the_loaders_losses() {
    let images = slice(96);
    let encoder = EncoderConfig::Resnet(ResNetConfig { in_channels: 1, width: 4, ..Default::default() });
    let losses = |on_device: bool| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AugmentConfig { crop_padding: 2, hflip: true, color_jitter: 0.4, on_device };
        let train = TrainConfig { steps: 6, batch_size: 16, log_every: 1, loader_threads: 1, ..Default::default() };
        let mut task = RotationTask::new(&encoder, Device::Cpu, 3);
        let source = Arc::new(ImageSource::new(images.clone(), cfg));
        Trainer::new(train, dir.path(), Device::Cpu).fit(&mut task, source).unwrap();
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64())
            .collect::<Vec<f64>>()
    };
    let (host, device) = (losses(false), losses(true));
    assert_eq!(host.len(), 6);
    // The same pixels bit for bit, so the same losses bit for bit.
    assert_eq!(host, device);
}
