"""All-reduce timing with Python's torch.distributed (Gloo), the reference for our c10d layer in
`cargo xtask bench --nproc-per-node N`. Run under torchrun; rank 0 prints one JSON line per size,
in the shape of ssl_records::bench::AllReduceRun.
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1000000,10000000", help="float32 elements, comma-separated")
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    for n in [int(s) for s in a.sizes.split(",")]:
        t = torch.ones(n)
        for _ in range(3):
            dist.all_reduce(t)
        times = []
        for _ in range(a.iters):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            times.append((time.perf_counter() - start) * 1000.0)
        if rank == 0:
            s = sorted(times)
            spread = {"median": statistics.median(s), "min": s[0], "max": s[-1], "n": len(s)}
            print(json.dumps({"side": "pytorch", "world": world, "elements": n, "iters": a.iters, "ms": spread}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
