//! Image folders (PNG, JPEG via the `image` crate): class subfolders mean labeled, a flat folder
//! means unlabeled. Unreadable files are skipped with a warning naming them, and counted.
use super::ImageSet;
use crate::error::{Result, VisionError};
use rayon::prelude::*;
use ssl_records::skipped::Skipped;
use std::path::{Path, PathBuf};

/// The image file extensions read (lower case).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp"];

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VisionError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The class subfolders, in name order; hidden ones (`.git`, `.ipynb_checkpoints`) are not classes.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VisionError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Pixels of one file, or why it could not be decoded.
type Decoded = std::result::Result<Vec<u8>, Skipped>;

/// Decode one file to `size x size`, grey if `channels == 1`, else RGB.
fn decode(path: &Path, size: usize, channels: usize) -> Decoded {
    let img = image::open(path).map_err(|e| Skipped::file(path.display().to_string(), e.to_string()))?;
    let img = img.resize_exact(size as u32, size as u32, image::imageops::FilterType::Triangle);
    if channels == 1 {
        Ok(img.to_luma8().into_raw())
    } else {
        // HWC -> CHW
        let rgb = img.to_rgb8().into_raw();
        let n = size * size;
        let mut out = vec![0u8; 3 * n];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * n + i] = px[c];
            }
        }
        Ok(out)
    }
}

fn detect_channels(files: &[PathBuf]) -> usize {
    files.iter().find_map(|p| image::open(p).ok()).map(|img| if img.color().has_color() { 3 } else { 1 }).unwrap_or(3)
}

fn assemble(
    path: &Path,
    files: Vec<(PathBuf, Option<i64>)>,
    size: usize,
    class_names: Vec<String>,
) -> Result<ImageSet> {
    let all: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let (kept, mut set, skipped) = read_files(&all, size, detect_channels(&all));
    if kept.is_empty() {
        return Err(VisionError::NoImages { path: path.display().to_string(), skipped: skipped.len() });
    }
    let labeled = !class_names.is_empty();
    set.labels = labeled.then(|| kept.iter().map(|&i| files[i].1.unwrap_or(-1)).collect());
    set.class_names = class_names;
    set.skipped = skipped;
    Ok(set)
}

/// Decode `files` to `channels x size x size` in parallel, as every image folder is decoded: the
/// indices in `files` of the images decoded, those images in that order, and the files that
/// could not be decoded (each named in a warning). `ssl embed` reads its inputs with this.
pub fn read_files(files: &[PathBuf], size: usize, channels: usize) -> (Vec<usize>, ImageSet, Vec<Skipped>) {
    let decoded: Vec<Decoded> = files.par_iter().map(|p| decode(p, size, channels)).collect();
    let (mut kept, mut pixels, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in decoded.into_iter().enumerate() {
        match r {
            Ok(px) => {
                pixels.extend_from_slice(&px);
                kept.push(i);
            }
            Err(e) => {
                eprintln!("warning: skipped unreadable image {e}");
                skipped.push(e);
            }
        }
    }
    let set = ImageSet {
        len: kept.len(),
        pixels,
        channels,
        height: size,
        width: size,
        labels: None,
        class_names: Vec::new(),
        skipped: Vec::new(),
    };
    (kept, set, skipped)
}

/// Read a folder: class subfolders (labeled, classes in name order) or a flat folder (unlabeled).
pub fn read(dir: &Path, size: usize) -> Result<ImageSet> {
    let classes = class_dirs(dir)?;
    if classes.is_empty() {
        let files = image_files(dir)?.into_iter().map(|p| (p, None)).collect();
        return assemble(dir, files, size, Vec::new());
    }
    let names: Vec<String> =
        classes.iter().map(|c| c.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    read_with_classes(dir, size, &names)
}

/// Read a folder of class subfolders with a given class order (so test labels match train labels).
/// The images are interleaved class by class (the first of each class, then the second of each,
/// ...), so any prefix of the set, such as the first `--max-test` test images, holds every class
/// in its proportion rather than only the first classes.
pub fn read_with_classes(dir: &Path, size: usize, names: &[String]) -> Result<ImageSet> {
    let mut per_class = Vec::new();
    for name in names {
        let sub = dir.join(name);
        per_class.push(if sub.is_dir() { image_files(&sub)? } else { Vec::new() });
    }
    let longest = per_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut files = Vec::new();
    for j in 0..longest {
        for (i, list) in per_class.iter().enumerate() {
            if let Some(p) = list.get(j) {
                files.push((p.clone(), Some(i as i64)));
            }
        }
    }
    assemble(dir, files, size, names.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_interleaved_and_hidden_folders_are_not_classes() {
        let d = tempfile::tempdir().unwrap();
        for (class, n) in [("a", 3), ("b", 1), (".hidden", 2)] {
            std::fs::create_dir_all(d.path().join(class)).unwrap();
            for i in 0..n {
                image::GrayImage::from_pixel(4, 4, image::Luma([i as u8 * 50]))
                    .save(d.path().join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let set = read(d.path(), 4).unwrap();
        assert_eq!(set.class_names, ["a", "b"]);
        assert_eq!(set.labels.unwrap(), [0, 1, 0, 0]);
    }
}
