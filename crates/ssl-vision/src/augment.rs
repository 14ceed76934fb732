//! Augmentations: per-item random crop (zero padding), horizontal flip and brightness/contrast
//! jitter on CPU bytes for the loader, and the batch version on tensors for fine-tuning.
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which augmentations a method uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Pixels of padding for the random crop (0 disables it).
    pub crop_padding: usize,
    pub hflip: bool,
    /// Maximum relative brightness/contrast change (0 disables jitter).
    pub color_jitter: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { crop_padding: 2, hflip: true, color_jitter: 0.0 }
    }
}

/// Augment one `C x H x W` byte image into floats in `[0, 1]`.
pub fn augment(img: &[u8], c: usize, h: usize, w: usize, cfg: &AugmentConfig, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let p = cfg.crop_padding as i64;
    let (dy, dx) = if p > 0 { (rng.random_range(-p..=p), rng.random_range(-p..=p)) } else { (0, 0) };
    let flip = cfg.hflip && rng.random_bool(0.5);
    let (gain, bias) = if cfg.color_jitter > 0.0 {
        let j = cfg.color_jitter;
        (1.0 + rng.random_range(-j..=j), rng.random_range(-j..=j) * 0.5)
    } else {
        (1.0, 0.0)
    };
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        let mean =
            if gain != 1.0 { plane.iter().map(|&v| v as f32).sum::<f32>() / (h * w) as f32 / 255.0 } else { 0.0 };
        for y in 0..h {
            let sy = y as i64 + dy;
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let sx = xx as i64 + dx;
                let v = if sy >= 0 && sy < h as i64 && sx >= 0 && sx < w as i64 {
                    plane[sy as usize * w + sx as usize] as f32 / 255.0
                } else {
                    0.0
                };
                let v = if gain != 1.0 || bias != 0.0 { ((v - mean) * gain + mean + bias).clamp(0.0, 1.0) } else { v };
                out[ch * h * w + y * w + x] = v;
            }
        }
    }
    out
}

/// Batch augmentation on a `[N, C, H, W]` float tensor: one random shift for the batch
/// (zero-padded) and a random horizontal flip per image. Deterministic in `seed`.
pub fn augment_batch(xs: &Tensor, cfg: &AugmentConfig, seed: u64) -> Tensor {
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let size = xs.size();
    let (h, w) = (size[2], size[3]);
    let mut x = xs.shallow_clone();
    let p = cfg.crop_padding as i64;
    if p > 0 {
        let (dy, dx) = (rng.random_range(0..=2 * p), rng.random_range(0..=2 * p));
        x = x.constant_pad_nd([p, p, p, p]).narrow(2, dy, h).narrow(3, dx, w);
    }
    if cfg.hflip {
        let flags: Vec<bool> = (0..size[0]).map(|_| rng.random_bool(0.5)).collect();
        let m = Tensor::from_slice(&flags).view([size[0], 1, 1, 1]);
        x = x.flip([3]).where_self(&m, &x);
    }
    x.to_kind(Kind::Float)
}
