//! Corruptions for the robustness part of the protocol, each at three severities, on
//! `[N, C, H, W]` images in `[0, 1]`: Gaussian noise, brightness, contrast, blur, small rotations.
use ssl_core::eval::Corruption;
use tch::{Kind, Tensor};

fn gaussian_noise(x: &Tensor, sigma: f64) -> Tensor {
    // The same noise for every run and encoder: a fixed corrupted test set.
    let _rng = ssl_core::rng::torch_rng(1234);
    (x + x.randn_like() * sigma).clamp(0.0, 1.0)
}

fn blur(x: &Tensor, sigma: f64) -> Tensor {
    let c = x.size()[1];
    let r = (sigma * 2.0).ceil() as i64;
    let k = Tensor::arange_start(-r, r + 1, (Kind::Float, x.device()));
    let k = (-(&k * &k) / (2.0 * sigma * sigma)).exp();
    let k = &k / k.sum(Kind::Float);
    let kernel = k.view([1, -1]) * k.view([-1, 1]);
    let weight = kernel.view([1, 1, 2 * r + 1, 2 * r + 1]).repeat([c, 1, 1, 1]);
    x.conv2d(&weight, None::<Tensor>, [1, 1], [r, r], [1, 1], c)
}

/// Rotate every image by `degrees` about its centre (bilinear, zero fill).
pub fn rotate(x: &Tensor, degrees: f64) -> Tensor {
    let n = x.size()[0];
    let (s, c) = degrees.to_radians().sin_cos();
    let theta =
        Tensor::from_slice(&[c as f32, -s as f32, 0.0, s as f32, c as f32, 0.0]).view([1, 2, 3]).repeat([n, 1, 1]);
    let grid = Tensor::affine_grid_generator(&theta.to_device(x.device()), x.size(), false);
    x.grid_sampler(&grid, 0, 0, false)
}

/// The standard set: five corruptions at severities 1-3.
pub fn standard() -> Vec<Corruption> {
    let mut out = Vec::new();
    let mut add = |name: &str, severity: u32, f: Box<dyn Fn(&Tensor) -> Tensor>| {
        out.push(Corruption { name: name.into(), severity, apply: f });
    };
    for (i, s) in [0.08, 0.16, 0.32].into_iter().enumerate() {
        add("gaussian_noise", i as u32 + 1, Box::new(move |x| gaussian_noise(x, s)));
    }
    for (i, b) in [0.1, 0.2, 0.3].into_iter().enumerate() {
        add("brightness", i as u32 + 1, Box::new(move |x| (x + b).clamp(0.0, 1.0)));
    }
    for (i, f) in [0.7, 0.5, 0.3].into_iter().enumerate() {
        add(
            "contrast",
            i as u32 + 1,
            Box::new(move |x| {
                let mean = x.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
                ((x - &mean) * f + mean).clamp(0.0, 1.0)
            }),
        );
    }
    for (i, s) in [0.5, 1.0, 1.5].into_iter().enumerate() {
        add("blur", i as u32 + 1, Box::new(move |x| blur(x, s)));
    }
    for (i, d) in [5.0, 10.0, 15.0].into_iter().enumerate() {
        add("rotation", i as u32 + 1, Box::new(move |x| rotate(x, d)));
    }
    out
}
