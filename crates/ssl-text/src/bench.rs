//! `ssl bench text`: the BERT presets at 128 tokens with the MLM objective of our recipe
//! (Cramming: 25% masking, masked-only head, clip 0.5), against `bench/text_mlm.py` (the harness
//! is [`ssl_core::bench`]).
use crate::data::dataset::{collate_masked, MlmBatch, MlmDataset};
use crate::objectives::mlm::MlmObjective;
use crate::pipeline::{self, TextConfig};
use crate::{Result, TextError};
use rand_chacha::rand_core::SeedableRng;
use ssl_core::bench::{loader_and_preloaded, optimizer_flags, write_init, BenchContext, FixedBatch, Measured};
use ssl_core::trainer::Objective;
use std::sync::Arc;
use tch::Tensor;

/// Sequence length of the benchmark (the reference models).
const MAX_LEN: usize = 128;

impl FixedBatch for MlmBatch {
    fn fresh_copy(&self) -> Self {
        MlmBatch {
            input_ids: self.input_ids.copy(),
            positions: self.positions.copy(),
            targets: self.targets.copy(),
            valid: self.valid.copy(),
        }
    }
}

/// Measure the BERT preset's training throughput and write the reference artefacts.
pub fn measure(ctx: &BenchContext) -> Result<Measured> {
    let (a, device) = (&ctx.options, ctx.device);
    let mut cfg = TextConfig::cramming(&a.preset)?;
    cfg.max_len = MAX_LEN;
    let batch_size = a.batch_size.unwrap_or(if a.quick { 8 } else { cfg.train.batch_size });
    ctx.timing.apply(&mut cfg.train, batch_size);
    let work = tempfile::tempdir().map_err(|e| TextError::io(std::env::temp_dir(), e))?;
    let data =
        pipeline::prepare(&[ssl_core::run::workspace_path("datasets/text/corpus")], None, &cfg, work.path(), false)?;
    if data.train_indices.len() < batch_size {
        return Err(TextError::InvalidArgument("the embedded corpus packs into fewer than one batch".into()));
    }
    let model = data.model_config(&cfg);
    let masker = data.masker(&cfg)?;

    // Reference artefacts: initial weights, one masked batch, our first-step loss on it.
    let name = format!("text_{}", a.preset);
    let objective_of = || -> ssl_core::Result<MlmObjective> {
        let _rng = ssl_core::rng::torch_rng(0);
        MlmObjective::new(&model, device).map_err(|e| ssl_core::CoreError::InvalidArgument(e.to_string()))
    };
    let mut objective = objective_of()?;
    let parameters = write_init(&objective.vs, &ctx.artefact(&name, "init"))?;
    let seqs = data.train_indices[..batch_size].iter().map(|&i| data.packed.get(i)).collect::<Result<Vec<_>>>()?;
    let batch = collate_masked(&masker, &seqs, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    Tensor::write_safetensors(
        &[
            ("input_ids", &batch.input_ids),
            ("positions", &batch.positions),
            ("targets", &batch.targets),
            ("valid", &batch.valid),
        ],
        ctx.artefact(&name, "batch"),
    )?;
    let first_step_loss = objective.forward(&batch, device)?.loss.double_value(&[]);

    let source = Arc::new(MlmDataset::new(data.packed.clone(), data.train_indices.clone(), masker.clone()));
    let slots = masker.slots() as i64;
    let mut script_args = vec![
        "--vocab".to_string(),
        model.vocab_size.to_string(),
        "--hidden".into(),
        model.hidden.to_string(),
        "--layers".into(),
        model.layers.to_string(),
        "--heads".into(),
        model.heads.to_string(),
        "--intermediate".into(),
        model.intermediate.to_string(),
        "--max-position".into(),
        model.max_position.to_string(),
        "--type-vocab".into(),
        model.type_vocab_size.to_string(),
        "--layer-norm-eps".into(),
        model.layer_norm_eps.to_string(),
    ];
    if model.pre_ln {
        script_args.push("--pre-ln".into());
    }
    script_args.extend(optimizer_flags(&cfg.train));
    let train = data.train_indices.iter().map(|&i| data.packed.get(i)).collect::<Result<Vec<_>>>()?;
    let ids: Vec<i64> = train.iter().flat_map(|s| s.ids.iter().map(|&i| i64::from(i))).collect();
    let sp = data.tokenizer.special();
    let m = &cfg.masking;
    ctx.write_data(
        &name,
        &[
            ("ids", &Tensor::from_slice(&ids).view([train.len() as i64, -1])),
            ("special_ids", &Tensor::from_slice(&[sp.pad, sp.unk, sp.cls, sp.sep, sp.mask])),
            ("slots", &Tensor::from_slice(&[slots])),
            ("masking", &Tensor::from_slice(&[m.rate, m.mask_fraction, m.random_fraction])),
        ],
    )?;
    let reference = ctx.reference(&name, "bench/text_mlm.py", script_args)?;
    let (loader, preloaded) = loader_and_preloaded(ctx, &name, &cfg.train, objective_of, source, &batch)?;
    Ok(Measured {
        model: format!(
            "BERT {} ({} layers x {}, vocab {}), {MAX_LEN} tokens, {:.0}% masked, {slots} MLM slots",
            a.preset,
            model.layers,
            model.hidden,
            model.vocab_size,
            100.0 * cfg.masking.rate
        ),
        name,
        modality: "text",
        preset: a.preset.clone(),
        batch_size,
        samples_per_step: batch_size,
        sample_unit: "sequences",
        per_sample: Some(("tokens", MAX_LEN as f64)),
        parameters,
        first_step_loss,
        flops_per_sample: 3.0 * crate::model::flops::mlm_forward_flops(&model, MAX_LEN as i64, slots),
        loader,
        preloaded,
        reference,
        details: serde_json::json!({
            "model": model,
            "max_len": MAX_LEN,
            "masking": cfg.masking,
            "slots": slots,
            "train_sequences": data.train_indices.len(),
        }),
    })
}
