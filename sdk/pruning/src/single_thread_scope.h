#pragma once
// LibTorch's intra-op parallelism at one thread for the length of a scope.
// Passes made of many small or memory-bound operations (observing shapes on
// tiny inputs, channel norms, slicing weights) lose more to waking and
// joining OpenMP threads than they gain: 3x slower on an idle 2-core machine
// at 2 threads, 20x when the other core is busy. Changing the thread count
// rebuilds LibTorch's thread pool, so take the scope once around a whole pass,
// not per operation.
#include <ATen/Parallel.h>

namespace mcompress {

class SingleThreadScope {
 public:
  SingleThreadScope() : threads_(at::get_num_threads()) {
    if (threads_ != 1) at::set_num_threads(1);
  }
  ~SingleThreadScope() {
    if (threads_ != 1) at::set_num_threads(threads_);
  }
  SingleThreadScope(const SingleThreadScope&) = delete;
  SingleThreadScope& operator=(const SingleThreadScope&) = delete;

 private:
  int threads_;
};

}  // namespace mcompress
