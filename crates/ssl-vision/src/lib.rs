//! # ssl-vision
//!
//! Self-supervised pretraining of image encoders, as a recipe:
//! data ([`data`]: IDX, CIFAR, image folders; augmentation in the loader or, as a batch, on the
//! device) -> encoder ([`model`]: a ResNet or a ViT) -> pretext task ([`objectives`]: rotation,
//! inpainting, MAE) -> ssl-core's trainer -> ssl-core's evaluation protocol with image
//! [`corruptions`]. [`interop`] writes a ViT as a timm `VisionTransformer` or an HF `ViTModel` /
//! `ViTMAEForPreTraining` and a ResNet as safetensors with a PyTorch module of its own, and reads
//! HF ViTs for `--init-from`.
//!
//! The crate follows the layout every modality crate shares: [`flags`] (the command's flags),
//! [`recipe`] (the [`ssl_core::run::Recipe`] that `ssl pretrain-vision` runs through ssl-core's
//! seam), [`pipeline`] (the typed configuration with the papers' defaults, and the run as
//! library calls), [`data`], [`model`], [`objectives`] (one file per paper), [`corruptions`]
//! (the evaluation's corruption suite), [`interop`] (export and import) and [`bench`](mod@bench).
//!
//! ```
//! use ssl_vision::model::encoder::{EncoderConfig, VisionEncoder};
//! use ssl_vision::model::resnet::ResNetConfig;
//! use ssl_core::eval::Encoder;
//! let cfg = EncoderConfig::Resnet(ResNetConfig { in_channels: 1, width: 8, ..Default::default() });
//! let enc = VisionEncoder::new(&cfg, tch::Device::Cpu, 0);
//! let images = tch::Tensor::rand([2, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
//! let f = enc.features(&images, false);
//! assert_eq!(f.size(), vec![2, enc.feature_dim()]);
//! ```

pub mod bench;
pub mod corruptions;
pub mod data;
pub mod error;
pub mod flags;
pub mod interop;
pub mod model;
pub mod objectives;
pub mod pipeline;
pub mod recipe;

pub use error::{Result, VisionError};
