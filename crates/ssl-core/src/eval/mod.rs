//! The evaluation protocol shared by every modality: few-label subsets, a frozen linear probe,
//! cosine kNN and full fine-tuning of a pretrained encoder against the same architecture from
//! random initialisation (`scratch`), a raw-input logistic-regression baseline, robustness under
//! corruptions, and the train-minus-test gap.
//!
//! The test split is only ever used to measure: subsets, hyper-parameters and training steps are
//! fixed before it is looked at.

pub mod classifier;
pub mod finetune;
pub mod knn;
pub mod protocol;
pub mod report;
pub mod selection;
pub mod stats;
pub mod subsets;

pub use protocol::{evaluate, Corruption, EncoderFactory, EvalKind, ProtocolConfig};
pub use report::{Report, Stat};

use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Inputs with integer labels `0..num_classes`, kept on the CPU.
pub struct LabeledSet {
    pub inputs: Tensor,
    pub labels: Tensor,
    pub num_classes: i64,
}

impl LabeledSet {
    pub fn new(inputs: Tensor, labels: Tensor, num_classes: i64) -> Self {
        Self { inputs, labels: labels.to_kind(Kind::Int64), num_classes }
    }
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The same tensors, shared (no copy).
    pub fn shallow_clone(&self) -> LabeledSet {
        LabeledSet {
            inputs: self.inputs.shallow_clone(),
            labels: self.labels.shallow_clone(),
            num_classes: self.num_classes,
        }
    }
    /// The rows at `idx`.
    pub fn select(&self, idx: &[i64]) -> LabeledSet {
        let i = Tensor::from_slice(idx);
        LabeledSet {
            inputs: self.inputs.index_select(0, &i),
            labels: self.labels.index_select(0, &i),
            num_classes: self.num_classes,
        }
    }
    /// The first `n` rows.
    pub fn head(&self, n: usize) -> LabeledSet {
        let n = n.min(self.len()) as i64;
        LabeledSet {
            inputs: self.inputs.narrow(0, 0, n),
            labels: self.labels.narrow(0, 0, n),
            num_classes: self.num_classes,
        }
    }
    /// Labels as a Vec.
    pub(crate) fn label_vec(&self) -> Vec<i64> {
        Vec::<i64>::try_from(&self.labels.to_device(Device::Cpu)).unwrap_or_default()
    }
}

/// What the protocol needs of an encoder.
pub trait Encoder {
    /// Features `[N, D]` of a batch of inputs already on the encoder's device.
    fn features(&self, xs: &Tensor, train: bool) -> Tensor;
    /// D.
    fn feature_dim(&self) -> i64;
    /// The encoder's variables (fine-tuning updates them; probing must not).
    fn var_store(&self) -> &VarStore;
    /// For encoders built as a stack of layers (transformers): the depth of variable `name`
    /// counted from the input (embeddings 0) and the depth of the top layer, so fine-tuning can
    /// decay learning rates layer by layer. `None` (the default): no layer structure.
    fn layer_of(&self, _name: &str) -> Option<(usize, usize)> {
        None
    }
}

/// The largest batch [`map_batches`] uses in this process: lowered when a batch did not fit, so
/// later calls (the next subset, the next seed) start from a size that fits.
static BATCH_THAT_FITS: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Fault injection for the reliability campaign: with this variable set to N, a batch of more
/// than N rows in [`map_batches`] makes a real LibTorch allocation failure.
pub(crate) const INJECT_OOM_OVER_VAR: &str = "SSL_INJECT_OOM_FEATURE_BATCH_OVER";

/// Apply `f` to `xs` (CPU) in batches of `batch` rows moved to `device`, under `no_grad`, and
/// concatenate the results on the CPU. A batch that runs out of memory is tried again at half
/// its size (with a warning), down to one row, and the smaller size is kept for the rest of
/// the process; any other LibTorch failure propagates.
pub fn map_batches(xs: &Tensor, batch: usize, device: Device, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let n = xs.size()[0];
    let inject: Option<i64> = std::env::var(INJECT_OOM_OVER_VAR).ok().and_then(|v| v.parse().ok());
    let mut size = batch.max(1).min(BATCH_THAT_FITS.load(Ordering::Relaxed)) as i64;
    let mut out = Vec::new();
    let mut i = 0;
    tch::no_grad(|| {
        while i < n {
            let len = size.min(n - i);
            let run = || {
                if inject.is_some_and(|limit| len > limit) {
                    let _ = Tensor::empty([1i64 << 40], (tch::Kind::Float, device));
                }
                f(&xs.narrow(0, i, len).to_device(device)).to_device(Device::Cpu)
            };
            match crate::torch_error::catch(run) {
                Ok(t) => {
                    out.push(t);
                    i += len;
                }
                Err(failure) if failure.out_of_memory() && len > 1 => {
                    size = len / 2;
                    BATCH_THAT_FITS.fetch_min(size as usize, Ordering::Relaxed);
                    eprintln!("warning: a batch of {len} did not fit in memory; trying batches of {size}");
                }
                Err(failure) => std::panic::resume_unwind(Box::new(failure.message)),
            }
        }
    });
    Tensor::cat(&out, 0)
}

/// Features of `xs` (CPU) in batches, under `no_grad`, in eval mode; returned on the CPU.
pub(crate) fn extract_features(encoder: &dyn Encoder, xs: &Tensor, batch: usize, device: Device) -> Tensor {
    map_batches(xs, batch, device, |x| encoder.features(x, false).to_kind(Kind::Float))
}

/// Fraction of `pred == labels`.
pub fn accuracy(pred: &Tensor, labels: &Tensor) -> f64 {
    pred.eq_tensor(labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}
