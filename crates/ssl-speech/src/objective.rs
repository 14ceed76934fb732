//! The three pretext tasks on masked frames, as an [`Objective`] for ssl-core's trainer.
//!
//! - `best-rq` (default): predict, for each masked frame, the id a frozen random-projection
//!   quantizer gives its log-mel frame; cross-entropy on masked frames only.
//! - `contrastive` (wav2vec 2.0): identify the Gumbel-quantized conv feature of each masked frame
//!   among 100 distractors from the same utterance (InfoNCE), plus a codebook diversity loss.
//! - `reconstruct`: L1 regression of the (per-utterance normalised) log-mel frame of each masked
//!   frame.
//!
//! Every method logs what reveals collapse: code perplexity, and target and prediction variance.
use crate::dataset::SpeechBatch;
use crate::features::{normalize_frames, LogMel, N_MELS};
use crate::model::{frame_validity, ModelConfig, SpeechModel};
use crate::quantizer::{usage_perplexity, GumbelQuantizer, RandomProjectionQuantizer};
use serde::{Deserialize, Serialize};
use ssl_core::losses::{diversity_loss, info_nce, masked_cross_entropy, masked_reconstruction, Reconstruction};
use ssl_core::trainer::{Objective, StepOutput};
use tch::nn::{self, Module, VarStore};
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

enum Head {
    BestRq { rq: RandomProjectionQuantizer, classifier: nn::Linear },
    Contrastive { quantizer: GumbelQuantizer, project_q: nn::Linear, final_proj: nn::Linear },
    Reconstruct { regressor: nn::Linear },
}

/// The model being pretrained, its heads and its (frozen) target makers.
pub struct SpeechObjective {
    vs: VarStore,
    pub model: SpeechModel,
    head: Head,
    mel: LogMel,
    config: ObjectiveConfig,
    /// The current Gumbel temperature (contrastive only).
    pub temperature: f64,
}

/// Prefix of the encoder's variables in the var store (and in checkpoints).
pub const ENCODER_PREFIX: &str = "encoder";

/// Mean over dimensions of the variance over rows: `x` `[N, D]`.
fn frame_variance(x: &Tensor) -> Tensor {
    if x.size()[0] < 2 {
        return Tensor::zeros([], (Kind::Float, x.device()));
    }
    x.to_kind(Kind::Float).var_dim(0, false, false).mean(Kind::Float)
}

