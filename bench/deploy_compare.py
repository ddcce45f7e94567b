"""Side-by-side deploy latency: what a user ships after pruning.

Columns, per model (torchvision architecture, random weights of seed 0,
the same ones bench/prune_bench.cpp scripts and prunes):
  tp_ofi     Torch-Pruning 1.6 (50% per layer, L2 magnitude, classifier kept),
             then torch.jit.freeze + torch.jit.optimize_for_inference
  mc_ofi     mcompress pruned (MODEL_DIR/<model>-pruned.pt), the same deploy step
  mc_saved   mcompress as saved by optimize_inference (MODEL_DIR/<model>-pruned-optimized.pt),
             loaded and run as it is
  mc_int8    mcompress pruned and then quantized by int8_quant (MODEL_DIR/<model>-pruned-int8.pt,
             calibrated on random images), loaded and run as it is (oneDNN quantized engine)
  mc_cl      the form optimize_inference saved before it used oneDNN's layout (frozen,
             channels-last; MODEL_DIR/<model>-pruned-channels-last.pt), for comparison

Batch 1, 224x224. Steady state: 10 warm-up runs of each, then blocks of
consecutive runs of one model (about 100 ms; the first run of a block is not
timed) alternating between the models until each has >= 20 timed runs and
about SECONDS have passed. Reports median, interquartile range and min/max.
OpenBLAS runs on the calling thread (as bench/openblas_threads.h does) unless
--blas unpinned, which leaves Debian's OpenBLAS threads as they come.

  python3 bench/deploy_compare.py MODEL_DIR [--models a,b] [--threads 2,1]
          [--seconds 4] [--blas pinned|unpinned] [--variants tp_ofi,mc_ofi,mc_saved,mc_cl] [--json FILE]

--variants times only some columns: `--variants mc_saved --blas unpinned` shows the
saved model's speed with no other model's BLAS threads in the process.
"""
import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time

import torch
import torchvision

CLASSIFIERS = {  # the layer each model's output comes from: kept whole, as mcompress does
    "resnet50": lambda m: [m.fc],
    "resnext50_32x4d": lambda m: [m.fc],
    "mobilenet_v2": lambda m: [m.classifier[1]],
    "efficientnet_b0": lambda m: [m.classifier[1]],
}


