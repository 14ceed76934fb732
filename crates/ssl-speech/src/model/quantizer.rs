//! The two quantizers that turn frames into targets.
//!
//! - [`RandomProjectionQuantizer`] (BEST-RQ, Chiu et al. 2022): a frozen random projection and a
//!   frozen random codebook of unit vectors; a frame's target is the id of the code nearest to its
//!   projection (both l2-normalised). Nothing is trained, so the targets cannot collapse.
//! - [`GumbelQuantizer`] (wav2vec 2.0): a product quantizer of `G` codebooks of `V` learned
//!   entries, chosen with a straight-through Gumbel-softmax whose temperature is annealed.
//!
//! ```
//! use ssl_speech::model::quantizer::RandomProjectionQuantizer;
//! use tch::{Device, Kind, Tensor};
//! let rq = RandomProjectionQuantizer::new(80, 16, 512, 0, Device::Cpu);
//! let ids = rq.codes(&Tensor::randn([2, 49, 80], (Kind::Float, Device::Cpu)));
//! assert_eq!(ids.size(), vec![2, 49]);
//! ```
use gaussian::normal;
use rand::SeedableRng;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Standard-normal draws from a seeded ChaCha8 stream (Box-Muller), so the frozen quantizer is
/// the same on every machine and after every resume without being stored.
mod gaussian {
    use rand::Rng;
    pub fn normal(rng: &mut impl Rng, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1: f64 = rng.random::<f64>().max(1e-300);
            let u2: f64 = rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            out.push((r * a.cos()) as f32);
            out.push((r * a.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

/// BEST-RQ's frozen random-projection quantizer.
pub struct RandomProjectionQuantizer {
    /// `[input_dim, code_dim]`, Xavier-normal.
    pub projection: Tensor,
    /// `[codebook_size, code_dim]`, rows of unit norm.
    pub codebook: Tensor,
}

impl RandomProjectionQuantizer {
    /// A quantizer drawn from `seed`.
    pub fn new(input_dim: i64, code_dim: i64, codebook_size: i64, seed: u64, device: Device) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xBE57_0000_0000_0000);
        let std = (2.0 / (input_dim + code_dim) as f64).sqrt();
        let p =
            Tensor::from_slice(&normal(&mut rng, (input_dim * code_dim) as usize)).view([input_dim, code_dim]) * std;
        let c =
            Tensor::from_slice(&normal(&mut rng, (codebook_size * code_dim) as usize)).view([codebook_size, code_dim]);
        Self::from_parts(p.to_device(device), c.to_device(device))
    }

    /// A quantizer with the given projection and codebook (the codebook is normalised here).
    pub fn from_parts(projection: Tensor, codebook: Tensor) -> Self {
        let codebook = l2_normalize(&codebook.to_kind(Kind::Float));
        Self { projection: projection.to_kind(Kind::Float), codebook }
    }

    /// Normalised projections `[..., code_dim]` of frames `[..., input_dim]`.
    pub fn project(&self, frames: &Tensor) -> Tensor {
        l2_normalize(&frames.to_kind(Kind::Float).matmul(&self.projection))
    }

    /// Target ids `[...]`: the nearest code (by l2 distance between unit vectors, that is the
    /// largest dot product) to each projected frame.
    pub fn codes(&self, frames: &Tensor) -> Tensor {
        self.project(frames).matmul(&self.codebook.tr()).argmax(-1, false)
    }
}

/// Divide the last dimension by its l2 norm.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.square().sum_dim_intlist(-1, true, Kind::Float).sqrt().clamp_min(1e-8)
}

/// Perplexity `exp(H)` of code usage: `ids` `[N]` over `num_codes` codes (1 = collapse).
pub fn usage_perplexity(ids: &Tensor, num_codes: i64) -> Tensor {
    if ids.numel() == 0 {
        return Tensor::ones([], (Kind::Float, ids.device()));
    }
    let counts = ids.reshape([-1]).bincount::<Tensor>(None, num_codes).to_kind(Kind::Float);
    let p = &counts / counts.sum(Kind::Float);
    (&p * (&p + 1e-9).log()).sum(Kind::Float).neg().exp()
}

/// wav2vec 2.0's Gumbel-softmax product quantizer.
pub struct GumbelQuantizer {
    logits: nn::Linear,
    /// `[G * V, out_dim / G]`.
    codevectors: Tensor,
    pub groups: i64,
    pub entries: i64,
}

/// What the Gumbel quantizer returns.
pub struct Quantized {
    /// `[B, T, out_dim]`: the concatenated code vectors.
    pub vectors: Tensor,
    /// `[G, V]`: softmax probabilities (no noise) averaged over the valid frames.
    pub avg_probs: Tensor,
    /// `[B, T, G]`: hard code ids.
    pub ids: Tensor,
}

impl GumbelQuantizer {
    pub fn new(p: nn::Path, input_dim: i64, groups: i64, entries: i64, out_dim: i64) -> Self {
        Self {
            logits: nn::linear(
                &p / "logits",
                input_dim,
                groups * entries,
                nn::LinearConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 1.0 }, ..Default::default() },
            ),
            codevectors: p.var(
                "codevectors",
                &[groups * entries, out_dim / groups],
                nn::Init::Uniform { lo: 0.0, up: 1.0 },
            ),
            groups,
            entries,
        }
    }

    /// Quantize frames `[B, T, C]`. In training, codes are drawn with straight-through Gumbel
    /// noise at temperature `tau`; otherwise the most probable code is taken.
    pub fn forward(&self, x: &Tensor, valid: &Tensor, tau: f64, train: bool) -> Quantized {
        let (b, t, _) = x.size3().expect("[B, T, C]");
        let (g, v) = (self.groups, self.entries);
        let logits = self.logits.forward(x).view([b, t, g, v]);
        let (one_hot, ids) = gumbel_select(&logits, tau, train);
        let avg_probs = average_probs(&logits, valid);
        let cv = self.codevectors.view([g, v, -1]);
        // [B, T, G, V] x [G, V, d] -> [B, T, G, d]
        let vectors = Tensor::einsum("btgv,gvd->btgd", &[&one_hot, &cv], None::<i64>).reshape([b, t, -1]);
        Quantized { vectors, avg_probs, ids }
    }
}

