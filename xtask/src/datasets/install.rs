//! Putting a whole dataset on disk: fetch every file (mirrors first), verify, extract into a
//! staging directory, write the `.verified.json` marker and rename the staging directory into
//! place. A dataset directory therefore either does not exist or is complete.
//!
//! Layout under the data root:
//!
//! ```text
//! <data root>/<name>/                  the dataset (what readers open), with .verified.json
//! <data root>/.downloads/<name>/       downloaded files; <file>.part while in flight
//! <data root>/.<name>.staging-<pid>/   extraction in progress (removed on failure)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::checksum::{self, hash_file, Digests, Match};
use super::download::{Fetcher, Mirror, RetryPolicy, Source};
use super::extract::extract_archive;
use super::manifest::{Dataset, FileEntry};

/// Name of the marker written into a dataset directory after a successful install.
pub const MARKER: &str = ".verified.json";

/// What the marker records about one file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MarkerFile {
    pub name: String,
    pub sha256: String,
    pub md5: String,
    pub size: u64,
    /// How the file matched its manifest entry.
    pub matched: Match,
    /// Whether the manifest's sha256 for this file is confirmed (`verified: true`).
    pub sha256_verified: bool,
    /// Where the file was taken from.
    pub source: String,
}

/// The `.verified.json` marker.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub dataset: String,
    pub files: Vec<MarkerFile>,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

/// The state of a dataset under a data root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No dataset directory.
    Missing,
    /// A directory exists but has no valid marker, or does not match the manifest.
    Incomplete(String),
    /// Installed; `verified` is true when every file matched a confirmed checksum.
    Present { verified: bool },
}

impl Status {
    pub fn is_present(&self) -> bool {
        matches!(self, Status::Present { .. })
    }

    /// Short text for tables.
    pub fn describe(&self) -> String {
        match self {
            Status::Missing => "missing".to_string(),
            Status::Incomplete(why) => format!("incomplete ({why})"),
            Status::Present { verified: true } => "present, verified".to_string(),
            Status::Present { verified: false } => "present, unverified sha256".to_string(),
        }
    }
}

/// Downloads and installs datasets under one data root.
pub struct Installer {
    pub data_root: PathBuf,
    pub mirrors: Vec<Mirror>,
    /// Re-download and re-extract even when the dataset is present.
    pub force: bool,
    /// Most bytes one archive may expand to.
    pub max_extracted_bytes: u64,
    fetcher: Fetcher,
}

impl Installer {
    pub fn new(data_root: impl Into<PathBuf>, mirrors: Vec<Mirror>) -> Self {
        Installer::with_policy(data_root, mirrors, RetryPolicy::default(), true)
    }

    /// `progress`: draw progress bars when stderr is a terminal.
    pub fn with_policy(
        data_root: impl Into<PathBuf>,
        mirrors: Vec<Mirror>,
        retry: RetryPolicy,
        progress: bool,
    ) -> Self {
        Installer {
            data_root: data_root.into(),
            mirrors,
            force: false,
            max_extracted_bytes: super::extract::DEFAULT_MAX_EXTRACTED_BYTES,
            fetcher: Fetcher::new(retry, progress),
        }
    }

    /// `<data root>/<name>`: the dataset directory.
    pub fn dataset_dir(&self, dataset: &Dataset) -> PathBuf {
        self.data_root.join(&dataset.name)
    }

    /// The directory the dataset's reader opens (`layout.root` inside the dataset directory).
    pub fn reader_path(&self, dataset: &Dataset) -> PathBuf {
        let dir = self.dataset_dir(dataset);
        if dataset.layout.root == "." {
            dir
        } else {
            dir.join(&dataset.layout.root)
        }
    }

    /// `<data root>/.downloads/<name>`: where files are downloaded before extraction.
    pub fn download_dir(&self, dataset: &Dataset) -> PathBuf {
        self.data_root.join(".downloads").join(&dataset.name)
    }

