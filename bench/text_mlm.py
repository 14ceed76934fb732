"""PyTorch (eager) reference for `cargo xtask bench`: the BERT masked-language model of ssl-text,
written independently with torch.nn: post-LayerNorm blocks (pre-LN with --pre-ln), exact GELU,
attention that never looks at [PAD] (id 0), and the MLM head (dense, GELU, LayerNorm, decoder tied
to the word embeddings plus a bias) applied to the masked slots only. The loss is the mean
cross-entropy over the valid slots. Weights come from our safetensors (HuggingFace names), the
masked batch (ids, slot positions, targets, valid slots) from our fixed batch. Prints one JSON
object.

Usage: python bench/text_mlm.py --init text_tiny_init.safetensors --batch text_tiny_batch.safetensors
           --vocab 4096 --hidden 128 --layers 2 --heads 2 --intermediate 512 --max-position 128
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

import loaders
import reference


class Layer(nn.Module):
    def __init__(self, h, inter, eps):
        super().__init__()
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({"query": nn.Linear(h, h), "key": nn.Linear(h, h), "value": nn.Linear(h, h)}),
            "output": nn.ModuleDict({"dense": nn.Linear(h, h), "LayerNorm": nn.LayerNorm(h, eps=eps)}),
        })
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(h, inter)})
        self.output = nn.ModuleDict({"dense": nn.Linear(inter, h), "LayerNorm": nn.LayerNorm(h, eps=eps)})


class BertMlm(nn.Module):
    def __init__(self, a):
        super().__init__()
        h = a.hidden
        self.heads, self.pre_ln = a.heads, a.pre_ln
        self.bert = nn.Module()
        self.bert.embeddings = nn.ModuleDict({
            "word_embeddings": nn.Embedding(a.vocab, h),
            "position_embeddings": nn.Embedding(a.max_position, h),
            "token_type_embeddings": nn.Embedding(a.type_vocab, h),
            "LayerNorm": nn.LayerNorm(h, eps=a.layer_norm_eps),
        })
        self.bert.encoder = nn.Module()
        self.bert.encoder.layer = nn.ModuleList(
            [Layer(h, a.intermediate, a.layer_norm_eps) for _ in range(a.layers)])
        if a.pre_ln:
            self.bert.encoder.final_layer_norm = nn.LayerNorm(h, eps=a.layer_norm_eps)
        self.cls = nn.Module()
        self.cls.predictions = nn.Module()
        self.cls.predictions.transform = nn.ModuleDict(
            {"dense": nn.Linear(h, h), "LayerNorm": nn.LayerNorm(h, eps=a.layer_norm_eps)})
        self.cls.predictions.bias = nn.Parameter(torch.zeros(a.vocab))

    def attention(self, layer, x, keep):
        b, n, h = x.shape
        sa = layer.attention["self"]

        def split(t):
            return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            split(sa["query"](x)), split(sa["key"](x)), split(sa["value"](x)), attn_mask=keep)
        return layer.attention["output"]["dense"](y.transpose(1, 2).reshape(b, n, h))

    def encode(self, ids):
        e = self.bert.embeddings
        n = ids.shape[1]
        x = (e["word_embeddings"](ids) + e["position_embeddings"].weight[:n].unsqueeze(0)
             + e["token_type_embeddings"].weight[0])
        x = e["LayerNorm"](x)
        keep = (ids != 0)[:, None, None, :]  # [B, 1, 1, L]: keys that may be attended to
        for layer in self.bert.encoder.layer:
            attn_ln, out_ln = layer.attention["output"]["LayerNorm"], layer.output["LayerNorm"]
            ffn = lambda t: layer.output["dense"](F.gelu(layer.intermediate["dense"](t)))  # noqa: E731
            if self.pre_ln:
                y = x + self.attention(layer, attn_ln(x), keep)
                x = y + ffn(out_ln(y))
            else:
                x = attn_ln(x + self.attention(layer, x, keep))
                x = out_ln(x + ffn(x))
        return self.bert.encoder.final_layer_norm(x) if self.pre_ln else x

    def loss(self, ids, positions, targets, valid):
        hidden = self.encode(ids)
        gathered = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        t = self.cls.predictions.transform
        z = t["LayerNorm"](F.gelu(t["dense"](gathered)))
        logits = (z @ self.bert.embeddings["word_embeddings"].weight.t() + self.cls.predictions.bias).float()
        nll = -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        m = valid.float()
        return (nll * m).sum() / m.sum().clamp_min(1.0)


def main():
    p = reference.parser(__doc__)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=512)
    p.add_argument("--max-position", type=int, default=128)
    p.add_argument("--type-vocab", type=int, default=2)
    p.add_argument("--layer-norm-eps", type=float, default=1e-12)
    p.add_argument("--pre-ln", action="store_true")
    a = p.parse_args()
    model, device = reference.build(BertMlm, a)
    batch = {k: v.to(device) for k, v in load_file(a.batch).items()}
    args = (batch["input_ids"], batch["positions"], batch["targets"], batch["valid"])
    model.train()
    first_loss = model.loss(*args).item()
    if a.data:
        seqs = loaders.Sequences(load_file(a.data), a.vocab)
        batches = loaders.batches(a, seqs, args[0].shape[0], device, seqs.collate)
        loaders.check_like(next(batches), args)
        reference.train_and_report(model, lambda: model.loss(*next(batches)), a, args[0].shape[0], first_loss)
    else:
        reference.train_and_report(model, lambda: model.loss(*args), a, args[0].shape[0], first_loss)


if __name__ == "__main__":
    main()
