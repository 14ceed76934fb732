//! Labeled text for the evaluation: CSV, TSV or JSONL with named text and label columns.
//!
//! `--labeled PATH` is either a folder holding `train.*` and `test.*` files, or one file that is
//! split 70/30 (train/test) by a fixed seed. Labels are strings; classes are numbered in sorted
//! order. Rows whose text is empty or not valid UTF-8 are skipped and counted.
//!
//! ```
//! use ssl_text::data::labeled::load_labeled;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("reviews.csv");
//! let mut csv = String::from("label,text\n");
//! for i in 0..10 {
//!     csv.push_str(&format!("{},review number {i}\n", if i % 2 == 0 { "good" } else { "bad" }));
//! }
//! std::fs::write(&path, csv).unwrap();
//! let split = load_labeled(&path, "text", "label", 0).unwrap();
//! assert_eq!((split.train.len(), split.test.len()), (7, 3));
//! assert_eq!(split.classes, ["bad", "good"]);
//! ```
use crate::data::tokenizer::TextTokenizer;
use crate::error::{Result, TextError};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use ssl_core::eval::LabeledSet;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Texts with string labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabeledTexts {
    pub texts: Vec<String>,
    pub labels: Vec<String>,
}

impl LabeledTexts {
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
    fn select(&self, idx: &[usize]) -> Self {
        Self {
            texts: idx.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: idx.iter().map(|&i| self.labels[i].clone()).collect(),
        }
    }
}

/// A train/test split and its classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledSplit {
    pub train: LabeledTexts,
    pub test: LabeledTexts,
    /// Class names; class `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Where it came from, for the report.
    pub source: LabeledSource,
}

/// How a split was made, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabeledSource {
    pub train_file: String,
    pub test_file: Option<String>,
    /// "files" (train.* and test.*) or "70/30 split, seed N".
    pub split: String,
    pub skipped_rows: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv(u8),
    Jsonl,
}

fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Ok(Format::Csv(b',')),
        Some("tsv") | Some("tab") => Ok(Format::Csv(b'\t')),
        Some("jsonl") | Some("json") => Ok(Format::Jsonl),
        _ => Err(TextError::format(path, "labeled data must be .csv, .tsv or .jsonl")),
    }
}

fn json_field(v: &serde_json::Value, name: &str) -> Option<String> {
    match v.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Read one labeled file; returns the rows and how many were skipped.
pub fn read_labeled_file(path: &Path, text_column: &str, label_column: &str) -> Result<(LabeledTexts, u64)> {
    let mut out = LabeledTexts::default();
    let mut skipped = 0u64;
    // Returns false when the row is skipped.
    let push = |text: Option<String>, label: Option<String>, out: &mut LabeledTexts| match (text, label) {
        (Some(t), Some(l)) if !t.trim().is_empty() && !l.trim().is_empty() => {
            out.texts.push(t.trim().to_owned());
            out.labels.push(l.trim().to_owned());
            true
        }
        _ => false,
    };
    match format_of(path)? {
        Format::Csv(delim) => {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(delim)
                .flexible(true)
                .from_path(path)
                .map_err(|e| TextError::format(path, e.to_string()))?;
            let header = rdr.byte_headers().map_err(|e| TextError::format(path, e.to_string()))?.clone();
            let col = |name: &str| {
                header.iter().position(|h| h == name.as_bytes()).ok_or_else(|| {
                    let have: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
                    TextError::format(path, format!("no column `{name}` (columns: {})", have.join(", ")))
                })
            };
            let (ti, li) = (col(text_column)?, col(label_column)?);
            for rec in rdr.byte_records() {
                let rec = match rec {
                    Ok(r) => r,
                    Err(_) => {
                        skipped += 1;
                        continue;
                    }
                };
                let get = |i: usize| rec.get(i).and_then(|b| std::str::from_utf8(b).ok()).map(str::to_owned);
                if !push(get(ti), get(li), &mut out) {
                    skipped += 1;
                }
            }
        }
        Format::Jsonl => {
            use std::io::BufRead;
            let f = std::fs::File::open(path).map_err(|e| TextError::io(path, e))?;
            let mut reader = std::io::BufReader::new(f);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(|e| TextError::io(path, e))?;
                if n == 0 {
                    break;
                }
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<serde_json::Value>(&buf) {
                    Ok(v) => {
                        if !push(json_field(&v, text_column), json_field(&v, label_column), &mut out) {
                            skipped += 1;
                        }
                    }
                    Err(_) => skipped += 1,
                }
            }
        }
    }
    Ok((out, skipped))
}

fn find_split_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["csv", "tsv", "jsonl", "json"].iter().map(|e| dir.join(format!("{stem}.{e}"))).find(|p| p.is_file())
}

