//! Analytic FLOPs of the speech encoder's forward pass plus a frame-level head, for the
//! benchmark's MFU.
//!
//! Convolutions and matrix multiplies only (a multiply-add counts 2): the conv feature encoder,
//! the projection, the positional convolution, every Transformer layer and the head on every
//! frame (as the `best-rq` classifier runs it). Norms, GELU, softmax, the loss and the frozen
//! target makers (log-mel, random-projection quantizer; no gradient, run once) are not counted.
//!
//! ```
//! use ssl_speech::model::ModelConfig;
//! let f = ssl_speech::model::flops::forward_flops(&ModelConfig::tiny(), 32000, 512);
//! assert!(f > 1e8 && f < 1e10);
//! ```
use crate::model::ModelConfig;

/// Forward FLOPs for one utterance of `samples` samples with a linear head of `head_out` outputs
/// on every frame.
pub fn forward_flops(cfg: &ModelConfig, samples: i64, head_out: i64) -> f64 {
    let mut flops = 0.0;
    let (mut cin, mut len) = (1i64, samples);
    for (&k, &s) in cfg.conv_kernels.iter().zip(&cfg.conv_strides) {
        len = if len < k { 0 } else { (len - k) / s + 1 };
        flops += 2.0 * (cin * cfg.conv_channels * k * len) as f64;
        cin = cfg.conv_channels;
    }
    let (t, d) = (len as f64, cfg.dim as f64);
    flops += 2.0 * t * cfg.conv_channels as f64 * d;
    // The grouped positional conv is padded by k/2 on both sides: an even kernel yields T + 1 outputs.
    let k = cfg.pos_conv_kernel;
    let pos_out = (len + 2 * (k / 2) - k + 1) as f64;
    flops += 2.0 * (d / cfg.pos_conv_groups as f64) * d * k as f64 * pos_out;
    let f = cfg.ffn_dim as f64;
    let layer = ssl_core::bench::transformer_layer_flops(t, d, f);
    flops + cfg.layers as f64 * layer + 2.0 * t * d * head_out as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_convs_transformer_and_head() {
        let cfg = ModelConfig {
            conv_channels: 1,
            conv_kernels: vec![2],
            conv_strides: vec![2],
            dim: 2,
            layers: 1,
            heads: 1,
            ffn_dim: 2,
            pos_conv_kernel: 2,
            pos_conv_groups: 1,
            pos_norm: false,
        };
        // 8 samples -> 4 frames. conv 1->1, k 2: 2*2*4 = 16; projection 1->2: 2*4*1*2 = 16;
        // positional conv 2->2, k 2, 5 outputs: 2*2*2*2*5 = 80; layer: qkv 2*4*2*6 = 96,
        // output 2*4*2*2 = 32, feed-forward 2 x 2*4*2*2 = 64, attention 2 x 2*4*4*2 = 128;
        // head 2 -> 3 on 4 frames: 2*4*2*3 = 48.
        assert_eq!(forward_flops(&cfg, 8, 3), 16.0 + 16.0 + 80.0 + 96.0 + 32.0 + 64.0 + 128.0 + 48.0);
    }
}
