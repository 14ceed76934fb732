//! Developer and researcher commands for the workspace (`cargo xtask ...`).
//!
//! This crate never links LibTorch: it must build in seconds on a machine that has none yet.
//! It is also the only crate that touches the network (package installs and dataset downloads).

pub mod bench;
pub mod bench_dist;
pub mod bench_threads;
pub mod datasets;
pub mod docs;
pub mod libtorch;
pub mod minilm;
pub mod outside;
pub mod packages;
pub mod spoken_words;
pub mod text_corpus;

use std::process::{Command, Stdio};

/// Whether `program args...` starts and exits successfully (e.g. `npm --version`), output hidden.
pub(crate) fn tool_works(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}
