//! Datasets: manifests, verified downloads and local mirrors.
//!
//! * `cargo xtask datasets` ([`list`]) prints the known datasets and whether they are present.
//! * `cargo xtask download NAME… [--mirror DIR|URL]… [--data-root PATH] [--force]`
//!   ([`download`]) fetches, verifies and extracts datasets.
//! * `cargo xtask pretrain-<modality> --dataset NAME` calls [`resolve`] to get a dataset's path.
//!
//! Manifests (`datasets/manifests/*.json`) are embedded into the binary; see
//! `datasets/manifests/README.md` for the schema and `docs/src/datasets.md` for the user guide.

pub(crate) mod checksum;
mod download;
mod extract;
mod install;
mod manifest;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use checksum::{check, hash_file, Digests, Match, StreamHasher};
pub use download::{FetchError, Fetcher, Mirror, RetryPolicy, Source};
pub use extract::{extract_archive, DEFAULT_MAX_EXTRACTED_BYTES};
pub use install::{Fetched, Installer, Marker, MarkerFile, Status, MARKER};
pub use manifest::{builtin_manifest_files, Alternate, ArchiveFormat, Catalog, Dataset, FileEntry, Layout, MODALITIES};

/// Environment variable that overrides the default data root.
pub const DATA_ROOT_ENV: &str = "SSL_DATA_ROOT";

/// `cargo xtask download`: fetch, verify and extract datasets.
#[derive(clap::Args, Debug, Clone)]
pub struct DownloadArgs {
    /// Dataset names (see `cargo xtask datasets`), or `all`.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Where datasets live (default: $SSL_DATA_ROOT, else the per-user data directory).
    #[arg(long, value_name = "PATH")]
    pub data_root: Option<PathBuf>,
    /// A directory holding the dataset's files by name, or a base URL to which file names are
    /// appended. Tried before the canonical URLs, with the same checksum checks. Repeatable.
    #[arg(long = "mirror", value_name = "DIR|URL")]
    pub mirrors: Vec<String>,
    /// Download and extract again even if the dataset is present.
    #[arg(long)]
    pub force: bool,
}

/// `cargo xtask datasets`: list known datasets and their state.
#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    /// Where datasets live (default: $SSL_DATA_ROOT, else the per-user data directory).
    #[arg(long, value_name = "PATH")]
    pub data_root: Option<PathBuf>,
}

/// A dataset ready on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub modality: String,
    /// The directory the reader opens (`layout.root` of the manifest).
    pub path: PathBuf,
    /// The reader of the modality crate that opens `path`, e.g. `idx`, `cifar-binary`.
    pub reader: String,
}

