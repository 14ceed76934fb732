//! CUDA is really used when a GPU is present; `--device cuda` never falls back to the CPU.
//!
//! Without a GPU, asking for CUDA is an error, and the GPU tests are listed as *ignored* (with
//! their reason) rather than passing silently. On a GPU machine, run them with
//! `-- --include-ignored`: they train the toy objective on CUDA with bf16 autocast and the fused
//! AdamW kernel, check that the parameters live on the GPU and that the loader pins its batches,
//! and run NCCL collectives. There `SSL_REQUIRE_CUDA=1` makes a missing GPU a failure.
use ssl_core::kernels::Bf16Autocast;
use ssl_core::toy::{ToyObjective, ToySource};
use ssl_core::trainer::{Objective, TrainConfig, Trainer};
use std::sync::Arc;
use tch::Device;

#[test]
fn cuda_is_never_faked_when_absent() {
    if !tch::Cuda::is_available() {
        let err = ssl_core::device::parse("cuda").unwrap_err().to_string();
        assert!(err.contains("no CUDA GPU"), "{err}");
    }
    let cpu = ssl_core::dist::Backend::Nccl.check_available(Device::Cpu).unwrap_err().to_string();
    assert!(cpu.contains("needs a CUDA device"), "{cpu}");
}

#[test]
#[ignore = "needs a CUDA GPU: run with -- --include-ignored on a GPU machine"]
fn cuda_is_used_when_present() {
    let required = std::env::var("SSL_REQUIRE_CUDA").is_ok_and(|v| v == "1");
    if !tch::Cuda::is_available() {
        assert!(!required, "SSL_REQUIRE_CUDA=1 but LibTorch sees no CUDA device (is libtorch_cuda linked?)");
        panic!("no CUDA GPU: this test needs one");
    }
    let device = ssl_core::device::parse("cuda").unwrap();
    assert_eq!(device, Device::Cuda(0));
    {
        let _guard = Bf16Autocast::new(true, device).unwrap();
        assert!(Bf16Autocast::is_enabled());
    }
    assert!(!Bf16Autocast::is_enabled());
    let dir = tempfile::tempdir().unwrap();
    let mut obj = ToyObjective::new(device, 4, 0);
    let cfg = TrainConfig { steps: 20, batch_size: 32, warmup_steps: 2, progress: false, ..Default::default() };
    let s = Trainer::new(cfg, dir.path(), device).fit(&mut obj, Arc::new(ToySource::new(256, 4))).unwrap();
    assert!(s.report.final_loss.is_finite() && s.report.final_loss < s.losses[0].1);
    for (name, t) in obj.var_store().variables() {
        assert!(t.device().is_cuda(), "{name} is on {:?}", t.device());
    }
    // The loader page-locks batches for a CUDA step, and the step's copy of a pinned batch is
    // the same numbers as an ordinary copy.
    use ssl_core::loader::{Loader, LoaderPosition, Target};
    let target = Target { shard: (0, 1), device, ..Default::default() };
    let mut loader = Loader::sharded(Arc::new(ToySource::new(64, 4)), 16, 1, LoaderPosition::default(), 1, 1, target);
    let (x, _) = loader.next_batch().unwrap().batch;
    assert!(x.is_pinned(device), "the loader did not pin a batch for {device:?}");
    let on = ssl_core::device::upload(&x, device).unwrap();
    assert!(on.device().is_cuda());
    assert!(on.to_device(Device::Cpu).equal(&x.to_device(device).to_device(Device::Cpu)));
}

/// The NCCL backend in a group of one process on GPU 0: rendezvous, broadcast, all-reduce and
/// barrier on CUDA tensors. With `SSL_REQUIRE_NCCL=1` (the GPU check script) a build without NCCL
/// (made without `SSL_NCCL=1`) or a machine without a GPU fails; elsewhere each is checked to be
/// refused with its reason.
#[test]
#[ignore = "needs a CUDA GPU: run with -- --include-ignored on a GPU machine"]
fn nccl_group_of_one_runs_collectives_on_the_gpu() {
    use ssl_core::dist::{Backend, ProcessGroup, World};
    let required = std::env::var("SSL_REQUIRE_NCCL").is_ok_and(|v| v == "1");
    if !tch::Cuda::is_available() {
        assert!(!required, "SSL_REQUIRE_NCCL=1 but LibTorch sees no CUDA device");
        panic!("no CUDA GPU: this test needs one");
    }
    let device = Device::Cuda(0);
    if let Err(e) = Backend::Nccl.check_available(device) {
        assert!(!required, "SSL_REQUIRE_NCCL=1 but {e}");
        assert!(e.to_string().contains("SSL_NCCL=1"), "{e}");
        return;
    }
    let world = World {
        master_addr: "127.0.0.1".into(),
        master_port: ssl_core::dist::launch::free_port().unwrap(),
        ..World::single()
    };
    let group = ProcessGroup::new(&world, Backend::Nccl, device, std::time::Duration::from_secs(60)).unwrap();
    let t = tch::Tensor::arange(1000, (tch::Kind::Float, device));
    let want = t.copy();
    group.broadcast_(&t, 0).unwrap();
    group.all_reduce_sum(&t).unwrap();
    group.barrier().unwrap();
    tch::Cuda::synchronize(0);
    assert!(t.device().is_cuda());
    // One rank: the sum is the tensor itself.
    assert!(t.equal(&want), "the all-reduce of one rank changed the tensor");
    let run = ssl_core::bench::all_reduce_times(&group, 1 << 20, 5, device).unwrap();
    eprintln!("NCCL all-reduce of 1M floats on one GPU: median {:.3} ms", run.ms.median);
}
