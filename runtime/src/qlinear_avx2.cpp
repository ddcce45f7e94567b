// Hand-written AVX2/FMA/F16C kernels for 2-, 4- and 8-bit codes. This file
// is compiled with -mavx2 -mfma -mf16c; nothing here may run before
// kernel_dispatch.cpp has checked the CPU.
//
// Codes are read 8 bytes at a time: vpmovzxbd widens the 8 bytes to 8 int32
// lanes, and each bit field of a byte ("plane" r: bits [r*bits, (r+1)*bits))
// is one shift and one mask away, for all 8 lanes at once. Plane r of byte j
// is code j*P + r (P = 8/bits codes per byte), so the activations are
// permuted once per call to the same order (prepare_activations) instead of
// shuffling codes for every weight. That makes one code cost about one
// integer op, one int->float conversion and one FMA per 8 weights, and a
// batch-1 product is bounded by memory traffic rather than arithmetic.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "qlinear_kernels.h"

namespace mcompress::runtime::kernels::avx2 {
namespace {

inline float load_scale(const void* values, ScaleType type, int64_t i) {
  switch (type) {
    case ScaleType::Float16:
      return _cvtsh_ss(static_cast<const uint16_t*>(values)[i]);
    case ScaleType::BFloat16: {
      const uint32_t bits = uint32_t(static_cast<const uint16_t*>(values)[i]) << 16;
      float value;
      std::memcpy(&value, &bits, sizeof value);
      return value;
    }
    case ScaleType::Float32: break;
  }
  return static_cast<const float*>(values)[i];
}

inline float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  __m128 shuffled = _mm_movehdup_ps(sum);
  sum = _mm_add_ps(sum, shuffled);
  shuffled = _mm_movehl_ps(shuffled, sum);
  return _mm_cvtss_f32(_mm_add_ss(sum, shuffled));
}

inline __m256i load_unit(const uint8_t* bytes) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes)));
}

// Plane P of a widened unit as floats (P is a template argument because
// the shift count must be an immediate).
template <int Bits, int P>
inline __m256 plane(__m256i unit) {
  if constexpr (Bits == 8) return _mm256_cvtepi32_ps(unit);
  const __m256i shifted = P == 0 ? unit : _mm256_srli_epi32(unit, P * Bits);
  // The top field needs no mask: the lane holds a zero-extended byte.
  if constexpr (P == 8 / Bits - 1) return _mm256_cvtepi32_ps(shifted);
  return _mm256_cvtepi32_ps(_mm256_and_si256(shifted, _mm256_set1_epi32((1 << Bits) - 1)));
}

// acc += planes of `unit` * the activations of the unit, spread over two
// accumulators (even and odd planes) to shorten the FMA dependency chains.
template <int Bits>
inline void accumulate_unit(__m256i unit, const float* xu, __m256& even, __m256& odd) {
  if constexpr (Bits == 8) {
    even = _mm256_fmadd_ps(plane<8, 0>(unit), _mm256_loadu_ps(xu), even);
  } else if constexpr (Bits == 4) {
    even = _mm256_fmadd_ps(plane<4, 0>(unit), _mm256_loadu_ps(xu), even);
    odd = _mm256_fmadd_ps(plane<4, 1>(unit), _mm256_loadu_ps(xu + 8), odd);
  } else {
    even = _mm256_fmadd_ps(plane<2, 0>(unit), _mm256_loadu_ps(xu), even);
    odd = _mm256_fmadd_ps(plane<2, 1>(unit), _mm256_loadu_ps(xu + 8), odd);
    even = _mm256_fmadd_ps(plane<2, 2>(unit), _mm256_loadu_ps(xu + 16), even);
    odd = _mm256_fmadd_ps(plane<2, 3>(unit), _mm256_loadu_ps(xu + 24), odd);
  }
}

template <int Bits>
inline void store_dequantized_unit(__m256i unit, __m256 scale, __m256 bias, float* out) {
  _mm256_storeu_ps(out, _mm256_fmadd_ps(plane<Bits, 0>(unit), scale, bias));
  if constexpr (Bits <= 4) _mm256_storeu_ps(out + 8, _mm256_fmadd_ps(plane<Bits, 1>(unit), scale, bias));
  if constexpr (Bits == 2) {
    _mm256_storeu_ps(out + 16, _mm256_fmadd_ps(plane<2, 2>(unit), scale, bias));
    _mm256_storeu_ps(out + 24, _mm256_fmadd_ps(plane<2, 3>(unit), scale, bias));
  }
}

