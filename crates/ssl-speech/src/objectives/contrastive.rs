//! wav2vec 2.0's contrastive task (Baevski et al. 2020): identify the Gumbel-quantized conv
//! feature of each masked frame among distractors from the same utterance (InfoNCE), plus a
//! codebook diversity loss; the Gumbel temperature is annealed over the run.
use crate::model::quantizer::GumbelQuantizer;
use crate::model::ModelConfig;
use crate::objectives::{frame_variance, FrameTask, MaskedFrames, ObjectiveConfig};
use ssl_core::losses::{diversity_loss, info_nce};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The quantizer of the targets and the two projections into the compared space.
pub struct Contrastive {
    quantizer: GumbelQuantizer,
    project_q: nn::Linear,
    final_proj: nn::Linear,
}

impl Contrastive {
    pub fn new(p: &nn::Path, model: &ModelConfig, config: &ObjectiveConfig) -> Self {
        Self {
            quantizer: GumbelQuantizer::new(
                p / "quantizer",
                model.conv_channels,
                config.groups,
                config.entries,
                config.final_dim,
            ),
            project_q: nn::linear(p / "project_q", config.final_dim, config.final_dim, Default::default()),
            final_proj: nn::linear(p / "final_proj", model.dim, config.final_dim, Default::default()),
        }
    }
}

impl FrameTask for Contrastive {
    fn loss(&self, f: &MaskedFrames<'_>) -> (Tensor, Vec<(String, Tensor)>) {
        let (mask, device, config) = (&f.mask, f.waves.device(), f.config);
        let q = self.quantizer.forward(&f.feats, &f.valid, f.temperature, true);
        let targets = self.project_q.forward(&q.vectors); // [B, T, F]
        let out = f.model.transform(&f.projected, &f.valid, Some(mask));
        let pred = self.final_proj.forward(out.last().expect("at least the input")); // [B, T, F]
        let negatives = sample_negatives(&targets, f.lengths, f.model.config(), config.num_negatives);
        let sel_pred = pred.index(&[Some(mask)]);
        let sel_pos = targets.index(&[Some(mask)]);
        let sel_neg = negatives.index(&[Some(mask)]);
        let (nce, logits) = if sel_pred.size()[0] > 0 {
            info_nce(&sel_pred, &sel_pos, &sel_neg, config.logit_temperature)
        } else {
            (Tensor::zeros([], (Kind::Float, device)), Tensor::zeros([0, 1], (Kind::Float, device)))
        };
        let (div, ppl) = diversity_loss(&q.avg_probs);
        let loss = &nce + &div * config.diversity_weight;
        let m = tch::no_grad(|| {
            let acc = if logits.size()[0] > 0 {
                logits.argmax(-1, false).eq(0).to_kind(Kind::Float).mean(Kind::Float)
            } else {
                Tensor::zeros([], (Kind::Float, device))
            };
            vec![
                ("contrastive_loss".to_string(), nce.detach()),
                ("diversity_loss".to_string(), div.detach()),
                ("code_perplexity".to_string(), ppl.detach()),
                ("accuracy".to_string(), acc),
                ("gumbel_temperature".to_string(), Tensor::from(f.temperature).to_device(device)),
                ("target_variance".to_string(), frame_variance(&sel_pos.detach())),
                ("prediction_variance".to_string(), frame_variance(&sel_pred.detach())),
            ]
        });
        (loss, m)
    }
}

/// For every frame of `targets` `[B, T, F]`, `k` distractors drawn uniformly (with replacement)
/// from the other valid frames of the same utterance -> `[B, T, k, F]`.
pub fn sample_negatives(targets: &Tensor, lengths: &[i64], model: &ModelConfig, k: i64) -> Tensor {
    let (b, t, f) = targets.size3().expect("[B, T, F]");
    let device = targets.device();
    let valid: Vec<i64> = lengths.iter().map(|&l| model.frames(l).clamp(1, t)).collect();
    let valid_t = Tensor::from_slice(&valid).to_device(device).view([b, 1, 1]);
    let others = (&valid_t - 1).clamp_min(1).to_kind(Kind::Float);
    let draw = (Tensor::rand([b, t, k], (Kind::Float, device)) * &others).floor().to_kind(Kind::Int64);
    let pos = Tensor::arange(t, (Kind::Int64, device)).view([1, t, 1]);
    // Skip the frame itself: draws at or above it move up by one.
    let idx = &draw + draw.ge_tensor(&pos).to_kind(Kind::Int64);
    let idx = idx.minimum(&(&valid_t - 1).clamp_min(0));
    let offsets = (Tensor::arange(b, (Kind::Int64, device)) * t).view([b, 1, 1]);
    let flat = (idx + offsets).reshape([-1]);
    targets.reshape([b * t, f]).index_select(0, &flat).view([b, t, k, f])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn negatives_come_from_other_valid_frames_of_the_same_utterance() {
        let _rng = ssl_core::rng::torch_rng(0);
        let cfg = ModelConfig::tiny();
        let (b, t) = (2i64, 10i64);
        // Frame value = b * 100 + t, so a distractor tells where it came from.
        let targets = (Tensor::arange(b * t, (Kind::Float, Device::Cpu)).view([b, t])
            + Tensor::from_slice(&[0.0f32, 90.0]).view([b, 1]))
        .unsqueeze(-1);
        let lengths = [400 + 320 * 9, 400 + 320 * 5]; // 10 and 6 valid frames
        assert_eq!((cfg.frames(lengths[0]), cfg.frames(lengths[1])), (10, 6));
        let neg = sample_negatives(&targets, &lengths, &cfg, 50);
        for bi in 0..b {
            for ti in 0..t {
                let v = Vec::<f32>::try_from(neg.get(bi).get(ti).reshape([-1])).unwrap();
                for x in v {
                    let (src_b, src_t) = ((x as i64) / 100, (x as i64) % 100);
                    assert_eq!(src_b, bi);
                    assert_ne!(src_t, ti);
                    assert!(src_t < if bi == 0 { 10 } else { 6 });
                }
            }
        }
    }
}
