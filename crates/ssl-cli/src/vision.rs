//! `ssl pretrain-vision`: pretrain an image encoder, then measure it against scratch.
use crate::common::{self, CommonArgs, RunInfo};
use anyhow::{bail, Context, Result};
use ssl_vision::data::{self, ImageSet};
use ssl_vision::encoder::EncoderConfig;
use ssl_vision::recipe::{self, Method, VisionConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags of `pretrain-vision`.
#[derive(clap::Args, Debug, Clone)]
pub struct VisionArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// rotation, inpainting or mae.
    #[arg(long, default_value = "rotation")]
    pub method: Method,
    /// Unlabeled pretraining images: an IDX/CIFAR folder or an image folder (default: the embedded
    /// Fashion-MNIST slice).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The reader a dataset manifest names (set by `cargo xtask pretrain-vision --dataset`).
    #[arg(long)]
    pub data_format: Option<String>,
    /// Labeled evaluation data: a folder with train/ and test/, one subfolder per class.
    /// Default: the pretraining dataset's own labeled splits.
    #[arg(long)]
    pub labeled: Option<PathBuf>,
    /// Pretraining epochs (converted to steps; --steps wins).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Images are resized to this size.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// ResNet width (channels of the first stage).
    #[arg(long)]
    pub width: Option<i64>,
    /// Use at most this many pretraining images.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// At most this many test images in the evaluation.
    #[arg(long)]
    pub max_test: Option<usize>,
    /// Fine-tuning steps per evaluation.
    #[arg(long)]
    pub finetune_steps: Option<usize>,
    /// Brightness/contrast jitter of the pretraining images (maximum relative change; 0 = off).
    #[arg(long)]
    pub color_jitter: Option<f32>,
}

/// The embedded default: the Fashion-MNIST slice under `datasets/`.
pub fn default_data() -> PathBuf {
    common::workspace_path("datasets/fashion-mnist-slice")
}

pub fn run(a: VisionArgs) -> Result<()> {
    let device = a.common.device()?;
    if a.common.eval_only {
        return eval_only(&a, device);
    }
    let data_path = a.data.clone().unwrap_or_else(default_data);
    if let Some(fmt) = &a.data_format {
        if !["idx", "cifar-binary", "stl10-binary", "image-folder"].contains(&fmt.as_str()) {
            bail!("--data-format {fmt} is not an image format this command reads");
        }
    }
    let opened = data::open(&data_path, a.image_size.unwrap_or(0))
        .with_context(|| format!("opening {}", data_path.display()))?;
    let size = opened.train.height;
    let mut pretrain_set = opened.train.clone();
    if let Some(m) = a.max_images {
        pretrain_set.truncate(m);
    }
    let (eval_train, eval_test): (ImageSet, ImageSet) = match &a.labeled {
        Some(dir) => {
            let l = data::open(dir, size).with_context(|| format!("opening {}", dir.display()))?;
            let test = l.test.with_context(|| format!("{} needs train/ and test/ folders", dir.display()))?;
            (l.train, test)
        }
        None => match (opened.train.labels.is_some(), opened.test, opened.labeled) {
            (_, _, Some((train, test))) => (train, test),
            (true, Some(test), None) if test.labels.is_some() => (opened.train, test),
            _ => {
                bail!("{} has no labeled train/test splits: pass --labeled DIR for the evaluation", data_path.display())
            }
        },
    };

    let mut cfg = VisionConfig::defaults(a.method, pretrain_set.channels, size);
    apply_overrides(&mut cfg, &a, pretrain_set.len);
    let run_dir = a.common.run_dir("vision", a.method.name())?;
    let skipped = pretrain_set.skipped.len() + eval_train.skipped.len() + eval_test.skipped.len();
    let data_info = serde_json::json!({
        "pretrain": { "path": data_path.display().to_string(), "format": opened.format, "images": pretrain_set.len,
                      "channels": pretrain_set.channels, "size": size },
        "eval_train_images": eval_train.len,
        "eval_test_images": eval_test.len.min(cfg.max_test),
        "skipped_inputs": skipped,
        "skipped_files": pretrain_set.skipped.iter().chain(&eval_train.skipped).chain(&eval_test.skipped).collect::<Vec<_>>(),
    });
    common::write_config(&run_dir, &serde_json::json!({ "vision": cfg, "data": data_info }))?;
    println!(
        "pretraining {} on {} images ({}x{}x{}) for {} steps of {}; run directory {}",
        a.method.name(),
        pretrain_set.len,
        pretrain_set.channels,
        size,
        size,
        cfg.train.steps,
        cfg.train.batch_size,
        run_dir.display()
    );
    let summary = recipe::pretrain(&cfg, Arc::new(pretrain_set), &run_dir, device, a.common.resume)?;
    println!(
        "evaluating against scratch ({} labels/class, {} seeds)...",
        list(&cfg.protocol.labels_per_class),
        cfg.protocol.seeds
    );
    let evaluation = recipe::evaluate(&cfg, &run_dir, &eval_train, &eval_test, device)?;
    common::finish(
        &run_dir,
        RunInfo {
            modality: "vision",
            method: a.method.name(),
            device,
            summary: Some(&summary),
            data: data_info,
            notes: notes(&cfg),
        },
        evaluation,
    )?;
    Ok(())
}