def openblas_set_threads(threads):
    """Returns the OpenBLAS library pinned, or None when the BLAS is not OpenBLAS."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "openblas" in os.path.basename(path):
            lib = ctypes.CDLL(path)
            lib.openblas_set_num_threads(threads)
            return path
    return None


def conv_linear_macs(model, example):
    """MACs of conv and linear layers from real output shapes (as mcompress counts them)."""
    total = [0]

    def conv_hook(module, inputs, output):
        k = module.weight.shape[2] * module.weight.shape[3]
        total[0] += output.numel() * (module.in_channels // module.groups) * k

    def linear_hook(module, inputs, output):
        total[0] += output.numel() * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return total[0]


def torch_pruning_model(name, example, sparsity):
    import torch_pruning as tp

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    pruner = tp.pruner.MetaPruner(
        model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=sparsity, global_pruning=False, ignored_layers=CLASSIFIERS[name](model))
    pruner.step()
    return model


def deploy(scripted):
    return torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))


def timed_blocks(models, example, seconds):
    """Median, quartiles, min, max in ms of each model's forward, alternating blocks."""
    def run(model):
        start = time.perf_counter()
        model(example)
        return time.perf_counter() - start

    times = {key: [] for key in models}
    with torch.no_grad():
        last = {}
        for _ in range(10):
            for key, model in models.items():
                last[key] = run(model)
        block = max(1, min(50, int(0.100 / max(last.values()))))
        start = time.perf_counter()
        while min(len(t) for t in times.values()) < 20 or time.perf_counter() - start < seconds:
            for key, model in models.items():
                if block > 1:
                    run(model)
                times[key].extend(run(model) for _ in range(block))
    result = {}
    for key, values in times.items():
        values = sorted(v * 1e3 for v in values)
        q = statistics.quantiles(values, n=4)
        result[key] = {"median": statistics.median(values), "p25": q[0], "p75": q[2],
                       "min": values[0], "max": values[-1], "runs": len(values)}
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--models", default="resnet50,mobilenet_v2,efficientnet_b0,resnext50_32x4d")
    parser.add_argument("--threads", default="2,1")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--blas", choices=["pinned", "unpinned"], default="pinned")
    parser.add_argument("--variants", default="tp_ofi,mc_ofi,mc_saved,mc_int8,mc_cl")
    parser.add_argument("--json")
    args = parser.parse_args()
    if "onednn" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "onednn"  # what int8_quant's models are written for

    blas = openblas_set_threads(1) if args.blas == "pinned" else None
    try:
        import torch_pruning  # noqa: F401
        have_tp = True
    except ImportError:
        have_tp = False
    example = torch.randn(1, 3, 224, 224)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start; torch {torch.__version__}; "
          f"BLAS: {'OpenBLAS on the calling thread (' + blas + ')' if blas else 'as it comes (not pinned)'}")
    print("\n| model | threads | Torch-Pruning + freeze + optimize_for_inference | mcompress pruned + the same"
          " deploy step | mcompress as saved by optimize_inference | mcompress pruned + int8_quant |"
          " (before: saved channels-last) | load at end |\n|---|---|---|---|---|---|---|---|")
    if not have_tp:
        print("Torch-Pruning not importable (set PYTHONPATH to torch-pruning-1.6.1): its column is skipped")
    rows = []
    for name in args.models.split(","):
        stats = json.load(open(os.path.join(args.model_dir, f"{name}-stats.json")))
        variants = {}
        tp_macs = tp_params = None
        if have_tp:
            tp_model = torch_pruning_model(name, example, args.sparsity)
            tp_macs = conv_linear_macs(tp_model, example)
            tp_params = sum(p.numel() for p in tp_model.parameters())
            variants["tp_ofi"] = deploy(torch.jit.script(tp_model))
        variants["mc_ofi"] = deploy(torch.jit.load(os.path.join(args.model_dir, f"{name}-pruned.pt")))
        variants["mc_saved"] = torch.jit.load(os.path.join(args.model_dir, f"{name}-pruned-optimized.pt"))
        int8 = os.path.join(args.model_dir, f"{name}-pruned-int8.pt")
        if os.path.exists(int8):
            variants["mc_int8"] = torch.jit.load(int8)
        channels_last = os.path.join(args.model_dir, f"{name}-pruned-channels-last.pt")
        if os.path.exists(channels_last):
            variants["mc_cl"] = torch.jit.load(channels_last)
        wanted = args.variants.split(",")
        variants = {key: model for key, model in variants.items() if key in wanted}
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            timing = timed_blocks(variants, example, args.seconds)
            row = {"model": name, "threads": threads, "timing": timing, "tp_macs": tp_macs,
                   "tp_params": tp_params, "mc_macs": stats["macs_after"], "mc_params": stats["params_after"],
                   "macs_before": stats["macs_before"], "load": os.getloadavg()[0]}
            rows.append(row)
            print(format_row(row), flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


def cell(timing):
    if timing is None:
        return "skipped (no Torch-Pruning)"
    return (f"{timing['median']:.1f} ms [{timing['p25']:.1f}-{timing['p75']:.1f}, "
            f"min {timing['min']:.1f}, max {timing['max']:.1f}, n={timing['runs']}]")


def format_row(row):
    t = row["timing"]
    tp = (f"{cell(t['tp_ofi'])}; {row['tp_macs'] / 1e9:.2f} GMACs, {row['tp_params'] / 1e6:.2f} M params"
          if "tp_ofi" in t else ("-" if row["tp_macs"] else cell(None)))
    mc = f"{row['mc_macs'] / 1e9:.2f} GMACs, {row['mc_params'] / 1e6:.2f} M params"
    def column(key):
        return f"{cell(t[key])}; {mc}" if key in t else "-"
    return (f"| {row['model']} | {row['threads']} | {tp} | {column('mc_ofi')} | {column('mc_saved')} | "
            f"{cell(t['mc_int8']) if 'mc_int8' in t else '-'} | "
            f"{cell(t['mc_cl']) if 'mc_cl' in t else '-'} | {row['load']:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
