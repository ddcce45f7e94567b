// The int8 panel product with AVX-512 VNNI: one 512-bit vpdpbusd covers all
// 16 panel rows of a step, and the 32 vector registers hold 8 input rows'
// integer and float accumulators at once. Same arithmetic as the 256-bit
// product (qlinear_int8_products_256.h). Compiled with -mavx512f
// -mavx512vnni (plus the AVX2 flags); called only after the CPU check.
// No standard-library templates here: an out-of-line copy compiled for
// AVX-512 could be picked by the linker for baseline code too.
#include <immintrin.h>

#include <cstring>

#include "qlinear_int8_kernels.h"

namespace mcompress::runtime::kernels::int8::avx512_vnni {
namespace {

static_assert(kPanelRows == 16, "one 512-bit vector of int32 lanes per panel step");

// _mm512_cvtepi32_ps, in the form GCC 12 does not warn about (its plain
// form starts from an "undefined" register it then reports as uninitialized).
inline __m512 to_float(__m512i v) { return _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), v); }

template <int MR>
void multiply_rows(const Panel& panel, const QuantizedActivations& x, int64_t m0, float* y,
                   int64_t y_stride, int valid_rows) {
  constexpr int kSteps = kBlock / 4;
  const int64_t K = x.in_features;
  const int G = x.group_size;
  const int64_t groups = K / G, blocks = K / kBlock;
  const int blocks_per_group = G / kBlock;
  const uint8_t* rows[MR];
  __m512 out[MR];
  for (int i = 0; i < MR; ++i) {
    rows[i] = x.codes + (m0 + i) * K;
    out[i] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < groups; ++g) {
    __m512 group[MR];
    for (int i = 0; i < MR; ++i) group[i] = _mm512_setzero_ps();
    for (int64_t b = g * blocks_per_group; b < (g + 1) * blocks_per_group; ++b) {
      const __m512i start = _mm512_loadu_si512(panel.start_values + b * kPanelRows);
      __m512i acc[MR];
      for (int i = 0; i < MR; ++i) acc[i] = start;
      const int8_t* codes = panel.codes + b * kSteps * kPanelRows * 4;
      const int64_t first = b * kBlock;
      for (int s = 0; s < kSteps; ++s) {
        const __m512i w = _mm512_load_si512(codes + s * 64);
        for (int i = 0; i < MR; ++i) {
          int32_t four;
          std::memcpy(&four, rows[i] + first + 4 * s, sizeof four);
          acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(four), w);
        }
      }
      for (int i = 0; i < MR; ++i) {
        group[i] = _mm512_fmadd_ps(to_float(acc[i]), _mm512_set1_ps(x.scales[(m0 + i) * blocks + b]), group[i]);
      }
    }
    const __m512 scale = _mm512_loadu_ps(panel.scales + g * kPanelRows);
    const __m512 bias = _mm512_loadu_ps(panel.biases + g * kPanelRows);
    for (int i = 0; i < MR; ++i) {
      const __m512 sum = _mm512_set1_ps(x.sums[(m0 + i) * groups + g]);
      out[i] = _mm512_fmadd_ps(group[i], scale, _mm512_fmadd_ps(bias, sum, out[i]));
    }
  }
  const __mmask16 valid = __mmask16((1u << valid_rows) - 1);
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(y + (m0 + i) * y_stride, valid, out[i]);
}

}  // namespace

void multiply_panel(const Panel& panel, const QuantizedActivations& x, float* y, int64_t y_stride,
                    int valid_rows) {
  int64_t m = 0;
  for (; m + 8 <= x.rows; m += 8) multiply_rows<8>(panel, x, m, y, y_stride, valid_rows);
  if (m + 4 <= x.rows) {
    multiply_rows<4>(panel, x, m, y, y_stride, valid_rows);
    m += 4;
  }
  if (m + 2 <= x.rows) {
    multiply_rows<2>(panel, x, m, y, y_stride, valid_rows);
    m += 2;
  }
  if (m < x.rows) multiply_rows<1>(panel, x, m, y, y_stride, valid_rows);
}

}  // namespace mcompress::runtime::kernels::int8::avx512_vnni
