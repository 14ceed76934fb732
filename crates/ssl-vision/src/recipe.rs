//! `pretrain-vision` as a [`Recipe`]: the flags, and what the run pipeline needs from vision.
//!
//! The pipeline itself (validation, `config.json`, training, evaluation, report) is ssl-core's
//! [`ssl_core::run::execute`]; this file only says how images are read, which pretext task
//! trains, and how encoders are built.
use crate::data::{self, ImageSet};
use crate::error::{Result, VisionError};
use crate::flags::VisionFlags;
use crate::interop::import::HfVit;
use crate::model::encoder::{EncoderConfig, VisionEncoder};
use crate::pipeline::{self, Method, VisionConfig, VisionFactory};
use ssl_core::embed::EmbedInputs;
use ssl_core::init::{InitSource, InitWeights};
use ssl_core::interop::{ExportFormat, RunWeights};
use ssl_core::run::{DataReport, EvalInputs, Mode, Opened, Recipe, RunPlan};
use ssl_core::trainer::{TrainSummary, Trainer};
use ssl_records::skipped::SkippedInputs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Device;

/// The readers `--data-format` may name.
const FORMATS: [&str; 4] = ["idx", "cifar-binary", "stl10-binary", "image-folder"];

/// A pretext task written outside this crate: it pretrains on vision's data and is evaluated
/// like every vision method ([`VisionRecipe::with_pretext`]). `examples/` has one (jigsaw).
pub trait Pretext {
    /// The method's name (`config.json`, the report).
    fn name(&self) -> String;
    /// Pretrain an encoder built from `config.encoder` (its variables under `encoder`, as
    /// [`crate::model::encoder::Net`] names them, so the evaluation reads them) on `images` with
    /// `trainer`.
    fn pretrain(&mut self, config: &VisionConfig, images: Arc<ImageSet>, trainer: Trainer) -> Result<TrainSummary>;
    /// A line for the report's notes.
    fn note(&self) -> Option<String> {
        None
    }
}

/// The vision recipe: flags in, a pretrained and evaluated encoder out.
pub struct VisionRecipe {
    pub flags: VisionFlags,
    cfg: Option<VisionConfig>,
    pretrain_set: Option<Arc<ImageSet>>,
    labeled: Option<(ImageSet, ImageSet)>,
    /// `--init-from` another tool's ViT: read in `open`, which adopts its shape.
    init: Option<InitWeights>,
    /// A pretext task in place of `--method`'s.
    pretext: Option<Box<dyn Pretext>>,
}

impl VisionRecipe {
    pub fn new(flags: VisionFlags) -> Self {
        Self { flags, cfg: None, pretrain_set: None, labeled: None, init: None, pretext: None }
    }

    /// This recipe with `pretext` in place of `--method`'s task; the data, the encoder, the
    /// evaluation and the report stay vision's.
    pub fn with_pretext(mut self, pretext: impl Pretext + 'static) -> Self {
        self.pretext = Some(Box::new(pretext));
        self
    }

    /// The configuration, once [`Recipe::open`] has run.
    pub fn config(&self) -> Result<&VisionConfig> {
        self.cfg.as_ref().ok_or_else(|| VisionError::Invalid("the recipe has not opened its data yet".into()))
    }

    /// The pretraining images, once [`Recipe::open`] has run (for recipes built on this one).
    pub fn pretraining_images(&self) -> Option<Arc<ImageSet>> {
        self.pretrain_set.clone()
    }

    fn data_path(&self) -> PathBuf {
        self.flags.data.clone().unwrap_or_else(|| ssl_core::run::workspace_path("datasets/fashion-mnist-slice"))
    }

