#!/usr/bin/env bash
# Configures and builds mcompress in Release into build/ (ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$jobs"
