//! Paired comparisons across seeds.
//!
//! Each seed draws one few-label subset, and every encoder is evaluated on that same subset, so
//! `pretrained - scratch` is a paired difference: the bootstrap resamples seeds, keeping each
//! seed's pair together (Efron & Tibshirani 1993, ch. 13, percentile interval).
//!
//! ```
//! use ssl_core::eval::stats::paired_bootstrap;
//! let pretrained = [0.71, 0.74, 0.69, 0.73, 0.72];
//! let scratch = [0.60, 0.66, 0.58, 0.64, 0.65];
//! let d = paired_bootstrap(&pretrained, &scratch, 0).unwrap();
//! assert!(d.significant && d.lo > 0.0 && d.lo <= d.mean && d.mean <= d.hi);
//! ```
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Resamples drawn by [`paired_bootstrap`].
pub(crate) const RESAMPLES: usize = 10_000;

/// A paired difference `a - b` over seeds, with its 95% bootstrap confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// Mean of the per-seed differences.
    pub mean: f64,
    /// 2.5th percentile of the resampled means.
    pub lo: f64,
    /// 97.5th percentile of the resampled means.
    pub hi: f64,
    /// Number of seeds (pairs).
    pub n: usize,
    /// The interval excludes zero.
    pub significant: bool,
}

impl PairedDiff {
    /// `+4.1 points (95% CI +1.2 to +6.8, significant)`.
    pub fn describe(&self) -> String {
        format!(
            "{:+.1} points (95% CI {:+.1} to {:+.1} over {} seeds, {})",
            100.0 * self.mean,
            100.0 * self.lo,
            100.0 * self.hi,
            self.n,
            if self.significant { "significant" } else { "not significant" }
        )
    }
}

/// The paired bootstrap of `mean(a - b)`: `a[i]` and `b[i]` come from the same seed. `None` with
/// fewer than two pairs or unequal lengths (no interval can be drawn).
pub fn paired_bootstrap(a: &[f64], b: &[f64], seed: u64) -> Option<PairedDiff> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = crate::rng::chacha(seed, "paired-bootstrap");
    let mut means: Vec<f64> =
        (0..RESAMPLES).map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    let (lo, hi) = (at(0.025), at(0.975));
    Some(PairedDiff { mean, lo, hi, n, significant: lo > 0.0 || hi < 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_brackets_the_mean_and_follows_a_shift() {
        let a = [0.5, 0.6, 0.7, 0.55, 0.65];
        let same = paired_bootstrap(&a, &a, 1).unwrap();
        assert_eq!((same.mean, same.lo, same.hi, same.significant), (0.0, 0.0, 0.0, false));
        // A constant shift: every resample has the same mean.
        let b: Vec<f64> = a.iter().map(|x| x - 0.1).collect();
        let shift = paired_bootstrap(&a, &b, 1).unwrap();
        assert!((shift.lo - 0.1).abs() < 1e-12 && (shift.hi - 0.1).abs() < 1e-12 && shift.significant);
        // Differences of both signs: the interval straddles zero.
        let c = [0.6, 0.5, 0.75, 0.5, 0.7];
        let mixed = paired_bootstrap(&a, &c, 1).unwrap();
        assert!(mixed.lo < 0.0 && mixed.hi > 0.0 && !mixed.significant, "{mixed:?}");
        assert!(mixed.lo <= mixed.mean && mixed.mean <= mixed.hi);
        assert!(paired_bootstrap(&a[..1], &c[..1], 1).is_none());
        assert!(paired_bootstrap(&a, &c[..3], 1).is_none());
    }
}
