//! Gradient averaging for data-parallel training: one persistent flat buffer per run, every
//! parameter's `.grad` a view into it, summed over the ranks in asynchronous buckets, sent from
//! backward's hooks as they fill ([`super::overlap`]) unless overlapping is turned off.
//!
//! Each rank back-propagates its loss multiplied by its weight (the number of terms its loss
//! averages: samples, or masked tokens for MLM). The buffer's tail carries the weighted loss, the
//! weight and a stop flag through the same all-reduce; dividing the summed gradient by the summed
//! weight gives exactly the gradient of the mean loss over the global batch, whatever the split
//! of terms between ranks. Every rank then holds the same gradient, loss and stop decision, so
//! clipping, the NaN guard and the schedule agree without further communication.
use super::group::{set_grad, ProcessGroup};
use super::overlap::{bucket_layout, BucketConfig, Overlap, FIRST_BUCKET_BYTES};
use crate::error::Result;
use tch::{Kind, Tensor};

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
    /// Gradient buckets backward's hooks sent before it ended (0 without overlapping).
    pub overlapped: usize,
}

/// Fault injection for the equivalence test's control run: with this variable set to 1, only
/// the loss, weight and stop flag are all-reduced, not the gradients, so each rank trains on
/// its own shard's gradient.
pub(crate) const SKIP_GRAD_ALLREDUCE_VAR: &str = "SSL_DIST_SKIP_GRAD_ALLREDUCE";

/// The flat gradient buffer of a model's trainable parameters.
pub struct GradSync {
    flat: Tensor,
    numel: i64,
    skip_grads: bool,
    /// The buckets: `(start, len)` in the buffer.
    buckets: Vec<(i64, i64)>,
    overlap: Option<Overlap>,
}

impl GradSync {
    /// Allocate the buffer and make every parameter's gradient a view into it, buckets of
    /// DDP's default size, sent after backward.
    pub fn new(params: &[Tensor]) -> Result<Self> {
        Self::build(params, None, BucketConfig { overlap: false, ..Default::default() })
    }

    /// The buffer of a data-parallel run over `group`, with the group's bucket settings. Put the
    /// parameters in the order backward produces their gradients (roughly reverse creation
    /// order), so that the buckets fill one after the other.
    pub(crate) fn for_group(params: &[Tensor], group: &'static ProcessGroup) -> Result<Self> {
        Self::build(params, Some(group), group.buckets())
    }

    fn build(params: &[Tensor], group: Option<&'static ProcessGroup>, cfg: BucketConfig) -> Result<Self> {
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
        let elem = Kind::Float.elt_size_in_bytes() as i64;
        let numels: Vec<i64> = params.iter().map(|p| p.numel() as i64).collect();
        let layout = bucket_layout(&numels, (FIRST_BUCKET_BYTES / elem).max(1), (cfg.bytes / elem).max(1));
        let overlap = match group {
            Some(g) if cfg.overlap && !skip_grads && !params.is_empty() => {
                Some(Overlap::new(g, &flat, params, &layout)?)
            }
            _ => None,
        };
        Ok(GradSync { flat, numel, skip_grads, buckets: layout.0, overlap })
    }

    /// Call before the backward pass of a step's last micro-batch: its hooks then send each
    /// bucket as soon as it is complete. Without overlapping, nothing.
    pub(crate) fn arm(&self) -> Result<()> {
        match &self.overlap {
            Some(o) => o.arm(),
            None => Ok(()),
        }
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
        let mut overlapped = 0;
        if let Some(g) = group {
            // Every rank: the gradient buckets in index order (from the hooks, or here), then
            // the tail.
            let sent = match &self.overlap {
                Some(o) => o.finish(),
                None if self.skip_grads => Ok(0),
                None => {
                    for &(start, len) in &self.buckets {
                        g.all_reduce_sum_async(&self.flat.narrow(0, start, len))?;
                    }
                    Ok(0)
                }
            };
            g.all_reduce_sum_async(&tail)?;
            // Wait for what is in flight even when a bucket failed: no tensor stays borrowed.
            let waited = g.wait();
            overlapped = sent?;
            waited?;
        }
        // With no loss term on any rank the gradient is zero, and stays zero.
        let weight_sum = tail.get(1).clamp_min(f64::from(f32::MIN_POSITIVE));
        if self.skip_grads {
            // The control: a rank's gradient is its own sum, divided by its own weight.
            let _ = self.grads().g_mul_scalar_(1.0 / weight.max(f64::from(f32::MIN_POSITIVE)));
        } else {
            let _ = self.grads().g_div_(&weight_sum);
        }
        Ok(Reduced { loss: tail.get(0) / &weight_sum, weight: tail.get(1), stop: tail.get(2), overlapped })
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
