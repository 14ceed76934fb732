//! Reading an unlabeled corpus as a stream of documents.
//!
//! Accepted inputs, as files or folders of them (folders are walked recursively, in name order;
//! hidden files and `*.LICENSE`/`README*` files are skipped):
//! - `*.jsonl` / `*.json`: one JSON object per line, the document in its `text` field;
//! - anything else: plain text. A file that contains a blank line holds one document per
//!   blank-line-separated paragraph (its lines joined with spaces); otherwise one document per line.
//!
//! Nothing is collected: [`DocStream`] reads line by line, so memory does not grow with the
//! corpus. Lines that are not valid UTF-8, JSONL lines that do not parse, and lines longer than
//! [`MAX_LINE_BYTES`] (read past without being stored) are skipped and counted with their file
//! and line in [`ReadStats`]; empty documents are ignored.
//!
//! ```
//! use ssl_text::data::corpus::{Corpus, DocStream};
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("a.txt"), "first doc\n\nsecond doc\nstill second\n").unwrap();
//! let corpus = Corpus::open(&[dir.path().to_path_buf()]).unwrap();
//! let docs: Vec<String> = DocStream::new(&corpus).collect();
//! assert_eq!(docs, ["first doc", "second doc still second"]);
//! ```
use crate::error::{Result, TextError};
use serde::Serialize;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How a corpus file is split into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DocFormat {
    /// One document per line.
    Lines,
    /// One document per blank-line-separated paragraph.
    Paragraphs,
    /// One JSON object per line with a `text` field.
    Jsonl,
}

/// One input file and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorpusFile {
    pub path: PathBuf,
    pub format: DocFormat,
}

pub use ssl_records::skipped::Skipped;

/// What reading the corpus found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    pub documents: u64,
    pub bytes: u64,
    /// Lines skipped (invalid UTF-8, unparsable JSON, no `text` field).
    pub skipped_lines: u64,
    /// The first skipped lines, with file and line (at most [`ReadStats::MAX_LISTED`]).
    pub skipped: Vec<Skipped>,
}

impl ReadStats {
    /// How many skipped lines are listed individually.
    pub const MAX_LISTED: usize = 100;

    fn skip(&mut self, path: &Path, line: u64, reason: &str) {
        self.skipped_lines += 1;
        if self.skipped.len() < Self::MAX_LISTED {
            self.skipped.push(Skipped::line(path.display().to_string(), line, reason));
        }
    }
}

/// The files of a corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Corpus {
    pub files: Vec<CorpusFile>,
}

fn ignored(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.') || name.ends_with(".LICENSE") || name.starts_with("README") || name == "LICENSE"
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| TextError::io(path, e))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| TextError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !ignored(p))
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The longest line read; longer ones are skipped (a file with no newline at all is one line).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Read one line (with its `\n`) into `buf`, keeping at most [`MAX_LINE_BYTES`]: the rest of a
/// longer line is consumed without being stored. Returns the bytes consumed (0 at end of file)
/// and whether the line was cut.
fn read_bounded_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let (mut consumed, mut cut) = (0, false);
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((consumed, cut));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take <= MAX_LINE_BYTES {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            cut = true;
        }
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, cut));
        }
    }
}

/// Whether a plain-text file has a blank line (then it is read as paragraphs).
fn has_blank_line(path: &Path) -> Result<bool> {
    let mut reader = BufReader::new(File::open(path).map_err(|e| TextError::io(path, e))?);
    let mut buf = Vec::new();
    let mut seen_text = false;
    loop {
        buf.clear();
        let (n, _) = read_bounded_line(&mut reader, &mut buf).map_err(|e| TextError::io(path, e))?;
        if n == 0 {
            return Ok(false);
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            if seen_text {
                return Ok(true);
            }
        } else {
            seen_text = true;
        }
    }
}

impl Corpus {
    /// The files under `paths` (files or folders), with their formats detected.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        if paths.is_empty() {
            return Err(TextError::EmptyCorpus("no corpus path given".into()));
        }
        let mut all = Vec::new();
        for p in paths {
            walk(p, &mut all)?;
        }
        let mut files = Vec::new();
        for path in all {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            let format = if ext == "jsonl" || ext == "json" {
                DocFormat::Jsonl
            } else if has_blank_line(&path)? {
                DocFormat::Paragraphs
            } else {
                DocFormat::Lines
            };
            files.push(CorpusFile { path, format });
        }
        if files.is_empty() {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(TextError::EmptyCorpus(format!("no files under {}", names.join(", "))));
        }
        Ok(Self { files })
    }

    /// A short description of the inputs (for reports).
    pub fn describe(&self) -> Vec<String> {
        self.files.iter().map(|f| format!("{} ({:?})", f.path.display(), f.format)).collect()
    }
}

