//! Quantizers, losses and the log-mel front end against PyTorch reference values.
//!
//! The values were produced with PyTorch 2.13 by the script below (inputs are closed-form so both
//! sides rebuild them exactly); rerun it to regenerate them.
//!
//! ```python
//! import torch, torch.nn.functional as F, math
//! torch.set_printoptions(precision=7)
//! # Inputs from closed-form values so the Rust test can rebuild them exactly.
//! P = torch.tensor([[math.sin(1.0 + i * 3 + j) for j in range(3)] for i in range(4)])          # [4, 3]
//! C = torch.tensor([[math.cos(0.5 * (i * 3 + j)) for j in range(3)] for i in range(5)])        # [5, 3]
//! X = torch.tensor([[[math.sin(0.3 * (t * 4 + d) + b) for d in range(4)] for t in range(3)] for b in range(2)])  # [2, 3, 4]
//! proj = F.normalize(X @ P, dim=-1)
//! codes = (proj @ F.normalize(C, dim=-1).T).argmax(-1)
//! print("codes", codes.flatten().tolist())
//! print("proj[0,0]", proj[0, 0].tolist())
//! ids = torch.tensor([0, 1, 1, 2, 2, 2, 3, 0])
//! p = torch.bincount(ids, minlength=5).float(); p = p / p.sum()
//! print("usage_ppl", torch.exp(-(p * torch.log(p + 1e-9)).sum()).item())
//! # Gumbel quantizer, deterministic parts: averaged softmax over valid frames and diversity.
//! L = torch.tensor([[[[math.sin(0.7 * (t * 6 + g * 3 + v) + b) * 2 for v in range(3)] for g in range(2)] for t in range(3)] for b in range(2)])  # [2,3,2,3]
//! valid = torch.tensor([[True, True, False], [True, True, True]])
//! probs = L.softmax(-1)
//! avg = (probs * valid[..., None, None]).sum((0, 1)) / valid.sum()
//! ent = -(avg * torch.log(avg + 1e-7)).sum(-1)
//! ppl = torch.exp(ent).sum()
//! print("avg_probs", avg.flatten().tolist())
//! print("ppl", ppl.item(), "diversity", ((6 - ppl) / 6).item())
//! print("hard_ids", L.argmax(-1).flatten().tolist())
//! # InfoNCE (cosine / 0.1, positive at index 0) and masked cross-entropy.
//! pred = torch.tensor([[math.cos(0.4 * (n * 4 + d)) for d in range(4)] for n in range(3)])
//! pos = torch.tensor([[math.cos(0.4 * (n * 4 + d) + 0.3) for d in range(4)] for n in range(3)])
//! neg = torch.tensor([[[math.sin(0.9 * (n * 8 + k * 4 + d)) for d in range(4)] for k in range(2)] for n in range(3)])
//! tg = torch.cat([pos[:, None], neg], 1)
//! logits = F.cosine_similarity(pred[:, None], tg, dim=-1, eps=1e-8) / 0.1
//! print("info_nce", F.cross_entropy(logits, torch.zeros(3, dtype=torch.long)).item())
//! lg = torch.tensor([[math.sin(1.3 * (i * 5 + c)) * 3 for c in range(5)] for i in range(6)])
//! tgt = torch.tensor([0, 4, 2, 2, 1, 3]); m = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
//! print("masked_ce", F.cross_entropy(lg[m], tgt[m]).item())
//! # Log-mel of a 1 kHz + 3 kHz sine pair: Hann(400, periodic), |rfft(512)|^2, HTK mel filters (80), log(+1e-6).
//! n = torch.arange(1040, dtype=torch.float64)
//! wave = 0.6 * torch.sin(2 * math.pi * 1000 * n / 16000) + 0.3 * torch.sin(2 * math.pi * 3000 * n / 16000)
//! frames = wave.unfold(0, 400, 320) * torch.hann_window(400, periodic=True, dtype=torch.float64)
//! power = torch.fft.rfft(frames, n=512).abs() ** 2
//! mel = lambda f: 2595 * math.log10(1 + f / 700)
//! imel = lambda m: 700 * (10 ** (m / 2595) - 1)
//! edges = [imel(mel(8000) * i / 81) for i in range(82)]
//! freqs = torch.arange(257, dtype=torch.float64) * 8000 / 256
//! fb = torch.zeros(257, 80, dtype=torch.float64)
//! for m_ in range(80):
//!     l, c, r = edges[m_], edges[m_ + 1], edges[m_ + 2]
//!     fb[:, m_] = torch.clamp(torch.minimum((freqs - l) / (c - l), (r - freqs) / (r - c)), min=0)
//! lm = torch.log(power @ fb + 1e-6)
//! print("logmel shape", tuple(lm.shape), "sel", [round(lm[t, b].item(), 4) for t, b in [(0, 0), (0, 20), (1, 23), (2, 40), (2, 79)]])
//! top = lm[1].topk(4)
//! print("logmel frame1 top bins", top.indices.tolist(), [round(v, 4) for v in top.values.tolist()])
//! print("logmel frame2 bins 10,30,50", [round(lm[2, b].item(), 4) for b in (10, 30, 50)])
//! ```
use ssl_core::losses::{diversity_loss, info_nce, masked_cross_entropy};
use ssl_speech::data::features::LogMel;
use ssl_speech::model::quantizer::{average_probs, gumbel_select, usage_perplexity, RandomProjectionQuantizer};
use tch::{Device, Kind, Tensor};

