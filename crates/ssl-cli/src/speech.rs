//! `ssl pretrain-speech`: masked raw-audio-frame pretraining of a wav2vec 2.0-shaped encoder
//! (BEST-RQ, contrastive or reconstruction), then keyword classification with few labels,
//! pretrained against scratch and a log-mel baseline, under noise.
use crate::common::{self, CommonArgs, RunInfo};
use anyhow::{bail, Context, Result};
use ssl_core::eval::EvalKind;
use ssl_speech::dataset::{load_labeled, AudioCorpus};
use ssl_speech::encoder::{Pooling, SpeechEncoderFactory};
use ssl_speech::objective::Method;
use ssl_speech::pretrain::{evaluate_split, pretrain, SpeechConfig};
use std::path::{Path, PathBuf};

/// Flags of `pretrain-speech`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpeechArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Unlabeled audio: folders of WAV (or FLAC) files, comma-separated (class subfolders are ignored).
    /// Default: the committed clips under datasets/speech (unlabeled/ and digits/train/).
    #[arg(long, value_delimiter = ',')]
    pub data: Option<Vec<PathBuf>>,
    /// Reader of --data: wav-folder (every .wav below it) or flac-folder (every .wav and .flac,
    /// e.g. LibriSpeech).
    #[arg(long, default_value = "wav-folder")]
    pub data_format: String,
    /// Labeled evaluation data: a folder with train/<class>/ and test/<class>/ (default: the
    /// committed spoken digits, datasets/speech/digits).
    #[arg(long)]
    pub labeled: Option<PathBuf>,
    /// A second test set with the same classes (e.g. real recorded digits), classified by linear
    /// probes trained on --labeled's train/ (default: datasets/speech/real-digits with the
    /// default --labeled).
    #[arg(long)]
    pub extra_test: Option<PathBuf>,
    /// best-rq, contrastive or reconstruct.
    #[arg(long, default_value = "best-rq")]
    pub objective: String,
    /// tiny or small.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Probability that a frame starts a masked span (wav2vec 2.0: 0.065).
    #[arg(long)]
    pub mask_prob: Option<f64>,
    /// Masked span length in frames (wav2vec 2.0: 10).
    #[arg(long)]
    pub mask_length: Option<usize>,
    /// Length of the random pretraining crops in seconds.
    #[arg(long)]
    pub crop_seconds: Option<f64>,
    /// Length the evaluation clips are centre-cropped or padded to, in seconds.
    #[arg(long)]
    pub eval_seconds: Option<f64>,
    /// Features for the evaluation: all-layers (mean-pooled, concatenated), all-layers-mean-std
    /// (mean and std over time) or last.
    #[arg(long)]
    pub pooling: Option<String>,
    /// At most this many files of --data are decoded (evenly spaced over the sorted list).
    #[arg(long, default_value_t = 20000)]
    pub max_files: usize,
}

/// `datasets/speech/<rel>` (see [`common::workspace_path`]).
fn committed(rel: &str) -> PathBuf {
    common::workspace_path(Path::new("datasets/speech").join(rel))
}

fn load_corpus(dirs: &[PathBuf], cfg: &SpeechConfig, max_files: usize, flac: bool) -> Result<AudioCorpus> {
    let mut clips = Vec::new();
    let mut skipped = Vec::new();
    for d in dirs {
        let c = AudioCorpus::load_dir_limited(d, &cfg.model, max_files, flac)
            .with_context(|| format!("reading the pretraining audio in {}", d.display()))?;
        clips.extend(c.clips);
        skipped.extend(c.skipped);
    }
    Ok(AudioCorpus { clips, skipped })
}

