"""PyTorch (eager) reference for `cargo xtask bench`: the rotation ResNet of ssl-vision, written
independently with the same architecture, initial weights (loaded from our safetensors), batch,
optimizer (AdamW, fused where supported, no weight decay on tensors with < 2 dims, gradient clipping
at 1.0) and loss. Prints one JSON object.

Usage: python bench/vision_rotation.py --init vision_init.safetensors --batch vision_batch.safetensors
           --width 16 --window 20 --windows 6
"""
import argparse
import json
import statistics
import time

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
    def __init__(self, width, blocks):
        super().__init__()
        self.encoder = ResNet(width, blocks)
        self.rotation_head = nn.Linear(self.encoder.out_channels, 4)

    def loss(self, x):
        b = x.shape[0]
        rots = torch.cat([torch.rot90(x, k, [2, 3]) for k in range(4)])
        labels = torch.arange(4).repeat_interleave(b)
        return F.cross_entropy(self.rotation_head(self.encoder(rots)), labels)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", default="1,1,1")
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--windows", type=int, default=6)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = Rotation(a.width, [int(v) for v in a.blocks.split(",")])
    state = load_file(a.init)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    x = load_file(a.batch)["images"]
    model.train()
    first_loss = model.loss(x).item()
    # Reload: the forward above updated the batch-norm running statistics.
    model.load_state_dict(state, strict=False)
    params = sum(t.numel() for t in model.parameters())
    decay = [t for t in model.parameters() if t.dim() >= 2]
    no_decay = [t for t in model.parameters() if t.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=2e-3, fused=True)
        fused = True
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=2e-3)
        fused = False
    # The same pre-loaded batch every step (a flip per step keeps the work identical).
    rates = []
    for w in range(a.windows + 1):
        t = time.perf_counter()
        for _ in range(a.window):
            opt.zero_grad(set_to_none=True)
            loss = model.loss(x)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss.item()  # the same one host read per step as ours (the NaN guard)
        elapsed = time.perf_counter() - t
        if w > 0:  # the first window is warm-up
            rates.append(a.window * 4 * x.shape[0] / elapsed)
    rates.sort()
    print(json.dumps({
        "parameters": params,
        "first_step_loss": first_loss,
        "fused_adamw": fused,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "samples_per_s": {"median": statistics.median(rates), "min": rates[0], "max": rates[-1], "n": len(rates)},
    }))


if __name__ == "__main__":
    main()
