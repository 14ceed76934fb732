//! Augmentations: random crop (zero padding), horizontal flip and brightness/contrast jitter.
//!
//! One draw, two ways to apply it. [`draw`] takes an item's random parameters from its generator;
//! [`apply`] applies them to one image's bytes in a loader thread, and [`apply_batch`] applies a
//! batch of them as batched tensor ops on the training device (`--augment-on-device`). Both give
//! the same pixels (the equivalence is tested), so where augmentation runs changes speed, never
//! what the model sees. [`augment_batch`] is the fine-tuning augmentation (one shift per batch).
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
    /// Pretraining batches carry the dataset indices and drawn parameters; the images are kept
    /// as bytes on the training device and augmented there as a batch ([`apply_batch`]).
    #[serde(default)]
    pub on_device: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { crop_padding: 2, hflip: true, color_jitter: 0.0, on_device: false }
    }
}

/// One image's random augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// The crop's shift in pixels, `-padding..=padding`.
    pub dy: i64,
    pub dx: i64,
    pub flip: bool,
    /// Contrast gain and brightness bias (1 and 0: no jitter).
    pub gain: f32,
    pub bias: f32,
}

impl Params {
    /// The five numbers a batch of parameters holds per image ([`apply_batch`]'s columns).
    pub fn row(&self) -> [f32; 5] {
        [self.dy as f32, self.dx as f32, f32::from(u8::from(self.flip)), self.gain, self.bias]
    }

    fn jitters(&self) -> bool {
        self.gain != 1.0 || self.bias != 0.0
    }
}

/// Draw one image's parameters from `rng`.
pub fn draw(cfg: &AugmentConfig, rng: &mut ChaCha8Rng) -> Params {
    let p = cfg.crop_padding as i64;
    let (dy, dx) = if p > 0 { (rng.random_range(-p..=p), rng.random_range(-p..=p)) } else { (0, 0) };
    let flip = cfg.hflip && rng.random_bool(0.5);
    let (gain, bias) = if cfg.color_jitter > 0.0 {
        let j = cfg.color_jitter;
        (1.0 + rng.random_range(-j..=j), rng.random_range(-j..=j) * 0.5)
    } else {
        (1.0, 0.0)
    };
    Params { dy, dx, flip, gain, bias }
}

/// Apply drawn parameters to one `C x H x W` byte image: the output pixel `(y, x)` is the source
/// pixel `(y + dy, x' + dx)` (0 outside the image), `x'` mirrored when flipped; jitter then maps
/// `v` to `clamp((v - mean) * gain + mean + bias, 0, 1)` with the channel's mean.
pub fn apply(img: &[u8], c: usize, h: usize, w: usize, p: &Params) -> Vec<f32> {
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        let mean =
            if p.gain != 1.0 { plane.iter().map(|&v| v as f32).sum::<f32>() / (h * w) as f32 / 255.0 } else { 0.0 };
        for y in 0..h {
            let sy = y as i64 + p.dy;
            for x in 0..w {
                let xx = if p.flip { w - 1 - x } else { x };
                let sx = xx as i64 + p.dx;
                let v = if sy >= 0 && sy < h as i64 && sx >= 0 && sx < w as i64 {
                    plane[sy as usize * w + sx as usize] as f32 / 255.0
                } else {
                    0.0
                };
                let v = if p.jitters() { ((v - mean) * p.gain + mean + p.bias).clamp(0.0, 1.0) } else { v };
                out[ch * h * w + y * w + x] = v;
            }
        }
    }
    out
}

/// [`apply`] for a batch, as tensor ops on the images' device: `images` are `[N, C, H, W]` bytes,
/// `params` `[N, 5]` floats (rows of [`Params::row`]) on any device, drawn with `cfg` (every
/// `|dy|, |dx|` at most its crop padding). Floats in `[0, 1]`, `[N, C, H, W]`.
///
/// ```
/// use ssl_vision::data::augment::{apply, apply_batch, AugmentConfig, Params};
/// use tch::Tensor;
/// let img: Vec<u8> = (0..16).map(|v| v * 16).collect();
/// let p = Params { dy: 1, dx: -1, flip: true, gain: 1.2, bias: 0.1 };
/// let one = apply(&img, 1, 4, 4, &p);
/// let cfg = AugmentConfig { crop_padding: 1, hflip: true, color_jitter: 0.2, on_device: true };
/// let (images, rows) = (Tensor::from_slice(&img).view([1, 1, 4, 4]), Tensor::from_slice(&p.row()).view([1, 5]));
/// let batch = apply_batch(&images, &rows, &cfg);
/// assert_eq!(Vec::<f32>::try_from(batch.flatten(0, -1)).unwrap(), one);
/// ```
pub fn apply_batch(images: &Tensor, params: &Tensor, cfg: &AugmentConfig) -> Tensor {
    let device = images.device();
    let s = images.size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let params = params.to_device(device);
    let col = |i: i64| params.select(1, i);
    let p = cfg.crop_padding as i64;
    let (dy, dx) = (col(0).to_kind(Kind::Int64), col(1).to_kind(Kind::Int64));
    let flip = col(2).gt(0.5);
    // Source rows and columns of every output pixel, in the padded image.
    let ys = Tensor::arange(h, (Kind::Int64, device)).unsqueeze(0) + (dy + p).unsqueeze(1);
    let xs = Tensor::arange(w, (Kind::Int64, device)).unsqueeze(0);
    let xs = (w - 1 - &xs).where_self(&flip.unsqueeze(1), &xs) + (dx + p).unsqueeze(1);
    let padded = if p > 0 { images.constant_pad_nd([p, p, p, p]) } else { images.shallow_clone() };
    let rows = padded.gather(2, &ys.view([n, 1, h, 1]).expand([n, c, h, w + 2 * p], false), false);
    let out = rows.gather(3, &xs.view([n, 1, 1, w]).expand([n, c, h, w], false), false);
    let out = out.to_kind(Kind::Float) / 255.0;
    if cfg.color_jitter <= 0.0 {
        return out;
    }
    let (gain, bias) = (col(3).view([n, 1, 1, 1]), col(4).view([n, 1, 1, 1]));
    let jitters = gain.ne(1.0).logical_or(&bias.ne(0.0));
    // The channel mean of the uncropped image, summed in integers (exact) as `apply` sums it, and
    // 0 where the gain is 1, as there.
    let sums = images.to_kind(Kind::Float).sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float);
    let mean = sums / (h * w) as f64 / 255.0;
    let mean = mean.zeros_like().where_self(&gain.eq(1.0), &mean);
    let jittered = ((&out - &mean) * &gain + &mean + &bias).clamp(0.0, 1.0);
    jittered.where_self(&jitters, &out)
}

/// The parameters of a batch as `[N, 5]` floats on the CPU.
pub fn params_tensor(params: &[Params]) -> Tensor {
    let rows: Vec<f32> = params.iter().flat_map(Params::row).collect();
    Tensor::from_slice(&rows).view([params.len() as i64, 5])
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
