//! Developer and researcher commands for the workspace (`cargo xtask ...`).
//!
//! This crate never links LibTorch: it must build in seconds on a machine that has none yet.
//! It is also the only crate that touches the network (package installs and dataset downloads).

pub mod bench;
pub mod datasets;
pub mod libtorch;
pub mod spoken_words;
pub mod text_corpus;
