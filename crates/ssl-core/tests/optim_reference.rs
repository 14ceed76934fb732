//! Our optimizers against torch.optim on a fixed least-squares problem.
//!
//! Reference values come from PyTorch 2.13:
//! ```python
//! import torch
//! x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [-1.0, 1.0, 0.5], [0.0, -0.5, 1.0]])
//! y = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-0.5, 0.0], [1.0, 1.0]])
//! def run(opt_fn):
//!     w = torch.tensor([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]], requires_grad=True)
//!     b = torch.tensor([0.05, -0.05], requires_grad=True)
//!     opt = opt_fn([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}])
//!     for _ in range(10):
//!         opt.zero_grad(); ((x @ w + b - y) ** 2).mean().backward(); opt.step()
//!     return w.detach().flatten().tolist(), b.detach().tolist()
//! run(lambda g: torch.optim.AdamW(g, lr=0.05, betas=(0.9, 0.999), eps=1e-8))
//! run(lambda g: torch.optim.SGD(g, lr=0.05, momentum=0.9, nesterov=True))
//! ```
//! (biases get no weight decay in our optimizers, hence the two groups.)
use ssl_core::optim::{Optimizer, OptimizerConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

const ADAMW_W: [f64; 6] = [
    0.46115100383758545,
    0.2862600088119507,
    -0.17662152647972107,
    0.8003212809562683,
    -0.016860291361808777,
    0.09722533822059631,
];
const ADAMW_B: [f64; 2] = [0.4878210127353668, 0.40503057837486267];
const SGD_W: [f64; 6] = [
    0.39319130778312683,
    0.947478175163269,
    -0.5012120604515076,
    0.5055031180381775,
    0.3916650414466858,
    -0.6186619400978088,
];
const SGD_B: [f64; 2] = [0.3747597336769104, 0.6426020264625549];

fn run(config: OptimizerConfig) -> (Vec<f64>, Vec<f64>) {
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let w = root.var_copy("w", &Tensor::from_slice(&[0.1f32, -0.2, 0.3, 0.4, -0.5, 0.6]).view([3, 2]));
    let b = root.var_copy("b", &Tensor::from_slice(&[0.05f32, -0.05]));
    let x = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75, -1.0, 1.0, 0.5, 0.0, -0.5, 1.0]).view([4, 3]);
    let y = Tensor::from_slice(&[1.0f32, -1.0, 0.5, 2.0, -0.5, 0.0, 1.0, 1.0]).view([4, 2]);
    let mut opt = Optimizer::new(&vs, config);
    for _ in 0..10 {
        opt.zero_grad();
        (x.matmul(&w) + &b - &y).square().mean(Kind::Float).backward();
        opt.step(0.05).unwrap();
    }
    let to_vec = |t: &Tensor| Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    (to_vec(&w), to_vec(&b))
}

/// Every element within `tol` absolutely, and the whole vector within `tol` relative to its norm
/// (float32 rounding differs between the kernels in the last bits).
fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    let diff = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum::<f64>().sqrt();
    assert!(diff <= tol * norm, "relative error {} > {tol}: got {got:?}, want {want:?}", diff / norm);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}

#[test]
fn adamw_matches_pytorch_fused_and_fallback() {
    for fused in [true, false] {
        let (w, b) = run(OptimizerConfig { fused, ..OptimizerConfig::adamw(0.1) });
        assert_close(&w, &ADAMW_W, 1e-6);
        assert_close(&b, &ADAMW_B, 1e-6);
    }
}

#[test]
fn sgd_nesterov_matches_pytorch_fused_and_fallback() {
    for fused in [true, false] {
        let (w, b) = run(OptimizerConfig { fused, ..OptimizerConfig::sgd_nesterov(0.1) });
        assert_close(&w, &SGD_W, 1e-6);
        assert_close(&b, &SGD_B, 1e-6);
    }
}

