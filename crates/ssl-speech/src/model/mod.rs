//! The wav2vec 2.0-shaped encoder, scaled down: a convolutional feature encoder on the raw
//! waveform (kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2: 320x downsampling, 20 ms frames),
//! a layer norm and projection, a learned mask embedding, a convolutional relative positional
//! embedding and a pre-LN Transformer encoder.
//!
//! With [`ModelConfig::pos_norm`] off (the default of new runs) the encoder is exactly
//! HuggingFace's pre-LN `Wav2Vec2Model` (`do_stable_layer_norm`, a group norm on the first conv
//! only), so it exports to it ([`crate::interop::export`]). Runs written before that option existed
//! had a LayerNorm after the positional convolution, which HF's pre-LN encoder lacks; their
//! `config.json` has no `pos_norm` key and they still load as they were.
//!
//! ```
//! use ssl_speech::model::{ModelConfig, SpeechModel};
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//! let cfg = ModelConfig::tiny();
//! assert_eq!(cfg.frames(16000), 49);
//! let vs = VarStore::new(Device::Cpu);
//! let model = SpeechModel::new(&vs.root() / "encoder", &cfg);
//! let wave = Tensor::randn([2, 16000], (Kind::Float, Device::Cpu));
//! let feats = model.conv_features(&wave);
//! assert_eq!(feats.size(), vec![2, 49, cfg.conv_channels]);
//! let valid = Tensor::ones([2, 49], (Kind::Bool, Device::Cpu));
//! let layers = model.transform(&model.project(&feats), &valid, None);
//! assert_eq!(layers.last().unwrap().size(), vec![2, 49, cfg.dim]);
//! ```
pub mod encoder;
pub mod flops;
pub mod quantizer;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Size of the encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Channels of every conv layer of the feature encoder.
    pub conv_channels: i64,
    pub conv_kernels: Vec<i64>,
    pub conv_strides: Vec<i64>,
    /// Transformer width, depth, heads and feed-forward width.
    pub dim: i64,
    pub layers: i64,
    pub heads: i64,
    pub ffn_dim: i64,
    /// Kernel and groups of the convolutional positional embedding (wav2vec 2.0: 128 and 16).
    pub pos_conv_kernel: i64,
    pub pos_conv_groups: i64,
    /// A LayerNorm after the positional embedding is added (before the first layer). Off, the
    /// encoder is HuggingFace's pre-LN wav2vec2 exactly; configurations without the key (runs
    /// written before it existed) had it on. On, the key is not written, so the configuration
    /// (and the one stored in checkpoints, which `--resume` compares) reads as an old run's.
    #[serde(default = "pos_norm_of_old_runs", skip_serializing_if = "is_old_shape")]
    pub pos_norm: bool,
}

/// Runs written before [`ModelConfig::pos_norm`] existed normalised after the positional conv.
fn pos_norm_of_old_runs() -> bool {
    true
}

fn is_old_shape(pos_norm: &bool) -> bool {
    *pos_norm
}

impl ModelConfig {
    /// ~0.5M parameters: trains on 2 CPU cores in minutes.
    pub fn tiny() -> Self {
        Self {
            conv_channels: 64,
            conv_kernels: vec![10, 3, 3, 3, 3, 2, 2],
            conv_strides: vec![5, 2, 2, 2, 2, 2, 2],
            dim: 128,
            layers: 3,
            heads: 4,
            ffn_dim: 256,
            pos_conv_kernel: 16,
            pos_conv_groups: 8,
            pos_norm: false,
        }
    }

    /// ~6M parameters.
    pub fn small() -> Self {
        Self {
            conv_channels: 256,
            dim: 256,
            layers: 6,
            heads: 4,
            ffn_dim: 1024,
            pos_conv_kernel: 32,
            pos_conv_groups: 16,
            ..Self::tiny()
        }
    }

