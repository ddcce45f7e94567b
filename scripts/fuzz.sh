#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang into build-fuzz/ and runs
# each for SECONDS (default 60) on a copy of its seed corpus in
# fuzz/corpus/<target>/. Fails when any target finds a crash, a sanitizer
# report, a hang, an uncaught exception or an oversized allocation; the
# input that caused it is left in build-fuzz/findings/<target>/.
#
#   scripts/fuzz.sh [SECONDS]          MCOMPRESS_FUZZ_JOBS=N: build jobs (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
targets=(recipe sweep params idx safetensors tokenizer)

cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DMCOMPRESS_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "${MCOMPRESS_FUZZ_JOBS:-$(nproc)}"

# LibTorch is not instrumented: its globals appear in several objects (ODR
# check off), and what it allocates once and keeps is not a leak of ours.
export ASAN_OPTIONS="detect_odr_violation=0"
export LSAN_OPTIONS="suppressions=$PWD/scripts/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=()
for target in "${targets[@]}"; do
  corpus="build-fuzz/corpus/${target}"
  findings="build-fuzz/findings/${target}"
  rm -rf "${corpus}" "${findings}"
  mkdir -p "${corpus}" "${findings}"
  cp fuzz/corpus/"${target}"/* "${corpus}/"
  log="build-fuzz/fuzz_${target}.log"
  # -timeout: one input running 10 s is a hang; -malloc_limit_mb: no input
  # may make one allocation of more than 512 MB (the readers' inputs are KBs).
  if build-fuzz/bin/fuzz_"${target}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="${findings}/" "${corpus}" >"${log}" 2>&1; then
    status=ok
  else
    status=FINDING
    failed+=("${target}")
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || echo "?")
  coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "${log}" | tail -n 1 || echo "cov: ?")
  echo "fuzz_${target}: ${status}, ${runs} inputs in ${seconds} s, ${coverage}, corpus $(ls "${corpus}" | wc -l) files"
  if [[ ${status} != ok ]]; then
    grep -E 'ERROR|SUMMARY|deadly|uncaught|Test unit written' "${log}" | head -n 20 || true
    echo "  full log: ${log}; inputs: ${findings}/"
  fi
done

if (( ${#failed[@]} > 0 )); then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: no findings"
