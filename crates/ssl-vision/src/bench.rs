//! `ssl bench vision`: the rotation ResNet on 28x28 grey images, against `bench/vision_rotation.py`
//! (the harness is [`ssl_core::bench`]).
use crate::data::batch::ImageBatch;
use crate::data::source::ImageSource;
use crate::error::{Result, VisionError};
use crate::model::encoder::EncoderConfig;
use crate::objectives::rotation::RotationTask;
use crate::pipeline::{Method, VisionConfig};
use ssl_core::bench::{loader_and_preloaded, optimizer_flags, write_init, BenchContext, Measured};
use ssl_core::trainer::Objective;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Measure the rotation ResNet's training throughput and write the reference artefacts.
pub fn measure(ctx: &BenchContext) -> Result<Measured> {
    let (a, device) = (&ctx.options, ctx.device);
    let batch_size = a.batch_size.unwrap_or(64);
    let data = crate::data::open(&ssl_core::run::workspace_path("datasets/fashion-mnist-slice"), 28)?;
    let mut cfg = VisionConfig::defaults(Method::Rotation, 1, 28);
    if let (Some(w), EncoderConfig::Resnet(r)) = (a.width, &mut cfg.encoder) {
        r.width = w;
    }
    ctx.timing.apply(&mut cfg.train, batch_size);
    cfg.augment.on_device = a.augment_on_device;
    let EncoderConfig::Resnet(resnet) = cfg.encoder.clone() else {
        return Err(VisionError::Invalid("rotation defaults to a ResNet".into()));
    };

    // Reference artefacts: initial weights, a fixed batch, our first-step loss on it.
    let name = "vision".to_string();
    let mut task = RotationTask::new(&cfg.encoder, device, 0);
    let parameters = write_init(&task.vs, &ctx.artefact(&name, "init"))?;
    let batch = data.train.to_tensor().narrow(0, 0, batch_size as i64);
    Tensor::write_safetensors(&[("images", &batch)], ctx.artefact(&name, "batch"))?;
    let first_step_loss = task.forward(&batch.shallow_clone().into(), device)?.loss.double_value(&[]);

    let source = Arc::new(ImageSource::new(Arc::new(data.train.clone()), cfg.augment));
    let blocks: Vec<String> = resnet.blocks_per_stage.iter().map(|b| b.to_string()).collect();
    let script_args = [
        vec!["--width".into(), resnet.width.to_string(), "--blocks".into(), blocks.join(",")],
        optimizer_flags(&cfg.train),
    ]
    .concat();
    let t = &data.train;
    let images = Tensor::from_slice(&t.pixels).view([t.len as i64, t.channels as i64, t.height as i64, t.width as i64]);
    let aug = &cfg.augment;
    let augment =
        Tensor::from_slice(&[aug.crop_padding as f64, f64::from(u8::from(aug.hflip)), aug.color_jitter as f64]);
    ctx.write_data(&name, &[("images", &images), ("augment", &augment)])?;
    let reference = ctx.reference(&name, "bench/vision_rotation.py", script_args)?;
    let (loader, preloaded) = loader_and_preloaded(
        ctx,
        &name,
        &cfg.train,
        || Ok(RotationTask::new(&cfg.encoder, device, 0)),
        source,
        &ImageBatch::Pixels(batch.to_kind(Kind::Float)),
    )?;
    Ok(Measured {
        model: format!("rotation ResNet width {} blocks {:?}, 28x28 grey", resnet.width, resnet.blocks_per_stage),
        name,
        modality: "vision",
        preset: format!("resnet-w{}", resnet.width),
        batch_size,
        samples_per_step: 4 * batch_size,
        sample_unit: "rotated images",
        per_sample: None,
        parameters,
        first_step_loss,
        flops_per_sample: 3.0 * crate::model::flops::resnet_forward_flops(&resnet, 28, 4),
        loader,
        preloaded,
        reference,
        details: serde_json::json!({
            "width": resnet.width,
            "blocks": resnet.blocks_per_stage,
            "augment_on_device": cfg.augment.on_device,
        }),
    })
}
