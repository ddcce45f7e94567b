#pragma once
// The fused dequantize-and-dot kernels for one or two input rows, written
// once for every code format. Only for files compiled with -mavx2 -mfma
// -mf16c (everything here has internal linkage, so no AVX2 code can leak
// into a baseline file through the linker).
//
// A code format describes how a unit of packed bytes becomes 8 lanes whose
// bit fields ("planes") are codes:
//
//   struct Format {
//     static constexpr int kUnitBytes;      // packed bytes per unit
//     static constexpr int kCodesPerUnit;   // 8 * planes
//     static __m256i load(const uint8_t* unit, const uint8_t* end);
//     // acc += planes * the unit's prepared activations (8 per plane);
//     // `parity` alternates between units to split the dependency chains.
//     static void accumulate(__m256i lanes, const float* x, int parity, __m256& even, __m256& odd);
//     static void store_dequantized(__m256i lanes, __m256 scale, __m256 bias, float* out);
//   };
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qlinear_avx2_support.h"
#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::avx2 {
namespace {

// `Rows` output rows at once: the activations are loaded once for all of
// them, and the 2 * Rows independent accumulators hide the FMA latency.
template <class Format, int Rows>
void dot_rows(const PackedWeightView& w, int64_t n, const float* x, const float* group_sums,
              float* y, int64_t y_stride) {
  const int64_t groups = w.groups_per_row();
  const int units_per_group = w.group_size / Format::kCodesPerUnit;
  const int64_t row_bytes = w.bytes_per_row();
  const uint8_t* end = w.end();
  const uint8_t* rows[Rows];
  __m256 total[Rows];
  float bias_part[Rows];
  for (int r = 0; r < Rows; ++r) {
    rows[r] = reinterpret_cast<const uint8_t*>(w.packed) + (n + r) * row_bytes;
    total[r] = _mm256_setzero_ps();
    bias_part[r] = 0;
  }
  for (int64_t g = 0; g < groups; ++g) {
    __m256 even[Rows], odd[Rows];
    for (int r = 0; r < Rows; ++r) even[r] = odd[r] = _mm256_setzero_ps();
    const float* xg = x + g * w.group_size;
    for (int u = 0; u < units_per_group; ++u) {
      const float* xu = xg + u * Format::kCodesPerUnit;
      for (int r = 0; r < Rows; ++r) {
        const __m256i lanes = Format::load(rows[r] + (g * units_per_group + u) * Format::kUnitBytes, end);
        Format::accumulate(lanes, xu, u & 1, even[r], odd[r]);
      }
    }
    for (int r = 0; r < Rows; ++r) {
      const int64_t index = (n + r) * groups + g;
      const __m256 scale = _mm256_set1_ps(load_scale(w.scales, w.scale_type, index));
      total[r] = _mm256_fmadd_ps(_mm256_add_ps(even[r], odd[r]), scale, total[r]);
      bias_part[r] += load_scale(w.biases, w.scale_type, index) * group_sums[g];
    }
  }
  for (int r = 0; r < Rows; ++r) y[(n + r) * y_stride] = horizontal_sum(total[r]) + bias_part[r];
}

template <class Format>
void fused_linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                       int64_t n_end, float* y) {
  const int64_t groups = w.groups_per_row();
  for (int64_t m = 0; m < x.rows; ++m) {
    const float* xm = x.values + m * w.in_features;
    const float* sums = x.group_sums + m * groups;
    float* ym = y + m * w.out_features;
    int64_t n = n_begin;
    for (; n + 4 <= n_end; n += 4) dot_rows<Format, 4>(w, n, xm, sums, ym, 1);
    for (; n < n_end; ++n) dot_rows<Format, 1>(w, n, xm, sums, ym, 1);
  }
}

template <class Format>
void dequantize_rows_in_prepared_order(const PackedWeightView& w, int64_t n_begin, int64_t n_end,
                                       float* out) {
  const int64_t groups = w.groups_per_row();
  const int units_per_group = w.group_size / Format::kCodesPerUnit;
  const int64_t row_bytes = w.bytes_per_row();
  const uint8_t* end = w.end();
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = reinterpret_cast<const uint8_t*>(w.packed) + n * row_bytes;
    float* dst = out + (n - n_begin) * w.in_features;
    for (int64_t g = 0; g < groups; ++g) {
      const __m256 scale = _mm256_set1_ps(load_scale(w.scales, w.scale_type, n * groups + g));
      const __m256 bias = _mm256_set1_ps(load_scale(w.biases, w.scale_type, n * groups + g));
      for (int u = 0; u < units_per_group; ++u) {
        const __m256i lanes = Format::load(row + (g * units_per_group + u) * Format::kUnitBytes, end);
        Format::store_dequantized(lanes, scale, bias,
                                  dst + g * w.group_size + u * Format::kCodesPerUnit);
      }
    }
  }
}

}  // namespace
}  // namespace mcompress::runtime::kernels::avx2
