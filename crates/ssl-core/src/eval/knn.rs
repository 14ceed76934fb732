//! Cosine k-nearest-neighbour classification on frozen features.
use tch::{Kind, Tensor};

/// Predict labels of `test` `[M, D]` from `train` `[N, D]` with labels `[N]`: the `k` most
/// cosine-similar training rows vote, each with weight `exp(sim / 0.07)` (as in instance
/// discrimination papers).
///
/// ```
/// use tch::Tensor;
/// let train = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
/// let labels = Tensor::from_slice(&[0i64, 1]);
/// let test = Tensor::from_slice(&[0.9f32, 0.1]).view([1, 2]);
/// let pred = ssl_core::eval::knn::predict(&train, &labels, &test, 1, 2);
/// assert_eq!(pred.int64_value(&[0]), 0);
/// ```
pub fn predict(train: &Tensor, labels: &Tensor, test: &Tensor, k: usize, num_classes: i64) -> Tensor {
    let n = train.size()[0];
    let k = (k as i64).min(n).max(1);
    let a = normalize(train);
    let b = normalize(test);
    let mut preds = Vec::new();
    let m = b.size()[0];
    let mut i = 0;
    while i < m {
        let len = 1024.min(m - i);
        let sim = b.narrow(0, i, len).matmul(&a.tr()); // [len, N]
        let (vals, idx) = sim.topk(k, 1, true, true);
        let votes_lbl = labels.index_select(0, &idx.reshape([-1])).view([len, k]);
        let weights = (vals / 0.07).exp();
        let scores = Tensor::zeros([len, num_classes], (Kind::Float, train.device()));
        preds.push(scores.scatter_add(1, &votes_lbl, &weights).argmax(1, false));
        i += len;
    }
    Tensor::cat(&preds, 0)
}

fn normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-8)
}
