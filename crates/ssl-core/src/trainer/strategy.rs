//! How gradients become one update, chosen once per run: a single process, or data-parallel
//! over the process group of [`crate::dist`] (every rank starts from rank 0's weights; the
//! gradients are views into one flat buffer averaged over the ranks at every update).
use crate::dist::{GradSync, ProcessGroup};
use crate::error::{CoreError, Result};
use crate::optim::Optimizer;
use std::time::Instant;
use tch::{nn::VarStore, Tensor};

/// The training strategy.
pub enum Strategy {
    /// One process: micro-batch losses are averaged, gradients stay where backward left them.
    Single,
    /// Data-parallel: each rank's loss is weighted by its loss terms, and the gradients, the
    /// loss and the stop request are averaged over the ranks.
    DataParallel { sync: GradSync, group: &'static ProcessGroup },
}

/// What every rank agrees on after a step's gradients are complete.
pub struct Agreed {
    /// The mean loss of the (global) batch, on the device.
    pub loss: Tensor,
    /// Positive when any rank asked to stop (data-parallel only).
    pub stop: Option<Tensor>,
    /// Seconds in the all-reduce and gradient buckets sent from backward (data-parallel only).
    pub comm: Option<(f64, usize)>,
}

impl Strategy {
    /// Data-parallel when this process belongs to a group ([`crate::dist::group()`]), else single.
    pub fn choose(vs: &VarStore) -> Result<Self> {
        let Some(group) = crate::dist::group() else { return Ok(Strategy::Single) };
        crate::dist::broadcast_vars(group, vs)?;
        // Reverse creation order: roughly the order backward produces the gradients, so the
        // first buckets fill (and leave) first. The same on every rank.
        let params: Vec<Tensor> = vs.trainable_variables().into_iter().filter(Tensor::requires_grad).rev().collect();
        let expected = vs.variables().values().filter(|t| t.requires_grad()).count();
        if params.len() != expected {
            return Err(CoreError::InvalidArgument(format!(
                "{expected} variables need a gradient but {} are trainable parameters",
                params.len()
            )));
        }
        Ok(Strategy::DataParallel { sync: GradSync::for_group(&params, group)?, group })
    }

    /// Zero every gradient.
    pub fn zero_grad(&self, optimizer: &mut Optimizer) {
        match self {
            Strategy::Single => optimizer.zero_grad(),
            Strategy::DataParallel { sync, .. } => sync.zero(),
        }
    }

    /// The weight of a micro-batch's loss: its loss terms when data-parallel, unused otherwise.
    pub fn weight(&self, terms: impl FnOnce() -> f64) -> f64 {
        match self {
            Strategy::Single => 0.0,
            Strategy::DataParallel { .. } => terms(),
        }
    }

    /// Back-propagate micro-batch `micro` of `accum` and add its loss to `loss_sum`. Data-parallel:
    /// sums weighted by each micro-batch's loss terms, divided by the global sum after the
    /// all-reduce; the last micro-batch's backward sends the buckets.
    pub fn backward(
        &self,
        loss: &Tensor,
        weight: f64,
        micro: usize,
        accum: usize,
        loss_sum: &mut Tensor,
    ) -> Result<()> {
        match self {
            Strategy::Single => {
                (loss / accum as f64).backward();
                *loss_sum += loss.detach();
            }
            Strategy::DataParallel { sync, .. } => {
                if micro + 1 == accum {
                    sync.arm()?;
                }
                (loss * weight).backward();
                *loss_sum += loss.detach() * weight;
            }
        }
        Ok(())
    }

    /// Finish the step's gradients: data-parallel, average the gradients, the loss and `stop`
    /// over the ranks, so every decision after the step is the same on each of them.
    pub fn reduce(&self, loss_sum: &Tensor, weight_sum: f64, accum: usize, stop: bool) -> Result<Agreed> {
        match self {
            Strategy::Single => Ok(Agreed { loss: loss_sum / accum as f64, stop: None, comm: None }),
            Strategy::DataParallel { sync, group } => {
                let t0 = Instant::now();
                let r = sync.all_reduce(Some(group), loss_sum, weight_sum, stop)?;
                Ok(Agreed { loss: r.loss, stop: Some(r.stop), comm: Some((t0.elapsed().as_secs_f64(), r.overlapped)) })
            }
        }
    }
}
