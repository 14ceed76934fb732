//! WAV decoding of every supported encoding, and bad input: skipped with a warning and counted,
//! never a panic; a folder with nothing usable is an error.
use hound::{SampleFormat, WavSpec, WavWriter};
use ssl_speech::data::dataset::AudioCorpus;
use ssl_speech::data::wav::{decode, load_16k};
use ssl_speech::error::SpeechError;
use ssl_speech::model::ModelConfig;
use std::f64::consts::PI;
use std::path::Path;

/// A 440 Hz sine of amplitude 0.5, `secs` long, at `rate`, on `channels` identical channels
/// (stereo files get the right channel inverted-and-halved, so the mono mix is 0.25 * sine).
fn write_sine(path: &Path, rate: u32, channels: u16, bits: u16, format: SampleFormat, secs: f64) {
    let spec = WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format: format };
    let mut w = WavWriter::create(path, spec).unwrap();
    let n = (rate as f64 * secs) as usize;
    for i in 0..n {
        let v = 0.5 * (2.0 * PI * 440.0 * i as f64 / rate as f64).sin();
        for c in 0..channels {
            let v = if c == 1 { 0.0 } else { v };
            match format {
                SampleFormat::Float => w.write_sample(v as f32).unwrap(),
                SampleFormat::Int => {
                    let max = ((1i64 << (bits - 1)) - 1) as f64;
                    let s = (v * max).round() as i64;
                    match bits {
                        8 => w.write_sample(s as i8).unwrap(),
                        16 => w.write_sample(s as i16).unwrap(),
                        _ => w.write_sample(s as i32).unwrap(),
                    }
                }
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn every_supported_encoding_decodes_to_the_same_signal() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (8u16, SampleFormat::Int, 2e-2),
        (16, SampleFormat::Int, 1e-4),
        (24, SampleFormat::Int, 1e-6),
        (32, SampleFormat::Int, 1e-6),
        (32, SampleFormat::Float, 1e-6),
    ];
    for (bits, format, tol) in cases {
        for channels in [1u16, 2] {
            let p = dir.path().join(format!("{bits}-{format:?}-{channels}.wav"));
            write_sine(&p, 8000, channels, bits, format, 0.25);
            let a = decode(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(a.sample_rate, 8000);
            assert_eq!(a.samples.len(), 2000);
            // Stereo: the second channel is silent, so the mono mix halves the amplitude.
            let amp = if channels == 1 { 0.5 } else { 0.25 };
            for (i, &v) in a.samples.iter().enumerate().step_by(37) {
                let want = amp * (2.0 * PI * 440.0 * i as f64 / 8000.0).sin();
                assert!(
                    (v as f64 - want).abs() < tol + 1e-6,
                    "{bits}-bit {format:?} x{channels}, sample {i}: {v} vs {want}"
                );
            }
            let x = load_16k(&p).unwrap();
            assert_eq!(x.len(), 4000, "resampled to 16 kHz");
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
            assert!(mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3, "normalised per utterance");
        }
    }
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wav");
    write_sine(&good, 16000, 1, 16, SampleFormat::Int, 0.5);
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("truncated.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let header_only = dir.path().join("header.wav");
    std::fs::write(&header_only, &bytes[..20]).unwrap();
    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"this is not a wav file at all").unwrap();
    let empty = dir.path().join("empty.wav");
    write_sine(&empty, 16000, 1, 16, SampleFormat::Int, 0.0);
    let silent = dir.path().join("silent.wav");
    {
        let spec = WavSpec { channels: 1, sample_rate: 16000, bits_per_sample: 16, sample_format: SampleFormat::Int };
        let mut w = WavWriter::create(&silent, spec).unwrap();
        for _ in 0..8000 {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
    }
    let float64 = dir.path().join("float64.wav");
    {
        // hound cannot write 64-bit float, so patch a 32-bit float header's bit depth to 64.
        write_sine(&float64, 16000, 1, 32, SampleFormat::Float, 0.1);
        let mut b = std::fs::read(&float64).unwrap();
        let fmt = b.windows(4).position(|w| w == b"fmt ").unwrap();
        b[fmt + 22] = 64;
        std::fs::write(&float64, b).unwrap();
    }
    for p in [&cut, &header_only, &garbage, &empty, &silent, &float64] {
        match load_16k(p) {
            Err(SpeechError::BadAudio { path, .. }) => {
                assert!(path.ends_with(p.file_name().unwrap().to_str().unwrap()))
            }
            other => panic!("{}: expected a BadAudio error, got {:?}", p.display(), other.map(|v| v.len())),
        }
    }
    // In a folder: the good file is kept, the six bad ones are skipped and counted.
    let corpus = AudioCorpus::load_dir(dir.path(), &ModelConfig::tiny()).unwrap();
    assert_eq!(corpus.clips.len(), 1);
    assert_eq!(corpus.skipped.len(), 6);
    assert!(corpus.skipped.iter().any(|s| s.path.ends_with("truncated.wav")));
}

#[test]
fn a_folder_without_usable_audio_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.wav"), b"RIFF").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let err = AudioCorpus::load_dir(dir.path(), &ModelConfig::tiny()).err().expect("an error");
    assert!(matches!(err, SpeechError::NoAudio { .. }));
    assert!(err.to_string().contains("1 audio files found, 1 unusable"), "{err}");
    let missing = AudioCorpus::load_dir(&dir.path().join("nope"), &ModelConfig::tiny()).err().expect("an error");
    assert!(matches!(missing, SpeechError::NoAudio { .. }));
}

/// `fixtures/sine-440hz-22050-stereo.flac` was written with
/// `sox -n -r 22050 -b 16 -c 2 sine-440hz-22050-stereo.flac synth 0.1 sine 440 vol 0.5`.
#[test]
fn flac_decodes_and_a_truncated_flac_is_an_error() {
    let fixture =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sine-440hz-22050-stereo.flac");
    let a = ssl_speech::data::wav::decode_any(&fixture).unwrap();
    assert_eq!((a.sample_rate, a.samples.len()), (22050, 2205));
    let peak = a.samples.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!((peak - 0.5).abs() < 0.01, "peak {peak}");
    let crossings = a.samples.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    assert!((43..=45).contains(&crossings), "{crossings} upward zero crossings in 0.1 s of 440 Hz");
    assert_eq!(load_16k(&fixture).unwrap().len(), 1600);

    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&fixture).unwrap();
    let cut = dir.path().join("cut.flac");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load_16k(&cut), Err(SpeechError::BadAudio { .. })));
    // A flac folder is only read with --data-format flac-folder.
    std::fs::copy(&fixture, dir.path().join("ok.flac")).unwrap();
    let corpus = AudioCorpus::load_dir_limited(dir.path(), &ModelConfig::tiny(), 100, true).unwrap();
    assert_eq!((corpus.clips.len(), corpus.skipped.len()), (1, 1));
    assert!(AudioCorpus::load_dir(dir.path(), &ModelConfig::tiny()).is_err());
}
