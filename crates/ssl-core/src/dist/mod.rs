//! Data-parallel training on PyTorch's own distributed engine (c10d): a TCPStore rendezvous and
//! ProcessGroupGloo collectives, the same ones `torch.distributed` uses, reached through the C++
//! layer (`csrc/distributed.cpp`).
//!
//! - [`mod@world`]: which process this is, from torchrun's or Slurm's variables.
//! - [`mod@group`]: the process group (broadcast, asynchronous all-reduce, barrier), with a timeout on
//!   every collective, so a dead or hung peer is an error and never a hang.
//! - [`mod@grads`]: the flat gradient buffer the trainer averages in asynchronous buckets.
//! - [`mod@overlap`]: the buckets leave from backward's hooks as they fill, as in DDP.
//! - [`mod@launch`]: `--nproc-per-node N` starts N local workers with torchrun's variables.
//!
//! A process joins at most one group, created once by [`init`] (as `torch.distributed`'s default
//! group is); the trainer finds it with [`group()`].
//!
//! ```
//! // One process: no group, and rank 0 does everything.
//! assert!(ssl_core::dist::group().is_none());
//! assert!(ssl_core::dist::world().is_main());
//! ```
pub mod grads;
pub mod group;
pub mod launch;
pub mod overlap;
pub mod world;

pub use grads::GradSync;
pub use group::ProcessGroup;
pub use overlap::BucketConfig;
pub use world::{Launcher, World};

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Duration;
use tch::{nn::VarStore, Tensor};

/// The collective backend (the discriminant is the C++ layer's `backend` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Gloo: CPU tensors (the default on the CPU).
    Gloo = 0,
    /// NCCL: CUDA tensors (the default on CUDA), in builds made with `SSL_NCCL=1`.
    Nccl = 1,
}

impl Backend {
    /// The backend for `device` unless one was asked for.
    pub fn for_device(asked: Option<Backend>, device: tch::Device) -> Backend {
        asked.unwrap_or(if device.is_cuda() { Backend::Nccl } else { Backend::Gloo })
    }
}

impl Backend {
    /// Whether this build can use the backend on `device`: NCCL needs a CUDA device and a build
    /// made with `SSL_NCCL=1` (`cfg(ssl_nccl)`, set by ssl-core's build script).
    ///
    /// ```
    /// use ssl_core::dist::Backend;
    /// assert!(Backend::Gloo.check_available(tch::Device::Cpu).is_ok());
    /// assert!(Backend::Nccl.check_available(tch::Device::Cpu).is_err());
    /// ```
    pub fn check_available(self, device: tch::Device) -> Result<()> {
        match self {
            Backend::Gloo => Ok(()),
            Backend::Nccl if !device.is_cuda() => Err(CoreError::InvalidArgument(format!(
                "the NCCL backend needs a CUDA device, not {device:?}: use --device cuda or --dist-backend gloo"
            ))),
            Backend::Nccl if cfg!(ssl_nccl) => Ok(()),
            Backend::Nccl => Err(CoreError::InvalidArgument(
                "this build has no NCCL backend (it links Gloo only): rebuild with SSL_NCCL=1 (see \
                 docs/src/scaling-out.md) or use --dist-backend gloo"
                    .into(),
            )),
        }
    }
}

/// The default collective timeout: a hung peer fails the run after this long.
pub(crate) const DEFAULT_TIMEOUT_SECS: f64 = 600.0;

static GROUP: OnceLock<ProcessGroup> = OnceLock::new();

/// Join the run's process group (once per process), whose tensors live on `device` and whose
/// gradients the trainer buckets as `buckets` says. A world of one process creates nothing.
pub fn init(
    world: &World,
    backend: Backend,
    device: tch::Device,
    timeout: Duration,
    buckets: BucketConfig,
) -> Result<Option<&'static ProcessGroup>> {
    if !world.is_distributed() {
        return Ok(None);
    }
    if let Some(g) = GROUP.get() {
        if g.world() == world {
            return Ok(Some(g));
        }
        return Err(CoreError::InvalidArgument("this process already joined another process group".into()));
    }
    let group = ProcessGroup::new(world, backend, device, timeout)?.with_buckets(buckets);
    Ok(Some(GROUP.get_or_init(|| group)))
}

/// The process group this process joined, if any.
pub fn group() -> Option<&'static ProcessGroup> {
    GROUP.get()
}

/// This process's world: the group's, or one process.
pub fn world() -> World {
    group().map(|g| g.world().clone()).unwrap_or_default()
}

/// Copy every variable of `vs` (parameters and buffers, e.g. BatchNorm statistics) from rank 0
/// to all ranks: one flat broadcast.
pub(crate) fn broadcast_vars(group: &ProcessGroup, vs: &VarStore) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let _guard = tch::no_grad_guard();
    let mut by_kind: std::collections::BTreeMap<String, Vec<&Tensor>> = Default::default();
    for (_, t) in &vars {
        by_kind.entry(format!("{:?}", t.kind())).or_default().push(t);
    }
    for ts in by_kind.values() {
        let flat = Tensor::cat(&ts.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(), 0);
        group.broadcast_(&flat, 0)?;
        let mut offset = 0i64;
        for t in ts {
            let n = t.numel() as i64;
            t.shallow_clone().copy_(&flat.narrow(0, offset, n).view(t.size().as_slice()));
            offset += n;
        }
    }
    Ok(())
}
