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
//! from the heap, and up to 1 GiB of free heap stays mapped for the next step. The `ssl` binary
//! calls it first thing; a program using the libraries can call it too. The cost is that a
//! process keeps up to 1 GiB of freed memory instead of returning it, its peak resident size
//! unchanged.
//!
//! ```
//! ssl_core::memory::keep_freed_memory();
//! ```

/// The largest block served from the heap instead of a fresh mapping (glibc's maximum).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// How much free memory at the heap's top stays mapped.
pub const TRIM_THRESHOLD: usize = 1 << 30;

/// Fix glibc's allocation thresholds ([`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]) for this process.
/// Returns whether both took effect (always false where the C library is not glibc).
pub fn keep_freed_memory() -> bool {
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
