//! `ssl pretrain-speech` (being written).
use crate::common::CommonArgs;
use anyhow::Result;

/// Flags of `pretrain-speech`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeechArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: SpeechArgs) -> Result<()> {
    let _ = args.common;
    anyhow::bail!("pretrain-speech is not implemented yet")
}
