//! Arbitrary bytes into every image reader: a clear error or a counted skip, never a panic, and no
//! allocation beyond what the bytes justify (a lying header is refused). A fixed case budget keeps
//! this inside the test command.
use proptest::prelude::*;
use ssl_vision::data::{self, cifar, idx};

fn peak_rss_mib() -> u64 {
    ssl_core::bench::peak_rss_bytes() / (1 << 20)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn idx_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..256), dims in 0u8..5) {
        // Half the cases get a valid magic number, so the dimension parsing is reached.
        if bytes.len() >= 4 && dims > 0 {
            bytes[0] = 0;
            bytes[1] = 0;
            bytes[2] = 8;
            bytes[3] = dims;
        }
        let _ = idx::parse(std::path::Path::new("fuzz.idx"), &bytes);
    }

    #[test]
    fn cifar_and_image_folders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), ext in "png|jpg|bmp|bin") {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(format!("x.{ext}"));
        std::fs::write(&f, &bytes).unwrap();
        let _ = cifar::read(std::slice::from_ref(&f), cifar::Layout::Cifar10);
        match data::open(d.path(), 8) {
            Ok(o) => prop_assert!(o.train.len + o.train.skipped.len() >= 1),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn lying_headers_are_refused_without_allocating() {
    let before = peak_rss_mib();
    // IDX: 2^32-1 images of 2^32-1 x 2^32-1 pixels in a 16-byte file.
    let mut bytes = vec![0u8, 0, 8, 3];
    bytes.extend([0xFFu8; 12]);
    let e = idx::parse(std::path::Path::new("bomb.idx"), &bytes).unwrap_err().to_string();
    assert!(e.contains("bomb.idx"), "{e}");
    // PNG whose header claims 100000 x 100000 RGBA pixels (40 GB decoded) in a few bytes.
    let d = tempfile::tempdir().unwrap();
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 6, 0, 0, 0]);
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    std::fs::write(d.path().join("bomb.png"), &png).unwrap();
    std::fs::write(d.path().join("also.png"), &png).unwrap();
    match data::open(d.path(), 8) {
        Ok(o) => panic!("{} images decoded from two bombs", o.train.len),
        Err(e) => assert!(e.to_string().contains("no readable images"), "{e}"),
    }
    let grown = peak_rss_mib().saturating_sub(before);
    assert!(grown < 512, "peak memory grew by {grown} MiB reading two decompression bombs");
}

/// CRC-32 (IEEE) of a PNG chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}
