//! The pretraining data source: images decoded once, augmented per item in the loader's threads.
use crate::augment::{augment, AugmentConfig};
use crate::data::ImageSet;
use rand_chacha::ChaCha8Rng;
use ssl_core::loader::DataSource;
use std::sync::Arc;
use tch::Tensor;

/// Unlabeled images for a pretext task.
pub struct ImageSource {
    pub images: Arc<ImageSet>,
    pub augment: AugmentConfig,
}

impl DataSource for ImageSource {
    type Item = Vec<f32>;
    type Batch = Tensor;
    fn len(&self) -> usize {
        self.images.len
    }
    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Vec<f32>, ssl_core::loader::Skipped> {
        let s = &self.images;
        Ok(augment(s.image(index), s.channels, s.height, s.width, &self.augment, rng))
    }
    fn collate(&self, items: Vec<Vec<f32>>, _rng: &mut ChaCha8Rng) -> Tensor {
        let s = &self.images;
        let n = items.len() as i64;
        Tensor::from_slice(&items.concat()).view([n, s.channels as i64, s.height as i64, s.width as i64])
    }
}
