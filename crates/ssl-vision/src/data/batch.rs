//! What a pretext task trains on: pixels made in the loader, or dataset indices with drawn
//! augmentation parameters that the training device turns into pixels
//! ([`AugmentConfig::on_device`]).
//!
//! With augmentation on the device the images are decoded once into a `uint8` tensor of the
//! whole dataset ([`ResidentImages`]), moved to the training device once, and every batch is an
//! `index_select` of it followed by [`apply_batch`]: no pixels cross from host to device after
//! the first step, and the loader threads only shuffle and draw random numbers.
use crate::data::augment::{apply_batch, AugmentConfig};
use crate::data::ImageSet;
use ssl_core::bench::FixedBatch;
use ssl_core::device::{pin, upload};
use std::sync::{Arc, Mutex};
use tch::{Device, TchError, Tensor};

/// The dataset as `[N, C, H, W]` bytes, made into a tensor on the training device by its first
/// batch and kept there.
pub struct ResidentImages {
    images: Arc<ImageSet>,
    cfg: AugmentConfig,
    on_device: Mutex<Option<Tensor>>,
}

impl ResidentImages {
    /// The images of `images`, augmented with `cfg`.
    pub fn new(images: Arc<ImageSet>, cfg: AugmentConfig) -> Self {
        Self { images, cfg, on_device: Mutex::new(None) }
    }

    /// The dataset on `device` (copied there by the first call; an error, not a panic, when it
    /// does not fit).
    fn on(&self, device: Device) -> Result<Tensor, TchError> {
        let mut cached = self.on_device.lock().unwrap_or_else(|e| e.into_inner());
        match cached.as_ref() {
            Some(t) if t.device() == device => Ok(t.shallow_clone()),
            _ => {
                let s = &self.images;
                let shape = [s.len as i64, s.channels as i64, s.height as i64, s.width as i64];
                let t = Tensor::f_from_slice(&s.pixels)?.f_view(shape)?.f_to_device(device)?;
                *cached = Some(t.shallow_clone());
                Ok(t)
            }
        }
    }
}

/// One pretraining batch.
pub enum ImageBatch {
    /// `[N, C, H, W]` floats in `[0, 1]`, augmented already.
    Pixels(Tensor),
    /// Rows `index` (`[N]` int64) of the dataset, to augment with `params` (`[N, 5]`, rows of
    /// [`crate::data::augment::Params::row`]) on the training device.
    Indexed { index: Tensor, params: Tensor, images: Arc<ResidentImages> },
}

impl From<Tensor> for ImageBatch {
    fn from(pixels: Tensor) -> Self {
        ImageBatch::Pixels(pixels)
    }
}

impl ImageBatch {
    /// The augmented images on `device`, `[N, C, H, W]` floats in `[0, 1]`.
    pub fn pixels(&self, device: Device) -> Result<Tensor, TchError> {
        match self {
            ImageBatch::Pixels(x) => upload(x, device),
            ImageBatch::Indexed { index, params, images } => {
                let picked = images.on(device)?.f_index_select(0, &upload(index, device)?)?;
                Ok(apply_batch(&picked, &upload(params, device)?, &images.cfg))
            }
        }
    }

    /// The batch in page-locked host memory when `device` is a CUDA device
    /// ([`ssl_core::device::pin`]), so that [`ImageBatch::pixels`] copies it asynchronously.
    pub fn pinned(&self, device: Device) -> Result<Self, TchError> {
        Ok(match self {
            ImageBatch::Pixels(x) => ImageBatch::Pixels(pin(x, device)?),
            ImageBatch::Indexed { index, params, images } => {
                ImageBatch::Indexed { index: pin(index, device)?, params: pin(params, device)?, images: images.clone() }
            }
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        match self {
            ImageBatch::Pixels(x) => x.size()[0] as usize,
            ImageBatch::Indexed { index, .. } => index.size()[0] as usize,
        }
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FixedBatch for ImageBatch {
    fn fresh_copy(&self) -> Self {
        match self {
            ImageBatch::Pixels(x) => ImageBatch::Pixels(x.copy()),
            ImageBatch::Indexed { index, params, images } => {
                ImageBatch::Indexed { index: index.copy(), params: params.copy(), images: images.clone() }
            }
        }
    }
}