// `Rows` output rows at once: the activations are loaded once for all of
// them, and the 2 * Rows independent accumulators hide the FMA latency.
template <int Bits, int Rows>
void dot_rows(const PackedWeightView& w, int64_t n, const float* x, const float* group_sums,
              float* y, int64_t y_stride) {
  constexpr int kPlanes = 8 / Bits;
  constexpr int kCodesPerUnit = 8 * kPlanes;
  const int64_t groups = w.groups_per_row();
  const int units_per_group = w.group_size / kCodesPerUnit;
  const int64_t row_bytes = w.words_per_row() * 4;
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
      const float* xu = xg + u * kCodesPerUnit;
      for (int r = 0; r < Rows; ++r) {
        const __m256i unit = load_unit(rows[r] + (g * units_per_group + u) * 8);
        // 8-bit units have one plane: alternate the accumulators between units.
        if (Bits == 8 && (u & 1)) {
          accumulate_unit<Bits>(unit, xu, odd[r], even[r]);
        } else {
          accumulate_unit<Bits>(unit, xu, even[r], odd[r]);
        }
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

template <int Bits>
void linear_rows_bits(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                      int64_t n_end, float* y) {
  const int64_t groups = w.groups_per_row();
  for (int64_t m = 0; m < x.rows; ++m) {
    const float* xm = x.values + m * w.in_features;
    const float* sums = x.group_sums + m * groups;
    float* ym = y + m * w.out_features;
    int64_t n = n_begin;
    for (; n + 4 <= n_end; n += 4) dot_rows<Bits, 4>(w, n, xm, sums, ym, 1);
    for (; n < n_end; ++n) dot_rows<Bits, 1>(w, n, xm, sums, ym, 1);
  }
}

template <int Bits>
void dequantize_rows_bits(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out) {
  constexpr int kPlanes = 8 / Bits;
  constexpr int kCodesPerUnit = 8 * kPlanes;
  const int64_t groups = w.groups_per_row();
  const int units_per_group = w.group_size / kCodesPerUnit;
  const int64_t row_bytes = w.words_per_row() * 4;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = reinterpret_cast<const uint8_t*>(w.packed) + n * row_bytes;
    float* dst = out + (n - n_begin) * w.in_features;
    for (int64_t g = 0; g < groups; ++g) {
      const __m256 scale = _mm256_set1_ps(load_scale(w.scales, w.scale_type, n * groups + g));
      const __m256 bias = _mm256_set1_ps(load_scale(w.biases, w.scale_type, n * groups + g));
      for (int u = 0; u < units_per_group; ++u) {
        const __m256i unit = load_unit(row + (g * units_per_group + u) * 8);
        store_dequantized_unit<Bits>(unit, scale, bias, dst + g * w.group_size + u * kCodesPerUnit);
      }
    }
  }
}

}  // namespace

bool handles_bits(int bits) { return bits == 2 || bits == 4 || bits == 8; }

void prepare_activations(const float* x, int64_t rows, int64_t in_features, int bits,
                         int group_size, float* values, float* group_sums) {
  const int planes = 8 / bits;
  const int codes_per_unit = 8 * planes;
  const int64_t groups = in_features / group_size;
  for (int64_t m = 0; m < rows; ++m) {
    const float* xm = x + m * in_features;
    float* vm = values + m * in_features;
    for (int64_t unit = 0; unit < in_features; unit += codes_per_unit) {
      for (int p = 0; p < planes; ++p) {
        for (int j = 0; j < 8; ++j) vm[unit + 8 * p + j] = xm[unit + j * planes + p];
      }
    }
    for (int64_t g = 0; g < groups; ++g) {
      __m256 sum = _mm256_setzero_ps();
      for (int j = 0; j < group_size; j += 8) {
        sum = _mm256_add_ps(sum, _mm256_loadu_ps(xm + g * group_size + j));
      }
      group_sums[m * groups + g] = horizontal_sum(sum);
    }
  }
}

