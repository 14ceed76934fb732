//! Dynamic masking for masked language modelling (BERT, RoBERTa, SpanBERT, Cramming).
//!
//! For each sequence, `rate` of its maskable tokens (everything but `[PAD] [CLS] [SEP] [MASK]
//! [UNK]`) is selected; of those, 80% become `[MASK]`, 10% a random non-special token and 10%
//! stay unchanged. With whole-word masking the selection is made of whole words (the tokenizer's
//! word starts); with span masking it is made of spans whose length in units (words or tokens)
//! follows SpanBERT's geometric distribution (p = 0.2, clipped at 10).
//!
//! Shapes stay static (Cramming): every sequence gets exactly [`Masker::slots`] output
//! slots, filled with the sorted masked positions and padded with invalid slots. The MLM head then
//! runs on `[B, slots]` gathered positions only.
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_text::data::masking::{Masker, MaskingConfig};
//! use ssl_text::data::tokenizer::SpecialIds;
//! let special = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
//! let masker = Masker::new(MaskingConfig::default(), special, 100, 32).unwrap();
//! let ids: Vec<u32> = [2].into_iter().chain(10..40).chain([3]).collect();
//! let starts = vec![true; 32];
//! let m = masker.mask(&ids, &starts, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
//! assert_eq!(m.positions.len(), masker.slots());
//! assert_eq!(m.valid.iter().filter(|v| **v).count(), 5); // round(0.15 * 30)
//! ```
use crate::data::tokenizer::SpecialIds;
use crate::error::{Result, TextError};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Settings of the masking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaskingConfig {
    /// Fraction of maskable tokens selected (BERT: 0.15; Cramming: 0.25).
    pub rate: f64,
    /// Of the selected tokens, the fraction replaced by `[MASK]`.
    pub mask_fraction: f64,
    /// Of the selected tokens, the fraction replaced by a random token (the rest stay unchanged).
    pub random_fraction: f64,
    /// Select whole words (all pieces of a word together).
    pub whole_word: bool,
    /// SpanBERT span masking (geometric lengths).
    pub spans: bool,
    /// Parameter of the geometric span-length distribution.
    pub span_p: f64,
    /// Longest span (in words with `whole_word`, else in tokens).
    pub span_max: usize,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            rate: 0.15,
            mask_fraction: 0.8,
            random_fraction: 0.1,
            whole_word: false,
            spans: false,
            span_p: 0.2,
            span_max: 10,
        }
    }
}

/// The masked version of one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedSeq {
    /// The input with the replacements applied.
    pub input_ids: Vec<i64>,
    /// `slots` positions: the masked ones in increasing order, then zeros.
    pub positions: Vec<i64>,
    /// The original token at each slot (`[PAD]` for unused slots).
    pub targets: Vec<i64>,
    /// Whether each slot is used.
    pub valid: Vec<bool>,
}

/// Applies [`MaskingConfig`] to sequences of a fixed length.
#[derive(Debug, Clone)]
pub struct Masker {
    cfg: MaskingConfig,
    special: SpecialIds,
    vocab_size: i64,
    slots: usize,
}

impl Masker {
    /// A masker for sequences of `max_len` ids from a vocabulary of `vocab_size`.
    pub fn new(cfg: MaskingConfig, special: SpecialIds, vocab_size: usize, max_len: usize) -> Result<Self> {
        if !(cfg.rate > 0.0 && cfg.rate < 1.0) {
            return Err(TextError::InvalidArgument(format!("mask rate {} must be in (0, 1)", cfg.rate)));
        }
        let (m, r) = (cfg.mask_fraction, cfg.random_fraction);
        if m < 0.0 || r < 0.0 || m + r > 1.0 {
            return Err(TextError::InvalidArgument(format!(
                "mask/random fractions {m}/{r} must be >= 0 and sum to <= 1"
            )));
        }
        if cfg.spans && !(cfg.span_p > 0.0 && cfg.span_p <= 1.0 && cfg.span_max >= 1) {
            return Err(TextError::InvalidArgument("span masking needs 0 < span_p <= 1 and span_max >= 1".into()));
        }
        let specials = [special.pad, special.unk, special.cls, special.sep, special.mask];
        let first_normal = specials.iter().max().copied().unwrap_or(0) + 1;
        if (vocab_size as i64) <= first_normal {
            return Err(TextError::InvalidArgument(format!("vocab size {vocab_size} has no non-special token")));
        }
        // Enough slots for the whole budget of a sequence with no special token.
        let slots = ((cfg.rate * max_len as f64).round() as usize).max(1);
        Ok(Self { cfg, special, vocab_size: vocab_size as i64, slots })
    }