fn list(v: &[usize]) -> String {
    v.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")
}

fn notes(cfg: &VisionConfig) -> Vec<String> {
    let mut n = vec![];
    if let EncoderConfig::Resnet(r) = &cfg.encoder {
        n.push(format!(
            "Encoder: CIFAR-style ResNet, width {}, blocks {:?}; downstream features are stage {} of {} (average-pooled to {}x{}): RotNet found middle blocks probe best.",
            r.width,
            r.blocks_per_stage,
            r.feature_stage,
            r.blocks_per_stage.len(),
            r.feature_pool,
            r.feature_pool
        ));
    } else {
        n.push("Encoder: ViT; downstream features are the mean of the encoded patch tokens.".into());
    }
    n.push(format!(
        "Fine-tuning: {} steps, batch {}, lr {}, same budget for pretrained and scratch; linear probe: {} full-batch steps.",
        cfg.protocol.finetune.steps, cfg.protocol.finetune.batch_size, cfg.protocol.finetune.lr, cfg.protocol.probe.steps
    ));
    n
}

fn apply_overrides(cfg: &mut VisionConfig, a: &VisionArgs, n_images: usize) {
    let c = &a.common;
    if let Some(b) = c.batch_size {
        cfg.train.batch_size = b;
    }
    if let Some(e) = a.epochs {
        cfg.train.steps = ((e * n_images as f64) / cfg.train.batch_size as f64).ceil().max(1.0) as u64;
    }
    if let Some(s) = c.steps {
        cfg.train.steps = s;
    }
    cfg.train.warmup_steps = cfg.train.warmup_steps.min(cfg.train.steps / 5);
    if let Some(n) = c.checkpoint_every {
        cfg.train.checkpoint_every = n;
    }
    if let Some(lr) = c.lr {
        cfg.train.lr = lr;
    }
    if let (Some(w), EncoderConfig::Resnet(r)) = (a.width, &mut cfg.encoder) {
        r.width = w;
    }
    cfg.train.seed = c.seed;
    cfg.protocol = c.protocol(cfg.protocol.clone());
    if let Some(m) = a.max_test {
        cfg.max_test = m;
    }
    if let Some(s) = a.finetune_steps {
        cfg.protocol.finetune.steps = s;
    }
    if let Some(j) = a.color_jitter {
        cfg.augment.color_jitter = j.max(0.0);
    }
}

fn eval_only(a: &VisionArgs, device: tch::Device) -> Result<()> {
    let ckpt = a.common.checkpoint.clone().context("--eval-only needs --checkpoint RUN_DIR")?;
    let run_root = if ckpt.join("config.json").is_file() { ckpt.clone() } else { ckpt.join("../..") };
    let text = std::fs::read_to_string(run_root.join("config.json"))
        .with_context(|| format!("{} has no config.json: is it a run directory?", run_root.display()))?;
    let saved: serde_json::Value = serde_json::from_str(&text)?;
    let mut cfg: VisionConfig =
        serde_json::from_value(saved["vision"].clone()).context("config.json has no vision section")?;
    cfg.protocol = a.common.protocol(cfg.protocol.clone());
    if let Some(m) = a.max_test {
        cfg.max_test = m;
    }
    let data_path = a
        .data
        .clone()
        .unwrap_or_else(|| saved["data"]["pretrain"]["path"].as_str().map(PathBuf::from).unwrap_or_else(default_data));
    let (train, test) = open_labeled(a.labeled.as_deref().unwrap_or(&data_path), cfg.image_size)?;
    let out = a.common.out.clone().unwrap_or_else(|| run_root.join("eval"));
    std::fs::create_dir_all(&out)?;
    let evaluation = recipe::evaluate(&cfg, &ckpt, &train, &test, device)?;
    common::finish(
        &out,
        RunInfo {
            modality: "vision",
            method: cfg.method.name(),
            device,
            summary: None,
            data: serde_json::json!({ "checkpoint": ckpt.display().to_string() }),
            notes: notes(&cfg),
        },
        evaluation,
    )?;
    Ok(())
}

fn open_labeled(path: &Path, size: usize) -> Result<(ImageSet, ImageSet)> {
    let o = data::open(path, size)?;
    match o.test {
        Some(t) if o.train.labels.is_some() && t.labels.is_some() => Ok((o.train, t)),
        _ => bail!("{} has no labeled train/test splits", path.display()),
    }
}
