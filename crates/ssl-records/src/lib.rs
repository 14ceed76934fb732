//! # ssl-records
//!
//! The records a run writes, as plain serde types, in a crate that does not link LibTorch, so that
//! `xtask` and other tools read them with the same types the `ssl` binary writes them with.
//!
//! - [`run`]: the one `config.json` schema ([`run::RunRecord`]) and the machine and versions a run
//!   used.
//! - [`skipped`]: the one record of an input that was skipped as unreadable ([`skipped::Skipped`]).
//! - [`summary`]: the typed pretraining summary of `report.json`.
//! - [`mod@bench`]: the JSON of `cargo xtask bench`: what `ssl bench` measured (`<name>_ours.json`),
//!   what a PyTorch reference under `bench/` printed, and the `bench.json` report.
//! - [`tensorboard`]: TensorBoard event files ([`tensorboard::EventWriter`]) that
//!   `tensorboard --logdir` shows and `wandb sync` imports, and a checking reader
//!   ([`tensorboard::read_scalars`]).
//! - [`test_python`]: how tests find the test Python (`SSL_PYTHON`) and run a check script in it.
//! - [`doc_commands`]: the `ssl ...` and `cargo xtask ...` commands the README and the docs show,
//!   for the tests that parse them with the commands' own parsers.
//!
//! ```
//! use ssl_records::skipped::{Skipped, SkippedInputs};
//! let mut s = SkippedInputs::default();
//! s.push(Skipped::line("corpus.txt", 3, "invalid UTF-8"));
//! assert_eq!(s.count, 1);
//! assert_eq!(s.items[0].to_string(), "corpus.txt:3: invalid UTF-8");
//! ```

pub mod bench;
pub mod doc_commands;
pub mod run;
pub mod skipped;
pub mod summary;
pub mod tensorboard;
pub mod test_python;
