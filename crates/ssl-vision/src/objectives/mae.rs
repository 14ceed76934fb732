//! Masked patches, MAE style (He et al. 2021): 75% of the patches of a small ViT are dropped, the
//! encoder sees only the visible ones, a light decoder reconstructs the per-patch normalised
//! pixels, and the loss covers only the dropped patches.
use crate::data::batch::ImageBatch;
use crate::model::vit::{Block, Vit, VitConfig};
use serde::{Deserialize, Serialize};
use ssl_core::losses::{masked_reconstruction, Reconstruction};
use ssl_core::trainer::{Objective, StepOutput};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// MAE settings (paper defaults: 75% masking, normalised-pixel targets; decoder scaled down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaeConfig {
    pub mask_ratio: f64,
    pub decoder_dim: i64,
    pub decoder_depth: usize,
    pub decoder_heads: i64,
    /// The decoder blocks' MLP width over `decoder_dim` (2 here; 4 in the paper and in HF's
    /// ViTMAE, whose decoders import with theirs).
    #[serde(default = "decoder_mlp_ratio_of_old_runs")]
    pub decoder_mlp_ratio: i64,
    pub norm_pix_loss: bool,
}

/// Every run before the option had a 2x decoder MLP.
fn decoder_mlp_ratio_of_old_runs() -> i64 {
    2
}

impl Default for MaeConfig {
    fn default() -> Self {
        Self {
            mask_ratio: 0.75,
            decoder_dim: 64,
            decoder_depth: 2,
            decoder_heads: 4,
            decoder_mlp_ratio: 2,
            norm_pix_loss: true,
        }
    }
}

/// Random per-sample masking: `(ids_keep [B, keep], ids_restore [B, N], mask [B, N] true = dropped)`.
pub fn random_masking(b: i64, n: i64, ratio: f64, device: Device) -> (Tensor, Tensor, Tensor) {
    masking_from_noise(&Tensor::rand([b, n], (Kind::Float, device)), ratio)
}

/// [`random_masking`] for given noise `[B, N]` in `[0, 1)`: the patches with the smallest noise
/// are kept (as HF's `ViTMAEModel` does with its `noise` argument).
pub fn masking_from_noise(noise: &Tensor, ratio: f64) -> (Tensor, Tensor, Tensor) {
    let (b, n) = noise.size2().expect("[B, N] noise");
    let keep = ((n as f64) * (1.0 - ratio)).round().clamp(1.0, n as f64) as i64;
    let shuffle = noise.argsort(1, false);
    let restore = shuffle.argsort(1, false);
    let ids_keep = shuffle.narrow(1, 0, keep);
    let mask = Tensor::ones([b, n], (Kind::Bool, noise.device())).scatter_value(1, &ids_keep, 0);
    (ids_keep, restore, mask)
}

/// The MAE pretext task.
pub struct MaeTask {
    pub vs: VarStore,
    pub vit: Vit,
    embed: nn::Linear,
    mask_token: Tensor,
    dec_pos: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    pred: nn::Linear,
    pub config: MaeConfig,
}

impl MaeTask {
    pub fn new(vit: &VitConfig, config: MaeConfig, device: Device, seed: u64) -> Self {
        let _rng = ssl_core::rng::torch_rng(seed);
        let vs = VarStore::new(device);
        let v = Vit::new(&(vs.root() / "encoder"), vit.clone());
        let p = vs.root() / "decoder";
        let d = config.decoder_dim;
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        Self {
            embed: nn::linear(&p / "embed", vit.dim, d, Default::default()),
            mask_token: p.var("mask_token", &[1, 1, d], init),
            dec_pos: p.var("pos", &[1, vit.prefix() + vit.num_patches(), d], init),
            blocks: (0..config.decoder_depth)
                .map(|i| {
                    let p = &p / format!("block{i}");
                    Block::new(&p, d, config.decoder_heads, config.decoder_mlp_ratio, vit.layer_norm())
                })
                .collect(),
            norm: nn::layer_norm(&p / "norm", vec![d], vit.layer_norm()),
            pred: nn::linear(&p / "pred", d, vit.patch_values(), Default::default()),
            vit: v,
            vs,
            config,
        }
    }

    /// Loss, predicted patches `[B, N, P]` and the mask `[B, N]` for a batch in `[0, 1]`.
    pub fn loss(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let n = self.vit.config.num_patches();
        self.loss_with_noise(x, &Tensor::rand([x.size()[0], n], (Kind::Float, x.device())))
    }

    /// [`MaeTask::loss`] with the masking of `noise` `[B, N]` ([`masking_from_noise`]). A CLS
    /// token is never masked; it passes through the decoder and is left out of the prediction,
    /// as in MAE and HF's `ViTMAEForPreTraining`.
    pub fn loss_with_noise(&self, x: &Tensor, noise: &Tensor) -> (Tensor, Tensor, Tensor) {
        let k = self.vit.config.prefix();
        let tokens = self.vit.embed(x);
        let (b, t, dim) = tokens.size3().expect("[B, T, D]");
        let n = t - k;
        let (ids_keep, restore, mask) = masking_from_noise(noise, self.config.mask_ratio);
        let patches = tokens.narrow(1, k, n);
        let visible = patches.gather(1, &ids_keep.unsqueeze(-1).expand([-1, -1, dim], false), false);
        let visible = Tensor::cat(&[tokens.narrow(1, 0, k), visible], 1);
        let enc = self.vit.encode(&visible).apply(&self.embed);
        let d = self.config.decoder_dim;
        let keep = ids_keep.size()[1];
        let fill = self.mask_token.expand([b, n - keep, d], false);
        let full = Tensor::cat(&[enc.narrow(1, k, keep), fill], 1).gather(
            1,
            &restore.unsqueeze(-1).expand([-1, -1, d], false),
            false,
        );
        let mut h = Tensor::cat(&[enc.narrow(1, 0, k), full], 1) + &self.dec_pos;
        for blk in &self.blocks {
            h = blk.forward(&h);
        }
        let pred = h.apply(&self.norm).apply(&self.pred).narrow(1, k, n);
        let target = self.vit.patchify(x);
        let loss = masked_reconstruction(&pred, &target, &mask, Reconstruction::Mse, self.config.norm_pix_loss);
        (loss, pred, mask)
    }

    /// Pixels for a picture: visible patches from the input, dropped ones from the prediction
    /// (de-normalised with the true patch statistics when targets are normalised).
    pub fn reconstruction(&self, x: &Tensor) -> (Tensor, Tensor) {
        let (_, pred, mask) = self.loss(x);
        let target = self.vit.patchify(x);
        let pred = if self.config.norm_pix_loss {
            let mean = target.mean_dim(-1, true, Kind::Float);
            let std = (target.var_dim(-1, false, true) + 1e-6).sqrt();
            pred * std + mean
        } else {
            pred
        };
        let m = mask.unsqueeze(-1);
        let masked = self.vit.unpatchify(&target.masked_fill(&m, 0.5));
        let recon = self.vit.unpatchify(&pred.where_self(&m, &target));
        (masked, recon.clamp(0.0, 1.0))
    }
}

impl Objective for MaeTask {
    type Batch = ImageBatch;
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &ImageBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let (loss, _, _) = self.loss(&batch.pixels(device)?);
        Ok(StepOutput { loss, metrics: vec![] })
    }
    fn batch_samples(&self, batch: &ImageBatch) -> usize {
        batch.len()
    }
}
