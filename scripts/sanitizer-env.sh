# Sourced by scripts/test.sh --sanitize (and by hand, to rerun one test of
# build-sanitize): how the sanitizer runtimes behave in the test suite.
# LibTorch, CPython, OpenBLAS and the other system libraries are not
# instrumented; every option below that relaxes a check says which of them
# needs it.
_sanitizers_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sanitizers"

# detect_odr_violation=0: libtorch's and libc10's globals are linked into
#   several shared objects (host, SDK, every plugin link them), which ASan's
#   ODR check reports although nothing of ours is defined twice.
# The leak checker stays on; sanitizers/lsan.supp lists the only leaks it
# ignores (allocations made and kept by uninstrumented libraries).
export ASAN_OPTIONS="detect_odr_violation=0"
export LSAN_OPTIONS="suppressions=${_sanitizers_dir}/lsan.supp:print_suppressions=0"
# Any undefined behaviour fails the test that reached it, with a stack.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=${_sanitizers_dir}/ubsan.supp"
unset _sanitizers_dir
