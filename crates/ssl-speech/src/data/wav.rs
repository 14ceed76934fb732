//! Reading audio files (WAV here, FLAC in [`crate::data::flac`]): 8/16/24/32-bit integer and 32-bit float samples, any channel count mixed
//! down to mono, any sample rate resampled to 16 kHz, then normalised per utterance.
//!
//! ```no_run
//! let samples = ssl_speech::data::wav::load_16k(std::path::Path::new("clip.wav")).unwrap();
//! // zero mean, unit variance, 16 000 samples per second
//! ```
use crate::data::resample::resample;
use crate::error::{Result, SpeechError};
use std::path::Path;

/// The sample rate everything is converted to.
pub const SAMPLE_RATE: u32 = 16_000;

/// Decoded audio, mono, in `[-1, 1]` for integer formats.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Decode a WAV file to mono at its own sample rate.
///
/// Truncated or corrupt files, zero-length clips, non-finite float samples and encodings other
/// than 8/16/24/32-bit integer PCM or 32-bit float are errors that name the file.
pub fn decode(path: &Path) -> Result<Audio> {
    let reader =
        hound::WavReader::open(path).map_err(|e| SpeechError::bad(path, format!("not a readable WAV file ({e})")))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(SpeechError::bad(path, "the header declares zero channels or a zero sample rate"));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| SpeechError::bad(path, format!("truncated or corrupt sample data ({e})")))?
        }
        (hound::SampleFormat::Float, 32) => {
            let v: Vec<f32> = reader
                .into_samples::<f32>()
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| SpeechError::bad(path, format!("truncated or corrupt sample data ({e})")))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(SpeechError::bad(path, "non-finite float samples"));
            }
            v
        }
        (fmt, bits) => {
            return Err(SpeechError::bad(
                path,
                format!("unsupported encoding: {bits}-bit {fmt:?} (expected 8/16/24/32-bit integer or 32-bit float)"),
            ))
        }
    };
    mix_to_mono(path, interleaved, channels, spec.sample_rate)
}

/// Interleaved samples of any channel count mixed down to one channel; a partial last frame or
/// an empty clip is an error naming the file. Shared by the WAV and FLAC readers.
pub(crate) fn mix_to_mono(path: &Path, interleaved: Vec<f32>, channels: usize, sample_rate: u32) -> Result<Audio> {
    if !interleaved.len().is_multiple_of(channels) {
        return Err(SpeechError::bad(path, "truncated sample data (partial frame)"));
    }
    let samples: Vec<f32> = if channels == 1 {
        interleaved
    } else {
        interleaved.chunks_exact(channels).map(|f| f.iter().sum::<f32>() / channels as f32).collect()
    };
    if samples.is_empty() {
        return Err(SpeechError::bad(path, "zero-length clip"));
    }
    Ok(Audio { samples, sample_rate })
}

/// Normalise to zero mean and unit variance in place. Returns false (and leaves the samples as
/// they are) when the signal is constant, which cannot be normalised.
pub fn normalize(samples: &mut [f32]) -> bool {
    if samples.is_empty() {
        return false;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = samples.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    if var.is_nan() || var <= 1e-12 {
        return false;
    }
    let inv = 1.0 / var.sqrt();
    for v in samples.iter_mut() {
        *v = ((*v as f64 - mean) * inv) as f32;
    }
    true
}

/// Whether `path` names an audio file we read (`.wav`, or `.flac` when `flac` is set).
pub fn is_audio_file(path: &Path, flac: bool) -> bool {
    match path.extension().and_then(|x| x.to_str()) {
        Some(x) if x.eq_ignore_ascii_case("wav") => true,
        Some(x) if x.eq_ignore_ascii_case("flac") => flac,
        _ => false,
    }
}

/// Decode a WAV or (by extension) FLAC file to mono at its own rate.
pub fn decode_any(path: &Path) -> Result<Audio> {
    if path.extension().and_then(|x| x.to_str()).is_some_and(|x| x.eq_ignore_ascii_case("flac")) {
        crate::data::flac::decode(path)
    } else {
        decode(path)
    }
}

/// Decode (WAV, or FLAC by extension), mix to mono, resample to 16 kHz and normalise per
/// utterance.
pub fn load_16k(path: &Path) -> Result<Vec<f32>> {
    let audio = decode_any(path)?;
    let mut x = resample(&audio.samples, audio.sample_rate, SAMPLE_RATE);
    if x.is_empty() {
        return Err(SpeechError::bad(path, "shorter than one sample at 16 kHz"));
    }
    if !normalize(&mut x) {
        return Err(SpeechError::bad(path, "silent or constant signal"));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_gives_zero_mean_unit_variance() {
        let mut x: Vec<f32> = (0..1000).map(|i| 3.0 + (i as f32 * 0.1).sin()).collect();
        assert!(normalize(&mut x));
        let m = x.iter().sum::<f32>() / 1000.0;
        let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 1000.0;
        assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3);
        let mut flat = vec![0.5f32; 10];
        assert!(!normalize(&mut flat));
    }
}
