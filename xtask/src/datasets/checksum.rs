//! SHA-256 / MD5 hashing while streaming, and comparing the result with a manifest entry.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::FileEntry;

/// Hashes bytes as they are streamed (SHA-256 and MD5 at once).
#[derive(Clone, Default)]
pub struct StreamHasher {
    sha256: Sha256,
    md5: Md5,
    len: u64,
}

impl StreamHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.md5.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Feeds a whole reader (e.g. the already downloaded prefix of a `.part` file).
    pub fn update_from(&mut self, reader: &mut impl Read) -> io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.update(&buf[..n]);
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digests {
        Digests { sha256: hex(&self.sha256.finalize()), md5: hex(&self.md5.finalize()), size: self.len }
    }
}

/// The checksums of a file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
    pub size: u64,
}

/// Hashes a whole file.
pub fn hash_file(path: &Path) -> io::Result<Digests> {
    let mut hasher = StreamHasher::new();
    hasher.update_from(&mut File::open(path)?)?;
    Ok(hasher.finish())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// How a file matched its manifest entry.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Match {
    /// Matched the manifest's sha256 (and md5 when given).
    Canonical,
    /// Matched only the manifest's md5 (no sha256 known).
    Md5Only,
    /// Matched an accepted alternate encoding.
    Alternate,
    /// The manifest has no checksum for this file: nothing could be checked.
    Unchecked,
}

/// Compares actual digests with a manifest entry. The error text names expected and actual values.
pub fn check(entry: &FileEntry, actual: &Digests) -> Result<Match, String> {
    if entry
        .alternates
        .iter()
        .any(|alt| alt.sha256 == actual.sha256 && (alt.size.is_none() || alt.size == Some(actual.size)))
    {
        return Ok(Match::Alternate);
    }
    let size_ok = entry.size.is_none() || entry.size == Some(actual.size);
    let sha_ok = entry.sha256.is_none() || entry.sha256.as_deref() == Some(actual.sha256.as_str());
    let md5_ok = entry.md5.is_none() || entry.md5.as_deref() == Some(actual.md5.as_str());
    if size_ok && sha_ok && md5_ok {
        return Ok(match (&entry.sha256, &entry.md5) {
            (Some(_), _) => Match::Canonical,
            (None, Some(_)) => Match::Md5Only,
            (None, None) => Match::Unchecked,
        });
    }
    let mut expected = Vec::new();
    if let Some(sha) = &entry.sha256 {
        expected.push(format!("sha256 {sha}"));
    }
    if let Some(md5) = &entry.md5 {
        expected.push(format!("md5 {md5}"));
    }
    if let Some(size) = entry.size {
        expected.push(format!("{size} bytes"));
    }
    Err(format!(
        "checksum mismatch for {}: expected {}; got sha256 {}, md5 {}, {} bytes",
        entry.name,
        expected.join(", "),
        actual.sha256,
        actual.md5,
        actual.size
    ))
}
