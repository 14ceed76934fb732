//! Dataset manifests: what a dataset is made of, where its files come from and how to check them.
//!
//! One JSON file per dataset lives in `datasets/manifests/` at the workspace root; the schema is
//! described in `datasets/manifests/README.md`. The built-in manifests are embedded into the
//! binary with `include_str!`, so `cargo xtask` works from any directory.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The modalities a dataset can belong to (one per modality crate).
pub const MODALITIES: &[&str] = &["vision", "text", "speech"];

/// The manifests shipped with the workspace, embedded at compile time.
const BUILTIN: &[(&str, &str)] = &[
    ("mnist.json", include_str!("../../../datasets/manifests/mnist.json")),
    ("fashion-mnist.json", include_str!("../../../datasets/manifests/fashion-mnist.json")),
    ("cifar-10.json", include_str!("../../../datasets/manifests/cifar-10.json")),
    ("cifar-100.json", include_str!("../../../datasets/manifests/cifar-100.json")),
    ("stl-10.json", include_str!("../../../datasets/manifests/stl-10.json")),
    ("wikitext-103-raw.json", include_str!("../../../datasets/manifests/wikitext-103-raw.json")),
    ("speech-commands-v2.json", include_str!("../../../datasets/manifests/speech-commands-v2.json")),
    ("librispeech-train-clean-100.json", include_str!("../../../datasets/manifests/librispeech-train-clean-100.json")),
];

/// File names of the embedded manifests (used by tests to check nothing on disk was forgotten).
pub fn builtin_manifest_files() -> Vec<&'static str> {
    BUILTIN.iter().map(|(file, _)| *file).collect()
}

/// How a downloaded file turns into files of the dataset directory.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Used as is: the file is moved into the dataset directory under its own name.
    #[serde(rename = "none")]
    None,
    /// A single gzip-compressed file: `x.gz` is decompressed to `x`.
    #[serde(rename = "gzip-single-file")]
    GzipSingleFile,
    /// A gzip-compressed tar archive, unpacked into the dataset directory.
    #[serde(rename = "tar.gz")]
    TarGz,
    /// A zip archive, unpacked into the dataset directory.
    #[serde(rename = "zip")]
    Zip,
}

impl ArchiveFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::None => "none",
            ArchiveFormat::GzipSingleFile => "gzip-single-file",
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        }
    }
}

/// Another exact byte encoding of the same file that is accepted too (for example a
/// distribution package that rewrote a gzip header but kept the payload).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Alternate {
    pub sha256: String,
    #[serde(default)]
    pub size: Option<u64>,
    /// Where this encoding comes from and how it was checked against the canonical file.
    pub source: String,
}

/// One downloadable file of a dataset.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name; also the name looked up in a mirror (directory or base URL).
    pub name: String,
    /// Canonical URLs, tried in order after the mirrors.
    pub urls: Vec<String>,
    /// Size in bytes, when known.
    #[serde(default)]
    pub size: Option<u64>,
    /// SHA-256 of the file (lower-case hex), `null` when no published value could be found.
    #[serde(default)]
    pub sha256: Option<String>,
    /// `true` only when the SHA-256 above is confirmed to be the publisher's file (published by
    /// the publisher, or computed from bytes that matched the publisher's own checksum).
    pub verified: bool,
    /// MD5 (lower-case hex), when the publisher gives one; always checked when present.
    #[serde(default)]
    pub md5: Option<String>,
    /// Where the checksums above come from.
    #[serde(default)]
    pub checksum_source: Option<String>,
    /// How to turn the file into dataset files.
    pub archive: ArchiveFormat,
    /// Other accepted encodings of the same content.
    #[serde(default)]
    pub alternates: Vec<Alternate>,
}

impl FileEntry {
    /// Whether at least one checksum (sha256, md5 or an alternate) pins this file.
    pub fn has_checksum(&self) -> bool {
        self.sha256.is_some() || self.md5.is_some()
    }
}

/// The on-disk layout of a dataset after extraction.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Directory (relative to the dataset directory) that the reader opens; `"."` for the top.
    pub root: String,
    /// Paths (relative to the dataset directory) that must exist after extraction.
    #[serde(default)]
    pub expect: Vec<String>,
}

/// One dataset: a manifest file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Short name used on the command line, e.g. `fashion-mnist`.
    pub name: String,
    /// `vision`, `text` or `speech`.
    pub modality: String,
    pub description: String,
    #[serde(default)]
    pub homepage: Option<String>,
    /// Reader in the modality crate that opens `layout.root`, e.g. `idx`, `cifar-binary`.
    pub reader: String,
    pub layout: Layout,
    pub files: Vec<FileEntry>,
    pub licence: String,
    pub citation: String,
}

impl Dataset {
    /// Parses and validates one manifest.
    pub fn from_json(text: &str) -> Result<Dataset> {
        let dataset: Dataset = serde_json::from_str(text).context("invalid dataset manifest")?;
        dataset.validate()?;
        Ok(dataset)
    }

