//! The losses pretext tasks are built from. Each works on any device and keeps shapes static.
use tch::{Kind, Tensor};

/// Cross-entropy over the selected positions only.
///
/// `logits` is `[..., C]`, `targets` and `mask` have the leading shape `[...]`; positions where
/// `mask` is false contribute nothing. With no selected position the loss is 0 (not NaN).
///
/// ```
/// use tch::{Tensor, Kind};
/// let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 2.0]).view([2, 2]);
/// let targets = Tensor::from_slice(&[0i64, 0]);
/// let mask = Tensor::from_slice(&[true, false]);
/// let loss = ssl_core::losses::masked_cross_entropy(&logits, &targets, &mask);
/// assert!((loss.double_value(&[]) - 0.126928).abs() < 1e-5);
/// ```
pub fn masked_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    let c = *logits.size().last().expect("logits have a class dimension");
    let flat = logits.reshape([-1, c]);
    let t = targets.reshape([-1]);
    let m = mask.reshape([-1]).to_kind(Kind::Float);
    let per = flat.log_softmax(-1, Kind::Float).gather(1, &t.unsqueeze(1), false).squeeze_dim(1).neg();
    (per * &m).sum(Kind::Float) / m.sum(Kind::Float).clamp_min(1.0)
}

/// Which distance [`masked_reconstruction`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconstruction {
    Mse,
    L1,
}

/// Reconstruction error on masked units only.
///
/// `pred` and `target` are `[B, P, D]` (P units such as patches or frames of D values), `mask` is
/// `[B, P]`. With `normalize_target`, each unit of the target is normalised to zero mean and unit
/// variance first (MAE's per-patch normalised pixels). The error is averaged over D, then over
/// the masked units.
///
/// ```
/// use tch::Tensor;
/// use ssl_core::losses::{masked_reconstruction, Reconstruction};
/// let pred = Tensor::zeros([1, 2, 2], (tch::Kind::Float, tch::Device::Cpu));
/// let target = Tensor::from_slice(&[1.0f32, 1.0, 5.0, 5.0]).view([1, 2, 2]);
/// let mask = Tensor::from_slice(&[true, false]).view([1, 2]);
/// let l = masked_reconstruction(&pred, &target, &mask, Reconstruction::Mse, false);
/// assert!((l.double_value(&[]) - 1.0).abs() < 1e-6);
/// ```
pub fn masked_reconstruction(
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    kind: Reconstruction,
    normalize_target: bool,
) -> Tensor {
    let target = if normalize_target {
        let mean = target.mean_dim(-1, true, Kind::Float);
        let var = target.var_dim(-1, false, true);
        (target - mean) / (var + 1e-6).sqrt()
    } else {
        target.shallow_clone()
    };
    let diff = pred.to_kind(Kind::Float) - target;
    let per_unit = match kind {
        Reconstruction::Mse => diff.square().mean_dim(-1, false, Kind::Float),
        Reconstruction::L1 => diff.abs().mean_dim(-1, false, Kind::Float),
    };
    let m = mask.to_kind(Kind::Float);
    (per_unit * &m).sum(Kind::Float) / m.sum(Kind::Float).clamp_min(1.0)
}

/// InfoNCE with sampled distractors: for each of N predictions, the positive target must score
/// higher (cosine similarity / `temperature`) than its K distractors.
///
/// `pred` and `positive` are `[N, D]`, `negatives` is `[N, K, D]`. Returns the mean loss and the
/// logits `[N, 1 + K]` (index 0 is the positive), so callers can log accuracy.
///
/// ```
/// use tch::{Tensor, Kind, Device};
/// let p = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]);
/// let neg = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 1, 2]);
/// let (loss, _) = ssl_core::losses::info_nce(&p, &p, &neg, 0.1);
/// assert!(loss.double_value(&[]) < 1e-3);   // the positive wins by a margin of 10 logits
/// ```
pub fn info_nce(pred: &Tensor, positive: &Tensor, negatives: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let targets = Tensor::cat(&[positive.unsqueeze(1), negatives.shallow_clone()], 1); // [N, 1+K, D]
    let logits = Tensor::cosine_similarity(&pred.unsqueeze(1), &targets, -1, 1e-8) / temperature;
    let zeros = Tensor::zeros([logits.size()[0]], (Kind::Int64, logits.device()));
    let loss = logits.log_softmax(-1, Kind::Float).gather(1, &zeros.unsqueeze(1), false).neg().mean(Kind::Float);
    (loss, logits)
}

/// wav2vec 2.0's codebook diversity loss from the batch-averaged code probabilities.
///
/// `avg_probs` is `[G, V]` (G codebooks of V entries, each row averaged over all frames).
/// Returns `(loss, perplexity)` where perplexity is `sum_g exp(H(p_g))` and the loss is
/// `(G*V - perplexity) / (G*V)`: 0 when every entry is used equally, close to 1 on collapse.
///
/// ```
/// use tch::{Tensor, Kind, Device};
/// let uniform = Tensor::full([2, 4], 0.25, (Kind::Float, Device::Cpu));
/// let (loss, ppl) = ssl_core::losses::diversity_loss(&uniform);
/// assert!(loss.double_value(&[]).abs() < 1e-6);
/// assert!((ppl.double_value(&[]) - 8.0).abs() < 1e-4);
/// ```
pub fn diversity_loss(avg_probs: &Tensor) -> (Tensor, Tensor) {
    let size = avg_probs.size();
    let total = (size[0] * size[1]) as f64;
    let entropy = (avg_probs * (avg_probs + 1e-7).log()).sum_dim_intlist(-1, false, Kind::Float).neg();
    let perplexity = entropy.exp().sum(Kind::Float);
    let loss = (perplexity.neg() + total) / total;
    (loss, perplexity)
}