impl SpeechObjective {
    /// Build the model and heads on `device` (initialisation follows `tch::manual_seed`).
    pub fn new(model_cfg: &ModelConfig, config: ObjectiveConfig, device: Device) -> Self {
        let vs = VarStore::new(device);
        let model = SpeechModel::new(&vs.root() / ENCODER_PREFIX, model_cfg);
        let p = &vs.root() / "head";
        let head = match config.method {
            Method::BestRq => Head::BestRq {
                rq: RandomProjectionQuantizer::new(
                    N_MELS,
                    config.code_dim,
                    config.codebook_size,
                    config.quantizer_seed,
                    device,
                ),
                classifier: nn::linear(&p / "classifier", model_cfg.dim, config.codebook_size, Default::default()),
            },
            Method::Contrastive => Head::Contrastive {
                quantizer: GumbelQuantizer::new(
                    &p / "quantizer",
                    model_cfg.conv_channels,
                    config.groups,
                    config.entries,
                    config.final_dim,
                ),
                project_q: nn::linear(&p / "project_q", config.final_dim, config.final_dim, Default::default()),
                final_proj: nn::linear(&p / "final_proj", model_cfg.dim, config.final_dim, Default::default()),
            },
            Method::Reconstruct => {
                Head::Reconstruct { regressor: nn::linear(&p / "regressor", model_cfg.dim, N_MELS, Default::default()) }
            }
        };
        let temperature = config.gumbel_start;
        Self { vs, model, head, mel: LogMel::new(device), config, temperature }
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
        let device = waves.device();
        let feats = self.model.conv_features(waves);
        let t = feats.size()[1];
        let valid = frame_validity(self.model.config(), lengths, t, device);
        let mask = mask.narrow(1, 0, t).logical_and(&valid);
        let masked_count = mask.to_kind(Kind::Float).sum(Kind::Float);
        let projected = self.model.project(&feats);
        let mut metrics = vec![("masked_frames".to_string(), masked_count / mask.size()[0] as f64)];
        let (loss, extra) = match &self.head {
            Head::BestRq { rq, classifier } => {
                let mel = normalize_frames(&self.mel.frames(waves).narrow(1, 0, t), &valid);
                let (targets, proj) = tch::no_grad(|| (rq.codes(&mel), rq.project(&mel)));
                let out = self.model.transform(&projected, &valid, Some(&mask));
                let last = out.last().expect("at least the input").shallow_clone();
                let logits = classifier.forward(&last);
                let loss = masked_cross_entropy(&logits, &targets, &mask);
                let sel_t = targets.masked_select(&mask);
                let sel_last = last.index(&[Some(&mask)]);
                let m = tch::no_grad(|| {
                    let probs = logits.index(&[Some(&mask)]).softmax(-1, Kind::Float);
                    let acc = probs.argmax(-1, false).eq_tensor(&sel_t).to_kind(Kind::Float).mean(Kind::Float);
                    let avg = probs.mean_dim(0, false, Kind::Float);
                    let pred_ppl = (&avg * (&avg + 1e-9).log()).sum(Kind::Float).neg().exp();
                    vec![
                        ("accuracy".to_string(), acc),
                        ("target_perplexity".to_string(), usage_perplexity(&sel_t, self.config.codebook_size)),
                        ("prediction_perplexity".to_string(), pred_ppl),
                        ("target_variance".to_string(), frame_variance(&proj.index(&[Some(&mask)]))),
                        ("prediction_variance".to_string(), frame_variance(&sel_last.detach())),
                    ]
                });
                (loss, m)
            }
            Head::Contrastive { quantizer, project_q, final_proj } => {
                let q = quantizer.forward(&feats, &valid, self.temperature, true);
                let targets = project_q.forward(&q.vectors); // [B, T, F]
                let out = self.model.transform(&projected, &valid, Some(&mask));
                let pred = final_proj.forward(out.last().expect("at least the input")); // [B, T, F]
                let negatives = sample_negatives(&targets, lengths, self.model.config(), self.config.num_negatives);
                let sel_pred = pred.index(&[Some(&mask)]);
                let sel_pos = targets.index(&[Some(&mask)]);
                let sel_neg = negatives.index(&[Some(&mask)]);
                let (nce, logits) = if sel_pred.size()[0] > 0 {
                    info_nce(&sel_pred, &sel_pos, &sel_neg, self.config.logit_temperature)
                } else {
                    (Tensor::zeros([], (Kind::Float, device)), Tensor::zeros([0, 1], (Kind::Float, device)))
                };
                let (div, ppl) = diversity_loss(&q.avg_probs);
                let loss = &nce + &div * self.config.diversity_weight;
                let m = tch::no_grad(|| {
                    let acc = if logits.size()[0] > 0 {
                        logits.argmax(-1, false).eq(0).to_kind(Kind::Float).mean(Kind::Float)
                    } else {
                        Tensor::zeros([], (Kind::Float, device))
                    };
                    vec![
                        ("contrastive_loss".to_string(), nce.detach()),
                        ("diversity_loss".to_string(), div.detach()),
                        ("code_perplexity".to_string(), ppl.detach()),
                        ("accuracy".to_string(), acc),
                        ("gumbel_temperature".to_string(), Tensor::from(self.temperature).to_device(device)),
                        ("target_variance".to_string(), frame_variance(&sel_pos.detach())),
                        ("prediction_variance".to_string(), frame_variance(&sel_pred.detach())),
                    ]
                });
                (loss, m)
            }
            Head::Reconstruct { regressor } => {
                let mel = tch::no_grad(|| normalize_frames(&self.mel.frames(waves).narrow(1, 0, t), &valid));
                let out = self.model.transform(&projected, &valid, Some(&mask));
                let pred = regressor.forward(out.last().expect("at least the input"));
                let loss = masked_reconstruction(&pred, &mel, &mask, Reconstruction::L1, false);
                let m = tch::no_grad(|| {
                    vec![
                        ("target_variance".to_string(), frame_variance(&mel.index(&[Some(&mask)]))),
                        ("prediction_variance".to_string(), frame_variance(&pred.index(&[Some(&mask)]).detach())),
                    ]
                });
                (loss, m)
            }
        };
        metrics.extend(extra);
        StepOutput { loss, metrics }
    }
}

