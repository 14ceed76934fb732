//! Safe archive extraction.
//!
//! Every entry path is checked before anything is written: absolute paths and `..` components are
//! refused. Links are checked too: a hard link must name a regular file already extracted from
//! the same archive, and a symlink target must be relative and stay inside the destination.
//! Symlinks are only created after every regular file has been written, so no write can ever go
//! through a link; a last check canonicalises every created symlink.
//!
//! The bytes written are counted against a limit (a decompression bomb stops with an error
//! naming the entry, not with a full disk).
//!
//! The caller (see `install.rs`) extracts into a staging directory next to the final dataset
//! directory and renames it into place only after success.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use flate2::read::MultiGzDecoder;

use super::manifest::{gunzipped_name, ArchiveFormat};

/// Most bytes one archive may expand to, unless the installer says otherwise: far above any
/// dataset in the manifests, far below a disk.
pub const DEFAULT_MAX_EXTRACTED_BYTES: u64 = 64 << 30;

/// Bytes still allowed to be written by this extraction.
struct Quota {
    left: u64,
    limit: u64,
}

impl Quota {
    /// Copy `reader` into `output`, failing once the archive as a whole passes the limit.
    fn copy(&mut self, reader: &mut dyn Read, output: &mut dyn io::Write, what: &Path) -> Result<()> {
        let written =
            io::copy(&mut reader.take(self.left + 1), output).with_context(|| format!("writing {}", what.display()))?;
        if written > self.left {
            bail!(
                "refusing archive entry {}: the archive expands past the limit of {} bytes",
                what.display(),
                self.limit
            );
        }
        self.left -= written;
        Ok(())
    }
}

/// Extracts `archive` (named `file_name` in the manifest) into the existing directory `dest`,
/// writing at most `max_bytes` in all.
pub fn extract_archive(
    format: ArchiveFormat,
    archive: &Path,
    file_name: &str,
    dest: &Path,
    max_bytes: u64,
) -> Result<()> {
    let mut quota = Quota { left: max_bytes, limit: max_bytes };
    match format {
        ArchiveFormat::None => {
            let target = dest.join(checked_path(file_name)?);
            move_file(archive, &target)
        }
        ArchiveFormat::GzipSingleFile => {
            let name =
                gunzipped_name(file_name).with_context(|| format!("{file_name}: gzip-single-file needs a .gz name"))?;
            let target = dest.join(checked_path(name)?);
            let input = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
            let mut decoder = MultiGzDecoder::new(BufReader::new(input));
            let mut output = File::create(&target).with_context(|| format!("creating {}", target.display()))?;
            quota.copy(&mut decoder, &mut output, Path::new(name)).with_context(|| format!("decompressing {file_name}"))
        }
        ArchiveFormat::TarGz => {
            let input = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
            extract_tar(MultiGzDecoder::new(BufReader::new(input)), dest, &mut quota)
                .with_context(|| format!("extracting {file_name}"))
        }
        ArchiveFormat::Zip => extract_zip(archive, dest, &mut quota).with_context(|| format!("extracting {file_name}")),
    }
}

fn move_file(from: &Path, to: &Path) -> Result<()> {
    if fs::rename(from, to).is_err() {
        // Different file systems: copy, then remove the original.
        fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        fs::remove_file(from).ok();
    }
    Ok(())
}

/// Checks an archive entry path: relative, no `..`, no root or drive prefix. `.` parts are
/// dropped. Returns `None` for paths that name the destination itself (`./`).
fn checked_path_opt(raw: &str) -> Result<Option<PathBuf>> {
    let mut clean = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => bail!("refusing archive entry {raw:?}: it contains '..'"),
            Component::RootDir | Component::Prefix(_) => {
                bail!("refusing archive entry {raw:?}: absolute path")
            }
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

fn checked_path(raw: &str) -> Result<PathBuf> {
    checked_path_opt(raw)?.with_context(|| format!("refusing archive entry {raw:?}: empty path"))
}

/// Resolves a symlink target lexically against the link's directory; errors if it leaves `dest`.
fn check_symlink_target(entry: &Path, target: &Path) -> Result<()> {
    if target.has_root() || target.components().any(|c| matches!(c, Component::Prefix(_))) {
        bail!("refusing symlink {} -> {}: absolute target", entry.display(), target.display());
    }
    // Depth (in components below `dest`) of the directory holding the link.
    let mut depth: i64 = entry.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            bail!(
                "refusing symlink {} -> {}: target escapes the destination directory",
                entry.display(),
                target.display()
            );
        }
    }
    Ok(())
}

/// Entries collected while extracting; links are created at the end.
#[derive(Default)]
struct Pending {
    symlinks: Vec<(PathBuf, PathBuf)>,
}

impl Pending {
    fn add_symlink(&mut self, entry: PathBuf, target: PathBuf) -> Result<()> {
        check_symlink_target(&entry, &target)?;
        self.symlinks.push((entry, target));
        Ok(())
    }

