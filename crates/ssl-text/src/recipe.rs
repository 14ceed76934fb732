//! `pretrain-text` as a [`Recipe`]: the flags, and what the run pipeline needs from text.
//!
//! The pipeline itself (validation, `config.json`, training, evaluation, report) is ssl-core's
//! [`ssl_core::run::execute`]; this file says how the corpus is tokenized and packed, which
//! model trains, and how the labeled texts are evaluated. A run directory also holds
//! `tokenizer.json` and the packed corpus.
use crate::data::labeled::{load_labeled, LabeledSplit};
use crate::data::tokenizer::TextTokenizer;
use crate::flags::TextFlags;
use crate::interop::import::HfBert;
use crate::model::BertConfig;
use crate::objectives::mlm::MlmObjective;
use crate::pipeline::{self, PreparedData, TextConfig};
use crate::{Result, TextError};
use ssl_core::eval::ProtocolConfig;
use ssl_core::init::{InitSource, InitWeights};
use ssl_core::interop::{ExportFormat, RunWeights};
use ssl_core::run::{DataReport, EvalInputs, Mode, Opened, Recipe, RunPlan};
use ssl_core::trainer::{TrainSummary, Trainer};
use ssl_records::skipped::{Skipped, SkippedInputs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DEFAULT_CORPUS: &str = "datasets/text/corpus";
const DEFAULT_LABELED: &str = "datasets/text/labeled/rotten_tomatoes.csv";

/// The text recipe: flags in, a pretrained and evaluated encoder out.
pub struct TextRecipe {
    pub flags: TextFlags,
    cfg: TextConfig,
    protocol: ProtocolConfig,
    /// The model with the vocabulary and positions filled in (after `open`).
    model: Option<BertConfig>,
    tokenizer: Option<Arc<TextTokenizer>>,
    data: Option<PreparedData>,
    labeled: Option<LabeledSplit>,
    /// `--init-from`: the source's weights, read in `open` with its tokenizer and model.
    init: Option<InitWeights>,
    notes: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> TextError {
    TextError::InvalidArgument(msg.into())
}

impl TextRecipe {
    /// Check and apply the text flags to the preset's defaults.
    pub fn new(flags: TextFlags) -> Result<Self> {
        let mut cfg = TextConfig::cramming(&flags.preset)?;
        if let Some(r) = flags.mask_rate {
            if !(r > 0.0 && r < 1.0) {
                return Err(invalid(format!("--mask-rate must be in (0, 1), got {r}")));
            }
            cfg.masking.rate = r;
        }
        cfg.masking.whole_word = flags.whole_word;
        cfg.masking.spans = flags.spans;
        if let Some(l) = flags.max_len {
            cfg.max_len = l;
        }
        if let Some(v) = flags.vocab_size {
            cfg.tokenizer.vocab_size = v;
        }
        cfg.model.pre_ln = flags.pre_ln;
        let protocol = TextConfig::protocol();
        Ok(Self {
            flags,
            cfg,
            protocol,
            model: None,
            tokenizer: None,
            data: None,
            labeled: None,
            init: None,
            notes: Vec::new(),
        })
    }

    fn corpus_paths(&self) -> Vec<PathBuf> {
        if self.flags.corpus.is_empty() {
            vec![ssl_core::run::workspace_path(DEFAULT_CORPUS)]
        } else {
            self.flags.corpus.clone()
        }
    }

    fn labeled_path(&self) -> PathBuf {
        self.flags.labeled.clone().unwrap_or_else(|| ssl_core::run::workspace_path(DEFAULT_LABELED))
    }
}

/// The `tokenizer.json` that comes with an `--init-from` source: in the HF directory, or in the
/// run directory of our run (or checkpoint).
fn init_tokenizer(source: &InitSource) -> PathBuf {
    match source {
        InitSource::Foreign(dir) => dir.join("tokenizer.json"),
        InitSource::Run { run_dir, .. } => run_dir.join("tokenizer.json"),
    }
}

impl TextRecipe {
    /// Read the `--init-from` weights and adopt the source's model: its sizes, vocabulary and
    /// positions (the packed length must fit in them).
    fn read_init(&mut self, source: &InitSource) -> Result<()> {
        let (model, init) = match source {
            InitSource::Foreign(dir) => {
                let hf = HfBert::read(dir)?;
                (hf.config.clone(), hf.init_weights())
            }
            InitSource::Run { path, .. } => {
                let run = RunWeights::read(path, "text")?;
                (run_model(&run, path)?, InitWeights::of_run(path, run))
            }
        };
        if self.cfg.max_len as i64 > model.max_position {
            return Err(invalid(format!(
                "--max-len {} is longer than the --init-from model's {} positions",
                self.cfg.max_len, model.max_position
            )));
        }
        self.cfg.positions = Some(model.max_position as usize);
        self.cfg.preset = format!("{} of --init-from", init.kind);
        self.cfg.model = model;
        self.init = Some(init);
        Ok(())
    }
}

/// The full model configuration a text run recorded (`config.resolved.model`).
fn run_model(run: &RunWeights, dir: &Path) -> Result<BertConfig> {
    Ok(run.resolved::<serde_json::Value>().and_then(|v| {
        serde_json::from_value(v["model"].clone()).map_err(|e| {
            ssl_core::CoreError::InvalidArgument(format!("{}: no text model in config.json: {e}", dir.display()))
        })
    })?)
}

impl Recipe for TextRecipe {
    type Error = TextError;

    fn modality(&self) -> &'static str {
        "text"
    }

    fn method(&self) -> String {
        "mlm".into()
    }

    fn flags(&self) -> serde_json::Value {
        serde_json::to_value(&self.flags).unwrap_or_default()
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::json!({ "text": self.cfg, "model": self.model, "protocol": self.protocol, "pool": self.flags.pool })
    }

    fn validate(&self, plan: &RunPlan) -> Result<()> {
        let labeled = self.labeled_path();
        if !labeled.exists() {
            return Err(invalid(format!("--labeled {}: no such file or directory", labeled.display())));
        }
        if let Some(t) = &self.flags.tokenizer {
            if !t.is_file() {
                return Err(invalid(format!("--tokenizer {}: no such file", t.display())));
            }
        }
        if let Some(source) = &plan.init_from {
            if self.flags.tokenizer.is_some() {
                return Err(invalid(
                    "--tokenizer and --init-from: the weights come with their own tokenizer.json, which is used; drop --tokenizer",
                ));
            }
            if self.flags.pre_ln || self.flags.preset != "tiny" || self.flags.vocab_size.is_some() {
                return Err(invalid(
                    "--init-from takes the model and vocabulary of its source: drop --preset, --pre-ln and --vocab-size",
                ));
            }
            let tok = init_tokenizer(source);
            if !tok.is_file() {
                return Err(invalid(format!("--init-from: {} is missing (the source's tokenizer)", tok.display())));
            }
        }
        match &plan.mode {
            Mode::EvalOnly { run, .. } => {
                if !run.join("tokenizer.json").is_file() {
                    return Err(invalid(format!("{} has no tokenizer.json", run.display())));
                }
            }
            Mode::Pretrain { .. } => {
                for p in self.corpus_paths() {
                    if !p.exists() {
                        return Err(invalid(format!("--corpus {}: no such file or directory", p.display())));
                    }
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, plan: &RunPlan) -> Result<Opened<'_>> {
        let mut skipped = SkippedInputs::default();
        let labeled_path = self.labeled_path();
        // The labeled data first: it is small, and a bad file must fail before the corpus is packed.
        let labeled = load_labeled(&labeled_path, &self.flags.text_column, &self.flags.label_column, plan.seed)
            .map_err(|e| invalid(format!("the labeled data: {e}")))?;
        let mut summary = serde_json::json!({
            "labeled": labeled.source,
            "classes": labeled.classes,
            "labeled_train": labeled.train.len(),
            "labeled_test": labeled.test.len(),
        });
        match &plan.mode {
            Mode::EvalOnly { run, .. } => {
                self.cfg = plan.evaluated("/text").transpose()?.ok_or_else(|| invalid("no evaluated run"))?;
                let tok = Arc::new(TextTokenizer::load(&run.join("tokenizer.json"))?);
                // The evaluated run's full model (its vocabulary and positions included), else
                // (runs written before it was recorded) the one its settings give.
                self.model = Some(match plan.evaluated::<Option<BertConfig>>("/model").transpose()? {
                    Some(Some(m)) => m,
                    _ => self.cfg.model_config(tok.vocab_size()),
                });
                self.tokenizer = Some(tok);
                summary["evaluated_run"] = run.display().to_string().into();
            }
            Mode::Pretrain { .. } => {
                let corpus = self.corpus_paths();
                eprintln!(
                    "==> tokenizer and packing ({})",
                    corpus.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                );
                if let Some(source) = &plan.init_from {
                    self.read_init(source)?;
                }
                let tokenizer = match &plan.init_from {
                    Some(source) => Some(init_tokenizer(source)),
                    None => self.flags.tokenizer.clone(),
                };
                let data = pipeline::prepare(
                    &corpus,
                    tokenizer.as_deref(),
                    &self.cfg,
                    &plan.run_dir,
                    plan.reuses_prepared_data(),
                )?;
                let meta = &data.packed.meta;
                summary["corpus_files"] = serde_json::to_value(&data.corpus_files).unwrap_or_default();
                summary["documents"] = meta.documents.into();
                summary["tokens"] = meta.tokens.into();
                summary["sequences"] = meta.sequences.into();
                summary["max_len"] = self.cfg.max_len.into();
                summary["vocab_size"] = data.tokenizer.vocab_size().into();
                summary["tokenizer"] = (if data.trained_tokenizer { "trained" } else { "loaded" }).into();
                summary["heldout_sequences"] = data.heldout_indices.len().into();
                for s in &data.read.skipped {
                    skipped.push(s.clone());
                }
                skipped.count = skipped.count.max(data.read.skipped_lines);
                if data.trained_tokenizer {
                    // The tokenizers crate's WordPiece trainer is not deterministic (ids of the
                    // `##` pieces follow hash-map order, and merges tie-break on those ids:
                    // huggingface/tokenizers issue 1794), so the recorded flags name the
                    // tokenizer this run trained: re-running them reproduces the run.
                    self.flags.tokenizer = Some(plan.run_dir.join("tokenizer.json"));
                }
                let model = data.model_config(&self.cfg);
                if self.init.is_some() && data.tokenizer.vocab_size() as i64 != model.vocab_size {
                    return Err(invalid(format!(
                        "--init-from: the tokenizer has {} entries and the model's vocabulary {}",
                        data.tokenizer.vocab_size(),
                        model.vocab_size
                    )));
                }
                self.model = Some(model);
                self.tokenizer = Some(data.tokenizer.clone());
                self.data = Some(data);
            }
        }
        if labeled.source.skipped_rows > 0 {
            skipped.push(Skipped::file(
                labeled_path.display().to_string(),
                format!("{} rows skipped (empty text or invalid UTF-8)", labeled.source.skipped_rows),
            ));
        }
        self.labeled = Some(labeled);
        let pretrain_items = self.data.as_ref().map_or(0, |d| d.train_indices.len());
        Ok(Opened {
            data: DataReport { summary, skipped },
            train: &mut self.cfg.train,
            pretrain_items,
            protocol: &mut self.protocol,
        })
    }

    fn describe(&self) -> String {
        format!(
            "pretraining the {} model with masked language modelling ({} steps of {} sequences of {} tokens)",
            self.cfg.preset, self.cfg.train.steps, self.cfg.train.batch_size, self.cfg.max_len
        )
    }

    fn pretrain(&mut self, trainer: Trainer) -> Result<TrainSummary> {
        let data = self.data.as_ref().ok_or_else(|| invalid("no corpus was prepared"))?;
        let pre = pipeline::pretrain(data, &self.cfg, trainer)?;
        self.notes.push(format!("tokens seen in pretraining: {}", pre.tokens_seen));
        if let Some(h) = &pre.heldout {
            eprintln!(
                "    held-out MLM ({} masked tokens): accuracy {:.4}, perplexity {:.1}",
                h.masked_tokens, h.accuracy, h.perplexity
            );
            self.notes.push(format!(
                "held-out MLM (fixed mask, rate {}): accuracy {:.4}, perplexity {:.2}",
                self.cfg.masking.rate, h.accuracy, h.perplexity
            ));
        }
        Ok(pre.summary)
    }

    fn evaluation(&mut self, weights: &Path, _device: tch::Device) -> Result<EvalInputs<'_>> {
        let (Some(model), Some(tok), Some(labeled)) = (&self.model, &self.tokenizer, &self.labeled) else {
            return Err(invalid("the recipe has not opened its data"));
        };
        pipeline::eval_inputs(tok, model, self.cfg.max_len, labeled, weights, &self.protocol, self.flags.pool)
    }

    /// HuggingFace (`hf`, the only format): `BertForMaskedLM` for post-LN models,
    /// `RobertaPreLayerNormForMaskedLM` for pre-LN ones, with the run's `tokenizer.json`.
    fn export(run_dir: &Path, to: &Path, format: Option<ExportFormat>) -> Result<()> {
        if let Some(f) = format.filter(|&f| f != ExportFormat::Hf) {
            return Err(invalid(format!("text encoders export as hf, not {f}")));
        }
        let run = RunWeights::read(run_dir, "text")?;
        let model = run_model(&run, run_dir)?;
        let tok = TextTokenizer::load(&run.run_dir.join("tokenizer.json"))?;
        let m = MlmObjective::new(&model, tch::Device::Cpu)?;
        ssl_core::checkpoint::load_weights(run_dir, &m.vs)?;
        crate::interop::export::export_hf(to, &m, &tok)
    }

    /// Lines of `.txt` files ([`crate::interop::embed`]).
    fn embedder(run: &Path, data: &Path, device: tch::Device) -> Result<ssl_core::embed::EmbedInputs> {
        crate::interop::embed::embed_inputs(run, data, device)
    }

    /// Read in `open` (with the tokenizer and the model, which it fixes).
    fn init_weights(&mut self, source: &InitSource) -> Result<InitWeights> {
        self.init.take().ok_or_else(|| invalid(format!("--init-from {source:?} was not read")))
    }

    fn notes(&self) -> Vec<String> {
        let mut n = vec![
            format!("features: mean over non-padding tokens of the hidden states ({:?} pooling)", self.flags.pool),
            "raw-input baseline: TF-IDF logistic regression over WordPiece tokens (IDF fitted on the train split texts)".to_owned(),
            "corruptions: decoded text, corrupted per word (typos / dropped / swapped neighbours at 5%, 15%, 30%), re-tokenized".to_owned(),
        ];
        n.extend(self.notes.iter().cloned());
        n
    }
}
