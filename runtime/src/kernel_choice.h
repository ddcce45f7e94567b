#pragma once
// Which path quantized_linear takes for a call: the instruction sets the
// CPU has, the process-wide choice (set_kernel_choice, MCOMPRESS_KERNELS)
// and the row thresholds, in one place. Private to the runtime.
#include <cstdint>

#include "qlinear_int8_gemv.h"
#include "qlinear_int8_kernels.h"

namespace mcompress::runtime::detail {

enum class Path {
  PortableFused,  // portable::linear_rows
  Avx2Fused,      // avx2::linear_rows (1-2 rows)
  Avx2Tiles,      // dequantized tiles times the rows (a few rows)
  DequantizedBlas,  // dequantized blocks times the rows with BLAS
  Int8,           // int8 activations, integer products
};

struct PathChoice {
  Path path = Path::PortableFused;
  bool avx2 = false;  // AVX2 kernels for preparing and dequantizing
  kernels::int8::MultiplyPanel multiply = nullptr;  // Path::Int8 only
  const char* name = "portable";  // what active_kernel reports
};

PathChoice choose_path(int bits, int64_t rows);

// quantized_linear_int8's kernels for one input row: null where the CPU (or
// the choice) has no AVX2 or the format is not one they handle.
struct GemvChoice {
  kernels::int8_gemv::Rows rows = nullptr;
  int chunk_bytes = 32;
  const char* name = "";
};
GemvChoice choose_int8_gemv(int bits, int group_size, int64_t in_features);
// The int8 panel product of the best instruction set (AVX2 CPUs only).
PathChoice int8_path();

}  // namespace mcompress::runtime::detail
