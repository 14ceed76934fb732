"""A ResNet exported by the ssl toolkit, rebuilt in plain PyTorch (torch and safetensors only).

The network: a CIFAR-style stem (3x3 conv, stride 1, no max-pool) with batch norm and ReLU, then
stages of basic blocks of widths w, 2w, 4w, ...; every stage after the first halves the
resolution in its first block, whose shortcut is then a 1x1 conv with batch norm. Convs have no
bias. Images come in as NCHW in [0, 1]; the model maps them to 2x - 1 itself.

`features(x)` is what the toolkit evaluated: the output of stage `feature_stage`, average-pooled
to `feature_pool` x `feature_pool` cells and flattened. `pooled(x)` is the global average pool of
the last stage.

    import torch
    from modeling_ssl_resnet import SslResNet
    model = SslResNet.from_pretrained("exported").eval()
    with torch.no_grad():
        feats = model.features(images)  # images: [N, C, H, W] in [0, 1]
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, eps):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)
        self.has_shortcut = stride != 1 or cin != cout
        if self.has_shortcut:
            self.down = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.down_bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = self.down_bn(self.down(x)) if self.has_shortcut else x
        return F.relu(y + s)


class SslResNet(nn.Module):
    def __init__(self, in_channels, width, blocks_per_stage, feature_stage, feature_pool, batch_norm_eps=1e-5, **_):
        super().__init__()
        self.feature_stage = max(1, min(feature_stage, len(blocks_per_stage)))
        self.feature_pool = feature_pool
        self.stem = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width, eps=batch_norm_eps)
        cin = width
        self.stage_names = []
        for s, n in enumerate(blocks_per_stage):
            cout = width << s
            stage = nn.Module()
            for b in range(max(n, 1)):
                stride = 2 if s > 0 and b == 0 else 1
                setattr(stage, f"block{b}", BasicBlock(cin, cout, stride, batch_norm_eps))
                cin = cout
            setattr(self, f"stage{s + 1}", stage)
            self.stage_names.append(f"stage{s + 1}")
        self.feature_dim = (width << (self.feature_stage - 1)) * feature_pool * feature_pool
        self.last_channels = cin

    @classmethod
    def from_pretrained(cls, folder):
        with open(os.path.join(folder, "config.json")) as f:
            config = json.load(f)
        model = cls(**config)
        state = load_file(os.path.join(folder, "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # PyTorch counts batch-norm updates; the toolkit does not store the count.
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
        return model

    def stages(self, x, upto):
        h = F.relu(self.stem_bn(self.stem(x * 2.0 - 1.0)))
        outs = []
        for name in self.stage_names[:upto]:
            for block in getattr(self, name).children():
                h = block(h)
            outs.append(h)
        return outs

    def features(self, x):
        h = self.stages(x, self.feature_stage)[-1]
        return F.adaptive_avg_pool2d(h, self.feature_pool).flatten(1)

    def pooled(self, x):
        h = self.stages(x, len(self.stage_names))[-1]
        return F.adaptive_avg_pool2d(h, 1).flatten(1)

    def forward(self, x):
        return self.features(x)
