#include "mcompress/models/blas_threads.h"

#include <dlfcn.h>

namespace mcompress {
namespace {

using SetThreads = void (*)(int);
using GetThreads = int (*)();

// OpenBLAS's own entry points, found at run time: any other BLAS lacks them.
SetThreads set_threads() {
  static const auto function = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return function;
}
GetThreads get_threads() {
  static const auto function = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return function;
}

}  // namespace

ScopedBlasThreads::ScopedBlasThreads(int threads) {
  if (!set_threads() || !get_threads() || threads < 1) return;
  previous_ = get_threads()();
  if (previous_ != threads) set_threads()(threads);
}

ScopedBlasThreads::~ScopedBlasThreads() {
  if (previous_ > 0) set_threads()(previous_);
}

bool blas_is_openblas() { return set_threads() && get_threads(); }

}  // namespace mcompress
