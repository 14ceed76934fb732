//! Sequence packing (RoBERTa's FULL-SENTENCES, no NSP): documents are concatenated, each followed
//! by `[SEP]`, and cut into sequences of exactly `max_len` ids that start with `[CLS]`. A document
//! longer than the room left continues in the next sequence; only the very last sequence is padded.
//!
//! Packed sequences are written to a flat binary file (`u32` little-endian per token, the top bit
//! set where a token starts a word) and read back by index, so memory stays flat however large the
//! corpus is.
//!
//! ```
//! use ssl_text::data::packing::Packer;
//! use ssl_text::data::tokenizer::{Encoded, SpecialIds};
//! let special = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };
//! let mut packer = Packer::new(6, special).unwrap();
//! let doc = Encoded { ids: vec![10, 11, 12], word_starts: vec![true, false, true] };
//! let mut seqs = packer.push(&doc);
//! seqs.extend(packer.push(&doc));
//! seqs.extend(packer.finish());
//! assert_eq!(seqs[0].ids, [2, 10, 11, 12, 3, 10]);
//! assert_eq!(seqs[1].ids, [2, 11, 12, 3, 0, 0]);
//! ```
use crate::data::tokenizer::{Encoded, SpecialIds};
use crate::error::{Result, TextError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One packed sequence of exactly `max_len` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedSeq {
    pub ids: Vec<u32>,
    /// Whether each token starts a word (special tokens and padding count as starts).
    pub word_starts: Vec<bool>,
}

/// Packs a stream of tokenized documents.
pub struct Packer {
    max_len: usize,
    special: SpecialIds,
    ids: Vec<u32>,
    starts: Vec<bool>,
}

impl Packer {
    pub fn new(max_len: usize, special: SpecialIds) -> Result<Self> {
        if max_len < 4 {
            return Err(TextError::InvalidArgument(format!("max_len {max_len} is too short to pack (at least 4)")));
        }
        let mut p = Self { max_len, special, ids: Vec::with_capacity(max_len), starts: Vec::with_capacity(max_len) };
        p.begin();
        Ok(p)
    }

    fn begin(&mut self) {
        self.ids.clear();
        self.starts.clear();
        self.ids.push(self.special.cls as u32);
        self.starts.push(true);
    }

    fn put(&mut self, id: u32, start: bool, out: &mut Vec<PackedSeq>) {
        if self.ids.len() == self.max_len {
            out.push(PackedSeq { ids: self.ids.clone(), word_starts: self.starts.clone() });
            self.begin();
        }
        self.ids.push(id);
        self.starts.push(start);
    }

    /// Add one document (and its `[SEP]`); returns the sequences this completed.
    pub fn push(&mut self, doc: &Encoded) -> Vec<PackedSeq> {
        let mut out = Vec::new();
        if doc.ids.is_empty() {
            return out;
        }
        for (&id, &start) in doc.ids.iter().zip(&doc.word_starts) {
            self.put(id, start, &mut out);
        }
        self.put(self.special.sep as u32, true, &mut out);
        out
    }

    /// The last, padded sequence (if it holds anything beyond `[CLS]`).
    pub fn finish(mut self) -> Option<PackedSeq> {
        if self.ids.len() <= 1 {
            return None;
        }
        self.ids.resize(self.max_len, self.special.pad as u32);
        self.starts.resize(self.max_len, true);
        Some(PackedSeq { ids: self.ids, word_starts: self.starts })
    }
}

const WORD_START_BIT: u32 = 1 << 31;

/// Sidecar metadata of a packed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedMeta {
    pub max_len: usize,
    pub sequences: u64,
    /// Non-padding tokens, specials included.
    pub tokens: u64,
    pub documents: u64,
}

/// Writes packed sequences to `<path>` and `<path>.json`.
pub struct PackedWriter {
    path: PathBuf,
    out: BufWriter<File>,
    meta: PackedMeta,
    pad: u32,
}