    /// A named preset: `tiny` or `small`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "small" => Some(Self::small()),
            _ => None,
        }
    }

    /// Frames the conv encoder produces from `samples` input samples (0 if shorter than its
    /// receptive field): `L <- floor((L - k) / s) + 1` per layer.
    pub fn frames(&self, samples: i64) -> i64 {
        let mut len = samples;
        for (&k, &s) in self.conv_kernels.iter().zip(&self.conv_strides) {
            if len < k {
                return 0;
            }
            len = (len - k) / s + 1;
        }
        len
    }

    /// Samples per frame (the product of the strides).
    pub fn hop(&self) -> i64 {
        self.conv_strides.iter().product()
    }

    /// Check the configuration is usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.conv_kernels.len() != self.conv_strides.len() || self.conv_kernels.is_empty() {
            return Err("conv_kernels and conv_strides must have the same, non-zero length".into());
        }
        if self.dim % self.heads != 0 || self.dim % self.pos_conv_groups != 0 {
            return Err(format!(
                "dim {} must be divisible by heads {} and pos_conv_groups {}",
                self.dim, self.heads, self.pos_conv_groups
            ));
        }
        if [self.conv_channels, self.dim, self.layers, self.heads, self.ffn_dim, self.pos_conv_kernel]
            .iter()
            .any(|&v| v <= 0)
        {
            return Err("model sizes must be positive".into());
        }
        Ok(())
    }
}

struct TransformerLayer {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    out: nn::Linear,
    ln2: nn::LayerNorm,
    ff1: nn::Linear,
    ff2: nn::Linear,
    heads: i64,
}

