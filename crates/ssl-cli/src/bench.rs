//! `ssl bench vision`: our side of `cargo xtask bench`. Measures the rotation ResNet's training
//! throughput with our data loader and with pre-loaded tensors, and writes the initial weights and a
//! fixed batch so the PyTorch reference (`bench/vision_rotation.py`) can prove it is equivalent.
use anyhow::{Context, Result};
use ssl_core::bench::{matmul_peak, peak_rss_bytes, Spread};
use ssl_core::loader::DataSource;
use ssl_core::trainer::{read_metrics, Objective, Trainer};
use ssl_vision::encoder::EncoderConfig;
use ssl_vision::recipe::{Method, VisionConfig};
use ssl_vision::rotation::RotationTask;
use ssl_vision::source::ImageSource;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Flags of `ssl bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which modality (only `vision` is implemented).
    #[arg(default_value = "vision")]
    pub modality: String,
    /// Where the JSON results and the reference artefacts go.
    #[arg(long)]
    pub out: PathBuf,
    /// A short run for smoke tests.
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// ResNet width (default: the shipped preset).
    #[arg(long)]
    pub width: Option<i64>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
}

/// The same collated batch every step: the loader costs nothing, isolating its overhead.
struct Preloaded(std::sync::Mutex<Tensor>);

impl DataSource for Preloaded {
    type Item = ();
    type Batch = Tensor;
    fn len(&self) -> usize {
        1 << 20
    }
    fn get(&self, _: usize, _: &mut rand_chacha::ChaCha8Rng) -> Result<(), String> {
        Ok(())
    }
    fn collate(&self, _: Vec<()>, _: &mut rand_chacha::ChaCha8Rng) -> Tensor {
        self.0.lock().map(|t| t.shallow_clone()).unwrap_or_else(|e| e.into_inner().shallow_clone())
    }
}

fn windows<O, S>(
    cfg: &VisionConfig,
    dir: &std::path::Path,
    task: &mut O,
    source: Arc<S>,
    device: tch::Device,
) -> Result<Spread>
where
    O: Objective<Batch = Tensor>,
    S: DataSource<Batch = Tensor>,
{
    let trainer = Trainer::new(cfg.train.clone(), dir, device);
    trainer.fit(task, source, false)?;
    // The first logging window includes warm-up (allocator, kernels, first batches): dropped.
    let sps: Vec<f64> = read_metrics(dir).iter().skip(1).map(|m| m.samples_per_s).collect();
    Ok(Spread::of(&sps))
}

pub fn run(a: BenchArgs) -> Result<()> {
    anyhow::ensure!(a.modality == "vision", "`ssl bench {}`: only vision is implemented", a.modality);
    let device = ssl_core::device::parse(&a.device)?;
    std::fs::create_dir_all(&a.out)?;
    let data = ssl_vision::data::open(&crate::vision::default_data(), 28).context("opening the embedded images")?;
    let mut cfg = VisionConfig::defaults(Method::Rotation, 1, 28);
    if let (Some(w), EncoderConfig::Resnet(r)) = (a.width, &mut cfg.encoder) {
        r.width = w;
    }
    let (window, n_windows) = if a.quick { (3u64, 3u64) } else { (20, 6) };
    cfg.train.batch_size = a.batch_size;
    cfg.train.steps = window * (n_windows + 1);
    cfg.train.log_every = window;
    cfg.train.checkpoint_every = 0;
    cfg.train.progress = false;
    let EncoderConfig::Resnet(resnet) = cfg.encoder.clone() else { unreachable!("rotation defaults to a ResNet") };

    // Reference artefacts: initial weights, a fixed batch, our first-step loss on it.
    let mut task = RotationTask::new(&cfg.encoder, device, 0);
    let mut named: Vec<(String, Tensor)> = task.vs.variables().into_iter().collect();
    named.sort_by(|x, y| x.0.cmp(&y.0));
    let params: i64 = named.iter().filter(|(_, t)| t.requires_grad()).map(|(_, t)| t.numel() as i64).sum();
    Tensor::write_safetensors(&named, a.out.join("vision_init.safetensors"))?;
    let batch = data.train.to_tensor().narrow(0, 0, a.batch_size as i64);
    Tensor::write_safetensors(&[("images", &batch)], a.out.join("vision_batch.safetensors"))?;
    let first_loss = task.forward(&batch, device)?.loss.double_value(&[]);

    let peak = matmul_peak(device, if a.quick { 512 } else { 2048 }, 5);
    let source = Arc::new(ImageSource { images: Arc::new(data.train.clone()), augment: cfg.augment });
    let tmp = tempfile::tempdir()?;
    let with_loader =
        windows(&cfg, &tmp.path().join("loader"), &mut RotationTask::new(&cfg.encoder, device, 0), source, device)?;
    let preloaded = windows(
        &cfg,
        &tmp.path().join("preloaded"),
        &mut RotationTask::new(&cfg.encoder, device, 0),
        Arc::new(Preloaded(std::sync::Mutex::new(batch.to_kind(Kind::Float)))),
        device,
    )?;
    let flops_per_sample = 3.0 * ssl_vision::flops::resnet_forward_flops(&resnet, 28, 4);
    let out = serde_json::json!({
        "modality": "vision",
        "model": format!("rotation ResNet width {} blocks {:?}, 28x28 grey", resnet.width, resnet.blocks_per_stage),
        "width": resnet.width,
        "blocks": resnet.blocks_per_stage,
        "windows": n_windows,
        "batch_size": a.batch_size,
        "samples_per_step": 4 * a.batch_size,
        "sample_unit": "rotated images",
        "parameters": params,
        "first_step_loss": first_loss,
        "flops_per_sample": flops_per_sample,
        "peak_flops": peak,
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
        "ours_loader_samples_per_s": with_loader,
        "ours_preloaded_samples_per_s": preloaded,
        "peak_rss_bytes": peak_rss_bytes(),
        "window_steps": window,
    });
    std::fs::write(a.out.join("vision_ours.json"), serde_json::to_vec_pretty(&out)?)?;
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
