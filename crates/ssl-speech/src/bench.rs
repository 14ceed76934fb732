//! `ssl bench speech`: the wav2vec2-shaped encoder on 2-second crops with the default `best-rq`
//! objective, against `bench/speech_bestrq.py` (the harness is [`ssl_core::bench`]).
use crate::data::dataset::{AudioCorpus, CropSource, SpeechBatch};
use crate::data::features::{mel_filterbank, normalize_frames, LogMel, N_FFT, N_MELS};
use crate::data::wav::SAMPLE_RATE;
use crate::error::{Result, SpeechError};
use crate::model::frame_validity;
use crate::model::quantizer::RandomProjectionQuantizer;
use crate::objectives::{Method, SpeechObjective};
use crate::pipeline::SpeechConfig;
use rand_chacha::rand_core::SeedableRng;
use ssl_core::bench::{loader_and_preloaded, optimizer_flags, write_init, BenchContext, FixedBatch, Measured};
use ssl_core::loader::DataSource;
use ssl_core::trainer::Objective;
use std::sync::Arc;
use tch::Tensor;

impl FixedBatch for SpeechBatch {
    fn fresh_copy(&self) -> Self {
        SpeechBatch::fresh_copy(self)
    }
}

/// Join clips into tracks of at least `len` samples (the remainder is dropped). The embedded clips
/// are mostly shorter than a crop; joined, every crop of the loader is as long as the fixed batch.
fn tracks(clips: Vec<Vec<f32>>, len: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for clip in clips {
        current.extend(clip);
        if current.len() >= len {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

fn csv(values: &[i64]) -> String {
    values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

/// Measure the speech preset's training throughput and write the reference artefacts.
pub fn measure(ctx: &BenchContext) -> Result<Measured> {
    let (a, device) = (&ctx.options, ctx.device);
    let mut cfg = SpeechConfig::preset(&a.preset)?;
    if cfg.objective.method != Method::BestRq {
        return Err(SpeechError::InvalidArgument("the speech benchmark measures best-rq".into()));
    }
    let batch_size = a.batch_size.unwrap_or(if a.quick { 4 } else { cfg.train.batch_size });
    ctx.timing.apply(&mut cfg.train, batch_size);
    let crop = (cfg.crop_seconds * SAMPLE_RATE as f64).round() as usize;
    let mut clips = Vec::new();
    for rel in ["datasets/speech/unlabeled", "datasets/speech/digits/train"] {
        let dir = ssl_core::run::workspace_path(rel);
        let corpus = AudioCorpus::load_dir(&dir, &cfg.model)?;
        clips.extend(corpus.clips);
    }
    let tracks = tracks(clips, 2 * crop);
    // The reference's DataLoader samples the same tracks: concatenated, with their offsets.
    let mut offsets = vec![0i64];
    for clip in &tracks {
        offsets.push(offsets[offsets.len() - 1] + clip.len() as i64);
    }
    let audio = Tensor::from_slice(&tracks.concat());
    let corpus = AudioCorpus { clips: tracks, skipped: Vec::new() };
    if corpus.clips.len() < batch_size {
        return Err(SpeechError::InvalidArgument("the embedded clips join into fewer tracks than one batch".into()));
    }
    let source = CropSource::new(corpus, cfg.crop_seconds, cfg.masking, cfg.model.clone())?
        .crops_on_device(a.augment_on_device)?;

    // Reference artefacts: initial weights, one batch (crops, span mask), the frozen target makers
    // and the targets they give, our first-step loss on it.
    let name = format!("speech_{}", a.preset);
    let objective_of = || {
        let _rng = ssl_core::rng::torch_rng(0);
        SpeechObjective::new(&cfg.model, cfg.objective.clone(), device)
    };
    let mut objective = objective_of();
    let parameters = write_init(objective.var_store(), &ctx.artefact(&name, "init"))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let items = (0..batch_size).map(|i| source.get(i, &mut rng)).collect::<std::result::Result<Vec<_>, _>>();
    let batch = source.collate(items.map_err(|e| SpeechError::InvalidArgument(e.to_string()))?, &mut rng);
    let o = &cfg.objective;
    let rq = RandomProjectionQuantizer::new(N_MELS, o.code_dim, o.codebook_size, o.quantizer_seed, device);
    let waves = batch.waves_on(device)?;
    let frames = cfg.model.frames(waves.size()[1]);
    let valid = frame_validity(&cfg.model, &batch.lengths, frames, device);
    let targets =
        tch::no_grad(|| rq.codes(&normalize_frames(&LogMel::new(device).frames(&waves).narrow(1, 0, frames), &valid)));
    let filterbank = Tensor::from_slice(&mel_filterbank(N_MELS, SAMPLE_RATE)).view([N_FFT / 2 + 1, N_MELS]);
    Tensor::write_safetensors(
        &[
            ("waves", &batch.waves_on(tch::Device::Cpu)?),
            ("lengths", &Tensor::from_slice(&batch.lengths)),
            ("mask", &batch.mask),
            ("targets", &targets),
            ("rq_projection", &rq.projection),
            ("rq_codebook", &rq.codebook),
            ("mel_filterbank", &filterbank),
        ],
        ctx.artefact(&name, "batch"),
    )?;
    let first_step_loss = objective.forward(&batch, device)?.loss.double_value(&[]);

    let m = &cfg.model;
    let mut script_args = vec![
        "--conv-channels".to_string(),
        m.conv_channels.to_string(),
        "--conv-kernels".into(),
        csv(&m.conv_kernels),
        "--conv-strides".into(),
        csv(&m.conv_strides),
        "--dim".into(),
        m.dim.to_string(),
        "--layers".into(),
        m.layers.to_string(),
        "--heads".into(),
        m.heads.to_string(),
        "--ffn".into(),
        m.ffn_dim.to_string(),
        "--pos-kernel".into(),
        m.pos_conv_kernel.to_string(),
        "--pos-groups".into(),
        m.pos_conv_groups.to_string(),
        "--codebook".into(),
        o.codebook_size.to_string(),
    ];
    if m.pos_norm {
        script_args.push("--pos-norm".into());
    }
    script_args.extend(optimizer_flags(&cfg.train));
    ctx.write_data(
        &name,
        &[
            ("audio", &audio),
            ("offsets", &Tensor::from_slice(&offsets)),
            ("shape", &Tensor::from_slice(&[crop as i64, cfg.model.frames(crop as i64)])),
            ("masking", &Tensor::from_slice(&[cfg.masking.prob, cfg.masking.length as f64])),
        ],
    )?;
    let reference = ctx.reference(&name, "bench/speech_bestrq.py", script_args)?;
    let (loader, preloaded) =
        loader_and_preloaded(ctx, &name, &cfg.train, || Ok(objective_of()), Arc::new(source), &batch)?;
    Ok(Measured {
        model: format!(
            "wav2vec2-shaped {} ({} layers x {}, conv {}), best-rq {} codes, {} s crops",
            a.preset, m.layers, m.dim, m.conv_channels, o.codebook_size, cfg.crop_seconds
        ),
        name,
        modality: "speech",
        preset: a.preset.clone(),
        batch_size,
        samples_per_step: batch_size,
        sample_unit: "utterances",
        per_sample: Some(("audio seconds", cfg.crop_seconds)),
        parameters,
        first_step_loss,
        flops_per_sample: 3.0 * crate::model::flops::forward_flops(m, crop as i64, o.codebook_size),
        loader,
        preloaded,
        reference,
        details: serde_json::json!({
            "model": m,
            "objective": o,
            "masking": cfg.masking,
            "crop_seconds": cfg.crop_seconds,
            "frames": frames,
        }),
    })
}
