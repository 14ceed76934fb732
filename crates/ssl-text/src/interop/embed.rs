//! `ssl embed` for text: every non-empty line of the `.txt` files given is one input, tokenized
//! and cut as the evaluation's labeled texts are, with the run's own tokenizer, and pooled as
//! the run's evaluation pooled it.
use crate::data::tokenizer::TextTokenizer;
use crate::model::encoder::TextEncoder;
use crate::model::{BertConfig, Pooling};
use crate::objectives::mlm::MlmObjective;
use crate::{Result, TextError};
use ssl_core::embed::EmbedInputs;
use ssl_records::skipped::{Skipped, SkippedInputs};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The lines of `files`, each non-empty line one input named `file:line` (1-based); a line that
/// is not UTF-8 is skipped (named in a warning) and counted.
pub fn read_lines(files: &[PathBuf]) -> Result<(Vec<String>, Vec<String>, SkippedInputs)> {
    let (mut names, mut texts, mut skipped) = (Vec::new(), Vec::new(), SkippedInputs::default());
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| TextError::io(f, e))?;
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            match std::str::from_utf8(line) {
                Ok(s) if s.trim().is_empty() => {}
                Ok(s) => {
                    names.push(format!("{}:{}", f.display(), i + 1));
                    texts.push(s.trim_end_matches('\r').to_string());
                }
                Err(e) => {
                    let s = Skipped::line(f.display().to_string(), i as u64 + 1, format!("not UTF-8: {e}"));
                    eprintln!("warning: skipped {s}");
                    skipped.push(s);
                }
            }
        }
    }
    Ok((names, texts, skipped))
}

/// The inputs under `data` and the encoder of the text run `run` on `device`.
pub fn embed_inputs(run: &Path, data: &Path, device: Device) -> Result<EmbedInputs> {
    let resolved: serde_json::Value = ssl_core::interop::run_config(run, "text")?;
    let field = |name: &str| {
        resolved.get(name).cloned().ok_or_else(|| {
            TextError::InvalidArgument(format!("{}: no `{name}` in the run's config.json", run.display()))
        })
    };
    let parse = |e: serde_json::Error| {
        TextError::InvalidArgument(format!("{}: the run's config.json does not parse: {e}", run.display()))
    };
    let model: BertConfig = serde_json::from_value(field("model")?).map_err(parse)?;
    let pooling: Pooling = serde_json::from_value(field("pool")?).map_err(parse)?;
    let max_len = field("text")?
        .get("max_len")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| TextError::InvalidArgument(format!("{}: no text.max_len in config.json", run.display())))?
        as usize;
    let run_dir = ssl_core::interop::run_dir_of(run)?;
    let tokenizer = TextTokenizer::load(&run_dir.join("tokenizer.json"))?;
    let files = ssl_core::files::input_files(data, &["txt"])?;
    let (names, texts, skipped) = read_lines(&files)?;
    if texts.is_empty() {
        return Err(TextError::InvalidArgument(format!(
            "--data {}: no non-empty UTF-8 line in {} .txt files",
            data.display(),
            files.len()
        )));
    }
    let rows = tokenizer.encode_padded_batch(&texts, max_len)?;
    let flat: Vec<i64> = rows.into_iter().flatten().collect();
    let inputs = Tensor::from_slice(&flat).view([texts.len() as i64, max_len as i64]);
    let mlm = MlmObjective::new(&model, device)?;
    ssl_core::checkpoint::load_weights(run, &mlm.vs)?;
    Ok(EmbedInputs {
        names,
        inputs,
        skipped,
        encoder: Box::new(TextEncoder::new(mlm).with_pooling(pooling)),
        describes: format!(
            "mean over non-padding tokens of the hidden states ({pooling:?} pooling), texts cut to {max_len} tokens"
        ),
    })
}
