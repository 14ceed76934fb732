//! The encoders behind one type: a CIFAR-style ResNet or a small ViT, living under the `encoder`
//! prefix of a variable store so a run's checkpoint loads into them with one call.
use crate::error::Result;
use crate::model::resnet::{ResNet, ResNetConfig};
use crate::model::vit::{Vit, VitConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

/// Which encoder, with its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum EncoderConfig {
    Resnet(ResNetConfig),
    Vit(VitConfig),
}

impl EncoderConfig {
    /// Channels of the input images.
    pub fn in_channels(&self) -> i64 {
        match self {
            EncoderConfig::Resnet(c) => c.in_channels,
            EncoderConfig::Vit(c) => c.in_channels,
        }
    }

    /// What the downstream features are, in words (the report's notes, `ssl embed`'s metadata).
    pub fn features_described(&self) -> String {
        match self {
            EncoderConfig::Resnet(r) => format!(
                "stage {} of {} of a CIFAR-style ResNet (width {}, blocks {:?}), average-pooled to {}x{} and flattened",
                r.feature_stage,
                r.blocks_per_stage.len(),
                r.width,
                r.blocks_per_stage,
                r.feature_pool,
                r.feature_pool
            ),
            EncoderConfig::Vit(v) if v.class_token => "the encoded CLS token of a ViT".into(),
            EncoderConfig::Vit(_) => "the mean of a ViT's encoded patch tokens".into(),
        }
    }
}

/// The network itself.
#[derive(Debug)]
pub enum Net {
    Resnet(ResNet),
    Vit(Vit),
}

impl Net {
    /// Build under `p` (normally `vs.root() / "encoder"`).
    pub fn new(p: &nn::Path, config: &EncoderConfig) -> Self {
        match config {
            EncoderConfig::Resnet(c) => Net::Resnet(ResNet::new(p, c.clone())),
            EncoderConfig::Vit(c) => Net::Vit(Vit::new(p, c.clone())),
        }
    }

    /// Downstream features `[N, D]` of images in `[0, 1]`.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Net::Resnet(r) => r.features_t(x, train),
            Net::Vit(v) => v.features(x),
        }
    }

    /// D.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Net::Resnet(r) => r.feature_dim(),
            Net::Vit(v) => v.config.dim,
        }
    }

    /// A global descriptor for pretext heads (last stage for the ResNet, token mean for the ViT).
    pub fn pooled_t(&self, x: &Tensor, train: bool) -> (Tensor, i64) {
        match self {
            Net::Resnet(r) => (r.pooled_last(x, train), r.last_channels()),
            Net::Vit(v) => (v.features(x), v.config.dim),
        }
    }
}

/// An encoder with its own variables, as the evaluation protocol uses it.
pub struct VisionEncoder {
    pub vs: VarStore,
    pub net: Net,
    pub config: EncoderConfig,
}

impl VisionEncoder {
    /// A randomly initialised encoder (the `scratch` baseline).
    pub fn new(config: &EncoderConfig, device: Device, seed: u64) -> Self {
        let _rng = ssl_core::rng::torch_rng(seed);
        let vs = VarStore::new(device);
        let net = Net::new(&(vs.root() / "encoder"), config);
        Self { vs, net, config: config.clone() }
    }

    /// The encoder of a run directory's newest checkpoint (or of a checkpoint directory).
    pub fn load(run_or_checkpoint: &Path, config: &EncoderConfig, device: Device) -> Result<Self> {
        let enc = Self::new(config, device, 0);
        ssl_core::checkpoint::load_weights(run_or_checkpoint, &enc.vs)?;
        Ok(enc)
    }
}

impl ssl_core::eval::Encoder for VisionEncoder {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.net.features_t(xs, train)
    }
    fn feature_dim(&self) -> i64 {
        self.net.feature_dim()
    }
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
}
