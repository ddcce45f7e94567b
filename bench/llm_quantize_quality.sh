#!/bin/bash
# Quantization quality on a trained language model, side by side in one run:
# held-out perplexity of the floating model, round-to-nearest and GPTQ at 4
# and 3 bits, and mixed precision (3 and 4 bits by measured sensitivity) at
# 3.5 bits per weight, all MLX affine with group size 64, through the
# mlx_quant pass. Every candidate reads the same checkpoint, the same held-out
# windows (Tiny Shakespeare's last 10%) and the same calibration windows.
#
#   bench/llm_quantize_quality.sh CHECKPOINT_DIR [WORK_DIR]
#
# CHECKPOINT_DIR: e.g. the model pipelines/llama_shakespeare.yaml trains
# (runs/<run>/model). WORK_DIR (default /tmp/mcompress-quantize-quality) keeps
# each candidate's run directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cli=${MCOMPRESS_CLI:-$root/build/bin/mcompress}
checkpoint=$(cd "${1:?usage: bench/llm_quantize_quality.sh CHECKPOINT_DIR [WORK_DIR]}" && pwd)
work=${2:-/tmp/mcompress-quantize-quality}
[ -x "$cli" ] || { echo "build mcompress first (scripts/build.sh)" >&2; exit 2; }
mkdir -p "$work"

candidates=(
  "rtn_4bit|{bits: 4, group_size: 64, dtype: float32}"
  "gptq_4bit|{bits: 4, group_size: 64, dtype: float32, method: gptq}"
  "rtn_3bit|{bits: 3, group_size: 64, dtype: float32}"
  "gptq_3bit|{bits: 3, group_size: 64, dtype: float32, method: gptq}"
  "mixed_3.5bit|{bits: 3, group_size: 64, dtype: float32, target_bits_per_weight: 3.5}"
  "mixed_3.5bit_gptq|{bits: 3, group_size: 64, dtype: float32, method: gptq, target_bits_per_weight: 3.5}"
)
for candidate in "${candidates[@]}"; do
  name=${candidate%%|*}
  params=${candidate#*|}
  cat > "$work/$name.yaml" <<EOF
mcompress: 1
name: $name
seed: 1
threads: 2
model: {hf: $checkpoint, dtype: float32}
data:
  dataset: text
  path: $root/tests/data/tinyshakespeare.txt
  context: 128
  eval_stride: 64
  validation_size: 0
  eval_limit: 200
  calibration_size: 128
probes:
  enabled: [perplexity, params, size]
  eval_batch_size: 16
stages:
  - name: quantize
    pass: mlx_quant
    params: $params
EOF
  rm -rf "$work/$name"
  echo "== $name" >&2
  "$cli" run "$work/$name.yaml" --out "$work/$name" --no-tracking --quiet
done

/usr/bin/python3 - "$work" "${candidates[@]}" <<'EOF'
import json, os, sys
work = sys.argv[1]
names = [c.split("|")[0] for c in sys.argv[2:]]
def record(name, stage):
    with open(os.path.join(work, name, "stages", stage, "record.json")) as f:
        return json.load(f)
base = record(names[0], "00_baseline")["outcome"]["metrics"]
print("| model | bits per weight (codes) | held-out perplexity | next-token accuracy |")
print("|---|---|---|---|")
print(f"| float32 | 32 | {base['perplexity']:.3f} | {base['next_token_accuracy']:.4f} |")
for name in names:
    r = record(name, "01_quantize")
    stats, metrics = r["stats"], r["outcome"]["metrics"]
    bits = stats.get("mixed_precision", {}).get("allocated_bits_per_weight")
    if bits is None:
        bits = stats["layers"][0]["bits"]
    print(f"| {name} | {bits:.3f} | {metrics['perplexity']:.3f} | {metrics['next_token_accuracy']:.4f} |")
EOF
