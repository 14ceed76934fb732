//! Overlapping the gradient all-reduce with the backward pass, as DDP's reducer does.
//!
//! The flat gradient buffer ([`super::GradSync`]) is cut into buckets at parameter boundaries
//! ([`bucket_layout`]). A post-accumulate-grad hook on every parameter (in the C++ layer,
//! `csrc/distributed.cpp`) counts its bucket down; as soon as the next bucket in index order is
//! complete, it is all-reduced asynchronously while backward goes on. Buckets leave in index order
//! only, so every rank issues the same collectives in the same order whatever order its
//! gradients arrive in. [`Overlap::finish`] sends what backward did not (buckets of parameters
//! that got no gradient this step), still in order.
//!
//! The parameters go into the buffer in reverse creation order, the order backward usually
//! produces their gradients, so the first buckets fill first. The first bucket is small (1 MiB,
//! DDP's `first_bucket_bytes`) so communication starts early.
use super::group::{check, raw, ProcessGroup};
use crate::error::{CoreError, Result};
use std::ffi::{c_int, c_void};
use tch::Tensor;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub(crate) fn ssl_overlap_new(
            g: *mut c_void,
            flat: *const c_void,
            params: *const *const c_void,
            bucket_of: *const c_int,
            n: c_int,
            starts: *const i64,
            lens: *const i64,
            buckets: c_int,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub(crate) fn ssl_overlap_arm(o: *mut c_void) -> *mut c_char;
        pub(crate) fn ssl_overlap_finish(o: *mut c_void, by_hooks: *mut i64) -> *mut c_char;
        pub(crate) fn ssl_overlap_free(o: *mut c_void);
    }
}

/// The first bucket's cap, as DDP's (1 MiB): the first all-reduce starts early in backward.
pub(crate) const FIRST_BUCKET_BYTES: i64 = 1 << 20;

/// Bucket size for the asynchronous all-reduce, as PyTorch DDP's default `bucket_cap_mb` (25).
pub(crate) const DEFAULT_BUCKET_MB: f64 = 25.0;

/// How a run's gradients travel: bucket size, and whether buckets leave during backward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    /// The cap of every bucket after the first, in bytes.
    pub bytes: i64,
    /// Send each bucket from backward's hooks as soon as it is complete (DDP's behaviour);
    /// otherwise all of them after backward.
    pub overlap: bool,
}

impl Default for BucketConfig {
    fn default() -> Self {
        BucketConfig { bytes: (DEFAULT_BUCKET_MB * 1024.0 * 1024.0) as i64, overlap: true }
    }
}

impl BucketConfig {
    /// From `--dist-bucket-mb` and `--no-dist-overlap`.
    pub(crate) fn from_flags(bucket_mb: Option<f64>, no_overlap: bool) -> Result<Self> {
        let mb = bucket_mb.unwrap_or(DEFAULT_BUCKET_MB);
        if !(mb.is_finite() && mb > 0.0 && mb <= 1024.0 * 1024.0) {
            return Err(CoreError::InvalidArgument(format!(
                "--dist-bucket-mb must be a positive number of MiB, got {mb}"
            )));
        }
        Ok(BucketConfig { bytes: ((mb * 1024.0 * 1024.0) as i64).max(4), overlap: !no_overlap })
    }
}

/// Buckets over a flat buffer holding parameters of `numels` elements each, in that order:
/// `(start, len)` of every bucket and each parameter's bucket. A bucket closes before the
/// parameter that would take it past its cap (`first_cap` elements for the first, `cap` for the
/// others); a parameter larger than the cap gets a bucket of its own. No parameter is split.
///
/// ```
/// use ssl_core::dist::overlap::bucket_layout;
/// let (buckets, of) = bucket_layout(&[3, 3, 5, 1], 4, 6);
/// assert_eq!(buckets, vec![(0, 3), (3, 3), (6, 6)]);
/// assert_eq!(of, vec![0, 1, 2, 2]);
/// ```
pub fn bucket_layout(numels: &[i64], first_cap: i64, cap: i64) -> (Vec<(i64, i64)>, Vec<usize>) {
    let mut buckets: Vec<(i64, i64)> = Vec::new();
    let mut of = Vec::with_capacity(numels.len());
    let mut offset = 0i64;
    for &n in numels {
        // The open bucket is the first while there is only one.
        let limit = if buckets.len() <= 1 { first_cap } else { cap };
        match buckets.last_mut() {
            Some(b) if b.1 + n <= limit => b.1 += n,
            _ => buckets.push((offset, n)),
        }
        of.push(buckets.len() - 1);
        offset += n;
    }
    (buckets, of)
}

