"""PyTorch (eager) reference for `cargo xtask bench`: the rotation ResNet of ssl-vision, written
independently with the same architecture, initial weights (loaded from our safetensors), batch,
optimizer and loss; the training loop and the flags are reference.py's. Prints one JSON object.

Usage: python bench/vision_rotation.py --init vision_init.safetensors --batch vision_batch.safetensors
           --width 16 --blocks 1,1,1 --lr 0.002 --weight-decay 0.05 --clip 1 --window 20 --windows 6
"""
import loaders
import reference
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.has_down = stride != 1 or cin != cout
        if self.has_down:
            self.down = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.down_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = self.down_bn(self.down(x)) if self.has_down else x
        return F.relu(y + s)


class ResNet(nn.Module):
    def __init__(self, width, blocks, in_channels=1):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        cin = width
        self.stage_names = []
        for s, n in enumerate(blocks):
            cout = width << s
            stage = nn.ModuleDict()
            for b in range(max(n, 1)):
                stage[f"block{b}"] = Block(cin, cout, 2 if (s > 0 and b == 0) else 1)
                cin = cout
            setattr(self, f"stage{s + 1}", stage)
            self.stage_names.append(f"stage{s + 1}")
        self.out_channels = cin

    def forward(self, x):
        h = F.relu(self.stem_bn(self.stem(x * 2.0 - 1.0)))
        for name in self.stage_names:
            for blk in getattr(self, name).values():
                h = blk(h)
        return h.mean(dim=(2, 3))


class Rotation(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.encoder = ResNet(a.width, [int(v) for v in a.blocks.split(",")])
        self.rotation_head = nn.Linear(self.encoder.out_channels, 4)

    def loss(self, x):
        b = x.shape[0]
        rots = torch.cat([torch.rot90(x, k, [2, 3]) for k in range(4)])
        labels = torch.arange(4, device=x.device).repeat_interleave(b)
        return F.cross_entropy(self.rotation_head(self.encoder(rots)), labels)


def main():
    p = reference.parser(__doc__)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", default="1,1,1")
    a = p.parse_args()
    model, device = reference.build(Rotation, a)
    x = load_file(a.batch)["images"].to(device)
    model.train()
    first_loss = model.loss(x).item()
    # Reload: the forward above updated the batch-norm running statistics.
    model.load_state_dict(load_file(a.init), strict=False)
    if a.data:
        batches = loaders.batches(a, loaders.Images(load_file(a.data)), x.shape[0], device)
        loaders.check_like(next(batches), x)
        reference.train_and_report(model, lambda: model.loss(next(batches)), a, 4 * x.shape[0], first_loss)
    else:
        reference.train_and_report(model, lambda: model.loss(x), a, 4 * x.shape[0], first_loss)


if __name__ == "__main__":
    main()
