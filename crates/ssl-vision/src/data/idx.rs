//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.
use super::ImageSet;
use crate::error::{Result, VisionError};
use std::io::Read;
use std::path::Path;

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| VisionError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| VisionError::format(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parse an IDX buffer of unsigned bytes: returns the dimensions and the data.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>)> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(VisionError::format(path, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(VisionError::format(path, format!("IDX element type {:#x} is not unsigned byte", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(VisionError::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap_or([0; 4])) as usize)
        .collect();
    // A lying header must not overflow (a panic) or ask for more than the file holds.
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| VisionError::format(path, format!("IDX dimensions {dims:?} overflow")))?;
    if bytes.len() - header < count {
        return Err(VisionError::format(
            path,
            format!("truncated IDX data: {} bytes for {count} expected", bytes.len() - header),
        ));
    }
    Ok((dims, bytes[header..header + count].to_vec()))
}

/// Read an images file (`[N, H, W]`) and, optionally, its labels file (`[N]`).
pub fn read_pair(images: &Path, labels: Option<&Path>) -> Result<ImageSet> {
    let (dims, pixels) = parse(images, &read_all(images)?)?;
    if dims.len() != 3 {
        return Err(VisionError::format(images, format!("expected 3 dimensions (N, H, W), found {dims:?}")));
    }
    let labels = match labels {
        Some(p) => {
            let (ldims, l) = parse(p, &read_all(p)?)?;
            if ldims != [dims[0]] {
                return Err(VisionError::format(
                    p,
                    format!("{} labels for {} images", ldims.first().unwrap_or(&0), dims[0]),
                ));
            }
            Some(l.into_iter().map(i64::from).collect())
        }
        None => None,
    };
    Ok(ImageSet {
        pixels,
        len: dims[0],
        channels: 1,
        height: dims[1],
        width: dims[2],
        labels,
        class_names: Vec::new(),
        skipped: Vec::new(),
    })
}