/// Documents of a corpus, read lazily; skipped lines are counted in [`DocStream::stats`].
pub struct DocStream {
    files: std::vec::IntoIter<CorpusFile>,
    current: Option<(CorpusFile, BufReader<File>, u64)>,
    stats: Arc<Mutex<ReadStats>>,
    buf: Vec<u8>,
    /// The first error opening a file (reported instead of silently ending the stream).
    error: Arc<Mutex<Option<TextError>>>,
}

impl DocStream {
    pub fn new(corpus: &Corpus) -> Self {
        Self {
            files: corpus.files.clone().into_iter(),
            current: None,
            stats: Arc::new(Mutex::new(ReadStats::default())),
            buf: Vec::new(),
            error: Arc::new(Mutex::new(None)),
        }
    }

    /// A handle on the counts, readable while and after the stream is consumed.
    pub fn stats(&self) -> Arc<Mutex<ReadStats>> {
        self.stats.clone()
    }

    /// A handle on the first I/O error met (the stream ends there).
    pub fn error(&self) -> Arc<Mutex<Option<TextError>>> {
        self.error.clone()
    }

    fn with_stats(&self, f: impl FnOnce(&mut ReadStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s)
        }
    }

    /// The next line of the current file, as text: `None` at end of file, `Some(None)` for a
    /// line that was skipped.
    fn next_line(&mut self) -> Option<Option<String>> {
        let (file, reader, line_no) = self.current.as_mut()?;
        self.buf.clear();
        match read_bounded_line(reader, &mut self.buf) {
            Ok((0, _)) => None,
            Ok((_, true)) => {
                *line_no += 1;
                let (path, n) = (file.path.clone(), *line_no);
                self.with_stats(|s| s.skip(&path, n, &format!("line longer than {MAX_LINE_BYTES} bytes")));
                Some(None)
            }
            Ok(_) => {
                *line_no += 1;
                let (path, n) = (file.path.clone(), *line_no);
                match std::str::from_utf8(&self.buf) {
                    Ok(s) => Some(Some(s.trim_end_matches(['\n', '\r']).to_owned())),
                    Err(_) => {
                        self.with_stats(|s| s.skip(&path, n, "invalid UTF-8"));
                        Some(None)
                    }
                }
            }
            Err(e) => {
                let path = file.path.clone();
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(TextError::io(&path, e));
                }
                None
            }
        }
    }

    fn emit(&self, doc: String) -> Option<String> {
        let doc = doc.trim().to_owned();
        if doc.is_empty() {
            return None;
        }
        let len = doc.len() as u64;
        self.with_stats(|s| {
            s.documents += 1;
            s.bytes += len;
        });
        Some(doc)
    }
}

impl Iterator for DocStream {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            if self.current.is_none() {
                let file = self.files.next()?;
                match File::open(&file.path) {
                    Ok(f) => self.current = Some((file, BufReader::new(f), 0)),
                    Err(e) => {
                        if let Ok(mut slot) = self.error.lock() {
                            slot.get_or_insert(TextError::io(&file.path, e));
                        }
                        return None;
                    }
                }
            }
            let format = self.current.as_ref().map(|c| c.0.format)?;
            match format {
                DocFormat::Lines => match self.next_line() {
                    None => self.current = None,
                    Some(None) => {}
                    Some(Some(line)) => {
                        if let Some(d) = self.emit(line) {
                            return Some(d);
                        }
                    }
                },
                DocFormat::Jsonl => match self.next_line() {
                    None => self.current = None,
                    Some(None) => {}
                    Some(Some(line)) => {
                        if line.trim().is_empty() {
                            continue;
                        }
                        let (path, n) = self.current.as_ref().map(|c| (c.0.path.clone(), c.2))?;
                        match serde_json::from_str::<serde_json::Value>(&line) {
                            Ok(v) => match v.get("text").and_then(|t| t.as_str()) {
                                Some(t) => {
                                    if let Some(d) = self.emit(t.to_owned()) {
                                        return Some(d);
                                    }
                                }
                                None => self.with_stats(|s| s.skip(&path, n, "no string `text` field")),
                            },
                            Err(_) => self.with_stats(|s| s.skip(&path, n, "not valid JSON")),
                        }
                    }
                },
                DocFormat::Paragraphs => {
                    let mut para = String::new();
                    loop {
                        match self.next_line() {
                            None => {
                                self.current = None;
                                break;
                            }
                            Some(None) => {}
                            Some(Some(line)) => {
                                if line.trim().is_empty() {
                                    if !para.is_empty() {
                                        break;
                                    }
                                } else {
                                    if !para.is_empty() {
                                        para.push(' ');
                                    }
                                    para.push_str(line.trim());
                                }
                            }
                        }
                    }
                    if let Some(d) = self.emit(para) {
                        return Some(d);
                    }
                }
            }
        }
    }
}

