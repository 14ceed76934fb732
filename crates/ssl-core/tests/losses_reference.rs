//! Losses against PyTorch reference values.
//!
//! ```python
//! import torch, torch.nn.functional as F
//! logits = torch.tensor([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0], [2.0, 2.0, 2.0], [0.3, 0.2, -0.4]])
//! t = torch.tensor([1, 2, 0, 0]); m = torch.tensor([True, False, True, True])
//! F.cross_entropy(logits[m], t[m])                                   # 0.8130142092704773
//! pred = torch.tensor([[[0.1, 0.2, 0.3], [1.0, 0.0, -1.0]], [[0.5, 0.5, 0.5], [2.0, 1.0, 0.0]]])
//! tgt = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], [[-1.0, 0.0, 4.0], [3.0, 1.0, 2.0]]])
//! mk = torch.tensor([[True, False], [True, True]])
//! def rec(kind, norm):
//!     tt = tgt
//!     if norm:
//!         tt = (tt - tt.mean(-1, keepdim=True)) / (tt.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5
//!     d = pred - tt
//!     e = (d ** 2 if kind == "mse" else d.abs()).mean(-1)
//!     return (e * mk).sum().item() / mk.sum().item()
//! rec("mse", False), rec("l1", False), rec("mse", True), rec("l1", True)
//! # 2.587777614593506 1.2333333492279053 1.3278449376424153 0.9696609179178873
//! p = torch.tensor([[1.0, 0.5, -0.5], [0.2, -0.3, 0.9]])
//! pos = torch.tensor([[0.9, 0.4, -0.2], [0.0, -0.5, 1.0]])
//! neg = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.5, 0.5]], [[0.3, 0.3, 0.3], [0.2, -0.3, 0.8]]])
//! lg = F.cosine_similarity(p.unsqueeze(1), torch.cat([pos.unsqueeze(1), neg], 1), dim=-1) / 0.1
//! F.cross_entropy(lg, torch.zeros(2, dtype=torch.long))             # 0.5232682824134827
//! probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.4, 0.1]])
//! ppl = torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()  # 6.193629264831543
//! (8 - ppl) / 8                                                      # 0.22579634189605713
//! ```
use ssl_core::losses::{diversity_loss, info_nce, masked_cross_entropy, masked_reconstruction, Reconstruction};
use tch::Tensor;

fn close(t: &Tensor, want: f64) {
    let got = t.double_value(&[]);
    assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "got {got}, want {want}");
}

#[test]
fn masked_cross_entropy_matches_pytorch() {
    let logits = Tensor::from_slice(&[1.0f32, 2.0, 0.5, 0.1, -1.0, 3.0, 2.0, 2.0, 2.0, 0.3, 0.2, -0.4]).view([4, 3]);
    let t = Tensor::from_slice(&[1i64, 2, 0, 0]);
    let m = Tensor::from_slice(&[true, false, true, true]);
    close(&masked_cross_entropy(&logits, &t, &m), 0.8130142092704773);
    // No selected position: zero, not NaN.
    close(&masked_cross_entropy(&logits, &t, &Tensor::from_slice(&[false; 4])), 0.0);
}

#[test]
fn masked_reconstruction_matches_pytorch() {
    let pred = Tensor::from_slice(&[0.1f32, 0.2, 0.3, 1.0, 0.0, -1.0, 0.5, 0.5, 0.5, 2.0, 1.0, 0.0]).view([2, 2, 3]);
    let tgt = Tensor::from_slice(&[0.0f32, 1.0, 2.0, 1.0, 1.0, 1.0, -1.0, 0.0, 4.0, 3.0, 1.0, 2.0]).view([2, 2, 3]);
    let mk = Tensor::from_slice(&[true, false, true, true]).view([2, 2]);
    close(&masked_reconstruction(&pred, &tgt, &mk, Reconstruction::Mse, false), 2.587777614593506);
    close(&masked_reconstruction(&pred, &tgt, &mk, Reconstruction::L1, false), 1.2333333492279053);
    close(&masked_reconstruction(&pred, &tgt, &mk, Reconstruction::Mse, true), 1.3278449376424153);
    close(&masked_reconstruction(&pred, &tgt, &mk, Reconstruction::L1, true), 0.9696609179178873);
}

#[test]
fn info_nce_matches_pytorch() {
    let p = Tensor::from_slice(&[1.0f32, 0.5, -0.5, 0.2, -0.3, 0.9]).view([2, 3]);
    let pos = Tensor::from_slice(&[0.9f32, 0.4, -0.2, 0.0, -0.5, 1.0]).view([2, 3]);
    let neg = Tensor::from_slice(&[1.0f32, 0.0, 0.0, -1.0, 0.5, 0.5, 0.3, 0.3, 0.3, 0.2, -0.3, 0.8]).view([2, 2, 3]);
    let (loss, logits) = info_nce(&p, &pos, &neg, 0.1);
    close(&loss, 0.5232682824134827);
    assert_eq!(logits.size(), vec![2, 3]);
}

#[test]
fn diversity_loss_matches_pytorch() {
    let probs = Tensor::from_slice(&[0.7f32, 0.1, 0.1, 0.1, 0.25, 0.25, 0.4, 0.1]).view([2, 4]);
    let (loss, ppl) = diversity_loss(&probs);
    close(&loss, 0.22579634189605713);
    close(&ppl, 6.193629264831543);
}
