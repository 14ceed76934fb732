//! LibTorch provisioning: find or install the exact PyTorch that tch expects, and compute the
//! environment cargo needs to build and link against it.
//!
//! Order: `LIBTORCH` (a LibTorch folder) or `LIBTORCH_USE_PYTORCH` (a Python with torch) when the
//! user set them; otherwise `torch==TORCH_VERSION` from PyPI in a per-user cache outside the
//! repository, keyed by version, so every clone on the machine shares it. `SSL_TORCH_CACHE`
//! overrides the cache folder.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The PyTorch version tch 0.26 is built for (one constant with what every run records).
pub const TORCH_VERSION: &str = ssl_records::run::LIBTORCH_VERSION;
const MARKER: &str = "ssl-toolkit-torch.json";

/// Where LibTorch comes from, as decided by [`provision`].
#[derive(Debug, Clone)]
pub enum Source {
    /// The user's `LIBTORCH`.
    UserLibtorch(PathBuf),
    /// The user's `LIBTORCH_USE_PYTORCH`: torch-sys asks their Python.
    UserPython,
    /// Our cached virtual environment; the path is the `torch` package folder.
    Cache { venv: PathBuf, torch_dir: PathBuf },
}

impl Source {
    /// Environment variables to give every cargo invocation that builds tch.
    pub fn cargo_env(&self) -> Vec<(String, String)> {
        match self {
            Source::UserLibtorch(p) => vec![("LIBTORCH".into(), p.display().to_string())],
            Source::UserPython => vec![],
            Source::Cache { torch_dir, .. } => vec![("LIBTORCH".into(), torch_dir.display().to_string())],
        }
    }

    /// A Python interpreter with this torch, if we know one (for reference scripts and tests).
    pub fn python(&self) -> Option<PathBuf> {
        match self {
            Source::Cache { venv, .. } => Some(venv.join("bin/python")),
            _ => None,
        }
    }
}

/// The per-user cache folder (outside any repository).
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("SSL_TORCH_CACHE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ssl-toolkit")
}

/// Decide where LibTorch comes from, installing it into the cache if needed.
pub fn provision() -> Result<Source> {
    if let Some(p) = std::env::var_os("LIBTORCH") {
        let p = PathBuf::from(p);
        if !p.join("lib").is_dir() {
            bail!("LIBTORCH={} has no lib/ folder: point it at an unpacked LibTorch {TORCH_VERSION}", p.display());
        }
        return Ok(Source::UserLibtorch(p));
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        return Ok(Source::UserPython);
    }
    let venv = cache_root().join(format!("torch-{TORCH_VERSION}"));
    let torch_dir = match read_marker(&venv) {
        Some(dir) => dir,
        None => {
            install(&venv)?;
            read_marker(&venv).context("torch was installed but its marker is missing")?
        }
    };
    if ssl_build::nccl_requested() {
        nccl_headers(&venv, &torch_dir)?;
    }
    Ok(Source::Cache { venv, torch_dir })
}

/// Install `ssl_build::NCCL_HEADER_PACKAGES` (the headers the `SSL_NCCL=1` build needs) into
/// our environment, once.
fn nccl_headers(venv: &Path, torch_dir: &Path) -> Result<()> {
    let site = torch_dir.parent().context("the torch folder has no parent")?;
    let missing: Vec<String> = ssl_build::NCCL_HEADER_PACKAGES
        .iter()
        .filter(|(name, version)| !site.join(format!("{}-{version}.dist-info", name.replace('-', "_"))).is_dir())
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("==> SSL_NCCL=1: installing the CUDA headers the NCCL backend compiles against ({})", missing.join(", "));
    let ok = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-deps"])
        .args(&missing)
        .status()
        .context("running pip install")?;
    if !ok.success() {
        bail!("pip install {} failed (see the output above)", missing.join(" "));
    }
    Ok(())
}

