//! A c10d process group (TCPStore rendezvous, ProcessGroupGloo or ProcessGroupNCCL collectives),
//! through the C++ layer in `csrc/distributed.cpp` (and `csrc/nccl.cpp` in builds with NCCL).
use super::overlap::BucketConfig;
use super::world::World;
use super::Backend;
use crate::error::{CoreError, Result};
use std::ffi::{c_char, c_int, c_void, CString};
use std::time::Duration;
use tch::Tensor;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub(crate) fn ssl_dist_new(
            backend: c_int,
            host: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            serve: c_int,
            prefix: *const c_char,
            timeout_s: f64,
            device: c_int,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub(crate) fn ssl_dist_free(g: *mut c_void);
        pub(crate) fn ssl_dist_broadcast(g: *mut c_void, t: *const c_void, root: c_int) -> *mut c_char;
        pub(crate) fn ssl_dist_allreduce_sum_async(g: *mut c_void, t: *const c_void) -> *mut c_char;
        pub(crate) fn ssl_dist_wait(g: *mut c_void) -> *mut c_char;
        pub(crate) fn ssl_dist_barrier(g: *mut c_void) -> *mut c_char;
        pub(crate) fn ssl_set_grad(param: *const c_void, grad: *const c_void) -> *mut c_char;
    }
}

pub(super) fn raw(t: &Tensor) -> *const c_void {
    t.as_ptr() as *const c_void
}

/// The error string the C++ layer returned, if any, as this rank's error.
pub(super) fn check(what: &str, world: &World, err: *mut c_char) -> Result<()> {
    match crate::kernels::take_error(err) {
        None => Ok(()),
        Some(message) => {
            Err(CoreError::Distributed { rank: world.rank, size: world.size, what: what.to_owned(), message })
        }
    }
}

/// Make `grad` the `.grad` of `param`, so backward accumulates into it (a view into a flat
/// buffer). tch binds no setter for it.
pub(crate) fn set_grad(param: &Tensor, grad: &Tensor) -> Result<()> {
    let err = unsafe { ffi::ssl_set_grad(raw(param), raw(grad)) };
    check("set_grad", &World::single(), err)
}

/// The process group of a data-parallel run: every rank must make the same calls in the same
/// order.
pub struct ProcessGroup {
    raw: *mut c_void,
    world: World,
    timeout: Duration,
    buckets: BucketConfig,
}

// SAFETY: c10d process groups are thread-safe, and the one piece of state of ours, the list of
// in-flight collectives, is only touched under its mutex (`SslGroup::pending_mu` in
// csrc/distributed.cpp; tests/group_threads.rs drives it from two threads). The handle is only
// freed in Drop.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// Rendezvous with the other ranks and create a group of `backend`, whose tensors live on
    /// `device` (NCCL: this rank's CUDA device; Gloo: any). Fails (rather than waits forever)
    /// when the others do not arrive within `timeout`; the same timeout bounds every collective
    /// afterwards.
    pub fn new(world: &World, backend: Backend, device: tch::Device, timeout: Duration) -> Result<Self> {
        backend.check_available(device)?;
        let cuda_index = match device {
            tch::Device::Cuda(i) => i as c_int,
            _ => -1,
        };
        let host = CString::new(world.master_addr.clone())
            .map_err(|_| CoreError::InvalidArgument("MASTER_ADDR contains a NUL byte".into()))?;
        let prefix = CString::new(world.store_prefix())
            .map_err(|_| CoreError::InvalidArgument("the store prefix contains a NUL byte".into()))?;
        let mut out: *mut c_void = std::ptr::null_mut();
        let err = unsafe {
            ffi::ssl_dist_new(
                backend as c_int,
                host.as_ptr(),
                world.master_port as c_int,
                world.rank as c_int,
                world.size as c_int,
                world.serves_store() as c_int,
                prefix.as_ptr(),
                timeout.as_secs_f64(),
                cuda_index,
                &mut out,
            )
        };
        check(&format!("rendezvous at {}:{}", world.master_addr, world.master_port), world, err)?;
        Ok(ProcessGroup { raw: out, world: world.clone(), timeout, buckets: BucketConfig::default() })
    }

    /// The same group, its gradients bucketed as `buckets` says (default: [`BucketConfig::default`]).
    pub(crate) fn with_buckets(mut self, buckets: BucketConfig) -> Self {
        self.buckets = buckets;
        self
    }

    /// How the trainer buckets the gradients over this group.
    pub fn buckets(&self) -> BucketConfig {
        self.buckets
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The collective timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The C++ group, for the other wrappers of the C++ layer ([`super::overlap`]).
    pub(super) fn handle(&self) -> *mut c_void {
        self.raw
    }

    /// Copy `t` from rank `root` to every rank, in place.
    pub fn broadcast_(&self, t: &Tensor, root: usize) -> Result<()> {
        let err = unsafe { ffi::ssl_dist_broadcast(self.raw, raw(t), root as c_int) };
        check("broadcast", &self.world, err)
    }

    /// Start summing `t` over the ranks, in place; [`ProcessGroup::wait`] completes every
    /// collective started. `t` must stay alive and untouched until then.
    pub fn all_reduce_sum_async(&self, t: &Tensor) -> Result<()> {
        let err = unsafe { ffi::ssl_dist_allreduce_sum_async(self.raw, raw(t)) };
        check("all-reduce", &self.world, err)
    }

    /// Wait for every collective started since the last wait.
    pub fn wait(&self) -> Result<()> {
        let err = unsafe { ffi::ssl_dist_wait(self.raw) };
        check("all-reduce", &self.world, err)
    }

    /// Sum `t` over the ranks, in place, and wait for it.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<()> {
        self.all_reduce_sum_async(t)?;
        self.wait()
    }

    /// Wait until every rank gets here.
    pub fn barrier(&self) -> Result<()> {
        let err = unsafe { ffi::ssl_dist_barrier(self.raw) };
        check("barrier", &self.world, err)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { ffi::ssl_dist_free(self.raw) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn set_grad_makes_backward_accumulate_into_a_view_of_a_flat_buffer() {
        let p = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let flat = Tensor::zeros([5], (Kind::Float, tch::Device::Cpu));
        set_grad(&p, &flat.narrow(0, 1, 3)).unwrap();
        (&p * 2.0).sum(Kind::Float).backward();
        let got: Vec<f32> = Vec::try_from(&flat).unwrap();
        assert_eq!(got, vec![0.0, 2.0, 2.0, 2.0, 0.0]);
    }
}
