#!/bin/bash
# KV-cache decoding: mcompress's KvDecoder (bench/llm_decode_bench.cpp) against
# plain PyTorch eager with a KV cache (bench/llm_decode.py, Debian's
# python3-torch), on random-weight checkpoints made here: a ~20M-parameter
# Llama in float32, and Llama-3.2-1B's architecture in bfloat16 and float32.
# Runs alternate (mcompress, eager, eager with OpenBLAS pinned) for each
# round; the table pools every repetition of every round.
#
#   bench/llm_decode.sh [WORK_DIR] [ROUNDS]
#
# WORK_DIR (default /tmp/mcompress-llm-bench) holds one checkpoint at a time
# (the 1B float32 one is ~5 GB) and is removed at the end. Run it on a quiet
# machine; it takes about 8 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${MCOMPRESS_LLM_BENCH:-$root/build/bin/mcompress_llm_decode_bench}
python=/usr/bin/python3
work=${1:-/tmp/mcompress-llm-bench}
rounds=${2:-2}
threads=2 prompt=64 new=16 reps=3
[ -x "$bench" ] || { echo "build mcompress_llm_decode_bench first (MCOMPRESS_BUILD_BENCH=ON)" >&2; exit 2; }

mkdir -p "$work"
results="$work/results.jsonl"
: > "$results"
trap 'rm -rf "$work"/checkpoint' EXIT
options=(--threads "$threads" --prompt "$prompt" --new "$new" --reps "$reps")

for model in "small float32" "llama-1b bfloat16" "llama-1b float32"; do
  read -r preset dtype <<< "$model"
  checkpoint="$work/checkpoint"
  rm -rf "$checkpoint"
  "$python" "$root/bench/make_random_checkpoint.py" "$checkpoint" --preset "$preset" --dtype "$dtype"
  for round in $(seq "$rounds"); do
    echo "== $preset $dtype, round $round"
    for runner in mcompress eager eager-pinned; do
      case $runner in
        mcompress) output=$("$bench" "$checkpoint" "${options[@]}") ;;
        eager) output=$("$python" "$root/bench/llm_decode.py" "$checkpoint" "${options[@]}") ;;
        eager-pinned) output=$("$python" "$root/bench/llm_decode.py" "$checkpoint" "${options[@]}" --pin-blas) ;;
      esac
      echo "$output" | grep -v '^JSON: '
      echo "$output" | sed -n 's/^JSON: //p' | "$python" -c \
        "import json,sys; r=json.load(sys.stdin); r['model']='$preset $dtype'; print(json.dumps(r))" >> "$results"
    done
  done
  rm -rf "$checkpoint"
done

echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB;" \
     "$threads threads; prompt $prompt, $new new tokens, $reps reps x $rounds rounds"
echo "Command: bench/llm_decode.sh $*"
"$python" - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def pooled(model, runner, key):
    return [v for r in rows if r["model"] == model and r["runner"] == runner for v in r[key]]
def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"
print("| model | runner | decode tok/s median [min, max] | vs eager | vs eager, BLAS pinned | % of bound | "
      "prefill tok/s median [min, max] | load (s) | peak RSS (MB) | peak RSS / weights |")
print("|---|---|---|---|---|---|---|---|---|---|")
for model in dict.fromkeys(r["model"] for r in rows):
    eager = statistics.median(pooled(model, "pytorch-eager", "decode_tps"))
    pinned = statistics.median(pooled(model, "pytorch-eager-pinned-blas", "decode_tps"))
    for runner in dict.fromkeys(r["runner"] for r in rows if r["model"] == model):
        runs = [r for r in rows if r["model"] == model and r["runner"] == runner]
        decode = pooled(model, runner, "decode_tps")
        bound = ""
        if runner == "mcompress":
            bound_tps = max(r["bound_tps"] for r in runs)  # the best bandwidth seen: the strictest bound
            bound = f"{100 * statistics.median(decode) / bound_tps:.0f}% of {bound_tps:.2f} tok/s " \
                    f"({max(r['bandwidth_gbs'] for r in runs):.1f} GB/s)"
        peak = max(r["peak_rss_mb"] for r in runs)
        print(f"| {model} | {runner} | {spread(decode)} | {statistics.median(decode) / eager:.2f}x | "
              f"{statistics.median(decode) / pinned:.2f}x | {bound} | {spread(pooled(model, runner, 'prefill_tps'))} | "
              f"{statistics.median(r['load_s'] for r in runs):.2f} | {peak:.0f} | "
              f"{peak * 1024 * 1024 / runs[0]['weight_bytes']:.2f} |")
EOF
