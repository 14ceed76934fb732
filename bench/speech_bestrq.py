"""PyTorch (eager) reference for `cargo xtask bench`: the wav2vec2-shaped speech encoder of
ssl-speech with its BEST-RQ objective, written independently with torch.nn.

Model: a conv feature encoder on the raw waveform (no bias; a per-channel GroupNorm after the
first conv; exact GELU), LayerNorm, a projection, a learned mask embedding on masked frames, a
grouped convolutional positional embedding (padding k/2, trimmed to T frames; a LayerNorm after it
only with --pos-norm), pre-LN Transformer
layers (fused QKV, padding keys biased by -1e9) and a final LayerNorm, then a linear classifier
over the codebook on every frame. Padding frames are zeroed.

Targets: per step and without gradient, log-mel frames (Hann window of 400 samples every 320,
512-point FFT, our mel filterbank), normalised per utterance and band over the valid frames,
projected by the frozen random projection, l2-normalised, and the id of the nearest frozen unit
code. The loss is the cross-entropy on masked valid frames. Weights, the batch (waves, lengths,
span mask) and the frozen filterbank, projection and codebook come from our safetensors; our
target ids are there too and are compared with the ones computed here. Prints one JSON object.

Usage: python bench/speech_bestrq.py --init speech_tiny_init.safetensors --batch speech_tiny_batch.safetensors
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

import loaders
import reference

WINDOW, HOP, N_FFT = 400, 320, 512


class Layer(nn.Module):
    def __init__(self, d, ffn, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.qkv, self.out = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2, self.ff1, self.ff2 = nn.LayerNorm(d), nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x, key_bias):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h) + key_bias
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(att)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class Encoder(nn.Module):
    def __init__(self, a):
        super().__init__()
        c, d = a.conv_channels, a.dim
        self.kernels = [int(v) for v in a.conv_kernels.split(",")]
        self.strides = [int(v) for v in a.conv_strides.split(",")]
        self.conv = nn.ModuleList(
            [nn.Conv1d(1 if i == 0 else c, c, k, stride=s, bias=False)
             for i, (k, s) in enumerate(zip(self.kernels, self.strides))])
        self.conv_norm = nn.GroupNorm(c, c)
        self.feature_norm = nn.LayerNorm(c)
        self.proj = nn.Linear(c, d)
        self.mask_embedding = nn.Parameter(torch.zeros(d))
        self.pos_conv = nn.Conv1d(d, d, a.pos_kernel, padding=a.pos_kernel // 2, groups=a.pos_groups)
        # Only runs with `pos_norm` on (the old default) normalise after the positional conv.
        self.pos_norm = nn.LayerNorm(d) if a.pos_norm else None
        self.layer = nn.ModuleList([Layer(d, a.ffn, a.heads) for _ in range(a.layers)])
        self.final_norm = nn.LayerNorm(d)

    def frames(self, samples):
        for k, s in zip(self.kernels, self.strides):
            samples = 0 if samples < k else (samples - k) // s + 1
        return samples

    def validity(self, lengths, t, device):
        n = torch.tensor([self.frames(int(v)) for v in lengths], device=device)
        return torch.arange(t, device=device)[None, :] < n[:, None]

    def conv_features(self, wave):
        x = wave.unsqueeze(1)
        for i, conv in enumerate(self.conv):
            x = conv(x)
            if i == 0:
                x = self.conv_norm(x)
            x = F.gelu(x)
        return self.feature_norm(x.transpose(1, 2))

    def transform(self, x, valid, mask):
        validf = valid.float().unsqueeze(-1)
        x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x) * validf
        t = x.shape[1]
        pos = F.gelu(self.pos_conv(x.transpose(1, 2))[..., :t]).transpose(1, 2)
        x = x + pos
        if self.pos_norm is not None:
            x = self.pos_norm(x)
        x = x * validf
        key_bias = ((~valid).float() * -1e9).view(valid.shape[0], 1, 1, t)
        for layer in self.layer:
            x = layer(x, key_bias)
        return self.final_norm(x) * validf


class Targets:
    """BEST-RQ's frozen target maker: log-mel frames -> random projection -> nearest unit code."""

    def __init__(self, batch, device):
        self.window = torch.hann_window(WINDOW, periodic=True, device=device)
        self.filterbank = batch["mel_filterbank"].to(device)
        self.projection = batch["rq_projection"].to(device)
        self.codebook = batch["rq_codebook"].to(device)

    @torch.no_grad()
    def __call__(self, waves, valid, t):
        frames = waves.float().unfold(1, WINDOW, HOP) * self.window
        power = torch.fft.rfft(frames, n=N_FFT).abs().square()
        mel = (power @ self.filterbank + 1e-6).log()[:, :t]
        m = valid.float().unsqueeze(-1)
        n = m.sum(1, keepdim=True).clamp_min(1.0)
        mean = (mel * m).sum(1, keepdim=True) / n
        var = ((mel - mean).square() * m).sum(1, keepdim=True) / n
        mel = (mel - mean) / (var + 1e-5).sqrt() * m
        z = mel @ self.projection
        z = z / z.square().sum(-1, keepdim=True).sqrt().clamp_min(1e-8)
        return (z @ self.codebook.t()).argmax(-1)


class BestRq(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.encoder = Encoder(a)
        self.head = nn.Module()
        self.head.classifier = nn.Linear(a.dim, a.codebook)

    def loss(self, waves, lengths, mask, targets):
        feats = self.encoder.conv_features(waves)
        t = feats.shape[1]
        valid = self.encoder.validity(lengths, t, waves.device)
        mask = mask[:, :t] & valid
        ids = targets(waves, valid, t)
        logits = self.head.classifier(self.encoder.transform(self.encoder.proj(feats), valid, mask)).float()
        nll = -logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        m = mask.float()
        return (nll * m).sum() / m.sum().clamp_min(1.0), ids


def main():
    p = reference.parser(__doc__)
    p.add_argument("--conv-channels", type=int, default=64)
    p.add_argument("--conv-kernels", default="10,3,3,3,3,2,2")
    p.add_argument("--conv-strides", default="5,2,2,2,2,2,2")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=256)
    p.add_argument("--pos-kernel", type=int, default=16)
    p.add_argument("--pos-groups", type=int, default=8)
    p.add_argument("--pos-norm", action="store_true", help="a LayerNorm after the positional conv")
    p.add_argument("--codebook", type=int, default=512)
    a = p.parse_args()
    model, device = reference.build(BestRq, a)
    batch = load_file(a.batch)
    targets = Targets(batch, device)
    waves, mask = batch["waves"].to(device), batch["mask"].to(device)
    lengths = batch["lengths"].tolist()  # host-side, like ours
    model.train()
    first, ids = model.loss(waves, lengths, mask, targets)
    t = ids.shape[1]
    mismatches = int((ids.cpu() != batch["targets"][:, :t]).sum())
    assert mismatches == 0, f"{mismatches} BEST-RQ targets differ from ours"
    if a.data:
        tracks = loaders.Tracks(load_file(a.data))
        batches = loaders.batches(a, tracks, waves.shape[0], device, tracks.collate)
        w, n, m = next(batches)
        loaders.check_like((w, m), (waves, mask))
        assert n.tolist() == lengths, (n.tolist(), lengths)

        def loss():
            w, n, m = next(batches)
            return model.loss(w, n.tolist(), m, targets)[0]

        reference.train_and_report(model, loss, a, waves.shape[0], first.item())
    else:
        reference.train_and_report(
            model, lambda: model.loss(waves, lengths, mask, targets)[0], a, waves.shape[0], first.item())


if __name__ == "__main__":
    main()
