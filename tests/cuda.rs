//! CUDA is really used when a GPU is present; `--device cuda` never falls back to the CPU.
//!
//! On a machine with a GPU, or with `SSL_REQUIRE_CUDA=1` (which makes a missing GPU a failure),
//! this trains the toy objective on CUDA with bf16 autocast and the fused AdamW kernel, and checks
//! that the parameters live on the GPU. Elsewhere it checks that asking for CUDA is an error.
use ssl_core::kernels::Bf16Autocast;
use ssl_core::toy::{ToyObjective, ToySource};
use ssl_core::trainer::{Objective, TrainConfig, Trainer};
use std::sync::Arc;
use tch::Device;

#[test]
fn cuda_is_used_when_present_and_never_faked_when_absent() {
    let required = std::env::var("SSL_REQUIRE_CUDA").is_ok_and(|v| v == "1");
    if !tch::Cuda::is_available() {
        assert!(!required, "SSL_REQUIRE_CUDA=1 but LibTorch sees no CUDA device (is libtorch_cuda linked?)");
        let err = ssl_core::device::parse("cuda").unwrap_err().to_string();
        assert!(err.contains("no CUDA GPU"), "{err}");
        return;
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
    let s = Trainer::new(cfg, dir.path(), device).fit(&mut obj, Arc::new(ToySource::new(256, 4)), false).unwrap();
    assert!(s.report.final_loss.is_finite() && s.report.final_loss < s.losses[0].1);
    for (name, t) in obj.var_store().variables() {
        assert!(t.device().is_cuda(), "{name} is on {:?}", t.device());
    }
}
