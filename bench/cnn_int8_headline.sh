#!/bin/sh
# The CNN headline: pipelines/fashion_mnist_int8.yaml trains the zoo CNN on
# Fashion-MNIST, prunes half of its channels, distills from the trained model
# and quantizes to int8; then the trained model (as saved, and after the
# one-line PyTorch deploy step freeze + optimize_for_inference), the pruned
# and distilled model after the same step, and the int8 model are timed side
# by side at batch 1 (bench/alternating_latency.py), and sizes and accuracies
# come from the run's report.
#
#   bench/cnn_int8_headline.sh BUILD_DIR [RUN_DIR] [THREADS]
set -eu
build=${1:?usage: bench/cnn_int8_headline.sh BUILD_DIR [RUN_DIR] [THREADS]}
run=${2:-$build/cnn-int8-headline}
threads=${3:-1}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$run/report.json" ] || "$build/bin/mcompress" run "$here/../pipelines/fashion_mnist_int8.yaml" \
  --out "$run" --quiet --no-tracking
echo "command: bench/cnn_int8_headline.sh $build $run $threads"
/usr/bin/python3 - "$run/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
stages = {s["name"]: s for s in report["stages"]}
trained = stages["train"]["metrics"]
print("| stage | status | accuracy | vs trained (points) | size KB | x smaller |\n|---|---|---:|---:|---:|---:|")
for name in ("train", "prune", "distill", "quantize"):
    s = stages[name]
    m = s["metrics"]
    print(f"| {name} | {s['status']} | {100 * m['accuracy']:.2f}% | {100 * (m['accuracy'] - trained['accuracy']):+.2f} | "
          f"{m['size_bytes'] / 1024:.1f} | {trained['size_bytes'] / m['size_bytes']:.1f} |")
PY
model_of() { ls "$run"/stages/*_"$1"/model.pt; }
/usr/bin/python3 "$here/alternating_latency.py" --threads "$threads" \
  "$(model_of train)" "ofi:$(model_of train)" "ofi:$(model_of distill)" "$run/model.pt"
