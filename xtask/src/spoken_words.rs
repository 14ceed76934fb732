//! `cargo xtask data spoken-words`: a labeled spoken-digit dataset generated with espeak-ng
//! (accents, voice variants, speeds and pitches), with test voices held out from training.
//! The generator itself is `datasets/speech/make_spoken_words.sh`.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags of `cargo xtask data spoken-words`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpokenWordsArgs {
    /// Output folder (gets train/, test/ and unlabeled/).
    #[arg(long, default_value = "runs/data/spoken-words")]
    pub out: PathBuf,
    /// `full` (20 training voices x 3 takes, 16 kHz) or `small` (the committed default's recipe).
    #[arg(long, default_value = "full")]
    pub size: String,
}

/// Generate the dataset.
pub fn generate(root: &Path, args: &SpokenWordsArgs) -> Result<()> {
    if !["small", "full"].contains(&args.size.as_str()) {
        bail!("--size must be small or full, not {}", args.size);
    }
    for tool in ["espeak-ng", "sox"] {
        if !crate::tool_works(tool, &["--version"]) {
            bail!("{tool} is not installed. Install it (Debian/Ubuntu: `apt-get install espeak-ng sox`) and retry.");
        }
    }
    let script = root.join("datasets/speech/make_spoken_words.sh");
    let status = Command::new("sh")
        .arg(&script)
        .arg(&args.out)
        .arg(&args.size)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    eprintln!("==> spoken words in {} (train/, test/ with held-out voices, unlabeled/)", args.out.display());
    Ok(())
}
