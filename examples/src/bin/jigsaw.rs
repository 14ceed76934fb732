//! A new pretext task in a user's own code: 2x2 jigsaw (Noroozi & Favaro 2016, reduced). Each
//! image's four quadrants are shuffled by one of a few fixed permutations and a head predicts
//! which. Everything else is reused through the `Recipe` seam: ssl-vision's data, encoder,
//! evaluation and corruptions, and ssl-core's trainer, protocol and report.
//!
//! `cargo xtask cargo run -p ssl-examples --bin jigsaw -- --steps 50`
use clap::Parser;
use ssl_core::eval::ProtocolConfig;
use ssl_core::run::{DataReport, EvalInputs, Recipe, RunContext, RunPlan};
use ssl_core::trainer::{Objective, StepOutput, TrainSummary};
use ssl_vision::batch::ImageBatch;
use ssl_vision::encoder::Net;
use ssl_vision::run::{VisionFlags, VisionRecipe};
use ssl_vision::source::ImageSource;
use ssl_vision::VisionError;
use std::path::Path;
use std::sync::Arc;
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};

/// Quadrant orders (top-left, top-right, bottom-left, bottom-right) the head tells apart.
const PERMUTATIONS: [[i64; 4]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]];

/// Shuffle the quadrants of `x` `[B, C, H, W]` (even H, W) by permutation `labels[b]`.
fn shuffle_quadrants(x: &Tensor, labels: &[i64]) -> Tensor {
    let (h, w) = (x.size()[2] / 2, x.size()[3] / 2);
    let quads = |t: &Tensor| [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(r, c)| t.narrow(2, r * h, h).narrow(3, c * w, w));
    let rows: Vec<Tensor> = labels
        .iter()
        .enumerate()
        .map(|(b, &l)| {
            let q = quads(&x.narrow(0, b as i64, 1));
            let p = PERMUTATIONS[l as usize].map(|i| q[i as usize].shallow_clone());
            Tensor::cat(&[Tensor::cat(&[&p[0], &p[1]], 3), Tensor::cat(&[&p[2], &p[3]], 3)], 2)
        })
        .collect();
    Tensor::cat(&rows, 0)
}

struct JigsawTask {
    vs: VarStore,
    net: Net,
    head: nn::Linear,
}

impl Objective for JigsawTask {
    type Batch = ImageBatch;
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn forward(&mut self, batch: &ImageBatch, device: Device) -> ssl_core::Result<StepOutput> {
        let n = batch.len() as i64;
        // Permutations cycle through the batch: the loader already shuffled the images.
        let labels: Vec<i64> = (0..n).map(|i| i % PERMUTATIONS.len() as i64).collect();
        let x = shuffle_quadrants(&batch.pixels(device)?, &labels);
        let target = Tensor::from_slice(&labels).to_device(device);
        let logits = self.head.forward(&self.net.pooled_t(&x, true).0).to_kind(Kind::Float);
        let acc = logits.argmax(1, false).eq_tensor(&target).to_kind(Kind::Float).mean(Kind::Float);
        Ok(StepOutput { loss: logits.cross_entropy_for_logits(&target), metrics: vec![("jigsaw_acc".into(), acc)] })
    }
    fn batch_samples(&self, batch: &ImageBatch) -> usize {
        batch.len()
    }
}

/// The vision recipe with its pretext task replaced.
struct Jigsaw(VisionRecipe);

impl Recipe for Jigsaw {
    type Error = VisionError;
    fn modality(&self) -> &'static str {
        "vision"
    }
    fn method(&self) -> String {
        "jigsaw".into()
    }
    fn flags(&self) -> serde_json::Value {
        self.0.flags()
    }
    fn resolved(&self) -> serde_json::Value {
        self.0.resolved()
    }
    fn validate(&self, plan: &RunPlan) -> Result<(), VisionError> {
        self.0.validate(plan)
    }
    fn open(&mut self, plan: &RunPlan) -> Result<DataReport, VisionError> {
        self.0.open(plan)
    }
    fn describe(&self) -> String {
        self.0
            .config()
            .map(|c| format!("pretraining jigsaw for {} steps of {}", c.train.steps, c.train.batch_size))
            .unwrap_or_default()
    }
    fn pretrain(&mut self, ctx: &RunContext<'_>) -> Result<TrainSummary, VisionError> {
        let cfg = self.0.config()?.clone();
        let images = self.0.pretraining_images().ok_or_else(|| VisionError::Invalid("no images".into()))?;
        let rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(cfg.train.seed, "init"));
        let vs = VarStore::new(ctx.device);
        let net = Net::new(&(vs.root() / "encoder"), &cfg.encoder);
        let probe = Tensor::zeros(
            [1, images.channels as i64, images.height as i64, images.width as i64],
            (Kind::Float, ctx.device),
        );
        let dim = net.pooled_t(&probe, false).1;
        let head = nn::linear(vs.root() / "jigsaw_head", dim, PERMUTATIONS.len() as i64, Default::default());
        drop(rng);
        let mut task = JigsawTask { vs, net, head };
        let source = Arc::new(ImageSource::new(images, cfg.augment));
        let model = serde_json::json!({ "method": "jigsaw", "encoder": cfg.encoder });
        Ok(ctx.fit(&cfg.train, model, &mut task, source)?)
    }
    fn evaluation(&mut self, weights: &Path, ctx: &RunContext<'_>) -> Result<EvalInputs<'_>, VisionError> {
        self.0.evaluation(weights, ctx)
    }
    fn protocol(&self) -> ProtocolConfig {
        self.0.protocol()
    }
    fn notes(&self) -> Vec<String> {
        let mut n = self.0.notes();
        n.push(format!("Pretext task: 2x2 jigsaw over {} quadrant permutations (examples/).", PERMUTATIONS.len()));
        n
    }
}

#[derive(Parser)]
#[command(name = "jigsaw", about = "Jigsaw pretraining of an image encoder, evaluated like every other method")]
struct Cli {
    #[command(flatten)]
    flags: VisionFlags,
}

fn main() -> anyhow::Result<()> {
    let flags = Cli::parse().flags;
    let plan = flags.run.resolve("vision", "jigsaw")?;
    // `None` on the ranks other than 0 of a data-parallel run (rank 0 reports).
    if let Some(report) = ssl_core::run::execute(&mut Jigsaw(VisionRecipe::new(flags)), &plan)? {
        println!("{}", report.headline());
    }
    Ok(())
}
