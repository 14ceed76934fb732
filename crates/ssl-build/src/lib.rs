//! Build-script helper shared by every crate whose binaries or tests link LibTorch.
//!
//! `cargo:rustc-link-arg` only reaches the targets of the package whose build script prints it,
//! so each such package calls [`link_libtorch`] from its own `build.rs`. It bakes an rpath to the
//! LibTorch library folder into binaries and tests (no hand-set `LD_LIBRARY_PATH`), and forces a
//! `DT_NEEDED` entry for `libtorch_cuda` with `--no-as-needed`: without it the linker drops the
//! CUDA library (no symbol is referenced directly) and CUDA is silently unavailable at run time.
//!
//! ```no_run
//! // in build.rs, inside `fn main()`:
//! ssl_build::link_libtorch();
//! ```

use std::path::Path;

/// Name of the variable Cargo gives to direct dependents of `ssl-core` (its `links` key is
/// `ssl_core_kernels`, its build script prints `cargo:libtorch_lib=...`).
pub const LIB_DIR_VAR: &str = "DEP_SSL_CORE_KERNELS_LIBTORCH_LIB";

/// Print the link arguments for a package that depends on `ssl-core`.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed={LIB_DIR_VAR}");
    if let Ok(dir) = std::env::var(LIB_DIR_VAR) {
        link_libtorch_dir(Path::new(&dir));
    }
}

/// Print the link arguments for a known LibTorch library folder.
pub fn link_libtorch_dir(dir: &Path) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    for cuda_lib in ["torch_cuda", "torch_cuda_cu", "torch_cuda_cpp"] {
        if dir.join(format!("lib{cuda_lib}.so")).exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-l{cuda_lib},--as-needed");
        }
    }
}

/// The variable that asks for the NCCL backend (`SSL_NCCL=1`): ssl-core's build script then
/// compiles `csrc/nccl.cpp`, and `cargo xtask` installs [`NCCL_HEADER_PACKAGES`] first.
pub const NCCL_VAR: &str = "SSL_NCCL";

/// Whether this build asks for the NCCL backend ([`NCCL_VAR`] is `1`).
pub fn nccl_requested() -> bool {
    std::env::var(NCCL_VAR).is_ok_and(|v| v == "1")
}

/// The CUDA headers the NCCL build compiles against that the torch wheel does not bring, as
/// PyPI (name, version): the crt and cccl headers of CUDA 13.0, the release of the wheel's CUDA
/// runtime. Headers only; nothing is linked from them.
pub const NCCL_HEADER_PACKAGES: [(&str, &str); 2] = [("nvidia-cuda-crt", "13.0.88"), ("nvidia-cuda-cccl", "13.0.85")];
