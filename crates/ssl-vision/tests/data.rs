//! Readers: IDX and CIFAR records, image folders, and bad input.
use ssl_vision::data::{self, cifar, idx};
use std::io::Write;

fn write_idx(path: &std::path::Path, dims: &[u32], data: &[u8], gzip: bool) {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gzip {
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn the_embedded_fashion_mnist_slice_opens_with_labels_and_a_test_split() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist-slice");
    let o = data::open(&root, 28).unwrap();
    assert_eq!((o.train.len, o.train.channels, o.train.height), (8000, 1, 28));
    assert_eq!(o.test.as_ref().unwrap().len, 2000);
    assert_eq!(o.train.num_classes(), 10);
}

#[test]
fn idx_raw_and_gzip_read_the_same_and_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 4 * 4).map(|i| i as u8).collect();
    write_idx(&dir.path().join("a"), &[2, 4, 4], &pixels, false);
    write_idx(&dir.path().join("b.gz"), &[2, 4, 4], &pixels, true);
    write_idx(&dir.path().join("labels"), &[2], &[3, 7], false);
    let a = idx::read_pair(&dir.path().join("a"), Some(&dir.path().join("labels"))).unwrap();
    let b = idx::read_pair(&dir.path().join("b.gz"), None).unwrap();
    assert_eq!(a.pixels, b.pixels);
    assert_eq!(a.labels, Some(vec![3, 7]));
    write_idx(&dir.path().join("short"), &[3, 4, 4], &pixels, false);
    let err = idx::read_pair(&dir.path().join("short"), None).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains("short"), "{err}");
    std::fs::write(dir.path().join("junk"), b"not an idx file").unwrap();
    assert!(idx::read_pair(&dir.path().join("junk"), None).is_err());
}

#[test]
fn cifar_records_split_labels_and_planes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = vec![7u8];
    rec.extend((0..3072).map(|i| (i / 1024) as u8)); // R plane 0, G plane 1, B plane 2
    std::fs::write(dir.path().join("data_batch_1.bin"), &rec).unwrap();
    let set = cifar::read(&[dir.path().join("data_batch_1.bin")], cifar::Layout::Cifar10).unwrap();
    assert_eq!(set.labels, Some(vec![7]));
    assert_eq!((set.image(0)[0], set.image(0)[1024], set.image(0)[2048]), (0, 1, 2));
    std::fs::write(dir.path().join("bad.bin"), &rec[..100]).unwrap();
    assert!(cifar::read(&[dir.path().join("bad.bin")], cifar::Layout::Cifar10).is_err());
}

#[test]
fn image_folders_skip_corrupt_files_and_count_them() {
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("cat", 2), ("dog", 3)] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..n {
            image::RgbImage::from_pixel(10, 12, image::Rgb([i * 40, 0, 200]))
                .save(dir.path().join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("dog/broken.png"), b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let set = data::folder::read(dir.path(), 8).unwrap();
    assert_eq!(set.len, 5);
    assert_eq!((set.channels, set.height, set.width), (3, 8, 8));
    assert_eq!(set.labels.as_ref().unwrap().iter().filter(|&&l| l == 1).count(), 3);
    assert_eq!(set.skipped.len(), 1);
    assert!(set.skipped[0].path.ends_with("broken.png"), "{}", set.skipped[0]);
    // A flat folder is unlabeled; a folder with nothing readable is a clear error.
    let flat = tempfile::tempdir().unwrap();
    std::fs::write(flat.path().join("x.png"), b"nope").unwrap();
    let err = data::folder::read(flat.path(), 8).unwrap_err().to_string();
    assert!(err.contains("no readable images"), "{err}");
}
