#!/bin/bash
# Converting a 1B-class checkpoint to mlx-lm's 4-bit layout with
# `mcompress quantize`: seconds and peak resident memory against the size of
# the largest input shard (the conversion streams tensor by tensor, so peak
# memory should stay near one shard, not grow with the model).
# The checkpoint has Llama-3.2-1B's architecture in bfloat16 with random
# weights (bench/make_random_checkpoint.py): one 2.5 GB model.safetensors.
#
#   bench/mlx_convert.sh [WORK_DIR] [RUNS]
#
# WORK_DIR (default /tmp/mcompress-mlx-convert) is removed at the end.
# Threads: all cores (LibTorch's default). Peak memory is the process's VmHWM
# (mapped pages of the input count while they are resident).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cli=${MCOMPRESS_CLI:-$root/build/bin/mcompress}
python=/usr/bin/python3
work=${1:-/tmp/mcompress-mlx-convert}
runs=${2:-3}
[ -x "$cli" ] || { echo "build mcompress first (scripts/build.sh)" >&2; exit 2; }

mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
"$python" "$root/bench/make_random_checkpoint.py" "$work/checkpoint" --preset llama-1b --dtype bfloat16
shard=$(stat -c %s "$work/checkpoint/model.safetensors")
results="$work/results.jsonl"
: > "$results"
for run in $(seq "$runs"); do
  rm -rf "$work/mlx"
  "$cli" quantize "$work/checkpoint" --bits 4 --group-size 64 --out "$work/mlx" --json > "$work/run.json"
  "$python" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/run.json" >> "$results"
done

"$python" - "$results" "$shard" "$(nproc)" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
shard = int(sys.argv[2]) / 2**20
seconds = sorted(r["seconds"] for r in runs)
peaks = sorted(r["peak_rss_mb"] for r in runs)
first = runs[0]
print(f"Llama-3.2-1B architecture, bfloat16, random weights: largest shard {shard:.0f} MiB; {sys.argv[3]} cores")
print(f"4-bit group 64: {first['quantized_layers']} layers quantized, {first['bits_per_weight']:.3f} bits/weight, "
      f"{first['bytes'] / 1e6:.0f} MB written")
print(f"seconds      min {seconds[0]:.1f}  median {statistics.median(seconds):.1f}  max {seconds[-1]:.1f}  ({len(runs)} runs)")
print(f"peak RSS MiB min {peaks[0]:.0f}  median {statistics.median(peaks):.0f}  max {peaks[-1]:.0f}  "
      f"= {peaks[-1] / shard:.2f}x the largest shard at most")
EOF