#[test]
fn fused_and_fallback_agree_over_100_steps_on_random_parameters() {
    for base in [OptimizerConfig::adamw(0.05), OptimizerConfig::sgd_nesterov(0.01)] {
        let mut finals = Vec::new();
        for fused in [true, false] {
            // Pseudo-random values from a formula, not from LibTorch's global generator: tests run
            // in parallel threads of one process, and another test drawing from that generator
            // between the two runs would give them different parameters.
            let wave =
                |n: i64, phase: f64| (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7311 + phase).sin() * 1.3;
            let vs = VarStore::new(Device::Cpu);
            let a = vs.root().var_copy("a", &wave(64 * 32, 0.1).view([64, 32]));
            let c = vs.root().var_copy("c", &wave(32, 2.3));
            let mut opt = Optimizer::new(&vs, OptimizerConfig { fused, ..base });
            for step in 0..100 {
                let x = wave(16 * 64, 0.917 * step as f64).view([16, 64]);
                opt.zero_grad();
                (x.matmul(&a) + &c).tanh().square().mean(Kind::Float).backward();
                opt.step(1e-2).unwrap();
            }
            finals.push(Tensor::cat(&[a.flatten(0, -1), c.shallow_clone()], 0).detach());
        }
        let diff = &finals[0] - &finals[1];
        let rel = diff.norm().double_value(&[]) / finals[1].norm().double_value(&[]);
        // Relative to the parameter norm: elementwise ratios of near-zero parameters would only
        // measure float32 rounding.
        assert!(rel < 1e-6, "fused and fallback differ by {rel} relative ({base:?})");
    }
}

#[test]
fn weight_decay_skips_biases_and_norm_parameters() {
    let vs = VarStore::new(Device::Cpu);
    let _ = tch::nn::linear(vs.root() / "lin", 3, 2, Default::default());
    let _ = tch::nn::layer_norm(vs.root() / "ln", vec![2], Default::default());
    let opt = Optimizer::new(&vs, OptimizerConfig::default());
    assert_eq!(opt.decayed_parameter_names(), vec!["lin.weight"]);
}

#[test]
fn optimizer_state_round_trips_and_rejects_wrong_shapes() {
    let (vs, mut opt) = {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 2], tch::nn::Init::Const(1.0));
        let mut opt = Optimizer::new(&vs, OptimizerConfig::default());
        opt.zero_grad();
        w.sum(Kind::Float).backward();
        opt.step(0.1).unwrap();
        (vs, opt)
    };
    let saved = opt.state_tensors();
    assert_eq!(saved.len(), 3);
    opt.load_state(&saved, 1).unwrap();
    let bad: Vec<(String, Tensor)> = saved.iter().map(|(n, t)| (n.clone(), t.flatten(0, -1).repeat([2]))).collect();
    let err = opt.load_state(&bad, 1).unwrap_err().to_string();
    assert!(err.contains("w.exp_avg"), "{err}");
    drop(vs);
}

#[test]
fn learning_rate_scales_apply_per_parameter() {
    // Adam's first step moves every weight by lr (times the sign of its gradient), so the
    // displacement measures each parameter's effective learning rate.
    let vs = VarStore::new(Device::Cpu);
    let a = vs.root().var("encoder_a", &[3], tch::nn::Init::Const(1.0));
    let b = vs.root().var("head_b", &[3], tch::nn::Init::Const(1.0));
    let c = vs.root().var("frozen_c", &[3], tch::nn::Init::Const(1.0));
    let mut opt = Optimizer::new(&vs, OptimizerConfig::adamw(0.0));
    opt.set_lr_scales(|name| match name {
        "encoder_a" => 0.1,
        "frozen_c" => 0.0,
        _ => 1.0,
    });
    opt.zero_grad();
    (&a + &b + &c).sum(Kind::Float).backward();
    opt.step(0.5).unwrap();
    let moved = |t: &Tensor| 1.0 - t.mean(Kind::Float).double_value(&[]);
    assert!((moved(&a) - 0.05).abs() < 1e-6, "{}", moved(&a));
    assert!((moved(&b) - 0.5).abs() < 1e-6, "{}", moved(&b));
    assert_eq!(moved(&c), 0.0);
}
