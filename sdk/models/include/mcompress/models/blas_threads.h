#pragma once
// Debian's LibTorch hands float32 matrix products to whatever BLAS
// libblas.so.3 is; OpenBLAS (pthread build) has a thread count of its own,
// which callers often pin to 1 so its spinning workers leave LibTorch's
// threads alone. Work made of large products (a prompt's prefill) wants the
// cores back for its duration; timing wants it on the calling thread (after
// a stage that trained, its spinning workers made the same model time 6x
// slower).
#include "mcompress/sdk/export.h"

namespace mcompress {

// Within its lifetime, OpenBLAS runs on `threads` threads; the previous count
// comes back after. Does nothing when the BLAS is not OpenBLAS.
class MCOMPRESS_SDK_API ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int previous_ = 0;  // 0: nothing to restore
};

// Whether the BLAS LibTorch calls is OpenBLAS (the one ScopedBlasThreads
// can set).
MCOMPRESS_SDK_API bool blas_is_openblas();

}  // namespace mcompress
