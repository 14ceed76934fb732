//! # ssl-core
//!
//! The shared engine of the toolkit: everything a self-supervised pretraining run needs that
//! does not depend on the modality, written once and used by `ssl-text`, `ssl-vision` and
//! `ssl-speech`.
//!
//! - [`trainer`]: the training loop, generic over an [`trainer::Objective`] that a modality
//!   implements, with gradient accumulation, clipping, LR schedules, a NaN guard, bf16 autocast on
//!   CUDA, progress and `metrics.jsonl`.
//! - [`ema`]: the EMA teacher (BYOL, DINO, data2vec), checkpointed with the student.
//! - [`torch_error`]: a LibTorch failure (out of memory, a shape error) as a typed error, not a
//!   panic.
//! - [`dist`]: data-parallel training on c10d (Gloo), launched by torchrun, Slurm or
//!   `--nproc-per-node`.
//! - [`loader`]: parallel decode/augment with rayon and a bounded prefetch queue, resumable.
//! - [`optim`]: AdamW and SGD whose state is ours (checkpointable), with fused LibTorch kernels
//!   reached through the C++ layer in [`kernels`] and a composed-ops fallback.
//! - [`losses`]: masked cross-entropy, masked reconstruction, InfoNCE, codebook diversity.
//! - [`profile`]: `--profile N`: steps recorded with LibTorch's profiler (Kineto), a trace and a
//!   top-operators table; traces of ours and of `torch.profiler` compared op by op.
//! - [`rng`]: every random choice derived by name from the run seed; exclusive, seeded use of
//!   LibTorch's global generator.
//! - `interrupt` (internal): SIGINT/SIGTERM stop a run at a safe point, with a checkpoint.
//! - `sinks` (internal): `metrics.jsonl` and TensorBoard event files.
//! - [`checkpoint`]: atomic safetensors checkpoints with exact resume.
//! - [`interop`]: what every export to another ecosystem shares (formats, a finished run read
//!   back, tensor renaming that fails on any unmapped name).
//! - [`embed`]: `ssl embed`: a run's encoder applied to a folder of inputs, the features
//!   written as safetensors with the list of inputs.
//! - [`files`]: input files below a folder, found one way by every reader.
//! - [`init`]: `--init-from`: a run started from weights trained elsewhere (one of our runs, or
//!   another tool's checkpoint converted by the modality), loaded strictly by name and shape.
//! - [`run`]: the one run pipeline every modality plugs into through [`run::Recipe`]: options
//!   resolved once into a validated plan, `config.json`, pretraining, evaluation, report.
//! - [`eval`]: the evaluation protocol (linear probe, kNN, fine-tuning, scratch and raw baselines,
//!   robustness, overfitting gap) and the report.
//!
//! It works on any [`tch::Device`] and knows nothing about datasets, file formats or modalities.
//!
//! ```
//! use ssl_core::losses::masked_cross_entropy;
//! use tch::{Device, Kind, Tensor};
//! let logits = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
//! let targets = Tensor::from_slice(&[0i64, 1, 2]);
//! let mask = Tensor::from_slice(&[true, true, false]);
//! let loss = masked_cross_entropy(&logits, &targets, &mask);
//! assert!((loss.double_value(&[]) - 4f64.ln()).abs() < 1e-6);
//! ```

pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod dist;
pub mod ema;
pub mod embed;
pub mod error;
pub mod eval;
pub mod files;
pub mod init;
pub mod interop;
pub(crate) mod interrupt;
pub mod kernels;
pub mod loader;
pub mod losses;
pub mod memory;
pub mod optim;
pub mod plots;
pub(crate) mod process;
pub mod profile;
pub(crate) mod progress;
pub mod rng;
pub mod run;
pub mod schedule;
pub(crate) mod sinks;
pub mod torch_error;
pub mod toy;
pub mod trainer;

pub use error::{CoreError, Result};
pub use tch;
