#!/usr/bin/env bash
# Install what is missing, build, and run the whole test suite with ctest.
#
#   scripts/test.sh [CTEST ARGS...]             Release build in build/
#   scripts/test.sh --sanitize [CTEST ARGS...]  ASan + UBSan build in build-sanitize/
#                                               (docs/reliability.md; slow: one job)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--sanitize" ]]; then
  shift
  scripts/install-deps.sh --tests
  # Test discovery runs the instrumented test programs during the build too.
  source scripts/sanitizer-env.sh
  # -O1 -g1: what ASan recommends, with line tables so reports name file:line;
  # full debug info would make the long build longer still.
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DMCOMPRESS_SANITIZE=ON \
    -DMCOMPRESS_BUILD_BENCH=OFF
  cmake --build build-sanitize -j "${MCOMPRESS_SANITIZE_JOBS:-1}"
  ctest --test-dir build-sanitize --output-on-failure -j "${MCOMPRESS_SANITIZE_JOBS:-1}" "$@"
  exit
fi

scripts/install-deps.sh --tests
scripts/build.sh
ctest --test-dir build --output-on-failure -j 2 "$@"
