//! Input files below a folder, found the same way by every reader that walks a tree: recursively,
//! in path order, hidden files and folders (`.git`, `.ipynb_checkpoints`) left out.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::create_dir_all(dir.path().join("a/.hidden")).unwrap();
//! for f in ["a/2.wav", "a/1.WAV", "a/.hidden/3.wav", "b.txt"] {
//!     std::fs::write(dir.path().join(f), b"").unwrap();
//! }
//! let found = ssl_core::files::input_files(dir.path(), &["wav"]).unwrap();
//! let names: Vec<_> = found.iter().map(|p| p.strip_prefix(dir.path()).unwrap().to_path_buf()).collect();
//! assert_eq!(names, [std::path::Path::new("a/1.WAV"), std::path::Path::new("a/2.wav")]);
//! assert!(ssl_core::files::input_files(dir.path(), &["png"]).is_err());
//! ```
use crate::error::{CoreError, Result};
use std::path::{Path, PathBuf};

/// Every file below `dir` that `keep` accepts, recursively and sorted; hidden entries are left out.
pub fn files_below(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| CoreError::io(&d, e))?.flatten() {
            let p = entry.path();
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `path`'s extension is one of `extensions` (lower case), in any case.
pub(crate) fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
}

/// `path` itself when it is a file, else the files below it with one of `extensions` (an error
/// when there are none, naming what was looked for).
pub fn input_files(path: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(CoreError::InvalidArgument(format!("{}: no such file or folder", path.display())));
    }
    let files = files_below(path, |p| has_extension(p, extensions))?;
    if files.is_empty() {
        return Err(CoreError::InvalidArgument(format!(
            "{}: no input files in it (looked for .{} below it)",
            path.display(),
            extensions.join(", .")
        )));
    }
    Ok(files)
}
