//! Text corruptions for the robustness part of the protocol: character typos, dropped words and
//! swapped neighbouring words, each at three rates.
//!
//! They act on text, not on ids: each protocol input row (token ids) is decoded back to text
//! (lower-cased, special tokens dropped), corrupted word by word with an RNG seeded by the row
//! and the corruption, and tokenized again. So a typo changes how a word splits into pieces,
//! as it would in real input.
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_text::corruptions::{corrupt_text, TextCorruption};
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let text = "the quick brown fox jumps over the lazy dog";
//! let dropped = corrupt_text(text, TextCorruption::DropWords, 1.0, &mut rng);
//! assert!(dropped.is_empty());
//! let swapped = corrupt_text(text, TextCorruption::SwapWords, 0.0, &mut rng);
//! assert_eq!(swapped, text);
//! ```
use crate::data::tokenizer::TextTokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_core::eval::Corruption;
use ssl_core::loader::mix_seed;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// The three kinds of corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextCorruption {
    /// Each word, with probability `rate`, gets one character edit (swap, delete, insert, replace).
    Typos,
    /// Each word is dropped with probability `rate`.
    DropWords,
    /// Each pair of neighbouring words is swapped with probability `rate`.
    SwapWords,
}

impl TextCorruption {
    pub fn name(self) -> &'static str {
        match self {
            TextCorruption::Typos => "typos",
            TextCorruption::DropWords => "drop_words",
            TextCorruption::SwapWords => "swap_words",
        }
    }
}

/// The rates of severities 1, 2 and 3.
pub const RATES: [f64; 3] = [0.05, 0.15, 0.3];

fn typo(word: &str, rng: &mut ChaCha8Rng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.is_empty() {
        return String::new();
    }
    let letter = (b'a' + rng.random_range(0..26u8)) as char;
    match rng.random_range(0..4) {
        0 if c.len() >= 2 => {
            let i = rng.random_range(0..c.len() - 1);
            c.swap(i, i + 1);
        }
        1 if c.len() >= 2 => {
            c.remove(rng.random_range(0..c.len()));
        }
        2 => c.insert(rng.random_range(0..=c.len()), letter),
        _ => {
            let i = rng.random_range(0..c.len());
            c[i] = letter;
        }
    }
    c.into_iter().collect()
}

/// Corrupt whitespace-separated words of `text`.
pub fn corrupt_text(text: &str, kind: TextCorruption, rate: f64, rng: &mut ChaCha8Rng) -> String {
    let mut words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    match kind {
        TextCorruption::Typos => {
            for w in &mut words {
                if rng.random::<f64>() < rate {
                    *w = typo(w, rng);
                }
            }
        }
        TextCorruption::DropWords => words.retain(|_| rng.random::<f64>() >= rate),
        TextCorruption::SwapWords => {
            let mut i = 0;
            while i + 1 < words.len() {
                if rng.random::<f64>() < rate {
                    words.swap(i, i + 1);
                    i += 2;
                } else {
                    i += 1;
                }
            }
        }
    }
    words.join(" ")
}

/// The nine corruptions (three kinds x three rates) as protocol [`Corruption`]s over `[N, L]`
/// int64 id tensors.
pub fn text_corruptions(tokenizer: Arc<TextTokenizer>, seed: u64) -> Vec<Corruption> {
    let mut out = Vec::new();
    for kind in [TextCorruption::Typos, TextCorruption::DropWords, TextCorruption::SwapWords] {
        for (s, &rate) in RATES.iter().enumerate() {
            let tok = tokenizer.clone();
            let apply = move |xs: &Tensor| -> Tensor {
                let (n, len) = (xs.size()[0], xs.size()[1]);
                let rows = Vec::<i64>::try_from(xs.to_kind(Kind::Int64).flatten(0, -1)).unwrap_or_default();
                let texts: Vec<String> = rows
                    .chunks(len.max(1) as usize)
                    .enumerate()
                    .map(|(r, row)| {
                        let ids: Vec<u32> = row.iter().filter(|&&i| i > 0).map(|&i| i as u32).collect();
                        let text = tok.decode(&ids).unwrap_or_default();
                        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[seed, r as u64, kind as u64, s as u64]));
                        corrupt_text(&text, kind, rate, &mut rng)
                    })
                    .collect();
                match tok.encode_padded_batch(&texts, len as usize) {
                    Ok(rows) => {
                        let flat: Vec<i64> = rows.into_iter().flatten().collect();
                        Tensor::from_slice(&flat).view([n, len])
                    }
                    // Tokenizing decoded text cannot fail in practice; keep the inputs if it does.
                    Err(_) => xs.shallow_clone(),
                }
            };
            out.push(Corruption { name: kind.name().into(), severity: s as u32 + 1, apply: Box::new(apply) });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected() {
        let text: String = (0..2000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let dropped = corrupt_text(&text, TextCorruption::DropWords, 0.15, &mut rng);
        let kept = dropped.split_whitespace().count() as f64 / 2000.0;
        assert!((kept - 0.85).abs() < 0.03, "{kept}");
        let typos = corrupt_text(&text, TextCorruption::Typos, 0.3, &mut rng);
        let changed = typos.split_whitespace().zip(text.split_whitespace()).filter(|(a, b)| a != b).count();
        // Some edits are no-ops (a letter replaced by itself, a swap of equal letters).
        assert!((changed as f64 / 2000.0 - 0.3).abs() < 0.04, "{changed}");
        let swapped = corrupt_text(&text, TextCorruption::SwapWords, 0.3, &mut rng);
        assert_eq!(swapped.split_whitespace().count(), 2000);
        assert_ne!(swapped, text);
    }

    #[test]
    fn corruptions_keep_shapes() {
        let docs = ["a movie about a whale and a ship", "the film was long and dull"];
        let tok = crate::data::tokenizer::TextTokenizer::train(
            docs.iter(),
            &crate::data::tokenizer::TokenizerConfig { vocab_size: 80, min_frequency: 1 },
        )
        .unwrap();
        let rows: Vec<i64> = docs.iter().flat_map(|d| tok.encode_padded(d, 12).unwrap()).collect();
        let xs = Tensor::from_slice(&rows).view([2, 12]);
        let cs = text_corruptions(Arc::new(tok), 0);
        assert_eq!(cs.len(), 9);
        for c in &cs {
            let y = (c.apply)(&xs);
            assert_eq!(y.size(), [2, 12]);
            assert_eq!(y.int64_value(&[0, 0]), 2);
        }
        // Deterministic.
        assert!((cs[8].apply)(&xs).equal(&(cs[8].apply)(&xs)));
    }
}
