//! The whole recipe as library calls: configuration with paper defaults, pretraining with the
//! ssl-core trainer, and the evaluation protocol against scratch.
use crate::data::augment::{augment_batch, AugmentConfig};
use crate::data::source::ImageSource;
use crate::data::ImageSet;
use crate::error::{Result, VisionError};
use crate::model::encoder::{EncoderConfig, VisionEncoder};
use crate::model::resnet::ResNetConfig;
use crate::model::vit::VitConfig;
use crate::objectives::inpainting::{InpaintingConfig, InpaintingTask};
use crate::objectives::mae::{MaeConfig, MaeTask};
use crate::objectives::rotation::RotationTask;
use serde::{Deserialize, Serialize};
use ssl_core::eval::protocol::{EncoderFactory, Evaluation, ProtocolConfig};
use ssl_core::eval::{Encoder, LabeledSet};
use ssl_core::schedule::Decay;
use ssl_core::trainer::{TrainConfig, TrainSummary, Trainer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// The pretext task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Rotation,
    Inpainting,
    Mae,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "rotation" => Ok(Method::Rotation),
            "inpainting" => Ok(Method::Inpainting),
            "mae" => Ok(Method::Mae),
            o => Err(format!("unknown method `{o}` (expected rotation, inpainting or mae)")),
        }
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Rotation => "rotation",
            Method::Inpainting => "inpainting",
            Method::Mae => "mae",
        }
    }
}

/// Everything a vision run is configured by; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub method: Method,
    pub image_size: usize,
    pub encoder: EncoderConfig,
    pub train: TrainConfig,
    pub augment: AugmentConfig,
    pub inpainting: InpaintingConfig,
    pub mae: MaeConfig,
    pub protocol: ProtocolConfig,
    /// Augmentation of the labeled images during fine-tuning (same for pretrained and scratch).
    pub finetune_augment: AugmentConfig,
    /// At most this many test images are evaluated.
    pub max_test: usize,
}

impl VisionConfig {
    /// Defaults for `method` on `channels x size x size` images, scaled down from the papers:
    /// RotNet and Context Encoders on a CIFAR-style ResNet, MAE (75% masking, normalised pixels) on
    /// a ViT with 4 px patches.
    pub fn defaults(method: Method, channels: usize, size: usize) -> Self {
        let resnet = EncoderConfig::Resnet(ResNetConfig { in_channels: channels as i64, ..Default::default() });
        let (encoder, train) = match method {
            Method::Rotation | Method::Inpainting => (
                resnet,
                TrainConfig {
                    steps: 300,
                    batch_size: 64,
                    lr: 2e-3,
                    warmup_steps: 50,
                    decay: Decay::Cosine,
                    lr_floor: 0.05,
                    clip_norm: 1.0,
                    log_every: 10,
                    checkpoint_every: 100,
                    ..Default::default()
                },
            ),
            Method::Mae => {
                let patch = if size <= 32 { 4 } else { 8 };
                (
                    EncoderConfig::Vit(VitConfig {
                        in_channels: channels as i64,
                        image_size: size as i64,
                        patch_size: patch,
                        ..Default::default()
                    }),
                    TrainConfig {
                        steps: 800,
                        batch_size: 128,
                        lr: 1.5e-3,
                        warmup_steps: 80,
                        decay: Decay::Cosine,
                        lr_floor: 0.05,
                        clip_norm: 1.0,
                        log_every: 10,
                        checkpoint_every: 200,
                        ..Default::default()
                    },
                )
            }
        };
        let protocol = ProtocolConfig { robustness_max_test: 200, ..ProtocolConfig::default() };
        Self {
            method,
            image_size: size,
            encoder,
            train,
            // Brightness/contrast jitter for rotation: on full Fashion-MNIST it left clean accuracy
            // unchanged and lifted accuracy under brightness and contrast shifts from below scratch
            // to far above it (docs/src/vision.md).
            augment: AugmentConfig {
                crop_padding: 2,
                hflip: true,
                color_jitter: if method == Method::Rotation { 0.4 } else { 0.0 },
                on_device: false,
            },
            inpainting: InpaintingConfig::default(),
            mae: MaeConfig::default(),
            protocol,
            finetune_augment: AugmentConfig { crop_padding: 2, hflip: true, color_jitter: 0.0, on_device: false },
            max_test: 1000,
        }
    }
}

