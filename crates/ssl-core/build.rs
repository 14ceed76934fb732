//! Compiles the small C++ layer (`csrc/kernels.cpp`) against the same LibTorch headers and C++ ABI
//! as `torch-sys`, and passes the LibTorch library folder on to dependents.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/kernels.cpp");
    println!("cargo:rerun-if-changed=csrc/distributed.cpp");
    println!("cargo:rerun-if-changed=csrc/profiler.cpp");
    println!("cargo:rerun-if-changed=csrc/guarded.h");
    println!("cargo:rerun-if-changed=csrc/gloo_api");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    // torch-sys (links = "tch") publishes its library folder to direct dependents.
    let lib =
        PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys did not report DEP_TCH_LIBTORCH_LIB"));
    let root = lib.parent().expect("libtorch lib folder has a parent").to_path_buf();
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        // The gloo names c10d's ProcessGroupGloo.hpp mentions (the wheel ships no gloo headers).
        .include("csrc/gloo_api")
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // Without these, c10d's Gloo header compiles to nothing.
        .flag("-DUSE_DISTRIBUTED")
        .flag("-DUSE_C10D_GLOO")
        .file("csrc/kernels.cpp")
        .file("csrc/distributed.cpp")
        .file("csrc/profiler.cpp")
        .compile("ssl_core_kernels");
    println!("cargo:libtorch_lib={}", lib.display());
    ssl_build::link_libtorch_dir(&lib);
}
