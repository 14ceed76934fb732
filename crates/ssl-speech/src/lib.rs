//! # ssl-speech
//!
//! Self-supervised pretraining of a speech encoder on unlabeled raw audio by masking spans of
//! frames and predicting them, then keyword classification with few labels. It reads like a
//! recipe:
//!
//! 1. [`data`]: [`data::wav`] decodes WAV (8/16/24/32-bit integer, 32-bit float, any channels)
//!    and [`data::flac`] FLAC, [`data::resample`] converts any rate to 16 kHz with a band-limited
//!    (Kaiser-windowed sinc) filter, [`data::dataset`] loads folders (bad files skipped and
//!    counted), crops and pads batches, and [`data::masking`] draws wav2vec 2.0 spans
//!    (p = 0.065, M = 10);
//! 2. encoder: [`model`] is wav2vec 2.0-shaped (conv feature encoder with kernels
//!    10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2; projection; convolutional positional embedding;
//!    Transformer), with presets `tiny` and `small`;
//! 3. objective: [`objectives`] is the shared [`ssl_core::trainer::Objective`], with one file per
//!    method: [`objectives::best_rq`] (frozen [`model::quantizer`] targets from
//!    [`data::features`] log-mel frames), [`objectives::contrastive`] (Gumbel product quantizer,
//!    InfoNCE, diversity) and [`objectives::reconstruct`] (L1 on masked log-mel frames);
//! 4. evaluation: [`model::encoder`] adapts the model to ssl-core's protocol (pretrained vs
//!    scratch vs a log-mel baseline) and [`corruptions`] supplies noise, gain and speed
//!    corruptions;
//! 5. [`interop`]: the encoder as HuggingFace's `Wav2Vec2Model` (or `Wav2Vec2ForPreTraining`
//!    with the contrastive head), and back for `--init-from`.
//!
//! The crate follows the layout every modality crate shares: [`flags`] (the command's flags),
//! [`recipe`] (the [`ssl_core::run::Recipe`] that `ssl pretrain-speech` runs through ssl-core's
//! seam), [`pipeline`] (the typed configuration with the papers' defaults, and the run as
//! library calls), [`data`], [`model`], [`objectives`] (one file per paper), [`corruptions`]
//! (the evaluation's corruption suite), [`interop`] (export and import) and [`bench`](mod@bench).
//!
//! ```
//! use ssl_speech::data::masking::SpanMasker;
//! use ssl_speech::model::ModelConfig;
//! use ssl_speech::objectives::{ObjectiveConfig, SpeechObjective};
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
pub mod bench;
pub mod corruptions;
pub mod data;
pub mod error;
pub mod flags;
pub mod interop;
pub mod model;
pub mod objectives;
pub mod pipeline;
pub mod recipe;

pub use error::{Result, SpeechError};
