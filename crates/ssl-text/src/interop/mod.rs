//! Other tools' formats: [`export`] writes HF `BertForMaskedLM` (or the pre-LN RoBERTa) with the
//! run's tokenizer, [`import`] reads HF BERT/RoBERTa checkpoints for `--init-from`, [`embed`]
//! reads texts for `ssl embed`.
pub mod embed;
pub mod export;
pub mod import;
