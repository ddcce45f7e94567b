#pragma once
// libmcompress_runtime: what a quantized model needs to run. Loading the
// library registers the TorchScript operator
//
//   mcompress::quantized_linear(Tensor x, Tensor packed, Tensor scales,
//                               Tensor biases, Tensor? bias, int bits,
//                               int group_size) -> Tensor
//
// (y = x @ dequantize(packed, scales, biases)^T + bias, for x of any leading
// shape), so a model quantized by mlx_quant stays a TorchScript module that
// runs, saves and reloads wherever the library is loaded: C++ hosts link it
// (the mcompress SDK and host do), Python calls
// torch.ops.load_library("libmcompress_runtime.so") before torch.jit.load.
//
// Formats are MLX's (affine_quantization.h). LibTorch 1.13 has no uint32
// dtype, so packed words are held in int32 tensors with the same bits.
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <string>

#include "mcompress/runtime/export.h"

namespace mcompress::runtime {

// A weight [out_features, in_features] in MLX's format. Owns its tensors.
struct QuantizedWeight {
  at::Tensor packed;  // int32 [out, in * bits / 32]: MLX's uint32 words
  at::Tensor scales;  // [out, in / group_size], the weight's dtype
  at::Tensor biases;  // like scales
  int bits = 4;
  int group_size = 64;
};

// Quantizes a 2-D float32/float16/bfloat16 weight exactly as MLX's
// mx.quantize(weight, group_size, bits) does on the same values; scales and
// biases get the weight's dtype. Runs on the intra-op thread pool. Throws
// std::invalid_argument for an unsupported format, a row length that is not
// a multiple of the group size, or a non-finite weight.
MCOMPRESS_RUNTIME_API QuantizedWeight quantize_weight(const at::Tensor& weight, int bits,
                                                      int group_size);

// code * scale + bias as float32 [out, in], computed in float from the
// stored scales and biases.
MCOMPRESS_RUNTIME_API at::Tensor dequantize_weight(const at::Tensor& packed,
                                                   const at::Tensor& scales,
                                                   const at::Tensor& biases, int64_t bits,
                                                   int64_t group_size);

// The operator's implementation: checks shapes and dtypes (std::invalid_argument
// / c10::Error with what is wrong), computes in float32 and returns x's dtype.
// Not differentiable: quantized layers are for inference.
MCOMPRESS_RUNTIME_API at::Tensor quantized_linear(const at::Tensor& x, const at::Tensor& packed,
                                                  const at::Tensor& scales,
                                                  const at::Tensor& biases,
                                                  const c10::optional<at::Tensor>& bias,
                                                  int64_t bits, int64_t group_size);

// Which kernels quantized_linear uses. Auto: AVX2 when the CPU has AVX2, FMA
// and F16C and the width is 2, 4 or 8 bits, else portable. Process-wide;
// meant for tests and benchmarks (MCOMPRESS_KERNELS=portable|avx2 sets it at
// load time). Forcing Avx2 on a CPU without it throws.
enum class KernelChoice { Auto, Portable, Avx2 };
MCOMPRESS_RUNTIME_API void set_kernel_choice(KernelChoice choice);
MCOMPRESS_RUNTIME_API KernelChoice kernel_choice();
MCOMPRESS_RUNTIME_API bool cpu_supports_avx2();
// "avx2" or "portable": the kernel quantized_linear uses now for `bits`.
MCOMPRESS_RUNTIME_API std::string active_kernel(int bits);

// From this many input rows on, quantized_linear dequantizes blocks of the
// weight and multiplies them with LibTorch's BLAS (OpenBLAS on Debian)
// instead of running its own kernels; 0 restores the default. For tests and
// benchmarks.
MCOMPRESS_RUNTIME_API void set_blas_rows_threshold(int64_t rows);
MCOMPRESS_RUNTIME_API int64_t blas_rows_threshold();

// The file this library was loaded from (what Python must load), or "" if
// unknown.
MCOMPRESS_RUNTIME_API std::string runtime_library_path();

}  // namespace mcompress::runtime
