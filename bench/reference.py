"""What the PyTorch eager references of `cargo xtask bench` share: the flags every script takes,
AdamW with our parameter groups, and the timed training loop with its JSON line.

The loop mirrors our trainer's step: zero the gradients, forward, backward, clip the global
gradient norm, one host read of the loss and the norm together (our NaN guard), optimizer step.
"""
import argparse
import contextlib
import json
import resource
import statistics
import sys
import time

import loaders
import torch


def parser(doc):
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--init", required=True, help="our initial weights (safetensors)")
    p.add_argument("--batch", required=True, help="our fixed batch (safetensors)")
    p.add_argument("--window", type=int, default=20, help="steps per timed window")
    p.add_argument("--windows", type=int, default=6, help="timed windows after the warm-up one")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--betas", default="0.9,0.999")
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0: none)")
    p.add_argument("--profile", type=int, default=0, help="after timing, record N steps with torch.profiler")
    p.add_argument("--profile-out", default="", help="where the Chrome trace of --profile goes")
    loaders.add_flags(p)
    p.add_argument(
        "--paired",
        action="store_true",
        help="alternate with another process (cargo xtask bench): after each window print it as a JSON line "
        "and wait for 'go' on stdin before the next; any other line ends the timing (--windows is ignored)",
    )
    return p


def build(model_class, a):
    """The model `model_class(a)` with our initial weights, on `a.device`; returns it and the device.

    Weights are loaded by name: every parameter and buffer must be covered and nothing left over,
    except BatchNorm's `num_batches_tracked` counters, which we do not keep."""
    from safetensors.torch import load_file

    if a.threads:
        torch.set_num_threads(a.threads)
    model = model_class(a)
    missing, unexpected = model.load_state_dict(load_file(a.init), strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    device = torch.device(a.device)
    return model.to(device), device


def adamw(model, a):
    """AdamW (fused where supported) with weight decay on tensors of >= 2 dims only, like ours."""
    params = list(model.parameters())
    groups = [
        {"params": [t for t in params if t.dim() >= 2], "weight_decay": a.weight_decay},
        {"params": [t for t in params if t.dim() < 2], "weight_decay": 0.0},
    ]
    betas = tuple(float(v) for v in a.betas.split(","))
    try:
        return torch.optim.AdamW(groups, lr=a.lr, betas=betas, eps=a.eps, fused=True), True
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=a.lr, betas=betas, eps=a.eps), False


def timed_windows(a, window):
    """Samples/s of the timed windows: `window()` runs one and returns its rate. The first window is
    warm-up and dropped. With `--paired`, each window is announced on stdout as
    `{"window": {"config": "preloaded", "index": i, "samples_per_s": r}}` (ssl_records::bench::WindowLine;
    `dataloader` with `--data`)
    and the next runs only after a `go` line on stdin."""
    if not a.paired:
        rates = [window() for _ in range(a.windows + 1)]
        return rates[1:]
    rates, index = [], 0
    while True:
        start = (time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF))
        rate = window()
        if index > 0:
            rates.append(rate)
        config = "dataloader" if a.data else "preloaded"
        line = {"config": config, "index": index, "samples_per_s": rate, "usage": window_usage(*start)}
        print(json.dumps({"window": line}), flush=True)
        index += 1
        if sys.stdin.readline().strip() != "go":
            return rates


def window_usage(t0, r0):
    """The process's resource use since `(t0, r0)`, as ssl_records::bench::WindowUsage: the
    same getrusage(RUSAGE_SELF) counters our side reports. The DataLoader's worker processes
    are children, so their use is not in it."""
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": t1 - t0,
        "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
        "minor_faults": r1.ru_minflt - r0.ru_minflt,
        "major_faults": r1.ru_majflt - r0.ru_majflt,
        "voluntary_switches": r1.ru_nvcsw - r0.ru_nvcsw,
        "involuntary_switches": r1.ru_nivcsw - r0.ru_nivcsw,
    }


def train_and_report(model, loss_fn, a, samples_per_step, first_loss):
    """Time `a.windows` windows of `a.window` steps after one warm-up window; print the JSON line."""
    opt, fused = adamw(model, a)
    params = [t for t in model.parameters()]
    model.train()
    # Our trainer runs the forward pass under bf16 autocast on CUDA (fp32 on the CPU).
    cuda = a.device.startswith("cuda")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn()
        loss.backward()
        if a.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, a.clip)
        else:
            norm = torch.zeros((), device=loss.device)
        torch.stack([loss.detach().float(), norm.float()]).tolist()  # one host read, like ours
        opt.step()

    def window():
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(a.window):
            step()
        if cuda:
            torch.cuda.synchronize()
        return a.window * samples_per_step / (time.perf_counter() - t)

    rates = timed_windows(a, window)
    if a.profile > 0:
        # Untimed: the same steps under torch.profiler, its Chrome trace for `ssl trace`.
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            for _ in range(a.profile):
                step()
            if cuda:
                torch.cuda.synchronize()
        prof.export_chrome_trace(a.profile_out)
    rates.sort()
    out = {
        "parameters": sum(t.numel() for t in params),
        "first_step_loss": first_loss,
        "fused_adamw": fused,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "samples_per_s": {"median": statistics.median(rates), "min": rates[0], "max": rates[-1], "n": len(rates)},
        # ru_maxrss is in KiB on Linux.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if cuda:
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(out))
