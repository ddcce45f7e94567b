#!/bin/sh
# Side-by-side deploy latency of pruned models (50% of the channels of every
# layer, L2 magnitude, batch 1, 224x224, 2 and 1 threads): Torch-Pruning +
# torch.jit.freeze + torch.jit.optimize_for_inference, mcompress's pruned model
# + the same deploy step, and mcompress's model as the optimize_inference pass
# saves it. mcompress_prune_bench prunes and saves; bench/deploy_compare.py
# (system Python, PyTorch 1.13) times all columns in one process, alternating
# blocks of each model, OpenBLAS pinned to the calling thread. Documented in
# README ("Deploying a pruned model").
#
#   bench/deploy_compare.sh BUILD_DIR [OUT_DIR] [deploy_compare.py options...]
#     BUILD_DIR  a build tree with bin/mcompress_prune_bench
#     OUT_DIR    where the pruned models go (default: BUILD_DIR/deploy-compare)
#   MODELS=resnet50,mobilenet_v2,efficientnet_b0,resnext50_32x4d  (default)
#   TORCH_PRUNING=<dir of torch_pruning>  (default: ../shared/anchors/torch-pruning-1.6.1;
#                                          its column is skipped when absent)
set -eu
build=${1:?usage: bench/deploy_compare.sh BUILD_DIR [OUT_DIR] [options]}
out=${2:-$build/deploy-compare}
[ $# -ge 2 ] && shift 2 || shift $#
here=$(cd "$(dirname "$0")" && pwd)
models=${MODELS:-resnet50,mobilenet_v2,efficientnet_b0,resnext50_32x4d}
anchor=${TORCH_PRUNING:-$here/../../shared/anchors/torch-pruning-1.6.1}
bench=$build/bin/mcompress_prune_bench
[ -x "$bench" ] || { echo "no $bench; build the target mcompress_prune_bench first" >&2; exit 2; }
mkdir -p "$out"

for model in $(echo "$models" | tr , ' '); do
  "$bench" --models "$model" --prune-only --repeats 1 --ignore-load --save-dir "$out" \
    --model-dir "$build/bench-models" >/dev/null
done

[ -d "$anchor/torch_pruning" ] || echo "note: $anchor not found; the Torch-Pruning column is skipped"
echo "command: bench/deploy_compare.sh $build $out $*"
echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
PYTHONPATH="$anchor${PYTHONPATH:+:$PYTHONPATH}" /usr/bin/python3 "$here/deploy_compare.py" "$out" --models "$models" "$@"