fn build(shape: &[i64], f: impl Fn(&[i64]) -> f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut v = Vec::with_capacity(n as usize);
    for flat in 0..n {
        let mut idx = vec![0i64; shape.len()];
        let mut r = flat;
        for d in (0..shape.len()).rev() {
            idx[d] = r % shape[d];
            r /= shape[d];
        }
        v.push(f(&idx) as f32);
    }
    Tensor::from_slice(&v).view(shape)
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol, "{what}: {got} vs PyTorch {want}");
}

#[test]
fn best_rq_targets_match_pytorch() {
    let p = build(&[4, 3], |i| (1.0 + (i[0] * 3 + i[1]) as f64).sin());
    let c = build(&[5, 3], |i| (0.5 * (i[0] * 3 + i[1]) as f64).cos());
    let x = build(&[2, 3, 4], |i| (0.3 * (i[1] * 4 + i[2]) as f64 + i[0] as f64).sin());
    let rq = RandomProjectionQuantizer::from_parts(p, c);
    assert_eq!(Vec::<i64>::try_from(rq.codes(&x).reshape([-1])).unwrap(), vec![2, 1, 0, 1, 0, 4]);
    let proj = rq.project(&x);
    for (d, want) in [-0.4360615313053131, -0.794552743434906, -0.42253565788269043].into_iter().enumerate() {
        close(proj.double_value(&[0, 0, d as i64]), want, 1e-5, "projection");
    }
    let ids = Tensor::from_slice(&[0i64, 1, 1, 2, 2, 2, 3, 0]);
    close(usage_perplexity(&ids, 5).double_value(&[]), 3.7467479705810547, 1e-4, "usage perplexity");
}

#[test]
fn gumbel_quantizer_statistics_match_pytorch() {
    let l = build(&[2, 3, 2, 3], |i| (0.7 * (i[1] * 6 + i[2] * 3 + i[3]) as f64 + i[0] as f64).sin() * 2.0);
    let valid = Tensor::from_slice(&[true, true, false, true, true, true]).view([2, 3]);
    let avg = average_probs(&l, &valid);
    let want = [
        0.29647135734558105,
        0.27286869287490845,
        0.4306599497795105,
        0.37924519181251526,
        0.2747904658317566,
        0.34596434235572815,
    ];
    for (i, w) in want.into_iter().enumerate() {
        close(avg.reshape([-1]).double_value(&[i as i64]), w, 1e-6, "averaged probabilities");
    }
    let (div, ppl) = diversity_loss(&avg);
    close(ppl.double_value(&[]), 5.911670684814453, 1e-4, "perplexity");
    close(div.double_value(&[]), 0.014721552841365337, 1e-5, "diversity loss");
    let (one_hot, ids) = gumbel_select(&l, 1.0, false);
    assert_eq!(Vec::<i64>::try_from(ids.reshape([-1])).unwrap(), vec![2, 0, 2, 2, 0, 2, 1, 0, 2, 1, 0, 2]);
    assert_eq!(one_hot.sum(Kind::Float).double_value(&[]), 12.0);
}

#[test]
fn contrastive_and_prediction_losses_match_pytorch() {
    let pred = build(&[3, 4], |i| (0.4 * (i[0] * 4 + i[1]) as f64).cos());
    let pos = build(&[3, 4], |i| (0.4 * (i[0] * 4 + i[1]) as f64 + 0.3).cos());
    let neg = build(&[3, 2, 4], |i| (0.9 * (i[0] * 8 + i[1] * 4 + i[2]) as f64).sin());
    let (loss, _) = info_nce(&pred, &pos, &neg, 0.1);
    close(loss.double_value(&[]), 0.033248696476221085, 1e-5, "InfoNCE");
    let logits = build(&[6, 5], |i| (1.3 * (i[0] * 5 + i[1]) as f64).sin() * 3.0);
    let targets = Tensor::from_slice(&[0i64, 4, 2, 2, 1, 3]);
    let mask = Tensor::from_slice(&[true, false, true, true, false, true]);
    close(masked_cross_entropy(&logits, &targets, &mask).double_value(&[]), 3.8913071155548096, 1e-5, "masked CE");
}

#[test]
fn log_mel_frames_match_pytorch() {
    let wave: Vec<f32> = (0..1040)
        .map(|n| {
            let t = n as f64 / 16000.0;
            (0.6 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                + 0.3 * (2.0 * std::f64::consts::PI * 3000.0 * t).sin()) as f32
        })
        .collect();
    let lm = LogMel::new(Device::Cpu).frames(&Tensor::from_slice(&wave).view([1, 1040]));
    assert_eq!(lm.size(), vec![1, 3, 80]);
    for (t, b, want) in
        [(1, 28, 8.1019), (1, 27, 8.0784), (1, 53, 6.7878), (1, 52, 6.7324), (2, 30, -0.374), (2, 50, -5.6921)]
    {
        close(lm.double_value(&[0, t, b]), want, 2e-3, &format!("log-mel frame {t} band {b}"));
    }
}
