//! Gradient averaging for data-parallel training: one persistent flat buffer per run, every
//! parameter's `.grad` a view into it, summed over the ranks in asynchronous buckets.
//!
//! Each rank back-propagates its loss multiplied by its weight (the number of terms its loss
//! averages: samples, or masked tokens for MLM). The buffer's tail carries the weighted loss, the
//! weight and a stop flag through the same all-reduce; dividing the summed gradient by the summed
//! weight gives exactly the gradient of the mean loss over the global batch, whatever the split
//! of terms between ranks. Every rank then holds the same gradient, loss and stop decision, so
//! clipping, the NaN guard and the schedule agree without further communication.
use super::group::{set_grad, ProcessGroup};
use crate::error::Result;
use tch::{Kind, Tensor};

/// Bucket size for the asynchronous all-reduce, as in PyTorch DDP's default (25 MiB).
pub const BUCKET_BYTES: i64 = 25 << 20;

/// Number of values after the gradients in the flat buffer: weighted loss, weight, stop flag.
const TAIL: i64 = 3;

/// What the ranks agree on after a step's all-reduce, as scalars on the buffer's device: the
/// trainer reads them with the gradient norm in its one host read per step.
#[derive(Debug)]
pub struct Reduced {
    /// The mean loss over the global batch.
    pub loss: Tensor,
    /// The summed weight (loss terms over every rank and micro-batch).
    pub weight: Tensor,
    /// Positive when any rank asked to stop (SIGINT/SIGTERM) at this step.
    pub stop: Tensor,
}

/// Fault injection for the equivalence test's control run: with this variable set to 1, only
/// the loss, weight and stop flag are all-reduced, not the gradients, so each rank trains on
/// its own shard's gradient.
pub const SKIP_GRAD_ALLREDUCE_VAR: &str = "SSL_DIST_SKIP_GRAD_ALLREDUCE";

/// The flat gradient buffer of a model's trainable parameters.
pub struct GradSync {
    flat: Tensor,
    numel: i64,
    skip_grads: bool,
}

impl GradSync {
    /// Allocate the buffer and make every parameter's gradient a view into it.
    pub fn new(params: &[Tensor]) -> Result<Self> {
        let numel: i64 = params.iter().map(Tensor::numel).sum::<usize>() as i64;
        let first = params.first();
        let device = first.map(Tensor::device).unwrap_or(tch::Device::Cpu);
        let flat = Tensor::zeros([numel + TAIL], (Kind::Float, device));
        let mut offset = 0i64;
        for p in params {
            let n = p.numel() as i64;
            set_grad(p, &flat.narrow(0, offset, n).view(p.size().as_slice()))?;
            offset += n;
        }
        let skip_grads = std::env::var(SKIP_GRAD_ALLREDUCE_VAR).is_ok_and(|v| v == "1");
        if skip_grads {
            eprintln!(
                "warning: {SKIP_GRAD_ALLREDUCE_VAR}=1: the gradients are NOT averaged over the ranks (a test control)"
            );
        }
        Ok(GradSync { flat, numel, skip_grads })
    }

    /// Zero every gradient (the whole buffer) in place, keeping the views.
    pub fn zero(&self) {
        let _ = self.flat.shallow_clone().zero_();
    }

    /// The gradients as one flat tensor (a view).
    pub fn grads(&self) -> Tensor {
        self.flat.narrow(0, 0, self.numel)
    }

    /// Sum the gradients and `[weighted loss, weight, stop]` over the ranks, then divide the
    /// gradients by the summed weight, on the device: nothing is read on the host here.
    /// `weighted_loss` is a scalar tensor on the buffer's device.
    pub fn all_reduce(
        &self,
        group: Option<&ProcessGroup>,
        weighted_loss: &Tensor,
        weight: f64,
        stop: bool,
    ) -> Result<Reduced> {
        let mut tail = self.flat.narrow(0, self.numel, TAIL);
        tail.copy_(&Tensor::cat(
            &[
                weighted_loss.to_kind(Kind::Float).reshape([1]),
                Tensor::from_slice(&[weight as f32, stop as i32 as f32]).to_device(self.flat.device()),
            ],
            0,
        ));
        if let Some(g) = group {
            let per_bucket = (BUCKET_BYTES / 4).max(1);
            let total = self.numel + TAIL;
            let mut start = if self.skip_grads { self.numel } else { 0 };
            while start < total {
                let len = per_bucket.min(total - start);
                g.all_reduce_sum_async(&self.flat.narrow(0, start, len))?;
                start += len;
            }
            g.wait()?;
        }
        // With no loss term on any rank the gradient is zero, and stays zero.
        let weight_sum = tail.get(1).clamp_min(f64::from(f32::MIN_POSITIVE));
        if self.skip_grads {
            // The control: a rank's gradient is its own sum, divided by its own weight.
            let _ = self.grads().g_mul_scalar_(1.0 / weight.max(f64::from(f32::MIN_POSITIVE)));
        } else {
            let _ = self.grads().g_div_(&weight_sum);
        }
        Ok(Reduced { loss: tail.get(0) / &weight_sum, weight: tail.get(1), stop: tail.get(2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rank_gets_the_gradient_of_the_weighted_mean_loss() {
        let opts = (Kind::Float, tch::Device::Cpu);
        let a = Tensor::ones([2, 2], opts).set_requires_grad(true);
        let b = Tensor::ones([3], opts).set_requires_grad(true);
        let sync = GradSync::new(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        // Two micro-batches: mean losses 2.0 (weight 1) and 5.0 (weight 3).
        let l1 = (&a * 2.0).sum(Kind::Float) / 4.0 * 0.5;
        let l2 = (&b * 5.0).sum(Kind::Float) / 3.0;
        (&l1 * 1.0).backward();
        (&l2 * 3.0).backward();
        let wl = l1.detach() * 1.0 + l2.detach() * 3.0;
        let r = sync.all_reduce(None, &wl, 4.0, false).unwrap();
        assert!((r.loss.double_value(&[]) - (1.0 * 1.0 + 5.0 * 3.0) / 4.0).abs() < 1e-6, "{r:?}");
        assert_eq!(r.weight.double_value(&[]), 4.0);
        assert_eq!(r.stop.double_value(&[]), 0.0);
        // d(l1*1)/da = 0.25 each, divided by the weight 4; d(l2*3)/db = 5 each, / 4.
        let ga: Vec<f32> = Vec::try_from(&a.grad().reshape([-1])).unwrap();
        let gb: Vec<f32> = Vec::try_from(&b.grad()).unwrap();
        assert!(ga.iter().all(|v| (v - 0.0625).abs() < 1e-7), "{ga:?}");
        assert!(gb.iter().all(|v| (v - 1.25).abs() < 1e-6), "{gb:?}");
        sync.zero();
        assert_eq!(sync.grads().abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert!(a.grad().defined(), "zeroing keeps the views");
    }
}
