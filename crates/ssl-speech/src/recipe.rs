//! `pretrain-speech` as a [`Recipe`]: the flags, and what the run pipeline needs from speech.
//!
//! The pipeline itself (validation, `config.json`, training, evaluation, report) is ssl-core's
//! [`ssl_core::run::execute`]; this file says how audio is read, which objective trains, and how
//! encoders are built. The pretrained encoder is always read back from the run's newest
//! checkpoint, so a fresh run and `--eval-only` evaluate the same thing.
use crate::corruptions::speech_corruptions;
use crate::data::dataset::{load_labeled, load_test_folder, AudioCorpus, LabeledSplit};
use crate::error::{Result, SpeechError};
use crate::flags::SpeechFlags;
use crate::interop::import::HfWav2Vec2;
use crate::model::encoder::{Pooling, SpeechEncoderFactory};
use crate::pipeline::{pretrain, SpeechConfig};
use ssl_core::eval::{EvalKind, ProtocolConfig};
use ssl_core::init::{InitSource, InitWeights};
use ssl_core::interop::{ExportFormat, RunWeights};
use ssl_core::run::{DataReport, EvalInputs, Mode, Opened, Recipe, RunPlan};
use ssl_core::trainer::{TrainSummary, Trainer};
use ssl_records::skipped::SkippedInputs;
use std::path::{Path, PathBuf};

/// `datasets/speech/<rel>`, the committed default data.
fn committed(rel: &str) -> PathBuf {
    ssl_core::run::workspace_path(Path::new("datasets/speech").join(rel))
}

fn invalid(msg: impl Into<String>) -> SpeechError {
    SpeechError::InvalidArgument(msg.into())
}

/// The speech recipe: flags in, a pretrained and evaluated encoder out.
pub struct SpeechRecipe {
    pub flags: SpeechFlags,
    cfg: SpeechConfig,
    corpus: Option<AudioCorpus>,
    split: Option<LabeledSplit>,
    /// `--init-from` another tool's checkpoint: read in `open`, which adopts its model.
    init: Option<InitWeights>,
}

impl SpeechRecipe {
    /// Check and apply the speech flags to the preset's defaults.
    pub fn new(flags: SpeechFlags) -> Result<Self> {
        let mut cfg = SpeechConfig::preset(&flags.preset)?;
        cfg.objective.method = flags.objective.parse().map_err(SpeechError::InvalidArgument)?;
        cfg.model.pos_norm = flags.pos_norm;
        if let Some(p) = flags.mask_prob {
            cfg.masking.prob = p;
        }
        if let Some(m) = flags.mask_length {
            cfg.masking.length = m;
        }
        if let Some(c) = flags.crop_seconds {
            cfg.crop_seconds = c;
        }
        if let Some(e) = flags.eval_seconds {
            cfg.eval_seconds = e;
        }
        cfg.augment_on_device |= flags.augment_on_device;
        if let Some(p) = &flags.pooling {
            cfg.pooling = match p.as_str() {
                "all-layers" => Pooling::AllLayers,
                "all-layers-mean-std" => Pooling::AllLayersMeanStd,
                "last" => Pooling::Last,
                o => {
                    return Err(invalid(format!(
                        "unknown --pooling `{o}` (expected all-layers, all-layers-mean-std or last)"
                    )))
                }
            };
        }
        cfg.validate()?;
        Ok(Self { flags, cfg, corpus: None, split: None, init: None })
    }

    pub fn config(&self) -> &SpeechConfig {
        &self.cfg
    }

    fn labeled_path(&self) -> PathBuf {
        self.flags.labeled.clone().unwrap_or_else(|| committed("digits"))
    }

    fn extra_test_path(&self) -> Option<PathBuf> {
        self.flags
            .extra_test
            .clone()
            .or_else(|| self.flags.labeled.is_none().then(|| committed("real-digits")).filter(|p| p.exists()))
    }

    fn data_paths(&self) -> Vec<PathBuf> {
        self.flags.data.clone().unwrap_or_else(|| vec![committed("unlabeled"), committed("digits/train")])
    }

    fn flac(&self) -> Result<bool> {
        match self.flags.data_format.as_str() {
            "wav-folder" | "wav" => Ok(false),
            "flac-folder" | "flac" => Ok(true),
            o => Err(invalid(format!("unknown --data-format `{o}` (expected wav-folder or flac-folder)"))),
        }
    }

    fn eval_samples(&self) -> usize {
        self.cfg.eval_samples()
    }

    /// Read an HF wav2vec2 `--init-from` source and adopt its encoder (and, for the contrastive
    /// objective, its head's sizes).
    fn read_hf_init(&mut self, dir: &Path) -> Result<()> {
        let hf = HfWav2Vec2::read(dir)?;
        self.cfg.model = hf.model.clone();
        hf.apply_to(&mut self.cfg.objective);
        self.cfg.preset = format!("{} of --init-from", hf.kind());
        self.cfg.validate()?;
        self.init = Some(hf.init_weights(self.cfg.objective.method));
        Ok(())
    }
}

