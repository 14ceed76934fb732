//! The pretrained encoder as the evaluation protocol sees it: fixed-length waveforms in,
//! mean-pooled features out, plus the raw log-mel baseline and the scratch twin.
//!
//! Inputs are `[N, samples]` waveforms whose trailing exact zeros are padding (that is how
//! [`crate::data::dataset::fit_length`] pads); each row is normalised over its valid part first, so the
//! encoder sees what it was pretrained on whatever the input gain.
use crate::data::features::LogMel;
use crate::error::Result;
use crate::model::{frame_validity, masked_mean, ModelConfig, SpeechModel};
use crate::objectives::ENCODER_PREFIX;
use serde::{Deserialize, Serialize};
use ssl_core::eval::{Encoder, EncoderFactory};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Which Transformer outputs the features pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over time of the last layer.
    Last,
    /// Mean over time of the input of the first layer and of every layer, concatenated.
    AllLayers,
    /// Mean and standard deviation over time of the input of the first layer and of every
    /// layer, concatenated (like the log-mel mean+std baseline, it keeps how frames vary).
    AllLayersMeanStd,
}

/// Valid samples per row: the position after the last non-zero sample.
pub fn valid_lengths(xs: &Tensor) -> Tensor {
    let s = xs.size()[1];
    let pos = Tensor::arange_start(1, s + 1, (Kind::Int64, xs.device()));
    (xs.ne(0.0).to_kind(Kind::Int64) * pos).amax(&[1i64][..], false)
}

/// Normalise each row over its first `len` samples (zero mean, unit variance); padding stays 0.
pub fn normalize_rows(xs: &Tensor, lengths: &Tensor) -> Tensor {
    let s = xs.size()[1];
    let m = Tensor::arange(s, (Kind::Int64, xs.device()))
        .unsqueeze(0)
        .lt_tensor(&lengths.unsqueeze(1))
        .to_kind(Kind::Float);
    let n = m.sum_dim_intlist(1, true, Kind::Float).clamp_min(1.0);
    let x = xs.to_kind(Kind::Float);
    let mean = (&x * &m).sum_dim_intlist(1, true, Kind::Float) / &n;
    let var = ((&x - &mean).square() * &m).sum_dim_intlist(1, true, Kind::Float) / &n;
    (x - mean) / (var + 1e-8).sqrt() * m
}

/// A speech encoder with its own variables.
pub struct SpeechEncoder {
    vs: VarStore,
    model: SpeechModel,
    pooling: Pooling,
}

impl SpeechEncoder {
    /// A randomly initialised encoder (initialisation draws from LibTorch's generator: hold a `ssl_core::rng::torch_rng` guard).
    pub fn new(cfg: &ModelConfig, pooling: Pooling, device: Device) -> Self {
        let vs = VarStore::new(device);
        let model = SpeechModel::new(&vs.root() / ENCODER_PREFIX, cfg);
        Self { vs, model, pooling }
    }

    /// Copy weights (names as in checkpoints, e.g. `encoder.proj.weight`) into this encoder.
    pub fn load(&mut self, weights: &[(String, Tensor)]) -> Result<()> {
        let vars = self.vs.variables();
        for (name, dst) in vars {
            let src = weights.iter().find(|(n, _)| *n == name).map(|(_, t)| t).ok_or_else(|| {
                ssl_core::CoreError::CheckpointMismatch(format!(
                    "tensor `{name}` is missing from the pretrained weights"
                ))
            })?;
            if src.size() != dst.size() {
                return Err(ssl_core::CoreError::CheckpointMismatch(format!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    src.size(),
                    dst.size()
                ))
                .into());
            }
            let mut d = dst.shallow_clone();
            tch::no_grad(|| d.copy_(src));
        }
        Ok(())
    }
}

