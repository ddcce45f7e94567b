#!/bin/sh
# Load test of `mcompress compare`: a sweep of many tiny candidates (zoo MLP
# on a few hundred Fashion-MNIST samples; magnitude sparsity x seed), run with
# --jobs 2 and --isolate (the default). Checks that every candidate left a
# completed result.json and prints the sweep host's resident memory as the
# candidates finished, which stays flat when compare keeps nothing per
# candidate. Documented in docs/compare.md ("Load").
#
#   bench/load_sweep.sh BUILD_DIR [OUT_DIR] [SEEDS]
#     BUILD_DIR  a build tree with bin/mcompress and the in-tree plugins
#     OUT_DIR    where the sweep goes (default: BUILD_DIR/load-sweep; must not exist)
#     SEEDS      seeds per sparsity (default 20: 10 sparsities x 20 = 200 candidates)
set -eu
build=${1:?usage: bench/load_sweep.sh BUILD_DIR [OUT_DIR] [SEEDS]}
out=${2:-$build/load-sweep}
seeds=${3:-20}
data=/usr/share/datasets/fashion-mnist
mcompress=$build/bin/mcompress
[ -x "$mcompress" ] || { echo "no $mcompress; build the project first" >&2; exit 2; }
[ ! -e "$out" ] || { echo "$out exists; give another OUT_DIR" >&2; exit 2; }
mkdir -p "$out"

cat > "$out/base.yaml" <<YAML
mcompress: 1
name: load_base
seed: 1
threads: 1
model: {zoo: mlp, options: {width: 8}}
data: {path: $data, train_limit: 400, eval_limit: 200, validation_size: 80, calibration_size: 64}
probes: {enabled: [accuracy, params, size]}
stages:
  - {name: train, pass: finetune, params: {epochs: 1, lr: 0.05}}
  - {name: prune, pass: magnitude_prune, params: {sparsity: 0.5}}
YAML

seed_list=$(seq -s ', ' 1 "$seeds")
cat > "$out/sweep.yaml" <<YAML
mcompress_sweep: 1
name: load_sweep
base: base.yaml
grid:
  stages.prune.params.sparsity: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
  seed: [$seed_list]
objective: {reference: train, maximize: accuracy}
YAML

start=$(date +%s)
"$mcompress" compare "$out/sweep.yaml" --out "$out/sweep" --jobs 2 --quiet --no-tracking >/dev/null
end=$(date +%s)

# Results in the order the candidates finished (result.json is written when one ends).
/usr/bin/python3 - "$out/sweep" "$((end - start))" <<'PY'
import json, os, sys
sweep, wall = sys.argv[1], int(sys.argv[2])
files = [os.path.join(sweep, "candidates", d, "result.json") for d in os.listdir(os.path.join(sweep, "candidates"))]
files = [f for f in files if os.path.exists(f)]
results = sorted((os.stat(f).st_mtime_ns, json.load(open(f))) for f in files)
results = [r for _, r in results]
expected = len(json.load(open(os.path.join(sweep, "sweep.json")))["candidates"])
completed = sum(r["status"] == "completed" for r in results)
print(f"candidates: {expected} in the sweep, {len(results)} result.json, {completed} completed; wall time {wall} s "
      f"({wall / max(len(results), 1):.1f} s per candidate with --jobs 2)")
print("| finished | host RSS (MiB) | host peak RSS (MiB) |")
print("|---------:|---------------:|--------------------:|")
for n in sorted({1, 10, len(results) // 4, len(results) // 2, 3 * len(results) // 4, len(results)}):
    if 1 <= n <= len(results):
        r = results[n - 1]
        print(f"| {n:>8} | {r['host_rss_mb']:14.1f} | {r['host_peak_rss_mb']:19.1f} |")
ok = len(results) == expected and completed == expected
print("OK: nothing lost" if ok else "FAILED: candidates missing or not completed")
sys.exit(0 if ok else 1)
PY
