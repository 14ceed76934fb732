//! Analytic FLOPs of the BERT MLM forward pass, for the benchmark's MFU.
//!
//! Matrix multiplies only (a multiply-add counts 2): the projections and feed-forward of every
//! layer, the two attention products, and the MLM head on the masked slots only (as
//! [`crate::objectives::mlm::MlmObjective`] runs it). Embedding lookups, LayerNorm, GELU, softmax and
//! the loss are not counted.
//!
//! ```
//! use ssl_text::model::BertConfig;
//! let cfg = BertConfig { vocab_size: 4096, max_position: 128, ..BertConfig::preset("tiny").unwrap() };
//! let f = ssl_text::model::flops::mlm_forward_flops(&cfg, 128, 32);
//! assert!(f > 1e8 && f < 1e9);
//! ```
use crate::model::BertConfig;

/// Forward FLOPs for one sequence of `len` tokens with `slots` MLM output slots.
pub fn mlm_forward_flops(cfg: &BertConfig, len: i64, slots: i64) -> f64 {
    let (h, i, l) = (cfg.hidden as f64, cfg.intermediate as f64, len as f64);
    let layer = ssl_core::bench::transformer_layer_flops(l, h, i);
    // Head: dense H x H, then the tied H x V decoder, on the gathered slots.
    let head = 2.0 * slots as f64 * (h * h + h * cfg.vocab_size as f64);
    cfg.layers as f64 * layer + head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_layers_attention_and_head() {
        let cfg = BertConfig {
            vocab_size: 10,
            hidden: 2,
            layers: 1,
            heads: 1,
            intermediate: 3,
            max_position: 4,
            ..BertConfig::default()
        };
        // len 4: projections 4 x (2*4*2*2) = 128; feed-forward 2 x (2*4*2*3) = 96;
        // attention 2 x (2*4*4*2) = 128; head on 1 slot: 2*2*2 + 2*2*10 = 48.
        assert_eq!(mlm_forward_flops(&cfg, 4, 1), 128.0 + 96.0 + 128.0 + 48.0);
    }
}