/// Read the whole corpus once and fail clearly when it holds no text (or a file cannot be read).
pub fn check_nonempty(corpus: &Corpus) -> Result<ReadStats> {
    let mut stream = DocStream::new(corpus);
    let stats = stream.stats();
    let error = stream.error();
    stream.by_ref().for_each(drop);
    if let Some(e) = error.lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    let stats = stats.lock().map(|s| s.clone()).unwrap_or_default();
    if stats.documents == 0 {
        return Err(TextError::EmptyCorpus(corpus.describe().join(", ")));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path) -> (Vec<String>, ReadStats) {
        let corpus = Corpus::open(&[dir.to_path_buf()]).unwrap();
        let stream = DocStream::new(&corpus);
        let stats = stream.stats();
        let docs: Vec<String> = stream.collect();
        let s = stats.lock().unwrap().clone();
        (docs, s)
    }

    #[test]
    fn lines_paragraphs_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\n\n   \nthree\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), "line one\nline two\n").unwrap();
        std::fs::write(dir.path().join("c.jsonl"), "{\"text\": \"json doc\"}\n\n{\"text\": \"\"}\n").unwrap();
        std::fs::write(dir.path().join("c.LICENSE"), "not a document").unwrap();
        let (docs, stats) = read(dir.path());
        assert_eq!(docs, ["one two", "three", "line one", "line two", "json doc"]);
        assert_eq!(stats.documents, 5);
        assert_eq!(stats.skipped_lines, 0);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_skipped_without_being_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut body = b"before\n".to_vec();
        body.extend(vec![b'x'; MAX_LINE_BYTES + 10]);
        body.extend(b"\nafter\n");
        body.extend(vec![b'y'; 3 * MAX_LINE_BYTES]); // no newline at the end of the file
        std::fs::write(dir.path().join("a.txt"), body).unwrap();
        let (docs, stats) = read(dir.path());
        assert_eq!(docs, ["before", "after"]);
        assert_eq!(stats.skipped_lines, 2);
        assert_eq!((stats.skipped[0].line, stats.skipped[1].line), (Some(2), Some(4)));
        assert!(stats.skipped[0].reason.contains("longer than"));
    }

    #[test]
    fn invalid_utf8_and_bad_json_are_counted_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"good\n\xff\xfe bad\nalso good\n").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{\"text\": \"ok\"}\nnot json\n{\"other\": 1}\n").unwrap();
        let (docs, stats) = read(dir.path());
        assert_eq!(docs, ["good", "also good", "ok"]);
        assert_eq!(stats.skipped_lines, 3);
        assert!(stats.skipped[0].path.ends_with("a.txt"));
        assert_eq!(stats.skipped[0].line, Some(2));
        assert_eq!((stats.skipped[1].line, stats.skipped[2].line), (Some(2), Some(3)));
    }

    #[test]
    fn empty_corpus_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "\n\n  \n").unwrap();
        let corpus = Corpus::open(&[dir.path().to_path_buf()]).unwrap();
        let err = check_nonempty(&corpus).unwrap_err();
        assert!(matches!(err, TextError::EmptyCorpus(_)), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(Corpus::open(&[empty.path().to_path_buf()]), Err(TextError::EmptyCorpus(_))));
        assert!(matches!(Corpus::open(&[empty.path().join("missing")]), Err(TextError::Io { .. })));
    }
}
