//! The whole recipe in three calls, as `ssl pretrain-text` runs it:
//! [`prepare`] (tokenizer + packed corpus), [`pretrain`] (ssl-core's trainer + held-out MLM
//! metrics) and [`eval_inputs`] (what ssl-core's protocol needs, with the text corruptions).
//!
//! A run directory holds `tokenizer.json`, the packed corpus `corpus.packed` (+ `.json`), the
//! trainer's `metrics.jsonl` and `checkpoints/`.
use crate::corruptions::text_corruptions;
use crate::data::corpus::{Corpus, DocStream, ReadStats};
use crate::data::dataset::MlmDataset;
use crate::data::labeled::{to_labeled_set, LabeledSplit};
use crate::data::masking::{Masker, MaskingConfig};
use crate::data::packing::{PackedCorpus, PackedMeta, PackedWriter, Packer};
use crate::data::tokenizer::{TextTokenizer, TokenizerConfig};
use crate::error::{Result, TextError};
use crate::model::encoder::TextEncoderFactory;
use crate::model::{BertConfig, Pooling};
use crate::objectives::mlm::{evaluate_mlm, MlmEval, MlmObjective};
use serde::{Deserialize, Serialize};
use ssl_core::eval::classifier::ProbeConfig;
use ssl_core::eval::finetune::FinetuneConfig;
use ssl_core::eval::{EvalKind, ProtocolConfig};
use ssl_core::optim::{OptimizerConfig, OptimizerKind};
use ssl_core::run::EvalInputs;
use ssl_core::schedule::Decay;
use ssl_core::trainer::{TrainConfig, TrainSummary, Trainer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that defines a text pretraining run (written as part of `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub tokenizer: TokenizerConfig,
    /// Packed sequence length (also the model's number of positions).
    pub max_len: usize,
    pub masking: MaskingConfig,
    /// The preset the model sizes came from.
    pub preset: String,
    /// Model sizes; `vocab_size` and `max_position` are set from the tokenizer and `max_len`.
    pub model: BertConfig,
    pub train: TrainConfig,
    /// Every `heldout_every`-th packed sequence is held out for the MLM metrics ...
    pub heldout_every: usize,
    /// ... at most this many.
    pub max_heldout: usize,
    /// The model's number of positions when it is not `max_len`: a model imported with
    /// `--init-from` keeps its own (512 for BERT).
    pub positions: Option<usize>,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self::cramming("tiny").expect("tiny is a preset")
    }
}

impl TextConfig {
    /// The compute-efficient recipe (Cramming, scaled down to a CPU): short sequences, a small
    /// vocabulary, 25% masking, no dropout, AdamW with warmup then linear decay, clip 0.5.
    pub fn cramming(preset: &str) -> Result<Self> {
        let model = BertConfig { dropout: 0.0, ..BertConfig::preset(preset)? };
        let train = TrainConfig {
            steps: 600,
            batch_size: 64,
            clip_norm: 0.5,
            lr: 1e-3,
            // Continued pretraining from --init-from (Gururangan et al. 2020 use 1e-4 for
            // RoBERTa): a pretrained model does not take the from-scratch rate.
            continued_lr: Some(1e-4),
            warmup_steps: 60,
            decay: Decay::Linear,
            lr_floor: 0.0,
            optimizer: OptimizerConfig {
                kind: OptimizerKind::AdamW { beta1: 0.9, beta2: 0.98, eps: 1e-12 },
                weight_decay: 0.01,
                fused: true,
            },
            log_every: 20,
            // Long text runs are the norm: a resumable checkpoint every 1000 steps (~4M tokens).
            checkpoint_every: 1000,
            ..TrainConfig::default()
        };
        Ok(Self {
            tokenizer: TokenizerConfig { vocab_size: 4096, min_frequency: 2 },
            max_len: 64,
            masking: MaskingConfig { rate: 0.25, ..Default::default() },
            preset: preset.into(),
            model,
            train,
            heldout_every: 20,
            max_heldout: 256,
            positions: None,
        })
    }

    /// The model sizes with a vocabulary of `vocab_size` and the run's positions (`positions`,
    /// else `max_len`).
    pub fn model_config(&self, vocab_size: usize) -> BertConfig {
        BertConfig {
            vocab_size: vocab_size as i64,
            max_position: self.positions.unwrap_or(self.max_len) as i64,
            ..self.model.clone()
        }
    }

    /// The protocol defaults for text: 10 and 50 labels per class, 3 seeds, linear probe (its
    /// L2 penalty chosen by 5-fold cross-validation on the labeled subset: with ~100 labels and
    /// sparse TF-IDF or 128-d features an unregularised head fits the subset perfectly) and
    /// fine-tuning (short, with a small LR, as for BERT).
    pub fn protocol() -> ProtocolConfig {
        ProtocolConfig {
            labels_per_class: vec![10, 50],
            seeds: 3,
            evals: vec![EvalKind::Linear, EvalKind::Finetune],
            probe: ProbeConfig { cv_folds: 5, ..ProbeConfig::default() },
            // BERT-style: small encoder rates, layer-wise decay, the head 10x faster.
            finetune: FinetuneConfig {
                batch_size: 16,
                lr: 1e-4,
                lr_grid: vec![1e-4, 3e-4],
                layer_decay: 0.8,
                max_steps: 150,
                ..FinetuneConfig::default()
            },
            knn_k: 20,
            robustness_labels_per_class: None,
            robustness_max_test: 200,
            feature_batch: 256,
            raw_baseline: true,
            seed: 0,
            ..ProtocolConfig::default()
        }
    }
}

/// The tokenizer and packed corpus of a run.
pub struct PreparedData {
    pub tokenizer: Arc<TextTokenizer>,
    pub packed: Arc<PackedCorpus>,
    pub train_indices: Vec<usize>,
    pub heldout_indices: Vec<usize>,
    /// What reading the corpus found (from the pass that packed it; default when reused).
    pub read: ReadStats,
    /// Whether the tokenizer was trained in this call (else loaded).
    pub trained_tokenizer: bool,
    pub corpus_files: Vec<String>,
}

impl PreparedData {
    /// The model sizes with the vocabulary and positions filled in.
    pub fn model_config(&self, cfg: &TextConfig) -> BertConfig {
        cfg.model_config(self.tokenizer.vocab_size())
    }

    /// The masker of this run.
    pub fn masker(&self, cfg: &TextConfig) -> Result<Masker> {
        Masker::new(cfg.masking, self.tokenizer.special(), self.tokenizer.vocab_size(), cfg.max_len)
    }
}

fn take_stats(stream: &DocStream) -> Result<ReadStats> {
    if let Some(e) = stream.error().lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    Ok(stream.stats().lock().map(|s| s.clone()).unwrap_or_default())
}

/// Tokenize and pack the corpus into `out` (streamed, in chunks).
fn pack_corpus(corpus: &Corpus, tok: &TextTokenizer, max_len: usize, out: &Path) -> Result<(PackedMeta, ReadStats)> {
    let mut stream = DocStream::new(corpus);
    let mut packer = Packer::new(max_len, tok.special())?;
    let mut writer = PackedWriter::create(out, max_len, tok.special())?;
    loop {
        let chunk: Vec<String> = stream.by_ref().take(1024).collect();
        if chunk.is_empty() {
            break;
        }
        for enc in tok.encode_batch(&chunk)? {
            writer.add_document();
            for seq in packer.push(&enc) {
                writer.write(&seq)?;
            }
        }
    }
    if let Some(seq) = packer.finish() {
        writer.write(&seq)?;
    }
    let stats = take_stats(&stream)?;
    let meta = writer.finish()?;
    Ok((meta, stats))
}

/// Train (or load) the tokenizer and pack the corpus into `run_dir`.
///
/// `tokenizer_file`: use this `tokenizer.json` instead of training one. With `reuse`, a
/// tokenizer and packed corpus already in `run_dir` (from an interrupted run) are used as they are.
pub fn prepare(
    corpus_paths: &[PathBuf],
    tokenizer_file: Option<&Path>,
    cfg: &TextConfig,
    run_dir: &Path,
    reuse: bool,
) -> Result<PreparedData> {
    std::fs::create_dir_all(run_dir).map_err(|e| TextError::io(run_dir, e))?;
    let corpus = Corpus::open(corpus_paths)?;
    let tok_path = run_dir.join("tokenizer.json");
    let mut read = ReadStats::default();
    let (tokenizer, trained) = if let Some(p) = tokenizer_file {
        (TextTokenizer::load(p)?, false)
    } else if reuse && tok_path.is_file() {
        (TextTokenizer::load(&tok_path)?, false)
    } else {
        let stream = DocStream::new(&corpus);
        let (stats, error) = (stream.stats(), stream.error());
        let trained = TextTokenizer::train(stream, &cfg.tokenizer);
        if let Some(e) = error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        read = stats.lock().map(|s| s.clone()).unwrap_or_default();
        if read.documents == 0 {
            return Err(TextError::EmptyCorpus(corpus.describe().join(", ")));
        }
        (trained?, true)
    };
    if tokenizer_file.is_some() || trained {
        tokenizer.save(&tok_path)?;
    }
    let packed_path = run_dir.join("corpus.packed");
    let reusable = reuse
        && !trained
        && PackedCorpus::open(&packed_path).map(|p| p.meta.max_len == cfg.max_len && !p.is_empty()).unwrap_or(false);
    if !reusable {
        let (meta, stats) = pack_corpus(&corpus, &tokenizer, cfg.max_len, &packed_path)?;
        if meta.documents == 0 {
            return Err(TextError::EmptyCorpus(corpus.describe().join(", ")));
        }
        read = stats;
    }
    let packed = PackedCorpus::open(&packed_path)?;
    let (train_indices, heldout_indices) = packed.split(cfg.heldout_every, cfg.max_heldout);
    if train_indices.is_empty() {
        return Err(TextError::EmptyCorpus("the corpus packs into no training sequence".into()));
    }
    Ok(PreparedData {
        tokenizer: Arc::new(tokenizer),
        packed: Arc::new(packed),
        train_indices,
        heldout_indices,
        read,
        trained_tokenizer: trained,
        corpus_files: corpus.describe(),
    })
}

/// What pretraining produced.
pub struct Pretrained {
    pub summary: TrainSummary,
    /// Masked-token accuracy and perplexity on the held-out sequences, fixed mask.
    pub heldout: Option<MlmEval>,
    pub model: BertConfig,
    /// Tokens (non-padding) seen by the optimizer in this process.
    pub tokens_seen: u64,
}

/// Pretrain with `trainer` (its settings, run directory, device and start; `cfg.train` is what
/// the run plan made of them), then measure the held-out MLM metrics.
pub fn pretrain(data: &PreparedData, cfg: &TextConfig, trainer: Trainer) -> Result<Pretrained> {
    let model_cfg = data.model_config(cfg);
    let masker = data.masker(cfg)?;
    let device = trainer.device;
    let (batch_size, grad_accum) = (trainer.config.batch_size, trainer.config.grad_accum);
    let mut objective = {
        let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(trainer.config.seed, "init"));
        MlmObjective::new(&model_cfg, device)?
    };
    let source = Arc::new(MlmDataset::new(data.packed.clone(), data.train_indices.clone(), masker.clone()));
    let trainer = trainer.with_model_config(serde_json::json!({
        "model": model_cfg,
        "masking": cfg.masking,
        "max_len": cfg.max_len,
        "tokenizer": cfg.tokenizer,
    }));
    let summary = trainer.fit(&mut objective, source)?;
    let heldout = if data.heldout_indices.is_empty() {
        None
    } else {
        Some(evaluate_mlm(&objective.bert, &data.packed, &data.heldout_indices, &masker, 128, device)?)
    };
    let per_seq = data.packed.meta.tokens as f64 / data.packed.len().max(1) as f64;
    let tokens_seen = (summary.losses.len() as f64 * (batch_size * grad_accum) as f64 * per_seq) as u64;
    Ok(Pretrained { summary, heldout, model: model_cfg, tokens_seen })
}

/// What ssl-core's protocol needs to evaluate the encoder of `weights` (a run directory or a
/// checkpoint) on `labeled`: the tokenized labeled split, pretrained and scratch encoders (with the
/// TF-IDF raw baseline fitted on the train split) and the text corruptions. `model` is the full
/// model configuration ([`PreparedData::model_config`], or the `model` saved with a run); texts
/// are cut to `max_len` tokens; `pooling` picks the hidden states the features average (for the
/// probe and the fine-tuning head alike).
pub fn eval_inputs(
    tokenizer: &Arc<TextTokenizer>,
    model: &BertConfig,
    max_len: usize,
    labeled: &LabeledSplit,
    weights: &Path,
    protocol: &ProtocolConfig,
    pooling: Pooling,
) -> Result<EvalInputs<'static>> {
    if max_len as i64 > model.max_position {
        return Err(TextError::InvalidArgument(format!(
            "--max-len {max_len} is longer than the model's {} positions",
            model.max_position
        )));
    }
    let train = to_labeled_set(&labeled.train, &labeled.classes, tokenizer, max_len)?;
    let test = to_labeled_set(&labeled.test, &labeled.classes, tokenizer, max_len)?;
    let factory = TextEncoderFactory::new(model.clone(), Some(weights.to_path_buf()))
        .with_special(tokenizer.special())
        .with_idf_from(&train.inputs)
        .with_pooling(pooling);
    let corruptions = text_corruptions(tokenizer.clone(), protocol.seed);
    Ok(EvalInputs { factory: Box::new(factory), train, test, corruptions })
}
