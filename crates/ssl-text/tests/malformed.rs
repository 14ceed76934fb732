//! Arbitrary bytes into the corpus and labeled-data readers: documents, counted skips, or a clear
//! error; never a panic. A fixed case budget keeps this inside the test command.
use proptest::prelude::*;
use ssl_text::data::corpus::{Corpus, DocStream};

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn corpus_and_labeled_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), ext in "txt|jsonl|csv|tsv") {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(format!("x.{ext}"));
        std::fs::write(&f, &bytes).unwrap();
        if let Ok(corpus) = Corpus::open(std::slice::from_ref(&f)) {
            let mut stream = DocStream::new(&corpus);
            let docs = stream.by_ref().count();
            let stats = stream.stats().lock().map(|s| s.clone()).unwrap_or_default();
            prop_assert!(docs as u64 <= stats.documents.max(docs as u64));
        }
        if let Err(e) = ssl_text::data::labeled::read_labeled_file(&f, "text", "label") {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
