//! Log-mel frames aligned with the conv encoder's frames: a 25 ms Hann window (400 samples, the
//! encoder's receptive field) every 20 ms (320 samples, its stride), 80 HTK mel bands.
//!
//! They are the input of the BEST-RQ target quantizer, the target of `reconstruct`, and (mean and
//! standard deviation over time) the raw-feature baseline of the evaluation.
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! let mel = ssl_speech::data::features::LogMel::new(Device::Cpu);
//! let wave = Tensor::randn([2, 16000], (Kind::Float, Device::Cpu));
//! assert_eq!(mel.frames(&wave).size(), vec![2, 49, 80]);
//! ```
use crate::data::wav::SAMPLE_RATE;
use tch::{Device, Kind, Tensor};

/// Samples per analysis window (the conv encoder's receptive field).
pub const WINDOW: i64 = 400;
/// Samples between frames (the conv encoder's total stride).
pub const HOP: i64 = 320;
/// FFT size.
pub const N_FFT: i64 = 512;
/// Mel bands.
pub const N_MELS: i64 = 80;

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// Triangular HTK mel filters `[N_FFT/2 + 1, n_mels]` (no area normalisation).
pub fn mel_filterbank(n_mels: i64, sample_rate: u32) -> Vec<f32> {
    let bins = (N_FFT / 2 + 1) as usize;
    let nyquist = sample_rate as f64 / 2.0;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let edges: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut fb = vec![0f32; bins * n_mels as usize];
    for b in 0..bins {
        let f = b as f64 * nyquist / (bins - 1) as f64;
        for m in 0..n_mels as usize {
            let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
            let w = ((f - l) / (c - l)).min((r - f) / (r - c)).max(0.0);
            fb[b * n_mels as usize + m] = w as f32;
        }
    }
    fb
}

/// The log-mel front end (no trainable parameters).
pub struct LogMel {
    window: Tensor,
    filterbank: Tensor,
}

impl LogMel {
    pub fn new(device: Device) -> Self {
        let window = Tensor::hann_window_periodic(WINDOW, true, (Kind::Float, device));
        let filterbank =
            Tensor::from_slice(&mel_filterbank(N_MELS, SAMPLE_RATE)).view([N_FFT / 2 + 1, N_MELS]).to_device(device);
        Self { window, filterbank }
    }

    /// Log-mel frames `[B, T, 80]` of waveforms `[B, S]`, with `T = (S - 400) / 320 + 1`.
    pub fn frames(&self, wave: &Tensor) -> Tensor {
        let frames = wave.to_kind(Kind::Float).unfold(1, WINDOW, HOP) * &self.window; // [B, T, 400]
        let power = frames.fft_rfft(N_FFT, -1, "backward").abs().square(); // [B, T, 257]
        (power.matmul(&self.filterbank) + 1e-6).log()
    }
}

/// Normalise frames `[B, T, D]` per utterance and per band over the valid frames (`valid` is
/// `[B, T]` bool). Padded frames become 0.
pub fn normalize_frames(frames: &Tensor, valid: &Tensor) -> Tensor {
    let m = valid.to_kind(Kind::Float).unsqueeze(-1);
    let n = m.sum_dim_intlist(1, true, Kind::Float).clamp_min(1.0);
    let mean = (frames * &m).sum_dim_intlist(1, true, Kind::Float) / &n;
    let var = ((frames - &mean).square() * &m).sum_dim_intlist(1, true, Kind::Float) / &n;
    (frames - mean) / (var + 1e-5).sqrt() * m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_peaks_in_the_mel_band_of_its_frequency() {
        let f = 1000.0f64;
        let x: Vec<f32> =
            (0..16000).map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / 16000.0).sin() as f32).collect();
        let mel = LogMel::new(Device::Cpu);
        let fr = mel.frames(&Tensor::from_slice(&x).view([1, 16000]));
        let band = fr.get(0).get(10).argmax(0, false).int64_value(&[]);
        // The band whose centre is closest to 1 kHz.
        let step = hz_to_mel(8000.0) / (N_MELS + 1) as f64;
        let want = (hz_to_mel(f) / step).round() as i64 - 1;
        assert!((band - want).abs() <= 1, "band {band}, expected about {want}");
    }
}
