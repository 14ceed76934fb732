//! # ssl-text
//!
//! Masked-language-model pretraining of BERT-style encoders on your own unlabeled text, then the
//! few-label evaluation of ssl-core (pretrained against scratch). It reads like a recipe:
//!
//! 1. [`data::corpus`]: stream documents from text files, folders or JSONL;
//! 2. [`data::tokenizer`]: train a WordPiece vocabulary (HuggingFace `tokenizers`), saved as
//!    `tokenizer.json`;
//! 3. [`data::packing`]: pack documents with `[SEP]` into fixed-length sequences (no NSP);
//! 4. [`data::masking`]: dynamic 80/10/10 masking, whole-word or SpanBERT spans, a fixed number
//!    of slots;
//! 5. [`model`]: a BERT encoder with a tied MLM head (presets tiny, mini, small);
//! 6. [`objectives::mlm`]: the MLM loss on masked positions only, for ssl-core's trainer, and the
//!    held-out masked-token accuracy and perplexity;
//! 7. [`model::encoder`], [`data::labeled`], [`corruptions`]: what the evaluation protocol needs;
//! 8. [`pipeline`]: all of the above in a few calls, as `ssl pretrain-text` runs them;
//! 9. [`interop`]: a HuggingFace `BertForMaskedLM` (post-LN) or `RobertaPreLayerNormForMaskedLM`
//!    (pre-LN) directory out, and a HuggingFace `BertModel` or `BertForMaskedLM` back in.
//!
//! The crate follows the layout every modality crate shares: [`flags`] (the command's flags),
//! [`recipe`] (the [`ssl_core::run::Recipe`] that `ssl pretrain-text` runs through ssl-core's
//! seam), [`pipeline`] (the typed configuration with the papers' defaults, and the run as
//! library calls), [`data`], [`model`], [`objectives`] (one file per paper), [`corruptions`]
//! (the evaluation's corruption suite), [`interop`] (export and import) and [`bench`](mod@bench).
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_text::data::masking::{Masker, MaskingConfig};
//! use ssl_text::model::{BertConfig, BertMlm};
//! use ssl_text::data::packing::Packer;
//! use ssl_text::data::tokenizer::{TextTokenizer, TokenizerConfig};
//!
//! let docs = ["a tiny corpus about cats", "and another line about dogs and cats"];
//! let tok = TextTokenizer::train(docs.iter(), &TokenizerConfig { vocab_size: 80, min_frequency: 1 }).unwrap();
//! let mut packer = Packer::new(16, tok.special()).unwrap();
//! let mut seqs = Vec::new();
//! for d in docs {
//!     seqs.extend(packer.push(&tok.encode(d).unwrap()));
//! }
//! seqs.extend(packer.finish());
//! let masker = Masker::new(MaskingConfig { rate: 0.25, ..Default::default() }, tok.special(), tok.vocab_size(), 16).unwrap();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let batch = ssl_text::data::dataset::collate_masked(&masker, &seqs, &mut rng);
//!
//! let cfg = BertConfig { vocab_size: tok.vocab_size() as i64, max_position: 16, ..BertConfig::preset("tiny").unwrap() };
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let bert = BertMlm::new(&vs.root(), &cfg).unwrap();
//! let logits = bert.mlm_logits(&batch.input_ids, &batch.positions, true);
//! assert_eq!(logits.size(), [seqs.len() as i64, masker.slots() as i64, cfg.vocab_size]);
//! ```

pub mod bench;
pub mod corruptions;
pub mod data;
pub mod error;
pub mod flags;
pub mod interop;
pub mod model;
pub mod objectives;
pub mod pipeline;
pub mod recipe;

pub use error::{Result, TextError};