    /// Modality flags on top of the method's defaults (the shared run options come after).
    fn apply_flags(&self, cfg: &mut VisionConfig) {
        let f = &self.flags;
        if let (Some(w), EncoderConfig::Resnet(r)) = (f.width, &mut cfg.encoder) {
            r.width = w;
        }
        if let (true, EncoderConfig::Vit(v)) = (f.class_token, &mut cfg.encoder) {
            v.class_token = true;
        }
        if let Some(m) = f.max_test {
            cfg.max_test = m;
        }
        if let Some(j) = f.color_jitter {
            cfg.augment.color_jitter = j.max(0.0);
        }
        cfg.augment.on_device |= f.augment_on_device;
    }
}

fn open_labeled(path: &Path, size: usize) -> Result<(ImageSet, ImageSet)> {
    let o = data::open(path, size)?;
    match (o.labeled, o.test) {
        (Some(pair), _) => Ok(pair),
        (None, Some(t)) if o.train.labels.is_some() && t.labels.is_some() => Ok((o.train, t)),
        _ => Err(VisionError::Invalid(format!(
            "{} has no labeled train/test splits: pass --labeled DIR (a folder with train/ and test/, one subfolder per class)",
            path.display()
        ))),
    }
}

fn skipped_of<'a>(sets: impl IntoIterator<Item = &'a ImageSet>) -> SkippedInputs {
    sets.into_iter().flat_map(|s| s.skipped.iter().cloned()).collect()
}

impl Recipe for VisionRecipe {
    type Error = VisionError;