impl PackedWriter {
    pub fn create(path: &Path, max_len: usize, special: SpecialIds) -> Result<Self> {
        let f = File::create(path).map_err(|e| TextError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(f),
            meta: PackedMeta { max_len, sequences: 0, tokens: 0, documents: 0 },
            pad: special.pad as u32,
        })
    }

    pub fn write(&mut self, seq: &PackedSeq) -> Result<()> {
        if seq.ids.len() != self.meta.max_len {
            return Err(TextError::InvalidArgument(format!(
                "sequence of {} tokens written to a packed file of length {}",
                seq.ids.len(),
                self.meta.max_len
            )));
        }
        for (&id, &start) in seq.ids.iter().zip(&seq.word_starts) {
            let v = if start { id | WORD_START_BIT } else { id };
            self.out.write_all(&v.to_le_bytes()).map_err(|e| TextError::io(&self.path, e))?;
            if id != self.pad {
                self.meta.tokens += 1;
            }
        }
        self.meta.sequences += 1;
        Ok(())
    }

    /// Count one document (for the metadata).
    pub fn add_document(&mut self) {
        self.meta.documents += 1;
    }

    pub fn finish(mut self) -> Result<PackedMeta> {
        self.out.flush().map_err(|e| TextError::io(&self.path, e))?;
        let side = sidecar(&self.path);
        let json = serde_json::to_vec_pretty(&self.meta).map_err(|e| TextError::format(&side, e.to_string()))?;
        std::fs::write(&side, json).map_err(|e| TextError::io(&side, e))?;
        Ok(self.meta)
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Random access to a packed file.
pub struct PackedCorpus {
    path: PathBuf,
    file: Mutex<File>,
    pub meta: PackedMeta,
}

impl PackedCorpus {
    pub fn open(path: &Path) -> Result<Self> {
        let side = sidecar(path);
        let bytes = std::fs::read(&side).map_err(|e| TextError::io(&side, e))?;
        let meta: PackedMeta = serde_json::from_slice(&bytes).map_err(|e| TextError::format(&side, e.to_string()))?;
        let file = File::open(path).map_err(|e| TextError::io(path, e))?;
        let len = file.metadata().map_err(|e| TextError::io(path, e))?.len();
        if len != meta.sequences * meta.max_len as u64 * 4 {
            return Err(TextError::format(path, "size does not match its metadata (truncated?)"));
        }
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file), meta })
    }

    pub fn len(&self) -> usize {
        self.meta.sequences as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence `i`.
    pub fn get(&self, i: usize) -> Result<PackedSeq> {
        if i >= self.len() {
            return Err(TextError::InvalidArgument(format!("sequence {i} of {}", self.len())));
        }
        let n = self.meta.max_len;
        let mut buf = vec![0u8; n * 4];
        {
            let mut f = self.file.lock().map_err(|_| TextError::format(&self.path, "file lock poisoned"))?;
            f.seek(SeekFrom::Start((i * n * 4) as u64)).map_err(|e| TextError::io(&self.path, e))?;
            f.read_exact(&mut buf).map_err(|e| TextError::io(&self.path, e))?;
        }
        let mut ids = Vec::with_capacity(n);
        let mut word_starts = Vec::with_capacity(n);
        for c in buf.chunks_exact(4) {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            ids.push(v & !WORD_START_BIT);
            word_starts.push(v & WORD_START_BIT != 0);
        }
        Ok(PackedSeq { ids, word_starts })
    }

    /// A fixed train / held-out split of the sequence indices: every `every`-th sequence is held
    /// out, at most `max_heldout` of them, and at least one sequence stays for training.
    pub fn split(&self, every: usize, max_heldout: usize) -> (Vec<usize>, Vec<usize>) {
        let n = self.len();
        let every = every.max(2);
        let mut train = Vec::with_capacity(n);
        let mut held = Vec::new();
        for i in 0..n {
            if i % every == every - 1 && held.len() < max_heldout {
                held.push(i);
            } else {
                train.push(i);
            }
        }
        (train, held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SpecialIds = SpecialIds { pad: 0, unk: 1, cls: 2, sep: 3, mask: 4 };

    fn doc(ids: &[u32]) -> Encoded {
        Encoded { ids: ids.to_vec(), word_starts: ids.iter().map(|i| i % 2 == 0).collect() }
    }

    fn pack_all(docs: &[Encoded], max_len: usize) -> Vec<PackedSeq> {
        let mut p = Packer::new(max_len, S).unwrap();
        let mut out: Vec<PackedSeq> = docs.iter().flat_map(|d| p.push(d)).collect();
        out.extend(p.finish());
        out
    }

    #[test]
    fn every_sequence_has_fixed_length_and_starts_with_cls() {
        let docs: Vec<Encoded> = (0..50).map(|k| doc(&(10..10 + (k % 13) as u32 + 1).collect::<Vec<_>>())).collect();
        let seqs = pack_all(&docs, 16);
        for s in &seqs {
            assert_eq!(s.ids.len(), 16);
            assert_eq!(s.word_starts.len(), 16);
            assert_eq!(s.ids[0], 2);
        }
        // Only the last sequence may be padded.
        for s in &seqs[..seqs.len() - 1] {
            assert!(!s.ids.contains(&0));
        }
        // Nothing is lost: every document token and one [SEP] per document come back in order.
        let body: Vec<u32> = seqs.iter().flat_map(|s| s.ids[1..].iter().copied()).filter(|&i| i != 0).collect();
        let expected: Vec<u32> = docs.iter().flat_map(|d| d.ids.iter().copied().chain([3])).collect();
        assert_eq!(body, expected);
    }

    #[test]
    fn long_documents_continue_in_the_next_sequence() {
        let seqs = pack_all(&[doc(&(10..30).collect::<Vec<_>>())], 8);
        assert_eq!(seqs.len(), 3);
        assert_eq!(seqs[0].ids, [2, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(seqs[1].ids, [2, 17, 18, 19, 20, 21, 22, 23]);
        assert_eq!(seqs[2].ids, [2, 24, 25, 26, 27, 28, 29, 3]);
        assert!(pack_all(&[], 8).is_empty());
    }

    #[test]
    fn packed_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.bin");
        let seqs = pack_all(&(0..20).map(|k| doc(&[10 + k, 11, 12, 13])).collect::<Vec<_>>(), 12);
        let mut w = PackedWriter::create(&path, 12, S).unwrap();
        for s in &seqs {
            w.write(s).unwrap();
        }
        let meta = w.finish().unwrap();
        assert_eq!(meta.sequences as usize, seqs.len());
        let r = PackedCorpus::open(&path).unwrap();
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(&r.get(i).unwrap(), s);
        }
        assert!(r.get(seqs.len()).is_err());
        let (train, held) = r.split(4, 2);
        assert_eq!(held, [3, 7]);
        assert_eq!(train.len() + held.len(), seqs.len());
    }
}
