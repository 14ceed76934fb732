//! What the three pretext tasks on masked frames share, as an [`Objective`] for ssl-core's
//! trainer: the encoder, the masked frames, and the dispatch to the method's own file.
//!
//! - [`crate::objectives::best_rq`] (default): predict, for each masked frame, the id a frozen
//!   random-projection quantizer gives its log-mel frame; cross-entropy on masked frames only.
//! - [`crate::objectives::contrastive`] (wav2vec 2.0): identify the Gumbel-quantized conv feature of each
//!   masked frame among 100 distractors from the same utterance (InfoNCE), plus a codebook
//!   diversity loss.
//! - [`crate::objectives::reconstruct`]: L1 regression of the (per-utterance normalised) log-mel frame of each
//!   masked frame.
//!
//! Every method logs what reveals collapse: code perplexity, and target and prediction variance.
pub mod best_rq;
pub mod contrastive;
pub mod reconstruct;

use crate::data::dataset::SpeechBatch;
use crate::data::features::LogMel;
use crate::model::{frame_validity, ModelConfig, SpeechModel};
use crate::objectives::best_rq::BestRq;
use crate::objectives::contrastive::Contrastive;
use crate::objectives::reconstruct::Reconstruct;
use serde::{Deserialize, Serialize};
use ssl_core::trainer::{Objective, StepOutput};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Which pretext task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    BestRq,
    Contrastive,
    Reconstruct,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::BestRq => "best-rq",
            Method::Contrastive => "contrastive",
            Method::Reconstruct => "reconstruct",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best-rq" | "bestrq" => Ok(Method::BestRq),
            "contrastive" | "wav2vec2" => Ok(Method::Contrastive),
            "reconstruct" => Ok(Method::Reconstruct),
            o => Err(format!("unknown objective `{o}` (expected best-rq, contrastive or reconstruct)")),
        }
    }
}

/// Settings of the pretext tasks (defaults from the papers, scaled down where noted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectiveConfig {
    pub method: Method,
    /// BEST-RQ: codebook size and code dimension (paper: 8192 x 16; 512 at this scale).
    pub codebook_size: i64,
    pub code_dim: i64,
    /// Seed of the frozen random quantizer.
    pub quantizer_seed: u64,
    /// Contrastive: codebooks G, entries V per codebook, dimension of the compared vectors.
    pub groups: i64,
    pub entries: i64,
    pub final_dim: i64,
    pub num_negatives: i64,
    /// Temperature of the cosine similarities in InfoNCE.
    pub logit_temperature: f64,
    pub diversity_weight: f64,
    /// Gumbel temperature, annealed geometrically from start to end over the run.
    pub gumbel_start: f64,
    pub gumbel_end: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            method: Method::BestRq,
            codebook_size: 512,
            code_dim: 16,
            quantizer_seed: 0,
            groups: 2,
            entries: 64,
            final_dim: 64,
            num_negatives: 100,
            logit_temperature: 0.1,
            diversity_weight: 0.1,
            gumbel_start: 2.0,
            gumbel_end: 0.5,
        }
    }
}

/// The Gumbel temperature at `step` of `total`: geometric from `start` to `end`.
pub fn gumbel_temperature(start: f64, end: f64, step: u64, total: u64) -> f64 {
    if total <= 1 {
        return end;
    }
    let f = (step as f64 / (total - 1) as f64).clamp(0.0, 1.0);
    start * (end / start).powf(f)
}

/// The encoder's output on a batch, as every method sees it.
pub struct MaskedFrames<'a> {
    pub model: &'a SpeechModel,
    pub mel: &'a LogMel,
    pub config: &'a ObjectiveConfig,
    /// Raw waveforms `[B, samples]` on the device, and their unpadded lengths.
    pub waves: &'a Tensor,
    pub lengths: &'a [i64],
    /// Conv features `[B, T, C]` and their projection `[B, T, D]`.
    pub feats: Tensor,
    pub projected: Tensor,
    /// `[B, T]`: frames inside the utterance, and the masked ones among them.
    pub valid: Tensor,
    pub mask: Tensor,
    /// The Gumbel temperature now (contrastive only).
    pub temperature: f64,
}

impl MaskedFrames<'_> {
    pub fn frames(&self) -> i64 {
        self.feats.size()[1]
    }
}

