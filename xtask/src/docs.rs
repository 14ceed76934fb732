//! `cargo xtask docs`: the researcher docs site (mdBook) with the rustdoc API docs under `api/`,
//! and the browser check `cargo xtask test` runs on it: every page opened in headless Chromium
//! (Debian's `chromium` and `chromium-driver`), no console errors, every internal link and anchor
//! resolved, every image loaded, and screenshots of the landing page, a tutorial and a modality
//! page under `target/docs-check/`, each checked for a visible title and a page that is not blank.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mdBook release the site is built with (it builds with this workspace's toolchain).
pub const MDBOOK_VERSION: &str = "0.4.52";
/// The Selenium release that drives Chromium in the check (4.52.0 needs a certifi newer than the
/// package registry holds).
pub const SELENIUM_VERSION: &str = "4.51.0";

fn status(mut c: Command) -> Result<bool> {
    Ok(c.status().with_context(|| format!("failed to start {c:?}"))?.success())
}

fn has_mdbook() -> bool {
    Command::new("mdbook")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(MDBOOK_VERSION))
}

/// Build the book into `target/book` and the API docs into `target/book/api`. `cargo` makes a
/// cargo command with the LibTorch environment (rustdoc compiles the crates that link it).
pub fn build(root: &Path, cargo: &dyn Fn(&[&str]) -> Command) -> Result<PathBuf> {
    if !has_mdbook() {
        eprintln!("==> installing mdbook {MDBOOK_VERSION} with cargo install (once, a few minutes)");
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(["install", "mdbook", "--locked", "--version", MDBOOK_VERSION]);
        if !status(c)? {
            bail!("cargo install mdbook {MDBOOK_VERSION} failed (see above)");
        }
    }
    let book = root.join("target/book");
    let mut c = Command::new("mdbook");
    c.arg("build").arg(root.join("docs")).arg("--dest-dir").arg(&book);
    if !status(c)? {
        bail!("mdbook build failed (see above)");
    }
    eprintln!("==> cargo doc --workspace --no-deps (the API docs, linked from the book)");
    // Broken intra-doc links and stray HTML in doc comments fail the build.
    let mut doc = cargo(&["doc", "--workspace", "--no-deps", "--quiet"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    if !status(doc)? {
        bail!("cargo doc failed (see above)");
    }
    let api = book.join("api");
    let _ = std::fs::remove_dir_all(&api);
    copy_dir(&root.join("target/doc"), &api)?;
    eprintln!("==> docs built: {}", book.join("index.html").display());
    Ok(book)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// Chromium and chromedriver from Debian, installed with apt-get where we may (root); `None`
/// with the reason where they cannot be had.
fn browser() -> Option<String> {
    let present = || Path::new("/usr/bin/chromium").is_file() && Path::new("/usr/bin/chromedriver").is_file();
    if present() {
        return None;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || !Path::new("/usr/bin/apt-get").is_file() {
        return Some("Chromium is not installed and apt-get cannot be used here (install the Debian packages chromium and chromium-driver)".into());
    }
    eprintln!("==> installing Debian's chromium and chromium-driver for the docs browser check (once)");
    let quiet = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        status(c).unwrap_or(false)
    };
    let _ = quiet(&["update", "-qq"]);
    if !quiet(&["install", "-y", "-qq", "chromium", "chromium-driver"]) || !present() {
        return Some("apt-get could not install chromium and chromium-driver".into());
    }
    None
}

/// Open every book page in headless Chromium (see `xtask/docs_check.py`). A missing browser is a
/// clear skip, never a silent pass; a failed check is an error.
pub fn check(root: &Path, book: &Path, python: &Path) -> Result<()> {
    if let Some(why) = browser() {
        eprintln!("==> SKIPPED the docs browser check: {why}");
        return Ok(());
    }
    let has_selenium = Command::new(python).args(["-c", "import selenium"]).output().is_ok_and(|o| o.status.success());
    if !has_selenium {
        eprintln!("==> installing selenium=={SELENIUM_VERSION} for the docs browser check");
        let mut c = Command::new(python);
        c.args(["-m", "pip", "install", "--disable-pip-version-check", "-q", &format!("selenium=={SELENIUM_VERSION}")]);
        if !status(c)? {
            bail!("pip install selenium=={SELENIUM_VERSION} failed");
        }
    }
    let shots = root.join("target/docs-check");
    let out = Command::new(python)
        .arg(root.join("xtask/docs_check.py"))
        .arg(book)
        .arg(&shots)
        .output()
        .context("running xtask/docs_check.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).with_context(|| {
            format!("docs_check.py printed no summary:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
        })?;
    match out.status.code() {
        Some(0) => {
            eprintln!(
                "==> docs browser check: {} pages, {} internal links, {} images, no console errors; screenshots \
                 checked (title visible, not blank): {} in {}",
                summary["pages"],
                summary["links"],
                summary["images"],
                summary["screenshots"],
                shots.display()
            );
            Ok(())
        }
        Some(3) => {
            eprintln!(
                "==> SKIPPED the docs browser check: {}",
                summary["error"].as_str().unwrap_or("Chromium did not start")
            );
            Ok(())
        }
        _ => {
            let failures: Vec<String> = summary["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            bail!("the docs browser check failed:\n  {}", failures.join("\n  "))
        }
    }
}
