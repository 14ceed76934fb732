//! `ssl bench <modality>`: our side of `cargo xtask bench`. The harness is `ssl_core::bench`, and
//! each modality's `bench` module measures its model; this command picks the modality and writes
//! the typed record (`<name>_ours.json`) that xtask reads.
use anyhow::{bail, Result};
use ssl_core::bench::{BenchContext, BenchOptions};
use std::path::PathBuf;

/// Flags of `ssl bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// vision, text or speech.
    #[arg(default_value = "vision")]
    pub modality: String,
    /// Where the JSON results and the reference artefacts go.
    #[arg(long)]
    pub out: PathBuf,
    /// A short run for smoke tests (smaller text and speech batches too).
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Model preset (text: tiny or mini; speech: tiny; vision: ignored).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// ResNet width (vision; default: the shipped preset).
    #[arg(long)]
    pub width: Option<i64>,
    /// Batch size (default: vision 64; text and speech: their recipe's, 8 and 4 with --quick).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Steps per timed window (default 10, 2 with --quick).
    #[arg(long)]
    pub window_steps: Option<u64>,
    /// Timed windows after the warm-up window (default 5, 2 with --quick).
    #[arg(long)]
    pub windows: Option<u64>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let device = ssl_core::device::parse(&a.device)?;
    std::fs::create_dir_all(&a.out)?;
    let options = BenchOptions {
        out: a.out.clone(),
        quick: a.quick,
        preset: a.preset.clone(),
        width: a.width,
        batch_size: a.batch_size,
        window_steps: a.window_steps,
        windows: a.windows,
    };
    let ctx = BenchContext::new(options, device);
    let measured = match a.modality.as_str() {
        "vision" => ssl_vision::bench::measure(&ctx)?,
        "text" => ssl_text::bench::measure(&ctx)?,
        "speech" => ssl_speech::bench::measure(&ctx)?,
        other => bail!("`ssl bench {other}`: expected vision, text or speech"),
    };
    let out = measured.record(&ctx);
    std::fs::write(a.out.join(format!("{}_ours.json", out.name)), serde_json::to_vec_pretty(&out)?)?;
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
