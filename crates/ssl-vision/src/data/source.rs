//! The pretraining data source: images decoded once; each item's augmentation is drawn in the
//! loader's threads and applied there ([`ImageBatch::Pixels`]) or, with
//! [`AugmentConfig::on_device`], on the training device as a batch ([`ImageBatch::Indexed`]).
use crate::data::augment::{apply, draw, params_tensor, AugmentConfig, Params};
use crate::data::batch::{ImageBatch, ResidentImages};
use crate::data::ImageSet;
use rand_chacha::ChaCha8Rng;
use ssl_core::loader::DataSource;
use std::sync::Arc;
use tch::Tensor;

/// Unlabeled images for a pretext task.
pub struct ImageSource {
    images: Arc<ImageSet>,
    augment: AugmentConfig,
    resident: Option<Arc<ResidentImages>>,
}

impl ImageSource {
    /// A source of `images` augmented with `augment` (on the device if it says so).
    pub fn new(images: Arc<ImageSet>, augment: AugmentConfig) -> Self {
        let resident = augment.on_device.then(|| Arc::new(ResidentImages::new(images.clone(), augment)));
        Self { images, augment, resident }
    }
}

/// One item: its pixels, or its index and drawn parameters.
pub enum ImageItem {
    Pixels(Vec<f32>),
    Drawn(usize, Params),
}

impl DataSource for ImageSource {
    type Item = ImageItem;
    type Batch = ImageBatch;
    fn len(&self) -> usize {
        self.images.len
    }
    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<ImageItem, ssl_core::loader::Skipped> {
        let s = &self.images;
        let p = draw(&self.augment, rng);
        Ok(match self.resident {
            Some(_) => ImageItem::Drawn(index, p),
            None => ImageItem::Pixels(apply(s.image(index), s.channels, s.height, s.width, &p)),
        })
    }
    fn collate(&self, items: Vec<ImageItem>, _rng: &mut ChaCha8Rng) -> ImageBatch {
        let s = &self.images;
        let n = items.len() as i64;
        let (mut pixels, mut index, mut params) = (Vec::new(), Vec::new(), Vec::new());
        for item in items {
            match item {
                ImageItem::Pixels(p) => pixels.extend(p),
                ImageItem::Drawn(i, p) => {
                    index.push(i as i64);
                    params.push(p);
                }
            }
        }
        match &self.resident {
            Some(images) => ImageBatch::Indexed {
                index: Tensor::from_slice(&index),
                params: params_tensor(&params),
                images: images.clone(),
            },
            None => ImageBatch::Pixels(Tensor::from_slice(&pixels).view([
                n,
                s.channels as i64,
                s.height as i64,
                s.width as i64,
            ])),
        }
    }

    fn pin_memory(&self, batch: ImageBatch, device: tch::Device) -> Result<ImageBatch, tch::TchError> {
        batch.pinned(device)
    }
}
