//! Image data: IDX (MNIST, Fashion-MNIST), CIFAR binary batches and image folders, all decoded
//! into one [`ImageSet`] of `u8` pixels at a fixed size.
pub mod augment;
pub mod batch;
pub mod source;

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod stl10;

use crate::error::{Result, VisionError};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Decoded images, `N x C x H x W` bytes, with optional labels.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub len: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub labels: Option<Vec<i64>>,
    pub class_names: Vec<String>,
    /// Files (or records) skipped because they could not be decoded, with the reason.
    pub skipped: Vec<ssl_records::skipped::Skipped>,
}

impl ImageSet {
    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.channels * self.height * self.width;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Number of classes (0 when unlabeled).
    pub fn num_classes(&self) -> i64 {
        match &self.labels {
            Some(l) if !self.class_names.is_empty() => self.class_names.len() as i64,
            Some(l) => l.iter().copied().max().map_or(0, |m| m + 1),
            None => 0,
        }
    }

    /// All images as a float tensor in `[0, 1]`, `[N, C, H, W]`, on the CPU.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.pixels)
            .view([self.len as i64, self.channels as i64, self.height as i64, self.width as i64])
            .to_kind(Kind::Float)
            / 255.0
    }

    /// The first `n` images.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len {
            self.len = n;
            self.pixels.truncate(n * self.channels * self.height * self.width);
            if let Some(l) = &mut self.labels {
                l.truncate(n);
            }
        }
    }

    /// Resize every image to `size x size` (bilinear) if it is not already; 0 keeps the size.
    pub fn resized(self, size: usize) -> ImageSet {
        if size == 0 || (self.height == size && self.width == size) {
            return self;
        }
        let t = Tensor::from_slice(&self.pixels)
            .view([self.len as i64, self.channels as i64, self.height as i64, self.width as i64])
            .to_kind(Kind::Float)
            .upsample_bilinear2d([size as i64, size as i64], false, None, None)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .to_device(Device::Cpu);
        let pixels = Vec::<u8>::try_from(&t.flatten(0, -1)).unwrap_or_default();
        ImageSet { pixels, height: size, width: size, ..self }
    }
}

/// A labeled train/test pair, or unlabeled images only.
pub struct Opened {
    pub train: ImageSet,
    pub test: Option<ImageSet>,
    /// A separate labeled train/test pair when the pretraining split is unlabeled (STL-10).
    pub labeled: Option<(ImageSet, ImageSet)>,
    /// Which reader opened it.
    pub format: &'static str,
}

fn exists_any(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Open a dataset folder or file, detecting its format: an IDX pair folder (`train-images-idx3-ubyte[.gz]`
/// plus labels, optional `t10k-*` test files), CIFAR-10 (`data_batch_*.bin`, `test_batch.bin`),
/// CIFAR-100 (`train.bin`, `test.bin`), a folder with `train/` and `test/` class folders, a folder of
/// class folders (labeled) or a flat folder of images (unlabeled). Images are resized to `size`;
/// 0 keeps the native size of fixed-size formats (image folders then default to 32 px).
pub fn open(path: &Path, size: usize) -> Result<Opened> {
    if !path.exists() {
        return Err(VisionError::Invalid(format!("{} does not exist", path.display())));
    }
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let with_gz = |base: &str| [base.to_owned(), format!("{base}.gz")];
    let find = |base: &str| {
        let names = with_gz(base);
        exists_any(&dir, &[names[0].as_str(), names[1].as_str()])
    };
    if let Some(images) = find("train-images-idx3-ubyte") {
        let train = idx::read_pair(&images, find("train-labels-idx1-ubyte").as_deref())?.resized(size);
        let test = match find("t10k-images-idx3-ubyte") {
            Some(t) => Some(idx::read_pair(&t, find("t10k-labels-idx1-ubyte").as_deref())?.resized(size)),
            None => None,
        };
        return Ok(Opened { train, test, labeled: None, format: "idx" });
    }
    let batches: Vec<PathBuf> =
        (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).filter(|p| p.is_file()).collect();
    if !batches.is_empty() {
        let train = cifar::read(&batches, cifar::Layout::Cifar10)?.resized(size);
        let test =
            exists_any(&dir, &["test_batch.bin"]).map(|t| cifar::read(&[t], cifar::Layout::Cifar10)).transpose()?;
        return Ok(Opened { train, test: test.map(|t| t.resized(size)), labeled: None, format: "cifar-binary" });
    }
    if let Some(train) = exists_any(&dir, &["train.bin"]) {
        let train = cifar::read(&[train], cifar::Layout::Cifar100Fine)?.resized(size);
        let test =
            exists_any(&dir, &["test.bin"]).map(|t| cifar::read(&[t], cifar::Layout::Cifar100Fine)).transpose()?;
        return Ok(Opened { train, test: test.map(|t| t.resized(size)), labeled: None, format: "cifar-binary" });
    }
    if let Some(unlabeled) = exists_any(&dir, &["unlabeled_X.bin"]) {
        // STL-10: pretrain on (up to 20,000 of) the unlabeled split, evaluate on train/test.
        let pretrain = stl10::read(&unlabeled, None, 20_000)?.resized(size);
        let (train, test) = (dir.join("train_X.bin"), dir.join("test_X.bin"));
        let test = if train.is_file() && test.is_file() {
            let tr = stl10::read(&train, Some(&dir.join("train_y.bin")), usize::MAX)?.resized(size);
            let te = stl10::read(&test, Some(&dir.join("test_y.bin")), usize::MAX)?.resized(size);
            Some((tr, te))
        } else {
            None
        };
        return Ok(Opened { train: pretrain, test: None, labeled: test, format: "stl10-binary" });
    }
    if path.is_file() {
        if let Ok(set) = idx::read_pair(path, None) {
            return Ok(Opened { train: set.resized(size), test: None, labeled: None, format: "idx" });
        }
    }
    let size = if size == 0 { 32 } else { size };
    if dir.join("train").is_dir() && dir.join("test").is_dir() {
        let train = folder::read(&dir.join("train"), size)?;
        let test = folder::read_with_classes(&dir.join("test"), size, &train.class_names)?;
        return Ok(Opened { train, test: Some(test), labeled: None, format: "image-folder" });
    }
    Ok(Opened { train: folder::read(&dir, size)?, test: None, labeled: None, format: "image-folder" })
}
