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

// quantized_linear with the activations quantized to int8 at every row
// count on AVX2 CPUs, as llama.cpp computes on CPUs: one input row of a 4-
// or 8-bit weight runs integer dot products straight on the packed codes
// (one int8 scale per weight group, max|x_g|/127; AVX2, AVX-VNNI or AVX-512
// VNNI), anything else the int8 path below (blocks of 32). Without AVX2 it
// computes exactly as quantized_linear. Faster where decoding is
// compute-bound, at an RMS error of about 0.5-1% of the output's RMS on top
// of the weights' own (up to 1.5% with groups of 128; README, "Quantization"). KvDecoder decodes with it
// unless told otherwise.
MCOMPRESS_RUNTIME_API at::Tensor quantized_linear_int8(const at::Tensor& x, const at::Tensor& packed,
                                                       const at::Tensor& scales,
                                                       const at::Tensor& biases,
                                                       const c10::optional<at::Tensor>& bias,
                                                       int64_t bits, int64_t group_size);

// Which kernels quantized_linear uses:
//   Portable    plain C++ for every width; from blas_rows_threshold() input
//               rows on, dequantized blocks multiplied by LibTorch's BLAS.
//   Avx2        AVX2/FMA/F16C kernels for every width (fused
//               dequantize-and-dot for 1-2 rows, dequantized tiles for a
//               few); from int8_rows_threshold() rows on, the int8 path
//               (activations quantized to int8 per block of 32, integer
//               dot products with vpmaddubsw).
//   AvxVnni     Avx2, with the int8 path's products on AVX-VNNI (vpdpbusd,
//               256-bit).
//   Avx512Vnni  Avx2, with the int8 path's products on AVX-512 VNNI
//               (vpdpbusd, 512-bit).
//   Auto        the last of these the CPU has (checked with CPUID).
// Process-wide; meant for tests and benchmarks
// (MCOMPRESS_KERNELS=portable|avx2|avx-vnni|avx512-vnni sets it at load
// time). Forcing a kernel the CPU lacks throws std::invalid_argument.
enum class KernelChoice { Auto, Portable, Avx2, AvxVnni, Avx512Vnni };
MCOMPRESS_RUNTIME_API void set_kernel_choice(KernelChoice choice);
MCOMPRESS_RUNTIME_API KernelChoice kernel_choice();
// Whether this CPU (and its OS) can run `choice` (Auto and Portable: always).
MCOMPRESS_RUNTIME_API bool cpu_supports(KernelChoice choice);
// Hides the instruction sets above `limit` (in the order Portable, Avx2,
// AvxVnni, Avx512Vnni; Auto hides nothing), so tests and benchmarks see
// what a CPU without them gets: cpu_supports and Auto follow, and a forced
// choice above the limit runs as Auto.
MCOMPRESS_RUNTIME_API void set_cpu_feature_limit(KernelChoice limit);
MCOMPRESS_RUNTIME_API bool cpu_supports_avx2();
// "avx2" or "portable": the kernel quantized_linear uses now for `bits`
// and one input row.
MCOMPRESS_RUNTIME_API std::string active_kernel(int bits);
// The path for `rows` input rows: "portable", "avx2", "portable + blas",
// "avx2 + blas", "int8 avx2", "int8 avx-vnni" or "int8 avx512-vnni".
MCOMPRESS_RUNTIME_API std::string active_kernel(int bits, int64_t rows);

// The path quantized_linear_int8 takes for `rows` input rows: "int8 gemv
// avx-vnni" (avx512-vnni, avx2) for one row of a 4- or 8-bit weight, else
// active_kernel's int8 name, or "portable" without AVX2.
MCOMPRESS_RUNTIME_API std::string active_int8_kernel(int bits, int group_size, int64_t in_features,
                                                     int64_t rows);

// From this many input rows on (default 64: a prompt's prefill),
// quantized_linear on an AVX2 CPU quantizes the activations to int8 (per
// block of 32, scale max|x|/127) and multiplies with integer dot products:
// several times faster than float32 BLAS, at an RMS error of about 0.6% of
// the output's RMS (about 1.2% when a few input channels are tens of times
// larger than the rest), on top of the weights' own quantization error
// (README, "Quantization"). Below it, the float kernels are exact up to
// float rounding. 0 restores the default; INT64_MAX turns the int8 path
// off. MCOMPRESS_INT8_ROWS=N sets it at load time.
MCOMPRESS_RUNTIME_API void set_int8_rows_threshold(int64_t rows);
MCOMPRESS_RUNTIME_API int64_t int8_rows_threshold();

// From this many input rows on, where the int8 path does not apply (the
// portable kernels, or fewer rows than its threshold), quantized_linear
// dequantizes blocks of the weight and multiplies them with LibTorch's BLAS
// (OpenBLAS on Debian) instead of running its own kernels; 0 restores the
// default. For tests and benchmarks.
MCOMPRESS_RUNTIME_API void set_blas_rows_threshold(int64_t rows);
MCOMPRESS_RUNTIME_API int64_t blas_rows_threshold();

// The file this library was loaded from (what Python must load), or "" if
// unknown.
MCOMPRESS_RUNTIME_API std::string runtime_library_path();

}  // namespace mcompress::runtime
