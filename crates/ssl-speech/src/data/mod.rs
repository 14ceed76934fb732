//! Audio in: WAV and FLAC decoding, resampling to 16 kHz, the pretraining clips and their masked
//! crops, the labeled evaluation splits, and the log-mel features of the raw-input baseline.
pub mod batch;
pub mod dataset;
pub mod features;
pub mod flac;
pub mod masking;
pub mod resample;
pub mod wav;