/// Pretrain with `config.method` on `images` with `trainer` (its settings, run directory,
/// device and start; `config.train` is what the run plan made of them). Inpainting and MAE
/// runs also write `reconstructions.png` into the run directory (rows: original, masked,
/// reconstructed).
pub fn pretrain(config: &VisionConfig, images: Arc<ImageSet>, trainer: Trainer) -> Result<TrainSummary> {
    let trainer = trainer.with_model_config(
        serde_json::json!({ "method": config.method, "encoder": config.encoder, "image_size": config.image_size }),
    );
    let (device, run_dir) = (trainer.device, trainer.run_dir.clone());
    let source = Arc::new(ImageSource::new(images.clone(), config.augment));
    let seed = ssl_core::rng::derive(trainer.config.seed, "init");
    let preview = preview_batch(&images, 8);
    // Rank 0 alone writes into the run directory.
    let main = ssl_core::dist::world().is_main();
    match config.method {
        Method::Rotation => {
            let mut task = RotationTask::new(&config.encoder, device, seed);
            Ok(trainer.fit(&mut task, source)?)
        }
        Method::Inpainting => {
            let mut task =
                InpaintingTask::new(&config.encoder, config.inpainting, images.channels as i64, device, seed);
            let summary = trainer.fit(&mut task, source)?;
            let (masked, recon) = tch::no_grad(|| {
                let x = preview.to_device(device);
                let (_, masked, recon) = task.loss(&x, false);
                (masked, recon)
            });
            if main {
                write_grid(&run_dir.join("reconstructions.png"), &[&preview, &masked, &recon])?;
            }
            Ok(summary)
        }
        Method::Mae => {
            let EncoderConfig::Vit(vit) = &config.encoder else {
                return Err(VisionError::Invalid("the mae method needs a ViT encoder".into()));
            };
            let mut task = MaeTask::new(vit, config.mae, device, seed);
            let summary = trainer.fit(&mut task, source)?;
            let (masked, recon) = tch::no_grad(|| task.reconstruction(&preview.to_device(device)));
            if main {
                write_grid(&run_dir.join("reconstructions.png"), &[&preview, &masked, &recon])?;
            }
            Ok(summary)
        }
    }
}

fn preview_batch(images: &ImageSet, n: usize) -> Tensor {
    let n = n.min(images.len) as i64;
    images.to_tensor().narrow(0, 0, n)
}

/// Write rows of `[N, C, H, W]` images in `[0, 1]` as one PNG.
pub fn write_grid(path: &Path, rows: &[&Tensor]) -> Result<()> {
    let s = rows[0].size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let pad = 2;
    let (gw, gh) = ((w + pad) * n + pad, (h + pad) * rows.len() as i64 + pad);
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for (r, t) in rows.iter().enumerate() {
        let t = (t.to_device(Device::Cpu).to_kind(Kind::Float).clamp(0.0, 1.0) * 255.0).to_kind(Kind::Uint8);
        let v = Vec::<u8>::try_from(&t.flatten(0, -1)).map_err(VisionError::Torch)?;
        for i in 0..n {
            for y in 0..h {
                for x in 0..w {
                    let px = |ch: i64| v[(((i * c + ch.min(c - 1)) * h + y) * w + x) as usize];
                    let (gx, gy) = (pad + i * (w + pad) + x, pad + r as i64 * (h + pad) + y);
                    img.put_pixel(gx as u32, gy as u32, image::Rgb([px(0), px(1), px(2)]));
                }
            }
        }
    }
    img.save(path).map_err(|e| VisionError::format(path, e.to_string()))
}

/// Labeled images as the protocol's [`LabeledSet`] (at most `max` of them).
pub fn labeled(set: &ImageSet, max: usize) -> Result<LabeledSet> {
    let labels =
        set.labels.as_ref().ok_or_else(|| VisionError::Invalid("the evaluation images have no labels".into()))?;
    let n = set.len.min(max);
    let x = set.to_tensor().narrow(0, 0, n as i64);
    Ok(LabeledSet::new(x, Tensor::from_slice(&labels[..n]), set.num_classes()))
}

/// Pretrained encoders from a run directory, scratch encoders of the same shape.
pub struct VisionFactory {
    pub checkpoint: PathBuf,
    pub encoder: EncoderConfig,
    pub finetune_augment: AugmentConfig,
}

impl EncoderFactory for VisionFactory {
    fn pretrained(&self, device: Device) -> ssl_core::Result<Box<dyn Encoder + '_>> {
        let enc = VisionEncoder::load(&self.checkpoint, &self.encoder, device).map_err(|e| match e {
            VisionError::Core(c) => c,
            other => ssl_core::CoreError::InvalidArgument(other.to_string()),
        })?;
        Ok(Box::new(enc))
    }
    fn scratch(&self, device: Device, seed: u64) -> ssl_core::Result<Box<dyn Encoder + '_>> {
        Ok(Box::new(VisionEncoder::new(&self.encoder, device, ssl_core::rng::derive(seed, "scratch-init"))))
    }
    fn augment(&self, xs: &Tensor, seed: u64) -> Tensor {
        augment_batch(xs, &self.finetune_augment, seed)
    }
}

/// Run the evaluation protocol on a pretrained run: the encoder of `checkpoint` against scratch.
pub fn evaluate(
    config: &VisionConfig,
    checkpoint: &Path,
    train: &ImageSet,
    test: &ImageSet,
    device: Device,
) -> Result<Evaluation> {
    let factory = VisionFactory {
        checkpoint: checkpoint.to_path_buf(),
        encoder: config.encoder.clone(),
        finetune_augment: config.finetune_augment,
    };
    let train = labeled(train, usize::MAX)?;
    let test = labeled(test, config.max_test)?;
    Ok(ssl_core::eval::evaluate(&factory, &train, &test, &crate::corruptions::standard(), &config.protocol, device)?)
}
