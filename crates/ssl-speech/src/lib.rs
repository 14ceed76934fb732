//! # ssl-speech
//!
//! Self-supervised pretraining of a speech encoder on unlabeled raw audio by masking spans of
//! frames and predicting them, then keyword classification with few labels. It reads like a
//! recipe:
//!
//! 1. data: [`wav`] decodes WAV (8/16/24/32-bit integer, 32-bit float, any channels) and
//!    [`flac`] FLAC, [`resample`]
//!    converts any rate to 16 kHz with a band-limited (Kaiser-windowed sinc) filter, and
//!    [`dataset`] loads folders (bad files skipped and counted), crops and pads batches;
//! 2. mask: [`masking`] draws wav2vec 2.0 spans (p = 0.065, M = 10);
//! 3. encoder: [`model`] is wav2vec 2.0-shaped (conv feature encoder with kernels
//!    10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2; projection; convolutional positional embedding;
//!    Transformer), with presets `tiny` and `small`;
//! 4. objective: [`objective`] is the shared [`ssl_core::trainer::Objective`], with one file per
//!    method: [`best_rq`] (frozen [`quantizer`] targets from [`features`] log-mel frames),
//!    [`contrastive`] (Gumbel product quantizer, InfoNCE, diversity) and [`reconstruct`] (L1 on
//!    masked log-mel frames);
//! 5. evaluation: [`encoder`] adapts the model to ssl-core's protocol (pretrained vs scratch vs a
//!    log-mel baseline) and [`corruption`] supplies noise, gain and speed corruptions;
//!    [`pretrain`] holds the configuration and [`run`] the `Recipe` the `ssl` binary runs;
//! 6. interop: [`hf_export`] writes the encoder as HuggingFace's `Wav2Vec2Model` (or
//!    `Wav2Vec2ForPreTraining` with the contrastive head), and [`hf_import`] reads them back
//!    for `--init-from`.
//!
//! ```
//! use ssl_speech::masking::SpanMasker;
//! use ssl_speech::model::ModelConfig;
//! use ssl_speech::objective::{ObjectiveConfig, SpeechObjective};
//! use rand::SeedableRng;
//! use tch::{Device, Kind, Tensor};
//!
//! let model = ModelConfig { conv_channels: 16, dim: 32, layers: 1, heads: 2, ffn_dim: 64, ..ModelConfig::tiny() };
//! // Every LibTorch draw under ssl_core::rng's exclusive, seeded guard.
//! let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(0, "init"));
//! let objective = SpeechObjective::new(&model, ObjectiveConfig::default(), Device::Cpu); // best-rq
//! // Two one-second utterances, the second only half real (the rest is padding).
//! let waves = Tensor::randn([2, 16000], (Kind::Float, Device::Cpu));
//! let lengths = [16000, 8000];
//! let frames = model.frames(16000);
//! let valid: Vec<usize> = lengths.iter().map(|&l| model.frames(l) as usize).collect();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mask = SpanMasker::default().sample_batch(&valid, frames as usize, &mut rng);
//! let out = objective.loss(&waves, &lengths, &mask);
//! // Cross-entropy over 512 random codes starts near ln(512).
//! let loss = out.loss.double_value(&[]);
//! assert!((loss - 512f64.ln()).abs() < 1.5, "initial loss {loss}");
//! ```
pub mod batch;
pub mod bench;
pub mod best_rq;
pub mod contrastive;
pub mod corruption;
pub mod dataset;
pub mod encoder;
pub mod error;
pub mod features;
pub mod flac;
pub mod flops;
pub mod hf_export;
pub mod hf_import;
pub mod masking;
pub mod model;
pub mod objective;
pub mod pretrain;
pub mod quantizer;
pub mod reconstruct;
pub mod resample;
pub mod run;
pub mod wav;

pub use error::{Result, SpeechError};