impl Encoder for SpeechEncoder {
    fn features(&self, xs: &Tensor, _train: bool) -> Tensor {
        let lengths = valid_lengths(xs);
        let x = normalize_rows(xs, &lengths);
        let feats = self.model.conv_features(&x);
        let t = feats.size()[1];
        let lens = Vec::<i64>::try_from(lengths.to_device(Device::Cpu)).unwrap_or_default();
        let valid = frame_validity(self.model.config(), &lens, t, xs.device());
        let outs = self.model.transform(&self.model.project(&feats), &valid, None);
        match self.pooling {
            Pooling::Last => masked_mean(outs.last().expect("at least the input"), &valid),
            Pooling::AllLayers => Tensor::cat(&outs.iter().map(|o| masked_mean(o, &valid)).collect::<Vec<_>>(), 1),
            Pooling::AllLayersMeanStd => {
                Tensor::cat(&outs.iter().flat_map(|o| masked_mean_std(o, &valid)).collect::<Vec<_>>(), 1)
            }
        }
    }

    fn feature_dim(&self) -> i64 {
        let d = self.model.config().dim;
        match self.pooling {
            Pooling::Last => d,
            Pooling::AllLayers => d * (self.model.config().layers + 1),
            Pooling::AllLayersMeanStd => 2 * d * (self.model.config().layers + 1),
        }
    }

    fn var_store(&self) -> &VarStore {
        &self.vs
    }
}

/// Mean and standard deviation over the valid frames: `x` `[B, T, D]` -> two `[B, D]`.
pub fn masked_mean_std(x: &Tensor, valid: &Tensor) -> [Tensor; 2] {
    let mean = masked_mean(x, valid);
    let m = valid.to_kind(Kind::Float).unsqueeze(-1);
    let var = ((x - mean.unsqueeze(1)).square() * &m).sum_dim_intlist(1, false, Kind::Float)
        / m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
    [mean, (var + 1e-8).sqrt()]
}

/// Log-mel mean and standard deviation over the valid frames: `[N, 160]` (the raw baseline).
pub fn log_mel_stats(xs: &Tensor, model: &ModelConfig) -> Tensor {
    let mel = LogMel::new(xs.device());
    let lengths = valid_lengths(xs);
    let frames = mel.frames(&xs.to_kind(Kind::Float));
    let t = frames.size()[1];
    let lens = Vec::<i64>::try_from(lengths.to_device(Device::Cpu)).unwrap_or_default();
    let valid = frame_validity(model, &lens, t, xs.device());
    Tensor::cat(&masked_mean_std(&frames, &valid), 1)
}

/// What the protocol needs: the pretrained encoder, its scratch twin, and the log-mel baseline.
pub struct SpeechEncoderFactory {
    pub model: ModelConfig,
    pub pooling: Pooling,
    pub weights: Vec<(String, Tensor)>,
}

impl SpeechEncoderFactory {
    /// From the encoder weights of a checkpoint directory (or of a run directory's newest one).
    pub fn from_checkpoint(path: &Path, model: ModelConfig, pooling: Pooling) -> Result<Self> {
        let ckpt = ssl_core::checkpoint::resolve(path)?;
        let all = Tensor::read_safetensors(ckpt.join("model.safetensors"))?;
        let weights = all.into_iter().filter(|(n, _)| n.starts_with(ENCODER_PREFIX)).collect();
        Ok(Self { model, pooling, weights })
    }
}

impl EncoderFactory for SpeechEncoderFactory {
    fn pretrained(&self, device: Device) -> ssl_core::Result<Box<dyn Encoder>> {
        let mut enc = SpeechEncoder::new(&self.model, self.pooling, device);
        enc.load(&self.weights).map_err(|e| ssl_core::CoreError::CheckpointMismatch(e.to_string()))?;
        Ok(Box::new(enc))
    }

    fn scratch(&self, device: Device, seed: u64) -> ssl_core::Result<Box<dyn Encoder>> {
        let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(seed, "scratch-init"));
        Ok(Box::new(SpeechEncoder::new(&self.model, self.pooling, device)))
    }

    fn raw_features(&self, xs: &Tensor) -> Tensor {
        tch::no_grad(|| log_mel_stats(xs, &self.model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zeros_are_padding() {
        let xs = Tensor::from_slice(&[1.0f32, 0.0, 2.0, 0.0, 0.0, 3.0, 1.0, 1.0, 1.0, 1.0]).view([2, 5]);
        assert_eq!(Vec::<i64>::try_from(valid_lengths(&xs)).unwrap(), vec![3, 5]);
        let n = normalize_rows(&xs, &valid_lengths(&xs));
        assert_eq!(n.double_value(&[0, 4]), 0.0);
    }
}
