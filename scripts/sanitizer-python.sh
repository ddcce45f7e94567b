#!/usr/bin/env bash
# python3 as the sanitizer build's tests run it (tests/CMakeLists.txt). CPython
# is not instrumented, but tests make it load instrumented mcompress libraries
# (torch.ops.load_library of the runtime op library), which only works when the
# ASan runtime is the first library of the process. libstdc++ is preloaded
# with it: CPython does not link it, and ASan finds the C++ functions it
# intercepts (__cxa_throw, for LibTorch's exceptions) only in libraries
# present when it starts. CPython's own allocations are never freed at exit,
# so leak checking is off for it.
asan_runtime="$(gcc -print-file-name=libasan.so)"
cxx_runtime="$(gcc -print-file-name=libstdc++.so)"
export LD_PRELOAD="${asan_runtime}:${cxx_runtime}${LD_PRELOAD:+:${LD_PRELOAD}}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+${ASAN_OPTIONS}:}detect_leaks=0"
exec /usr/bin/python3 "$@"
