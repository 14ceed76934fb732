//! A new pretext task in a user's own code: 2x2 jigsaw (Noroozi & Favaro 2016, reduced). Each
//! image's four quadrants are shuffled by one of a few fixed permutations and a head predicts
//! which. Everything else is reused: ssl-vision's recipe (data, encoder, evaluation and
//! corruptions) takes the task as a `Pretext`, and ssl-core's seam runs the trainer, the
//! protocol and the report.
//!
//! `cargo xtask cargo run -p ssl-examples --bin jigsaw -- --steps 50`
use clap::Parser;
use ssl_core::trainer::{Objective, StepOutput, TrainSummary, Trainer};
use ssl_vision::data::batch::ImageBatch;
use ssl_vision::data::source::ImageSource;
use ssl_vision::data::ImageSet;
use ssl_vision::flags::VisionFlags;
use ssl_vision::model::encoder::Net;
use ssl_vision::pipeline::VisionConfig;
use ssl_vision::recipe::{Pretext, VisionRecipe};
use ssl_vision::VisionError;
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

/// The pretext task the vision recipe trains in place of `--method`'s.
struct Jigsaw;

impl Pretext for Jigsaw {
    fn name(&self) -> String {
        "jigsaw".into()
    }
    fn pretrain(
        &mut self,
        cfg: &VisionConfig,
        images: Arc<ImageSet>,
        trainer: Trainer,
    ) -> Result<TrainSummary, VisionError> {
        let device = trainer.device;
        let mut task = {
            let _rng = ssl_core::rng::torch_rng(ssl_core::rng::derive(trainer.config.seed, "init"));
            let vs = VarStore::new(device);
            let net = Net::new(&(vs.root() / "encoder"), &cfg.encoder);
            let size = cfg.image_size as i64;
            let probe = Tensor::zeros([1, images.channels as i64, size, size], (Kind::Float, device));
            let dim = net.pooled_t(&probe, false).1;
            let head = nn::linear(vs.root() / "jigsaw_head", dim, PERMUTATIONS.len() as i64, Default::default());
            JigsawTask { vs, net, head }
        };
        let source = Arc::new(ImageSource::new(images, cfg.augment));
        let model = serde_json::json!({ "method": "jigsaw", "encoder": cfg.encoder });
        Ok(trainer.with_model_config(model).fit(&mut task, source)?)
    }
    fn note(&self) -> Option<String> {
        Some(format!("Pretext task: 2x2 jigsaw over {} quadrant permutations (examples/).", PERMUTATIONS.len()))
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
    if let Some(report) = ssl_core::run::execute(&mut VisionRecipe::new(flags).with_pretext(Jigsaw), &plan)? {
        println!("{}", report.headline());
    }
    Ok(())
}