    /// Creates the symlinks, then checks that each one resolves inside `dest`.
    fn finish(self, dest: &Path) -> Result<()> {
        if self.symlinks.is_empty() {
            return Ok(());
        }
        for (entry, target) in &self.symlinks {
            let path = dest.join(entry);
            create_parent(dest, entry)?;
            make_symlink(target, &path).with_context(|| format!("creating symlink {}", entry.display()))?;
        }
        let root = fs::canonicalize(dest)?;
        for (entry, target) in &self.symlinks {
            let resolved = fs::canonicalize(dest.join(entry)).with_context(|| {
                format!(
                    "refusing symlink {} -> {}: the target does not exist in the archive",
                    entry.display(),
                    target.display()
                )
            })?;
            if !resolved.starts_with(&root) {
                bail!(
                    "refusing symlink {} -> {}: target escapes the destination directory",
                    entry.display(),
                    target.display()
                );
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// Creates the parent directories of `entry` below `dest`, refusing to go through anything that
/// is not a real directory.
fn create_parent(dest: &Path, entry: &Path) -> Result<()> {
    let mut current = dest.to_path_buf();
    if let Some(parent) = entry.parent() {
        for component in parent.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => bail!("refusing archive entry {}: {} is not a directory", entry.display(), current.display()),
                Err(_) => fs::create_dir(&current).with_context(|| format!("creating {}", current.display()))?,
            }
        }
    }
    Ok(())
}

/// Writes one regular file, replacing an earlier entry of the same name.
fn write_file(dest: &Path, entry: &Path, reader: &mut dyn Read, quota: &mut Quota) -> Result<()> {
    create_parent(dest, entry)?;
    let path = dest.join(entry);
    if let Ok(meta) = fs::symlink_metadata(&path) {
        if meta.is_dir() {
            bail!("refusing archive entry {}: a directory of that name exists", entry.display());
        }
        fs::remove_file(&path)?;
    }
    let mut output = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    quota.copy(reader, &mut output, entry)
}

fn make_dir(dest: &Path, entry: &Path) -> Result<()> {
    create_parent(dest, entry)?;
    let path = dest.join(entry);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("refusing archive entry {}: not a directory", entry.display()),
        Err(_) => fs::create_dir(&path).with_context(|| format!("creating {}", path.display())),
    }
}

/// Unpacks a tar stream into `dest` (an existing directory).
fn extract_tar(reader: impl Read, dest: &Path, quota: &mut Quota) -> Result<()> {
    use tar::EntryType;
    let mut archive = tar::Archive::new(reader);
    let mut pending = Pending::default();
    for entry in archive.entries().context("reading tar archive")? {
        let mut entry = entry.context("reading tar entry")?;
        let raw = entry.path().context("reading tar entry path")?;
        let raw = raw.to_string_lossy().into_owned();
        let entry_type = entry.header().entry_type();
        let Some(path) = checked_path_opt(&raw)? else {
            continue; // "./" itself
        };
        match entry_type {
            EntryType::Regular | EntryType::Continuous => write_file(dest, &path, &mut entry, quota)?,
            EntryType::Directory => make_dir(dest, &path)?,
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .context("reading symlink target")?
                    .with_context(|| format!("symlink {raw:?} without target"))?
                    .into_owned();
                pending.add_symlink(path, target)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .context("reading hard link target")?
                    .with_context(|| format!("hard link {raw:?} without target"))?;
                let target_raw = target.to_string_lossy().into_owned();
                let target = checked_path(&target_raw).map_err(|_| {
                    anyhow::anyhow!(
                        "refusing hard link {raw:?} -> {target_raw:?}: target escapes the destination directory"
                    )
                })?;
                let source = dest.join(&target);
                match fs::symlink_metadata(&source) {
                    Ok(meta) if meta.is_file() => {}
                    _ => bail!("refusing hard link {raw:?} -> {target_raw:?}: target is not a file extracted earlier"),
                }
                create_parent(dest, &path)?;
                let link = dest.join(&path);
                if fs::symlink_metadata(&link).is_ok() {
                    fs::remove_file(&link)?;
                }
                fs::hard_link(&source, &link)
                    .or_else(|_| fs::copy(&source, &link).map(|_| ()))
                    .with_context(|| format!("creating hard link {raw:?}"))?;
            }
            // pax/GNU metadata records are consumed by the tar reader; devices, FIFOs and other
            // special entries have no place in a dataset: skip them.
            _ => {}
        }
    }
    pending.finish(dest)
}

/// Unpacks a zip file into `dest` (an existing directory).
fn extract_zip(archive: &Path, dest: &Path, quota: &mut Quota) -> Result<()> {
    const S_IFMT: u32 = 0o170000;
    const S_IFLNK: u32 = 0o120000;
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).context("reading zip archive")?;
    let mut pending = Pending::default();
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).context("reading zip entry")?;
        let raw = entry.name().to_string();
        let Some(path) = checked_path_opt(&raw)? else {
            continue;
        };
        let is_symlink = entry.unix_mode().is_some_and(|mode| mode & S_IFMT == S_IFLNK);
        if is_symlink {
            let mut target = String::new();
            entry.read_to_string(&mut target).with_context(|| format!("reading symlink {raw:?}"))?;
            pending.add_symlink(path, PathBuf::from(target))?;
        } else if entry.is_dir() {
            make_dir(dest, &path)?;
        } else {
            write_file(dest, &path, &mut entry, quota)?;
        }
    }
    pending.finish(dest)
}