/// For every frame of `targets` `[B, T, F]`, `k` distractors drawn uniformly (with replacement)
/// from the other valid frames of the same utterance -> `[B, T, k, F]`.
pub fn sample_negatives(targets: &Tensor, lengths: &[i64], model: &ModelConfig, k: i64) -> Tensor {
    let (b, t, f) = targets.size3().expect("[B, T, F]");
    let device = targets.device();
    let valid: Vec<i64> = lengths.iter().map(|&l| model.frames(l).clamp(1, t)).collect();
    let valid_t = Tensor::from_slice(&valid).to_device(device).view([b, 1, 1]);
    let others = (&valid_t - 1).clamp_min(1).to_kind(Kind::Float);
    let draw = (Tensor::rand([b, t, k], (Kind::Float, device)) * &others).floor().to_kind(Kind::Int64);
    let pos = Tensor::arange(t, (Kind::Int64, device)).view([1, t, 1]);
    // Skip the frame itself: draws at or above it move up by one.
    let idx = &draw + draw.ge_tensor(&pos).to_kind(Kind::Int64);
    let idx = idx.minimum(&(&valid_t - 1).clamp_min(0));
    let offsets = (Tensor::arange(b, (Kind::Int64, device)) * t).view([b, 1, 1]);
    let flat = (idx + offsets).reshape([-1]);
    targets.reshape([b * t, f]).index_select(0, &flat).view([b, t, k, f])
}

impl Objective for SpeechObjective {
    type Batch = SpeechBatch;

    fn var_store(&self) -> &VarStore {
        &self.vs
    }

    fn forward(&mut self, batch: &SpeechBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let waves = batch.waves.to_device(device);
        let mask = batch.mask.to_device(device);
        Ok(self.loss(&waves, &batch.lengths, &mask))
    }

    fn on_step_end(&mut self, step: u64, total: u64) {
        self.temperature = gumbel_temperature(self.config.gumbel_start, self.config.gumbel_end, step + 1, total);
    }

    fn batch_samples(&self, batch: &SpeechBatch) -> usize {
        batch.lengths.len()
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

    #[test]
    fn negatives_come_from_other_valid_frames_of_the_same_utterance() {
        tch::manual_seed(0);
        let cfg = ModelConfig::tiny();
        let (b, t) = (2i64, 10i64);
        // Frame value = b * 100 + t, so a distractor tells where it came from.
        let targets = (Tensor::arange(b * t, (Kind::Float, Device::Cpu)).view([b, t])
            + Tensor::from_slice(&[0.0f32, 90.0]).view([b, 1]))
        .unsqueeze(-1);
        let lengths = [400 + 320 * 9, 400 + 320 * 5]; // 10 and 6 valid frames
        assert_eq!((cfg.frames(lengths[0]), cfg.frames(lengths[1])), (10, 6));
        let neg = sample_negatives(&targets, &lengths, &cfg, 50);
        for bi in 0..b {
            for ti in 0..t {
                let v = Vec::<f32>::try_from(neg.get(bi).get(ti).reshape([-1])).unwrap();
                for x in v {
                    let (src_b, src_t) = ((x as i64) / 100, (x as i64) % 100);
                    assert_eq!(src_b, bi);
                    assert_ne!(src_t, ti);
                    assert!(src_t < if bi == 0 { 10 } else { 6 });
                }
            }
        }
    }
}
