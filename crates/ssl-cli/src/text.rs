//! `ssl pretrain-text` (being written).
use crate::common::CommonArgs;
use anyhow::Result;

/// Flags of `pretrain-text`.
#[derive(clap::Args, Debug, Clone)]
pub struct TextArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: TextArgs) -> Result<()> {
    let _ = args.common;
    anyhow::bail!("pretrain-text is not implemented yet")
}
