//! Band-limited resampling with a Kaiser-windowed sinc kernel.
//!
//! Every output sample is a weighted sum of the input samples around its position; the kernel is
//! a sinc whose cutoff is the lower of the two Nyquist frequencies (times a small guard band), so
//! downsampling does not alias and upsampling does not image.
//!
//! ```
//! let x: Vec<f32> = (0..8000).map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 8000.0).sin()).collect();
//! let y = ssl_speech::data::resample::resample(&x, 8000, 16000);
//! assert_eq!(y.len(), 16000);
//! ```

/// Zero crossings of the sinc kept on each side (at the cutoff frequency).
const ZERO_CROSSINGS: f64 = 24.0;
/// Fraction of the lower Nyquist frequency kept: the rest is the transition band.
const ROLLOFF: f64 = 0.94;
/// Kaiser window shape (about 80 dB stop-band attenuation).
const KAISER_BETA: f64 = 8.0;

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..50 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < 1e-12 * sum {
            break;
        }
    }
    sum
}

fn kaiser(t: f64) -> f64 {
    // t in [-1, 1]
    if t.abs() >= 1.0 {
        return 0.0;
    }
    bessel_i0(KAISER_BETA * (1.0 - t * t).sqrt()) / bessel_i0(KAISER_BETA)
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Resample `input` from `from_hz` to `to_hz`. The output has `round(len * to / from)` samples.
/// Equal rates return a copy; an empty input or a zero rate returns an empty vector.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == to_hz {
        return input.to_vec();
    }
    if input.is_empty() || from_hz == 0 || to_hz == 0 {
        return Vec::new();
    }
    let ratio = to_hz as f64 / from_hz as f64;
    let out_len = (input.len() as f64 * ratio).round() as usize;
    // Cutoff in cycles per input sample (Nyquist of the input is 0.5).
    let cutoff = 0.5 * ROLLOFF * ratio.min(1.0);
    // Half-width of the kernel in input samples.
    let half = ZERO_CROSSINGS / (2.0 * cutoff);
    let weight = |d: f64| 2.0 * cutoff * sinc(2.0 * cutoff * d) * kaiser(d / half);
    // Output j sits at input position j * from / to: its integer part and one of
    // `to / gcd(from, to)` fractional phases. The kernel taps of each phase are computed once.
    let g = gcd(from_hz as u64, to_hz as u64);
    let (num, den) = (from_hz as u64 / g, to_hz as u64 / g); // position = j * num / den
    let taps = 2 * half.ceil() as i64 + 1;
    let n = input.len() as i64;
    let mut out = Vec::with_capacity(out_len);
    if (den as i64).saturating_mul(taps) <= 4_000_000 {
        let table: Vec<Vec<f64>> = (0..den)
            .map(|ph| {
                let frac = ph as f64 / den as f64;
                (0..taps).map(|i| weight(frac - (i - taps / 2) as f64)).collect()
            })
            .collect();
        for j in 0..out_len as u64 {
            let base = (j * num / den) as i64;
            let row = &table[((j * num) % den) as usize];
            let mut acc = 0.0f64;
            for (i, w) in row.iter().enumerate() {
                let k = base + i as i64 - taps / 2;
                if (0..n).contains(&k) {
                    acc += w * input[k as usize] as f64;
                }
            }
            out.push(acc as f32);
        }
    } else {
        for j in 0..out_len {
            let t = j as f64 / ratio;
            let lo = ((t - half).ceil() as i64).max(0);
            let hi = ((t + half).floor() as i64).min(n - 1);
            let acc: f64 = (lo..=hi).map(|k| weight(t - k as f64) * input[k as usize] as f64).sum();
            out.push(acc as f32);
        }
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}

/// Change the playback speed by `factor` (> 1 is faster and higher, as a tape played faster):
/// the signal is resampled so that it lasts `1 / factor` as long.
pub fn change_speed(input: &[f32], factor: f64) -> Vec<f32> {
    if !(factor.is_finite() && factor > 0.0) {
        return input.to_vec();
    }
    // Resample from a virtual rate of 16000 * factor to 16000 Hz.
    let from = (16000.0 * factor).round() as u32;
    resample(input, from, 16000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(freq: f64, rate: u32, secs: f64, amp: f64) -> Vec<f32> {
        let n = (rate as f64 * secs) as usize;
        (0..n).map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32).collect()
    }

    /// Amplitude and phase of `freq` in `x` (a single-bin DFT over the middle of the signal).
    fn tone(x: &[f32], rate: u32, freq: f64) -> f64 {
        let skip = x.len() / 8;
        let mid = &x[skip..x.len() - skip];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in mid.iter().enumerate() {
            let a = 2.0 * PI * freq * i as f64 / rate as f64;
            re += v as f64 * a.cos();
            im += v as f64 * a.sin();
        }
        2.0 * (re * re + im * im).sqrt() / mid.len() as f64
    }

    /// The frequency with the largest amplitude among candidates 1 Hz apart.
    fn peak(x: &[f32], rate: u32, around: f64) -> f64 {
        let mut best = (0.0, 0.0);
        for df in -20..=20 {
            let f = around + df as f64;
            let a = tone(x, rate, f);
            if a > best.1 {
                best = (f, a);
            }
        }
        best.0
    }

    #[test]
    fn a_resampled_sine_keeps_its_frequency_and_amplitude() {
        for &(from, to, f) in
            &[(8000u32, 16000u32, 1000.0), (22050, 16000, 440.0), (44100, 16000, 3000.0), (48000, 16000, 6000.0)]
        {
            let x = sine(f, from, 1.0, 0.5);
            let y = resample(&x, from, to);
            assert_eq!(y.len(), to as usize, "{from}->{to}");
            assert_eq!(peak(&y, to, f), f, "{from}->{to}: frequency moved");
            let amp = tone(&y, to, f);
            assert!((amp - 0.5).abs() < 0.01, "{from}->{to}: amplitude {amp}");
        }
    }

    #[test]
    fn frequencies_above_the_new_nyquist_are_removed() {
        // 10 kHz cannot be represented at 16 kHz: it must not fold back to 6 kHz.
        let x = sine(10000.0, 48000, 1.0, 1.0);
        let y = resample(&x, 48000, 16000);
        let rms = (y[2000..14000].iter().map(|v| (v * v) as f64).sum::<f64>() / 12000.0).sqrt();
        assert!(rms < 1e-3, "alias energy {rms}");
    }

    #[test]
    fn speed_change_scales_duration_and_frequency() {
        let x = sine(500.0, 16000, 1.0, 0.5);
        let y = change_speed(&x, 1.25);
        assert_eq!(y.len(), 12800);
        assert_eq!(peak(&y, 16000, 625.0), 625.0);
    }
}
