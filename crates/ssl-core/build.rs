//! Compiles the small C++ layer (`csrc/kernels.cpp`, `distributed.cpp`, `profiler.cpp`,
//! `block_cache.cpp`) against the same LibTorch headers and C++ ABI as `torch-sys`, and passes the
//! LibTorch library folder on to dependents.
//!
//! With `SSL_NCCL=1` it also compiles `csrc/nccl.cpp` (c10d's ProcessGroupNCCL) against the CUDA
//! and NCCL headers of the PyPI packages next to torch, links `torch_cuda` and `c10_cuda`, and
//! sets `cfg(ssl_nccl)`; without it the NCCL backend is refused with a message.
use std::path::{Path, PathBuf};

/// The headers `ProcessGroupNCCL.hpp` reaches, under the wheel's `site-packages/nvidia`, and the
/// PyPI package that brings each (the torch wheel depends on the first and last; `cargo xtask
/// setup` installs the crt and cccl ones when `SSL_NCCL=1`).
const NCCL_HEADERS: [(&str, &str); 4] = [
    ("cu13/include/cuda_runtime_api.h", "nvidia-cuda-runtime"),
    ("cu13/include/crt/host_config.h", "nvidia-cuda-crt"),
    ("cu13/include/cccl/cuda/std/version", "nvidia-cuda-cccl"),
    ("nccl/include/nccl.h", "nvidia-nccl-cu13"),
];

/// The include folders of the NCCL build, or what is missing.
fn nccl_includes(nvidia: &Path) -> Result<Vec<PathBuf>, String> {
    let missing: Vec<String> = NCCL_HEADERS
        .iter()
        .filter(|(h, _)| !nvidia.join(h).is_file())
        .map(|(h, pkg)| format!("{h} (PyPI {pkg})"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "SSL_NCCL=1 needs CUDA and NCCL headers under {}; missing: {}. `SSL_NCCL=1 cargo xtask setup` installs them",
            nvidia.display(),
            missing.join(", ")
        ));
    }
    Ok(vec![nvidia.join("cu13/include"), nvidia.join("cu13/include/cccl"), nvidia.join("nccl/include")])
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/kernels.cpp");
    println!("cargo:rerun-if-changed=csrc/distributed.cpp");
    println!("cargo:rerun-if-changed=csrc/profiler.cpp");
    println!("cargo:rerun-if-changed=csrc/block_cache.cpp");
    println!("cargo:rerun-if-changed=csrc/guarded.h");
    println!("cargo:rerun-if-changed=csrc/gloo_api");
    println!("cargo:rerun-if-changed=csrc/nccl.cpp");
    println!("cargo:rerun-if-changed=csrc/nccl_backend.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed={}", ssl_build::NCCL_VAR);
    println!("cargo::rustc-check-cfg=cfg(ssl_nccl)");
    let nccl = ssl_build::nccl_requested();
    // torch-sys (links = "tch") publishes its library folder to direct dependents.
    let lib =
        PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report DEP_TCH_LIBTORCH_LIB"));
    let root = lib.parent().expect("libtorch lib folder has a parent").to_path_buf();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let base = || {
        let mut b = cc::Build::new();
        b.cpp(true)
            .pic(true)
            .warnings(false)
            .include(root.join("include"))
            .include(root.join("include/torch/csrc/api/include"))
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT")
            .flag("-DUSE_DISTRIBUTED");
        b
    };
    let mut main = base();
    // The gloo names c10d's ProcessGroupGloo.hpp mentions (the wheel ships no gloo headers).
    main.include("csrc/gloo_api")
        // Without this, c10d's Gloo header compiles to nothing.
        .flag("-DUSE_C10D_GLOO")
        .file("csrc/kernels.cpp")
        .file("csrc/distributed.cpp")
        .file("csrc/profiler.cpp")
        .file("csrc/block_cache.cpp");
    if !nccl {
        main.compile("ssl_core_kernels");
    } else {
        // torch/lib -> torch -> site-packages, where the nvidia packages are.
        let nvidia = root.parent().map(|p| p.join("nvidia")).unwrap_or_default();
        let includes = nccl_includes(&nvidia).unwrap_or_else(|e| panic!("{e}"));
        // distributed.cpp calls nccl.cpp: its library comes first on the link line.
        main.flag("-DSSL_WITH_NCCL").compile("ssl_core_kernels");
        base()
            .includes(&includes)
            .flag("-DUSE_C10D_NCCL")
            .flag("-DUSE_CUDA")
            .file("csrc/nccl.cpp")
            .compile("ssl_core_nccl");
        println!("cargo:rustc-cfg=ssl_nccl");
        for l in ["torch_cuda", "c10_cuda"] {
            println!("cargo:rustc-link-lib=dylib={l}");
        }
    }
    println!("cargo:libtorch_lib={}", lib.display());
    ssl_build::link_libtorch_dir(&lib);
}
