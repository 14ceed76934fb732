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
//! call it too. The cost: a process keeps up to 1 GiB of freed heap and up to [`CACHE_LIMIT`] of
//! freed large blocks instead of returning them to the system ([`trim_block_cache`] returns the
//! latter).
//!
//! The cache never holds what the system needs. Its limit is [`CACHE_LIMIT`] or an eighth of
//! the process's [memory budget](budget) (the container's limit, else the memory available at
//! start), whichever is less; a cached block that [`MAX_AGE`] large allocations pass by goes
//! back to the system; a fresh block that would bring the process's resident memory above 90% of
//! the budget first gives every cached block back (under a container limit or Linux overcommit no
//! allocation fails before the OOM killer acts, so the cache cannot wait for one to fail); and
//! its lock is held across `fork()`, so a child never inherits it locked.
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

/// A cached block that this many large allocations pass by without taking goes back to the
/// system. A training step makes a few large tensors of the same sizes every step (text mini:
/// about ten), so a block of a size that recurs is taken long before.
pub const MAX_AGE: u64 = 256;

/// The share of the memory budget the cache may hold: one eighth.
pub const CACHE_SHARE_OF_BUDGET: u64 = 8;

mod ffi {
    use std::ffi::{c_char, c_int};
    extern "C" {
        pub(crate) fn ssl_block_cache_install(
            min_bytes: u64,
            limit_bytes: u64,
            budget_bytes: u64,
            max_age: u64,
            installed: *mut c_int,
        ) -> *mut c_char;
        pub(crate) fn ssl_block_cache_stats(out: *mut u64, installed: *mut c_int) -> *mut c_char;
        pub(crate) fn ssl_block_cache_trim() -> *mut c_char;
    }
}

/// The C++ layer's error string, if any (freed here).
fn failed(err: *mut std::ffi::c_char) -> Option<String> {
    crate::kernels::take_error(err)
}

/// Where the memory budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetSource {
    /// `memory.max` of the process's cgroup (v2).
    CgroupV2,
    /// `memory.limit_in_bytes` of the process's memory cgroup (v1).
    CgroupV1,
    /// `MemAvailable` of /proc/meminfo when the budget was read.
    MemAvailable,
    /// Given by the user (`--max-memory`).
    Flag,
}

/// The memory this process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryBudget {
    pub bytes: u64,
    pub source: BudgetSource,
}

/// The memory this process may use: its container's limit (cgroup v2, then v1) when one is set,
/// else the memory available now. `None` where neither can be read.
pub fn budget() -> Option<MemoryBudget> {
    budget_from(std::path::Path::new("/"))
}

/// [`budget`], reading `/sys/fs/cgroup`, `/proc/self/cgroup` and `/proc/meminfo` below `root`.
pub(crate) fn budget_from(root: &std::path::Path) -> Option<MemoryBudget> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    // The process's own cgroup (v2: one line `0::/path`), else the root of the hierarchy.
    let own = read("proc/self/cgroup")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("0::").map(|p| p.trim_start_matches('/').to_owned())))
        .unwrap_or_default();
    let limit = |p: String| read(&p).and_then(|v| v.trim().parse::<u64>().ok());
    let v2 = [format!("sys/fs/cgroup/{own}/memory.max"), "sys/fs/cgroup/memory.max".to_owned()];
    if let Some(bytes) = v2.into_iter().find_map(|p| limit(p.replace("//", "/"))) {
        return Some(MemoryBudget { bytes, source: BudgetSource::CgroupV2 });
    }
    // cgroup v1 reports "no limit" as a huge number (a page-rounded i64::MAX).
    if let Some(bytes) = limit("sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned()).filter(|&b| b < 1 << 60) {
        return Some(MemoryBudget { bytes, source: BudgetSource::CgroupV1 });
    }
    let meminfo = read("proc/meminfo")?;
    let kb: u64 = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(MemoryBudget { bytes: kb * 1024, source: BudgetSource::MemAvailable })
}

/// The cache's limit under `budget`: [`CACHE_LIMIT`], or [`CACHE_SHARE_OF_BUDGET`] of the
/// budget when that is less.
pub fn cache_limit(budget: Option<MemoryBudget>) -> usize {
    budget.map_or(CACHE_LIMIT, |b| CACHE_LIMIT.min((b.bytes / CACHE_SHARE_OF_BUDGET) as usize))
}

/// Fix glibc's allocation thresholds ([`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]) for this process,
/// and cache LibTorch's large blocks ([`cache_large_blocks`] with [`LARGE_BLOCK`], the limit of
/// [`cache_limit`] and this process's [`budget`]). Returns whether the thresholds took effect (always false where the C
/// library is not glibc) and the cache was installed.
///
/// `SSL_BLOCK_CACHE=0` in the environment leaves LibTorch's allocator as it is (the cache is then
/// reported as not installed): the switch for measuring what the cache is worth.
pub fn keep_freed_memory() -> bool {
    let thresholds = fix_thresholds();
    let cache = std::env::var_os(CACHE_SWITCH).is_none_or(|v| v != "0");
    let budget = budget();
    cache && cache_large_blocks(LARGE_BLOCK, cache_limit(budget), budget.map_or(0, |b| b.bytes as usize)) && thresholds
}

/// The environment variable that turns the large-block cache off (`0`).
pub(crate) const CACHE_SWITCH: &str = "SSL_BLOCK_CACHE";

