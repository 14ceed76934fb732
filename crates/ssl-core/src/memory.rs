//! Keeping freed memory in the process, so that a training step's tensors do not page-fault.
//!
//! LibTorch's CPU allocator takes every tensor from `malloc` and gives it back at once. glibc
//! serves blocks above a threshold (128 KiB at first) with fresh `mmap`s and returns the top of
//! its heap to the system when more than a trim threshold is free. It raises both thresholds on
//! its own, to the size of the largest mapped block freed so far, so how often a process maps,
//! unmaps and page-faults the same activations again depends on the order of its first
//! allocations. Measured on a 2-core AMD EPYC VM (docs/src/performance.md): processes running the
//! same vision step took 14,000 to 192,000 minor faults per second, and their speed followed the
//! count (1,246 to 1,470 images/s for PyTorch's reference, 1,293 for ours). With the thresholds
//! fixed here our count fell to under 50 per second, and the step ran 1,724 images/s.
//!
//! [`keep_freed_memory`] fixes them: blocks up to 32 MiB (glibc's largest mmap threshold) come
//! from the heap, and up to 1 GiB of free heap stays mapped for the next step.
//!
//! Blocks over 32 MiB glibc maps afresh whatever its thresholds: text's logits and their
//! gradients (text mini: 30,000 to 95,000 faults per second with the thresholds fixed). For them
//! [`keep_freed_memory`] also installs a cache as LibTorch's CPU allocator ([`cache_large_blocks`],
//! `csrc/block_cache.cpp`): a freed block of [`LARGE_BLOCK`] or more goes to a free list, up to
//! [`CACHE_LIMIT`] in all, and the next tensor of its size takes it, mapped and written already.
//! Smaller blocks are served as LibTorch serves them. PyTorch keeps such a cache on CUDA, not on
//! the CPU.
//!
//! The `ssl` binary calls [`keep_freed_memory`] first thing; a program using the libraries can
//! call it too. The cost: a process keeps up to 1 GiB of freed heap and [`CACHE_LIMIT`] of freed
//! large blocks instead of returning them to the system ([`trim_block_cache`] returns the
//! latter).
//!
//! ```
//! ssl_core::memory::keep_freed_memory();
//! let a = tch::Tensor::zeros([64 << 20], (tch::Kind::Uint8, tch::Device::Cpu));
//! drop(a);
//! let _b = tch::Tensor::zeros([64 << 20], (tch::Kind::Uint8, tch::Device::Cpu));
//! let stats = ssl_core::memory::block_cache_stats().unwrap();
//! assert!(stats.hits >= 1);
//! ```

/// The largest block served from the heap instead of a fresh mapping (glibc's maximum).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// How much free memory at the heap's top stays mapped.
pub const TRIM_THRESHOLD: usize = 1 << 30;

/// The smallest block [`cache_large_blocks`] keeps: the largest glibc serves from its heap.
pub const LARGE_BLOCK: usize = MMAP_THRESHOLD;

/// How much freed memory in large blocks [`keep_freed_memory`] keeps at most.
pub const CACHE_LIMIT: usize = 2 << 30;

mod ffi {
    extern "C" {
        pub fn ssl_block_cache_install(min_bytes: u64, limit_bytes: u64) -> std::ffi::c_int;
        pub fn ssl_block_cache_stats(out: *mut u64) -> std::ffi::c_int;
        pub fn ssl_block_cache_trim();
    }
}

/// Fix glibc's allocation thresholds ([`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]) for this process,
/// and cache LibTorch's large blocks ([`cache_large_blocks`] with [`LARGE_BLOCK`] and
/// [`CACHE_LIMIT`]). Returns whether the thresholds took effect (always false where the C
/// library is not glibc) and the cache was installed.
///
/// `SSL_BLOCK_CACHE=0` in the environment leaves LibTorch's allocator as it is (the cache is then
/// reported as not installed): the switch for measuring what the cache is worth.
pub fn keep_freed_memory() -> bool {
    let thresholds = fix_thresholds();
    let cache = std::env::var_os(CACHE_SWITCH).is_none_or(|v| v != "0");
    cache && cache_large_blocks(LARGE_BLOCK, CACHE_LIMIT) && thresholds
}

/// The environment variable that turns the large-block cache off (`0`).
pub const CACHE_SWITCH: &str = "SSL_BLOCK_CACHE";

/// Install the large-block cache as LibTorch's CPU allocator: freed blocks of `min_bytes` or more
/// are kept for the next tensor of their size (rounded up to 2 MiB; a block up to an eighth
/// larger than asked serves too), `limit_bytes` in all. Once per process: later calls keep the
/// first call's sizes. Returns whether LibTorch now allocates through it. Tensors made before
/// the call are freed as they were allocated.
pub fn cache_large_blocks(min_bytes: usize, limit_bytes: usize) -> bool {
    // SAFETY: plain integers in; the C++ side installs its allocator once, under std::call_once.
    unsafe { ffi::ssl_block_cache_install(min_bytes as u64, limit_bytes as u64) == 1 }
}

/// What the large-block cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCacheStats {
    /// Large blocks served from the free list.
    pub hits: u64,
    /// Large blocks mapped afresh.
    pub misses: u64,
    /// Bytes in the free list now.
    pub cached_bytes: u64,
    /// Blocks in the free list now.
    pub cached_blocks: u64,
    /// Freed large blocks given back to the system because the free list was full.
    pub released: u64,
}

/// The cache's counters, or `None` before [`cache_large_blocks`].
pub fn block_cache_stats() -> Option<BlockCacheStats> {
    let mut out = [0u64; 5];
    // SAFETY: the C++ side writes at most five u64 into `out`.
    if unsafe { ffi::ssl_block_cache_stats(out.as_mut_ptr()) } != 1 {
        return None;
    }
    let [hits, misses, cached_bytes, cached_blocks, released] = out;
    Some(BlockCacheStats { hits, misses, cached_bytes, cached_blocks, released })
}

/// Give every cached large block back to the system (the cache stays installed).
pub fn trim_block_cache() {
    // SAFETY: takes the cache's lock; blocks in the free list belong to no tensor.
    unsafe { ffi::ssl_block_cache_trim() }
}

fn fix_thresholds() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; both values are within glibc's ranges.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
