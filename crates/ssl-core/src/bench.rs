//! Measurement helpers for `cargo xtask bench`: timed windows with median/min/max, the device's
//! measured matrix-multiply peak (for MFU), and peak memory.
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Median, min and max of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// Summarise `values` (empty gives zeros).
    ///
    /// ```
    /// let s = ssl_core::bench::Spread::of(&[3.0, 1.0, 2.0]);
    /// assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    /// ```
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self { median: 0.0, min: 0.0, max: 0.0, n: 0 };
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) };
        Self { median, min: v[0], max: v[v.len() - 1], n: v.len() }
    }
}

/// Wait for queued device work (CUDA); a no-op on the CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The measured matmul peak in FLOP/s: fp32 on the CPU, bf16 on CUDA, square matrices of side `n`,
/// best of `repeats` timed runs after one warm-up.
pub fn matmul_peak(device: Device, n: i64, repeats: usize) -> f64 {
    let kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let _ = a.matmul(&b);
    synchronize(device);
    let mut best = f64::MAX;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let _c = a.matmul(&b);
        synchronize(device);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), 0 where unavailable.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// FLOPs of a 2-D convolution over one image (multiply-adds counted as 2).
pub fn conv2d_flops(cin: i64, cout: i64, k: i64, out_h: i64, out_w: i64) -> f64 {
    2.0 * (cin * cout * k * k * out_h * out_w) as f64
}

/// Forward FLOPs of one transformer block over `tokens` positions of width `dim` with a
/// feed-forward of width `ffn`: the Q, K, V and output projections, the scores Q K^T and the
/// weighted sum of V, and the feed-forward pair (multiply-adds counted as 2; norms and softmax
/// left out).
///
/// ```
/// assert_eq!(ssl_core::bench::transformer_layer_flops(4.0, 2.0, 3.0), 128.0 + 128.0);
/// ```
pub fn transformer_layer_flops(tokens: f64, dim: f64, ffn: f64) -> f64 {
    2.0 * tokens * (4.0 * dim * dim + 2.0 * dim * ffn) + 2.0 * 2.0 * tokens * tokens * dim
}
