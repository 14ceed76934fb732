//! STL-10 binary files (`*_X.bin`: 3 x 96 x 96 bytes per image, each channel stored column-major;
//! `*_y.bin`: labels 1..=10). Pretraining uses `unlabeled_X.bin`; evaluation `train_*`/`test_*`.
use super::ImageSet;
use crate::error::{Result, VisionError};
use std::path::Path;

const SIDE: usize = 96;
const RECORD: usize = 3 * SIDE * SIDE;

/// Read an images file and optionally its labels; at most `max` images (the unlabeled split has
/// 100,000 images, 2.7 GB).
pub fn read(images: &Path, labels: Option<&Path>, max: usize) -> Result<ImageSet> {
    use std::io::Read;
    let mut f = std::fs::File::open(images).map_err(|e| VisionError::io(images, e))?;
    let total = f.metadata().map_err(|e| VisionError::io(images, e))?.len() as usize;
    if total == 0 || !total.is_multiple_of(RECORD) {
        return Err(VisionError::format(
            images,
            format!("{total} bytes is not a whole number of {RECORD}-byte images"),
        ));
    }
    let n = (total / RECORD).min(max);
    let mut raw = vec![0u8; n * RECORD];
    f.read_exact(&mut raw).map_err(|e| VisionError::io(images, e))?;
    // Column-major planes -> row-major.
    let mut pixels = vec![0u8; raw.len()];
    for (src, dst) in raw.chunks_exact(SIDE * SIDE).zip(pixels.chunks_exact_mut(SIDE * SIDE)) {
        for x in 0..SIDE {
            for y in 0..SIDE {
                dst[y * SIDE + x] = src[x * SIDE + y];
            }
        }
    }
    let labels = match labels {
        Some(p) => {
            let l = std::fs::read(p).map_err(|e| VisionError::io(p, e))?;
            if l.len() < n || l.iter().take(n).any(|&v| !(1..=10).contains(&v)) {
                return Err(VisionError::format(p, "labels must be one byte 1..=10 per image"));
            }
            Some(l[..n].iter().map(|&v| i64::from(v) - 1).collect())
        }
        None => None,
    };
    Ok(ImageSet {
        pixels,
        len: n,
        channels: 3,
        height: SIDE,
        width: SIDE,
        labels,
        class_names: (0..10).map(|c| c.to_string()).collect(),
        skipped: Vec::new(),
    })
}
