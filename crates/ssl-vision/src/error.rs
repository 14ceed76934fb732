//! The typed error of ssl-vision.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VisionError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("no readable images in {path} ({skipped} files skipped)")]
    NoImages { path: String, skipped: usize },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Core(#[from] ssl_core::CoreError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, VisionError>;

impl VisionError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        VisionError::Io { path: path.display().to_string(), source }
    }
    pub(crate) fn format(path: &std::path::Path, message: impl Into<String>) -> Self {
        VisionError::Format { path: path.display().to_string(), message: message.into() }
    }
}
