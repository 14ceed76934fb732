//! The library path, from outside: a throwaway project in a temporary folder, not a workspace
//! member, with path dependencies on ssl-core and ssl-vision, builds against their public API
//! and runs a tiny pretraining and evaluation (`cargo xtask test`). It needs nothing beyond what
//! the README documents: the LibTorch environment `cargo xtask env` prints, and a `build.rs`
//! calling `ssl_build::link_libtorch()` (the rpath to LibTorch's libraries). The build shares the
//! workspace's target folder and lock file, so only the project itself compiles.
use anyhow::{ensure, Context, Result};
use std::path::Path;
use std::process::Command;

/// The project's `src/main.rs`.
const MAIN: &str = include_str!("outside/main.rs.txt");

/// Write the project into a new folder of the system's temporary directory, build and run it
/// with `cargo` (the LibTorch environment applied by the caller), and remove it.
pub fn check(root: &Path, cargo: impl Fn(&Path, &[&str]) -> Command) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ssl-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src"))?;
    let result = build_and_run(root, &dir, &cargo);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn build_and_run(root: &Path, dir: &Path, cargo: &impl Fn(&Path, &[&str]) -> Command) -> Result<()> {
    let crates = root.join("crates");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml"))?;
    // The same profiles as the workspace, so the dependencies it built are reused.
    let profiles = &workspace[workspace.find("[profile.").context("the workspace's profiles")?..];
    let manifest = format!(
        "[package]\nname = \"outside-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nssl-core = {{ path = {core:?} }}\nssl-vision = {{ path = {vision:?} }}\ntch = \"0.26\"\nanyhow = \"1\"\n\n\
         [build-dependencies]\nssl-build = {{ path = {build:?} }}\n\n\
         # Its own workspace: not a member of the toolkit's.\n[workspace]\n\n{profiles}",
        core = crates.join("ssl-core").display().to_string(),
        vision = crates.join("ssl-vision").display().to_string(),
        build = crates.join("ssl-build").display().to_string(),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/main.rs"), MAIN)?;
    // The rpath to LibTorch's libraries, as the README's library section says.
    std::fs::write(dir.join("build.rs"), "fn main() {\n    ssl_build::link_libtorch();\n}\n")?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let data = root.join("datasets/fashion-mnist-slice");
    let run_dir = dir.join("run");
    let mut c = cargo(dir, &["run", "--quiet", "--"]);
    c.env("CARGO_TARGET_DIR", root.join("target")).env("OMP_NUM_THREADS", "1");
    c.arg(&data).arg(&run_dir);
    let out = c.output().with_context(|| format!("failed to start {c:?}"))?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "the project outside the workspace failed ({}):\n{log}", out.status);
    ensure!(log.contains("steps 4 linear@5 pretrained"), "unexpected output:\n{log}");
    eprintln!("    {}", log.lines().find(|l| l.starts_with("steps")).unwrap_or_default());
    Ok(())
}
