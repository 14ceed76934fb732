//! Reading FLAC files (e.g. LibriSpeech) with `claxon`: any bit depth, channels mixed to mono.
use crate::data::wav::Audio;
use crate::error::{Result, SpeechError};
use std::path::Path;

/// Decode a FLAC file to mono at its own sample rate. Corrupt or truncated streams and
/// zero-length clips are errors that name the file.
pub fn decode(path: &Path) -> Result<Audio> {
    let mut reader = claxon::FlacReader::open(path)
        .map_err(|e| SpeechError::bad(path, format!("not a readable FLAC file ({e})")))?;
    let info = reader.streaminfo();
    let channels = info.channels as usize;
    if channels == 0 || info.sample_rate == 0 || info.bits_per_sample == 0 || info.bits_per_sample > 32 {
        return Err(SpeechError::bad(
            path,
            "the stream header declares no channels, no sample rate or an invalid bit depth",
        ));
    }
    let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f64;
    let interleaved: Vec<f32> = reader
        .samples()
        .map(|s| s.map(|v| (v as f64 * scale) as f32))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| SpeechError::bad(path, format!("truncated or corrupt FLAC data ({e})")))?;
    crate::data::wav::mix_to_mono(path, interleaved, channels, info.sample_rate)
}
