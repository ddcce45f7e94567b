#!/bin/bash
# Decode and prefill speed of mcompress's KvDecoder against llama.cpp on the
# same weights, side by side in one run: Llama-3.2-1B's architecture with
# random bfloat16 weights (bench/make_random_checkpoint.py), run by
#   mcompress  in float32 and bfloat16, and as the mlx-lm directories
#              `mcompress quantize` writes at 8 and 4 bits (group 64; the
#              4-bit one also with its tied embeddings/output at 8 bits, as
#              the Q4_0 GGUF keeps them);
#   llama.cpp  (node-llama-cpp's prebuilt CPU binary, tests/js) as the GGUF
#              files `mcompress export gguf` writes: F16, Q8_0 and Q4_0.
# Runs alternate between the candidates in every round; the table pools every
# repetition of every round.
#
#   bench/llm_decode_vs_llama_cpp.sh [WORK_DIR] [ROUNDS]
#
# WORK_DIR (default /tmp/mcompress-vs-llama-cpp, ~6 GB) is removed at the end.
# Needs the test references (scripts/install-deps.sh --test) and the
# benchmarks (MCOMPRESS_BUILD_BENCH=ON). Run it on a quiet machine; about 12
# minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cli=${MCOMPRESS_CLI:-$root/build/bin/mcompress}
bench=${MCOMPRESS_LLM_BENCH:-$root/build/bin/mcompress_llm_decode_bench}
python=/usr/bin/python3
work=${1:-/tmp/mcompress-vs-llama-cpp}
rounds=${2:-2}
threads=2 prompt=64 new=16 reps=3
[ -x "$bench" ] || { echo "build mcompress_llm_decode_bench first (MCOMPRESS_BUILD_BENCH=ON)" >&2; exit 2; }
[ -d "$root/tests/js/node_modules/node-llama-cpp" ] || {
  echo "install the test references first: scripts/install-deps.sh --test" >&2; exit 2; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
: > "$results"

echo "== making the checkpoint and its converted forms"
"$python" "$root/bench/make_random_checkpoint.py" "$work/bf16" --preset llama-1b --dtype bfloat16
"$cli" quantize "$work/bf16" --bits 8 --out "$work/mlx-8bit" --quiet
"$cli" quantize "$work/bf16" --bits 4 --out "$work/mlx-4bit" --quiet
"$cli" quantize "$work/bf16" --bits 4 --layer 'model.embed_tokens: bits=8' --out "$work/mlx-4bit-8bit-embeddings" --quiet
for type in f16 q8_0 q4_0; do "$cli" export gguf "$work/bf16" --type "$type" --out "$work/model-$type.gguf" --quiet; done
vocab=$("$python" -c "import json; print(json.load(open('$work/bf16/config.json'))['vocab_size'])")

candidates=(
  "mcompress|float32|$work/bf16|--dtype float32"
  "mcompress|bfloat16|$work/bf16|"
  "mcompress|MLX 8-bit|$work/mlx-8bit|"
  "mcompress|MLX 4-bit|$work/mlx-4bit|"
  "mcompress|MLX 4-bit, 8-bit embeddings|$work/mlx-4bit-8bit-embeddings|"
  "llama.cpp|GGUF F16|$work/model-f16.gguf|"
  "llama.cpp|GGUF Q8_0|$work/model-q8_0.gguf|"
  "llama.cpp|GGUF Q4_0 (output Q8_0)|$work/model-q4_0.gguf|"
)
options=(--threads "$threads" --prompt "$prompt" --new "$new" --reps "$reps")
for round in $(seq "$rounds"); do
  for candidate in "${candidates[@]}"; do
    IFS='|' read -r runner format path extra <<< "$candidate"
    echo "== round $round: $runner $format"
    if [ "$runner" = mcompress ]; then
      # shellcheck disable=SC2086
      output=$("$bench" "$path" "${options[@]}" $extra)
    else
      output=$(node "$root/bench/llama_cpp_decode.mjs" "$path" "${options[@]}" --vocab "$vocab")
    fi
    echo "$output" | grep -v '^JSON: ' | tail -n 1
    echo "$output" | sed -n 's/^JSON: //p' | "$python" -c \
      "import json,sys; r=json.load(sys.stdin); r['runner']='$runner'; r['format']='$format'; print(json.dumps(r))" \
      >> "$results"
  done
done

echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB;" \
     "$threads threads; prompt $prompt, $new new tokens, $reps reps x $rounds rounds; llama.cpp:" \
     "node-llama-cpp $(node -p "require('$root/tests/js/node_modules/node-llama-cpp/package.json').version")"
echo "Command: bench/llm_decode_vs_llama_cpp.sh $*"
"$python" - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def pooled(fmt, key):
    return [v for r in rows if r["format"] == fmt for v in r[key]]
def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"
# Each mcompress row against the llama.cpp file of the same width.
counterpart = {"bfloat16": "GGUF F16", "MLX 8-bit": "GGUF Q8_0", "MLX 4-bit": "GGUF Q4_0 (output Q8_0)",
               "MLX 4-bit, 8-bit embeddings": "GGUF Q4_0 (output Q8_0)"}
# llama.cpp's rates are its own (llama_perf_context: evaluation time without
# the JavaScript binding around it), the stricter comparison; the binding's
# wall-clock rates follow in brackets.
def rates(fmt, key):
    own = pooled(fmt, "llama_" + key) if any(r["runner"] == "llama.cpp" for r in rows if r["format"] == fmt) else []
    return own or pooled(fmt, key)
print("| runner | weights | MB read per token | decode tok/s median [min, max] | vs llama.cpp | "
      "prefill tok/s median [min, max] | vs llama.cpp | peak RSS (MB) |")
print("|---|---|---|---|---|---|---|---|")
for fmt in dict.fromkeys(r["format"] for r in rows):
    runs = [r for r in rows if r["format"] == fmt]
    decode, prefill = rates(fmt, "decode_tps"), rates(fmt, "prefill_tps")
    other = counterpart.get(fmt)
    versus = lambda key, mine: f"{statistics.median(mine) / statistics.median(rates(other, key)):.2f}x" if other else ""
    binding = ""
    if runs[0]["runner"] == "llama.cpp":
        binding = f" (binding: {statistics.median(pooled(fmt, 'decode_tps')):.2f})"
    read = runs[0].get("bytes_per_token", runs[0]["weight_bytes"]) / 1e6
    print(f"| {runs[0]['runner']} | {fmt} | {read:.0f} | {spread(decode)}{binding} | {versus('decode_tps', decode)} | "
          f"{spread(prefill)} | {versus('prefill_tps', prefill)} | {max(r['peak_rss_mb'] for r in runs):.0f} |")
EOF