    /// Total size in bytes, if every file's size is known.
    pub fn total_size(&self) -> Option<u64> {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Whether every file's SHA-256 is known and confirmed.
    pub fn all_verified(&self) -> bool {
        self.files.iter().all(|f| f.verified && f.sha256.is_some())
    }

    /// Checks the manifest for mistakes that would make downloads unsafe or ambiguous.
    pub fn validate(&self) -> Result<()> {
        let name = &self.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            bail!("dataset name {name:?} must be non-empty lower-case letters, digits and '-'");
        }
        if !MODALITIES.contains(&self.modality.as_str()) {
            bail!("dataset {name}: modality {:?} is not one of {}", self.modality, MODALITIES.join(", "));
        }
        if self.reader.trim().is_empty() {
            bail!("dataset {name}: empty reader");
        }
        if self.files.is_empty() {
            bail!("dataset {name}: no files");
        }
        check_relative(&self.layout.root, true).with_context(|| format!("dataset {name}: layout.root"))?;
        for path in &self.layout.expect {
            check_relative(path, false).with_context(|| format!("dataset {name}: layout.expect"))?;
        }
        let mut seen = BTreeSet::new();
        for file in &self.files {
            let fname = &file.name;
            if !seen.insert(fname.as_str()) {
                bail!("dataset {name}: file {fname} listed twice");
            }
            if fname.is_empty() || fname.starts_with('.') || fname.contains(['/', '\\']) || fname.ends_with(".part") {
                bail!("dataset {name}: file name {fname:?} must be a plain file name");
            }
            if file.urls.is_empty() {
                bail!("dataset {name}: file {fname} has no URL");
            }
            for url in &file.urls {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("dataset {name}: file {fname}: URL {url:?} must be http(s)");
                }
            }
            if let Some(sha) = &file.sha256 {
                check_hex(sha, 64).with_context(|| format!("dataset {name}: {fname}: sha256"))?;
            } else if file.verified {
                bail!("dataset {name}: file {fname} is marked verified but has no sha256");
            }
            if let Some(md5) = &file.md5 {
                check_hex(md5, 32).with_context(|| format!("dataset {name}: {fname}: md5"))?;
            }
            for alt in &file.alternates {
                check_hex(&alt.sha256, 64).with_context(|| format!("dataset {name}: {fname}: alternate sha256"))?;
            }
            if file.archive == ArchiveFormat::GzipSingleFile && gunzipped_name(fname).is_none() {
                bail!("dataset {name}: file {fname} is gzip-single-file but does not end in .gz");
            }
        }
        Ok(())
    }
}

/// `x.gz` -> `x` (for gzip-single-file entries).
pub fn gunzipped_name(name: &str) -> Option<&str> {
    name.strip_suffix(".gz").filter(|stem| !stem.is_empty())
}

fn check_hex(value: &str, len: usize) -> Result<()> {
    if value.len() != len || !value.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        bail!("{value:?} is not {len} lower-case hex digits");
    }
    Ok(())
}

/// A manifest path must stay inside the dataset directory.
fn check_relative(path: &str, allow_dot: bool) -> Result<()> {
    if path.is_empty() {
        bail!("empty path");
    }
    if path == "." && allow_dot {
        return Ok(());
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) => {}
            Component::CurDir if allow_dot => {}
            _ => bail!("path {path:?} must be relative, without '..'"),
        }
    }
    Ok(())
}

/// A set of dataset manifests.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    datasets: Vec<Dataset>,
}

impl Catalog {
    /// The manifests shipped in `datasets/manifests/` (embedded at compile time).
    pub fn builtin() -> Result<Catalog> {
        Catalog::from_json_strs(BUILTIN.iter().map(|(_, text)| *text))
            .with_context(|| "the built-in dataset manifests (datasets/manifests/*.json) are invalid".to_string())
    }

    /// Builds a catalog from manifest texts (one JSON document each).
    pub fn from_json_strs<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Catalog> {
        let datasets = texts.into_iter().map(Dataset::from_json).collect::<Result<Vec<_>>>()?;
        Catalog::from_datasets(datasets)
    }

    /// Builds a catalog from already parsed datasets (validated here).
    pub fn from_datasets(datasets: Vec<Dataset>) -> Result<Catalog> {
        let mut names = BTreeSet::new();
        for dataset in &datasets {
            dataset.validate()?;
            if !names.insert(dataset.name.clone()) {
                bail!("dataset {} is defined twice", dataset.name);
            }
        }
        Ok(Catalog { datasets })
    }

    /// Reads every `*.json` manifest of a directory.
    pub fn from_dir(dir: &Path) -> Result<Catalog> {
        let mut paths = std::fs::read_dir(dir)
            .with_context(|| format!("reading manifest directory {}", dir.display()))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
        paths.sort();
        let mut datasets = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            datasets.push(Dataset::from_json(&text).with_context(|| format!("in {}", path.display()))?);
        }
        Catalog::from_datasets(datasets)
    }

    pub fn datasets(&self) -> &[Dataset] {
        &self.datasets
    }

    pub fn get(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.datasets.iter().map(|d| d.name.as_str()).collect()
    }

    /// Looks a dataset up, with an error listing the known names.
    pub fn find(&self, name: &str) -> Result<&Dataset> {
        self.get(name).with_context(|| {
            format!(
                "unknown dataset {name:?}; known datasets: {} (see `cargo xtask datasets`)",
                self.names().join(", ")
            )
        })
    }
}