impl TransformerLayer {
    fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let d = cfg.dim;
        Self {
            ln1: nn::layer_norm(&p / "ln1", vec![d], Default::default()),
            qkv: nn::linear(&p / "qkv", d, 3 * d, Default::default()),
            out: nn::linear(&p / "out", d, d, Default::default()),
            ln2: nn::layer_norm(&p / "ln2", vec![d], Default::default()),
            ff1: nn::linear(&p / "ff1", d, cfg.ffn_dim, Default::default()),
            ff2: nn::linear(&p / "ff2", cfg.ffn_dim, d, Default::default()),
            heads: cfg.heads,
        }
    }

    /// `x` `[B, T, D]`; `key_bias` `[B, 1, 1, T]` (0 for valid keys, a large negative for padding).
    fn forward(&self, x: &Tensor, key_bias: &Tensor) -> Tensor {
        let (b, t, d) = x.size3().expect("[B, T, D]");
        let h = self.heads;
        let qkv = self.qkv.forward(&self.ln1.forward(x)).view([b, t, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
        // One `unbind` (its backward one `stack`), as Python's `q, k, v = qkv` does; three `get`s
        // would each zero-fill a full-size gradient in backward (seen op by op in the profile).
        let [q, k, v]: [Tensor; 3] = qkv.unbind(0).try_into().expect("3 slices"); // [B, H, T, dh]
        let scores = q.matmul(&k.transpose(-2, -1)) / ((d / h) as f64).sqrt() + key_bias;
        let att = scores.softmax(-1, Kind::Float).matmul(&v).transpose(1, 2).reshape([b, t, d]);
        let x = x + self.out.forward(&att);
        let y = self.ff2.forward(&self.ff1.forward(&self.ln2.forward(&x)).gelu("none"));
        x + y
    }
}

/// The encoder. Variables live under the path given to [`SpeechModel::new`].
pub struct SpeechModel {
    convs: Vec<nn::Conv1D>,
    first_norm: nn::GroupNorm,
    feature_norm: nn::LayerNorm,
    proj: nn::Linear,
    mask_embedding: Tensor,
    pos_conv: nn::Conv1D,
    pos_norm: Option<nn::LayerNorm>,
    layers: Vec<TransformerLayer>,
    final_norm: nn::LayerNorm,
    config: ModelConfig,
}

impl SpeechModel {
    pub fn new(p: nn::Path, cfg: &ModelConfig) -> Self {
        let c = cfg.conv_channels;
        let mut convs = Vec::new();
        let mut cin = 1;
        for (i, (&k, &s)) in cfg.conv_kernels.iter().zip(&cfg.conv_strides).enumerate() {
            let conv_cfg = nn::ConvConfig {
                stride: s,
                bias: false,
                ws_init: nn::Init::Kaiming {
                    dist: nn::init::NormalOrUniform::Normal,
                    fan: nn::init::FanInOut::FanIn,
                    non_linearity: nn::init::NonLinearity::ReLU,
                },
                ..Default::default()
            };
            convs.push(nn::conv1d(&p / "conv" / i, cin, c, k, conv_cfg));
            cin = c;
        }
        let pos_cfg =
            nn::ConvConfig { padding: cfg.pos_conv_kernel / 2, groups: cfg.pos_conv_groups, ..Default::default() };
        Self {
            convs,
            // wav2vec 2.0 (base): a group norm with one group per channel after the first conv.
            first_norm: nn::group_norm(&p / "conv_norm", c, c, Default::default()),
            feature_norm: nn::layer_norm(&p / "feature_norm", vec![c], Default::default()),
            proj: nn::linear(&p / "proj", c, cfg.dim, Default::default()),
            mask_embedding: p.var("mask_embedding", &[cfg.dim], nn::Init::Uniform { lo: 0.0, up: 1.0 }),
            pos_conv: nn::conv1d(&p / "pos_conv", cfg.dim, cfg.dim, cfg.pos_conv_kernel, pos_cfg),
            pos_norm: cfg.pos_norm.then(|| nn::layer_norm(&p / "pos_norm", vec![cfg.dim], Default::default())),
            layers: (0..cfg.layers).map(|i| TransformerLayer::new(&p / "layer" / i, cfg)).collect(),
            final_norm: nn::layer_norm(&p / "final_norm", vec![cfg.dim], Default::default()),
            config: cfg.clone(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Layer-normalised conv features `[B, T, C]` of waveforms `[B, S]`.
    pub fn conv_features(&self, wave: &Tensor) -> Tensor {
        let mut x = wave.unsqueeze(1);
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(&x);
            if i == 0 {
                x = self.first_norm.forward(&x);
            }
            x = x.gelu("none");
        }
        self.feature_norm.forward(&x.transpose(1, 2))
    }

    /// Project conv features to the Transformer width `[B, T, D]`.
    pub fn project(&self, feats: &Tensor) -> Tensor {
        self.proj.forward(feats)
    }

    /// Run the context network on projected features `[B, T, D]`. `valid` `[B, T]` marks real
    /// frames (padding is zeroed and never attended to); `mask` `[B, T]`, if given, marks frames
    /// replaced by the learned mask embedding. Returns the input of the first layer followed by
    /// the output of each layer (the last one normalised).
    pub fn transform(&self, x: &Tensor, valid: &Tensor, mask: Option<&Tensor>) -> Vec<Tensor> {
        let validf = valid.to_kind(Kind::Float).unsqueeze(-1);
        let mut x = match mask {
            Some(m) => x.where_self(&m.logical_not().unsqueeze(-1), &self.mask_embedding.to_kind(x.kind())),
            None => x.shallow_clone(),
        } * &validf;
        let t = x.size()[1];
        let pos = self.pos_conv.forward(&x.transpose(1, 2)).narrow(2, 0, t).gelu("none").transpose(1, 2);
        // New tensors, not in-place sums: the positional conv's backward pass still needs `x`.
        let summed = &x + pos;
        let summed = match &self.pos_norm {
            Some(norm) => norm.forward(&summed),
            None => summed,
        };
        x = summed * &validf;
        let key_bias = (valid.logical_not().to_kind(Kind::Float) * -1e9).view([valid.size()[0], 1, 1, t]);
        let mut outs = vec![x.shallow_clone()];
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &key_bias);
            if i + 1 == n {
                x = self.final_norm.forward(&x);
            }
            outs.push(x.shallow_clone() * &validf);
        }
        outs
    }
}

/// `[B, T]` bool: frame `t` of row `b` is real (computed from the valid sample count of each row).
pub fn frame_validity(cfg: &ModelConfig, sample_lengths: &[i64], frames: i64, device: tch::Device) -> Tensor {
    let flat: Vec<bool> = sample_lengths
        .iter()
        .flat_map(|&l| {
            let v = cfg.frames(l);
            (0..frames).map(move |t| t < v)
        })
        .collect();
    Tensor::from_slice(&flat).view([sample_lengths.len() as i64, frames]).to_device(device)
}

/// Mean over valid frames: `x` `[B, T, D]`, `valid` `[B, T]` -> `[B, D]`.
pub fn masked_mean(x: &Tensor, valid: &Tensor) -> Tensor {
    let m = valid.to_kind(Kind::Float).unsqueeze(-1);
    (x * &m).sum_dim_intlist(1, false, Kind::Float) / m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn frame_count_matches_the_conv_formula() {
        let cfg = ModelConfig::tiny();
        let vs = VarStore::new(Device::Cpu);
        let model = SpeechModel::new(vs.root(), &cfg);
        for &len in &[400i64, 401, 719, 720, 1000, 16000, 16319, 16320, 24000, 32000] {
            // wav2vec 2.0: 20 ms frames with a 25 ms receptive field.
            let want = (len - 400) / 320 + 1;
            assert_eq!(cfg.frames(len), want, "len {len}");
            let out = tch::no_grad(|| model.conv_features(&Tensor::randn([1, len], (Kind::Float, Device::Cpu))));
            assert_eq!(out.size()[1], want, "len {len}");
        }
        assert_eq!(cfg.frames(399), 0);
        assert_eq!(cfg.hop(), 320);
    }

    #[test]
    fn configurations_without_pos_norm_are_old_runs_with_it() {
        let mut old_json = serde_json::to_value(ModelConfig::tiny()).unwrap();
        old_json.as_object_mut().unwrap().remove("pos_norm");
        let cfg: ModelConfig = serde_json::from_value(old_json.clone()).unwrap();
        assert!(cfg.pos_norm, "an old run's config.json loads with the LayerNorm it was trained with");
        assert_eq!(serde_json::to_value(&cfg).unwrap(), old_json, "and writes back as it was, so --resume matches");
        assert!(!ModelConfig::tiny().pos_norm && !ModelConfig::small().pos_norm, "new runs are HF's shape");
        let names = |cfg: &ModelConfig| {
            let vs = VarStore::new(Device::Cpu);
            let _ = SpeechModel::new(vs.root(), cfg);
            vs.variables().into_keys().filter(|n| n.starts_with("pos_norm")).count()
        };
        assert_eq!((names(&cfg), names(&ModelConfig::tiny())), (2, 0));
    }

    #[test]
    fn padding_does_not_change_valid_outputs() {
        let _rng = ssl_core::rng::torch_rng(0);
        let cfg = ModelConfig::tiny();
        let vs = VarStore::new(Device::Cpu);
        let model = SpeechModel::new(vs.root(), &cfg);
        let x = Tensor::randn([1, 20, cfg.dim], (Kind::Float, Device::Cpu));
        let padded = Tensor::cat(&[x.shallow_clone(), Tensor::randn([1, 10, cfg.dim], (Kind::Float, Device::Cpu))], 1);
        let valid = Tensor::cat(
            &[Tensor::ones([1, 20], (Kind::Bool, Device::Cpu)), Tensor::zeros([1, 10], (Kind::Bool, Device::Cpu))],
            1,
        );
        let a = tch::no_grad(|| model.transform(&x, &Tensor::ones([1, 20], (Kind::Bool, Device::Cpu)), None));
        let b = tch::no_grad(|| model.transform(&padded, &valid, None));
        // The positional conv sees zeros beyond the end in both cases.
        let diff = (a.last().unwrap() - b.last().unwrap().narrow(1, 0, 20)).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{diff}");
    }
}
