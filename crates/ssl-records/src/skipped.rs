//! One record for every input a reader skips, in every modality.
use serde::{Deserialize, Serialize};
use std::fmt;

/// An input that was skipped: which file, where in it (a line of a text file, or the index of a
/// record in a container such as IDX or CIFAR), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    /// 1-based line number, for line-oriented text files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based record index, for files that hold many records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    pub reason: String,
}

impl Skipped {
    /// A whole file.
    pub fn file(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), line: None, index: None, reason: reason.into() }
    }
    /// One line of a text file (1-based).
    pub fn line(path: impl Into<String>, line: u64, reason: impl Into<String>) -> Self {
        Self { path: path.into(), line: Some(line), index: None, reason: reason.into() }
    }
    /// One record of a container file (0-based).
    pub fn record(path: impl Into<String>, index: u64, reason: impl Into<String>) -> Self {
        Self { path: path.into(), line: None, index: Some(index), reason: reason.into() }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.index) {
            (Some(l), _) => write!(f, "{}:{}: {}", self.path, l, self.reason),
            (None, Some(i)) => write!(f, "{}[{}]: {}", self.path, i, self.reason),
            (None, None) => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// How many inputs were skipped, and the first [`SkippedInputs::KEEP`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInputs {
    pub count: u64,
    pub items: Vec<Skipped>,
}

impl SkippedInputs {
    /// Records kept in full; beyond this only the count grows (a corpus with a million bad lines
    /// must not make a million-line report).
    pub const KEEP: usize = 100;

    pub fn push(&mut self, s: Skipped) {
        self.count += 1;
        if self.items.len() < Self::KEEP {
            self.items.push(s);
        }
    }

    /// Add every record of `other`.
    pub fn extend(&mut self, other: SkippedInputs) {
        let extra = other.count.saturating_sub(other.items.len() as u64);
        for s in other.items {
            self.push(s);
        }
        self.count += extra;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl FromIterator<Skipped> for SkippedInputs {
    fn from_iter<I: IntoIterator<Item = Skipped>>(iter: I) -> Self {
        let mut s = Self::default();
        for x in iter {
            s.push(x);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_records_and_counts_all() {
        let s: SkippedInputs = (0..250).map(|i| Skipped::record("x.idx", i, "bad")).collect();
        assert_eq!(s.count, 250);
        assert_eq!(s.items.len(), SkippedInputs::KEEP);
        let mut t = SkippedInputs::default();
        t.push(Skipped::file("a.png", "truncated"));
        t.extend(s);
        assert_eq!(t.count, 251);
        assert_eq!(t.items.len(), SkippedInputs::KEEP);
        assert_eq!(t.items[0].to_string(), "a.png: truncated");
        assert_eq!(t.items[1].to_string(), "x.idx[0]: bad");
    }

    #[test]
    fn round_trips_through_json_without_empty_fields() {
        let s = Skipped::line("c.txt", 7, "NUL byte");
        let j = serde_json::to_string(&s).unwrap();
        assert!(!j.contains("index"), "{j}");
        assert_eq!(serde_json::from_str::<Skipped>(&j).unwrap(), s);
    }
}
