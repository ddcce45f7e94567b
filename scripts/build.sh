#!/usr/bin/env bash
# Configures and builds mcompress in Release into build/ (ccache when present).
#   scripts/build.sh                 everything: host, plugins, tests, benchmarks
#   scripts/build.sh --host-only     only what `mcompress run` needs (host, plugins, runtime)
# Other arguments go to the CMake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
target=()
if [[ "${1:-}" == "--host-only" ]]; then
  shift
  target=(--target mcompress_host)
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$jobs" "${target[@]}"
