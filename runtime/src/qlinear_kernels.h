#pragma once
// The float kernels behind mcompress::quantized_linear (private to the
// runtime). Two implementations with the same contract: `portable` (plain
// C++) and `avx2` (hand-written AVX2/FMA/F16C, compiled with -mavx2 -mfma
// -mf16c in their own files and only called after a CPUID check). Both
// handle every bit width. The int8 kernels for many input rows are in
// qlinear_int8_kernels.h.
//
// Activations are prepared once per call (prepare_activations): the AVX2
// kernels read the codes of a unit of packed bytes as "bit planes" (the
// first field of every lane, then the next field, ...), so they want the
// activations of each unit in that order; the portable kernels want them as
// they are. dequantize_rows writes weights in the same order as
// prepare_activations, so a dot product of the two is the real one whichever
// order it is.
#include <cstdint>

namespace mcompress::runtime::kernels {

enum class ScaleType { Float32, Float16, BFloat16 };

// One packed weight [out_features, in_features]; non-owning.
struct PackedWeightView {
  const uint32_t* packed = nullptr;  // [out_features, in_features * bits / 32]
  const void* scales = nullptr;      // [out_features, in_features / group_size]
  const void* biases = nullptr;
  ScaleType scale_type = ScaleType::Float32;
  int64_t out_features = 0;
  int64_t in_features = 0;
  int bits = 4;
  int group_size = 64;

  int64_t words_per_row() const { return in_features * bits / 32; }
  int64_t bytes_per_row() const { return in_features * bits / 8; }
  int64_t groups_per_row() const { return in_features / group_size; }
  // One past the last packed byte: kernels that load whole vectors must not
  // read beyond it.
  const uint8_t* end() const {
    return reinterpret_cast<const uint8_t*>(packed) + out_features * bytes_per_row();
  }
};

// Activations of `rows` input rows in the layout a kernel wants, plus the sum
// of each group of `group_size` activations (bias_g * sum_g(x) is how the
// biases enter: y = sum_g scale_g * dot(codes_g, x_g) + bias_g * sum_g(x)).
struct PreparedActivations {
  const float* values = nullptr;  // [rows, in_features]
  const float* group_sums = nullptr;  // [rows, in_features / group_size]
  int64_t rows = 0;
};

namespace portable {
void prepare_activations(const float* x, int64_t rows, int64_t in_features, int bits,
                         int group_size, float* values, float* group_sums);
// y[m, n] for n in [n_begin, n_end), every m; y is [rows, out_features].
void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y);
// Dequantized rows [n_begin, n_end) as float, [n_end - n_begin, in_features].
void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out);
}  // namespace portable

namespace avx2 {
// Planes per unit of packed bytes: a unit is 8 bytes for 2, 4 and 8 bits
// (8 lanes of one byte) and 4 * bits bytes for 3, 5 and 6 bits (8 lanes of
// four codes); plane p of lane j is code j * planes + p of the unit.
inline int planes_per_unit(int bits) { return bits == 2 || bits == 4 || bits == 8 ? 8 / bits : 4; }
void prepare_activations(const float* x, int64_t rows, int64_t in_features, int bits,
                         int group_size, float* values, float* group_sums);
// Fused dequantize-and-dot, best for one or two input rows.
void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y);
void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out);
// y[m, n_begin + i] = dot(x[m], tile[i]) for a dequantized tile
// [tile_rows, in_features] (in the prepared order): the batch path
// dequantizes a few output rows and reuses them for every input row.
// `partial` is scratch for tile_rows * rows * 8 floats.
void tile_times_activations(const float* tile, int64_t tile_rows, const float* x, int64_t rows,
                            int64_t in_features, float* partial, float* y, int64_t y_stride);

// 3-, 5- and 6-bit codes (qlinear_avx2_odd_bits.cpp); the functions above
// hand these widths over.
namespace odd_bits {
void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y);
void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out);
}  // namespace odd_bits
}  // namespace avx2

}  // namespace mcompress::runtime::kernels
