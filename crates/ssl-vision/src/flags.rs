//! The flags of `pretrain-vision`: the shared run options ([`ssl_core::run::RunOptions`]) and
//! the modality's own. The same struct is a config file's keys and `config.json`'s
//! `config.flags`.
use crate::pipeline::Method;
use serde::{Deserialize, Serialize};
use ssl_core::run::RunOptions;
use std::path::PathBuf;

/// Flags of `pretrain-vision` (also the keys of its config files).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct VisionFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunOptions,
    /// rotation, inpainting or mae.
    #[arg(long, default_value = "rotation")]
    pub method: Method,
    /// Unlabeled pretraining images: an IDX/CIFAR folder or an image folder (default: the committed
    /// Fashion-MNIST slice).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The reader a dataset manifest names (set by `cargo xtask pretrain-vision --dataset`).
    #[arg(long)]
    pub data_format: Option<String>,
    /// Labeled evaluation data: a folder with train/ and test/, one subfolder per class.
    /// Default: the pretraining dataset's own labeled splits.
    #[arg(long)]
    pub labeled: Option<PathBuf>,
    /// Images are resized to this size.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// ResNet width (channels of the first stage).
    #[arg(long)]
    pub width: Option<i64>,
    /// Use at most this many pretraining images.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// At most this many test images in the evaluation.
    #[arg(long)]
    pub max_test: Option<usize>,
    /// Brightness/contrast jitter of the pretraining images (maximum relative change; 0 = off).
    #[arg(long)]
    pub color_jitter: Option<f32>,
    /// MAE's ViT gets a CLS token, whose encoding becomes the features (instead of the mean of
    /// the patch tokens); needed to export as HuggingFace ViTModel / ViTMAEForPreTraining.
    #[arg(long)]
    #[serde(default)]
    pub class_token: bool,
    /// Augment on the training device: the images stay there as bytes and each batch is cropped,
    /// flipped and jittered there as batched tensor ops (the same pixels as the loader's).
    #[arg(long)]
    #[serde(default)]
    pub augment_on_device: bool,
}