pub fn run(args: SpeechArgs) -> Result<()> {
    let device = args.common.device()?;
    let method: Method = args.objective.parse().map_err(anyhow::Error::msg)?;
    let mut cfg = SpeechConfig::preset(&args.preset)?;
    cfg.objective.method = method;
    if let Some(p) = args.mask_prob {
        cfg.masking.prob = p;
    }
    if let Some(m) = args.mask_length {
        cfg.masking.length = m;
    }
    if let Some(c) = args.crop_seconds {
        cfg.crop_seconds = c;
    }
    if let Some(e) = args.eval_seconds {
        cfg.eval_seconds = e;
    }
    if let Some(p) = &args.pooling {
        cfg.pooling = match p.as_str() {
            "all-layers" => Pooling::AllLayers,
            "all-layers-mean-std" => Pooling::AllLayersMeanStd,
            "last" => Pooling::Last,
            o => bail!("unknown --pooling `{o}` (expected all-layers, all-layers-mean-std or last)"),
        };
    }
    if let Some(s) = args.common.steps {
        cfg.train.steps = s;
        // Only very short runs shorten the warm-up, so that resuming with more --steps keeps the
        // configuration the checkpoint was written with.
        if s < cfg.train.warmup_steps {
            cfg.train.warmup_steps = s / 10;
        }
    }
    if let Some(b) = args.common.batch_size {
        cfg.train.batch_size = b;
    }
    if let Some(n) = args.common.checkpoint_every {
        cfg.train.checkpoint_every = n;
    }
    if let Some(lr) = args.common.lr {
        cfg.train.lr = lr;
    }
    cfg.train.seed = args.common.seed;
    cfg.objective.quantizer_seed = args.common.seed;
    cfg.protocol = args.common.protocol(cfg.protocol.clone());
    cfg.validate()?;
    let flac = match args.data_format.as_str() {
        "wav-folder" | "wav" => false,
        "flac-folder" | "flac" => true,
        o => bail!("unknown --data-format `{o}` (expected wav-folder or flac-folder)"),
    };

    let default_labeled = args.labeled.is_none();
    let labeled = args.labeled.clone().unwrap_or_else(|| committed("digits"));
    let extra_test =
        args.extra_test.clone().or_else(|| default_labeled.then(|| committed("real-digits")).filter(|p| p.exists()));
    let data: Vec<PathBuf> =
        args.data.clone().unwrap_or_else(|| vec![committed("unlabeled"), committed("digits/train")]);

    let run_dir = args.common.run_dir("speech", method.name())?;
    let mut notes = Vec::new();
    let mut data_json = serde_json::json!({
        "pretraining": data.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "labeled": labeled.display().to_string(),
        "extra_test": extra_test.as_ref().map(|p| p.display().to_string()),
    });

    let (summary, encoder) = if args.common.eval_only {
        let ckpt = args.common.checkpoint.clone().unwrap_or_else(|| run_dir.clone());
        // The model of a run is in its config.json (next to checkpoints/ or two levels above a
        // checkpoint directory); the evaluation settings still come from the flags.
        let saved = [ckpt.join("config.json"), ckpt.join("../../config.json")].into_iter().find(|p| p.is_file());
        if let Some(path) = saved {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let saved: SpeechConfig =
                serde_json::from_str(&text).with_context(|| format!("{} is not a speech config", path.display()))?;
            cfg.model = saved.model;
            cfg.preset = saved.preset;
            cfg.objective = saved.objective;
            notes.push(format!("encoder evaluated from {} (model from {})", ckpt.display(), path.display()));
        }
        let f = SpeechEncoderFactory::from_checkpoint(&ckpt, cfg.model.clone(), cfg.pooling)
            .with_context(|| format!("loading the encoder from {}", ckpt.display()))?;
        (None, f.weights)
    } else {
        let corpus = load_corpus(&data, &cfg, args.max_files, flac)?;
        eprintln!(
            "==> pretraining {} ({} preset) on {} clips, {:.0} s of audio ({} files skipped)",
            method.name(),
            cfg.preset,
            corpus.clips.len(),
            corpus.seconds(),
            corpus.skipped.len()
        );
        data_json["pretraining_clips"] = corpus.clips.len().into();
        data_json["pretraining_seconds"] = corpus.seconds().into();
        data_json["skipped_files"] = serde_json::to_value(&corpus.skipped)?;
        for s in &corpus.skipped {
            notes.push(format!("skipped {}: {}", s.path, s.reason));
        }
        common::write_config(&run_dir, &serde_json::to_value(&cfg)?)?;
        let p = pretrain(&cfg, corpus, &run_dir, device, args.common.resume)?;
        (Some(p.summary), p.encoder)
    };
    if args.common.eval_only {
        common::write_config(&run_dir, &serde_json::to_value(&cfg)?)?;
    }

    let eval_samples = (cfg.eval_seconds * 16000.0).round() as usize;
    let split = load_labeled(&labeled, eval_samples, &cfg.model)
        .with_context(|| format!("reading the labeled data in {}", labeled.display()))?;
    eprintln!(
        "==> evaluating on {} ({} classes, {} train / {} test clips)",
        labeled.display(),
        split.classes.len(),
        split.train.len(),
        split.test.len()
    );
    data_json["classes"] = serde_json::to_value(&split.classes)?;
    data_json["labeled_train"] = split.train.len().into();
    data_json["labeled_test"] = split.test.len().into();
    for s in &split.skipped {
        notes.push(format!("skipped {}: {}", s.path, s.reason));
    }
    let evaluation = evaluate_split(&cfg, &encoder, &split, device)?;

    if let Some(extra) = &extra_test {
        let mut extra_cfg = cfg.clone();
        extra_cfg.protocol.evals = vec![EvalKind::Linear];
        extra_cfg.protocol.raw_baseline = true;
        match ssl_speech::dataset::load_test_folder(extra, eval_samples, &cfg.model, &split.classes) {
            Ok(test) => {
                let mut extra_split = split;
                extra_split.test = test;
                let ev = ssl_core::eval::evaluate(
                    &SpeechEncoderFactory { model: cfg.model.clone(), pooling: cfg.pooling, weights: encoder },
                    &extra_split.train,
                    &extra_split.test,
                    &[],
                    &extra_cfg.protocol,
                    device,
                )?;
                for row in &ev.evaluations {
                    notes.push(format!(
                        "extra test set {} ({} clips), linear probe, {} labels/class: pretrained {:.3}, scratch {:.3}, log-mel baseline {}",
                        extra.display(),
                        extra_split.test.len(),
                        row.labels_per_class,
                        row.pretrained.mean,
                        row.scratch.mean,
                        row.raw_baseline.as_ref().map(|s| format!("{:.3}", s.mean)).unwrap_or_else(|| "-".into())
                    ));
                }
                data_json["extra_test_evaluation"] = serde_json::to_value(&ev)?;
            }
            Err(e) => notes.push(format!("extra test set {} not evaluated: {e}", extra.display())),
        }
    }

    common::finish(
        &run_dir,
        RunInfo {
            modality: "speech",
            method: cfg.objective.method.name(),
            device,
            summary: summary.as_ref(),
            data: data_json,
            notes,
        },
        evaluation,
    )?;
    Ok(())
}
