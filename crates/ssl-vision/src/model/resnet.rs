//! A ResNet with a CIFAR-style stem (3x3 conv, stride 1, no max-pool) for small images.
//! Three stages of basic blocks with widths `w, 2w, 4w`; stages 2 and 3 halve the resolution.
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Shape of the ResNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub in_channels: i64,
    /// Channels of the first stage.
    pub width: i64,
    /// Basic blocks in each of the three stages.
    pub blocks_per_stage: Vec<usize>,
    /// Stage (1-based) whose output the `features` of the encoder come from. RotNet's lesson:
    /// middle blocks probe better than the last.
    pub feature_stage: usize,
    /// The chosen stage is average-pooled to `feature_pool x feature_pool` cells and flattened.
    pub feature_pool: i64,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self { in_channels: 1, width: 16, blocks_per_stage: vec![1, 1, 1], feature_stage: 2, feature_pool: 2 }
    }
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding: k / 2, bias: false, ..Default::default() };
    nn::conv2d(p, cin, cout, k, cfg)
}

#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl BasicBlock {
    fn new(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Self {
        let shortcut = (stride != 1 || cin != cout).then(|| {
            (conv(p / "down", cin, cout, 1, stride), nn::batch_norm2d(p / "down_bn", cout, Default::default()))
        });
        Self {
            conv1: conv(p / "conv1", cin, cout, 3, stride),
            bn1: nn::batch_norm2d(p / "bn1", cout, Default::default()),
            conv2: conv(p / "conv2", cout, cout, 3, 1),
            bn2: nn::batch_norm2d(p / "bn2", cout, Default::default()),
            shortcut,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu().apply(&self.conv2).apply_t(&self.bn2, train);
        let s = match &self.shortcut {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + s).relu()
    }
}

/// The network.
#[derive(Debug)]
pub struct ResNet {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    stages: Vec<Vec<BasicBlock>>,
    pub config: ResNetConfig,
}

impl ResNet {
    pub fn new(p: &nn::Path, config: ResNetConfig) -> Self {
        let w = config.width;
        let mut stages = Vec::new();
        let mut cin = w;
        for (s, &n) in config.blocks_per_stage.iter().enumerate() {
            let cout = w << s;
            let blocks = (0..n.max(1))
                .map(|b| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let blk =
                        BasicBlock::new(&(p / format!("stage{}", s + 1) / format!("block{b}")), cin, cout, stride);
                    cin = cout;
                    blk
                })
                .collect();
            stages.push(blocks);
        }
        Self {
            stem: conv(p / "stem", config.in_channels, w, 3, 1),
            stem_bn: nn::batch_norm2d(p / "stem_bn", w, Default::default()),
            stages,
            config,
        }
    }

    /// Channels of stage `s` (1-based).
    pub fn stage_channels(&self, s: usize) -> i64 {
        self.config.width << (s - 1)
    }

    /// Outputs of the first `upto` stages (images in `[0, 1]`).
    pub fn stages_t(&self, x: &Tensor, train: bool, upto: usize) -> Vec<Tensor> {
        let mut h = (x * 2.0 - 1.0).apply(&self.stem).apply_t(&self.stem_bn, train).relu();
        let mut outs = Vec::new();
        for stage in self.stages.iter().take(upto) {
            for b in stage {
                h = b.forward_t(&h, train);
            }
            outs.push(h.shallow_clone());
        }
        outs
    }

    /// Global average pool of the last stage: the input of pretext heads.
    pub fn pooled_last(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.stages_t(x, train, self.stages.len()).pop().expect("at least one stage");
        last.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// The last stage's feature map.
    pub fn last_map(&self, x: &Tensor, train: bool) -> Tensor {
        self.stages_t(x, train, self.stages.len()).pop().expect("at least one stage")
    }

    /// Downstream features: the chosen stage, pooled to a small grid and flattened.
    pub fn features_t(&self, x: &Tensor, train: bool) -> Tensor {
        let s = self.config.feature_stage.clamp(1, self.stages.len());
        let map = self.stages_t(x, train, s).pop().expect("at least one stage");
        let g = self.config.feature_pool;
        map.adaptive_avg_pool2d([g, g]).flatten(1, -1)
    }

    /// Size of [`ResNet::features_t`].
    pub fn feature_dim(&self) -> i64 {
        let s = self.config.feature_stage.clamp(1, self.stages.len());
        self.stage_channels(s) * self.config.feature_pool * self.config.feature_pool
    }

    /// Channels of the last stage.
    pub fn last_channels(&self) -> i64 {
        self.stage_channels(self.stages.len())
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features_t(xs, train)
    }
}