    /// Reads the marker and checks it against the manifest (no re-hashing of extracted files).
    pub fn status(&self, dataset: &Dataset) -> Status {
        let dir = self.dataset_dir(dataset);
        if !dir.exists() {
            return Status::Missing;
        }
        let marker: Marker =
            match fs::read_to_string(dir.join(MARKER)).ok().and_then(|text| serde_json::from_str(&text).ok()) {
                Some(marker) => marker,
                None => return Status::Incomplete(format!("no valid {MARKER}")),
            };
        if marker.dataset != dataset.name || marker.files.len() != dataset.files.len() {
            return Status::Incomplete("marker does not match the manifest".to_string());
        }
        let mut verified = true;
        for entry in &dataset.files {
            let Some(recorded) = marker.files.iter().find(|f| f.name == entry.name) else {
                return Status::Incomplete(format!("{} not recorded in {MARKER}", entry.name));
            };
            let digests = Digests { sha256: recorded.sha256.clone(), md5: recorded.md5.clone(), size: recorded.size };
            match checksum::check(entry, &digests) {
                Ok(Match::Canonical) => verified &= entry.verified,
                Ok(Match::Alternate) => {}
                Ok(Match::Md5Only | Match::Unchecked) => verified = false,
                Err(_) => return Status::Incomplete(format!("{} does not match the manifest's checksums", entry.name)),
            }
        }
        for expected in &dataset.layout.expect {
            if !dir.join(expected).exists() {
                return Status::Incomplete(format!("{expected} is missing"));
            }
        }
        Status::Present { verified }
    }

    /// Makes sure the dataset is present and verified, downloading what is missing.
    /// Returns the dataset directory.
    pub fn install(&self, dataset: &Dataset) -> Result<PathBuf> {
        let final_dir = self.dataset_dir(dataset);
        if !self.force {
            if let status @ Status::Present { .. } = self.status(dataset) {
                eprintln!("{}: {} in {}", dataset.name, status.describe(), final_dir.display());
                return Ok(final_dir);
            }
        }
        fs::create_dir_all(&self.data_root)
            .with_context(|| format!("creating data root {}", self.data_root.display()))?;

        let mut fetched = Vec::new();
        for entry in &dataset.files {
            match self.fetch_file(dataset, entry) {
                Ok(done) => fetched.push(done),
                Err(err) => {
                    // Keep .part files (for resuming) but no empty directories.
                    let _ = fs::remove_dir(self.download_dir(dataset));
                    let _ = fs::remove_dir(self.data_root.join(".downloads"));
                    return Err(err);
                }
            }
        }

        let staging = self.data_root.join(format!(".{}.staging-{}", dataset.name, std::process::id()));
        remove_any(&staging)?;
        fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
        let result = self.extract_all(dataset, &fetched, &staging);
        if let Err(err) = result {
            let _ = remove_any(&staging);
            return Err(err);
        }

        // Swap into place: an old directory (forced reinstall, stale files) is moved aside first.
        if final_dir.exists() || fs::symlink_metadata(&final_dir).is_ok() {
            let old = self.data_root.join(format!(".{}.old-{}", dataset.name, std::process::id()));
            remove_any(&old)?;
            fs::rename(&final_dir, &old).with_context(|| format!("moving old {} aside", final_dir.display()))?;
            remove_any(&old)?;
        }
        fs::rename(&staging, &final_dir)
            .with_context(|| format!("renaming {} to {}", staging.display(), final_dir.display()))?;

        // The downloads are now extracted (or were moved); drop what is left of them.
        for done in &fetched {
            let _ = fs::remove_file(&done.path);
        }
        let _ = fs::remove_dir(self.download_dir(dataset));
        let _ = fs::remove_dir(self.data_root.join(".downloads"));

        let status = self.status(dataset);
        eprintln!("{}: {} in {}", dataset.name, status.describe(), final_dir.display());
        Ok(final_dir)
    }

    fn extract_all(&self, dataset: &Dataset, fetched: &[Fetched], staging: &Path) -> Result<()> {
        for (entry, done) in dataset.files.iter().zip(fetched) {
            if entry.archive != super::manifest::ArchiveFormat::None {
                eprintln!("  {}: extracting {} ({})", dataset.name, entry.name, entry.archive.as_str());
            }
            extract_archive(entry.archive, &done.path, &entry.name, staging, self.max_extracted_bytes)
                .with_context(|| format!("dataset {}", dataset.name))?;
        }
        for expected in &dataset.layout.expect {
            if !staging.join(expected).exists() {
                bail!("dataset {}: {expected} is missing after extraction (archive layout changed?)", dataset.name);
            }
        }
        let marker = Marker {
            dataset: dataset.name.clone(),
            files: fetched
                .iter()
                .zip(&dataset.files)
                .map(|(done, entry)| MarkerFile {
                    name: entry.name.clone(),
                    sha256: done.digests.sha256.clone(),
                    md5: done.digests.md5.clone(),
                    size: done.digests.size,
                    matched: done.matched.clone(),
                    sha256_verified: entry.verified,
                    source: done.source.clone(),
                })
                .collect(),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        };
        let text = serde_json::to_string_pretty(&marker)?;
        // An archive entry of the same name (file or link) must not redirect the marker.
        remove_any(&staging.join(MARKER))?;
        fs::write(staging.join(MARKER), text + "\n").context("writing the marker")?;
        Ok(())
    }

