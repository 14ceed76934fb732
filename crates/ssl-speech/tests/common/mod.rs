//! What the speech tests share.
use ssl_speech::model::ModelConfig;

/// The tiny preset cut down further (1 layer of width 32), so a test trains in seconds on 2 cores.
pub fn small_model() -> ModelConfig {
    ModelConfig {
        conv_channels: 16,
        dim: 32,
        layers: 1,
        heads: 2,
        ffn_dim: 64,
        pos_conv_kernel: 8,
        pos_conv_groups: 4,
        ..ModelConfig::tiny()
    }
}