/// The hooks of one flat gradient buffer. Dropping it removes them.
pub struct Overlap {
    raw: *mut c_void,
    group: &'static ProcessGroup,
}

// SAFETY: the C++ state is guarded by its own mutex; the handle is only freed in Drop.
unsafe impl Send for Overlap {}

impl Overlap {
    /// Hook `params`, whose gradients lie in `flat` at the buckets `layout` gives
    /// ([`bucket_layout`] over their sizes, in the same order).
    pub fn new(
        group: &'static ProcessGroup,
        flat: &Tensor,
        params: &[Tensor],
        layout: &(Vec<(i64, i64)>, Vec<usize>),
    ) -> Result<Self> {
        let (buckets, of) = layout;
        if of.len() != params.len() {
            return Err(CoreError::InvalidArgument(format!(
                "{} parameters but a bucket layout for {}",
                params.len(),
                of.len()
            )));
        }
        let ptrs: Vec<*const c_void> = params.iter().map(raw).collect();
        let of: Vec<c_int> = of.iter().map(|&b| b as c_int).collect();
        let starts: Vec<i64> = buckets.iter().map(|b| b.0).collect();
        let lens: Vec<i64> = buckets.iter().map(|b| b.1).collect();
        let mut out: *mut c_void = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the C++ side copies the arrays and keeps
        // its own references to the tensors.
        let err = unsafe {
            ffi::ssl_overlap_new(
                group.handle(),
                raw(flat),
                ptrs.as_ptr(),
                of.as_ptr(),
                of.len() as c_int,
                starts.as_ptr(),
                lens.as_ptr(),
                buckets.len() as c_int,
                &mut out,
            )
        };
        check("gradient hooks", group.world(), err)?;
        Ok(Overlap { raw: out, group })
    }

    /// Let the next backward pass send the buckets it completes (call it before the last
    /// micro-batch's backward of a step).
    pub(crate) fn arm(&self) -> Result<()> {
        let err = unsafe { ffi::ssl_overlap_arm(self.raw) };
        check("gradient hooks", self.group.world(), err)
    }

    /// Send every bucket backward did not, in order; returns how many backward sent. The
    /// all-reduces are in flight afterwards: [`ProcessGroup::wait`] completes them.
    pub fn finish(&self) -> Result<usize> {
        let mut by_hooks = 0i64;
        let err = unsafe { ffi::ssl_overlap_finish(self.raw, &mut by_hooks) };
        check("all-reduce", self.group.world(), err)?;
        Ok(by_hooks as usize)
    }
}

impl Drop for Overlap {
    fn drop(&mut self) {
        unsafe { ffi::ssl_overlap_free(self.raw) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_close_at_parameter_boundaries_with_a_small_first_one() {
        // DDP's rule on element counts: 1 MiB first (262144 floats), then the cap.
        let (b, of) = bucket_layout(&[100_000, 100_000, 100_000, 2_000_000, 10], 262_144, 1_000_000);
        assert_eq!(b, vec![(0, 200_000), (200_000, 100_000), (300_000, 2_000_000), (2_300_000, 10)]);
        assert_eq!(of, vec![0, 0, 1, 2, 3]);
        // The buckets tile the buffer.
        let total: i64 = b.iter().map(|x| x.1).sum();
        assert_eq!(total, 2_300_010);
        let (b, of) = bucket_layout(&[], 4, 4);
        assert!(b.is_empty() && of.is_empty());
    }
}