/// One pretext task on masked frames: its head, targets and loss, in its own file.
pub trait FrameTask {
    /// The loss and the method's own metrics.
    fn loss(&self, f: &MaskedFrames<'_>) -> (Tensor, Vec<(String, Tensor)>);
}

/// The model being pretrained, its heads and its (frozen) target makers.
pub struct SpeechObjective {
    vs: VarStore,
    pub model: SpeechModel,
    task: Box<dyn FrameTask>,
    mel: LogMel,
    config: ObjectiveConfig,
    /// The current Gumbel temperature (contrastive only).
    pub temperature: f64,
}

/// Prefix of the encoder's variables in the var store (and in checkpoints).
pub const ENCODER_PREFIX: &str = "encoder";

/// Mean over dimensions of the variance over rows: `x` `[N, D]`.
pub(crate) fn frame_variance(x: &Tensor) -> Tensor {
    if x.size()[0] < 2 {
        return Tensor::zeros([], (Kind::Float, x.device()));
    }
    x.to_kind(Kind::Float).var_dim(0, false, false).mean(Kind::Float)
}

impl SpeechObjective {
    /// Build the model and heads on `device` (initialisation draws from LibTorch's generator: hold a `ssl_core::rng::torch_rng` guard).
    pub fn new(model_cfg: &ModelConfig, config: ObjectiveConfig, device: Device) -> Self {
        let vs = VarStore::new(device);
        let model = SpeechModel::new(&vs.root() / ENCODER_PREFIX, model_cfg);
        let p = &vs.root() / "head";
        let task: Box<dyn FrameTask> = match config.method {
            Method::BestRq => Box::new(BestRq::new(&p, model_cfg, &config, device)),
            Method::Contrastive => Box::new(Contrastive::new(&p, model_cfg, &config)),
            Method::Reconstruct => Box::new(Reconstruct::new(&p, model_cfg)),
        };
        let temperature = config.gumbel_start;
        Self { vs, model, task, mel: LogMel::new(device), config, temperature }
    }

    pub fn config(&self) -> &ObjectiveConfig {
        &self.config
    }

    /// The encoder's variables (name, tensor) as they appear in checkpoints.
    pub fn encoder_weights(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(n, _)| n.starts_with(ENCODER_PREFIX))
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).copy()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Loss and metrics for a batch already on `device`.
    pub fn loss(&self, waves: &Tensor, lengths: &[i64], mask: &Tensor) -> StepOutput {
        let feats = self.model.conv_features(waves);
        let t = feats.size()[1];
        let valid = frame_validity(self.model.config(), lengths, t, waves.device());
        let mask = mask.narrow(1, 0, t).logical_and(&valid);
        let masked_count = mask.to_kind(Kind::Float).sum(Kind::Float);
        let projected = self.model.project(&feats);
        let mut metrics = vec![("masked_frames".to_string(), masked_count / mask.size()[0] as f64)];
        let frames = MaskedFrames {
            model: &self.model,
            mel: &self.mel,
            config: &self.config,
            waves,
            lengths,
            feats,
            projected,
            valid,
            mask,
            temperature: self.temperature,
        };
        let (loss, extra) = self.task.loss(&frames);
        metrics.extend(extra);
        StepOutput { loss, metrics }
    }
}

impl Objective for SpeechObjective {
    type Batch = SpeechBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &SpeechBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let waves = batch.waves_on(device)?;
        let mask = batch.mask_on(device)?;
        Ok(self.loss(&waves, &batch.lengths, &mask))
    }

    fn on_step_end(&mut self, step: u64, total: u64) {
        self.temperature = gumbel_temperature(self.config.gumbel_start, self.config.gumbel_end, step + 1, total);
    }

    fn batch_samples(&self, batch: &SpeechBatch) -> usize {
        batch.lengths.len()
    }

    /// The masked-prediction losses are means over the masked frames.
    fn loss_weight(&self, batch: &SpeechBatch) -> f64 {
        batch.mask.f_sum(Kind::Int64).map(|n| n.int64_value(&[]) as f64).unwrap_or(batch.lengths.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_anneals_from_start_to_end() {
        assert!((gumbel_temperature(2.0, 0.5, 0, 101) - 2.0).abs() < 1e-12);
        assert!((gumbel_temperature(2.0, 0.5, 50, 101) - 1.0).abs() < 1e-12);
        assert!((gumbel_temperature(2.0, 0.5, 100, 101) - 0.5).abs() < 1e-12);
    }
}
