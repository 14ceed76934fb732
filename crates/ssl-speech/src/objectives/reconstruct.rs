//! Masked reconstruction: L1 regression of the (per-utterance normalised) log-mel frame of each
//! masked frame.
use crate::data::features::{normalize_frames, N_MELS};
use crate::model::ModelConfig;
use crate::objectives::{frame_variance, FrameTask, MaskedFrames};
use ssl_core::losses::{masked_reconstruction, Reconstruction};
use tch::nn::{self, Module};
use tch::Tensor;

/// A linear regressor from the last layer to the log-mel frame.
pub struct Reconstruct {
    regressor: nn::Linear,
}

impl Reconstruct {
    pub fn new(p: &nn::Path, model: &ModelConfig) -> Self {
        Self { regressor: nn::linear(p / "regressor", model.dim, N_MELS, Default::default()) }
    }
}

impl FrameTask for Reconstruct {
    fn loss(&self, f: &MaskedFrames<'_>) -> (Tensor, Vec<(String, Tensor)>) {
        let mask = &f.mask;
        let mel = tch::no_grad(|| normalize_frames(&f.mel.frames(f.waves).narrow(1, 0, f.frames()), &f.valid));
        let out = f.model.transform(&f.projected, &f.valid, Some(mask));
        let pred = self.regressor.forward(out.last().expect("at least the input"));
        let loss = masked_reconstruction(&pred, &mel, mask, Reconstruction::L1, false);
        let m = tch::no_grad(|| {
            vec![
                ("target_variance".to_string(), frame_variance(&mel.index(&[Some(mask)]))),
                ("prediction_variance".to_string(), frame_variance(&pred.index(&[Some(mask)]).detach())),
            ]
        });
        (loss, m)
    }
}
