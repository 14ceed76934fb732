//! The flags of `pretrain-text`: the shared run options ([`ssl_core::run::RunOptions`]) and
//! the modality's own. The same struct is a config file's keys and `config.json`'s
//! `config.flags`.
use crate::model::Pooling;
use serde::{Deserialize, Serialize};
use ssl_core::run::RunOptions;
use std::path::PathBuf;

/// Flags of `pretrain-text` (also the keys of its config files).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct TextFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunOptions,
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
    /// Pre-LayerNorm blocks (exported as HuggingFace RobertaPreLayerNorm instead of BERT).
    #[arg(long)]
    pub pre_ln: bool,
    /// Sentence features for evaluation: the mean of the last layer's hidden states (`last`) or
    /// of every layer's, embedding output included (`layers`).
    #[arg(long, default_value = "last")]
    pub pool: Pooling,
}