/// Load labeled data from a folder with `train.*`/`test.*` or from one file split 70/30 with `seed`.
pub fn load_labeled(path: &Path, text_column: &str, label_column: &str, seed: u64) -> Result<LabeledSplit> {
    let (train, test, source) = if path.is_dir() {
        let (tr, te) = match (find_split_file(path, "train"), find_split_file(path, "test")) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(TextError::format(
                    path,
                    "a labeled folder must hold train.{csv,tsv,jsonl} and test.{csv,tsv,jsonl}",
                ))
            }
        };
        let (train, s1) = read_labeled_file(&tr, text_column, label_column)?;
        let (test, s2) = read_labeled_file(&te, text_column, label_column)?;
        let source = LabeledSource {
            train_file: tr.display().to_string(),
            test_file: Some(te.display().to_string()),
            split: "files".into(),
            skipped_rows: s1 + s2,
        };
        (train, test, source)
    } else {
        let (all, skipped) = read_labeled_file(path, text_column, label_column)?;
        let mut idx: Vec<usize> = (0..all.len()).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_train = (all.len() as f64 * 0.7).round() as usize;
        let (a, b) = idx.split_at(n_train);
        let source = LabeledSource {
            train_file: path.display().to_string(),
            test_file: None,
            split: format!("70/30 split, seed {seed}"),
            skipped_rows: skipped,
        };
        (all.select(a), all.select(b), source)
    };
    if train.is_empty() || test.is_empty() {
        return Err(TextError::format(path, "the labeled train and test sets must both hold rows"));
    }
    let classes: Vec<String> = train.labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    if classes.len() < 2 {
        return Err(TextError::format(path, format!("need at least two classes, found {classes:?}")));
    }
    if let Some(unknown) = test.labels.iter().find(|l| classes.binary_search(l).is_err()) {
        return Err(TextError::format(path, format!("test label `{unknown}` never occurs in the training rows")));
    }
    Ok(LabeledSplit { train, test, classes, source })
}

/// Tokenize into ssl-core's [`LabeledSet`]: inputs `[N, max_len]` int64 (`[CLS] text [SEP]`, padded).
pub fn to_labeled_set(
    texts: &LabeledTexts,
    classes: &[String],
    tokenizer: &TextTokenizer,
    max_len: usize,
) -> Result<LabeledSet> {
    let rows = tokenizer.encode_padded_batch(&texts.texts, max_len)?;
    let flat: Vec<i64> = rows.into_iter().flatten().collect();
    let labels: Vec<i64> =
        texts.labels.iter().map(|l| classes.binary_search(l).map(|i| i as i64).unwrap_or(0)).collect();
    let n = texts.len() as i64;
    Ok(LabeledSet::new(
        Tensor::from_slice(&flat).view([n, max_len as i64]),
        Tensor::from_slice(&labels),
        classes.len() as i64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_tsv_jsonl_and_named_columns() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "id,sentiment,review\n1,pos,\"great, really\"\n2,neg,bad\n3,neg,\n").unwrap();
        let (rows, skipped) = read_labeled_file(&csv, "review", "sentiment").unwrap();
        assert_eq!(rows.texts, ["great, really", "bad"]);
        assert_eq!(rows.labels, ["pos", "neg"]);
        assert_eq!(skipped, 1);
        let tsv = dir.path().join("a.tsv");
        std::fs::write(&tsv, "text\tlabel\nhello there\t1\nbye\t0\n").unwrap();
        assert_eq!(read_labeled_file(&tsv, "text", "label").unwrap().0.labels, ["1", "0"]);
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(&jsonl, "{\"text\":\"x y\",\"label\":3}\nnot json\n{\"text\":\"z\",\"label\":\"a\"}\n").unwrap();
        let (rows, skipped) = read_labeled_file(&jsonl, "text", "label").unwrap();
        assert_eq!(rows.labels, ["3", "a"]);
        assert_eq!(skipped, 1);
        let err = read_labeled_file(&csv, "body", "sentiment").unwrap_err();
        assert!(err.to_string().contains("no column `body`"), "{err}");
        assert!(read_labeled_file(&dir.path().join("a.txt"), "text", "label").is_err());
    }

    #[test]
    fn folder_with_train_and_test() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), "text,label\na,x\nb,y\nc,x\n").unwrap();
        std::fs::write(dir.path().join("test.jsonl"), "{\"text\":\"d\",\"label\":\"y\"}\n").unwrap();
        let s = load_labeled(dir.path(), "text", "label", 0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (3, 1));
        assert_eq!(s.classes, ["x", "y"]);
        std::fs::write(dir.path().join("test.jsonl"), "{\"text\":\"d\",\"label\":\"z\"}\n").unwrap();
        assert!(load_labeled(dir.path(), "text", "label", 0).is_err());
    }

    #[test]
    fn single_file_split_is_fixed_by_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        let body: String = (0..100).map(|i| format!("t{i},{}\n", i % 3)).collect();
        std::fs::write(&path, format!("text,label\n{body}")).unwrap();
        let a = load_labeled(&path, "text", "label", 5).unwrap();
        let b = load_labeled(&path, "text", "label", 5).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.train.len(), a.test.len()), (70, 30));
        let mut all: Vec<&String> = a.train.texts.iter().chain(&a.test.texts).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
    }
}
