//! Robustness corruptions of test waveforms `[N, S]` (CPU): additive white and babble-like noise
//! at 20, 10 and 0 dB SNR, a gain change, and speed perturbation.
//!
//! The signal power is measured over each row's valid part (before its trailing zero padding),
//! and noise is added over that part only. Everything is deterministic.
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! let xs = Tensor::randn([4, 16000], (Kind::Float, Device::Cpu));
//! for c in ssl_speech::corruptions::speech_corruptions(0) {
//!     assert_eq!((c.apply)(&xs).size(), vec![4, 16000]);
//! }
//! ```
use crate::data::resample::change_speed;
use crate::model::encoder::valid_lengths;
use ssl_core::eval::Corruption;
use tch::{Device, Kind, Tensor};

/// Mean power of each row over its valid samples `[N, 1]`.
fn signal_power(xs: &Tensor) -> Tensor {
    let lengths = valid_lengths(xs).clamp_min(1);
    let s = xs.size()[1];
    let m = Tensor::arange(s, (Kind::Int64, xs.device()))
        .unsqueeze(0)
        .lt_tensor(&lengths.unsqueeze(1))
        .to_kind(Kind::Float);
    (xs.square() * &m).sum_dim_intlist(1, true, Kind::Float) / lengths.unsqueeze(1).to_kind(Kind::Float)
}

/// `[N, S]` float: 1 over each row's valid samples, 0 over its trailing padding.
fn valid_mask(xs: &Tensor) -> Tensor {
    let lengths = valid_lengths(xs).clamp_min(1);
    let s = xs.size()[1];
    Tensor::arange(s, (Kind::Int64, xs.device())).unsqueeze(0).lt_tensor(&lengths.unsqueeze(1)).to_kind(Kind::Float)
}

/// Add `noise` `[N, S]` over each row's valid part, scaled so that the signal-to-noise ratio
/// there is `snr_db`. The padding stays silent, so the encoder pools over the same frames as on
/// clean input and the corruption measures the noise, not a change of length.
pub fn add_at_snr(xs: &Tensor, noise: &Tensor, snr_db: f64) -> Tensor {
    let m = valid_mask(xs);
    let n = m.sum_dim_intlist(1, true, Kind::Float).clamp_min(1.0);
    let noise = noise * &m;
    let ps = signal_power(xs);
    let pn = (noise.square().sum_dim_intlist(1, true, Kind::Float) / n).clamp_min(1e-12);
    let scale = (ps / pn / 10f64.powf(snr_db / 10.0)).sqrt();
    let y = xs + noise * scale;
    // A noisy sample that is exactly 0 at the end of the valid part would shorten the row.
    y.where_self(&(y.ne(0.0).logical_or(&m.eq(0.0))), &Tensor::full([], 1e-6, (Kind::Float, xs.device())))
}

/// White Gaussian noise at `snr_db`.
pub fn white_noise(xs: &Tensor, snr_db: f64, seed: u64) -> Tensor {
    let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(seed, "corruption"));
    let noise = Tensor::randn(xs.size(), (Kind::Float, Device::Cpu)).to_device(xs.device());
    add_at_snr(xs, &noise, snr_db)
}

/// Babble-like noise: the sum of `talkers` other rows of the batch (each circularly shifted and
/// normalised), at `snr_db`. With one row, the row itself time-reversed stands in.
pub fn babble_noise(xs: &Tensor, snr_db: f64, talkers: i64) -> Tensor {
    let (n, s) = (xs.size()[0], xs.size()[1]);
    let mut noise = Tensor::zeros([n, s], (Kind::Float, xs.device()));
    for k in 1..=talkers {
        let other = if n > 1 { xs.roll([k % n.max(1)], [0]) } else { xs.flip([1]) };
        let other = other.roll([k * s / (talkers + 1)], [1]);
        let p = other.square().mean_dim(1, true, Kind::Float).clamp_min(1e-12);
        noise += other / p.sqrt();
    }
    add_at_snr(xs, &noise, snr_db)
}

/// Speed perturbation of each row's valid part by `factor`, padded or cropped back to `S`.
pub fn speed(xs: &Tensor, factor: f64) -> Tensor {
    let (n, s) = (xs.size()[0], xs.size()[1] as usize);
    let lens = Vec::<i64>::try_from(valid_lengths(xs).to_device(Device::Cpu)).unwrap_or_default();
    let cpu = xs.to_device(Device::Cpu).to_kind(Kind::Float);
    let mut out = Vec::with_capacity(n as usize * s);
    for (i, &len) in lens.iter().enumerate() {
        let row = Vec::<f32>::try_from(cpu.get(i as i64).narrow(0, 0, len.max(1))).unwrap_or_default();
        let mut y = change_speed(&row, factor);
        y.resize(s, 0.0);
        out.extend(y);
    }
    Tensor::from_slice(&out).view([n, s as i64]).to_device(xs.device())
}

/// The corruptions the speech evaluation reports.
pub fn speech_corruptions(seed: u64) -> Vec<Corruption> {
    let mut v = Vec::new();
    for (sev, snr) in [(1u32, 20.0), (2, 10.0), (3, 0.0)] {
        v.push(Corruption {
            name: format!("white noise {snr:.0} dB SNR"),
            severity: sev,
            apply: Box::new(move |x: &Tensor| white_noise(x, snr, seed + sev as u64)),
        });
    }
    for (sev, snr) in [(1u32, 20.0), (2, 10.0), (3, 0.0)] {
        v.push(Corruption {
            name: format!("babble noise {snr:.0} dB SNR"),
            severity: sev,
            apply: Box::new(move |x: &Tensor| babble_noise(x, snr, 4)),
        });
    }
    v.push(Corruption { name: "gain -20 dB".into(), severity: 1, apply: Box::new(|x: &Tensor| x * 0.1) });
    v.push(Corruption { name: "speed 0.9x".into(), severity: 1, apply: Box::new(|x: &Tensor| speed(x, 0.9)) });
    v.push(Corruption { name: "speed 1.1x".into(), severity: 1, apply: Box::new(|x: &Tensor| speed(x, 1.1)) });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_added_at_the_requested_snr() {
        let _rng = ssl_core::rng::torch_rng(0);
        let xs = Tensor::randn([3, 8000], (Kind::Float, Device::Cpu)) * 2.0;
        for snr in [20.0, 10.0, 0.0] {
            for y in [white_noise(&xs, snr, 1), babble_noise(&xs, snr, 4)] {
                let noise = &y - &xs;
                let ratio = xs.square().mean(Kind::Float).double_value(&[])
                    / noise.square().mean(Kind::Float).double_value(&[]);
                assert!((10.0 * ratio.log10() - snr).abs() < 0.5, "snr {snr}: got {}", 10.0 * ratio.log10());
            }
        }
    }
}
