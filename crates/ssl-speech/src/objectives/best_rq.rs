//! BEST-RQ (Chiu et al. 2022): predict, for each masked frame, the id that a frozen
//! random-projection quantizer gives its normalised log-mel frame; cross-entropy on the masked
//! frames only.
use crate::data::features::{normalize_frames, N_MELS};
use crate::model::quantizer::{usage_perplexity, RandomProjectionQuantizer};
use crate::model::ModelConfig;
use crate::objectives::{frame_variance, FrameTask, MaskedFrames, ObjectiveConfig};
use ssl_core::losses::masked_cross_entropy;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// The frozen quantizer (targets) and the trained classifier over its codebook.
pub struct BestRq {
    rq: RandomProjectionQuantizer,
    classifier: nn::Linear,
    codebook_size: i64,
}

impl BestRq {
    pub fn new(p: &nn::Path, model: &ModelConfig, config: &ObjectiveConfig, device: Device) -> Self {
        Self {
            rq: RandomProjectionQuantizer::new(
                N_MELS,
                config.code_dim,
                config.codebook_size,
                config.quantizer_seed,
                device,
            ),
            classifier: nn::linear(p / "classifier", model.dim, config.codebook_size, Default::default()),
            codebook_size: config.codebook_size,
        }
    }
}

impl FrameTask for BestRq {
    fn loss(&self, f: &MaskedFrames<'_>) -> (Tensor, Vec<(String, Tensor)>) {
        let mask = &f.mask;
        let mel = normalize_frames(&f.mel.frames(f.waves).narrow(1, 0, f.frames()), &f.valid);
        let (targets, proj) = tch::no_grad(|| (self.rq.codes(&mel), self.rq.project(&mel)));
        let out = f.model.transform(&f.projected, &f.valid, Some(mask));
        let last = out.last().expect("at least the input").shallow_clone();
        let logits = self.classifier.forward(&last);
        let loss = masked_cross_entropy(&logits, &targets, mask);
        let sel_t = targets.masked_select(mask);
        let sel_last = last.index(&[Some(mask)]);
        let m = tch::no_grad(|| {
            let probs = logits.index(&[Some(mask)]).softmax(-1, Kind::Float);
            let acc = probs.argmax(-1, false).eq_tensor(&sel_t).to_kind(Kind::Float).mean(Kind::Float);
            let avg = probs.mean_dim(0, false, Kind::Float);
            let pred_ppl = (&avg * (&avg + 1e-9).log()).sum(Kind::Float).neg().exp();
            vec![
                ("accuracy".to_string(), acc),
                ("target_perplexity".to_string(), usage_perplexity(&sel_t, self.codebook_size)),
                ("prediction_perplexity".to_string(), pred_ppl),
                ("target_variance".to_string(), frame_variance(&proj.index(&[Some(mask)]))),
                ("prediction_variance".to_string(), frame_variance(&sel_last.detach())),
            ]
        });
        (loss, m)
    }
}