/// Install the large-block cache as LibTorch's CPU allocator: freed blocks of `min_bytes` or more
/// are kept for the next tensor of their size (rounded up to 2 MiB; a block up to an eighth
/// larger than asked serves too), `limit_bytes` in all, each for at most [`MAX_AGE`] large
/// allocations; with a `budget_bytes` (0: none), a fresh block that would bring the resident
/// memory above 90% of it empties the cache first. Once per process: later calls keep the first
/// call's sizes. Returns whether LibTorch now allocates through it (false, with a warning, if
/// the C++ side failed). Tensors made before the call are freed as they were allocated.
pub fn cache_large_blocks(min_bytes: usize, limit_bytes: usize, budget_bytes: usize) -> bool {
    let mut installed = 0;
    // SAFETY: plain integers and a valid out-pointer; the C++ side installs its allocator once,
    // under std::call_once, and reports any exception as an error string.
    let err = unsafe {
        ffi::ssl_block_cache_install(min_bytes as u64, limit_bytes as u64, budget_bytes as u64, MAX_AGE, &mut installed)
    };
    if let Some(e) = failed(err) {
        eprintln!("warning: the large-block cache could not be installed: {e}");
        return false;
    }
    installed == 1
}

/// What the large-block cache has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Cached blocks given back because [`MAX_AGE`] large allocations passed them by.
    pub aged: u64,
    /// Times the whole cache was given back because the process neared its budget.
    pub pressure_trims: u64,
    /// The most the cache holds, in bytes.
    pub limit_bytes: u64,
}

/// The cache's counters, or `None` before [`cache_large_blocks`].
pub fn block_cache_stats() -> Option<BlockCacheStats> {
    let mut out = [0u64; 8];
    let mut installed = 0;
    // SAFETY: the C++ side writes at most eight u64 into `out`, under the cache's lock.
    if failed(unsafe { ffi::ssl_block_cache_stats(out.as_mut_ptr(), &mut installed) }).is_some() || installed != 1 {
        return None;
    }
    let [hits, misses, cached_bytes, cached_blocks, released, aged, pressure_trims, limit_bytes] = out;
    Some(BlockCacheStats { hits, misses, cached_bytes, cached_blocks, released, aged, pressure_trims, limit_bytes })
}

/// Give every cached large block back to the system (the cache stays installed).
pub fn trim_block_cache() {
    // SAFETY: takes the cache's lock; blocks in the free list belong to no tensor.
    if let Some(e) = failed(unsafe { ffi::ssl_block_cache_trim() }) {
        eprintln!("warning: trimming the large-block cache failed: {e}");
    }
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

/// The memory a run used, as `report.json` shows it (`memory`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryUse {
    /// The budget the process ran under ([`budget`]), if it could be read.
    pub budget: Option<MemoryBudget>,
    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    pub peak_resident_bytes: Option<u64>,
    /// The large-block cache's counters, when it is installed.
    pub block_cache: Option<BlockCacheStats>,
}

/// This process's memory use now: [`budget`], the peak resident memory and the cache's counters.
pub fn usage() -> MemoryUse {
    MemoryUse { budget: budget(), peak_resident_bytes: status_bytes("VmHWM:"), block_cache: block_cache_stats() }
}

/// A field of `/proc/self/status` that Linux gives in kB (`VmHWM:`, `VmRSS:`, `RssAnon:`), in
/// bytes; `None` where it cannot be read. The one reader of that file.
pub(crate) fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        d
    }

    const MEMINFO: &str = "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n";

    #[test]
    fn the_budget_is_the_containers_limit_else_the_memory_available() {
        let v2 = tree(&[
            ("proc/self/cgroup", "0::/job.slice\n"),
            ("sys/fs/cgroup/job.slice/memory.max", "4294967296\n"),
            ("proc/meminfo", MEMINFO),
        ]);
        assert_eq!(budget_from(v2.path()), Some(MemoryBudget { bytes: 4 << 30, source: BudgetSource::CgroupV2 }));
        // "max" is no limit: the memory available counts.
        let unlimited =
            tree(&[("proc/self/cgroup", "0::/\n"), ("sys/fs/cgroup/memory.max", "max\n"), ("proc/meminfo", MEMINFO)]);
        let b = budget_from(unlimited.path()).unwrap();
        assert_eq!((b.bytes, b.source), (20_000_000 * 1024, BudgetSource::MemAvailable));
        let v1 = tree(&[("sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648\n"), ("proc/meminfo", MEMINFO)]);
        assert_eq!(budget_from(v1.path()).unwrap().source, BudgetSource::CgroupV1);
        let v1_unlimited =
            tree(&[("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n"), ("proc/meminfo", MEMINFO)]);
        assert_eq!(budget_from(v1_unlimited.path()).unwrap().source, BudgetSource::MemAvailable);
        assert_eq!(budget_from(tree(&[]).path()), None);
    }

    #[test]
    fn the_cache_takes_an_eighth_of_a_small_budget_and_at_most_its_limit() {
        let b = |bytes| Some(MemoryBudget { bytes, source: BudgetSource::Flag });
        assert_eq!(cache_limit(b(4 << 30)), 512 << 20);
        assert_eq!(cache_limit(b(64 << 30)), CACHE_LIMIT);
        assert_eq!(cache_limit(None), CACHE_LIMIT);
    }
}
