//! A WordPiece tokenizer trained from the corpus with the HuggingFace `tokenizers` crate, saved and
//! loaded as `tokenizer.json` (the format `transformers` reads).
//!
//! The special tokens always get the first ids, in this order, so that `[PAD]` is 0 (the padding
//! value every input tensor of this crate uses):
//! `[PAD]`=0, `[UNK]`=1, `[CLS]`=2, `[SEP]`=3, `[MASK]`=4.
//!
//! ```
//! use ssl_text::data::tokenizer::{TextTokenizer, TokenizerConfig};
//! let docs = ["the cat sat on the mat", "the dog sat on the log"];
//! let cfg = TokenizerConfig { vocab_size: 60, min_frequency: 1 };
//! let tok = TextTokenizer::train(docs.iter(), &cfg).unwrap();
//! let enc = tok.encode("The cat sat").unwrap();
//! assert_eq!(tok.decode(&enc.ids).unwrap(), "the cat sat");
//! assert_eq!(tok.special().pad, 0);
//! ```
use crate::error::{Result, TextError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Settings of WordPiece training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenizerConfig {
    /// Size of the vocabulary, special tokens included. Cramming: a small vocabulary is cheaper.
    pub vocab_size: usize,
    /// Pieces seen fewer times than this are not added.
    pub min_frequency: u64,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self { vocab_size: 4096, min_frequency: 2 }
    }
}

/// The ids of the special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub pad: i64,
    pub unk: i64,
    pub cls: i64,
    pub sep: i64,
    pub mask: i64,
}

impl SpecialIds {
    /// Whether `id` is one of the special tokens.
    pub fn contains(&self, id: i64) -> bool {
        id == self.pad || id == self.unk || id == self.cls || id == self.sep || id == self.mask
    }
}

/// One tokenized text: ids and, for each, whether it starts a word.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub word_starts: Vec<bool>,
}

/// A lower-casing WordPiece tokenizer with BERT's specials.
pub struct TextTokenizer {
    inner: Tokenizer,
    special: SpecialIds,
}

impl TextTokenizer {
    fn blank() -> Tokenizer {
        let mut tok = Tokenizer::new(WordPiece::default());
        tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
        tok.with_pre_tokenizer(Some(BertPreTokenizer));
        tok.with_decoder(Some(WordPieceDecoder::default()));
        tok
    }

