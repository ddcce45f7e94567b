#pragma once
// The int8 panel product on 256-bit vectors, written once for both integer
// dot-product instructions (vpmaddubsw + vpmaddwd on AVX2, vpdpbusd on
// AVX-VNNI). Included by one file per instruction set, each compiled with
// its own flags; everything has internal linkage, so no copy compiled for
// one set can be linked into another.
//
// A block of MR input rows times the 16 panel rows is kept in 2 * MR
// integer accumulators (lane = weight row) while an activation block's 8
// steps run: per step two vector loads of the panel and one 4-byte
// broadcast per input row feed 2 * MR dot products. Then the integers are
// scaled into float, and at the end of each weight group into the output:
//   group += float(acc) * d_b;  out += group * scale_g + (bias_g + o * scale_g) * sum(x_g)
//
// A dot policy says how one step accumulates 4 bytes per lane:
//   struct Dot {
//     static constexpr bool kStartsFromPanel;  // activations offset by 128
//     struct Weights;                          // a panel vector, prepared once per step
//     static Weights weights(__m256i panel_vector);
//     static __m256i activations(__m256i broadcast_bytes);  // once per input row and step
//     // Either one instruction into int32 (vpdpbusd):
//     static __m256i accumulate(__m256i acc, __m256i activations, const Weights& w);
//     // or pairs into int16 (vpmaddubsw), summed over up to kInt16Steps
//     // steps before one widening into int32 (vpmaddwd): fewer of the
//     // multiply-port instructions that limit this path.
//     static constexpr int kInt16Steps;  // 0 for the one-instruction form
//     static __m256i pairs(__m256i activations, const Weights& w);
//   };
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qlinear_int8_kernels.h"

namespace mcompress::runtime::kernels::int8 {
namespace {

inline __m256i broadcast_4_bytes(const uint8_t* bytes) {
  int32_t value;
  std::memcpy(&value, bytes, sizeof value);
  return _mm256_set1_epi32(value);
}

inline __m256i first_lanes_mask(int count) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), index);
}

