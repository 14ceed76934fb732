//! Analytic FLOPs of the ResNet, for the benchmark's MFU.
use crate::model::resnet::ResNetConfig;
use ssl_core::bench::conv2d_flops;

/// Forward FLOPs of the full ResNet (all stages) on one `size x size` image, plus a linear head of
/// `head_out` outputs on the pooled last stage. Batch norm, ReLU and pooling are not counted.
pub fn resnet_forward_flops(cfg: &ResNetConfig, size: i64, head_out: i64) -> f64 {
    let w = cfg.width;
    let mut flops = conv2d_flops(cfg.in_channels, w, 3, size, size);
    let (mut cin, mut side) = (w, size);
    for (s, &n) in cfg.blocks_per_stage.iter().enumerate() {
        let cout = w << s;
        for b in 0..n.max(1) {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let out = (side + stride - 1) / stride;
            flops += conv2d_flops(cin, cout, 3, out, out) + conv2d_flops(cout, cout, 3, out, out);
            if stride != 1 || cin != cout {
                flops += conv2d_flops(cin, cout, 1, out, out);
            }
            cin = cout;
            side = out;
        }
    }
    flops + 2.0 * (cin * head_out) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_stem_and_blocks() {
        let cfg =
            ResNetConfig { in_channels: 1, width: 2, blocks_per_stage: vec![1], feature_stage: 1, feature_pool: 1 };
        // stem 1->2 on 4x4: 2*1*2*9*16 = 576; block: two 2->2 convs: 2 * (2*2*2*9*16) = 2304; head 2*2*4 = 16.
        assert_eq!(resnet_forward_flops(&cfg, 4, 4), 576.0 + 2304.0 + 16.0);
    }
}