    /// Train on a stream of documents (the stream is consumed once, never collected).
    pub fn train<I, S>(docs: I, cfg: &TokenizerConfig) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if cfg.vocab_size <= SPECIAL_TOKENS.len() {
            return Err(TextError::InvalidArgument(format!(
                "vocab size {} leaves no room beside the {} special tokens",
                cfg.vocab_size,
                SPECIAL_TOKENS.len()
            )));
        }
        let mut tok = Self::blank();
        let specials = SPECIAL_TOKENS.iter().map(|s| AddedToken::from(*s, true)).collect();
        let wp = WordPieceTrainer::builder()
            .vocab_size(cfg.vocab_size)
            .min_frequency(cfg.min_frequency)
            .special_tokens(specials)
            .show_progress(false)
            .build();
        let mut trainer = TrainerWrapper::WordPieceTrainer(wp);
        tok.train(&mut trainer, docs).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        let special = Self::special_ids(&tok)?;
        tok.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), special.sep as u32),
            ("[CLS]".into(), special.cls as u32),
        )));
        if tok.get_vocab_size(true) <= SPECIAL_TOKENS.len() {
            return Err(TextError::Tokenizer("training produced no word pieces (is the corpus empty?)".into()));
        }
        Ok(Self { inner: tok, special })
    }

    fn special_ids(tok: &Tokenizer) -> Result<SpecialIds> {
        let id = |s: &str| {
            tok.token_to_id(s)
                .map(i64::from)
                .ok_or_else(|| TextError::Tokenizer(format!("the vocabulary has no `{s}` token")))
        };
        let special = SpecialIds {
            pad: id("[PAD]")?,
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            mask: id("[MASK]")?,
        };
        if special.pad != 0 {
            return Err(TextError::Tokenizer(format!("`[PAD]` must have id 0 (it has {})", special.pad)));
        }
        Ok(special)
    }

    /// Load a `tokenizer.json` (ours or any BERT-style one with the five special tokens, `[PAD]`=0).
    /// Padding and truncation settings in the file (a checkpoint's tokenizer often pads to 128)
    /// are dropped: packing and [`TextTokenizer::encode_padded`] decide lengths.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(TextError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| TextError::format(path, e.to_string()))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| TextError::format(path, format!("cannot turn truncation off: {e}")))?;
        let special = Self::special_ids(&inner)?;
        Ok(Self { inner, special })
    }

    /// Save as `tokenizer.json` (pretty-printed).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| TextError::io(dir, e))?;
        }
        self.inner.save(path, true).map_err(|e| TextError::format(path, e.to_string()))
    }

    /// The special-token ids.
    pub fn special(&self) -> SpecialIds {
        self.special
    }

    /// Number of entries in the vocabulary (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The token string of `id`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    fn from_encoding(enc: &tokenizers::Encoding) -> Encoded {
        let mut prev = None;
        let word_starts = enc
            .get_word_ids()
            .iter()
            .map(|w| {
                let start = w.is_none() || *w != prev;
                prev = *w;
                start
            })
            .collect();
        Encoded { ids: enc.get_ids().to_vec(), word_starts }
    }

    /// Tokenize one text without special tokens.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self.inner.encode(text, false).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        Ok(Self::from_encoding(&enc))
    }

    /// Tokenize many texts in parallel, without special tokens.
    pub fn encode_batch(&self, texts: &[String]) -> Result<Vec<Encoded>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encs = self.inner.encode_batch(refs, false).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        Ok(encs.iter().map(Self::from_encoding).collect())
    }

    /// Text back from ids; special tokens are dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| TextError::Tokenizer(e.to_string()))
    }

    /// `[CLS] text [SEP]`, truncated and padded with `[PAD]` to exactly `max_len` ids.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<Vec<i64>> {
        Ok(self.encode_padded_batch(&[text.to_owned()], max_len)?.remove(0))
    }

    /// [`Self::encode_padded`] for many texts in parallel.
    pub fn encode_padded_batch(&self, texts: &[String], max_len: usize) -> Result<Vec<Vec<i64>>> {
        if max_len < 3 {
            return Err(TextError::InvalidArgument(format!("max_len {max_len} is too short (at least 3)")));
        }
        let s = self.special;
        Ok(self
            .encode_batch(texts)?
            .into_iter()
            .map(|e| {
                let mut row = Vec::with_capacity(max_len);
                row.push(s.cls);
                row.extend(e.ids.iter().take(max_len - 2).map(|&i| i as i64));
                row.push(s.sep);
                row.resize(max_len, s.pad);
                row
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let base = [
            "The quick brown fox jumps over the lazy dog.",
            "A wonderful, moving film: the acting is superb!",
            "Tokenizers split unbelievably long words into pieces.",
            "Call me Ishmael. Some years ago, never mind how long precisely.",
        ];
        (0..20).flat_map(|_| base.iter().map(|s| s.to_string())).collect()
    }

    #[test]
    fn specials_come_first() {
        let tok =
            TextTokenizer::train(corpus().iter(), &TokenizerConfig { vocab_size: 200, min_frequency: 1 }).unwrap();
        let s = tok.special();
        assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
        assert!(tok.vocab_size() > 5 && tok.vocab_size() <= 200);
    }

    #[test]
    fn round_trips_through_tokenizer_json() {
        let tok =
            TextTokenizer::train(corpus().iter(), &TokenizerConfig { vocab_size: 300, min_frequency: 1 }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let back = TextTokenizer::load(&path).unwrap();
        assert_eq!(back.vocab_size(), tok.vocab_size());
        for text in corpus().iter().take(4) {
            let a = tok.encode(text).unwrap();
            let b = back.encode(text).unwrap();
            assert_eq!(a, b);
            // Lower-cased text comes back, with punctuation spacing as the WordPiece decoder writes it.
            let decoded = back.decode(&b.ids).unwrap();
            assert_eq!(back.encode(&decoded).unwrap().ids, b.ids, "{text} -> {decoded}");
        }
        assert_eq!(back.decode(&back.encode("the quick brown fox").unwrap().ids).unwrap(), "the quick brown fox");
    }

    #[test]
    fn word_starts_group_pieces() {
        let tok = TextTokenizer::train(corpus().iter(), &TokenizerConfig { vocab_size: 60, min_frequency: 1 }).unwrap();
        let e = tok.encode("unbelievably wonderful").unwrap();
        assert_eq!(e.ids.len(), e.word_starts.len());
        assert!(e.word_starts[0]);
        // A small vocabulary splits these words, so some pieces continue a word.
        assert!(e.word_starts.iter().any(|s| !s), "{:?}", e);
        let words = e.word_starts.iter().filter(|s| **s).count();
        assert_eq!(words, 2);
    }

    #[test]
    fn padded_rows_have_fixed_length() {
        let tok =
            TextTokenizer::train(corpus().iter(), &TokenizerConfig { vocab_size: 100, min_frequency: 1 }).unwrap();
        let row = tok.encode_padded("the fox", 16).unwrap();
        assert_eq!(row.len(), 16);
        assert_eq!(row[0], 2);
        assert!(row.contains(&3));
        assert_eq!(*row.last().unwrap(), 0);
        let long = tok.encode_padded(&"fox ".repeat(50), 8).unwrap();
        assert_eq!(long.len(), 8);
        assert_eq!(long[7], 3);
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(TextTokenizer::load(Path::new("does/not/exist/tokenizer.json")).is_err());
    }
}
