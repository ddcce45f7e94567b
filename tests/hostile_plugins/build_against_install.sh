#!/usr/bin/env bash
# Installs the mcompress build in BINARY_DIR into a prefix and builds the
# hostile plugins against that installation, as a third party would:
#   build_against_install.sh SOURCE_DIR BINARY_DIR OUT_DIR [CXX_FLAGS]
# leaves OUT_DIR/prefix (the installation) and OUT_DIR/build/plugins/<folder>/.
# ctest runs it once, as the fixture of test_plugin_boundary's tests.
set -euo pipefail
source_dir=$1 binary_dir=$2 out=$3 cxx_flags=${4:-}
cmake --install "$binary_dir" --prefix "$out/prefix" >/dev/null
cmake -S "$source_dir/tests/hostile_plugins" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$out/prefix" -DCMAKE_CXX_FLAGS="$cxx_flags" >/dev/null
cmake --build "$out/build" -j 2
