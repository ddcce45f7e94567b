#pragma once
// `mcompress_quant_bench kernels`: the quantized linear operator against
// float32 BLAS on a 4096x4096 layer (quant_kernel_bench.cpp).
#include <cstdint>
#include <vector>

struct KernelBenchOptions {
  int runs = 15;                                 // timed calls per variant
  std::vector<int64_t> rows{1, 16, 64, 256};     // input rows of the compute table
  bool bandwidth = true;                         // the batch-1 table with weights streamed from memory
};

void run_kernel_benchmark(const KernelBenchOptions& options);