/// The default data root: `$SSL_DATA_ROOT` if set, else `<per-user data dir>/ssl-toolkit/datasets`
/// (`$XDG_DATA_HOME` or `~/.local/share` on Linux).
pub fn default_data_root() -> PathBuf {
    if let Some(root) = std::env::var_os(DATA_ROOT_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("ssl-toolkit").join("datasets")
}

fn data_root_or_default(data_root: Option<&Path>) -> PathBuf {
    data_root.map(Path::to_path_buf).unwrap_or_else(default_data_root)
}

fn mirrors_from(specs: &[String]) -> Vec<Mirror> {
    specs.iter().map(|s| Mirror::parse(s)).collect()
}

/// `cargo xtask download`.
pub fn download(args: &DownloadArgs) -> Result<()> {
    let catalog = Catalog::builtin()?;
    let mut installer = Installer::new(data_root_or_default(args.data_root.as_deref()), mirrors_from(&args.mirrors));
    installer.force = args.force;
    download_with(&catalog, &installer, &args.names)
}

/// Downloads `names` (or `all`) of `catalog` with `installer`.
pub fn download_with(catalog: &Catalog, installer: &Installer, names: &[String]) -> Result<()> {
    if names.is_empty() {
        bail!("name at least one dataset (or `all`); known datasets: {}", catalog.names().join(", "));
    }
    let datasets: Vec<&Dataset> = if names.iter().any(|n| n == "all") {
        catalog.datasets().iter().collect()
    } else {
        names.iter().map(|name| catalog.find(name)).collect::<Result<_>>()?
    };
    eprintln!("data root: {}", installer.data_root.display());
    let mut failed = Vec::new();
    for dataset in datasets {
        if let Err(err) = installer.install(dataset) {
            eprintln!("error: {err:#}");
            failed.push(dataset.name.clone());
        }
    }
    if !failed.is_empty() {
        bail!("failed to download: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask datasets`.
pub fn list(args: &ListArgs) -> Result<()> {
    let catalog = Catalog::builtin()?;
    let installer = Installer::new(data_root_or_default(args.data_root.as_deref()), Vec::new());
    print!("{}", list_table(&catalog, &installer));
    Ok(())
}

/// The table printed by `cargo xtask datasets`.
pub fn list_table(catalog: &Catalog, installer: &Installer) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "MODALITY".to_string(),
        "SIZE".to_string(),
        "CHECKSUMS".to_string(),
        "READER".to_string(),
        "STATUS".to_string(),
    ]];
    for dataset in catalog.datasets() {
        let checksums = if dataset.all_verified() {
            "sha256 verified"
        } else if dataset.files.iter().all(|f| f.sha256.is_some()) {
            "sha256 unverified"
        } else if dataset.files.iter().all(FileEntry::has_checksum) {
            "md5 only"
        } else {
            "none"
        };
        rows.push([
            dataset.name.clone(),
            dataset.modality.clone(),
            dataset.total_size().map_or_else(|| "?".to_string(), human_size),
            checksums.to_string(),
            dataset.reader.clone(),
            installer.status(dataset).describe(),
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = format!("data root: {}\n", installer.data_root.display());
    for row in &rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "\n\"sha256 unverified\": the sha256 comes from a third party (not confirmed against the \
         publisher); it is still enforced, together with the publisher's md5 where one exists.\n",
    );
    out
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Ensures dataset `name` of `modality` (`vision`, `text`, `speech`) is present and verified,
/// downloading it (mirrors first) if needed, and returns where it lives.
pub fn resolve(name: &str, modality: &str, data_root: Option<&Path>, mirrors: &[String]) -> Result<Resolved> {
    resolve_with(&Catalog::builtin()?, name, modality, data_root, mirrors)
}

/// [`resolve`] against a given catalog (tests inject their own manifests here).
pub fn resolve_with(
    catalog: &Catalog,
    name: &str,
    modality: &str,
    data_root: Option<&Path>,
    mirrors: &[String],
) -> Result<Resolved> {
    let installer = Installer::new(data_root_or_default(data_root), mirrors_from(mirrors));
    resolve_in(catalog, &installer, name, modality)
}

/// [`resolve`] with a configured [`Installer`].
pub fn resolve_in(catalog: &Catalog, installer: &Installer, name: &str, modality: &str) -> Result<Resolved> {
    if !MODALITIES.contains(&modality) {
        bail!("unknown modality {modality:?}; expected one of {}", MODALITIES.join(", "));
    }
    let dataset = catalog.find(name)?;
    if dataset.modality != modality {
        let same: Vec<&str> =
            catalog.datasets().iter().filter(|d| d.modality == modality).map(|d| d.name.as_str()).collect();
        bail!(
            "dataset {name:?} is a {} dataset, not {modality}; {modality} datasets: {}",
            dataset.modality,
            if same.is_empty() { "none".to_string() } else { same.join(", ") }
        );
    }
    installer.install(dataset)?;
    Ok(Resolved {
        name: dataset.name.clone(),
        modality: dataset.modality.clone(),
        path: installer.reader_path(dataset),
        reader: dataset.reader.clone(),
    })
}
