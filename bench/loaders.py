"""The end-to-end configuration of the PyTorch references: a `torch.utils.data.DataLoader` with
worker processes, shuffling and the usual per-item transforms, as a PyTorch user would train,
over the same decoded data our loader samples from (`ssl bench` writes it to
`<name>_data.safetensors`: the images, the packed token ids, the joined audio tracks).

What each modality's pipeline does per step, on the DataLoader's side:
- vision: torchvision's RandomCrop with padding, RandomHorizontalFlip and ColorJitter on each
  uint8 image, scaled to float (ours: the same shift, flip and brightness/contrast jitter);
- text: dynamic MLM masking in the collate function, as transformers' DataCollatorForLanguageModeling
  does, gathered into our fixed number of slots (ours: the same rate and 80/10/10 split);
- speech: a random crop of each track and wav2vec 2.0 span masks (ours: the same).
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


def add_flags(p):
    p.add_argument("--data", default="", help="train from a DataLoader over this file (<name>_data.safetensors)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")


def batches(a, dataset, batch_size, device, collate_fn=None):
    """Endless batches from a DataLoader over `dataset`, moved to `device` (pinned, non-blocking on CUDA)."""
    cuda = device.type == "cuda"
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=a.workers,
        pin_memory=cuda,
        persistent_workers=a.workers > 0,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(0),
    )
    move = (lambda t: t.to(device, non_blocking=True)) if cuda else (lambda t: t)
    while True:
        for batch in loader:
            yield tuple(move(t) for t in batch) if isinstance(batch, (tuple, list)) else move(batch)


def check_like(batch, fixed):
    """The DataLoader's batch has the fixed batch's tensors: same dtypes, shapes and device."""
    batch = batch if isinstance(batch, (tuple, list)) else (batch,)
    fixed = fixed if isinstance(fixed, (tuple, list)) else (fixed,)
    got = [(t.dtype, tuple(t.shape), t.device) for t in batch]
    want = [(t.dtype, tuple(t.shape), t.device) for t in fixed]
    assert got == want, f"the DataLoader's batch {got} differs from the fixed batch {want}"


class Images(Dataset):
    """uint8 images [N, C, H, W], each cropped, flipped and jittered when drawn."""

    def __init__(self, data):
        from torchvision.transforms import v2

        self.images = data["images"]
        pad, flip, jitter = data["augment"].tolist()
        h = self.images.shape[-1]
        steps = [v2.RandomCrop(h, padding=int(pad))] if pad > 0 else []
        steps += [v2.RandomHorizontalFlip()] if flip > 0 else []
        steps += [v2.ColorJitter(brightness=jitter, contrast=jitter)] if jitter > 0 else []
        self.transform = v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True)])

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.transform(self.images[i])


class Sequences(Dataset):
    """Packed token ids [N, L]; `collate` masks a batch of them."""

    def __init__(self, data, vocab):
        self.ids = data["ids"]
        self.special = data["special_ids"]  # pad, unk, cls, sep, mask
        self.mask_id = int(self.special[4])
        self.first_normal = int(self.special.max()) + 1
        self.slots = int(data["slots"][0])
        self.rate, self.mask_fraction, self.random_fraction = data["masking"].tolist()
        self.vocab = vocab

    def __len__(self):
        return self.ids.shape[0]

    def __getitem__(self, i):
        return self.ids[i]

    def collate(self, seqs):
        """Mask `rate` of each sequence's maskable tokens (at most `slots`): the masked positions,
        their original ids and which slots are real, and the input with 80% [MASK], 10% random ids."""
        ids = torch.stack(seqs)
        b, n = ids.shape
        maskable = ~torch.isin(ids, self.special)
        budget = (self.rate * maskable.sum(1).double()).round().clamp(max=self.slots).long()
        # A random order of each sequence's maskable positions first; the first `budget` are masked.
        order = torch.rand(b, n).masked_fill(~maskable, 2.0).argsort(1)[:, : self.slots]
        valid = torch.arange(self.slots) < budget[:, None]
        chosen = torch.zeros(b, n, dtype=torch.bool).scatter_(1, order, valid)
        r = torch.rand(b, n)
        random_ids = torch.randint(self.first_normal, self.vocab, (b, n))
        inputs = torch.where(chosen & (r < self.mask_fraction), self.mask_id, ids)
        inputs = torch.where(chosen & (r >= self.mask_fraction) & (r < self.mask_fraction + self.random_fraction), random_ids, inputs)
        return inputs, order, ids.gather(1, order), valid


class Tracks(Dataset):
    """Audio tracks (concatenated, with offsets), each cropped at random when drawn; `collate`
    draws the span masks."""

    def __init__(self, data):
        self.audio, self.offsets = data["audio"], data["offsets"].tolist()
        self.crop, self.frames = data["shape"].tolist()
        self.prob, length = data["masking"].tolist()
        self.length = int(length)

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        start, end = self.offsets[i], self.offsets[i + 1]
        s = start + int(torch.randint(0, end - start - self.crop + 1, ()))
        return self.audio[s : s + self.crop]

    def collate(self, crops):
        waves = torch.stack(crops)
        b = waves.shape[0]
        # A span of `length` frames starts at each frame with probability `prob`.
        starts = (torch.rand(b, self.frames) < self.prob).float().unsqueeze(1)
        mask = F.max_pool1d(F.pad(starts, (self.length - 1, 0)), self.length, stride=1).squeeze(1) > 0
        return waves, torch.full((b,), self.crop, dtype=torch.long), mask
