#!/usr/bin/env bash
# The main job end to end: install what is missing, build, and run the default
# pipeline (train a CNN on Fashion-MNIST, prune it, fine-tune it, report).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh --host-only
recipe=${1:-pipelines/fashion_mnist_prune.yaml}
shift || true
build/bin/mcompress run "$recipe" "$@"
