#pragma once
// Debian's OpenBLAS (pthread build) keeps its worker threads spinning after
// each matrix product, next to LibTorch's OpenMP threads on the same cores, and
// latencies swing 2x. The benchmarks run BLAS on the calling thread, or on
// as many threads as they give LibTorch when BLAS itself is what they time.
#include <dlfcn.h>

#include <string>

// OpenBLAS runs on `threads` threads (1: the calling thread). Returns false
// when the BLAS is not OpenBLAS (nothing to pin).
inline bool set_openblas_threads(int threads) {
  using SetThreads = void (*)(int);
  auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set_threads) return false;
  set_threads(threads);
  return true;
}

// Returns false when the BLAS is not OpenBLAS (nothing to pin).
inline bool run_openblas_on_the_calling_thread() { return set_openblas_threads(1); }

// The kernel family OpenBLAS picked for this CPU ("Haswell", "SkylakeX",
// ...; "Prescott" means it did not recognise the CPU and runs SSE3 code;
// OPENBLAS_CORETYPE overrides it), or "" when the BLAS is not OpenBLAS.
inline std::string openblas_core_name() {
  using CoreName = char* (*)();
  auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return core_name ? core_name() : "";
}
