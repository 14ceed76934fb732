//! The typed error of ssl-core's public API.
use thiserror::Error;

/// Everything that can go wrong inside ssl-core.
#[derive(Debug, Error)]
pub enum CoreError {
    /// A LibTorch call failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A call into the C++ kernel layer failed.
    #[error("kernel `{kernel}` failed: {message}")]
    Kernel { kernel: &'static str, message: String },
    /// Reading or writing a run directory or a checkpoint failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// JSON (de)serialisation of a checkpoint state or report failed.
    #[error("{path}: {source}")]
    Json { path: String, source: serde_json::Error },
    /// A checkpoint does not fit the model or configuration it is loaded into.
    #[error("cannot write checkpoint {path}: {message}; the earlier checkpoints are intact: free space, then continue with --resume")]
    CheckpointWrite { path: String, message: String },

    #[error("checkpoint mismatch: {0}")]
    CheckpointMismatch(String),
    /// No checkpoint to resume from.
    #[error("no checkpoint found in {0}")]
    NoCheckpoint(String),
    /// Too many non-finite losses or gradients in a row.
    #[error("training diverged: {count} non-finite steps in a row (last at step {step}); lower the learning rate or check the input data")]
    Diverged { count: u32, step: u64 },
    /// SIGINT or SIGTERM stopped the run at a safe point.
    #[error("interrupted at step {step}: checkpoint {checkpoint} saved; continue with --out {run_dir} --resume")]
    Interrupted { step: u64, checkpoint: String, run_dir: String },
    /// SIGINT or SIGTERM stopped the evaluation (nothing to resume: run --eval-only again).
    #[error("interrupted during the evaluation; the pretrained run is complete: evaluate it again with --eval-only --checkpoint RUN_DIR")]
    InterruptedEvaluation,
    /// The data loader failed.
    #[error("data loader: {0}")]
    Loader(String),
    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A collective or the rendezvous of a data-parallel run failed: a peer died, hung past the
    /// timeout, or could not be reached.
    #[error("rank {rank}/{size}: {what} failed: {message} (a peer process died, hung past --dist-timeout, or cannot be reached; the last checkpoint is intact: continue with --resume)")]
    Distributed { rank: usize, size: usize, what: String, message: String },
    /// A worker started by `--nproc-per-node` failed.
    #[error("worker rank {rank}/{size} {what}; the others were stopped (the last checkpoint is intact: continue with --resume)")]
    WorkerFailed { rank: usize, size: usize, what: String },
    /// SIGINT or SIGTERM stopped the workers of `--nproc-per-node` (each saved its place).
    #[error("interrupted: the workers stopped at a step with a checkpoint; continue with the same command plus --out RUN_DIR --resume")]
    WorkersInterrupted,
    /// An allocation did not fit during a training step. `saved` says where the last good state
    /// went; `advice` how to go on.
    #[error("out of memory at step {step} (--batch-size {batch_size} per process): {message}; {saved}. {advice}")]
    OutOfMemory { step: u64, batch_size: usize, message: String, saved: String, advice: String },
    /// LibTorch raised an error inside a training step (a shape the config allows but the model
    /// cannot take, a failed kernel).
    #[error("step {step} failed in LibTorch (--batch-size {batch_size} per process): {message}; {saved}")]
    StepFailed { step: u64, batch_size: usize, message: String, saved: String },
    /// The plan's measured memory estimate exceeds the budget (checked before the first step).
    #[error("the plan will not fit in memory: at --batch-size {batch_size} pretraining needs about {estimate}, and the budget is {budget}; {suggestion} (or --no-memory-check to try anyway)")]
    WontFit { batch_size: usize, estimate: String, budget: String, suggestion: String },
    /// LibTorch raised an error outside a training step (evaluation, export, embedding).
    #[error("{what} failed: {message}")]
    TorchFailed { what: String, message: String },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot { path: String, message: String },
}

/// Result alias for ssl-core.
pub type Result<T> = std::result::Result<T, CoreError>;

impl CoreError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        CoreError::Io { path: path.as_ref().display().to_string(), source }
    }
    pub(crate) fn json(path: impl AsRef<std::path::Path>, source: serde_json::Error) -> Self {
        CoreError::Json { path: path.as_ref().display().to_string(), source }
    }
}