impl Recipe for SpeechRecipe {
    type Error = SpeechError;

    fn modality(&self) -> &'static str {
        "speech"
    }

    fn method(&self) -> String {
        self.cfg.objective.method.name().into()
    }

    fn flags(&self) -> serde_json::Value {
        serde_json::to_value(&self.flags).unwrap_or_default()
    }

    fn resolved(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).unwrap_or_default()
    }

    fn validate(&self, plan: &RunPlan) -> Result<()> {
        self.flac()?;
        if let (Some(InitSource::Foreign(dir)), false) = (&plan.init_from, plan.is_eval_only()) {
            if self.flags.pos_norm {
                return Err(invalid(
                    "--pos-norm and an HF --init-from: HF's wav2vec2 has no LayerNorm after the positional conv",
                ));
            }
            // The shape is checked here, before any work; the weights are read in `open`.
            crate::interop::import::model_config(&ssl_core::init::HfDir::config_only(dir)?)?;
        }
        let labeled = self.labeled_path();
        for sub in ["train", "test"] {
            if !labeled.join(sub).is_dir() {
                return Err(invalid(format!(
                    "--labeled {}: needs train/<class>/ and test/<class>/ folders of WAV files (no {sub}/ found)",
                    labeled.display()
                )));
            }
        }
        if let Some(x) = &self.flags.extra_test {
            if !x.is_dir() {
                return Err(invalid(format!("--extra-test {}: not a folder", x.display())));
            }
        }
        if !plan.is_eval_only() {
            for d in self.data_paths() {
                if !d.is_dir() {
                    return Err(invalid(format!("--data {}: not a folder", d.display())));
                }
            }
            if self.flags.max_files == 0 {
                return Err(invalid("--max-files must be at least 1"));
            }
        }
        Ok(())
    }

    fn open(&mut self, plan: &RunPlan) -> Result<Opened<'_>> {
        let mut skipped = SkippedInputs::default();
        let mut summary = serde_json::json!({
            "labeled": self.labeled_path().display().to_string(),
            "extra_test": self.extra_test_path().map(|p| p.display().to_string()),
        });
        match &plan.mode {
            Mode::EvalOnly { run, .. } => {
                // The model and objective are the evaluated run's; the evaluation follows the flags.
                let saved: SpeechConfig = plan.evaluated("").transpose()?.ok_or_else(|| invalid("no evaluated run"))?;
                self.cfg.model = saved.model;
                self.cfg.preset = saved.preset;
                self.cfg.objective = saved.objective;
                summary["evaluated_run"] = run.display().to_string().into();
            }
            Mode::Pretrain { .. } => {
                if let Some(InitSource::Foreign(dir)) = &plan.init_from {
                    self.read_hf_init(dir)?;
                }
                let flac = self.flac()?;
                let (mut clips, mut bad) = (Vec::new(), Vec::new());
                let data = self.data_paths();
                for d in &data {
                    let c = AudioCorpus::load_dir_limited(d, &self.cfg.model, self.flags.max_files, flac)?;
                    clips.extend(c.clips);
                    bad.extend(c.skipped);
                }
                let corpus = AudioCorpus { clips, skipped: bad };
                summary["pretraining"] = serde_json::to_value(&data).unwrap_or_default();
                summary["pretraining_clips"] = corpus.clips.len().into();
                summary["pretraining_seconds"] = corpus.seconds().into();
                skipped.extend(corpus.skipped.iter().cloned().collect());
                self.corpus = Some(corpus);
            }
        }
        self.cfg.objective.quantizer_seed = plan.seed;
        let labeled = self.labeled_path();
        let split = load_labeled(&labeled, self.eval_samples(), &self.cfg.model)?;
        summary["classes"] = serde_json::to_value(&split.classes).unwrap_or_default();
        summary["labeled_train"] = split.train.len().into();
        summary["labeled_test"] = split.test.len().into();
        skipped.extend(split.skipped.iter().cloned().collect());
        self.split = Some(split);
        let pretrain_items = self.corpus.as_ref().map_or(0, |c| c.clips.len());
        Ok(Opened {
            data: DataReport { summary, skipped },
            train: &mut self.cfg.train,
            pretrain_items,
            protocol: &mut self.cfg.protocol,
        })
    }

    fn describe(&self) -> String {
        let (n, secs) = self.corpus.as_ref().map(|c| (c.clips.len(), c.seconds())).unwrap_or_default();
        format!(
            "pretraining {} ({} preset) on {n} clips, {secs:.0} s of audio, for {} steps of {}",
            self.method(),
            self.cfg.preset,
            self.cfg.train.steps,
            self.cfg.train.batch_size
        )
    }

    fn pretrain(&mut self, trainer: Trainer) -> Result<TrainSummary> {
        let corpus = self.corpus.take().ok_or_else(|| invalid("no pretraining audio was opened"))?;
        Ok(pretrain(&self.cfg, corpus, trainer)?.summary)
    }

    fn evaluation(&mut self, weights: &Path, _device: tch::Device) -> Result<EvalInputs<'_>> {
        let split = self.split.as_ref().ok_or_else(|| invalid("no labeled data was opened"))?;
        let factory = SpeechEncoderFactory::from_checkpoint(weights, self.cfg.model.clone(), self.cfg.pooling)?;
        Ok(EvalInputs {
            factory: Box::new(factory),
            train: split.train.shallow_clone(),
            test: split.test.shallow_clone(),
            corruptions: speech_corruptions(self.cfg.protocol.seed),
        })
    }

    /// HuggingFace `Wav2Vec2Model` (`hf`, the only format).
    fn export(run_dir: &Path, to: &Path, format: Option<ExportFormat>) -> Result<()> {
        if let Some(f) = format.filter(|&f| f != ExportFormat::Hf) {
            return Err(invalid(format!("speech encoders export as hf (Wav2Vec2Model), not {f}")));
        }
        let run = RunWeights::read(run_dir, "speech")?;
        let cfg: SpeechConfig = run.resolved()?;
        crate::interop::export::export_hf(to, &cfg, &run.weights)
    }

    /// `.wav` and `.flac` files below `data`, read as the labeled clips are (16 kHz, normalised,
    /// cut or padded to the run's evaluation length).
    fn embedder(run: &Path, data: &Path, device: tch::Device) -> Result<ssl_core::embed::EmbedInputs> {
        let cfg: SpeechConfig = ssl_core::interop::run_config(run, "speech")?;
        let files = ssl_core::files::input_files(data, &["wav", "flac"])?;
        let samples = cfg.eval_samples();
        let (kept, inputs, skipped) =
            crate::data::dataset::load_clips(&files, samples, crate::data::dataset::receptive_field(&cfg.model));
        if kept.is_empty() {
            return Err(SpeechError::NoAudio {
                path: data.display().to_string(),
                detail: format!("none of {} audio files could be read", files.len()),
            });
        }
        let factory = SpeechEncoderFactory::from_checkpoint(run, cfg.model.clone(), cfg.pooling)?;
        let mut encoder = crate::model::encoder::SpeechEncoder::new(&cfg.model, cfg.pooling, device);
        encoder.load(&factory.weights)?;
        Ok(ssl_core::embed::EmbedInputs {
            names: kept.iter().map(|&i| files[i].display().to_string()).collect(),
            inputs,
            skipped: skipped.into_iter().collect(),
            encoder: Box::new(encoder),
            describes: format!(
                "{:?} pooling of a wav2vec2-shaped encoder over the first {} s of each clip (centre-cropped or zero-padded)",
                cfg.pooling, cfg.eval_seconds
            ),
        })
    }

    /// One of our speech runs (the flags must give the same model), or an HF `Wav2Vec2Model` /
    /// `Wav2Vec2ForPreTraining` read in `open` ([`crate::interop::import`]).
    fn init_weights(&mut self, source: &InitSource) -> Result<InitWeights> {
        match source {
            InitSource::Run { path, .. } => Ok(InitWeights::from_run(path, "speech")?),
            InitSource::Foreign(dir) => {
                self.init.take().ok_or_else(|| invalid(format!("--init-from {} was not read", dir.display())))
            }
        }
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "Encoder: wav2vec2-shaped ({} preset), features {:?}; raw-input baseline: log-mel mean and std logistic regression.",
            self.cfg.preset, self.cfg.pooling
        )]
    }

    /// The second test set (`--extra-test`): linear probes trained on the labeled train split.
    fn extra_evaluations(
        &mut self,
        weights: &Path,
        protocol: &ProtocolConfig,
        device: tch::Device,
    ) -> Result<Vec<String>> {
        let (Some(extra), Some(split)) = (self.extra_test_path(), self.split.as_ref()) else { return Ok(Vec::new()) };
        let test = match load_test_folder(&extra, self.eval_samples(), &self.cfg.model, &split.classes) {
            Ok(t) => t,
            Err(e) => return Ok(vec![format!("extra test set {} not evaluated: {e}", extra.display())]),
        };
        let mut protocol = protocol.clone();
        protocol.evals = vec![EvalKind::Linear];
        protocol.raw_baseline = true;
        let factory = SpeechEncoderFactory::from_checkpoint(weights, self.cfg.model.clone(), self.cfg.pooling)?;
        let ev = ssl_core::eval::evaluate(&factory, &split.train, &test, &[], &protocol, device)?;
        Ok(ev
            .evaluations
            .iter()
            .map(|row| {
                format!(
                    "extra test set {} ({} clips), linear probe, {} labels/class: pretrained {:.3}, scratch {:.3}, log-mel baseline {}",
                    extra.display(),
                    test.len(),
                    row.labels_per_class,
                    row.pretrained.mean,
                    row.scratch.mean,
                    row.raw_baseline.as_ref().map(|s| format!("{:.3}", s.mean)).unwrap_or_else(|| "-".into())
                )
            })
            .collect())
    }
}
