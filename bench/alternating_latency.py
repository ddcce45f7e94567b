"""Batch-1 latency of TorchScript files side by side, in one process.

Each argument is a model file, or `ofi:FILE` for what a PyTorch user gets in
one line from it: torch.jit.optimize_for_inference(torch.jit.freeze(model)).
Steady state: 200 warm-up calls of each, then blocks of 50 calls alternating
between the models (20 blocks by default), OpenBLAS pinned to the calling
thread, oneDNN as the quantized engine. Prints median [p25-p75] and min/max
in microseconds per model, and the ratio of each median to the first's.

  /usr/bin/python3 bench/alternating_latency.py --threads 1 --shape 1,1,28,28 MODEL [MODEL...]
"""
import argparse
import ctypes
import os
import platform
import time

import torch


def pin_openblas():
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "openblas" in os.path.basename(path):
            ctypes.CDLL(path).openblas_set_num_threads(1)
            return True
    return False


def load(spec):
    if spec.startswith("ofi:"):
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.load(spec[4:]).eval()))
    return torch.jit.load(spec).eval()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", default="1,1,28,28")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "onednn" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "onednn"
    models = [load(spec) for spec in args.models]
    pinned = pin_openblas()
    x = torch.randn(*[int(d) for d in args.shape.split(",")])
    times = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            for _ in range(200):
                model(x)
        for _ in range(args.blocks):
            for i, model in enumerate(models):
                for _ in range(args.block):
                    start = time.perf_counter()
                    model(x)
                    times[i].append(time.perf_counter() - start)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s), "
          f"OpenBLAS {'pinned' if pinned else 'not found'}, input {args.shape}, "
          f"{args.blocks} blocks of {args.block} calls per model, load average {open('/proc/loadavg').read().split()[0]}")
    print("| model | median us | p25-p75 | min-max | x first |\n|---|---:|---:|---:|---:|")
    first = None
    for spec, ts in zip(args.models, times):
        ts.sort()
        n = len(ts)
        median = ts[n // 2] * 1e6
        first = first or median
        print(f"| {spec} | {median:.1f} | {ts[n // 4] * 1e6:.1f}-{ts[3 * n // 4] * 1e6:.1f} | "
              f"{ts[0] * 1e6:.1f}-{ts[-1] * 1e6:.1f} | {first / median:.2f} |")


if __name__ == "__main__":
    main()
