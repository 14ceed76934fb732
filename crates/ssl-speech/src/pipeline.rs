//! The recipe end to end: configuration, pretraining with ssl-core's trainer, and the evaluation
//! protocol on a labeled split.
use crate::corruptions::speech_corruptions;
use crate::data::dataset::{AudioCorpus, CropSource, LabeledSplit};
use crate::data::masking::SpanMasker;
use crate::error::{Result, SpeechError};
use crate::model::encoder::{Pooling, SpeechEncoderFactory};
use crate::model::ModelConfig;
use crate::objectives::{ObjectiveConfig, SpeechObjective};
use serde::{Deserialize, Serialize};
use ssl_core::eval::protocol::Evaluation;
use ssl_core::eval::{evaluate, EvalKind, ProtocolConfig};
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, TrainSummary, Trainer};
use std::sync::Arc;
use tch::{Device, Tensor};

/// The effective configuration of a speech run (written to `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeechConfig {
    pub preset: String,
    pub model: ModelConfig,
    pub objective: ObjectiveConfig,
    pub masking: SpanMasker,
    /// Length of the random pretraining crops.
    pub crop_seconds: f64,
    /// Length every evaluation clip is centre-cropped or padded to.
    pub eval_seconds: f64,
    /// Cut the pretraining crops on the training device (`--augment-on-device`, see
    /// [`crate::data::batch`]); the same samples and masks as the loader's.
    #[serde(default)]
    pub augment_on_device: bool,
    pub pooling: Pooling,
    pub train: TrainConfig,
    pub protocol: ProtocolConfig,
}

impl SpeechConfig {
    /// Samples of an evaluation clip (`eval_seconds` at 16 kHz).
    pub fn eval_samples(&self) -> usize {
        (self.eval_seconds * crate::data::wav::SAMPLE_RATE as f64).round() as usize
    }

    /// Defaults for a preset (`tiny` or `small`), sized for the default run on 2 CPU cores.
    pub fn preset(name: &str) -> Result<Self> {
        let model = ModelConfig::preset(name)
            .ok_or_else(|| SpeechError::InvalidArgument(format!("unknown preset `{name}` (expected tiny or small)")))?;
        let train = TrainConfig {
            steps: 600,
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 60,
            clip_norm: 1.0,
            optimizer: OptimizerConfig::adamw(0.01),
            log_every: 10,
            ..TrainConfig::default()
        };
        let protocol = ProtocolConfig {
            labels_per_class: vec![1, 5],
            seeds: 3,
            // Fine-tuning's scratch side is the trained baseline the headline compares against.
            evals: vec![EvalKind::Linear, EvalKind::Knn, EvalKind::Finetune],
            knn_k: 5,
            feature_batch: 64,
            ..ProtocolConfig::default()
        };
        Ok(Self {
            preset: name.to_string(),
            model,
            objective: ObjectiveConfig::default(),
            masking: SpanMasker::default(),
            crop_seconds: 2.0,
            eval_seconds: 1.0,
            augment_on_device: false,
            pooling: Pooling::AllLayers,
            train,
            protocol,
        })
    }

    /// Check the values a user may have overridden.
    pub fn validate(&self) -> Result<()> {
        self.model.validate().map_err(SpeechError::InvalidArgument)?;
        if !(self.masking.prob > 0.0 && self.masking.prob <= 1.0) || self.masking.length == 0 {
            return Err(SpeechError::InvalidArgument(
                "--mask-prob must be in (0, 1] and --mask-length positive".into(),
            ));
        }
        if !(self.crop_seconds > 0.0 && self.eval_seconds > 0.0) {
            return Err(SpeechError::InvalidArgument(
                "--crop-seconds and the evaluation length must be positive".into(),
            ));
        }
        Ok(())
    }

    /// What checkpoints store and resume checks (model and method, not run lengths).
    pub fn model_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.model,
            "objective": self.objective,
            "masking": self.masking,
            "crop_seconds": self.crop_seconds,
        })
    }
}

/// The outcome of pretraining.
pub struct Pretrained {
    pub summary: TrainSummary,
    /// The encoder's weights (names as in checkpoints), on the CPU.
    pub encoder: Vec<(String, Tensor)>,
}

/// Pretrain on `corpus` with `trainer` (its settings, run directory, device and start;
/// `cfg.train` is what the run plan made of them): metrics.jsonl and checkpoints/ in the run
/// directory.
pub fn pretrain(cfg: &SpeechConfig, corpus: AudioCorpus, trainer: Trainer) -> Result<Pretrained> {
    cfg.validate()?;
    let source = CropSource::new(corpus, cfg.crop_seconds, cfg.masking, cfg.model.clone())?
        .crops_on_device(cfg.augment_on_device)?;
    let mut objective = {
        let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(trainer.config.seed, "init"));
        SpeechObjective::new(&cfg.model, cfg.objective.clone(), trainer.device)
    };
    let summary = trainer.with_model_config(cfg.model_json()).fit(&mut objective, Arc::new(source))?;
    Ok(Pretrained { summary, encoder: objective.encoder_weights() })
}

/// Run ssl-core's protocol on a labeled split: pretrained against scratch, the log-mel baseline,
/// and the speech corruptions.
pub fn evaluate_split(
    cfg: &SpeechConfig,
    encoder: &[(String, Tensor)],
    split: &LabeledSplit,
    device: Device,
) -> Result<Evaluation> {
    let weights = encoder.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let factory = SpeechEncoderFactory { model: cfg.model.clone(), pooling: cfg.pooling, weights };
    let corruptions = speech_corruptions(cfg.protocol.seed);
    Ok(evaluate(&factory, &split.train, &split.test, &corruptions, &cfg.protocol, device)?)
}
