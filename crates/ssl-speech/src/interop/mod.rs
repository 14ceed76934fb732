//! Other tools' formats: [`export`] writes HF `Wav2Vec2Model`; [`import`] reads HF wav2vec 2.0
//! checkpoints for `--init-from`.
pub mod export;
pub mod import;
