//! `ssl pretrain-text`: masked-language-model pretraining of a BERT-style encoder, then the
//! few-label evaluation against scratch. With no arguments it runs on the committed default data
//! (`datasets/text/`): trains the tokenizer, pretrains the tiny preset and evaluates on Rotten
//! Tomatoes fresh vs rotten.
use crate::common::{self, CommonArgs, RunInfo};
use anyhow::{bail, Context, Result};
use ssl_text::labeled::load_labeled;
use ssl_text::model::{BertConfig, Pooling};
use ssl_text::objective::MlmObjective;
use ssl_text::pipeline::{self, TextConfig};
use ssl_text::tokenizer::TextTokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DEFAULT_CORPUS: &str = "datasets/text/corpus";
const DEFAULT_LABELED: &str = "datasets/text/labeled/rotten_tomatoes.csv";

/// Flags of `pretrain-text`.
#[derive(clap::Args, Debug, Clone)]
pub struct TextArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Unlabeled text: files or folders (.txt: a document per line, or per blank-line paragraph;
    /// .jsonl: a `text` field). Default: the committed corpus under datasets/text/corpus.
    #[arg(long, num_args = 1.., alias = "data")]
    pub corpus: Vec<PathBuf>,
    /// Accepted for `cargo xtask pretrain-text --dataset NAME`; formats are detected per file.
    #[arg(long)]
    pub data_format: Option<String>,
    /// Labeled data: a folder with train.*/test.* or one CSV/TSV/JSONL file (split 70/30).
    #[arg(long)]
    pub labeled: Option<PathBuf>,
    /// Column (or JSON field) holding the text of labeled rows.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column (or JSON field) holding the label of labeled rows.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Model size: tiny (2x128), mini (4x256) or small (4x512).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Fraction of tokens masked (Cramming: 0.25; BERT: 0.15).
    #[arg(long)]
    pub mask_rate: Option<f64>,
    /// Mask whole words (all their WordPiece pieces together).
    #[arg(long)]
    pub whole_word: bool,
    /// SpanBERT span masking (geometric lengths, p=0.2, at most 10).
    #[arg(long)]
    pub spans: bool,
    /// Packed sequence length.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// WordPiece vocabulary size.
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Use this tokenizer.json instead of training one.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Pre-LayerNorm blocks (not exportable to HuggingFace BERT).
    #[arg(long)]
    pub pre_ln: bool,
    /// Warmup steps (default: 10% of the steps).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Sentence features for evaluation: the mean of the last layer's hidden states (`last`) or
    /// of every layer's, embedding output included (`layers`).
    #[arg(long, default_value = "last")]
    pub pool: Pooling,
    /// Also write a HuggingFace BertForMaskedLM directory here.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

fn text_config(args: &TextArgs) -> Result<TextConfig> {
    let mut cfg = TextConfig::cramming(&args.preset)?;
    let c = &args.common;
    if let Some(r) = args.mask_rate {
        cfg.masking.rate = r;
    }
    cfg.masking.whole_word = args.whole_word;
    cfg.masking.spans = args.spans;
    if let Some(l) = args.max_len {
        cfg.max_len = l;
    }
    if let Some(v) = args.vocab_size {
        cfg.tokenizer.vocab_size = v;
    }
    cfg.model.pre_ln = args.pre_ln;
    if let Some(s) = c.steps {
        cfg.train.steps = s;
    }
    cfg.train.warmup_steps = args.warmup.unwrap_or(cfg.train.steps / 10);
    if let Some(n) = c.checkpoint_every {
        cfg.train.checkpoint_every = n;
    }
    if let Some(b) = c.batch_size {
        cfg.train.batch_size = b;
    }
    if let Some(lr) = c.lr {
        cfg.train.lr = lr;
    }
    cfg.train.seed = c.seed;
    Ok(cfg)
}

pub fn run(args: TextArgs) -> Result<()> {
    let device = args.common.device()?;
    let run_dir = args.common.run_dir("text", "mlm")?;
    let protocol = args.common.protocol(TextConfig::protocol());
    let labeled_path = args.labeled.clone().unwrap_or_else(|| common::workspace_path(DEFAULT_LABELED));
    let labeled = load_labeled(&labeled_path, &args.text_column, &args.label_column, args.common.seed)
        .with_context(|| format!("reading the labeled data {}", labeled_path.display()))?;

    if args.common.eval_only {
        return eval_only(&args, &run_dir, &labeled, &protocol, device);
    }

    let cfg = text_config(&args)?;
    let corpus: Vec<PathBuf> =
        if args.corpus.is_empty() { vec![common::workspace_path(DEFAULT_CORPUS)] } else { args.corpus.clone() };
    common::write_config(
        &run_dir,
        &serde_json::json!({
            "command": "pretrain-text",
            "corpus": corpus,
            "data_format": args.data_format,
            "labeled": labeled_path,
            "text_column": args.text_column,
            "label_column": args.label_column,
            "tokenizer_file": args.tokenizer,
            "pool": args.pool,
            "text": cfg,
            "protocol": protocol,
            "device": args.common.device,
        }),
    )?;

    eprintln!(
        "==> tokenizer and packing ({})",
        corpus.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    let data = pipeline::prepare(&corpus, args.tokenizer.as_deref(), &cfg, &run_dir, args.common.resume)?;
    let meta = &data.packed.meta;
    eprintln!(
        "    {} documents, {} tokens, vocab {} ({}), {} sequences of {} ({} held out)",
        meta.documents,
        meta.tokens,
        data.tokenizer.vocab_size(),
        if data.trained_tokenizer { "trained" } else { "loaded" },
        meta.sequences,
        cfg.max_len,
        data.heldout_indices.len()
    );
    if data.read.skipped_lines > 0 {
        eprintln!("warning: skipped {} unreadable corpus lines, first:", data.read.skipped_lines);
        for s in data.read.skipped.iter().take(5) {
            eprintln!("    {}:{}: {}", s.path, s.line, s.reason);
        }
    }

    eprintln!("==> pretraining {} ({} steps of {} sequences)", cfg.preset, cfg.train.steps, cfg.train.batch_size);
    let pre = pipeline::pretrain(&data, &cfg, &run_dir, device, args.common.resume)?;
    if let Some(h) = &pre.heldout {
        eprintln!(
            "    held-out MLM ({} masked tokens): accuracy {:.4}, perplexity {:.1}",
            h.masked_tokens, h.accuracy, h.perplexity
        );
    }

    if let Some(dir) = &args.export {
        export(dir, &run_dir, &pre.model, &data.tokenizer, device)?;
    }

    eprintln!(
        "==> evaluation on {} ({} train / {} test rows)",
        labeled_path.display(),
        labeled.train.len(),
        labeled.test.len()
    );
    let evaluation =
        pipeline::evaluate_downstream(&data.tokenizer, &pre.model, &labeled, &run_dir, &protocol, args.pool, device)?;

    let mut notes = vec![
        format!("features: mean over non-padding tokens of the hidden states ({:?} pooling)", args.pool),
        "raw-input baseline: TF-IDF logistic regression over WordPiece tokens (IDF fitted on the train split texts)".to_owned(),
        "corruptions: decoded text, corrupted per word (typos / dropped / swapped neighbours at 5%, 15%, 30%), re-tokenized".to_owned(),
        format!("tokens seen in pretraining: {}", pre.tokens_seen),
    ];
    if let Some(h) = &pre.heldout {
        notes.push(format!(
            "held-out MLM (fixed mask, rate {}): accuracy {:.4}, perplexity {:.2}",
            cfg.masking.rate, h.accuracy, h.perplexity
        ));
    }
    let info = RunInfo {
        modality: "text",
        method: "mlm",
        device,
        summary: Some(&pre.summary),
        data: serde_json::json!({
            "corpus_files": data.corpus_files,
            "documents": meta.documents,
            "tokens": meta.tokens,
            "sequences": meta.sequences,
            "max_len": cfg.max_len,
            "vocab_size": data.tokenizer.vocab_size(),
            "heldout_sequences": data.heldout_indices.len(),
            "skipped_corpus_lines": data.read.skipped_lines,
            "skipped_corpus_examples": data.read.skipped,
            "tokens_seen": pre.tokens_seen,
            "mlm_heldout": pre.heldout,
            "labeled": labeled.source,
            "classes": labeled.classes,
            "labeled_train": labeled.train.len(),
            "labeled_test": labeled.test.len(),
        }),
        notes,
    };
    common::finish(&run_dir, info, evaluation)?;
    Ok(())
}

fn export(dir: &Path, run_dir: &Path, model: &BertConfig, tok: &TextTokenizer, device: tch::Device) -> Result<()> {
    let m = MlmObjective::new(model, device)?;
    ssl_core::checkpoint::load_weights(run_dir, &m.vs)?;
    ssl_text::export::export_hf(dir, &m, tok)?;
    eprintln!("==> exported a HuggingFace BertForMaskedLM to {}", dir.display());
    Ok(())
}

/// Evaluate the encoder of an earlier run (`--eval-only --checkpoint RUN_DIR`).
fn eval_only(
    args: &TextArgs,
    run_dir: &Path,
    labeled: &ssl_text::labeled::LabeledSplit,
    protocol: &ssl_core::eval::ProtocolConfig,
    device: tch::Device,
) -> Result<()> {
    let Some(src) = &args.common.checkpoint else { bail!("--eval-only needs --checkpoint RUN_DIR") };
    // A checkpoint directory sits in <run>/checkpoints/step-N; the run holds config and tokenizer.
    let src_run = if src.join("config.json").is_file() {
        src.clone()
    } else {
        src.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(|| src.clone())
    };
    let cfg_path = src_run.join("config.json");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?)?;
    let cfg: TextConfig = serde_json::from_value(saved["text"].clone())
        .with_context(|| format!("{} has no text configuration", cfg_path.display()))?;
    let tok = Arc::new(TextTokenizer::load(&src_run.join("tokenizer.json"))?);
    let model =
        BertConfig { vocab_size: tok.vocab_size() as i64, max_position: cfg.max_len as i64, ..cfg.model.clone() };
    common::write_config(
        run_dir,
        &serde_json::json!({ "command": "pretrain-text --eval-only", "checkpoint": src, "text": cfg, "protocol": protocol }),
    )?;
    if let Some(dir) = &args.export {
        export(dir, src, &model, &tok, device)?;
    }
    let evaluation = pipeline::evaluate_downstream(&tok, &model, labeled, src, protocol, args.pool, device)?;
    let info = RunInfo {
        modality: "text",
        method: "mlm",
        device,
        summary: None,
        data: serde_json::json!({ "checkpoint": src, "labeled": labeled.source, "classes": labeled.classes }),
        notes: vec!["evaluation only".into()],
    };
    common::finish(run_dir, info, evaluation)?;
    Ok(())
}
