//! CIFAR-10 / CIFAR-100 binary batches: records of label byte(s) then 3072 bytes (R, G, B planes).
use super::ImageSet;
use crate::error::{Result, VisionError};
use std::path::PathBuf;

/// Record layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 1 label byte.
    Cifar10,
    /// Coarse then fine label byte; the fine label is used.
    Cifar100Fine,
}

/// Read and concatenate batch files. A file whose size is not a whole number of records is an error.
pub fn read(files: &[PathBuf], layout: Layout) -> Result<ImageSet> {
    let label_bytes = match layout {
        Layout::Cifar10 => 1,
        Layout::Cifar100Fine => 2,
    };
    let record = label_bytes + 3072;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| VisionError::io(f, e))?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(VisionError::format(
                f,
                format!("{} bytes is not a whole number of {record}-byte records", bytes.len()),
            ));
        }
        for r in bytes.chunks_exact(record) {
            labels.push(i64::from(r[label_bytes - 1]));
            pixels.extend_from_slice(&r[label_bytes..]);
        }
    }
    let classes = if layout == Layout::Cifar10 { 10 } else { 100 };
    Ok(ImageSet {
        len: labels.len(),
        pixels,
        channels: 3,
        height: 32,
        width: 32,
        labels: Some(labels),
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        skipped: Vec::new(),
    })
}
