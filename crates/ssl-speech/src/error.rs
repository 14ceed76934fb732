//! The typed error of ssl-speech's public API.
use thiserror::Error;

/// Everything that can go wrong inside ssl-speech.
#[derive(Debug, Error)]
pub enum SpeechError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// A WAV file is truncated, corrupt or uses an encoding we do not read.
    #[error("{path}: {message}")]
    BadAudio { path: String, message: String },
    /// A folder holds no usable audio.
    #[error("no usable audio in {path}: {detail}")]
    NoAudio { path: String, detail: String },
    /// A labeled folder does not have the expected `train/<class>/` and `test/<class>/` layout.
    #[error("labeled data {path}: {message}")]
    Layout { path: String, message: String },
    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A LibTorch call failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The shared engine failed.
    #[error(transparent)]
    Core(#[from] ssl_core::CoreError),
}

/// Result alias for ssl-speech.
pub type Result<T> = std::result::Result<T, SpeechError>;

impl SpeechError {
    pub(crate) fn bad(path: &std::path::Path, message: impl Into<String>) -> Self {
        SpeechError::BadAudio { path: path.display().to_string(), message: message.into() }
    }
}
