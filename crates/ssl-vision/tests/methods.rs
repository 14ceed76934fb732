//! The pretext tasks on tiny data: shapes, exact rotations, mask ratios, and the loss going down
//! on a fixed batch.
use ssl_core::trainer::Objective;
use ssl_vision::data::batch::ImageBatch;
use ssl_vision::model::encoder::EncoderConfig;
use ssl_vision::model::resnet::ResNetConfig;
use ssl_vision::model::vit::VitConfig;
use ssl_vision::objectives::inpainting::{block_mask, BlockPlacement, InpaintingConfig, InpaintingTask};
use ssl_vision::objectives::mae::{random_masking, MaeConfig, MaeTask};
use ssl_vision::objectives::rotation::{rotate_all, RotationTask};
use tch::{Device, Kind, Tensor};

fn tiny_resnet() -> EncoderConfig {
    EncoderConfig::Resnet(ResNetConfig { in_channels: 1, width: 4, ..Default::default() })
}

fn tiny_vit() -> VitConfig {
    VitConfig { in_channels: 1, image_size: 16, patch_size: 4, dim: 32, depth: 1, heads: 2, ..Default::default() }
}

fn batch(n: i64, size: i64) -> Tensor {
    let _rng = ssl_core::rng::torch_rng(0);
    Tensor::rand([n, 1, size, size], (Kind::Float, Device::Cpu))
}

/// Train `obj` on one fixed batch and return (first loss, last loss).
fn fit_fixed<O: Objective<Batch = ImageBatch>>(obj: &mut O, x: &Tensor, steps: usize, lr: f64) -> (f64, f64) {
    let x = ImageBatch::from(x.shallow_clone());
    let mut opt = ssl_core::optim::Optimizer::new(obj.var_store(), ssl_core::optim::OptimizerConfig::adamw(0.0));
    let mut losses = vec![];
    for i in 0..steps {
        let _rng = ssl_core::rng::torch_rng(i as u64 % 2);
        opt.zero_grad();
        let out = obj.forward(&x, Device::Cpu).unwrap();
        losses.push(out.loss.double_value(&[]));
        out.loss.backward();
        opt.step(lr).unwrap();
    }
    (losses[0], *losses.last().unwrap())
}

#[test]
fn rotations_are_exact_quarter_turns() {
    let x = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([1, 1, 2, 3]);
    let square = Tensor::arange(9, (Kind::Float, Device::Cpu)).view([1, 1, 3, 3]);
    let (r, labels) = rotate_all(&square);
    assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), vec![0, 1, 2, 3]);
    // 90 degrees counter-clockwise: the top row [0 1 2] becomes the left column read bottom-up.
    let r1 = Vec::<f32>::try_from(&r.get(1).flatten(0, -1)).unwrap();
    assert_eq!(r1, vec![2.0, 5.0, 8.0, 1.0, 4.0, 7.0, 0.0, 3.0, 6.0]);
    // Four quarter turns give the original back; two give the 180-degree flip.
    assert!(r.get(2).equal(&square.get(0).flip([1, 2])));
    assert!(x.rot90(4, [2, 3]).equal(&x));
}

#[test]
fn rotation_task_learns_a_fixed_batch() {
    let mut task = RotationTask::new(&tiny_resnet(), Device::Cpu, 0);
    let (first, last) = fit_fixed(&mut task, &batch(8, 16), 30, 1e-2);
    assert!(last < first * 0.5, "rotation loss {first} -> {last}");
}

#[test]
fn block_masks_cover_the_stated_fraction() {
    for placement in [BlockPlacement::Center, BlockPlacement::Random] {
        let cfg = InpaintingConfig { block_fraction: 0.5, placement, fill: 0.5 };
        let m = block_mask(32, 28, 28, &cfg, Device::Cpu);
        let per_image = m.to_kind(Kind::Float).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float);
        assert!(per_image.eq(196.0).all().int64_value(&[]) == 1, "each 28x28 image masks a 14x14 block");
    }
    let center = block_mask(
        1,
        28,
        28,
        &InpaintingConfig { placement: BlockPlacement::Center, ..Default::default() },
        Device::Cpu,
    );
    assert!(center.int64_value(&[0, 14, 14]) == 1 && center.int64_value(&[0, 0, 0]) == 0);
}

#[test]
fn inpainting_reconstructs_full_images_and_learns_a_fixed_batch() {
    let mut task = InpaintingTask::new(&tiny_resnet(), InpaintingConfig::default(), 1, Device::Cpu, 0);
    let x = batch(4, 16);
    let (_, masked, recon) = task.loss(&x, false);
    assert_eq!(recon.size(), x.size());
    assert_eq!(masked.size(), x.size());
    let (first, last) = fit_fixed(&mut task, &x, 40, 1e-2);
    assert!(last < first * 0.7, "inpainting loss {first} -> {last}");
}

#[test]
fn mae_masks_75_percent_and_learns_a_fixed_batch() {
    let (keep, restore, mask) = random_masking(5, 16, 0.75, Device::Cpu);
    assert_eq!(keep.size(), vec![5, 4]);
    assert_eq!(restore.size(), vec![5, 16]);
    assert_eq!(mask.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]), 5 * 12);
    let mut task = MaeTask::new(
        &tiny_vit(),
        MaeConfig { decoder_dim: 16, decoder_depth: 1, ..Default::default() },
        Device::Cpu,
        0,
    );
    let x = batch(4, 16);
    assert!(task.vit.unpatchify(&task.vit.patchify(&x)).equal(&x), "patchify round-trips");
    let (first, last) = fit_fixed(&mut task, &x, 60, 3e-3);
    assert!(last < first * 0.9, "mae loss {first} -> {last}");
}
