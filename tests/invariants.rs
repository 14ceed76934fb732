//! The workspace's structural invariants that ARCHITECTURE.md states, checked on the sources (the
//! engine's own are in `crates/ssl-core/tests/architecture.rs`). Each check also runs against a
//! case built to break it, so it can fail.
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files below `dir` whose names end in `ext`.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
            out.extend(files(&p, ext));
        } else if p.to_str().is_some_and(|s| s.ends_with(ext)) {
            out.push(p);
        }
    }
    out
}

/// The `[dependencies]`-like sections of a manifest: the dependency names.
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t.contains("dependencies");
            continue;
        }
        if in_deps {
            if let Some((name, _)) = t.split_once('=') {
                out.push(name.trim().split('.').next().unwrap_or("").to_owned());
            }
        }
    }
    out
}

/// The Rust sources of the workspace (crates, examples, tests, xtask), comment lines left out.
fn rust_sources() -> Vec<(PathBuf, String)> {
    ["crates", "examples", "tests", "xtask"]
        .iter()
        .flat_map(|d| files(&root().join(d), ".rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            (p, code)
        })
        .collect()
}

#[test]
fn the_ssl_binary_is_two_files_of_commands() {
    let src = root().join("crates/ssl-cli/src");
    let mut names: Vec<String> =
        std::fs::read_dir(&src).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["bench.rs", "main.rs"], "ssl-cli holds no logic of its own");
}

#[test]
fn xtask_never_links_libtorch_and_only_xtask_has_an_http_client() {
    let xtask = dependency_names(&std::fs::read_to_string(root().join("xtask/Cargo.toml")).unwrap());
    assert!(xtask.contains(&"ureq".to_owned()), "the scan reads xtask's dependencies: {xtask:?}");
    assert!(!xtask.iter().any(|d| d == "tch" || d == "torch-sys"), "xtask links LibTorch: {xtask:?}");
    let http = ["ureq", "reqwest", "hyper", "curl", "object_store", "opendal"];
    let manifests: Vec<PathBuf> = files(&root().join("crates"), "Cargo.toml")
        .into_iter()
        .chain([root().join("examples/Cargo.toml"), root().join("tests/Cargo.toml")])
        .collect();
    assert!(manifests.len() >= 9);
    for m in manifests {
        let deps = dependency_names(&std::fs::read_to_string(&m).unwrap());
        let found: Vec<_> = deps.iter().filter(|d| http.contains(&d.as_str())).collect();
        assert!(found.is_empty(), "{} depends on an HTTP client: {found:?}", m.display());
    }
    // The scan finds one when there is one.
    assert_eq!(dependency_names("[dependencies]\nureq = \"2\"\n"), ["ureq"]);
}

#[test]
fn only_ssl_core_rng_seeds_libtorch_and_tch_optimizers_are_never_used() {
    let sources = rust_sources();
    assert!(sources.len() > 150, "only {} sources read", sources.len());
    // This file names what it looks for.
    for (path, code) in sources.iter().filter(|(p, _)| !p.ends_with("tests/invariants.rs")) {
        if code.contains("tch::manual_seed") {
            assert!(path.ends_with("crates/ssl-core/src/rng.rs"), "{} seeds LibTorch itself", path.display());
        }
        for tch_optimizer in ["nn::Adam", "nn::Sgd", "nn::RmsProp", "nn::OptimizerConfig"] {
            assert!(!code.contains(tch_optimizer), "{} uses tch's {tch_optimizer}", path.display());
        }
    }
}

#[test]
fn every_c_entry_point_reports_failure_through_guarded() {
    let csrc = files(&root().join("crates/ssl-core/csrc"), ".cpp");
    let entry = csrc.iter().filter(|p| std::fs::read_to_string(p).unwrap().contains("extern \"C\"")).count();
    assert!(entry >= 4, "the scan finds the C entry points ({entry})");
    for p in csrc {
        let text = std::fs::read_to_string(&p).unwrap();
        if text.contains("extern \"C\"") {
            assert!(text.contains("#include \"guarded.h\""), "{} has C entry points without guarded.h", p.display());
        }
    }
}

#[test]
fn the_pytorch_references_import_neither_our_code_nor_transformers() {
    let scripts = files(&root().join("bench"), ".py");
    assert!(scripts.len() >= 4);
    for p in scripts {
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let l = line.trim_start();
            if l.starts_with("import ") || l.starts_with("from ") {
                assert!(
                    !l.contains("ssl_") && !l.contains("transformers"),
                    "{}: `{l}`: the references are written from torch alone",
                    p.display()
                );
            }
        }
    }
}
