//! Rotation prediction (RotNet, Gidaris et al. 2018): every image appears in the batch at 0, 90,
//! 180 and 270 degrees, and a 4-way head predicts which.
use crate::data::batch::ImageBatch;
use crate::model::encoder::{EncoderConfig, Net};
use ssl_core::trainer::{Objective, StepOutput};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// The four rotations of `x` `[B, C, H, W]` stacked as `[4B, C, H, W]`, with labels `0..4`
/// (k quarter turns counter-clockwise).
///
/// ```
/// use tch::{Tensor, Kind};
/// let x = Tensor::arange(4, (Kind::Float, tch::Device::Cpu)).view([1, 1, 2, 2]);
/// let (r, labels) = ssl_vision::objectives::rotation::rotate_all(&x);
/// assert_eq!(r.size(), vec![4, 1, 2, 2]);
/// assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), vec![0, 1, 2, 3]);
/// ```
pub fn rotate_all(x: &Tensor) -> (Tensor, Tensor) {
    let b = x.size()[0];
    let rots: Vec<Tensor> = (0..4).map(|k| x.rot90(k, [2, 3])).collect();
    let labels = Tensor::arange(4, (Kind::Int64, x.device())).repeat_interleave_self_int(b, 0, None);
    (Tensor::cat(&rots, 0), labels)
}

/// The rotation pretext task.
pub struct RotationTask {
    pub vs: VarStore,
    pub net: Net,
    head: nn::Linear,
}

impl RotationTask {
    pub fn new(config: &EncoderConfig, device: Device, seed: u64) -> Self {
        let _rng = ssl_core::rng::torch_rng(seed);
        let vs = VarStore::new(device);
        let net = Net::new(&(vs.root() / "encoder"), config);
        let dim = match &net {
            Net::Resnet(r) => r.last_channels(),
            Net::Vit(v) => v.config.dim,
        };
        let head = nn::linear(vs.root() / "rotation_head", dim, 4, Default::default());
        Self { vs, net, head }
    }
}

impl Objective for RotationTask {
    type Batch = ImageBatch;
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &ImageBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let (x, labels) = rotate_all(&batch.pixels(device)?);
        let (feats, _) = self.net.pooled_t(&x, true);
        let logits = self.head.forward(&feats).to_kind(Kind::Float);
        let loss = logits.cross_entropy_for_logits(&labels);
        let acc = logits.detach().argmax(1, false).eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float);
        Ok(StepOutput { loss, metrics: vec![("rotation_acc".into(), acc)] })
    }
    fn batch_samples(&self, batch: &ImageBatch) -> usize {
        batch.len() * 4
    }
}
