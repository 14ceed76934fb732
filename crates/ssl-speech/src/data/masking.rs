//! wav2vec 2.0 span masking: every valid frame starts a masked span with probability `prob`;
//! a span covers `length` frames; spans may overlap and never reach into padding.
//!
//! The expected masked fraction away from the edges is `1 - (1 - prob)^length` (about 0.49 for
//! the defaults p = 0.065, M = 10).
//!
//! ```
//! use rand::SeedableRng;
//! let masker = ssl_speech::data::masking::SpanMasker::default();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mask = masker.sample(40, 50, &mut rng);
//! assert_eq!(mask.len(), 50);
//! assert!(mask[40..].iter().all(|m| !m)); // padding is never masked
//! ```
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Span masking parameters (wav2vec 2.0 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpanMasker {
    /// Probability that a frame starts a masked span.
    pub prob: f64,
    /// Span length M in frames.
    pub length: usize,
}

impl Default for SpanMasker {
    fn default() -> Self {
        Self { prob: 0.065, length: 10 }
    }
}

impl SpanMasker {
    /// The expected masked fraction of a frame far from the edges: `1 - (1 - p)^M`.
    pub fn expected_fraction(&self) -> f64 {
        1.0 - (1.0 - self.prob).powi(self.length as i32)
    }

    /// A mask over `total` frames of which the first `valid` are real (the rest is padding).
    pub fn sample(&self, valid: usize, total: usize, rng: &mut impl Rng) -> Vec<bool> {
        let valid = valid.min(total);
        let mut mask = vec![false; total];
        for start in 0..valid {
            if rng.random::<f64>() < self.prob {
                for m in mask.iter_mut().take((start + self.length).min(valid)).skip(start) {
                    *m = true;
                }
            }
        }
        mask
    }

    /// Masks for a batch, as a `[B, total]` bool tensor (CPU).
    pub fn sample_batch(&self, valid: &[usize], total: usize, rng: &mut impl Rng) -> Tensor {
        let flat: Vec<bool> = valid.iter().flat_map(|&v| self.sample(v, total, rng)).collect();
        Tensor::from_slice(&flat).view([valid.len() as i64, total as i64])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn masked_fraction_matches_expectation_away_from_edges() {
        for masker in [SpanMasker::default(), SpanMasker { prob: 0.02, length: 5 }, SpanMasker { prob: 0.2, length: 3 }]
        {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
            let (total, draws) = (200usize, 2000usize);
            let mut hits = 0usize;
            let mut count = 0usize;
            for _ in 0..draws {
                let m = masker.sample(total, total, &mut rng);
                // Frames at index >= M can be covered by M possible starts, like frames far from the edges.
                for &v in &m[masker.length..] {
                    hits += v as usize;
                    count += 1;
                }
            }
            let got = hits as f64 / count as f64;
            let want = masker.expected_fraction();
            assert!((got - want).abs() < 0.01, "p={} M={}: {got} vs {want}", masker.prob, masker.length);
        }
        assert!((SpanMasker::default().expected_fraction() - 0.4891).abs() < 1e-3);
    }

    #[test]
    fn padding_is_never_masked() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let masker = SpanMasker { prob: 0.5, length: 10 };
        for _ in 0..100 {
            let m = masker.sample(30, 60, &mut rng);
            assert!(m[30..].iter().all(|v| !v));
        }
        let t = masker.sample_batch(&[10, 20], 25, &mut rng);
        assert_eq!(t.size(), vec![2, 25]);
    }
}