/// Straight-through Gumbel-softmax over the last dimension of `logits` `[..., V]`: the forward
/// value is one-hot, the gradient that of the soft sample. Without `train`, the argmax (no
/// noise). Returns the one-hot tensor and the ids.
pub fn gumbel_select(logits: &Tensor, tau: f64, train: bool) -> (Tensor, Tensor) {
    let logits = logits.to_kind(Kind::Float);
    if !train {
        let ids = logits.argmax(-1, false);
        return (ids.one_hot(*logits.size().last().unwrap_or(&1)).to_kind(Kind::Float), ids);
    }
    let u = logits.rand_like().clamp(1e-10, 1.0 - 1e-10);
    let noise = u.log().neg().log().neg();
    let soft = ((&logits + noise) / tau).softmax(-1, Kind::Float);
    let ids = soft.argmax(-1, false);
    let hard = ids.one_hot(*logits.size().last().unwrap_or(&1)).to_kind(Kind::Float);
    (&hard - soft.detach() + &soft, ids)
}

/// Softmax probabilities of `logits` `[B, T, G, V]` averaged over the valid frames -> `[G, V]`.
pub fn average_probs(logits: &Tensor, valid: &Tensor) -> Tensor {
    let probs = logits.to_kind(Kind::Float).softmax(-1, Kind::Float);
    let m = valid.to_kind(Kind::Float).unsqueeze(-1).unsqueeze(-1);
    (probs * &m).sum_dim_intlist(&[0i64, 1][..], false, Kind::Float) / m.sum(Kind::Float).clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_quantizer_is_reproducible_from_its_seed() {
        let a = RandomProjectionQuantizer::new(80, 16, 64, 3, Device::Cpu);
        let b = RandomProjectionQuantizer::new(80, 16, 64, 3, Device::Cpu);
        assert!(a.projection.equal(&b.projection) && a.codebook.equal(&b.codebook));
        let norms = a.codebook.square().sum_dim_intlist(-1, false, Kind::Float).sqrt();
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn straight_through_gumbel_is_one_hot_forward_with_soft_gradients() {
        let _rng = ssl_core::rng::torch_rng(0);
        let logits = Tensor::randn([4, 3, 2, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let (oh, _) = gumbel_select(&logits, 2.0, true);
        let sums = oh.sum_dim_intlist(-1, false, Kind::Float);
        assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
        assert!((oh.max().double_value(&[]) - 1.0).abs() < 1e-5);
        (oh * Tensor::randn([8], (Kind::Float, Device::Cpu))).sum(Kind::Float).backward();
        assert!(logits.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