void linear_rows(const PackedWeightView& w, const PreparedActivations& x, int64_t n_begin,
                 int64_t n_end, float* y) {
  switch (w.bits) {
    case 2: return linear_rows_bits<2>(w, x, n_begin, n_end, y);
    case 4: return linear_rows_bits<4>(w, x, n_begin, n_end, y);
    default: return linear_rows_bits<8>(w, x, n_begin, n_end, y);
  }
}

void dequantize_rows(const PackedWeightView& w, int64_t n_begin, int64_t n_end, float* out) {
  switch (w.bits) {
    case 2: return dequantize_rows_bits<2>(w, n_begin, n_end, out);
    case 4: return dequantize_rows_bits<4>(w, n_begin, n_end, out);
    default: return dequantize_rows_bits<8>(w, n_begin, n_end, out);
  }
}

void tile_times_activations(const float* tile, int64_t tile_rows, const float* x, int64_t rows,
                            int64_t in_features, float* y, int64_t y_stride) {
  // The product is cut into chunks of kChunk inputs so that a chunk of the
  // tile and of every activation row stays in L1 while it is reused; each
  // step multiplies 4 tile rows with 2 activation rows (6 loads feed 8
  // FMAs, so FMA throughput, not loads, is the limit). Partial sums stay
  // vectors in `partial` until the end.
  constexpr int64_t kChunk = 256;
  const int64_t K = in_features;
  std::vector<float> partial(size_t(tile_rows * rows * 8), 0.0f);
  auto slot = [&](int64_t i, int64_t m) { return partial.data() + (i * rows + m) * 8; };
  for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
    const int64_t k1 = std::min(K, k0 + kChunk);
    int64_t i = 0;
    for (; i + 4 <= tile_rows; i += 4) {
      const float* t0 = tile + i * K;
      int64_t m = 0;
      for (; m + 2 <= rows; m += 2) {
        const float* x0 = x + m * K;
        const float* x1 = x0 + K;
        __m256 acc[8];
        for (int r = 0; r < 4; ++r) {
          acc[2 * r] = _mm256_loadu_ps(slot(i + r, m));
          acc[2 * r + 1] = _mm256_loadu_ps(slot(i + r, m + 1));
        }
        for (int64_t k = k0; k < k1; k += 8) {
          const __m256 a0 = _mm256_loadu_ps(x0 + k);
          const __m256 a1 = _mm256_loadu_ps(x1 + k);
          for (int r = 0; r < 4; ++r) {
            const __m256 t = _mm256_loadu_ps(t0 + r * K + k);
            acc[2 * r] = _mm256_fmadd_ps(t, a0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(t, a1, acc[2 * r + 1]);
          }
        }
        for (int r = 0; r < 4; ++r) {
          _mm256_storeu_ps(slot(i + r, m), acc[2 * r]);
          _mm256_storeu_ps(slot(i + r, m + 1), acc[2 * r + 1]);
        }
      }
      for (; m < rows; ++m) {
        for (int r = 0; r < 4; ++r) {
          __m256 acc = _mm256_loadu_ps(slot(i + r, m));
          for (int64_t k = k0; k < k1; k += 8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(t0 + r * K + k), _mm256_loadu_ps(x + m * K + k), acc);
          }
          _mm256_storeu_ps(slot(i + r, m), acc);
        }
      }
    }
    for (; i < tile_rows; ++i) {
      for (int64_t m = 0; m < rows; ++m) {
        __m256 acc = _mm256_loadu_ps(slot(i, m));
        for (int64_t k = k0; k < k1; k += 8) {
          acc = _mm256_fmadd_ps(_mm256_loadu_ps(tile + i * K + k), _mm256_loadu_ps(x + m * K + k), acc);
        }
        _mm256_storeu_ps(slot(i, m), acc);
      }
    }
  }
  for (int64_t i = 0; i < tile_rows; ++i) {
    for (int64_t m = 0; m < rows; ++m) y[m * y_stride + i] = horizontal_sum(_mm256_loadu_ps(slot(i, m)));
  }
}

}  // namespace mcompress::runtime::kernels::avx2
