//! # ssl-vision
//!
//! Self-supervised pretraining of image encoders, as a recipe:
//! data ([`data`]: IDX, CIFAR, image folders) -> augment ([`augment`], in the loader or, as a
//! batch, on the device: [`source`], [`batch`]) -> encoder ([`resnet`],
//! [`vit`], [`encoder`]) -> pretext task ([`rotation`], [`inpainting`], [`mae`]) -> ssl-core's
//! trainer -> ssl-core's evaluation protocol with image [`corruptions`]. [`recipe`] holds the
//! configuration and library calls; [`run`] plugs them into ssl-core's run pipeline as a
//! [`ssl_core::run::Recipe`], which `ssl pretrain-vision` calls. [`export`] writes a ViT as a
//! timm `VisionTransformer` or an HF `ViTModel` / `ViTMAEForPreTraining` and a ResNet as
//! safetensors with a PyTorch module of its own; [`hf_import`] reads HF ViTs for `--init-from`.
//!
//! ```
//! use ssl_vision::encoder::{EncoderConfig, VisionEncoder};
//! use ssl_vision::resnet::ResNetConfig;
//! use ssl_core::eval::Encoder;
//! let cfg = EncoderConfig::Resnet(ResNetConfig { in_channels: 1, width: 8, ..Default::default() });
//! let enc = VisionEncoder::new(&cfg, tch::Device::Cpu, 0);
//! let images = tch::Tensor::rand([2, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
//! let f = enc.features(&images, false);
//! assert_eq!(f.size(), vec![2, enc.feature_dim()]);
//! ```

pub mod augment;
pub mod batch;
pub mod bench;
pub mod corruptions;
pub mod data;
pub mod encoder;
pub mod error;
pub mod export;
pub mod flops;
pub mod hf_import;
pub mod inpainting;
pub mod mae;
pub mod recipe;
pub mod resnet;
pub mod rotation;
pub mod run;
pub mod source;
pub mod vit;

pub use error::{Result, VisionError};