template <class Dot, int MR>
void multiply_rows_256(const Panel& panel, const QuantizedActivations& x, int64_t m0, float* y,
                       int64_t y_stride, int valid_rows) {
  constexpr int kSteps = kBlock / 4;  // steps per activation block
  const int64_t K = x.in_features;
  const int G = x.group_size;
  const int64_t groups = K / G, blocks = K / kBlock;
  const int blocks_per_group = G / kBlock;
  const __m256i zero = _mm256_setzero_si256();
  const uint8_t* rows[MR];
  __m256 out[MR][2];
  for (int i = 0; i < MR; ++i) {
    rows[i] = x.codes + (m0 + i) * K;
    out[i][0] = out[i][1] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < groups; ++g) {
    // sum over the group's blocks of d_b * idot_b, per panel row
    __m256 group[MR][2];
    for (int i = 0; i < MR; ++i) group[i][0] = group[i][1] = _mm256_setzero_ps();
    for (int64_t b = g * blocks_per_group; b < (g + 1) * blocks_per_group; ++b) {
      __m256i acc[MR][2];
      const int32_t* starts = panel.start_values + b * kPanelRows;
      const __m256i start0 = Dot::kStartsFromPanel ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(starts)) : zero;
      const __m256i start1 =
          Dot::kStartsFromPanel ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(starts + 8)) : zero;
      for (int i = 0; i < MR; ++i) {
        acc[i][0] = start0;
        acc[i][1] = start1;
      }
      const int8_t* codes = panel.codes + b * kSteps * kPanelRows * 4;
      const int64_t first = b * kBlock;
      if constexpr (Dot::kInt16Steps == 0) {
        for (int s = 0; s < kSteps; ++s) {
          const auto w0 = Dot::weights(_mm256_load_si256(reinterpret_cast<const __m256i*>(codes + s * 64)));
          const auto w1 = Dot::weights(_mm256_load_si256(reinterpret_cast<const __m256i*>(codes + s * 64 + 32)));
          for (int i = 0; i < MR; ++i) {
            const __m256i a = Dot::activations(broadcast_4_bytes(rows[i] + first + 4 * s));
            acc[i][0] = Dot::accumulate(acc[i][0], a, w0);
            acc[i][1] = Dot::accumulate(acc[i][1], a, w1);
          }
        }
      } else {
        constexpr int kRun = Dot::kInt16Steps < kSteps ? Dot::kInt16Steps : kSteps;
        const __m256i ones = _mm256_set1_epi16(1);
        for (int s0 = 0; s0 < kSteps; s0 += kRun) {
          __m256i pairs[MR][2];
          for (int i = 0; i < MR; ++i) pairs[i][0] = pairs[i][1] = zero;
          for (int s = s0; s < s0 + kRun; ++s) {
            const auto w0 = Dot::weights(_mm256_load_si256(reinterpret_cast<const __m256i*>(codes + s * 64)));
            const auto w1 = Dot::weights(_mm256_load_si256(reinterpret_cast<const __m256i*>(codes + s * 64 + 32)));
            for (int i = 0; i < MR; ++i) {
              const __m256i a = Dot::activations(broadcast_4_bytes(rows[i] + first + 4 * s));
              pairs[i][0] = _mm256_add_epi16(pairs[i][0], Dot::pairs(a, w0));
              pairs[i][1] = _mm256_add_epi16(pairs[i][1], Dot::pairs(a, w1));
            }
          }
          for (int i = 0; i < MR; ++i) {
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(pairs[i][0], ones));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(pairs[i][1], ones));
          }
        }
      }
      for (int i = 0; i < MR; ++i) {
        const __m256 d = _mm256_set1_ps(x.scales[(m0 + i) * blocks + b]);
        group[i][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][0]), d, group[i][0]);
        group[i][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][1]), d, group[i][1]);
      }
    }
    const __m256 scale0 = _mm256_loadu_ps(panel.scales + g * kPanelRows);
    const __m256 scale1 = _mm256_loadu_ps(panel.scales + g * kPanelRows + 8);
    const __m256 bias0 = _mm256_loadu_ps(panel.biases + g * kPanelRows);
    const __m256 bias1 = _mm256_loadu_ps(panel.biases + g * kPanelRows + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 sum = _mm256_set1_ps(x.sums[(m0 + i) * groups + g]);
      out[i][0] = _mm256_fmadd_ps(group[i][0], scale0, _mm256_fmadd_ps(bias0, sum, out[i][0]));
      out[i][1] = _mm256_fmadd_ps(group[i][1], scale1, _mm256_fmadd_ps(bias1, sum, out[i][1]));
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* target = y + (m0 + i) * y_stride;
    if (valid_rows == kPanelRows) {
      _mm256_storeu_ps(target, out[i][0]);
      _mm256_storeu_ps(target + 8, out[i][1]);
    } else {
      _mm256_maskstore_ps(target, first_lanes_mask(valid_rows), out[i][0]);
      _mm256_maskstore_ps(target + 8, first_lanes_mask(valid_rows - 8), out[i][1]);
    }
  }
}

// Every input row against one panel: blocks of 4 rows, then the rest.
template <class Dot>
void multiply_panel_256(const Panel& panel, const QuantizedActivations& x, float* y,
                        int64_t y_stride, int valid_rows) {
  int64_t m = 0;
  for (; m + 4 <= x.rows; m += 4) multiply_rows_256<Dot, 4>(panel, x, m, y, y_stride, valid_rows);
  if (m + 2 <= x.rows) {
    multiply_rows_256<Dot, 2>(panel, x, m, y, y_stride, valid_rows);
    m += 2;
  }
  if (m < x.rows) multiply_rows_256<Dot, 1>(panel, x, m, y, y_stride, valid_rows);
}

}  // namespace
}  // namespace mcompress::runtime::kernels::int8
