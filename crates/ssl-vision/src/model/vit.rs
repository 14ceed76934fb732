//! A small Vision Transformer (pre-LayerNorm blocks, attention through LibTorch's
//! scaled-dot-product attention) with patch sizes of 2 to 4 pixels for 28-32 px images, with or
//! without a CLS token.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Shape of the ViT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub in_channels: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub dim: i64,
    pub depth: usize,
    pub heads: i64,
    pub mlp_ratio: i64,
    /// A learned CLS token before the patch tokens (ViT, MAE and HF's `ViTModel` have one);
    /// the features are then its encoding instead of the mean of the patch tokens. Off in runs
    /// made before the option (the key is then absent, so their configurations read unchanged).
    #[serde(default, skip_serializing_if = "is_false")]
    pub class_token: bool,
    /// Every LayerNorm's eps: LibTorch's 1e-5 unless a checkpoint imported from elsewhere says
    /// otherwise (HF's ViT uses 1e-12). Absent from configurations when 1e-5.
    #[serde(default = "default_eps", skip_serializing_if = "is_default_eps")]
    pub layer_norm_eps: f64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// LibTorch's LayerNorm eps, the one every run used before the option.
pub const DEFAULT_EPS: f64 = 1e-5;

fn default_eps() -> f64 {
    DEFAULT_EPS
}

fn is_default_eps(eps: &f64) -> bool {
    *eps == DEFAULT_EPS
}

impl Default for VitConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            image_size: 28,
            patch_size: 4,
            dim: 128,
            depth: 4,
            heads: 4,
            mlp_ratio: 2,
            class_token: false,
            layer_norm_eps: DEFAULT_EPS,
        }
    }
}

impl VitConfig {
    pub fn num_patches(&self) -> i64 {
        (self.image_size / self.patch_size).pow(2)
    }
    pub fn patch_values(&self) -> i64 {
        self.patch_size * self.patch_size * self.in_channels
    }
    /// Tokens before the patch tokens: 1 with a CLS token, else 0.
    pub fn prefix(&self) -> i64 {
        self.class_token as i64
    }
    /// LayerNorm settings with this ViT's eps.
    pub fn layer_norm(&self) -> nn::LayerNormConfig {
        nn::LayerNormConfig { eps: self.layer_norm_eps, ..Default::default() }
    }
}

/// One pre-LN Transformer block.
#[derive(Debug)]
pub struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl Block {
    pub fn new(p: &nn::Path, dim: i64, heads: i64, mlp_ratio: i64, norm: nn::LayerNormConfig) -> Self {
        Self {
            ln1: nn::layer_norm(p / "ln1", vec![dim], norm),
            qkv: nn::linear(p / "qkv", dim, 3 * dim, Default::default()),
            proj: nn::linear(p / "proj", dim, dim, Default::default()),
            ln2: nn::layer_norm(p / "ln2", vec![dim], norm),
            fc1: nn::linear(p / "fc1", dim, mlp_ratio * dim, Default::default()),
            fc2: nn::linear(p / "fc2", mlp_ratio * dim, dim, Default::default()),
            heads,
        }
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("[B, N, D] tokens");
        let qkv =
            x.apply(&self.ln1).apply(&self.qkv).view([b, n, 3, self.heads, d / self.heads]).permute([2, 0, 3, 1, 4]);
        // One `unbind` (its backward one `stack`), not three `get`s (three full-size zero fills).
        let [q, k, v]: [Tensor; 3] = qkv.unbind(0).try_into().expect("3 slices");
        let att = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
        let x = x + att.transpose(1, 2).reshape([b, n, d]).apply(&self.proj);
        let h = x.apply(&self.ln2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        x + h
    }
}

/// The encoder: patch embedding, an optional CLS token, learned positions, blocks, final norm.
#[derive(Debug)]
pub struct Vit {
    patch: nn::Conv2D,
    /// `[1, 1, D]`, with [`VitConfig::class_token`].
    pub cls: Option<Tensor>,
    /// `[1, prefix + N, D]`: the CLS token's position first.
    pub pos: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    pub config: VitConfig,
}

impl Vit {
    pub fn new(p: &nn::Path, config: VitConfig) -> Self {
        let c = &config;
        let pc = nn::ConvConfig { stride: c.patch_size, ..Default::default() };
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        Self {
            patch: nn::conv2d(p / "patch", c.in_channels, c.dim, c.patch_size, pc),
            pos: p.var("pos", &[1, c.prefix() + c.num_patches(), c.dim], init),
            cls: c.class_token.then(|| p.var("cls", &[1, 1, c.dim], init)),
            blocks: (0..c.depth)
                .map(|i| Block::new(&(p / format!("block{i}")), c.dim, c.heads, c.mlp_ratio, c.layer_norm()))
                .collect(),
            norm: nn::layer_norm(p / "norm", vec![c.dim], c.layer_norm()),
            config,
        }
    }

    /// Tokens with positions, `[B, prefix + N, D]`: the CLS token (when there is one), then the
    /// patch tokens.
    pub fn embed(&self, x: &Tensor) -> Tensor {
        let k = self.config.prefix();
        let patches = (x * 2.0 - 1.0).apply(&self.patch).flatten(2, -1).transpose(1, 2)
            + self.pos.narrow(1, k, self.config.num_patches());
        match &self.cls {
            Some(cls) => {
                let b = patches.size()[0];
                let cls = (cls + self.pos.narrow(1, 0, 1)).expand([b, 1, self.config.dim], false);
                Tensor::cat(&[cls, patches], 1)
            }
            None => patches,
        }
    }

    /// Run the blocks and the final norm over any subset of tokens.
    pub fn encode(&self, tokens: &Tensor) -> Tensor {
        let mut h = tokens.shallow_clone();
        for b in &self.blocks {
            h = b.forward(&h);
        }
        h.apply(&self.norm)
    }

    /// The encoded CLS token with [`VitConfig::class_token`], else the mean of the encoded patch
    /// tokens.
    pub fn features(&self, x: &Tensor) -> Tensor {
        let h = self.encode(&self.embed(x));
        if self.cls.is_some() {
            h.select(1, 0).contiguous()
        } else {
            h.mean_dim(1, false, Kind::Float)
        }
    }

    /// `[B, N, p*p*C]` pixel patches, in the same order as the tokens.
    pub fn patchify(&self, x: &Tensor) -> Tensor {
        let c = &self.config;
        let (b, g) = (x.size()[0], c.image_size / c.patch_size);
        x.view([b, c.in_channels, g, c.patch_size, g, c.patch_size]).permute([0, 2, 4, 3, 5, 1]).reshape([
            b,
            g * g,
            c.patch_values(),
        ])
    }

    /// The inverse of [`Vit::patchify`].
    pub fn unpatchify(&self, patches: &Tensor) -> Tensor {
        let c = &self.config;
        let (b, g) = (patches.size()[0], c.image_size / c.patch_size);
        patches.view([b, g, g, c.patch_size, c.patch_size, c.in_channels]).permute([0, 5, 1, 3, 2, 4]).reshape([
            b,
            c.in_channels,
            c.image_size,
            c.image_size,
        ])
    }
}
