#pragma once
// Debian's OpenBLAS (pthread build) keeps its worker threads spinning after
// each matrix product, next to LibTorch's OpenMP threads on the same cores, and
// latencies swing 2x. The benchmarks run BLAS on the calling thread.
#include <dlfcn.h>

// Returns false when the BLAS is not OpenBLAS (nothing to pin).
inline bool run_openblas_on_the_calling_thread() {
  using SetThreads = void (*)(int);
  auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set_threads) return false;
  set_threads(1);
  return true;
}