    /// Fetches one file into the download directory and verifies it: mirrors first, then the
    /// canonical URLs. Returns where the verified file is.
    pub fn fetch_file(&self, dataset: &Dataset, entry: &FileEntry) -> Result<Fetched> {
        let dir = self.download_dir(dataset);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(&entry.name);
        let part = dir.join(format!("{}.part", entry.name));
        let label = format!("{}/{}", dataset.name, entry.name);

        // A verified download from an earlier, interrupted install.
        if path.exists() {
            if !self.force {
                let digests = hash_file(&path).with_context(|| format!("hashing {}", path.display()))?;
                if let Ok(matched) = checksum::check(entry, &digests) {
                    report(&label, entry, &digests, &matched, "earlier download");
                    return Ok(Fetched { path, digests, matched, source: "earlier download".to_string() });
                }
            }
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        if self.force {
            let _ = fs::remove_file(&part);
        }

        let mut sources: Vec<(Source, bool)> = self.mirrors.iter().map(|m| (m.source_for(&entry.name), true)).collect();
        sources.extend(entry.urls.iter().map(|u| (Source::Url(u.clone()), false)));

        let mut failures = Vec::new();
        for (source, is_mirror) in &sources {
            if let Source::File(file) = source {
                if !file.is_file() {
                    failures.push(format!("mirror {}: not found", file.display()));
                    continue;
                }
            }
            let kind = if *is_mirror { "mirror" } else { "canonical" };
            eprintln!("  {label}: fetching from {kind} {source}");
            // A resumed .part that fails the check is retried once from zero.
            let resumable = matches!(source, Source::Url(_));
            let mut may_restart = true;
            loop {
                let resumed = resumable && fs::metadata(&part).map(|m| m.len() > 0).unwrap_or(false);
                let digests = match self.fetcher.fetch(source, &part, entry.size, &label) {
                    Ok(digests) => digests,
                    Err(err) => {
                        // Transient failures keep the .part for a later resume.
                        if !err.transient {
                            let _ = fs::remove_file(&part);
                        }
                        failures.push(format!("{kind} {source}: {err}"));
                        break;
                    }
                };
                match checksum::check(entry, &digests) {
                    Ok(matched) => {
                        fs::rename(&part, &path)
                            .with_context(|| format!("renaming {} to {}", part.display(), path.display()))?;
                        report(&label, entry, &digests, &matched, &source.to_string());
                        return Ok(Fetched { path, digests, matched, source: format!("{kind} {source}") });
                    }
                    Err(mismatch) => {
                        let _ = fs::remove_file(&part);
                        if resumed && may_restart {
                            may_restart = false;
                            eprintln!("  {label}: {mismatch}; the resumed download was bad, starting over");
                            continue;
                        }
                        failures.push(format!("{kind} {source}: {mismatch}"));
                        break;
                    }
                }
            }
        }
        bail!("could not fetch {} for dataset {}:\n  - {}", entry.name, dataset.name, failures.join("\n  - "))
    }
}

/// A verified download.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    pub digests: Digests,
    pub matched: Match,
    pub source: String,
}

fn report(label: &str, entry: &FileEntry, digests: &Digests, matched: &Match, source: &str) {
    match matched {
        Match::Canonical if entry.verified => {
            eprintln!("  {label}: sha256 verified ({source})");
        }
        Match::Canonical => eprintln!(
            "  {label}: matches the manifest's checksums{} but its sha256 is unverified; computed sha256 {} ({source})",
            if entry.md5.is_some() { " (md5 included)" } else { "" },
            digests.sha256
        ),
        Match::Alternate => eprintln!(
            "  {label}: matches an accepted alternate encoding, sha256 {} ({source})",
            digests.sha256
        ),
        Match::Md5Only => eprintln!(
            "  {label}: md5 matches; no sha256 is known: computed sha256 {} ({source})",
            digests.sha256
        ),
        Match::Unchecked => eprintln!(
            "  warning: {label}: the manifest has no checksum, nothing was verified; computed sha256 {}, md5 {} ({source})",
            digests.sha256, digests.md5
        ),
    }
}

/// Removes a file, symlink or directory tree if it exists.
fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display())),
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}