fn read_marker(venv: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(venv.join(MARKER)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let dir = PathBuf::from(v["torch_dir"].as_str()?);
    (v["version"].as_str()? == TORCH_VERSION && dir.join("lib").is_dir()).then_some(dir)
}

fn python3() -> Result<PathBuf> {
    let candidates = std::env::var_os("PYTHON").map(PathBuf::from).into_iter().chain([PathBuf::from("python3")]);
    for c in candidates {
        if Command::new(&c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Ok(c);
        }
    }
    bail!(
        "python3 was not found. LibTorch is installed from the torch=={TORCH_VERSION} wheel, which needs Python 3.10+ with venv and pip.\n\
         Install them (Debian/Ubuntu: `apt-get install python3 python3-venv python3-pip`) or set LIBTORCH to an unpacked LibTorch {TORCH_VERSION}."
    )
}

fn install(venv: &Path) -> Result<()> {
    let py = python3()?;
    let parent = venv.parent().context("cache folder has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    eprintln!("==> Installing PyTorch {TORCH_VERSION} (LibTorch for tch) into {}", venv.display());
    eprintln!("    This happens once per machine and downloads about 4.7 GB (with the CUDA libraries).");
    if !venv.join("bin/python").exists() {
        let ok = Command::new(&py).args(["-m", "venv"]).arg(venv).status().context("running python3 -m venv")?;
        if !ok.success() {
            bail!(
                "`python3 -m venv` failed: the venv module is missing. Install it (Debian/Ubuntu: `apt-get install python3-venv`) and retry."
            );
        }
    }
    let vpy = venv.join("bin/python");
    let pip_ok =
        Command::new(&vpy).args(["-m", "pip", "--version"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !pip_ok {
        bail!("pip is missing from the virtual environment (Debian/Ubuntu: `apt-get install python3-pip python3-venv`), then retry.");
    }
    // pip draws its own download progress bar when stderr is a terminal; elsewhere it prints
    // one line per package, which is the progress a log can show.
    let status = Command::new(&vpy)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            &format!("torch=={TORCH_VERSION}"),
            "numpy",
            "safetensors",
        ])
        .status()
        .context("running pip install")?;
    if !status.success() {
        bail!("pip install torch=={TORCH_VERSION} failed (see the output above); nothing was marked as installed, a rerun retries");
    }
    let out = Command::new(&vpy)
        .args([
            "-c",
            "import torch, os; print(os.path.dirname(torch.__file__)); print(torch.__version__.split('+')[0])",
        ])
        .output()
        .context("asking the installed torch for its location")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let (Some(dir), Some(version)) = (lines.next(), lines.next()) else {
        bail!("the installed torch does not import: {}", String::from_utf8_lossy(&out.stderr));
    };
    if version != TORCH_VERSION {
        bail!("pip installed torch {version}, but tch needs exactly {TORCH_VERSION}");
    }
    let marker = serde_json::json!({ "version": version, "torch_dir": dir });
    let tmp = venv.join(format!("{MARKER}.tmp"));
    std::fs::write(&tmp, marker.to_string())?;
    std::fs::rename(&tmp, venv.join(MARKER))?;
    eprintln!("==> PyTorch {TORCH_VERSION} ready at {dir}");
    Ok(())
}

/// The `transformers` release the HF interoperability test is run against.
pub const TRANSFORMERS_VERSION: &str = "5.24.0";

/// The `timm` release the vision export test loads our ViT into (`VisionTransformer`).
pub const TIMM_VERSION: &str = "1.0.31";

/// The `tensorboard` release that reads our event files back in the TensorBoard interoperability
/// test (`crates/ssl-records/tests/tensorboard_python.rs`). 2.21.0 needs Python 3.9+ (torch needs
/// 3.10+ anyway); pip brings its dependencies (protobuf, numpy, setuptools, ...), and reading event
/// files needs no TensorFlow.
pub const TENSORBOARD_VERSION: &str = "2.21.0";

/// A Python with torch, safetensors, transformers, timm and tensorboard for the tests and benchmarks
/// that compare against PyTorch/HuggingFace/TensorBoard: `SSL_PYTHON` if set, else our cached
/// virtual environment (when the user's own LibTorch is used, that is the cache if it exists, then
/// `python3`). transformers and tensorboard are installed on first use.
pub fn test_python(source: &Source) -> Result<PathBuf> {
    let cached = cache_root().join(format!("torch-{TORCH_VERSION}"));
    let py = match (std::env::var_os("SSL_PYTHON"), source.python()) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(p)) => p,
        (None, None) if read_marker(&cached).is_some() => cached.join("bin/python"),
        (None, None) => python3()?,
    };
    let has = |module: &str| {
        Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("torch") || !has("safetensors") {
        bail!(
            "{} has no torch/safetensors; set SSL_PYTHON to a Python with torch=={TORCH_VERSION} and safetensors \
             (the reference tests and benchmarks run PyTorch)",
            py.display()
        );
    }
    // torch is named in every install too, so pip picks dependencies (timm's torchvision) built
    // for our torch instead of replacing it.
    let torch = format!("torch=={TORCH_VERSION}");
    let install = |module: &str, version: &str, why: &str| -> Result<()> {
        if has(module) {
            return Ok(());
        }
        eprintln!("==> installing {module}=={version} for {why}");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "--disable-pip-version-check", &format!("{module}=={version}"), &torch])
            .status()
            .with_context(|| format!("running pip install {module}"))?;
        if !ok.success() || !has(module) {
            bail!("could not install {module} into {}", py.display());
        }
        Ok(())
    };
    install("transformers", TRANSFORMERS_VERSION, "the HuggingFace interoperability tests")?;
    install("timm", TIMM_VERSION, "the timm interoperability test")?;
    install("tensorboard", TENSORBOARD_VERSION, "the TensorBoard interoperability test")?;
    // Pillow comes with timm's torchvision; `ssl embed`'s check decodes its PNGs with it.
    if !has("PIL") {
        bail!("{} has no Pillow (PIL), which timm's torchvision should have brought", py.display());
    }
    Ok(py)
}