    fn modality(&self) -> &'static str {
        "vision"
    }

    fn method(&self) -> String {
        match &self.pretext {
            Some(p) => p.name(),
            None => self.flags.method.name().into(),
        }
    }

    fn flags(&self) -> serde_json::Value {
        serde_json::to_value(&self.flags).unwrap_or_default()
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).unwrap_or_default()
    }

    fn validate(&self, plan: &RunPlan) -> Result<()> {
        let f = &self.flags;
        if let (Some(InitSource::Foreign(dir)), false) = (&plan.init_from, plan.is_eval_only()) {
            if f.method != Method::Mae {
                return Err(VisionError::Invalid(format!(
                    "--init-from {}: another tool's ViT continues with --method mae, not {}",
                    dir.display(),
                    f.method.name()
                )));
            }
            // The shape is checked here, before any work; the weights are read in `open`.
            crate::interop::import::vit_config(&ssl_core::init::HfDir::config_only(dir)?)?;
        }
        if let Some(fmt) = &f.data_format {
            if !FORMATS.contains(&fmt.as_str()) {
                return Err(VisionError::Invalid(format!(
                    "--data-format {fmt} is not an image format this command reads (expected one of {})",
                    FORMATS.join(", ")
                )));
            }
        }
        for (flag, p) in [("--data", &f.data), ("--labeled", &f.labeled)] {
            if let Some(p) = p {
                if !p.exists() {
                    return Err(VisionError::Invalid(format!("{flag} {}: no such file or directory", p.display())));
                }
            }
        }
        if f.class_token && f.method != Method::Mae {
            return Err(VisionError::Invalid(format!(
                "--class-token is for the ViT of --method mae; {} trains a ResNet",
                f.method.name()
            )));
        }
        if f.image_size == Some(0) || f.width.is_some_and(|w| w < 1) || f.max_images == Some(0) || f.max_test == Some(0)
        {
            return Err(VisionError::Invalid(
                "--image-size, --width, --max-images and --max-test must be positive".into(),
            ));
        }
        Ok(())
    }

    fn open(&mut self, plan: &RunPlan) -> Result<Opened<'_>> {
        let data_path = self.data_path();
        if let (Mode::EvalOnly { run, .. }, Some(saved)) = (&plan.mode, plan.evaluated::<VisionConfig>("")) {
            let mut cfg = saved?;
            self.apply_flags(&mut cfg);
            let recorded = plan.evaluated_flags().and_then(|f| f["data"].as_str()).map(PathBuf::from);
            let labeled_path = self.flags.labeled.clone().or(self.flags.data.clone()).or(recorded).unwrap_or(data_path);
            let (train, test) = open_labeled(&labeled_path, cfg.image_size)?;
            let report = DataReport {
                summary: serde_json::json!({
                    "evaluated_run": run.display().to_string(),
                    "labeled": labeled_path.display().to_string(),
                    "eval_train_images": train.len,
                    "eval_test_images": test.len.min(cfg.max_test),
                }),
                skipped: skipped_of([&train, &test]),
            };
            self.labeled = Some((train, test));
            let cfg = self.cfg.insert(cfg);
            return Ok(Opened { data: report, train: &mut cfg.train, pretrain_items: 0, protocol: &mut cfg.protocol });
        }
        // Open the labeled data first when it is separate: a bad --labeled fails before the
        // (larger) pretraining set is decoded.
        let separate = match &self.flags.labeled {
            Some(dir) => Some(open_labeled(dir, self.flags.image_size.unwrap_or(0))?),
            None => None,
        };
        let opened = data::open(&data_path, self.flags.image_size.unwrap_or(0))?;
        let size = opened.train.height;
        let mut pretrain_set = opened.train.clone();
        if let Some(m) = self.flags.max_images {
            pretrain_set.truncate(m);
        }
        let (eval_train, eval_test) = match separate {
            Some((tr, te)) if tr.height == size => (tr, te),
            Some(_) => open_labeled(self.flags.labeled.as_deref().unwrap_or(&data_path), size)?,
            None => match (opened.train.labels.is_some(), opened.test, opened.labeled) {
                (_, _, Some(pair)) => pair,
                (true, Some(test), None) if test.labels.is_some() => (opened.train, test),
                _ => {
                    return Err(VisionError::Invalid(format!(
                        "{} has no labeled train/test splits: pass --labeled DIR for the evaluation",
                        data_path.display()
                    )))
                }
            },
        };
        let mut cfg = VisionConfig::defaults(self.flags.method, pretrain_set.channels, size);
        self.apply_flags(&mut cfg);
        if let Some(InitSource::Foreign(dir)) = &plan.init_from {
            let hf = HfVit::read(dir)?;
            let v = &hf.vit;
            if (v.in_channels as usize, v.image_size as usize) != (pretrain_set.channels, size) {
                return Err(VisionError::Invalid(format!(
                    "--init-from {}: the ViT takes {}-channel {}x{} images and the data has {}-channel {size}x{size} \
                     ones (resize an image folder with --image-size {})",
                    dir.display(),
                    v.in_channels,
                    v.image_size,
                    v.image_size,
                    pretrain_set.channels,
                    v.image_size
                )));
            }
            cfg.encoder = EncoderConfig::Vit(hf.vit.clone());
            hf.apply_to(&mut cfg.mae);
            self.init = Some(hf.init_weights());
        }
        let report = DataReport {
            summary: serde_json::json!({
                "pretrain": { "path": data_path.display().to_string(), "format": opened.format,
                              "images": pretrain_set.len, "channels": pretrain_set.channels, "size": size },
                "eval_train_images": eval_train.len,
                "eval_test_images": eval_test.len.min(cfg.max_test),
            }),
            skipped: skipped_of([&pretrain_set, &eval_train, &eval_test]),
        };
        let pretrain_items = pretrain_set.len;
        self.pretrain_set = Some(Arc::new(pretrain_set));
        self.labeled = Some((eval_train, eval_test));
        let cfg = self.cfg.insert(cfg);
        Ok(Opened { data: report, train: &mut cfg.train, pretrain_items, protocol: &mut cfg.protocol })
    }

    fn describe(&self) -> String {
        match (&self.cfg, &self.pretrain_set) {
            (Some(c), Some(s)) => format!(
                "pretraining {} on {} images ({}x{}x{}) for {} steps of {}",
                self.method(),
                s.len,
                s.channels,
                c.image_size,
                c.image_size,
                c.train.steps,
                c.train.batch_size
            ),
            _ => "pretraining".into(),
        }
    }

    fn pretrain(&mut self, trainer: Trainer) -> Result<TrainSummary> {
        let set = self.pretrain_set.clone().ok_or_else(|| VisionError::Invalid("no pretraining images".into()))?;
        let cfg =
            self.cfg.as_ref().ok_or_else(|| VisionError::Invalid("the recipe has not opened its data yet".into()))?;
        match &mut self.pretext {
            Some(p) => p.pretrain(cfg, set, trainer),
            None => pipeline::pretrain(cfg, set, trainer),
        }
    }

    fn evaluation(&mut self, weights: &Path, _device: Device) -> Result<EvalInputs<'_>> {
        let cfg = self.config()?.clone();
        let (train, test) = self.labeled.as_ref().ok_or_else(|| VisionError::Invalid("no labeled data".into()))?;
        Ok(EvalInputs {
            factory: Box::new(VisionFactory {
                checkpoint: weights.to_path_buf(),
                encoder: cfg.encoder.clone(),
                finetune_augment: cfg.finetune_augment,
            }),
            train: pipeline::labeled(train, usize::MAX)?,
            test: pipeline::labeled(test, cfg.max_test)?,
            corruptions: crate::corruptions::standard(),
        })
    }

    /// A ViT as timm's `VisionTransformer`, a ResNet as safetensors with `modeling_ssl_resnet.py`.
    fn export(run_dir: &Path, to: &Path, format: Option<ExportFormat>) -> Result<()> {
        let run = RunWeights::read(run_dir, "vision")?;
        let cfg: VisionConfig = run.resolved()?;
        let mae = (cfg.method == Method::Mae).then_some(&cfg.mae);
        crate::interop::export::export(to, &cfg.encoder, mae, &run.weights, format)
    }

    /// One of our vision runs (the flags must give the same model), or an HF `ViTModel`,
    /// `ViTMAEModel` or `ViTMAEForPreTraining` read in `open` ([`crate::interop::import`]).
    fn init_weights(&mut self, source: &InitSource) -> Result<InitWeights> {
        match source {
            InitSource::Run { path, .. } => Ok(InitWeights::from_run(path, "vision")?),
            InitSource::Foreign(dir) => self
                .init
                .take()
                .ok_or_else(|| VisionError::Invalid(format!("--init-from {} was not read", dir.display()))),
        }
    }

    fn notes(&self) -> Vec<String> {
        let Some(cfg) = &self.cfg else { return Vec::new() };
        let why = match cfg.encoder {
            EncoderConfig::Resnet(_) => ": RotNet found middle blocks probe best",
            EncoderConfig::Vit(_) => "",
        };
        let mut notes = vec![format!("Downstream features: {}{why}.", cfg.encoder.features_described())];
        notes.extend(self.pretext.as_ref().and_then(|p| p.note()));
        notes
    }

    /// Image files (PNG, JPEG, BMP) below `data`, decoded and resized as image folders are for
    /// the evaluation.
    fn embedder(run: &Path, data: &Path, device: Device) -> Result<EmbedInputs> {
        let cfg: VisionConfig = ssl_core::interop::run_config(run, "vision")?;
        let files = ssl_core::files::input_files(data, data::folder::EXTENSIONS)?;
        let (kept, set, skipped) = data::folder::read_files(&files, cfg.image_size, cfg.encoder.in_channels() as usize);
        if kept.is_empty() {
            return Err(VisionError::NoImages { path: data.display().to_string(), skipped: skipped.len() });
        }
        let encoder = VisionEncoder::load(run, &cfg.encoder, device)?;
        Ok(EmbedInputs {
            names: kept.iter().map(|&i| files[i].display().to_string()).collect(),
            inputs: set.to_tensor(),
            skipped: skipped.into_iter().collect(),
            encoder: Box::new(encoder),
            describes: cfg.encoder.features_described(),
        })
    }
}
