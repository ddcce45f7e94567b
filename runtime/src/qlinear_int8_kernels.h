#pragma once
// The int8 path of mcompress::quantized_linear for many input rows (a
// prompt's prefill): private to the runtime.
//
// With y = sum_g scale_g * dot(codes_g, x_g) + bias_g * sum(x_g), the
// codes are small integers, so the dot products can run on integer units
// if the activations are integers too. Each block of 32 activations of a
// row is quantized to int8 with its own float scale d = max|x_b| / 127, as
// llama.cpp's Q8_0 activations (blocks finer than the weight's groups keep
// one outlier from coarsening up to 127 neighbours: at 128-wide groups
// this halves the error). The codes enter centred, c - 2^(bits-1) (signed
// bytes), which shrinks the rounding error of the activations by the size
// of the codes (about 3x at 4 bits) at no cost: the offset moves into the
// bias, which is multiplied by the exact float sum of the activations:
//
//   y = sum_g scale_g * sum_{b in g} d_b * idot(c_b - o, q_b) + (bias_g + o * scale_g) * sum(x_g)
//
// Only idot is approximate (int8 activations); everything else is float.
//
// The integer products want an unsigned and a signed operand (vpmaddubsw,
// vpdpbusd), so activations are stored offset by 128 as unsigned bytes,
// q + 128, and idot(c', q) = idot(c', q + 128) - 128 * sum(c'): the panel
// carries -128 * sum(c') per block as the accumulators' starting value.
//
// Work is cut into panels of kPanelRows weight rows, unpacked once per call
// (pack_panel, AVX2) into the layout the products want, then multiplied
// with every input row (multiply_panel, one per instruction set).
#include <cstddef>
#include <cstdint>

#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::int8 {

constexpr int kPanelRows = 16;
constexpr int kBlock = 32;  // activations per int8 scale

// Input rows quantized per block of kBlock; non-owning.
struct QuantizedActivations {
  const uint8_t* codes = nullptr;  // [rows, in_features]: round(x / d) + 128
  const float* scales = nullptr;   // [rows, in_features / kBlock]: d
  const float* sums = nullptr;     // [rows, in_features / group_size]: float sum of x
  int64_t rows = 0;
  int64_t in_features = 0;
  int group_size = 64;
};

// kPanelRows weight rows in the products' layout: for every 4 inputs k..k+3
// (one step), 64 bytes holding the 4 centred codes of row 0, of row 1, ...,
// of row 15, so one vector load gives 16 rows and one broadcast gives 4
// activations. Rows past the end of the weight are zero.
struct Panel {
  const int8_t* codes = nullptr;            // [in_features / 4][kPanelRows][4]
  const int32_t* start_values = nullptr;    // [blocks][kPanelRows]: -128 * sum of centred codes
  const float* scales = nullptr;            // [groups][kPanelRows]
  const float* biases = nullptr;            // [groups][kPanelRows]: bias + 2^(bits-1) * scale
  int bits = 4;
};

// Bytes a panel of this shape needs (pack_panel's `buffer`, 64-byte aligned).
size_t panel_bytes(int64_t in_features, int group_size);

// AVX2 (qlinear_int8_pack.cpp).
void quantize_activations(const float* x, int64_t rows, int64_t in_features, int group_size,
                          uint8_t* codes, float* scales, float* sums);
// Unpacks weight rows [n_begin, n_begin + rows) (rows <= kPanelRows) into
// `buffer`, which the returned panel points into.
Panel pack_panel(const PackedWeightView& w, int64_t n_begin, int rows, void* buffer);

// y[m * y_stride + i] = output row i of the panel for input row m, for the
// first `valid_rows` rows of the panel.
using MultiplyPanel = void (*)(const Panel& panel, const QuantizedActivations& x, float* y,
                               int64_t y_stride, int valid_rows);
namespace avx2 {  // vpmaddubsw + vpmaddwd (qlinear_int8_avx2.cpp)
void multiply_panel(const Panel&, const QuantizedActivations&, float*, int64_t, int);
}
namespace avx_vnni {  // vpdpbusd on 256-bit vectors (qlinear_int8_avx_vnni.cpp)
void multiply_panel(const Panel&, const QuantizedActivations&, float*, int64_t, int);
}
namespace avx512_vnni {  // vpdpbusd on 512-bit vectors (qlinear_int8_avx512_vnni.cpp)
void multiply_panel(const Panel&, const QuantizedActivations&, float*, int64_t, int);
}

// y [rows, out_features] = x [rows, in_features] times the weight, with
// `multiply` for the products; runs on the intra-op thread pool, panels
// split between threads (qlinear_int8.cpp, baseline code).
void linear(const PackedWeightView& w, const float* x, int64_t rows, MultiplyPanel multiply, float* y);

}  // namespace mcompress::runtime::kernels::int8
