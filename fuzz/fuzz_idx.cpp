// libFuzzer target: the Fashion-MNIST IDX readers on arbitrary bytes (gzipped
// or plain), as images and as labels. mcompress::Error is the expected answer
// to bad input; what parses must have the shapes and values the loader
// promises.
#include <ATen/Parallel.h>
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mcompress/framework/sources/fashion_mnist.h"
#include "mcompress/sdk/error.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  at::set_num_threads(1);  // one core per fuzzer; no thread pool to start
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const int64_t limit = size > 0 ? data[size - 1] % 4 : 0;  // 0: all samples
  try {
    const auto images = mcompress::read_fashion_mnist_images(bytes, "fuzz-images-idx3-ubyte", limit);
    const auto& v = images.values;
    if (v.dim() != 4 || v.size(1) != 1 || v.size(2) != 28 || v.size(3) != 28 || v.scalar_type() != torch::kFloat ||
        v.size(0) > int64_t(images.count) || (limit > 0 && v.size(0) > limit))
      __builtin_trap();
  } catch (const mcompress::Error&) {
  }
  try {
    const auto labels = mcompress::read_fashion_mnist_labels(bytes, "fuzz-labels-idx1-ubyte", limit);
    const auto& v = labels.values;
    if (v.dim() != 1 || v.scalar_type() != torch::kLong || v.size(0) > int64_t(labels.count) ||
        (limit > 0 && v.size(0) > limit))
      __builtin_trap();
    if (v.numel() > 0 && (v.min().item<int64_t>() < 0 || v.max().item<int64_t>() > 9)) __builtin_trap();
  } catch (const mcompress::Error&) {
  }
  return 0;
}
