//! Arbitrary bytes into the WAV and FLAC readers and the corpus loader: a clear error that names
//! the file, or a counted skip; never a panic. A fixed case budget keeps this inside the test
//! command.
use proptest::prelude::*;
use ssl_speech::model::ModelConfig;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn wav_and_flac_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), riff in any::<bool>()) {
        // Half the cases start like a real WAV, so the chunk parsing is reached.
        if riff && bytes.len() >= 16 {
            bytes[..4].copy_from_slice(b"RIFF");
            bytes[8..16].copy_from_slice(b"WAVEfmt ");
        }
        let d = tempfile::tempdir().unwrap();
        for name in ["x.wav", "x.flac"] {
            let f = d.path().join(name);
            std::fs::write(&f, &bytes).unwrap();
            if let Err(e) = ssl_speech::data::wav::decode_any(&f) {
                prop_assert!(e.to_string().contains(name), "the error names the file: {}", e);
            }
        }
        // The folder loader skips and counts what it cannot read.
        match ssl_speech::data::dataset::AudioCorpus::load_dir_limited(d.path(), &ModelConfig::tiny(), 10, true) {
            Ok(c) => prop_assert_eq!(c.clips.len() + c.skipped.len(), 2),
            Err(e) => prop_assert!(e.to_string().contains("no usable audio")),
        }
    }
}
