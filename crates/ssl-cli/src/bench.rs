//! `ssl bench <modality>`: our side of `cargo xtask bench`. The harness is `ssl_core::bench`, and
//! each modality's `bench` module measures its model; this command picks the modality and writes
//! the typed record (`<name>_ours.json`) that xtask reads.
use anyhow::{bail, Result};
use ssl_core::bench::{BenchContext, BenchOptions};
use std::path::PathBuf;

/// Flags of `ssl bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// vision, text or speech; or allreduce (inside torchrun: Gloo all-reduce timings).
    #[arg(default_value = "vision")]
    pub modality: String,
    /// allreduce: float32 elements per all-reduce, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    pub sizes: Vec<usize>,
    /// allreduce: timed calls per size.
    #[arg(long, default_value = "20")]
    pub iters: usize,
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
    /// Vision and speech: make the batches on the training device as batched tensor ops
    /// (pretrain-vision's and pretrain-speech's --augment-on-device: augmentation, crops)
    /// instead of in the loader's threads.
    #[arg(long)]
    pub augment_on_device: bool,
    /// Batch size (default: vision 64; text and speech: their recipe's, 8 and 4 with --quick).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Steps per timed window (default 10, 2 with --quick).
    #[arg(long)]
    pub window_steps: Option<u64>,
    /// Timed windows after the warm-up window (default 5, 2 with --quick).
    #[arg(long)]
    pub windows: Option<u64>,
    /// After timing, record N steps on the pre-loaded batch with LibTorch's profiler into
    /// `OUT/<name>_profile/` (a trace and a table of the operators that took the time).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub profile: u64,
    /// Alternate windows with another process (what `cargo xtask bench` does): print each window
    /// as a JSON line and wait for `go` on stdin before the next; any other line ends the
    /// configuration (`--windows` is then the most windows).
    #[arg(long)]
    pub paired: bool,
    /// LibTorch intra-op threads (default: LibTorch's choice, one per core).
    #[arg(long)]
    pub threads: Option<i32>,
    /// The data loader's decode and augmentation threads (default 0: the trainer's choice).
    #[arg(long, default_value_t = 0)]
    pub loader_threads: usize,
    /// Time only this configuration (default: the loader, then the pre-loaded batch).
    #[arg(long, value_enum)]
    pub only: Option<ssl_core::bench::BenchConfig>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.modality == "allreduce" {
        return all_reduce(&a);
    }
    if a.augment_on_device {
        ssl_records::bench::check_augment_on_device(Some(&a.modality)).map_err(anyhow::Error::msg)?;
    }
    let device = ssl_core::device::parse(&a.device)?;
    ssl_core::device::set_threads(a.threads)?;
    std::fs::create_dir_all(&a.out)?;
    let options = BenchOptions {
        out: a.out.clone(),
        quick: a.quick,
        preset: a.preset.clone(),
        width: a.width,
        augment_on_device: a.augment_on_device,
        batch_size: a.batch_size,
        window_steps: a.window_steps,
        windows: a.windows,
        profile: a.profile,
        paired: a.paired,
        loader_threads: a.loader_threads,
        only: a.only,
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

/// `ssl bench allreduce`, one rank of a torchrun launch: rank 0 prints one JSON line per size.
fn all_reduce(a: &BenchArgs) -> Result<()> {
    ssl_core::tch::set_num_threads(1);
    let world = ssl_core::dist::World::from_env()?;
    if !world.is_distributed() {
        bail!("`ssl bench allreduce` needs a launcher: torchrun --nproc-per-node N --no-python ssl bench allreduce");
    }
    let timeout = std::time::Duration::from_secs(300);
    let buckets = ssl_core::dist::BucketConfig::default();
    // One GPU per process, as in training; NCCL on CUDA.
    let device = world.device(&a.device)?;
    let backend = ssl_core::dist::Backend::for_device(None, device);
    let Some(group) = ssl_core::dist::init(&world, backend, device, timeout, buckets)? else {
        bail!("no process group");
    };
    for &n in &a.sizes {
        let run = ssl_core::bench::all_reduce_times(group, n, a.iters, device)?;
        if world.is_main() {
            println!("{}", serde_json::to_string(&run)?);
        }
    }
    Ok(())
}
