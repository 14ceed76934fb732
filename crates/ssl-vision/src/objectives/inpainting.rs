//! Inpainting, Context-Encoder style (Pathak et al. 2016): a block of each image is blanked, the
//! encoder sees the rest, a small decoder reconstructs the image, and the L2 loss covers only the
//! blanked block.
use crate::data::batch::ImageBatch;
use crate::model::encoder::{EncoderConfig, Net};
use serde::{Deserialize, Serialize};
use ssl_core::losses::{masked_reconstruction, Reconstruction};
use ssl_core::trainer::{Objective, StepOutput};
use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// Where the block goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockPlacement {
    Center,
    Random,
}

/// Inpainting settings (the paper's central block of half the image side, scaled to small images).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InpaintingConfig {
    /// Block side as a fraction of the image side.
    pub block_fraction: f64,
    pub placement: BlockPlacement,
    /// Value written into the blanked block (in `[0, 1]` pixel units).
    pub fill: f64,
}

impl Default for InpaintingConfig {
    fn default() -> Self {
        Self { block_fraction: 0.5, placement: BlockPlacement::Random, fill: 0.5 }
    }
}

/// A `[B, H, W]` boolean mask with one `k x k` block per image (center or random position).
pub fn block_mask(b: i64, h: i64, w: i64, cfg: &InpaintingConfig, device: Device) -> Tensor {
    let k = ((h.min(w) as f64) * cfg.block_fraction).round().max(1.0) as i64;
    let (y0, x0) = match cfg.placement {
        BlockPlacement::Center => (
            Tensor::full([b, 1, 1], (h - k) / 2, (Kind::Int64, device)),
            Tensor::full([b, 1, 1], (w - k) / 2, (Kind::Int64, device)),
        ),
        BlockPlacement::Random => (
            Tensor::randint(h - k + 1, [b, 1, 1], (Kind::Int64, device)),
            Tensor::randint(w - k + 1, [b, 1, 1], (Kind::Int64, device)),
        ),
    };
    let ys = Tensor::arange(h, (Kind::Int64, device)).view([1, h, 1]);
    let xs = Tensor::arange(w, (Kind::Int64, device)).view([1, 1, w]);
    ys.ge_tensor(&y0)
        .logical_and(&ys.lt_tensor(&(&y0 + k)))
        .logical_and(&xs.ge_tensor(&x0).logical_and(&xs.lt_tensor(&(&x0 + k))))
}

/// The inpainting pretext task (ResNet encoder + upsampling decoder).
pub struct InpaintingTask {
    pub vs: VarStore,
    pub net: Net,
    decoder: nn::SequentialT,
    pub config: InpaintingConfig,
    channels: i64,
}

impl InpaintingTask {
    pub fn new(encoder: &EncoderConfig, config: InpaintingConfig, channels: i64, device: Device, seed: u64) -> Self {
        let _rng = ssl_core::rng::torch_rng(seed);
        let vs = VarStore::new(device);
        let net = Net::new(&(vs.root() / "encoder"), encoder);
        let (cin, _) = match &net {
            Net::Resnet(r) => (r.last_channels(), ()),
            Net::Vit(v) => (v.config.dim, ()),
        };
        let p = vs.root() / "decoder";
        let c = nn::ConvConfig { padding: 1, ..Default::default() };
        let mid = (cin / 2).max(16);
        let decoder = nn::seq_t()
            .add(nn::conv2d(&p / "conv1", cin, mid, 3, c))
            .add(nn::batch_norm2d(&p / "bn1", mid, Default::default()))
            .add_fn(|x| x.relu())
            .add_fn(|x| x.upsample_nearest2d([x.size()[2] * 2, x.size()[3] * 2], None, None))
            .add(nn::conv2d(&p / "conv2", mid, mid / 2, 3, c))
            .add(nn::batch_norm2d(&p / "bn2", mid / 2, Default::default()))
            .add_fn(|x| x.relu())
            .add_fn(|x| x.upsample_nearest2d([x.size()[2] * 2, x.size()[3] * 2], None, None))
            .add(nn::conv2d(&p / "out", mid / 2, channels, 3, c));
        Self { vs, net, decoder, config, channels }
    }

    /// Reconstruction of `masked` images, `[B, C, H, W]` in `[0, 1]`.
    pub fn reconstruct(&self, masked: &Tensor, train: bool) -> Tensor {
        let (h, w) = (masked.size()[2], masked.size()[3]);
        let map = match &self.net {
            Net::Resnet(r) => r.last_map(masked, train),
            Net::Vit(v) => {
                let t = v.encode(&v.embed(masked));
                let g = v.config.image_size / v.config.patch_size;
                t.transpose(1, 2).reshape([masked.size()[0], v.config.dim, g, g])
            }
        };
        self.decoder.forward_t(&map, train).upsample_bilinear2d([h, w], false, None, None).sigmoid()
    }

    /// Blank the blocks: returns the masked images and the `[B, H, W]` mask.
    pub fn mask(&self, x: &Tensor) -> (Tensor, Tensor) {
        let s = x.size();
        let m = block_mask(s[0], s[2], s[3], &self.config, x.device());
        let masked = x.masked_fill(&m.unsqueeze(1), self.config.fill);
        (masked, m)
    }

    /// The masked-region L2 loss of a batch, with the reconstruction.
    pub fn loss(&self, x: &Tensor, train: bool) -> (Tensor, Tensor, Tensor) {
        let (masked, m) = self.mask(x);
        let recon = self.reconstruct(&masked, train);
        let s = x.size();
        let as_units = |t: &Tensor| t.permute([0, 2, 3, 1]).reshape([s[0], s[2] * s[3], self.channels]);
        let loss = masked_reconstruction(
            &as_units(&recon),
            &as_units(x),
            &m.view([s[0], s[2] * s[3]]),
            Reconstruction::Mse,
            false,
        );
        (loss, masked, recon)
    }
}

impl Objective for InpaintingTask {
    type Batch = ImageBatch;
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &ImageBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let (loss, _, _) = self.loss(&batch.pixels(device)?, true);
        Ok(StepOutput { loss, metrics: vec![] })
    }
    fn batch_samples(&self, batch: &ImageBatch) -> usize {
        batch.len()
    }
}