    /// Fixed number of output slots per sequence.
    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.cfg
    }

    fn maskable(&self, id: i64) -> bool {
        !self.special.contains(id)
    }

    fn span_len(&self, rng: &mut ChaCha8Rng) -> usize {
        // Geometric on {1, 2, ...}: the number of trials up to the first success.
        let mut len = 1;
        while len < self.cfg.span_max && rng.random::<f64>() >= self.cfg.span_p {
            len += 1;
        }
        len
    }

    /// Mask one sequence. `word_starts[i]` says whether token `i` starts a word.
    pub fn mask(&self, ids: &[u32], word_starts: &[bool], rng: &mut ChaCha8Rng) -> MaskedSeq {
        let input: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        // Units: groups of maskable tokens selected together (a word, or a single token).
        let mut units: Vec<(usize, usize)> = Vec::new(); // [start, end)
        for (i, &id) in input.iter().enumerate() {
            if !self.maskable(id) {
                continue;
            }
            let continues = self.cfg.whole_word
                && !word_starts.get(i).copied().unwrap_or(true)
                && units.last().is_some_and(|u| u.1 == i);
            match units.last_mut() {
                Some(u) if continues => u.1 = i + 1,
                _ => units.push((i, i + 1)),
            }
        }
        let n_maskable: usize = units.iter().map(|u| u.1 - u.0).sum();
        let budget = ((self.cfg.rate * n_maskable as f64).round() as usize).min(self.slots);
        let mut chosen = vec![false; input.len()];
        let mut count = 0usize;
        if budget > 0 {
            if self.cfg.spans {
                let mut unit_taken = vec![false; units.len()];
                let mut tries = 0;
                while count < budget && tries < 20 * units.len().max(1) {
                    tries += 1;
                    let len = self.span_len(rng);
                    let start = rng.random_range(0..units.len());
                    for u in start..(start + len).min(units.len()) {
                        if unit_taken[u] {
                            continue;
                        }
                        let (a, b) = units[u];
                        if count + (b - a) > budget {
                            break;
                        }
                        unit_taken[u] = true;
                        chosen[a..b].iter_mut().for_each(|c| *c = true);
                        count += b - a;
                    }
                }
            } else {
                let mut order: Vec<usize> = (0..units.len()).collect();
                order.shuffle(rng);
                for u in order {
                    if count >= budget {
                        break;
                    }
                    let (a, b) = units[u];
                    if count + (b - a) > budget {
                        continue;
                    }
                    chosen[a..b].iter_mut().for_each(|c| *c = true);
                    count += b - a;
                }
            }
        }
        let first_normal = [self.special.pad, self.special.unk, self.special.cls, self.special.sep, self.special.mask]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 1;
        let mut out = input.clone();
        let mut positions = Vec::with_capacity(self.slots);
        let mut targets = Vec::with_capacity(self.slots);
        for (i, _) in chosen.iter().enumerate().filter(|(_, c)| **c) {
            positions.push(i as i64);
            targets.push(input[i]);
            let r: f64 = rng.random();
            if r < self.cfg.mask_fraction {
                out[i] = self.special.mask;
            } else if r < self.cfg.mask_fraction + self.cfg.random_fraction {
                out[i] = rng.random_range(first_normal..self.vocab_size);
            }
        }
        let used = positions.len();
        let mut valid = vec![true; used];
        positions.resize(self.slots, 0);
        targets.resize(self.slots, self.special.pad);
        valid.resize(self.slots, false);
        MaskedSeq { input_ids: out, positions, targets, valid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const S: SpecialIds = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
    const V: usize = 1000;

    /// A packed-looking sequence: [CLS] words... [SEP] words... [SEP] [PAD]...; words of 1-3 pieces.
    fn sequence(rng: &mut ChaCha8Rng, len: usize) -> (Vec<u32>, Vec<bool>) {
        let mut ids = vec![2u32];
        let mut starts = vec![true];
        while ids.len() < len - 8 {
            if rng.random::<f64>() < 0.05 {
                ids.push(3);
                starts.push(true);
                continue;
            }
            let pieces = rng.random_range(1..=3);
            for p in 0..pieces {
                ids.push(rng.random_range(5..V as u32));
                starts.push(p == 0);
            }
        }
        ids.push(3);
        starts.push(true);
        ids.resize(len, 0);
        starts.resize(len, true);
        (ids, starts)
    }

    struct Counts {
        maskable: usize,
        selected: usize,
        to_mask: usize,
        to_random: usize,
        unchanged: usize,
    }

    fn draw(cfg: MaskingConfig, draws: usize, check: impl Fn(&[u32], &[bool], &MaskedSeq)) -> Counts {
        let len = 128;
        let masker = Masker::new(cfg, S, V, len).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut c = Counts { maskable: 0, selected: 0, to_mask: 0, to_random: 0, unchanged: 0 };
        for _ in 0..draws {
            let (ids, starts) = sequence(&mut rng, len);
            let m = masker.mask(&ids, &starts, &mut rng);
            assert_eq!(m.positions.len(), masker.slots());
            assert_eq!(m.input_ids.len(), len);
            check(&ids, &starts, &m);
            c.maskable += ids.iter().filter(|&&i| i >= 5).count();
            for ((&p, &t), &v) in m.positions.iter().zip(&m.targets).zip(&m.valid) {
                if !v {
                    continue;
                }
                c.selected += 1;
                assert_eq!(t, ids[p as usize] as i64);
                let now = m.input_ids[p as usize];
                if now == S.mask {
                    c.to_mask += 1;
                } else if now == t {
                    c.unchanged += 1;
                } else {
                    c.to_random += 1;
                }
            }
        }
        c
    }

    fn specials_untouched(ids: &[u32], _: &[bool], m: &MaskedSeq) {
        for (i, &id) in ids.iter().enumerate() {
            if id < 5 {
                assert_eq!(m.input_ids[i], id as i64, "special token at {i} was changed");
                assert!(!m.positions.iter().zip(&m.valid).any(|(&p, &v)| v && p == i as i64));
            }
        }
        // Unselected positions are never changed.
        let sel: std::collections::HashSet<i64> =
            m.positions.iter().zip(&m.valid).filter(|(_, v)| **v).map(|(p, _)| *p).collect();
        for (i, &id) in ids.iter().enumerate() {
            if !sel.contains(&(i as i64)) {
                assert_eq!(m.input_ids[i], id as i64);
            }
        }
        // Positions are sorted and unique.
        let used: Vec<i64> = m.positions.iter().zip(&m.valid).filter(|(_, v)| **v).map(|(p, _)| *p).collect();
        assert!(used.windows(2).all(|w| w[0] < w[1]));
    }

    fn assert_split(c: &Counts) {
        let n = c.selected as f64;
        let (m, r, u) = (c.to_mask as f64 / n, c.to_random as f64 / n, c.unchanged as f64 / n);
        // A random replacement can hit the original token (1 in ~1000): counted as unchanged.
        assert!((m - 0.8).abs() < 0.01, "[MASK] share {m}");
        assert!((r - 0.1).abs() < 0.01, "random share {r}");
        assert!((u - 0.1).abs() < 0.01, "unchanged share {u}");
    }

    #[test]
    fn token_masking_rate_and_split() {
        for rate in [0.15, 0.25, 0.4] {
            let cfg = MaskingConfig { rate, ..Default::default() };
            let c = draw(cfg, 2000, specials_untouched);
            let got = c.selected as f64 / c.maskable as f64;
            assert!((got - rate).abs() < 0.005, "rate {rate}: got {got}");
            assert_split(&c);
        }
    }

    #[test]
    fn whole_words_are_masked_together() {
        let cfg = MaskingConfig { rate: 0.15, whole_word: true, ..Default::default() };
        let check = |ids: &[u32], starts: &[bool], m: &MaskedSeq| {
            specials_untouched(ids, starts, m);
            let sel: Vec<bool> =
                (0..ids.len()).map(|i| m.positions.iter().zip(&m.valid).any(|(&p, &v)| v && p == i as i64)).collect();
            for i in 1..ids.len() {
                if !starts[i] && ids[i] >= 5 && ids[i - 1] >= 5 {
                    assert_eq!(sel[i], sel[i - 1], "word split at {i}");
                }
            }
        };
        let c = draw(cfg, 2000, check);
        let got = c.selected as f64 / c.maskable as f64;
        // Whole words can overshoot the budget, so a word that does not fit is skipped: slightly low.
        assert!((got - 0.15).abs() < 0.01, "got {got}");
        assert_split(&c);
    }

    #[test]
    fn spans_are_contiguous_and_keep_the_rate() {
        let cfg = MaskingConfig { rate: 0.2, spans: true, ..Default::default() };
        let mut runs = Vec::new();
        let c = {
            let runs_cell = std::cell::RefCell::new(&mut runs);
            draw(cfg, 1000, |ids, starts, m| {
                specials_untouched(ids, starts, m);
                let used: Vec<i64> = m.positions.iter().zip(&m.valid).filter(|(_, v)| **v).map(|(p, _)| *p).collect();
                let mut run = 1;
                for w in used.windows(2) {
                    if w[1] == w[0] + 1 {
                        run += 1;
                    } else {
                        runs_cell.borrow_mut().push(run);
                        run = 1;
                    }
                }
                if !used.is_empty() {
                    runs_cell.borrow_mut().push(run);
                }
            })
        };
        let got = c.selected as f64 / c.maskable as f64;
        assert!((got - 0.2).abs() < 0.01, "got {got}");
        assert_split(&c);
        // Geometric(0.2) clipped at 10 has mean ~3.8; merged neighbouring spans make runs longer,
        // budget truncation shorter. Token-level masking would give runs of ~1.2.
        let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
        assert!(mean > 2.5, "mean run {mean}");
    }

    #[test]
    fn same_seed_same_mask() {
        let masker = Masker::new(MaskingConfig::default(), S, V, 64).unwrap();
        let (ids, starts) = sequence(&mut ChaCha8Rng::seed_from_u64(1), 64);
        let a = masker.mask(&ids, &starts, &mut ChaCha8Rng::seed_from_u64(3));
        let b = masker.mask(&ids, &starts, &mut ChaCha8Rng::seed_from_u64(3));
        let c = masker.mask(&ids, &starts, &mut ChaCha8Rng::seed_from_u64(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Masker::new(MaskingConfig { rate: 0.0, ..Default::default() }, S, V, 64).is_err());
        assert!(Masker::new(MaskingConfig { rate: 1.5, ..Default::default() }, S, V, 64).is_err());
        assert!(Masker::new(MaskingConfig { mask_fraction: 0.95, ..Default::default() }, S, V, 64).is_err());
        assert!(Masker::new(MaskingConfig::default(), S, 5, 64).is_err());
    }
}
