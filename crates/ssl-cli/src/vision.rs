//! `ssl pretrain-vision` (being written).
use crate::common::CommonArgs;
use anyhow::Result;

/// Flags of `pretrain-vision`.
#[derive(clap::Args, Debug, Clone)]
pub struct VisionArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(args: VisionArgs) -> Result<()> {
    let _ = args.common;
    anyhow::bail!("pretrain-vision is not implemented yet")
}
