//! The typed error of ssl-text's public API.
use thiserror::Error;

/// Everything that can go wrong inside ssl-text.
#[derive(Debug, Error)]
pub enum TextError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A file is not in the expected format (bad CSV/JSON, missing column, ...).
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// The corpus holds no usable text.
    #[error(
        "no text found in the corpus ({0}); give plain-text files, a folder of them, or JSONL with a `text` field"
    )]
    EmptyCorpus(String),
    /// Training, loading or applying the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A LibTorch call failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The shared engine (trainer, checkpoints, evaluation) failed.
    #[error(transparent)]
    Core(#[from] ssl_core::CoreError),
}

/// Result alias for ssl-text.
pub type Result<T> = std::result::Result<T, TextError>;

impl TextError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TextError::Io { path: path.as_ref().display().to_string(), source }
    }
    pub(crate) fn format(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        TextError::Format { path: path.as_ref().display().to_string(), message: message.into() }
    }
}
